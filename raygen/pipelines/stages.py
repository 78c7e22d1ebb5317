"""Ray Data stages between the simulator hosts and the driver: quality, flow, diversity, encode.

Each stage takes one episode row (batch_size=1) and returns it extended, or an empty batch when the
episode is rejected; a rejected episode (or a host's error row) is written as a small JSON record
under ``<dataset>/.staging/rejects/`` that the driver folds into meta/raygen/rejects/ (raygen.pipelines.rejects).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from raygen._rows import batch_to_row, row_to_batch
from raygen.actors.cores import StageCores
from raygen.datasets._layout import atomic_write_json
from raygen.datasets._video import VideoSettings
from raygen.datasets.encode import encode_episode
from raygen.datasets.episode import Episode, episode_from_row, episode_to_row
from raygen.datasets.lerobot_depth import DepthQuantizer
from raygen.pipelines.flow import add_flow
from raygen.pipelines.quality import QualitySettings, assess

__all__ = ["DiversityStage", "EncodeStage", "FlowStage", "QualityFlowStage", "QualityStage", "record_reject"]

WORKSPACE = ((0.2, 0.8), (-0.4, 0.4), (0.0, 0.4))  # metres: the region cells are counted in
CELL_M = 0.05
DESCRIPTOR_POINTS = 32


def record_reject(rejects_dir: str | Path, key: str, stage: str, reason: str, **extra: Any) -> None:
    atomic_write_json(Path(rejects_dir) / f"{key}.json",
                      {"episode_key": key, "stage": stage, "reason": reason, **extra}, indent=None)


def spent(metrics: dict[str, Any]) -> dict[str, float]:
    """What an episode has cost so far: host seconds (GPU-seconds = this x GPUs per host) and CPU-seconds."""
    return {"host_s": float(metrics.get("host.episode_s", 0.0)),
            "cpu_s": sum(float(v) for k, v in metrics.items()
                         if (k.startswith("cpu.") or k == "host.cpu_s") and isinstance(v, int | float))}


class QualityStage:
    """Score each episode; reject below min_score (and record host error rows as rejects)."""

    def __init__(self, settings: QualitySettings, rejects_dir: str):
        self.settings = settings
        self.rejects_dir = rejects_dir

    def check(self, row: dict[str, Any]) -> Episode | None:
        """The episode if it passes, else None (its reject recorded)."""
        key = str(row["episode_key"])
        if row.get("stopped"):
            return None  # the run is stopping: neither made nor rejected, the next run makes it
        if row.get("error") and row.get("fatal"):
            raise RuntimeError(f"the simulator cannot start, so no episode can be made: {row['error']}")
        if row.get("error"):
            timing = json.loads(row.get("host_timing") or "{}")
            record_reject(self.rejects_dir, key, "generate", str(row["error"]), attempts=int(row.get("attempts", 0)),
                          stderr_tail=str(row.get("stderr_tail", ""))[-4000:],
                          host_s=float(timing.get("host_total_s", 0.0)), cpu_s=float(timing.get("cpu_s", 0.0)))
            return None
        t0, c0 = time.perf_counter(), time.process_time()
        ep = episode_from_row(row)
        report = assess(ep, self.settings)
        ep.metrics.update(report.metrics)
        ep.metrics["host.attempts"] = int(row.get("attempts", 1))
        ep.metrics["timing.quality_s"] = time.perf_counter() - t0
        ep.metrics["cpu.quality_s"] = time.process_time() - c0
        if not report.accepted:
            record_reject(self.rejects_dir, key, "quality", "; ".join(report.reasons), score=report.score,
                          **spent(ep.metrics))
            return None
        return ep


class FlowStage:
    """Gripper tracks in 3D, their projection in every camera, and the normalized flow."""

    def __init__(self, step_m: float = 0.001):
        self.step_m = step_m

    def flow(self, ep: Episode) -> Episode:
        t0, c0 = time.perf_counter(), time.process_time()
        ep = add_flow(ep, self.step_m)
        ep.metrics["timing.flow_s"] = time.perf_counter() - t0
        ep.metrics["cpu.flow_s"] = time.process_time() - c0
        return ep


class QualityFlowStage:
    """Quality, then flow for the episodes that pass, in one actor: the frames cross the object store once."""

    def __init__(self, settings: QualitySettings, rejects_dir: str, step_m: float = 0.001, pin: bool = False):
        self.quality, self.flow = QualityStage(settings, rejects_dir), FlowStage(step_m)
        self.cores = StageCores(pin)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.cores.apply()
        ep = self.quality.check(batch_to_row(batch))
        return row_to_batch(episode_to_row(self.flow.flow(ep))) if ep is not None else {}


def trajectory_descriptor(ep: Episode) -> np.ndarray:
    """The gripper centroid path resampled to DESCRIPTOR_POINTS points by time: [32*3]."""
    tracks = ep.frame_features.get("tracks3d")
    path = np.asarray(tracks)[:, 0] if tracks is not None else np.asarray(ep.gripper_pose)[:, :3, 3]
    t = np.linspace(0, len(path) - 1, DESCRIPTOR_POINTS)
    return np.stack([np.interp(t, np.arange(len(path)), path[:, i]) for i in range(3)], axis=1).reshape(-1)


def workspace_cells(ep: Episode) -> list[int]:
    tracks = ep.frame_features.get("tracks3d")
    path = np.asarray(tracks)[:, 0] if tracks is not None else np.asarray(ep.gripper_pose)[:, :3, 3]
    lo = np.array([b[0] for b in WORKSPACE])
    dims = np.array([int(round((b[1] - b[0]) / CELL_M)) for b in WORKSPACE])
    idx = np.floor((path - lo) / CELL_M).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < dims), axis=1)
    flat = np.ravel_multi_index(idx[inside].T, dims) if inside.any() else np.array([], np.int64)
    return sorted(set(flat.tolist()))


class DiversityStage:
    """One stateful actor: novelty of each episode against those it has seen (RMS distance of trajectory
    descriptors, metres), new workspace cells, and optional near-duplicate rejection.

    Memory and time per episode stay bounded: the reference set holds at most ``reference_cap`` descriptors
    (every one up to then; past it, a uniform sample of all seen, each episode replacing a slot with
    probability cap/seen, decided by a hash of its key). It starts from ``reference``, the sample of the
    dataset's committed episodes the diversity report keeps (``committed`` of them), so a resumed run
    compares with what is already there. An episode with nothing to compare with (the dataset's first) has
    no novelty."""

    def __init__(self, reject_duplicates: bool, threshold: float, rejects_dir: str, pin: bool = False,
                 reference_cap: int = 20_000, reference: np.ndarray | None = None, committed: int = 0):
        self.reject_duplicates, self.threshold, self.rejects_dir = reject_duplicates, threshold, rejects_dir
        self.cap = int(reference_cap)
        self.reference = np.zeros((0, DESCRIPTOR_POINTS * 3))  # grows to [cap, 96] (15 MB), then stays
        self.kept = 0
        self.seen = 0
        seed = np.zeros((0, DESCRIPTOR_POINTS * 3)) if reference is None else np.asarray(reference, np.float64)
        if len(seed):
            n = min(len(seed), self.cap)
            self.reference = seed[:n].copy()
            self.kept = n
            self.seen = max(int(committed), n)
        self.cells: set[int] = set()
        self.cores = StageCores(pin)

    def _remember(self, key: str, d: np.ndarray) -> None:
        self.seen += 1
        if self.kept < self.cap:
            if self.kept == len(self.reference):
                grown = np.zeros((min(self.cap, max(64, 2 * self.kept)), d.size))
                grown[: self.kept] = self.reference[: self.kept]
                self.reference = grown
            self.reference[self.kept] = d
            self.kept += 1
            return
        slot = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % self.seen
        if slot < self.cap:  # reservoir sampling: every episode seen is equally likely to be in the sample
            self.reference[slot] = d

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.cores.apply()
        ep = episode_from_row(batch_to_row(batch))
        d = trajectory_descriptor(ep)
        novelty = None
        if self.kept:
            ref = self.reference[: self.kept]
            novelty = float(np.sqrt(((ref - d) ** 2).reshape(self.kept, -1, 3).sum(axis=2).mean(axis=1)).min())
        cells = workspace_cells(ep)
        new_cells = len(set(cells) - self.cells)
        if self.reject_duplicates and novelty is not None and novelty < self.threshold:
            record_reject(self.rejects_dir, ep.episode_key, "diversity",
                          f"near-duplicate (novelty {novelty:.4f} m < {self.threshold})", novelty=novelty,
                          **spent(ep.metrics))
            return {}
        self._remember(ep.episode_key, d)
        self.cells |= set(cells)
        if novelty is not None:
            ep.metrics["diversity.novelty"] = novelty
        ep.metrics.update({"diversity.new_cells": new_cells,
                           "diversity.cells": json.dumps(cells),
                           "diversity.descriptor": json.dumps(np.round(d, 4).tolist())})
        return row_to_batch(episode_to_row(ep))


class EncodeStage:
    """Frames -> encoded segments. ``threads`` (the CPUs Ray reserved for the stage) sizes the pool of streams
    encoded at once and FFmpeg's thread count; libsvtav1 ignores the latter and sizes its own pool. With
    ``pin`` every thread, the encoders' too, stays off the simulators' cores (raygen.actors.cores)."""

    def __init__(self, video: VideoSettings, threads: int = 1, pin: bool = False, lerobot_depth: bool = False):
        self.threads = max(1, int(threads))
        self.video = video if video.threads else dataclasses.replace(video, threads=self.threads)
        self.cores = StageCores(pin)
        self.lerobot_depth = DepthQuantizer() if lerobot_depth else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.cores.apply()
        t0, c0 = time.perf_counter(), time.process_time()
        enc = encode_episode(episode_from_row(batch_to_row(batch)), self.video, workers=self.threads,
                             lerobot_depth=self.lerobot_depth)
        enc.record["metrics"]["timing.encode_s"] = time.perf_counter() - t0
        enc.record["metrics"]["cpu.encode_s"] = time.process_time() - c0
        return row_to_batch(enc.to_row())
