"""DROID's trajectory.h5 (one row per 15 Hz control step) read into arrays, every problem named.

Poses are [x, y, z, rx, ry, rz] in metres and radians, Euler ``"xyz"`` (extrinsic, scipy's lower case) in
the robot base frame; ``cartesian_position`` is the Franka flange (panda_link8) with no tool offset.
Camera extrinsics ``observation/camera_extrinsics/<serial>_left`` are camera-to-base with OpenCV axes,
constant for the exterior cameras and per step for the wrist camera (REFERENCE.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raygen.actors.spec import EpisodeInputError

__all__ = ["ACTION_KEYS", "Trajectory", "pose6_to_matrix", "read_trajectory"]

STATE = "observation/robot_state"
REQUIRED = {
    "cartesian_position": f"{STATE}/cartesian_position",
    "gripper_position": f"{STATE}/gripper_position",
    "joint_positions": f"{STATE}/joint_positions",
    "action/joint_position": "action/joint_position",
    "action/gripper_position": "action/gripper_position",
}
ACTION_KEYS = {  # LeRobot's DROID port name -> (h5 dataset, width); absent ones are zero-filled and recorded
    "action.gripper_position": ("action/gripper_position", 1),
    "action.gripper_velocity": ("action/gripper_velocity", 1),
    "action.cartesian_position": ("action/cartesian_position", 6),
    "action.cartesian_velocity": ("action/cartesian_velocity", 6),
    "action.joint_position": ("action/joint_position", 7),
    "action.joint_velocity": ("action/joint_velocity", 7),
}
WIDTHS = {"cartesian_position": 6, "gripper_position": 1, "joint_positions": 7}


@dataclass
class Trajectory:
    length: int
    cartesian: np.ndarray
    """[T,6] flange pose."""
    gripper: np.ndarray
    """[T] 0 = open (85 mm) .. 1 = closed."""
    joints: np.ndarray
    """[T,7] rad."""
    actions: dict[str, np.ndarray]
    """LeRobot DROID-port action name -> [T,D] float64."""
    missing_actions: list[str]
    extrinsics: dict[str, np.ndarray]
    """'<serial>_left' / '<serial>_right' -> [T,6]."""
    frame_received: dict[str, np.ndarray] = field(default_factory=dict)
    """serial -> [T] int64 milliseconds (the camera image's timestamp)."""
    step_start: np.ndarray | None = None
    """[T] int64 milliseconds when each control step began."""
    movement_enabled: np.ndarray | None = None
    camera_type: dict[str, int] = field(default_factory=dict)
    """serial -> 0 wrist, 1 exterior ("varied"), 2 fixed."""
    intrinsics: dict[str, np.ndarray] = field(default_factory=dict)
    """'<serial>_left' -> [3,3] from observation/camera_intrinsics (only in episodes recorded with later code)."""
    attrs: dict[str, Any] = field(default_factory=dict)


def pose6_to_matrix(pose: np.ndarray) -> np.ndarray:
    """[...,6] [x, y, z, rx, ry, rz] (Euler "xyz", extrinsic) -> [...,4,4]."""
    from scipy.spatial.transform import Rotation

    pose = np.asarray(pose, dtype=np.float64)
    flat = pose.reshape(-1, 6)
    out = np.zeros((len(flat), 4, 4))
    out[:, :3, :3] = Rotation.from_euler("xyz", flat[:, 3:]).as_matrix()
    out[:, :3, 3] = flat[:, :3]
    out[:, 3, 3] = 1.0
    return out.reshape(*pose.shape[:-1], 4, 4)


def _attr(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def read_trajectory(path: Path, where: str, serials: list[str]) -> Trajectory:
    """Read and check ``trajectory.h5``; ``serials`` are the cameras whose extrinsics must be there.

    Every problem (missing datasets, wrong shapes, ragged lengths, NaN) is gathered into one
    EpisodeInputError naming the file and the dataset.
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise EpisodeInputError(f"{where}: not a readable HDF5 file ({exc})") from None
    problems: list[str] = []
    with f:
        def get(name: str, width: int | None, *, required: bool = True, kind: str = "f") -> np.ndarray | None:
            if name not in f:
                if required:
                    problems.append(f"dataset {name!r} is missing")
                return None
            try:
                a = np.asarray(f[name][()])
            except (OSError, TypeError, ValueError) as exc:
                problems.append(f"dataset {name!r} cannot be read ({exc})")
                return None
            if a.ndim == 0 or len(a) == 0:
                problems.append(f"dataset {name!r} is {'a scalar' if a.ndim == 0 else 'empty (0 steps)'}")
                return None
            if width is not None:
                a = a.reshape(len(a), -1)
                if a.ndim != 2 or a.shape[1] != width:
                    problems.append(f"dataset {name!r} has shape {list(a.shape)}, expected [T,{width}]")
                    return None
            if kind == "f":
                if a.dtype.kind not in "fiu":
                    problems.append(f"dataset {name!r} is {a.dtype}, not numeric")
                    return None
                a = a.astype(np.float64)
                bad = ~np.isfinite(a)
                if bad.any():
                    step = int(np.argwhere(bad)[0][0])
                    problems.append(f"dataset {name!r} has {int(bad.sum())} NaN/Inf values, first at step {step}")
                    return None
            return a

        cart = get(REQUIRED["cartesian_position"], 6)
        grip = get(REQUIRED["gripper_position"], 1)
        joints = get(REQUIRED["joint_positions"], 7)
        actions: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for name, (key, width) in ACTION_KEYS.items():
            a = get(key, width, required=key in REQUIRED.values())
            if a is None:
                if key not in REQUIRED.values():
                    missing.append(key)
                continue
            actions[name] = a
        extr: dict[str, np.ndarray] = {}
        for serial in serials:
            for eye in ("left", "right"):
                key = f"observation/camera_extrinsics/{serial}_{eye}"
                a = get(key, 6, required=eye == "left")
                if a is not None:
                    extr[f"{serial}_{eye}"] = a
        received = {}
        for serial in serials:
            key = f"observation/timestamp/cameras/{serial}_frame_received"
            if key in f:
                received[serial] = np.asarray(f[key][()], dtype=np.int64).reshape(-1)
        step_start = get("observation/timestamp/control/step_start", None, required=False, kind="i")
        moving = get("observation/controller_info/movement_enabled", None, required=False, kind="b")
        ctype = {}
        if "observation/camera_type" in f:
            for serial, ds in f["observation/camera_type"].items():
                v = np.asarray(ds[()]).reshape(-1)
                if v.size:
                    ctype[str(serial)] = int(v[0])
        intr = {}
        if "observation/camera_intrinsics" in f:
            for name, ds in f["observation/camera_intrinsics"].items():
                k = np.asarray(ds[()], dtype=np.float64)
                intr[str(name)] = k.reshape(-1, 3, 3)[0] if k.size >= 9 else np.zeros((3, 3))
        attrs = {str(k): _attr(v) for k, v in f.attrs.items()}
    arrays = {"cartesian_position": cart, "gripper_position": grip, "joint_positions": joints,
              **{f"{ACTION_KEYS[k][0]}": v for k, v in actions.items()},
              **{f"camera_extrinsics/{k}": v for k, v in extr.items()}}
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if step_start is not None:
        lengths["timestamp/control/step_start"] = len(step_start)
    if moving is not None:
        lengths["controller_info/movement_enabled"] = len(moving)
    for serial, r in received.items():
        lengths[f"timestamp/cameras/{serial}_frame_received"] = len(r)
    if lengths and len(set(lengths.values())) > 1:
        t_ref = lengths.get("cartesian_position", max(lengths.values()))
        odd = {k: n for k, n in lengths.items() if n != t_ref}
        problems.append(f"ragged lengths: {t_ref} steps, but {odd}")
    if not problems and lengths and min(lengths.values()) < 2:
        problems.append(f"only {min(lengths.values())} step(s)")
    if problems:
        raise EpisodeInputError(f"{where}: " + "; ".join(problems))
    assert cart is not None and grip is not None and joints is not None
    return Trajectory(length=len(cart), cartesian=cart, gripper=grip.reshape(-1), joints=joints, actions=actions,
                      missing_actions=missing, extrinsics=extr, frame_received=received,
                      step_start=None if step_start is None else step_start.astype(np.int64).reshape(-1),
                      movement_enabled=None if moving is None else moving.astype(bool).reshape(-1),
                      camera_type=ctype, intrinsics=intr, attrs=attrs)
