"""The encode stage: an Episode becomes an EncodedEpisode (bytes and small columns).

After this stage no raw frame travels any further: colour is an MP4 segment,
depth an FFV1 segment, image statistics a histogram, and the per-frame
numbers are the columns of the data parquet. Shards are built from these.
"""

from __future__ import annotations

import json
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raygen.datasets._stats import image_histogram
from raygen.datasets._video import VideoSettings, encode_depth, encode_rgb
from raygen.datasets.episode import (
    CAMERA_POSE,
    GRIPPER_OPENING,
    GRIPPER_POSE,
    SOURCE_TIMESTAMP,
    Episode,
    validate_episode,
)
from raygen.datasets.lerobot_depth import DepthQuantizer, DepthStats, encode_lerobot_depth

__all__ = ["EncodedEpisode", "FeatureSpec", "encode_episode"]

IMAGE_STATS_STRIDE = 3
"""Image statistics count every pixel of frames 0, 3, 6, ... of each episode (LeRobot samples frames too).
The same stride everywhere keeps the merged statistics exactly those of that subset of the dataset."""


@dataclass(frozen=True)
class FeatureSpec:
    """dtype and per-frame shape of one data-parquet column (LeRobot ``features`` entry)."""

    dtype: str
    shape: tuple[int, ...]
    names: tuple[str, ...] | None = None
    source_shape: tuple[int, ...] | None = None
    """Original per-frame shape when the column is stored flattened (e.g. (3, 2) for [T,3,2])."""

    def to_info(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "names": list(self.names) if self.names else None}


@dataclass(eq=False)
class EncodedEpisode:
    """One episode after encoding: what the shard writer needs and nothing more."""

    episode_key: str
    task: str
    fps: float
    success: bool
    robot_type: str
    columns: dict[str, np.ndarray]
    """Per-frame data columns, [T, D] or [T] (observation.state, action, timestamp, extras)."""
    features: dict[str, FeatureSpec]
    """Spec of every entry of ``columns``."""
    videos: dict[str, bytes]
    """Camera -> MP4 segment (cameras with frames only)."""
    depth: dict[str, bytes]
    """Camera -> FFV1/Matroska segment (uint16 mm)."""
    histograms: dict[str, np.ndarray]
    """Camera -> [3,256] pixel histogram of every IMAGE_STATS_STRIDE-th frame (cameras with frames only)."""
    record: dict[str, Any]
    """JSON metadata: provenance, metrics, gripper geometry, camera calibration, depth checksums."""
    flow: np.ndarray | None = None
    resolution: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Every camera -> (height, width), those without frames too."""
    depth_videos: dict[str, bytes] = field(default_factory=dict)
    """Camera -> LeRobot >= 0.6 depth segment (HEVC gray12le codes), when output.lerobot_depth is on."""
    depth_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Camera -> DepthStats (JSON) of the raw depth of every IMAGE_STATS_STRIDE-th frame, for those."""

    @property
    def length(self) -> int:
        return int(self.columns["timestamp"].shape[0])

    # Ray Data rows ------------------------------------------------------------------------
    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "episode_key": self.episode_key,
            "task": self.task,
            "fps": float(self.fps),
            "success": bool(self.success),
            "robot_type": self.robot_type,
            "record": json.dumps(self.record),
            "features": json.dumps(
                {k: [v.dtype, list(v.shape), v.names, v.source_shape] for k, v in self.features.items()}
            ),
            "resolution": json.dumps({k: list(v) for k, v in self.resolution.items()}),
            "depth_stats": json.dumps(self.depth_stats),
        }
        for k, v in self.columns.items():
            row["col." + k] = v
        for k, v in self.videos.items():
            row["video." + k] = v
        for k, v in self.depth.items():
            row["depth." + k] = v
        for k, v in self.histograms.items():
            row["hist." + k] = v
        for k, v in self.depth_videos.items():
            row["ldepth." + k] = v
        if self.flow is not None:
            row["flow"] = self.flow
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EncodedEpisode:
        feats = {
            k: FeatureSpec(d, tuple(s), tuple(n) if n else None, tuple(ss) if ss else None)
            for k, (d, s, n, ss) in json.loads(str(row["features"])).items()
        }

        def pick(prefix: str, conv: Any) -> dict[str, Any]:
            return {k[len(prefix):]: conv(v) for k, v in row.items() if k.startswith(prefix)}

        return cls(
            episode_key=str(row["episode_key"]),
            task=str(row["task"]),
            fps=float(row["fps"]),
            success=bool(row["success"]),
            robot_type=str(row["robot_type"]),
            record=json.loads(str(row["record"])),
            features=feats,
            columns=pick("col.", np.asarray),
            videos=pick("video.", bytes),
            depth=pick("depth.", bytes),
            histograms=pick("hist.", np.asarray),
            flow=None if row.get("flow") is None else np.asarray(row["flow"]),
            resolution={k: tuple(v) for k, v in json.loads(str(row["resolution"])).items()},
            depth_videos=pick("ldepth.", bytes),
            depth_stats=json.loads(str(row.get("depth_stats") or "{}")),
        )


def _flat(arr: np.ndarray, dtype: Any) -> np.ndarray:
    a = np.asarray(arr)
    return np.ascontiguousarray(a.reshape(a.shape[0], -1).astype(dtype, copy=False))


def _names(episode: Episode, feature: str) -> tuple[str, ...] | None:
    names = episode.names.get(feature)
    return tuple(names) if names else None


def _crc32(frames: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(frames).data):08x}"


def _dtype_name(a: np.ndarray) -> str:
    return "bool" if a.dtype == np.bool_ else str(a.dtype)


def encode_episode(
    episode: Episode,
    video: VideoSettings | None = None,
    *,
    validate: bool = True,
    workers: int = 2,
    lerobot_depth: DepthQuantizer | None = None,
) -> EncodedEpisode:
    """Encode every camera (colour to MP4, depth to FFV1) and lay out the per-frame columns.

    The streams of one episode are encoded concurrently on ``workers`` threads
    (FFmpeg encoders run without the GIL). ``lerobot_depth``: also each depth as LeRobot >= 0.6 reads it
    (raygen.datasets.lerobot_depth), beside the bit-exact FFV1 copy.
    """
    video = video or VideoSettings()
    if validate:
        validate_episode(episode)
    fps = float(episode.fps)
    t = episode.length
    cols: dict[str, np.ndarray] = {
        "observation.state": np.ascontiguousarray(episode.state, dtype=np.float32),
        "action": np.ascontiguousarray(episode.action, dtype=np.float32),
        "timestamp": (np.arange(t, dtype=np.float64) / fps).astype(np.float32),
        "frame_index": np.arange(t, dtype=np.int64),
        GRIPPER_POSE: _flat(episode.gripper_pose, np.float32),
        GRIPPER_OPENING: _flat(episode.gripper_opening, np.float32),
    }
    feats: dict[str, FeatureSpec] = {
        "observation.state": FeatureSpec("float32", (cols["observation.state"].shape[1],),
                                         _names(episode, "observation.state")),
        "action": FeatureSpec("float32", (cols["action"].shape[1],), _names(episode, "action")),
        GRIPPER_POSE: FeatureSpec("float32", (16,), source_shape=(4, 4)),
        GRIPPER_OPENING: FeatureSpec("float32", (1,)),
    }
    if episode.timestamp is not None:  # the source's own clock, kept beside LeRobot's frame_index / fps
        cols[SOURCE_TIMESTAMP] = np.asarray(episode.timestamp, dtype=np.float64)
        feats[SOURCE_TIMESTAMP] = FeatureSpec("float64", (1,))
    cameras_rec: dict[str, Any] = {}
    for name, cam in episode.cameras.items():
        rec = {
            "intrinsics": np.asarray(cam.intrinsics, dtype=np.float64).tolist(),
            "distortion": np.asarray(cam.distortion, dtype=np.float64).tolist(),
            "moving": cam.moving,
            "height": cam.resolution[0],
            "width": cam.resolution[1],
            "has_video": cam.rgb is not None,
            "has_depth": cam.depth is not None,
        }
        if cam.info:
            rec["info"] = cam.info
        if cam.moving:
            key = CAMERA_POSE.format(camera=name)
            cols[key] = _flat(cam.pose, np.float32)
            feats[key] = FeatureSpec("float32", (16,), source_shape=(4, 4))
        else:
            rec["pose"] = np.asarray(cam.pose, dtype=np.float64).tolist()
        cameras_rec[name] = rec
    for fname, arr in episode.frame_features.items():
        a = np.asarray(arr)
        dt = np.bool_ if a.dtype == np.bool_ else (np.float32 if a.dtype.kind == "f" else np.int64)
        cols[fname] = _flat(a, dt) if a.ndim > 1 else a.astype(dt, copy=False)
        shape = (int(np.prod(a.shape[1:])),) if a.ndim > 1 else (1,)
        feats[fname] = FeatureSpec(_dtype_name(cols[fname]), shape, _names(episode, fname),
                                   source_shape=tuple(a.shape[1:]) or None)

    jobs: dict[tuple[str, str], Any] = {}
    framed = {name: cam for name, cam in episode.cameras.items() if cam.rgb is not None}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # Longest jobs first; histograms and checksums (cv2 and zlib release the GIL) fill the gaps.
        for name, cam in framed.items():
            jobs[("video", name)] = pool.submit(encode_rgb, cam.rgb, fps, video)
        for name, cam in framed.items():
            if cam.depth is not None:
                jobs[("depth", name)] = pool.submit(encode_depth, cam.depth, fps, video.threads)
                jobs[("crc", name)] = pool.submit(_crc32, cam.depth)
                if lerobot_depth is not None:
                    jobs[("ldepth", name)] = pool.submit(encode_lerobot_depth, cam.depth, fps, lerobot_depth)
                    jobs[("dstats", name)] = pool.submit(DepthStats.of, cam.depth[::IMAGE_STATS_STRIDE],
                                                         lerobot_depth)
            jobs[("hist", name)] = pool.submit(image_histogram, cam.rgb[::IMAGE_STATS_STRIDE])
        done = {k: f.result() for k, f in jobs.items()}
    videos = {n: done[("video", n)] for n in framed}
    depth = {n: v for (kind, n), v in done.items() if kind == "depth"}
    hists = {n: done[("hist", n)] for n in framed}
    checks = {n: v for (kind, n), v in done.items() if kind == "crc"}
    for name, crc in checks.items():
        cameras_rec[name]["depth_crc32"] = crc
    record = {
        "provenance": episode.provenance,
        "metrics": episode.metrics,
        "gripper_geometry": episode.gripper_geometry,
        "cameras": cameras_rec,
        "frame_features": {k: list(np.asarray(v).shape[1:]) for k, v in episode.frame_features.items()},
        "flow_shape": None if episode.flow is None else list(np.asarray(episode.flow).shape),
    }
    return EncodedEpisode(
        episode_key=episode.episode_key,
        task=episode.task,
        fps=fps,
        success=bool(episode.success),
        robot_type=episode.robot_type,
        columns=cols,
        features=feats,
        videos=videos,
        depth=depth,
        histograms=hists,
        record=record,
        flow=None if episode.flow is None else np.asarray(episode.flow, dtype=np.float32),
        resolution={n: cam.resolution for n, cam in episode.cameras.items()},
        depth_videos={n: v for (kind, n), v in done.items() if kind == "ldepth"},
        depth_stats={n: v.to_json() for (kind, n), v in done.items() if kind == "dstats"},
    )
