"""The episode contract: one robot episode as typed numpy arrays plus metadata.

An :class:`Episode` is what a backend produces and what every stage reads and
extends. :func:`validate_episode` checks one against the contract and reports
every problem at once; :func:`episode_to_row` / :func:`episode_from_row` map it
to and from a flat row of numpy arrays and scalars so it can travel through
Ray Data.

Conventions (see ARCHITECTURE.md "The episode contract"):

- ``T`` frames; per-frame arrays have ``T`` as their first axis.
- Depth is ``uint16`` millimetres, 0 = invalid.
- Camera intrinsics are OpenCV ``K`` ([3,3]); distortion is OpenCV
  ``k1, k2, p1, p2, k3``; the camera pose is camera-to-robot-base with OpenCV
  axes (x right, y down, z forward), [4,4] when fixed or [T,4,4] when it moves.
- A camera may carry no frames at all (``rgb=None`` with its ``size``): its
  calibration and poses still travel, so tracks project into it, but nothing
  is encoded (DROID's metadata mode).
- The gripper pose is the flange pose in the robot base frame, [T,4,4];
  the opening is the finger gap in metres, [T].
"""

from __future__ import annotations

import json
import numbers
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CameraFrames",
    "Episode",
    "EpisodeValidationError",
    "continuous_quaternions",
    "episode_from_row",
    "episode_to_row",
    "quaternion_slices",
    "validate_episode",
]

QUATERNION_SUFFIXES = ("qw", "qx", "qy", "qz")
"""Four consecutive dimension names ending in these (e.g. eef_qw, eef_qx, eef_qy, eef_qz) mark a quaternion
(w, x, y, z). Stored quaternions are continuous along an episode: q and -q are the same rotation, but a
policy regressing the numbers sees a jump of up to 2 where the sign flips."""

# Data-parquet columns the writer derives from every episode. They sit outside the "observation." and
# "action" prefixes on purpose: LeRobot turns every "observation.*" feature into a policy input.
GRIPPER_POSE = "gripper.pose"
GRIPPER_OPENING = "gripper.opening"
CAMERA_POSE = "cameras.{camera}.pose"
SOURCE_TIMESTAMP = "timestamp.source"
"""Where an episode's own timestamps go: LeRobot's `timestamp` column must be frame_index / fps."""
RESERVED_COLUMNS = frozenset(
    {"observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index",
     GRIPPER_POSE, GRIPPER_OPENING, SOURCE_TIMESTAMP}
)
MAX_FPS = 240.0  # the highest frame rate the video encoders accept (libsvtav1)
MIN_SIDE = 8  # smallest image side every encoder accepts
MAX_DURATION_S = 2048.0  # float32 timestamps keep 1e-4 s precision only below this
_CAMERA_POSE_RE = re.compile(r"^cameras\.[A-Za-z0-9_]+\.pose$")

_NAME_RE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_CAMERA_RE = re.compile(r"^[A-Za-z0-9_]+$")
_META_SCALAR = (str, int, float, bool, type(None))


@dataclass(eq=False)
class CameraFrames:
    """Everything one camera saw during an episode."""

    rgb: np.ndarray | None
    """[T,H,W,3] uint8 colour frames; None for a camera known only by its calibration (then ``size``)."""
    intrinsics: np.ndarray
    """[3,3] OpenCV camera matrix K (fx, fy, cx, cy in pixels)."""
    pose: np.ndarray
    """Camera-to-robot-base transform, OpenCV axes: [4,4] if fixed, [T,4,4] if it moves."""
    depth: np.ndarray | None = None
    """[T,H,W] uint16 depth in millimetres along the optical axis, 0 = invalid; None if none (always None
    without ``rgb``: depth is stored beside the colour video)."""
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(5))
    """[5] OpenCV distortion k1, k2, p1, p2, k3."""
    size: tuple[int, int] | None = None
    """(height, width) the intrinsics refer to, for a camera without frames; ignored when ``rgb`` is given."""
    info: dict[str, Any] = field(default_factory=dict)
    """What else is known about the camera, as JSON values: serial, where the intrinsics came from, how
    depth was made (a sensor's depth mode or a stereo estimate), frames filled in, ..."""

    @property
    def moving(self) -> bool:
        return np.asarray(self.pose).ndim == 3

    @property
    def has_frames(self) -> bool:
        return self.rgb is not None

    @property
    def resolution(self) -> tuple[int, int]:
        """(height, width) of the frames, or ``size`` for a camera without frames."""
        if self.rgb is None:
            h, w = self.size or (0, 0)
            return int(h), int(w)
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])


@dataclass(eq=False)
class Episode:
    """One episode: per-frame arrays, cameras, gripper, provenance and stage outputs."""

    episode_key: str
    """Stable id from the spec (source, seed, index); unique within a dataset."""
    task: str
    """Natural-language task, e.g. "pick the red cube and place it on the green spot"."""
    fps: float
    """Frames per second of every per-frame array and camera."""
    state: np.ndarray
    """[T,S] float32 observation.state."""
    action: np.ndarray
    """[T,A] float32 action."""
    cameras: dict[str, CameraFrames]
    """Camera name (e.g. "cam_high") -> its frames and calibration."""
    gripper_pose: np.ndarray
    """[T,4,4] flange pose in the robot base frame."""
    gripper_opening: np.ndarray
    """[T] finger gap in metres."""
    timestamp: np.ndarray | None = None
    """[T] seconds from the episode start; None means frame_index / fps."""
    success: bool = False
    robot_type: str = "unknown"
    provenance: dict[str, Any] = field(default_factory=dict)
    """How it was made: backend, backend_version, config_hash, seed, code_version, ..."""
    gripper_geometry: dict[str, Any] = field(default_factory=dict)
    """The contact geometry used for tracks (pad offsets etc.), recorded with the data."""
    frame_features: dict[str, np.ndarray] = field(default_factory=dict)
    """Stage outputs with one entry per frame, e.g. tracks3d [T,N,3], tracks2d.cam_high [T,N,2]."""
    names: dict[str, list[str]] = field(default_factory=dict)
    """Names of the dimensions of observation.state, action or a frame feature (LeRobot's feature
    ``names``), e.g. {"observation.state": ["joint_0", ..., "gripper"]}; one per flattened dimension."""
    flow: np.ndarray | None = None
    """[M,N,3] tracks resampled at 1 mm steps of the centroid's path, or None."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Scalar stage outputs: quality.*, diversity.* (JSON scalars)."""

    @property
    def length(self) -> int:
        return int(np.asarray(self.state).shape[0]) if np.asarray(self.state).ndim >= 1 else 0

    def timestamps(self) -> np.ndarray:
        """[T] float32 timestamps, derived from fps when not given."""
        if self.timestamp is not None:
            return np.asarray(self.timestamp, dtype=np.float32)
        return (np.arange(self.length, dtype=np.float64) / float(self.fps)).astype(np.float32)


def continuous_quaternions(q: np.ndarray) -> np.ndarray:
    """[T,4] (w, x, y, z) quaternions on one hemisphere along time: the first has w >= 0 and each later one
    takes the sign closest to the one before (dot >= 0). Same rotations, no jumps."""
    q = np.array(q, dtype=np.float64 if np.asarray(q).dtype.kind != "f" else np.asarray(q).dtype)
    if len(q) == 0:
        return q
    if q[0, 0] < 0:
        q[0] = -q[0]
    for t in range(1, len(q)):
        if float(np.dot(q[t], q[t - 1])) < 0:
            q[t] = -q[t]
    return q


def quaternion_slices(names: list[str] | tuple[str, ...]) -> list[slice]:
    """The dimensions of a feature that hold quaternions, by its names (see QUATERNION_SUFFIXES)."""
    out = []
    for i in range(len(names) - 3):
        group = names[i:i + 4]
        stems = {n[: -len(sfx)] for n, sfx in zip(group, QUATERNION_SUFFIXES) if n.endswith(sfx)}
        if len(stems) == 1 and all(n.endswith(sfx) for n, sfx in zip(group, QUATERNION_SUFFIXES)):
            out.append(slice(i, i + 4))
    return out


class EpisodeValidationError(ValueError):
    """An episode broke the contract; ``problems`` lists every violation found."""

    def __init__(self, episode_key: str, problems: list[str]):
        self.episode_key = episode_key
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"episode {episode_key!r} is invalid ({len(self.problems)} problems):\n{lines}")


# --------------------------------------------------------------------------- validation


def _describe_bad_values(name: str, arr: np.ndarray) -> str | None:
    bad = ~np.isfinite(arr)
    n_bad = int(bad.sum())
    if not n_bad:
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"{name}: {n_bad} non-finite values (NaN/Inf), first at index {list(first)} = {arr[first].item()!r}"


class _Checker:
    """Collects problems for one episode instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def array(
        self,
        name: str,
        value: Any,
        *,
        shape: tuple[int | None, ...],
        kinds: str,
        dtype: np.dtype | None = None,
        finite: bool = True,
    ) -> np.ndarray | None:
        """Check type, rank/shape (None = any), dtype kind (or exact dtype) and finiteness."""
        if not isinstance(value, np.ndarray):
            self.problems.append(f"{name}: expected a numpy array, got {type(value).__name__}")
            return None
        ok = True
        want = "[" + ",".join("*" if s is None else str(s) for s in shape) + "]"
        if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
            self.problems.append(f"{name}: shape {list(value.shape)} does not match expected {want}")
            ok = False
        if dtype is not None and value.dtype != dtype:
            self.problems.append(f"{name}: dtype {value.dtype} but {np.dtype(dtype)} is required")
            ok = False
        elif dtype is None and value.dtype.kind not in kinds:
            self.problems.append(f"{name}: dtype {value.dtype} is not numeric (allowed kinds: {kinds})")
            ok = False
        if finite and value.dtype.kind == "f":
            msg = _describe_bad_values(name, value)
            if msg:
                self.problems.append(msg)
        return value if ok else None

    def fits_float32(self, name: str, value: np.ndarray | None) -> None:
        """Float arrays are stored as float32: finite values must stay finite."""
        if value is None or value.dtype.kind != "f" or value.dtype.itemsize <= 4:
            return
        with np.errstate(over="ignore"):
            over = np.isfinite(value) & ~np.isfinite(value.astype(np.float32))
        if over.any():
            first = tuple(int(i) for i in np.argwhere(over)[0])
            self.problems.append(f"{name}: {int(over.sum())} values exceed the float32 range, first at "
                                 f"{list(first)} = {value[first].item()!r}")

    def json_dict(self, name: str, value: Any) -> None:
        if not isinstance(value, dict):
            self.problems.append(f"{name}: expected a dict, got {type(value).__name__}")
            return
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            self.problems.append(f"{name}: not JSON-serialisable without NaN/Inf ({exc})")


def _check_transform(chk: _Checker, name: str, pose: np.ndarray) -> None:
    bottom = pose[..., 3, :]
    if not np.allclose(bottom, [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        idx = np.argwhere(~np.all(np.isclose(bottom, [0, 0, 0, 1], atol=1e-6), axis=-1))
        where = f" (frame {int(idx[0][0])})" if pose.ndim == 3 and len(idx) else ""
        chk.problems.append(f"{name}: last row must be [0, 0, 0, 1]{where}, got {bottom.reshape(-1, 4)[0].tolist()}")


def validate_episode(
    episode: Episode,
    *,
    cameras: set[str] | frozenset[str] | None = None,
    state_dim: int | None = None,
    action_dim: int | None = None,
) -> None:
    """Check ``episode`` against the contract and raise one error naming every problem.

    ``cameras``, ``state_dim`` and ``action_dim``, when given, are what the
    dataset expects: a camera outside ``cameras`` or a missing one is reported.
    """
    chk = _Checker()
    key = episode.episode_key if isinstance(episode.episode_key, str) else repr(episode.episode_key)
    if not isinstance(episode.episode_key, str) or not episode.episode_key.strip():
        chk.problems.append(f"episode_key: must be a non-empty string, got {episode.episode_key!r}")
    if not isinstance(episode.task, str) or not episode.task.strip():
        chk.problems.append(f"task: must be a non-empty string, got {episode.task!r}")
    else:
        try:
            episode.task.encode("utf-8")
        except UnicodeEncodeError as exc:
            chk.problems.append(f"task: not valid UTF-8 text ({exc})")
    if not isinstance(episode.robot_type, str) or not episode.robot_type:
        chk.problems.append(f"robot_type: must be a non-empty string, got {episode.robot_type!r}")
    fps_ok = isinstance(episode.fps, numbers.Real) and not isinstance(episode.fps, bool | np.bool_)
    if not fps_ok or not np.isfinite(episode.fps) or not 0 < episode.fps <= MAX_FPS:
        chk.problems.append(f"fps: must be a number in (0, {MAX_FPS:g}], got {episode.fps!r}")
        fps_ok = False
    if not isinstance(episode.success, bool | np.bool_):
        chk.problems.append(f"success: must be a bool, got {episode.success!r}")

    state = chk.array("observation.state", episode.state, shape=(None, state_dim), kinds="f",
                      dtype=np.dtype(np.float32))
    n = int(episode.state.shape[0]) if isinstance(episode.state, np.ndarray) and episode.state.ndim else None
    if state is not None and n == 0:
        chk.problems.append("observation.state: the episode has no frames (T = 0)")
    if n and fps_ok and n / float(episode.fps) >= MAX_DURATION_S:
        chk.problems.append(f"observation.state: {n} frames at {episode.fps} fps last {n / float(episode.fps):.0f} s; "
                            f"LeRobot's float32 timestamps hold 1e-4 s only below {MAX_DURATION_S:.0f} s: split it")
    chk.array("action", episode.action, shape=(n, action_dim), kinds="f", dtype=np.dtype(np.float32))
    if episode.timestamp is not None:
        ts = chk.array("timestamp", episode.timestamp, shape=(n,), kinds="f")
        if ts is not None and ts.size > 1 and np.all(np.isfinite(ts)):
            steps = np.diff(ts.astype(np.float64))
            if np.any(steps <= 0):
                i = int(np.argmax(steps <= 0))
                chk.problems.append(
                    f"timestamp: must increase strictly; frame {i + 1} = {ts[i + 1].item()!r} after {ts[i].item()!r}"
                )
    pose = chk.array("gripper.pose", episode.gripper_pose, shape=(n, 4, 4), kinds="f")
    if pose is not None:
        _check_transform(chk, "gripper.pose", pose)
        chk.fits_float32("gripper.pose", pose)
    opening = chk.array("gripper.opening", episode.gripper_opening, shape=(n,), kinds="f")
    chk.fits_float32("gripper.opening", opening)

    if not isinstance(episode.cameras, dict) or not episode.cameras:
        chk.problems.append("cameras: at least one camera is required")
    else:
        if cameras is not None:
            unknown = sorted(set(episode.cameras) - set(cameras))
            missing = sorted(set(cameras) - set(episode.cameras))
            if unknown:
                chk.problems.append(f"cameras: unknown camera(s) {unknown}; this dataset has {sorted(cameras)}")
            if missing:
                chk.problems.append(f"cameras: missing camera(s) {missing}; this dataset has {sorted(cameras)}")
        for cam_name, cam in episode.cameras.items():
            _validate_camera(chk, cam_name, cam, n)

    if not isinstance(episode.frame_features, dict):
        chk.problems.append("frame_features: expected a dict of per-frame arrays")
    else:
        for fname, arr in episode.frame_features.items():
            label = f"frame_features[{fname!r}]"
            if not isinstance(fname, str) or not _NAME_RE.match(fname):
                chk.problems.append(f"{label}: name must be dotted identifiers like 'tracks2d.cam_high'")
            elif fname in RESERVED_COLUMNS or _CAMERA_POSE_RE.match(fname) or fname.startswith("observation.images."):
                chk.problems.append(f"{label}: the name is taken by a column the writer makes; choose another")
            if isinstance(arr, np.ndarray) and arr.ndim >= 1:
                good = chk.array(label, arr, shape=(n,) + (None,) * (arr.ndim - 1), kinds="fiub")
            else:
                good = chk.array(label, arr, shape=(n,), kinds="fiub")
            if good is None:
                continue
            if 0 in good.shape[1:]:
                chk.problems.append(f"{label}: per-frame shape {list(good.shape[1:])} has an empty dimension")
            if good.dtype == np.uint64:
                chk.problems.append(f"{label}: uint64 is not stored (LeRobot columns are int64); convert it")
            chk.fits_float32(label, good)
    if episode.flow is not None:
        flow = chk.array("flow", episode.flow, shape=(None, None, 3), kinds="f")
        if flow is not None and 0 in flow.shape:
            chk.problems.append(f"flow: shape {list(flow.shape)} is empty; use flow=None when there is none")
        chk.fits_float32("flow", flow)
    _validate_names(chk, episode)
    chk.json_dict("provenance", episode.provenance)
    chk.json_dict("gripper_geometry", episode.gripper_geometry)
    chk.json_dict("metrics", episode.metrics)
    if isinstance(episode.metrics, dict):
        for mk, mv in episode.metrics.items():
            if not isinstance(mv, _META_SCALAR):
                chk.problems.append(f"metrics[{mk!r}]: must be a JSON scalar, got {type(mv).__name__}")
    if chk.problems:
        raise EpisodeValidationError(key, chk.problems)


def _validate_names(chk: _Checker, episode: Episode) -> None:
    if not isinstance(episode.names, dict):
        chk.problems.append(f"names: expected a dict of feature -> dimension names, got {type(episode.names).__name__}")
        return
    arrays = {"observation.state": episode.state, "action": episode.action, **(
        episode.frame_features if isinstance(episode.frame_features, dict) else {})}
    for feature, names in episode.names.items():
        if feature not in arrays:
            chk.problems.append(f"names[{feature!r}]: no such feature; names can be given for {sorted(arrays)}")
            continue
        if not isinstance(names, list | tuple) or not all(isinstance(x, str) and x for x in names):
            chk.problems.append(f"names[{feature!r}]: must be a list of non-empty strings, got {names!r}")
            continue
        arr = arrays[feature]
        if isinstance(arr, np.ndarray) and arr.ndim >= 1:
            dims = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
            if len(names) != dims:
                chk.problems.append(f"names[{feature!r}]: {len(names)} names for {dims} dimensions")
                continue
            flat = arr.reshape(len(arr), -1)
            for sl in quaternion_slices(list(names)):
                _check_quaternions(chk, f"{feature}[{sl.start}:{sl.stop}] ({names[sl.start][:-2]}q*)", flat[:, sl])


def _check_quaternions(chk: _Checker, label: str, q: np.ndarray) -> None:
    q = q.astype(np.float64)
    if not len(q) or not np.all(np.isfinite(q)):
        return  # non-finite values are reported on their own
    flips = np.flatnonzero(np.einsum("ij,ij->i", q[1:], q[:-1]) < 0) + 1
    if len(flips):
        chk.problems.append(f"{label}: the quaternion flips sign at frame(s) {flips[:10].tolist()} (q and -q are the "
                            "same rotation, but a policy sees a jump); store it with "
                            "raygen.datasets.episode.continuous_quaternions")
    if q[0, 0] < 0:
        chk.problems.append(f"{label}: the first quaternion has w = {q[0, 0]:.3f} < 0; start on the w >= 0 "
                            "hemisphere")


def _validate_camera(chk: _Checker, cam_name: str, cam: Any, n: int | None) -> None:
    p = f"cameras.{cam_name}"
    if not isinstance(cam_name, str) or not _CAMERA_RE.match(cam_name):
        chk.problems.append(f"{p}: camera names may hold only letters, digits and '_', got {cam_name!r}")
    if not isinstance(cam, CameraFrames):
        chk.problems.append(f"{p}: expected CameraFrames, got {type(cam).__name__}")
        return
    if cam.rgb is None:
        size = cam.size
        hw = (None, None)
        if (isinstance(size, tuple | list) and len(size) == 2
                and all(isinstance(v, numbers.Integral) and v > 0 for v in size)):
            hw = tuple(int(v) for v in size)
        else:
            chk.problems.append(f"{p}.size: a camera without rgb needs size = (height, width) in pixels, got {size!r}")
        if cam.depth is not None:
            chk.problems.append(f"{p}.depth: depth is stored beside the colour video; a camera without rgb has none")
    else:
        rgb = chk.array(f"{p}.rgb", cam.rgb, shape=(n, None, None, 3), kinds="u", dtype=np.dtype(np.uint8))
        hw = rgb.shape[1:3] if rgb is not None else (None, None)
        if rgb is not None and (hw[0] % 2 or hw[1] % 2 or min(hw) < MIN_SIDE):
            chk.problems.append(f"{p}.rgb: height and width must be even and >= {MIN_SIDE} for video, got {list(hw)}")
    chk.json_dict(f"{p}.info", cam.info)
    if cam.depth is not None and cam.rgb is not None:
        if isinstance(cam.depth, np.ndarray) and cam.depth.dtype != np.uint16:
            chk.problems.append(
                f"{p}.depth: dtype {cam.depth.dtype} but uint16 millimetres are required "
                "(convert metres with np.round(d * 1000).clip(0, 65535).astype(np.uint16), 0 = invalid)"
            )
        else:
            chk.array(f"{p}.depth", cam.depth, shape=(n, *hw), kinds="u", dtype=np.dtype(np.uint16))
    k = chk.array(f"{p}.intrinsics", cam.intrinsics, shape=(3, 3), kinds="f")
    if k is not None and np.all(np.isfinite(k)) and (k[0, 0] <= 0 or k[1, 1] <= 0):
        fx, fy = k[0, 0].item(), k[1, 1].item()
        chk.problems.append(f"{p}.intrinsics: fx and fy must be positive, got fx={fx!r} fy={fy!r}")
    chk.array(f"{p}.distortion", cam.distortion, shape=(5,), kinds="f")
    pose = cam.pose
    if isinstance(pose, np.ndarray) and pose.ndim == 3:
        pose = chk.array(f"{p}.pose", pose, shape=(n, 4, 4), kinds="f")
    else:
        pose = chk.array(f"{p}.pose", pose, shape=(4, 4), kinds="f")
    if pose is not None:
        _check_transform(chk, f"{p}.pose", pose)


# --------------------------------------------------------------------------- rows

_CAM_PREFIX = "cameras."
_FRAME_PREFIX = "frame."


def episode_to_row(episode: Episode) -> dict[str, Any]:
    """Flatten an episode into one row of numpy arrays and scalars (a Ray Data row).

    Column names: ``episode_key, task, robot_type, fps, success, observation.state,
    action, timestamp, gripper.pose, gripper.opening, cameras.<cam>.<rgb|depth|
    intrinsics|distortion|pose>, frame.<feature>, flow`` and ``meta`` (a JSON string
    with provenance, gripper geometry, metrics and which optional parts exist).
    """
    row: dict[str, Any] = {
        "episode_key": episode.episode_key,
        "task": episode.task,
        "robot_type": episode.robot_type,
        "fps": float(episode.fps),
        "success": bool(episode.success),
        "observation.state": episode.state,
        "action": episode.action,
        "timestamp": episode.timestamps(),
        "gripper.pose": episode.gripper_pose,
        "gripper.opening": episode.gripper_opening,
    }
    for name, cam in episode.cameras.items():
        p = f"{_CAM_PREFIX}{name}."
        if cam.rgb is not None:
            row[p + "rgb"] = cam.rgb
        row[p + "intrinsics"] = cam.intrinsics
        row[p + "distortion"] = cam.distortion
        row[p + "pose"] = cam.pose
        if cam.depth is not None:
            row[p + "depth"] = cam.depth
    for fname, arr in episode.frame_features.items():
        row[_FRAME_PREFIX + fname] = arr
    if episode.flow is not None:
        row["flow"] = episode.flow
    row["meta"] = json.dumps(
        {
            "provenance": episode.provenance,
            "gripper_geometry": episode.gripper_geometry,
            "metrics": episode.metrics,
            "cameras": list(episode.cameras),
            "camera_info": {n: {"info": c.info, **({} if c.rgb is not None else {"size": list(c.resolution)})}
                            for n, c in episode.cameras.items()},
            "names": episode.names,
            "frame_features": list(episode.frame_features),
            "has_timestamp": episode.timestamp is not None,
        }
    )
    return row


def episode_from_row(row: dict[str, Any]) -> Episode:
    """Inverse of :func:`episode_to_row`; accepts rows as Ray Data hands them back."""
    meta = json.loads(str(row["meta"]))
    cameras = {}
    for name in meta["cameras"]:
        p = f"{_CAM_PREFIX}{name}."
        depth, rgb = row.get(p + "depth"), row.get(p + "rgb")
        extra = meta.get("camera_info", {}).get(name, {})
        cameras[name] = CameraFrames(
            rgb=None if rgb is None else np.asarray(rgb),
            intrinsics=np.asarray(row[p + "intrinsics"]),
            distortion=np.asarray(row[p + "distortion"]),
            pose=np.asarray(row[p + "pose"]),
            depth=None if depth is None else np.asarray(depth),
            size=tuple(extra["size"]) if "size" in extra else None,
            info=dict(extra.get("info", {})),
        )
    flow = row.get("flow")
    return Episode(
        episode_key=str(row["episode_key"]),
        task=str(row["task"]),
        robot_type=str(row["robot_type"]),
        fps=float(row["fps"]),
        success=bool(row["success"]),
        state=np.asarray(row["observation.state"]),
        action=np.asarray(row["action"]),
        timestamp=np.asarray(row["timestamp"]) if meta.get("has_timestamp") else None,
        cameras=cameras,
        gripper_pose=np.asarray(row["gripper.pose"]),
        gripper_opening=np.asarray(row["gripper.opening"]),
        provenance=meta["provenance"],
        gripper_geometry=meta["gripper_geometry"],
        frame_features={f: np.asarray(row[_FRAME_PREFIX + f]) for f in meta["frame_features"]},
        names={k: list(v) for k, v in meta.get("names", {}).items()},
        flow=None if flow is None else np.asarray(flow),
        metrics=meta["metrics"],
    )
