"""`raygen bench scale`: does the driver stay flat from 1,000 to 100,000+ episodes?

Commits synthetic pre-encoded shards (no simulation: 8x8 frames encoded once, realistic numeric columns, ~100
dimensions a frame as pick-and-place writes) through the real ShardWriter and Committer, and at each
milestone prints: seconds per commit (the mean of the last commits), the driver's RSS, the time to reopen
the dataset (a resume), and the largest quantile rank error of stats.json against exact ranks counted over
all the data (one file at a time, after the timings). Targets: commit time at the last milestone within
1.5x of that at the first, RSS growth under 200 MB, reopen under 5 s, rank error within the sketch's bound
(RANK_ERROR).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["ScalePoint", "bench_scale", "synthetic_encoded"]

TASKS = [f"pick the object {i} and place it" for i in range(20)]
FEATURES = {  # name -> per-frame shape, about what pick-and-place writes
    "contact.pads": (2, 3), "task.phase": (), "tracks3d": (3, 3), "tracks2d.cam_high": (3, 2),
    "tracks2d.cam_high.visible": (3,), "tracks2d.cam_wrist": (3, 2), "tracks2d.cam_wrist.visible": (3,),
}


@dataclass
class ScalePoint:
    episodes: int
    commit_s: float
    rss_mb: float
    reopen_s: float
    rank_error: float

    def format(self) -> str:
        return (f"{self.episodes:>8,d} episodes: {self.commit_s:.3f} s per commit, driver RSS {self.rss_mb:.0f} MB, "
                f"reopen {self.reopen_s:.2f} s, largest quantile rank error {self.rank_error:.3%}")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def synthetic_encoded(frames: int = 270):
    """A template EncodedEpisode (one 8x8 camera, no depth) and a function making fresh episodes from it."""
    from raygen.datasets._video import VideoSettings
    from raygen.datasets.encode import encode_episode
    from raygen.datasets.episode import CameraFrames, Episode

    rng = np.random.default_rng(0)
    ep = Episode(
        episode_key="template", task=TASKS[0], fps=30.0,
        state=rng.normal(size=(frames, 23)).astype(np.float32), action=rng.normal(size=(frames, 8)).astype(np.float32),
        cameras={"cam_high": CameraFrames(rgb=rng.integers(0, 255, (frames, 8, 8, 3), dtype=np.uint8),
                                          intrinsics=np.eye(3) * 8 + np.diag([0, 0, -7.0]), pose=np.eye(4))},
        gripper_pose=np.tile(np.eye(4), (frames, 1, 1)), gripper_opening=np.full(frames, 0.04),
        frame_features={k: (rng.random((frames, *shape)) > 0.5) if k.endswith("visible") else
                        rng.normal(size=(frames, *shape)).astype(np.float32) if shape else
                        rng.integers(0, 9, frames).astype(np.int64) for k, shape in FEATURES.items()},
    )
    template = encode_episode(ep, VideoSettings(codec="libx264", preset="ultrafast"), workers=1)

    def make(i: int, rng: np.random.Generator):
        cols = {}
        for name, col in template.columns.items():
            if name in ("timestamp", "frame_index"):
                cols[name] = col
            elif col.dtype == np.bool_:
                cols[name] = rng.random(col.shape) > 0.5
            elif col.dtype.kind == "i":
                cols[name] = rng.integers(0, 9, col.shape).astype(col.dtype)
            else:  # smooth random walks around a per-episode offset, like joint and pose signals
                walk = np.cumsum(rng.normal(scale=0.02, size=col.shape), axis=0) + rng.normal(size=col.shape[1:])
                cols[name] = walk.astype(col.dtype)
        return replace(template, episode_key=f"scale-{i:08d}", task=TASKS[i % len(TASKS)], columns=cols,
                       record=json.loads(json.dumps(template.record)))

    return template, make


def _rank_error(root: Path) -> float:
    """Largest |rank of a stats.json quantile in the data - q| over observation.state's dimensions, the ranks
    counted exactly over every value, one data file at a time."""
    import pyarrow.parquet as pq

    from raygen.datasets._arrow import column_values
    from raygen.datasets._stats import QUANTILES

    stats = json.loads((root / "meta/stats.json").read_text())["observation.state"]
    qv = {k: np.asarray(stats[k], dtype=np.float64) for k in QUANTILES}
    below = {k: 0 for k in QUANTILES}
    upto = {k: 0 for k in QUANTILES}
    n = 0
    for f in sorted((root / "data").rglob("*.parquet")):
        values = column_values(pq.read_table(f, columns=["observation.state"]).column(0))
        n += len(values)
        for k in QUANTILES:
            below[k] = below[k] + (values < qv[k]).sum(axis=0)
            upto[k] = upto[k] + (values <= qv[k]).sum(axis=0)
    worst = 0.0
    for k, q in QUANTILES.items():
        lo, hi = below[k] / n, upto[k] / n
        worst = max(worst, float(np.where(q < lo, lo - q, np.where(q > hi, q - hi, 0.0)).max()))
    return worst


def bench_scale(episodes: int = 100_000, milestones: tuple[int, ...] = (1_000, 10_000, 100_000),
                shard_size: int = 50, frames: int = 270, root: str | Path | None = None,
                keep: bool = False, log=print) -> list[ScalePoint]:
    from raygen.datasets._video import VideoSettings
    from raygen.datasets.commit import Committer
    from raygen.datasets.shard import ShardWriter

    base = Path(root) if root else Path(tempfile.mkdtemp(prefix="raygen-bench-scale-"))
    ds = base / "ds"
    shutil.rmtree(ds, ignore_errors=True)
    _, make = synthetic_encoded(frames)
    video = VideoSettings(codec="libx264", preset="ultrafast")
    rng = np.random.default_rng(1)
    committer = Committer(ds)
    points: list[ScalePoint] = []
    recent: list[float] = []
    done = 0
    targets = sorted(m for m in milestones if m <= episodes)
    try:
        while done < episodes:
            n = min(shard_size, episodes - done)
            writer = ShardWriter(committer.staging_dir, video)
            for i in range(done, done + n):
                writer.add(make(i, rng))
            staged = writer.finalize()
            t0 = time.perf_counter()
            committer.commit(staged)
            recent = (recent + [time.perf_counter() - t0])[-20:]
            done += n
            if targets and done >= targets[0]:
                targets.pop(0)
                committer.close()
                t1 = time.perf_counter()
                committer = Committer(ds)  # a resume: reads the ledger and the saved statistics
                reopen = time.perf_counter() - t1
                point = ScalePoint(done, float(np.mean(recent)), _rss_mb(), reopen, _rank_error(ds))
                points.append(point)
                log(point.format())
    finally:
        committer.close()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return points


def verdict(points: list[ScalePoint]) -> list[str]:
    from raygen.datasets._stats import RANK_ERROR

    if len(points) < 2:
        return []
    first, last = points[0], points[-1]
    ratio = last.commit_s / first.commit_s
    growth = last.rss_mb - first.rss_mb
    worst = max(p.rank_error for p in points)
    ok = lambda b: "within" if b else "OVER"  # noqa: E731
    return [f"commit time {first.episodes:,d} -> {last.episodes:,d}: x{ratio:.2f} ({ok(ratio <= 1.5)} the 1.5x target)",
            f"RSS growth: {growth:+.0f} MB ({ok(growth < 200)} the 200 MB target)",
            f"reopen at {last.episodes:,d}: {last.reopen_s:.2f} s ({ok(last.reopen_s < 5)} the 5 s target)",
            f"largest rank error: {worst:.3%} ({ok(worst <= RANK_ERROR)} the sketch's bound {RANK_ERROR:.2%})"]
