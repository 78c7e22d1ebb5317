"""robomimic / Isaac Lab / Isaac Lab Mimic / MimicGen HDF5 demos into a raygen LeRobot v3.0 dataset.

    summary = import_hdf5("demos.hdf5", "out/imported", fps=20)
    summary["errors"]   # one line per demo that could not be imported, naming file, demo and key

Every ``/data/demo_<i>`` (in the integer order robomimic loads them) becomes one Episode written through the
normal :class:`~raygen.datasets.writer.DatasetWriter` (images become videos, depth FFV1). A demo that
cannot be imported (no ``actions``, ragged lengths, a non-numeric dataset, a layout unlike the first demo's)
is reported in ``errors`` with every problem it has, and the others are still imported. A demo whose key
the output already holds is skipped, so an interrupted import can be run again.

Files raygen exported (:mod:`raygen.hdf5.robomimic`, ``/data`` attr ``raygen``) come back as they were:
state, action and every feature with its name, dtype, shape and dimension names from the attrs, cameras
from ``camera_info`` (frames, intrinsics, poses), episode key, task, success, seed, provenance, metrics.
Their derived rewards / dones and datagen_info leaves (``raygen_derived``) are not imported again.

Other files, read by their keys:

- ``observation.state``: the low-dimensional ``obs/<key>`` (1 or 2 axes), concatenated in key order, named
  ``<key>_<j>`` (``<key>`` for one value); provenance ``state_layout`` says which columns came from which
  key. Obs with more axes become features ``obs.<key>``. ``action``: ``actions``, named ``action_<j>``.
- images: ``obs/<name>`` uint8 (T,H,W,3) is camera ``<name>`` less a ``_image`` / ``_rgb`` suffix, with
  ``obs/<camera>_depth`` as its depth (uint16 millimetres as they are; floats taken as metres) and
  intrinsics / extrinsics from the demo's ``camera_info`` attr when it has them (else a placeholder K,
  marked in the camera's info). A file without images gets one frameless placeholder camera ("camera"):
  a raygen episode needs one.
- Mimic annotations, ``obs/datagen_info/...`` (Isaac Lab Mimic) or ``datagen_info/...`` (MimicGen): every
  leaf a feature ``datagen_info.<path>``, e.g. ``datagen_info.subtask_term_signals.grasp_1`` (T,) bool,
  ``datagen_info.eef_pose.franka`` (T,4,4); the first eef pose is also the gripper pose.
- gripper pose otherwise from ``robot0_eef_pos`` + ``robot0_eef_quat`` (robosuite, quaternion xyzw) or
  ``eef_pos`` + ``eef_quat`` (Isaac Lab, wxyz), else identity; opening from the finger positions
  (``robot0_gripper_qpos``, ``gripper_pos``: the sum of their magnitudes), else 0. Provenance says which.
- ``rewards`` / ``dones``: features ``next.reward`` / ``next.done``; ``states`` (a robomimic simulator
  state) the feature ``states`` and an Isaac Lab ``states/...`` group ``states.<path>``; ``processed_actions``
  likewise; ``initial_state`` goes to the provenance. Floats are stored as float32, as every raygen feature.
- ``success``: the demo attr, else whether any reward is > 0, else False; ``seed``: the demo attr.
- fps: ``fps``, else what raygen recorded, else robosuite's ``env_kwargs.control_freq``; a file that says
  none of these needs ``fps``. Task: ``task``, else the demo's ``ep_meta`` ``lang``, else ``env_name``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from raygen.datasets.episode import (
    CAMERA_POSE,
    MAX_FPS,
    CameraFrames,
    Episode,
    EpisodeValidationError,
    validate_episode,
)
from raygen.hdf5.robomimic import DONE, FORMAT_VERSION, REWARD, pose_matrices

__all__ = ["DemoError", "import_hdf5"]

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 16
_DEMO_RE = re.compile(r"^demo_(\d+)$")
_CAMERA_POSE_RE = re.compile(r"^cameras\.([A-Za-z0-9_]+)\.pose$")
_PER_FRAME = ("obs/", "datagen_info/", "states/", "states", "rewards", "dones", "processed_actions")
"""Leaves (prefixes) that must have one row per action."""
_PLACEHOLDER_SIZE = (8, 8)


class DemoError(ValueError):
    """One demo cannot be imported; the message names the file, the demo and every bad key."""

    def __init__(self, path: Path, demo: str, problems: list[str]):
        self.demo = demo
        self.problems = list(problems)
        super().__init__(f"{path}: /data/{demo}: " + "; ".join(self.problems))


def import_hdf5(
    path: Path | str,
    output: Path | str,
    *,
    fps: float | None = None,
    task: str | None = None,
    video_codec: str | None = None,
    shard_size: int | None = None,
) -> dict[str, Any]:
    """Import every demo of the HDF5 file at ``path`` into the raygen dataset at ``output`` (created, or
    added to when it exists with the same layout). ``fps`` / ``task`` override what the file says;
    ``video_codec``: the colour encoder (default libsvtav1, as LeRobot); ``shard_size``: episodes per
    committed shard (default 16). Returns a summary: dataset, file, format, imported (episode keys), frames,
    already (keys the dataset had), errors (one line per bad demo), skipped (keys not imported), seconds."""
    from raygen.datasets._video import VideoSettings
    from raygen.datasets.writer import DatasetWriter

    t0 = time.perf_counter()
    path, output = Path(path), Path(output)
    problems = []
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= MAX_FPS):
        problems.append(f"fps: must be a number in (0, {MAX_FPS:g}], got {fps!r}")
    if task is not None and (not isinstance(task, str) or not task.strip()):
        problems.append(f"task: must be a non-empty string, got {task!r}")
    if shard_size is not None and (not isinstance(shard_size, int) or shard_size < 1):
        problems.append(f"shard_size: must be an integer >= 1, got {shard_size!r}")
    if problems:
        raise ValueError("import_hdf5: " + "; ".join(problems))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 file h5py can open ({exc})") from None
    errors: list[str] = []
    imported: list[str] = []
    already: list[str] = []
    frames = 0
    with f:
        src = _Source(path, f, fps=fps, task=task)
        reference = _existing_layout(output)
        video = VideoSettings(codec=video_codec) if video_codec else None
        with DatasetWriter(output, video=video, shard_size=shard_size or DEFAULT_SHARD_SIZE) as writer:
            seen: dict[str, str] = {}
            for demo in src.demos:
                try:
                    ep = src.episode(demo)
                    try:
                        validate_episode(ep)
                    except EpisodeValidationError as exc:
                        raise DemoError(path, demo, exc.problems) from None
                    if ep.episode_key in seen:
                        raise DemoError(path, demo, [f"episode key {ep.episode_key!r} is also that of "
                                                     f"/data/{seen[ep.episode_key]}"])
                    layout = _layout(ep)
                    if reference is None:
                        reference = (layout, f"/data/{demo} of {path}")
                    elif layout != reference[0]:
                        raise DemoError(path, demo, [f"{d} (the dataset's layout comes from {reference[1]})"
                                                     for d in _layout_diff(layout, reference[0])])
                except DemoError as exc:
                    logger.warning("%s", exc)
                    errors.append(str(exc))
                    continue
                seen[ep.episode_key] = demo
                if ep.episode_key in writer.committed_keys:
                    already.append(ep.episode_key)
                    continue
                writer.add(ep)
                imported.append(ep.episode_key)
                frames += ep.length
    seconds = time.perf_counter() - t0
    logger.info("imported %d of %d demos (%d frames) from %s into %s in %.1f s; %d errors", len(imported),
                len(src.demos), frames, path, output, seconds, len(errors))
    return {"dataset": str(output), "file": str(path), "format": src.format, "demos": len(src.demos),
            "imported": imported, "frames": frames, "already": already, "errors": errors,
            "skipped": src.skipped, "seconds": round(seconds, 3)}


# --------------------------------------------------------------------------- the file


def _py(value: Any) -> Any:
    """An HDF5 attr value as a JSON value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class _AttrError(ValueError):
    """An attr that should hold JSON does not."""


def _json_attr(obj: h5py.HLObject, name: str) -> Any:
    if name not in obj.attrs:
        return None
    raw = _py(obj.attrs[name])
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise _AttrError(f"attr {name!r} is not JSON ({exc}): {str(raw)[:80]!r}") from None


def _feature_name(rel: str) -> str:
    """A raygen feature name for an HDF5 path: parts joined by dots, anything but [A-Za-z0-9_] as '_'."""
    return ".".join(re.sub(r"[^A-Za-z0-9_]", "_", p) or "_" for p in rel.split("/") if p)


def _leaves(g: h5py.Group) -> dict[str, h5py.Dataset]:
    out: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = obj

    g.visititems(visit)
    return out


class _Source:
    """One HDF5 file: file-level facts (format, fps, robot, env_args) and its demos as Episodes."""

    def __init__(self, path: Path, f: h5py.File, *, fps: float | None, task: str | None):
        self.path = path
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            raise ValueError(f"{path}: no /data group (top-level keys: {sorted(f.keys())}); not a robomimic / "
                             "Isaac Lab / MimicGen file")
        self.data = data
        try:
            self.env_args = _json_attr(data, "env_args") or {}
            self.raygen = _json_attr(data, "raygen")
        except _AttrError as exc:
            raise ValueError(f"{path}: /data: {exc}") from None
        if not isinstance(self.env_args, dict):
            raise ValueError(f"{path}: /data attr 'env_args' must be a JSON object, got {self.env_args!r}")
        if self.raygen is not None and (not isinstance(self.raygen, dict)
                                        or self.raygen.get("format", 0) > FORMAT_VERSION):
            raise ValueError(f"{path}: /data attr 'raygen' is {self.raygen!r}; this raygen reads format "
                             f"<= {FORMAT_VERSION}: update raygen")
        names = [k for k in data if _DEMO_RE.match(k)]
        self.demos = sorted(names, key=lambda k: int(_DEMO_RE.match(k).group(1)))
        self.skipped = [f"/data/{k}" for k in data if not _DEMO_RE.match(k)]
        kwargs = self.env_args.get("env_kwargs") or {}
        self.fps = float(fps or (self.raygen or {}).get("fps") or kwargs.get("control_freq") or 0)
        if not self.fps:
            raise ValueError(f"{path}: the file does not say its frame rate (no raygen attrs, no "
                             "env_args.env_kwargs.control_freq); pass fps= (raygen import hdf5 FILE --fps N)")
        robots = kwargs.get("robots")
        self.robot_type = str((self.raygen or {}).get("robot_type") or (
            robots[0] if isinstance(robots, list) and robots else robots) or "unknown")
        self.task = task
        self.env_name = str(self.env_args.get("env_name") or path.stem)
        first = data[self.demos[0]] if self.demos else None
        if self.raygen is not None:
            self.format = "raygen"
        elif isinstance(first, h5py.Group) and isinstance(first.get("obs/datagen_info"), h5py.Group):
            self.format = "isaaclab-mimic"
        elif isinstance(first, h5py.Group) and isinstance(first.get("datagen_info"), h5py.Group):
            self.format = "mimicgen"
        elif self.env_args.get("type") == 2 and isinstance(first, h5py.Group) and "rewards" not in first:
            self.format = "isaaclab"
        else:
            self.format = "robomimic"

    def episode(self, demo: str) -> Episode:
        g = self.data[demo]
        if not isinstance(g, h5py.Group):
            raise DemoError(self.path, demo, ["not a group"])
        leaves = _leaves(g)
        problems: list[str] = []
        act = leaves.get("actions")
        t = None
        if act is None:
            problems.append("actions: missing (every demo needs actions, shape (T, A))")
        elif act.dtype.kind not in "fiu":
            problems.append(f"actions: dtype {act.dtype} is not numeric")
        elif act.ndim not in (1, 2) or act.shape[0] == 0:
            problems.append(f"actions: shape {list(act.shape)}, expected (T, A) with T > 0")
        else:
            t = int(act.shape[0])
        ns = _py(g.attrs.get("num_samples"))
        if t is not None and ns is not None and int(ns) != t:
            problems.append(f"num_samples: the attr says {ns}, actions has {t} rows")
        keep = ["actions"]
        for rel, ds in leaves.items():
            if rel.startswith("initial_state/") and ds.dtype.kind in "fiub":
                keep.append(rel)
            elif not rel.startswith(_PER_FRAME):
                if rel != "actions" and not rel.startswith("next_obs/"):  # next_obs is obs shifted by one
                    self.skipped.append(f"/data/{demo}/{rel}")
            elif ds.dtype.kind not in "fiub":
                problems.append(f"{rel}: dtype {ds.dtype} is not numeric")
            elif t is not None and (ds.ndim == 0 or ds.shape[0] != t):
                rows = ds.shape[0] if ds.ndim else "no"
                problems.append(f"{rel}: {rows} rows, actions has {t} (ragged lengths)")
            else:
                keep.append(rel)
        if problems:
            raise DemoError(self.path, demo, problems)
        arrays = {rel: leaves[rel][()] for rel in keep}
        attrs = {rel: {k: _py(v) for k, v in leaves[rel].attrs.items()} for rel in arrays}
        try:
            if self.raygen is not None:
                return self._raygen_episode(demo, g, t, arrays, attrs)
            return self._foreign_episode(demo, g, t, arrays)
        except _AttrError as exc:
            raise DemoError(self.path, demo, [str(exc)]) from None

    # ------------------------------------------------------------------ files raygen wrote

    def _raygen_episode(self, demo: str, g: h5py.Group, t: int, arrays: dict[str, np.ndarray],
                        attrs: dict[str, dict[str, Any]]) -> Episode:
        problems: list[str] = []
        found: dict[str, np.ndarray] = {}
        names: dict[str, list[str]] = {}
        for rel, arr in arrays.items():
            a = attrs[rel]
            feature = a.get("raygen_feature")
            if feature is None or not rel.startswith(("obs/", "rewards", "dones")):
                continue
            try:
                shape = json.loads(a.get("raygen_shape", "null"))
                found[feature] = arr.reshape((t, *shape)) if shape is not None else arr
            except (ValueError, TypeError):
                problems.append(f"{rel}: shape {list(arr.shape)} does not fit its raygen_shape "
                                f"{a.get('raygen_shape')!r}")
                continue
            if a.get("raygen_names"):
                names[feature] = json.loads(a["raygen_names"])
        for feature, key in (("observation.state", "obs/observation_state"), ("gripper.pose", "obs/gripper_pose"),
                             ("gripper.opening", "obs/gripper_opening")):
            if feature not in found:
                problems.append(f"{key}: missing (no obs with raygen_feature {feature!r})")
        cameras = _json_attr(g, "camera_info") or {}
        if not isinstance(cameras, dict):
            problems.append(f"attr 'camera_info': expected a JSON object of cameras, got {type(cameras).__name__}")
            cameras = {}
        cams: dict[str, CameraFrames] = {}
        for cam, info in cameras.items():
            try:
                rgb = arrays[f"obs/{info['image']}"] if info.get("image") else None
                depth = arrays[f"obs/{info['depth']}"][..., 0] if info.get("depth") else None
                pose = (found.pop(CAMERA_POSE.format(camera=cam)).astype(np.float64) if info.get("moving")
                        else np.array(info["extrinsics"], dtype=np.float64))
                cams[cam] = CameraFrames(rgb=rgb, depth=depth, intrinsics=np.array(info["intrinsics"], np.float64),
                                         pose=pose, distortion=np.array(info["distortion"], np.float64),
                                         size=(int(info["height"]), int(info["width"])), info=info.get("info") or {})
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                problems.append(f"camera_info[{cam!r}]: not what raygen writes ({type(exc).__name__}: {exc})")
        if problems:
            raise DemoError(self.path, demo, problems)
        action = arrays["actions"].astype(np.float32).reshape(t, -1)
        if attrs["actions"].get("raygen_names"):
            names["action"] = json.loads(attrs["actions"]["raygen_names"])
        special = ("observation.state", "gripper.pose", "gripper.opening", "timestamp")
        features = {k: v for k, v in found.items() if k not in special}
        provenance = _json_attr(g, "raygen_provenance") or {}
        if "seed" in g.attrs and "seed" not in provenance:
            provenance["seed"] = _py(g.attrs["seed"])
        ep_meta = _json_attr(g, "ep_meta") or {}
        return Episode(
            episode_key=str(_py(g.attrs.get("raygen_episode_key")) or self._key(demo)),
            task=self.task or str(ep_meta.get("lang") or self.env_name),
            fps=self.fps,
            state=found["observation.state"].astype(np.float32),
            action=action,
            cameras=cams,
            gripper_pose=found["gripper.pose"].astype(np.float64),
            gripper_opening=found["gripper.opening"].astype(np.float64),
            timestamp=found.get("timestamp"),
            success=bool(_py(g.attrs.get("success", False))),
            robot_type=self.robot_type,
            provenance=provenance,
            gripper_geometry=_json_attr(g, "raygen_gripper_geometry") or {},
            frame_features=features,
            names={k: v for k, v in names.items() if k in features or k in ("observation.state", "action")},
            metrics=_json_attr(g, "raygen_metrics") or {},
        )

    # ------------------------------------------------------------------ files others wrote

    def _key(self, demo: str) -> str:
        return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', self.path.stem).lstrip('.') or 'hdf5'}-{demo}"

    def _foreign_episode(self, demo: str, g: h5py.Group, t: int, arrays: dict[str, np.ndarray]) -> Episode:
        made: dict[str, Any] = {}
        datagen_base = "obs/datagen_info/" if any(r.startswith("obs/datagen_info/") for r in arrays) else (
            "datagen_info/")
        obs = {rel[4:]: a for rel, a in arrays.items() if rel.startswith("obs/") and not rel.startswith(
            "obs/datagen_info/")}
        images = {k: a for k, a in obs.items() if a.dtype == np.uint8 and a.ndim == 4 and a.shape[-1] == 3}
        cam_of = {k: re.sub(r"_(image|rgb)$", "", k) for k in images}
        depth_keys = {f"{cam}_depth": cam for cam in cam_of.values() if f"{cam}_depth" in obs}
        camera_info = _json_attr(g, "camera_info") or {}
        cams: dict[str, CameraFrames] = {}
        for key, rgb in images.items():
            cam = _feature_name(cam_of[key]).replace(".", "_")
            info: dict[str, Any] = {"source_key": f"obs/{key}"}
            ci = camera_info.get(cam_of[key]) if isinstance(camera_info, dict) else None
            h, w = rgb.shape[1:3]
            k = np.array(ci["intrinsics"], np.float64) if isinstance(ci, dict) and "intrinsics" in ci else None
            if k is None or k.shape != (3, 3):
                k = np.array([[float(w), 0, (w - 1) / 2], [0, float(w), (h - 1) / 2], [0, 0, 1]])
                info["intrinsics"] = "unknown: placeholder fx = fy = width"
            pose = np.array(ci["extrinsics"], np.float64) if isinstance(ci, dict) and "extrinsics" in ci else None
            if pose is None or pose.shape != (4, 4):
                pose = np.eye(4)
                info["extrinsics"] = "unknown: identity"
            depth = None
            dkey = f"{cam_of[key]}_depth"
            if dkey in depth_keys:
                d = obs[dkey].reshape(obs[dkey].shape[:3])
                if d.dtype.kind == "f":
                    d = np.round(np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0) * 1000.0).clip(0, 65535)
                    info["depth"] = f"obs/{dkey} taken as metres"
                depth = d.astype(np.uint16)
            cams[cam] = CameraFrames(rgb=np.ascontiguousarray(rgb), depth=depth, intrinsics=k, pose=pose, info=info)
        if not cams:
            h, w = _PLACEHOLDER_SIZE
            cams["camera"] = CameraFrames(rgb=None, intrinsics=np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]]),
                                          pose=np.eye(4), size=_PLACEHOLDER_SIZE,
                                          info={"placeholder": "the HDF5 demo has no images; raygen needs a camera"})

        state_parts, state_names, layout, features = [], [], {}, {}
        col = 0
        for key in sorted(obs):
            a = obs[key]
            if key in images or key in depth_keys:
                continue
            if a.ndim in (1, 2):
                flat = a.reshape(t, -1).astype(np.float32)
                name = _feature_name(key).replace(".", "_")
                state_parts.append(flat)
                state_names += [name] if flat.shape[1] == 1 else [f"{name}_{j}" for j in range(flat.shape[1])]
                layout[f"obs/{key}"] = [col, col + flat.shape[1]]
                col += flat.shape[1]
            else:
                features[f"obs.{_feature_name(key)}"] = a
        for rel, a in arrays.items():
            if rel.startswith(datagen_base):
                features["datagen_info." + _feature_name(rel[len(datagen_base):])] = a
            elif rel in ("rewards", "dones"):
                features[REWARD if rel == "rewards" else DONE] = a
            elif rel == "states" or rel.startswith("states/") or rel == "processed_actions":
                features[_feature_name(rel)] = a
        if state_parts:
            state = np.concatenate(state_parts, axis=1)
        elif "states" in arrays and arrays["states"].ndim == 2:
            state = arrays["states"].astype(np.float32)
            state_names = [f"states_{j}" for j in range(state.shape[1])]
            layout["states"] = [0, state.shape[1]]
        else:
            raise DemoError(self.path, demo, ["obs: no low-dimensional observation (or states) to make "
                                              "observation.state from"])
        made["state_layout"] = layout
        gripper_pose, made["gripper_pose"] = self._eef_pose(arrays, obs, datagen_base, t)
        opening, made["gripper_opening"] = _opening(obs, t)

        action = arrays["actions"].astype(np.float32).reshape(t, -1)
        success_attr = _py(g.attrs.get("success"))
        if success_attr is not None:
            success, made["success_from"] = bool(success_attr), "attr"
        elif "rewards" in arrays:
            success, made["success_from"] = bool(np.any(arrays["rewards"] > 0)), "rewards"
        else:
            success, made["success_from"] = False, "unknown"
        ep_meta = _json_attr(g, "ep_meta") if "ep_meta" in g.attrs else None
        initial = {rel[len("initial_state/"):]: a.tolist() for rel, a in arrays.items()
                   if rel.startswith("initial_state/") and a.size <= 4096}
        provenance = {"backend": "hdf5", "source_format": self.format, "source_file": str(self.path),
                      "demo": demo, "env_args": self.env_args, **made}
        if "seed" in g.attrs:
            provenance["seed"] = _py(g.attrs["seed"])
        if initial:
            provenance["initial_state"] = initial
        if isinstance(ep_meta, dict):
            provenance["ep_meta"] = ep_meta
        lang = ep_meta.get("lang") if isinstance(ep_meta, dict) else None
        return Episode(
            episode_key=self._key(demo),
            task=self.task or str(lang or self.env_name),
            fps=self.fps,
            state=state,
            action=action,
            cameras=cams,
            gripper_pose=gripper_pose,
            gripper_opening=opening,
            success=success,
            robot_type=self.robot_type,
            provenance=json.loads(json.dumps(provenance, default=_py)),
            frame_features=features,
            names={"observation.state": state_names, "action": [f"action_{j}" for j in range(action.shape[1])]},
        )

    @staticmethod
    def _eef_pose(arrays: dict[str, np.ndarray], obs: dict[str, np.ndarray], base: str, t: int
                  ) -> tuple[np.ndarray, str]:
        eef = sorted(r for r in arrays if r == f"{base}eef_pose" or r.startswith(f"{base}eef_pose/"))
        for rel in eef:
            if arrays[rel].shape[1:] == (4, 4):
                return arrays[rel].astype(np.float64), rel
        for pos, quat, order in (("robot0_eef_pos", "robot0_eef_quat", "xyzw"), ("eef_pos", "eef_quat", "wxyz")):
            if pos in obs and quat in obs and obs[pos].shape[1:] == (3,) and obs[quat].shape[1:] == (4,):
                q = obs[quat].astype(np.float64)
                q = q[:, [3, 0, 1, 2]] if order == "xyzw" else q
                return pose_matrices(np.concatenate([obs[pos].astype(np.float64), q], axis=1)), f"obs/{pos} + {quat}"
        return np.tile(np.eye(4), (t, 1, 1)), "unknown: identity"


def _opening(obs: dict[str, np.ndarray], t: int) -> tuple[np.ndarray, str]:
    for key in ("robot0_gripper_qpos", "gripper_pos", "gripper_qpos"):
        if key in obs and obs[key].ndim in (1, 2):
            return np.abs(obs[key].reshape(t, -1).astype(np.float64)).sum(axis=1), f"obs/{key}"
    return np.zeros(t), "unknown: 0"


# --------------------------------------------------------------------------- one layout per dataset


def _kind(a: np.ndarray) -> str:
    return "bool" if a.dtype == np.bool_ else ("float" if a.dtype.kind == "f" else "int")


def _layout(ep: Episode) -> dict[str, Any]:
    """What every episode of one dataset shares (what the committer will insist on)."""
    return {
        "robot_type": ep.robot_type,
        "fps": float(ep.fps),
        "observation.state": (ep.state.shape[1:], tuple(ep.names.get("observation.state") or ())),
        "action": (ep.action.shape[1:], tuple(ep.names.get("action") or ())),
        "features": {k: (_kind(np.asarray(a)), tuple(np.asarray(a).shape[1:]), tuple(ep.names.get(k) or ()))
                     for k, a in ep.frame_features.items()},
        "cameras": {c: (cam.resolution, cam.rgb is not None, cam.depth is not None, cam.moving)
                    for c, cam in ep.cameras.items()},
        "source_timestamps": ep.timestamp is not None,
    }


def _layout_diff(mine: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    out = []
    for key in ref:
        if key in ("features", "cameras"):
            a, b = mine[key], ref[key]
            out += [f"{key}: {k!r} is missing" for k in sorted(set(b) - set(a))]
            out += [f"{key}: {k!r} is not in the dataset" for k in sorted(set(a) - set(b))]
            out += [f"{key}: {k!r} is {a[k]}, the dataset has {b[k]}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
        elif mine[key] != ref[key]:
            out.append(f"{key}: {mine[key]!r}, the dataset has {ref[key]!r}")
    return out


def _existing_layout(output: Path) -> tuple[dict[str, Any], str] | None:
    """The layout of the dataset already at ``output`` (its first episode), or None for a new one."""
    if not (output / "meta" / "info.json").exists():
        return None
    from raygen.datasets.reader import DatasetReader

    reader = DatasetReader(output)
    if not len(reader):
        return None
    ep = reader.episode(0, decode_video=False, decode_depth=False)
    if "timestamp.source" not in reader.info.get("features", {}):
        ep.timestamp = None
    return _layout(ep), f"{output} (episode {ep.episode_key!r})"
