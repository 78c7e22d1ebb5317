"""One DROID episode -> an Episode: the reader both DROID backends share (CPU ``droid``, GPU ``zed``).

The backends differ only in where frames and depth come from (MP4s and a stereo estimate on CPU, the SVOs
through the ZED SDK on GPU); everything else is here: the metadata json, trajectory.h5, intrinsics,
gripper contact points, camera poses, and the Episode with LeRobot's DROID-port names.

State and action follow LeRobot's own DROID port, so a policy trained on that port reads this the same way:
``observation.state`` = joint positions (7) + gripper position (1), ``action`` = the action's joint
positions (7) + gripper position (1), beside them ``observation.state.{joint_position, cartesian_position,
gripper_position}``, ``action.{joint_position, joint_velocity, cartesian_position, cartesian_velocity,
gripper_position, gripper_velocity}``, ``camera_extrinsics.<camera>`` and ``is_first/is_last/is_terminal``.
Cameras ``exterior_1_left``, ``exterior_2_left`` (the exterior cameras, by sorted serial) and
``wrist_left``. 15 Hz from trajectory.h5's timestamps (never the MP4 container's 60 fps).
"""

from __future__ import annotations

import abc
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from raygen.actors.droid import gripper
from raygen.actors.droid.calibration import CalibrationSources, Intrinsics, read_im128
from raygen.actors.droid.raw import DroidEpisodeRef, EpisodeFiles, parse_metadata, require, serials
from raygen.actors.droid.trajectory import Trajectory, pose6_to_matrix, read_trajectory
from raygen.actors.spec import EpisodeInputError, EpisodeSpec
from raygen.datasets.episode import CameraFrames, Episode

logger = logging.getLogger(__name__)

__all__ = ["CAMERAS", "CameraData", "DroidOptions", "Recording", "RecordingBackend"]

CAMERAS = ("exterior_1_left", "exterior_2_left", "wrist_left")
DEFAULT_FPS = 15.0
_AXES6 = ["x", "y", "z", "roll", "pitch", "yaw"]
_JOINTS = [f"joint_{i}" for i in range(7)]
NAMES: dict[str, list[str]] = {
    "observation.state": [*_JOINTS, "gripper"],
    "action": [*_JOINTS, "gripper"],
    "observation.state.joint_position": _JOINTS,
    "observation.state.cartesian_position": _AXES6,
    "observation.state.gripper_position": ["gripper"],
    "action.joint_position": _JOINTS,
    "action.joint_velocity": _JOINTS,
    "action.cartesian_position": _AXES6,
    "action.cartesian_velocity": _AXES6,
    "action.gripper_position": ["gripper"],
    "action.gripper_velocity": ["gripper"],
    **{f"camera_extrinsics.{cam}": _AXES6 for cam in CAMERAS},
}


@dataclass(frozen=True)
class DroidOptions:
    """What the worker gets from ``source`` (root, size, ``source.droid``); unknown keys are an error."""

    root: str
    mode: str = "full"
    width: int | None = None
    height: int | None = None
    calibration_cache: str | None = None
    intrinsics_file: str | None = None
    missing_intrinsics: str = "reject"
    depth: bool = True
    zed_depth_mode: str = "NEURAL"
    stereo_min_depth_m: float = 0.3
    stereo_min_depth_wrist_m: float = 0.08
    timestamp_tolerance_ms: float = 5.0
    cpu_threads: int = 1

    @classmethod
    def from_options(cls, options: dict[str, Any], backend: str) -> DroidOptions:
        """From the worker options: ``root``, ``width``, ``height``, ``cpu_threads`` and the ``droid`` section
        (its episode filters are the driver's business and ignored here)."""
        opts = dict(options)
        droid = dict(opts.pop("droid", None) or {})
        for name in ("outcome", "labs", "date_from", "date_to", "episode_ids_file", "limit"):
            droid.pop(name, None)
        known = {f.name for f in fields(cls)}
        unknown = sorted((set(opts) | set(droid)) - known)
        if unknown:
            raise ValueError(f"{backend} backend: unknown option(s) {unknown}; known: {sorted(known)}")
        if "root" not in opts:
            raise ValueError(f"{backend} backend: option 'root' (the DROID tree) is required")
        out = cls(**opts, **droid)
        if out.mode not in ("full", "metadata"):
            raise ValueError(f"{backend} backend: mode must be full or metadata, got {out.mode!r}")
        return out

    @property
    def size(self) -> tuple[int, int] | None:
        return (self.width, self.height) if self.width and self.height else None


@dataclass
class CameraData:
    """What a backend found for one camera: frames (full mode), depth, and notes for the camera's info."""

    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    size: tuple[int, int] | None = None
    """(width, height) of the frames, or of the calibration when there are none."""
    intrinsics: Intrinsics | None = None
    """Overrides the recording's (the ZED SDK reads them from the SVO)."""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recording:
    """One DROID episode opened: its files, metadata, trajectory and per-camera intrinsics."""

    spec: EpisodeSpec
    ref: DroidEpisodeRef
    files: EpisodeFiles
    meta: dict[str, Any]
    traj: Trajectory
    serials: dict[str, str]
    intrinsics: dict[str, Intrinsics]
    missing_intrinsics: dict[str, list[str]]
    timing: dict[str, float] = field(default_factory=dict)

    def baseline_m(self, camera: str) -> float | None:
        """Distance between the camera's two eyes at step 0, from their extrinsics."""
        serial = self.serials[camera]
        left, right = self.traj.extrinsics.get(f"{serial}_left"), self.traj.extrinsics.get(f"{serial}_right")
        if left is None or right is None:
            return None
        return float(np.linalg.norm(left[0, :3] - right[0, :3]))


def open_recording(spec: EpisodeSpec, files: EpisodeFiles, sources: CalibrationSources, *,
                   need_intrinsics: bool = True) -> Recording:
    """Read the metadata, trajectory.h5 and calibration of the spec's episode (no frames)."""
    ref = files.ref
    t0 = time.perf_counter()
    meta = parse_metadata(require(files, ref.metadata, what="the episode's metadata json").read_bytes(),
                          files.rel(ref.metadata))
    if str(meta["uuid"]) != ref.uuid:
        raise EpisodeInputError(f"{files.rel(ref.metadata)}: uuid {meta['uuid']!r} does not match the file name "
                                f"({ref.uuid!r})")
    cams = serials(meta)
    traj = read_trajectory(require(files, "trajectory.h5", what="the episode's trajectory"),
                           files.rel("trajectory.h5"), list(cams.values()))
    t1 = time.perf_counter()
    im128 = None
    if files.exists("trajectory_im128.h5"):
        try:
            im128 = read_im128(files.path("trajectory_im128.h5"))
        except (OSError, ValueError) as exc:
            logger.warning("%s: unreadable, not used for intrinsics (%s)", files.rel("trajectory_im128.h5"), exc)
    intrinsics, missing = {}, {}
    for cam, serial in cams.items():
        got, tried = sources.resolve(ref.uuid, cam, serial, im128, traj.intrinsics)
        if got is None:
            missing[cam] = tried
        else:
            intrinsics[cam] = got
    if missing and need_intrinsics:
        cam, tried = next(iter(missing.items()))
        raise EpisodeInputError(f"{ref.folder}: no intrinsics for camera {cam} (serial {cams[cam]}): "
                                + "; ".join(tried) + " (missing_intrinsics: nominal would use the camera's "
                                "nominal intrinsics)")
    t2 = time.perf_counter()
    return Recording(spec=spec, ref=ref, files=files, meta=meta, traj=traj, serials=cams, intrinsics=intrinsics,
                     missing_intrinsics=missing, timing={"timing.read_s": t1 - t0, "timing.calibration_s": t2 - t1})


def _fps(traj: Trajectory) -> tuple[float, np.ndarray | None]:
    """(fps, timestamps in s from the first step) from the steps' start times; DROID runs at 15 Hz."""
    ts = traj.step_start
    if ts is None or len(ts) < 2:
        return DEFAULT_FPS, None
    dt = np.diff(ts.astype(np.float64)) / 1000.0
    if np.any(dt <= 0):
        return DEFAULT_FPS, None  # a clock that stands still or goes back: frame_index / fps instead
    fps = 1.0 / float(np.median(dt))
    fps = float(round(fps)) if abs(fps - round(fps)) / fps < 0.05 else round(fps, 3)
    return fps, (ts - ts[0]).astype(np.float64) / 1000.0


def build_episode(rec: Recording, cams: dict[str, CameraData], *, backend: str, version: str, mode: str
                  ) -> Episode:
    """The Episode of a recording, with each camera's frames (or none) as the backend found them."""
    traj, meta, ref = rec.traj, rec.meta, rec.ref
    t = traj.length
    flange = pose6_to_matrix(traj.cartesian)
    g = np.clip(traj.gripper, 0.0, 1.0)
    cameras: dict[str, CameraFrames] = {}
    extr_features: dict[str, np.ndarray] = {}
    for cam in CAMERAS:
        serial = rec.serials[cam]
        data = cams[cam]
        intr = data.intrinsics or rec.intrinsics[cam]
        size = data.size or (intr.width, intr.height)
        pose6 = traj.extrinsics[f"{serial}_left"]
        poses = pose6_to_matrix(pose6)
        fixed = bool(np.allclose(poses, poses[0], atol=1e-9))
        info = {"serial": serial, "eye": "left", "intrinsics_source": intr.source,
                "intrinsics_native": [intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height], **data.info}
        baseline = rec.baseline_m(cam)
        if baseline is not None:
            info["baseline_m"] = baseline
        cameras[cam] = CameraFrames(
            rgb=data.rgb, depth=data.depth, intrinsics=intr.k(*size), pose=poses[0] if fixed else poses,
            distortion=np.asarray(intr.distortion, dtype=np.float64), size=(size[1], size[0]), info=info)
        extr_features[f"camera_extrinsics.{cam}"] = pose6.astype(np.float32)
    actions = {name: traj.actions.get(name, np.zeros((t, w))) for name, w in (
        ("action.gripper_position", 1), ("action.gripper_velocity", 1), ("action.cartesian_position", 6),
        ("action.cartesian_velocity", 6), ("action.joint_position", 7), ("action.joint_velocity", 7))}
    first, last = np.zeros(t, bool), np.zeros(t, bool)
    first[0], last[-1] = True, True
    success = bool(meta["success"])
    moving = traj.movement_enabled if traj.movement_enabled is not None else np.ones(t, bool)
    features: dict[str, np.ndarray] = {
        "observation.state.joint_position": traj.joints.astype(np.float32),
        "observation.state.cartesian_position": traj.cartesian.astype(np.float32),
        "observation.state.gripper_position": traj.gripper.reshape(t, 1).astype(np.float32),
        **{k: v.reshape(t, -1).astype(np.float32) for k, v in actions.items()},
        **extr_features,
        "is_first": first, "is_last": last, "is_terminal": last.copy(),
        "is_episode_successful": np.full(t, success),
        "droid.movement_enabled": moving.astype(bool),
        "contact.pads": gripper.pad_centres(flange, g).astype(np.float32),
    }
    fps, stamps = _fps(traj)
    task = str(meta.get("current_task") or "").strip()
    metrics: dict[str, Any] = {
        "droid.lab": ref.lab, "droid.outcome": ref.outcome, "droid.building": str(meta.get("building", "")),
        "droid.scene_id": int(meta["scene_id"]) if isinstance(meta.get("scene_id"), int) else -1,
        "droid.steps": t, "droid.task_given": bool(task),
        "droid.missing_actions": ",".join(traj.missing_actions),
        "droid.idle_steps": int((~moving.astype(bool)).sum()),
        **rec.timing,
    }
    return Episode(
        episode_key=rec.spec.episode_key,
        task=task or "unspecified task",
        fps=fps,
        state=np.concatenate([traj.joints, traj.gripper.reshape(t, 1)], axis=1).astype(np.float32),
        action=np.concatenate([actions["action.joint_position"], actions["action.gripper_position"]],
                              axis=1).astype(np.float32),
        cameras=cameras,
        gripper_pose=flange,
        gripper_opening=gripper.opening_m(g),
        timestamp=stamps,
        success=success,
        robot_type="Franka",
        provenance={
            "backend": backend, "backend_version": version, "dataset": "droid", "uuid": ref.uuid,
            "folder": ref.folder, "droid_version": meta["version"], "lab": ref.lab, "user": str(meta.get("user", "")),
            "date": ref.date, "mode": mode, "source": rec.spec.source,
        },
        gripper_geometry=dict(gripper.GEOMETRY),
        frame_features=features,
        names={k: list(v) for k, v in NAMES.items()},
        metrics=metrics,
    )


class RecordingBackend(abc.ABC):
    """The child's Backend for DROID recordings; a subclass says where frames come from (``camera_data``)."""

    name = "droid"

    def __init__(self, options: dict[str, Any]):
        self.opts = DroidOptions.from_options(options, self.name)
        self.sources = CalibrationSources.load(self.opts.calibration_cache, self.opts.intrinsics_file,
                                               self.opts.missing_intrinsics)
        self.cache = Path(os.environ.get("RAYGEN_CACHE_DIR") or tempfile.gettempdir())
        self.version = self.describe_version()

    def describe_version(self) -> str:
        from raygen import __version__

        return f"raygen {__version__}"

    def capabilities(self) -> dict[str, Any]:
        return {"cameras": list(CAMERAS), "mode": self.opts.mode, "depth": self.depth_method() or False,
                "recordings": "droid"}

    def depth_method(self) -> str | None:
        """What depth this backend stores in full mode (recorded with every camera), or None."""
        return None

    @abc.abstractmethod
    def camera_data(self, rec: Recording, camera: str) -> CameraData:
        """Frames and depth of one camera, one per trajectory step (full mode)."""

    def calibration_only(self, rec: Recording, camera: str) -> CameraData:
        """Metadata mode: no frames; the stored size is the configured one, else the calibration's."""
        return CameraData(size=self.opts.size)

    def run_episode(self, spec: EpisodeSpec) -> Episode:
        files = EpisodeFiles(self.opts.root, DroidEpisodeRef.from_params(spec.params["droid"]), self.cache)
        try:  # a remote episode's copies go, whatever happens
            rec = open_recording(spec, files, self.sources, need_intrinsics=self.needs_recording_intrinsics())
            cams = {}
            for cam in CAMERAS:
                data = (self.camera_data(rec, cam) if self.opts.mode == "full" else self.calibration_only(rec, cam))
                if data.intrinsics is None and cam not in rec.intrinsics:
                    raise EpisodeInputError(f"{rec.ref.folder}: no intrinsics for camera {cam}: "
                                            + "; ".join(rec.missing_intrinsics.get(cam, [])))
                cams[cam] = data
            ep = build_episode(rec, cams, backend=self.name, version=self.version, mode=self.opts.mode)
        finally:
            files.cleanup()
        return ep

    def needs_recording_intrinsics(self) -> bool:
        return True

    def close(self) -> None:  # noqa: B027 (nothing to release; the ZED backend closes its camera)
        return None
