"""How a bottleneck run compares with the demos it started from and with a regular run.

Two numbers per dataset:

- **success rate**: successful committed episodes / (committed + rejected). Rejects count as attempts
  (in a bottleneck run most are failures found on the physics-only pass, never rendered).
- **neighbourhood coverage**: for each critical state, the ball of radius ``radius_m`` (the largest
  perturbation distance) around its TCP position is cut into ``voxel_m`` cubes (5 cm); coverage is the
  fraction of those cubes that some frame's TCP of the dataset's episodes passes through, averaged over the
  critical states. A demo passes through each critical state once, along one path; recoveries from
  perturbations around it fill the neighbourhood that a policy must handle.

Reads data parquet columns only (no video). numpy and pyarrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from raygen.datasets import _layout as L

__all__ = ["compare", "dataset_outcome", "neighbourhood_coverage", "tcp_positions"]

VOXEL_M = 0.05


def tcp_positions(root: Path | str) -> np.ndarray:
    """[N,3] TCP positions of every committed frame (observation.state's eef_x, eef_y, eef_z)."""
    root = Path(root)
    info = L.read_json(root / L.INFO)
    names = list(info["features"]["observation.state"].get("names") or [])
    try:
        i = names.index("eef_x")
    except ValueError:
        raise ValueError(f"{root}: observation.state has no eef_x (names {names[:8]}...)") from None
    out = []
    for path in sorted((root / "data").glob("chunk-*/file-*.parquet")):
        col = pq.read_table(path, columns=["observation.state"]).column("observation.state")
        state = np.asarray(col.combine_chunks().values.to_numpy(zero_copy_only=False), np.float64)
        state = state.reshape(len(col), -1)
        out.append(state[:, i:i + 3])
    return np.concatenate(out) if out else np.zeros((0, 3))


def _ball_voxels(centre: np.ndarray, radius: float, voxel: float) -> set[tuple[int, int, int]]:
    lo = np.floor((centre - radius) / voxel).astype(int)
    hi = np.floor((centre + radius) / voxel).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    keep = np.linalg.norm((grid + 0.5) * voxel - centre, axis=1) <= radius
    return set(map(tuple, grid[keep].tolist()))


def neighbourhood_coverage(centres: np.ndarray, points: np.ndarray, radius: float, voxel: float = VOXEL_M) -> float:
    """Mean over ``centres`` [K,3] of the fraction of voxels in the ball around each that ``points`` [N,3] hit."""
    centres = np.asarray(centres, np.float64).reshape(-1, 3)
    if not len(centres):
        return 0.0
    hit = set(map(tuple, np.floor(np.asarray(points, np.float64).reshape(-1, 3) / voxel).astype(int).tolist()))
    fractions = []
    for c in centres:
        ball = _ball_voxels(c, radius, voxel)
        fractions.append(len(ball & hit) / len(ball) if ball else 0.0)
    return float(np.mean(fractions))


def dataset_outcome(root: Path | str) -> dict[str, Any]:
    """committed, successful, rejected episodes and the success rate of a dataset."""
    from raygen.pipelines.rejects import read_rejects

    root = Path(root)
    committed = successes = 0
    for path in sorted((root / "meta/raygen/shards").glob("chunk-*/file-*.json")):
        for ep in L.read_json(path)["episodes"]:
            committed += 1
            successes += bool(ep.get("success"))
    rejected = read_rejects(root, columns=["episode_key"]).num_rows
    attempts = committed + rejected
    return {"committed": committed, "successful": successes, "rejected": rejected,
            "success_rate": successes / attempts if attempts else 0.0}


def compare(run_root: Path | str, critical_tcp: np.ndarray, radius: float, *, source: Path | str | None = None,
            compare_with: Path | str | None = None, voxel: float = VOXEL_M) -> dict[str, Any]:
    """Success rate and neighbourhood coverage of the run, its source demos and (optionally) a regular run."""
    out: dict[str, Any] = {"critical_states": int(len(critical_tcp)), "radius_m": radius, "voxel_m": voxel}
    for name, root in (("bottleneck", run_root), ("source", source), ("regular", compare_with)):
        if root is None:
            continue
        if not (Path(root) / L.INFO).exists():
            out[name] = {"error": f"{root} is not a raygen dataset"}
            continue
        rec = dataset_outcome(root)
        rec["coverage"] = neighbourhood_coverage(critical_tcp, tcp_positions(root), radius, voxel)
        rec["path"] = str(root)
        out[name] = rec
    return out
