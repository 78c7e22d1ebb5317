"""How a bottleneck run compares with the demos it started from and with a regular run.

Two numbers per dataset:

- **success rate**: successful committed episodes / (committed + rejected). Rejects count as attempts
  (in a bottleneck run most are failures found on the physics-only pass, never rendered).
- **neighbourhood coverage**, in pose space: for each critical state, the part above the table (z >= 0) of
  the ball of radius ``radius_m`` around its TCP position (a run uses the smallest perturbation distance:
  the region every recovery crosses on its way back, from its own direction) is cut into
  ``voxel_m`` cubes (5 cm), and each cube into four bins of the hand's tilt (the angle of the TCP's z axis,
  the tool axis, from straight down: 0-20, 20-45, 45-90 and 90-180 degrees). Coverage is the fraction of
  those cells that some frame's TCP pose of the dataset's episodes falls in, averaged over the critical
  states. A demo passes each critical state once, hand down, along one path; recoveries from perturbations
  (rotations up to +-180 degrees) fill the neighbourhood a policy must handle, at other tilts too.
- **at the same size**: coverage grows with the number of episodes, and a bottleneck run keeps fewer of its
  attempts than a regular run, so the comparison also gives every dataset's coverage over its first ``n``
  committed episodes, ``n`` the fewest any compared run (not the source demos) committed.

Reads data parquet columns only (no video). numpy and pyarrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from raygen.datasets import _layout as L

__all__ = ["TILT_BINS_DEG", "compare", "dataset_outcome", "neighbourhood_coverage", "tcp_positions"]

VOXEL_M = 0.05
TILT_BINS_DEG = (20.0, 45.0, 90.0)
"""Upper edges of the tilt bins below 180 degrees (four bins)."""


def tcp_positions(root: Path | str, episodes: int | None = None) -> np.ndarray:
    """[N,4] TCP position (observation.state's eef_x, eef_y, eef_z) and tilt in degrees (from eef_qw..qz: the
    angle of the tool axis from straight down) of every committed frame, or of the first ``episodes``
    committed episodes."""
    index, samples = _tcp_samples(root)
    return samples if episodes is None else samples[index < episodes]


def _tcp_samples(root: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(episode index [N], TCP position and tilt [N,4]) of every committed frame, read once."""
    root = Path(root)
    info = L.read_json(root / L.INFO)
    names = list(info["features"]["observation.state"].get("names") or [])
    try:
        i = names.index("eef_x")
    except ValueError:
        raise ValueError(f"{root}: observation.state has no eef_x (names {names[:8]}...)") from None
    index, out = [], []
    for path in sorted((root / "data").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(path, columns=["episode_index", "observation.state"])
        col = table.column("observation.state")
        if not len(col):
            continue
        state = np.asarray(col.combine_chunks().values.to_numpy(zero_copy_only=False), np.float64)
        state = state.reshape(len(col), -1)
        w, x, y, z = (state[:, i + 3 + k] for k in range(4))
        tool_z_down = -(1 - 2 * (x * x + y * y))  # -(R[2, 2]): the tool axis' component along -z
        tilt = np.degrees(np.arccos(np.clip(tool_z_down, -1.0, 1.0)))
        out.append(np.column_stack([state[:, i:i + 3], tilt]))
        index.append(table.column("episode_index").to_numpy())
    if not out:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    return np.concatenate(index), np.concatenate(out)

def _ball_voxels(centre: np.ndarray, radius: float, voxel: float) -> set[tuple[int, int, int]]:
    lo = np.floor((centre - radius) / voxel).astype(int)
    hi = np.floor((centre + radius) / voxel).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    centres = (grid + 0.5) * voxel
    keep = (np.linalg.norm(centres - centre, axis=1) <= radius) & (centres[:, 2] >= 0.0)  # above the table
    return set(map(tuple, grid[keep].tolist()))


def neighbourhood_coverage(centres: np.ndarray, points: np.ndarray, radius: float, voxel: float = VOXEL_M) -> float:
    """Mean over ``centres`` [K,3] of the fraction of cells around each that ``points`` hit: [N,3] positions
    (cells = voxels of the ball above the table) or [N,4] positions + tilt in degrees (cells = voxels x the
    four tilt bins)."""
    centres = np.asarray(centres, np.float64).reshape(-1, 3)
    points = np.asarray(points, np.float64)
    posed = points.ndim == 2 and points.shape[1] == 4
    points = points.reshape(-1, 4 if posed else 3)
    if not len(centres):
        return 0.0
    cells = np.floor(points[:, :3] / voxel).astype(int)
    bins = np.digitize(points[:, 3], TILT_BINS_DEG) if posed else np.zeros(len(points), int)
    hit = set(map(tuple, np.column_stack([cells, bins]).tolist()))
    n_bins = len(TILT_BINS_DEG) + 1 if posed else 1
    fractions = []
    for c in centres:
        ball = _ball_voxels(c, radius, voxel)
        got = sum((*v, b) in hit for v in ball for b in range(n_bins))
        fractions.append(got / (len(ball) * n_bins) if ball else 0.0)
    return float(np.mean(fractions))


def dataset_outcome(root: Path | str) -> dict[str, Any]:
    """committed, successful, rejected episodes, the success rate, and the rejects never rendered."""
    from raygen.actors._backend import NOT_RENDERED
    from raygen.pipelines.rejects import read_rejects

    root = Path(root)
    committed = successes = 0
    for path in sorted((root / "meta/raygen/shards").glob("chunk-*/file-*.json")):
        for ep in L.read_json(path)["episodes"]:
            committed += 1
            successes += bool(ep.get("success"))
    rejects = read_rejects(root, columns=["stage", "reason"]).to_pylist()
    attempts = committed + len(rejects)
    return {"committed": committed, "successful": successes, "rejected": len(rejects),
            "not_rendered": sum(r["stage"] == "generate" and str(r["reason"]).startswith(NOT_RENDERED)
                                for r in rejects),
            "success_rate": successes / attempts if attempts else 0.0}


def compare(run_root: Path | str, critical_tcp: np.ndarray, radius: float, *, source: Path | str | None = None,
            compare_with: Path | str | None = None, voxel: float = VOXEL_M) -> dict[str, Any]:
    """Success rate and neighbourhood coverage of the run, its source demos and (optionally) a regular run,
    each also over the same number of episodes (``at_n``)."""
    out: dict[str, Any] = {"critical_states": int(len(critical_tcp)), "radius_m": radius, "voxel_m": voxel}
    roots = {name: Path(root) for name, root in (("bottleneck", run_root), ("source", source),
                                                  ("regular", compare_with)) if root is not None}
    samples: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, root in list(roots.items()):
        if not (root / L.INFO).exists():
            out[name] = {"error": f"{root} is not a raygen dataset"}
            del roots[name]
            continue
        rec = dataset_outcome(root)
        samples[name] = _tcp_samples(root)
        rec["coverage"] = neighbourhood_coverage(critical_tcp, samples[name][1], radius, voxel)
        rec["path"] = str(root)
        out[name] = rec
    runs = [out[n]["committed"] for n in ("bottleneck", "regular") if n in roots]
    out["at_n"] = n = min(runs) if runs else 0
    for name, (index, points) in samples.items():
        out[name]["coverage_at_n"] = neighbourhood_coverage(critical_tcp, points[index < n], radius, voxel)
    return out
