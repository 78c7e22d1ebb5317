"""ShardWriter: K encoded episodes -> one staged shard folder.

A staged shard holds everything one (chunk, file) position of the dataset
will hold, without the global numbers (episode and frame indices, task
indices, chunk/file) that only the committer may assign:

    <staging>/<shard_id>/
      manifest.json           schema, episodes (key, task, length, timestamps,
                              per-episode image stats), histograms
      frames.parquet          per-frame columns, one row group per episode
      videos/<camera>.mp4     colour segments joined by stream copy
      videos/<camera>_depth.mp4   LeRobot >= 0.6 depth (HEVC gray12le codes), when asked for
      depth/<camera>.mkv      FFV1 depth segments joined by stream copy
      flow.parquet            normalized flow (only when episodes carry it)

The writer is a state machine: open -> add()* -> finalize(). It builds in
``<shard_id>.partial`` and renames to ``<shard_id>`` at the end, so a staged
shard either is complete or is visibly not. ``finalize`` is safe to call
twice; ``abort`` removes a partial shard.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygen.datasets._arrow import to_arrow
from raygen.datasets._layout import atomic_write_json, new_id
from raygen.datasets._stats import hist_stats, stats_to_json
from raygen.datasets._video import VideoSettings, concat_segments, probe_timestamps, window_problem
from raygen.datasets.encode import EncodedEpisode, FeatureSpec
from raygen.datasets.lerobot_depth import DepthQuantizer, DepthStats

__all__ = ["ShardWriter", "StagedShard", "depth_stream", "frames_schema"]

MANIFEST = "manifest.json"
FRAMES = "frames.parquet"
FLOW = "flow.parquet"

_ARROW = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}


def _column_type(spec: FeatureSpec) -> pa.DataType:
    base = _ARROW[spec.dtype]
    return base if tuple(spec.shape) == (1,) else pa.list_(base, spec.shape[0])


def frames_schema(features: dict[str, FeatureSpec]) -> pa.Schema:
    """Arrow schema of the per-frame columns: fixed-size lists for vectors, scalars for shape (1,)."""
    fields = [pa.field(name, _column_type(spec)) for name, spec in features.items()]
    fields += [pa.field("timestamp", pa.float32()), pa.field("frame_index", pa.int64())]
    return pa.schema(fields)


@dataclass(frozen=True)
class StagedShard:
    """A finalized shard in staging, ready for the committer."""

    path: Path
    shard_id: str

    @property
    def manifest(self) -> dict[str, Any]:
        with open(self.path / MANIFEST, encoding="utf-8") as f:
            return json.load(f)


class ShardWriter:
    """Collect encoded episodes and write them as one staged shard."""

    def __init__(self, staging_dir: Path | str, video: VideoSettings, shard_id: str | None = None):
        self.staging_dir = Path(staging_dir)
        self.video = video
        self.shard_id = shard_id or new_id()
        self._episodes: list[EncodedEpisode] = []
        self._state = "open"
        self._result: StagedShard | None = None

    @property
    def partial_path(self) -> Path:
        return self.staging_dir / f"{self.shard_id}.partial"

    def __len__(self) -> int:
        return len(self._episodes)

    def add(self, episode: EncodedEpisode) -> None:
        if self._state != "open":
            raise RuntimeError(f"shard {self.shard_id} is {self._state}; cannot add episode {episode.episode_key!r}")
        if self._episodes:
            _check_same_layout(self._episodes[0], episode)
        if any(e.episode_key == episode.episode_key for e in self._episodes):
            raise ValueError(f"episode {episode.episode_key!r} is already in shard {self.shard_id}")
        self._episodes.append(episode)

    def finalize(self) -> StagedShard | None:
        """Write the shard; returns None when no episode was added. Safe to call twice."""
        if self._state == "finalized":
            return self._result
        if self._state == "aborted":
            return None
        if not self._episodes:
            self._state = "finalized"
            return None
        try:
            self._result = self._write()
        except BaseException:
            self.abort()
            raise
        self._state = "finalized"
        self._episodes = []
        return self._result

    def abort(self) -> None:
        shutil.rmtree(self.partial_path, ignore_errors=True)
        self._state = "aborted"
        self._episodes = []

    # ----------------------------------------------------------------------------------------
    def _write(self) -> StagedShard:
        eps = self._episodes
        first = eps[0]
        tmp = self.partial_path
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fps = first.fps
        lengths = [e.length for e in eps]

        schema = frames_schema(first.features)
        with pq.ParquetWriter(tmp / FRAMES, schema) as w:
            for e in eps:
                arrays = [to_arrow(e.columns[f.name], f.type) for f in schema]
                w.write_table(pa.Table.from_arrays(arrays, schema=schema))

        starts = np.concatenate([[0], np.cumsum(lengths)]) / fps
        for cam in first.videos:
            (tmp / "videos").mkdir(exist_ok=True)
            _join(tmp / "videos" / f"{cam}.mp4", [e.videos[cam] for e in eps], lengths, starts, fps, 1e-4)
        for cam in first.depth:
            (tmp / "depth").mkdir(exist_ok=True)
            _join(tmp / "depth" / f"{cam}.mkv", [e.depth[cam] for e in eps], lengths, starts, fps, 1.1e-3)
        for cam in first.depth_videos:  # LeRobot >= 0.6 depth: a video stream like the colour ones
            (tmp / "videos").mkdir(exist_ok=True)
            _join(tmp / "videos" / f"{depth_stream(cam)}.mp4", [e.depth_videos[cam] for e in eps], lengths,
                  starts, fps, 1e-4)
        if first.flow is not None:
            _write_flow(tmp / FLOW, eps)

        starts = np.concatenate([[0], np.cumsum(lengths)])
        episodes = []
        shard_hist = {cam: np.zeros_like(h) for cam, h in first.histograms.items()}
        shard_depth: dict[str, DepthStats] = {}
        quantizer = DepthQuantizer()
        for i, e in enumerate(eps):
            img_stats = {}
            for cam, h in e.histograms.items():
                img_stats[cam] = stats_to_json(hist_stats(h, e.length))
                shard_hist[cam] += h
            for cam, d in e.depth_stats.items():
                ds = DepthStats.from_json(d)
                img_stats[depth_stream(cam)] = stats_to_json(ds.stats(e.length, quantizer))
                shard_depth[cam] = shard_depth[cam].merge(ds) if cam in shard_depth else ds
            episodes.append(
                {
                    "episode_key": e.episode_key,
                    "task": e.task,
                    "length": e.length,
                    "success": e.success,
                    "from_timestamp": float(starts[i] / fps),
                    "to_timestamp": float(starts[i + 1] / fps),
                    "image_stats": img_stats,
                    "record": e.record,
                }
            )
        manifest = {
            "shard_id": self.shard_id,
            "fps": fps,
            "robot_type": first.robot_type,
            "features": {
                k: {"dtype": v.dtype, "shape": list(v.shape), "names": v.names, "source_shape": v.source_shape}
                for k, v in first.features.items()
            },
            "cameras": {cam: _camera_layout(first, cam) for cam in first.resolution},
            "video": self.video.to_dict(),
            "has_flow": first.flow is not None,
            "episodes": episodes,
            "histograms": {cam: h.tolist() for cam, h in shard_hist.items()},
            "depth_stats": {cam: d.to_json() for cam, d in shard_depth.items()},
        }
        atomic_write_json(tmp / MANIFEST, manifest, indent=None)
        final = self.staging_dir / self.shard_id
        tmp.rename(final)
        return StagedShard(final, self.shard_id)


def _camera_layout(e: EncodedEpisode, cam: str) -> dict[str, Any]:
    """What a camera is in the shard: size, frames, depth and (when the backend says) how depth was made."""
    h, w = e.resolution[cam]
    out: dict[str, Any] = {"height": h, "width": w, "has_video": cam in e.videos, "has_depth": cam in e.depth}
    method = e.record["cameras"].get(cam, {}).get("info", {}).get("depth_method")
    if method and cam in e.depth:
        out["depth_method"] = method
    if cam in e.depth_videos:
        out["lerobot_depth"] = True
    return out


def depth_stream(camera: str) -> str:
    """The stream name of a camera's LeRobot depth video (its feature: observation.images.<camera>_depth)."""
    return f"{camera}_depth"


def _join(path: Path, segments: list[bytes], lengths: list[int], starts: np.ndarray, fps: float, tol: float) -> None:
    """Stream-copy the segments into ``path`` and check every episode's frames sit where metadata says."""
    concat_segments(segments, lengths, fps, path)
    ts, _ = probe_timestamps(path)
    for i, n in enumerate(lengths):
        problem = window_problem(ts, float(starts[i]), n, fps, tol)
        if problem:
            raise RuntimeError(f"{path.name}: joining episode {i} of the shard went wrong: {problem}")


def _write_flow(path: Path, eps: list[EncodedEpisode]) -> None:
    n_tracks = eps[0].flow.shape[1]
    typ = pa.list_(pa.float32(), n_tracks * 3)
    local, step, flow = [], [], []
    for i, e in enumerate(eps):
        if e.flow is None or e.flow.shape[1:] != (n_tracks, 3):
            got = None if e.flow is None else list(e.flow.shape)
            raise ValueError(f"episode {e.episode_key!r}: flow shape {got}, the shard has [M,{n_tracks},3]")
        m = e.flow.shape[0]
        local.append(np.full(m, i, dtype=np.int64))
        step.append(np.arange(m, dtype=np.int64))
        flow.append(e.flow.reshape(m, -1))
    table = pa.table(
        {
            "episode_index": np.concatenate(local),
            "step": np.concatenate(step),
            "flow": to_arrow(np.concatenate(flow), typ),
        }
    )
    pq.write_table(table, path)


def _check_same_layout(a: EncodedEpisode, b: EncodedEpisode) -> None:
    problems = []
    if a.fps != b.fps:
        problems.append(f"fps {b.fps} != {a.fps}")
    if a.robot_type != b.robot_type:
        problems.append(f"robot_type {b.robot_type!r} != {a.robot_type!r}")
    if a.features != b.features:
        diff = sorted(set(a.features.items()) ^ set(b.features.items()))
        problems.append(f"per-frame features differ: {[d[0] for d in diff]}")
    if a.resolution != b.resolution:
        problems.append(f"cameras/resolution {b.resolution} != {a.resolution}")
    if set(a.videos) != set(b.videos):
        problems.append(f"cameras with frames {sorted(b.videos)} != {sorted(a.videos)}")
    if set(a.depth) != set(b.depth):
        problems.append(f"depth cameras {sorted(b.depth)} != {sorted(a.depth)}")
    if set(a.depth_videos) != set(b.depth_videos):
        problems.append(f"LeRobot depth cameras {sorted(b.depth_videos)} != {sorted(a.depth_videos)}")
    if (a.flow is None) != (b.flow is None):
        problems.append("flow present in one episode but not the other")
    if problems:
        raise ValueError(
            f"episode {b.episode_key!r} does not match the shard's first episode {a.episode_key!r}: "
            + "; ".join(problems)
        )
