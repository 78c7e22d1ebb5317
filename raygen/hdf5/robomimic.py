"""A raygen dataset as one robomimic / Isaac Lab Mimic HDF5 file (REFERENCE.md section 10).

    summary = export_robomimic("out/pick_place", "out/pick_place.hdf5", images="rgb", size=(84, 84))

Layout, one ``/data/demo_<i>`` per episode (i from 0, in the order selected):

- ``/data`` attrs ``total`` (samples in all demos), ``env_args`` (JSON: env_name ``<task>/<backend>``,
  ``type`` 2, ``env_kwargs`` with backend, version, robot, fps, cameras) and ``raygen`` (JSON: where the
  file came from, the format version the importer reads).
- demo attrs ``num_samples``, ``seed`` (the run seed, when the episode has one), ``success``, ``ep_meta``
  (JSON, ``lang`` = the task), ``camera_info`` (JSON per camera: intrinsics K for the stored size, distortion,
  height, width, extrinsics = camera-to-base pose with OpenCV axes, or the obs key of a moving camera's
  poses) and the raygen provenance: ``raygen_episode_key``, ``raygen_provenance``, ``raygen_metrics``,
  ``raygen_gripper_geometry`` (JSON).
- datasets ``actions`` (T,A) float32, ``states`` (T,S) = observation.state, ``rewards`` (T,) and ``dones``
  (T,): the dataset's ``next.reward`` / ``next.done`` features when it has them, else a sparse reward (1 on
  the last frame of a successful episode) and done = 1 on the last frame (attr ``raygen_derived``).
- ``obs/<key>`` for every numeric per-frame feature, the key being the feature name with dots as
  underscores: ``observation_state``, ``gripper_pose`` (T,4,4), ``gripper_opening``, ``timestamp`` (the
  source clock, when the dataset has one), ``object_pose``, ``<camera>_extrinsics`` for a moving camera, ...
  One-value features are stored (T,1), as robomimic's low_dim encoders expect. Each carries attrs
  ``raygen_feature`` (the original name), ``raygen_shape`` (the per-frame shape in raygen) and
  ``raygen_names`` (the per-dimension names), so :mod:`raygen.hdf5.importer` restores them exactly.
- images: ``obs/<camera>_image`` (T,H,W,3) uint8 and, for ``images="rgbd"``, ``obs/<camera>_depth``
  (T,H,W,1) uint16 millimetres, 0 = invalid (robomimic's default depth processor expects [0, 1]: scale it).
- ``next_obs/<key>`` (obs shifted by one, the last repeated) when ``next_obs`` is set.
- Isaac Lab Mimic ``obs/datagen_info``: ``eef_pose/<robot_type>`` (T,4,4) from the gripper pose,
  ``object_pose/<object>`` (T,4,4) from ``object.pose`` / ``object.<name>.pose`` features, and every
  ``datagen_info.<a>.<b>`` feature as ``datagen_info/<a>/<b>`` (subtask_term_signals, ... kept by an
  import); group attr ``raygen_derived`` lists the leaves made here rather than carried by the dataset.
- ``/mask/train`` and ``/mask/valid`` (demo names as bytes) when ``valid_fraction`` > 0: a fixed random
  split (numpy default_rng(0)), at least one demo on each side.

Every dataset is compressed (``compression``: gzip at ``compression_level``, lzf or none), images in chunks
of one frame so a loader reads a frame without inflating its neighbours.

Parallel export: with ``workers`` > 1 the episodes are split into contiguous runs, each written by a Ray
task into its own part file next to ``output`` (named with a run id, so a retried task rewrites only its
own part); the driver then copies the demo groups into one file (HDF5 object copy: compressed chunks are
copied, not re-encoded), writes the /data attrs and masks and renames it into place. One file rather than
a manifest of parts, because robomimic, Isaac Lab Mimic and MimicGen all read exactly one file. Demo
numbers are global: the file is the same whatever ``workers`` is. An existing ``output`` is replaced only
with ``overwrite``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from raygen.datasets.episode import CAMERA_POSE, Episode
from raygen.hdf5.common import IMAGE_MODES, camera_images, run_parts, select_episodes, split

__all__ = ["FORMAT_VERSION", "export_robomimic", "obs_key", "pose_matrices"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""The version of the raygen attrs in an exported file (``/data`` attr ``raygen``)."""
ENV_TYPE_GYM = 2  # robomimic EnvType: 1 robosuite, 2 gym, 3 iGibson; Isaac Lab writes 2
COMPRESSIONS = ("gzip", "lzf", "none")
REWARD, DONE = "next.reward", "next.done"
"""Frame features that become a demo's rewards / dones (LeRobot's names for them)."""
DATAGEN_PREFIX = "datagen_info."
"""Frame features under this prefix go to obs/datagen_info/<rest, dots as slashes>."""
_OBJECT_POSE = re.compile(r"^objects?\.(?:([A-Za-z0-9_]+)\.)?pose$")


@dataclass(frozen=True)
class _Options:
    images: str
    size: tuple[int, int] | None
    compression: str | None
    compression_level: int | None
    next_obs: bool
    timestamps: bool
    """The dataset keeps its source clock (timestamp.source): export it as obs/timestamp."""


def obs_key(feature: str) -> str:
    """The HDF5 / robomimic key of a feature: dots become underscores (torch module names and robomimic's
    ``obs/<key>`` paths cannot hold dots)."""
    return feature.replace(".", "_")


def pose_matrices(pose: np.ndarray) -> np.ndarray:
    """[T,4,4] transforms from [T,7] poses (x, y, z, qw, qx, qy, qz) or [T,4,4] as they are."""
    p = np.asarray(pose, dtype=np.float64)
    if p.ndim == 3 and p.shape[1:] == (4, 4):
        return p
    if p.ndim != 2 or p.shape[1] != 7:
        raise ValueError(f"a pose must be [T,7] (xyz + quaternion wxyz) or [T,4,4], got {list(p.shape)}")
    q = p[:, 3:] / np.maximum(np.linalg.norm(p[:, 3:], axis=1, keepdims=True), 1e-12)
    w, x, y, z = q.T
    out = np.zeros((len(p), 4, 4))
    out[:, 0] = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w), p[:, 0]], 1)
    out[:, 1] = np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w), p[:, 1]], 1)
    out[:, 2] = np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y), p[:, 2]], 1)
    out[:, 3, 3] = 1.0
    return out


def export_robomimic(
    root: Path | str,
    output: Path | str,
    *,
    episodes: str | Sequence[int] | None = None,
    images: str = "none",
    size: tuple[int, int] | None = None,
    compression: str | None = "gzip",
    compression_level: int | None = 4,
    workers: int = 1,
    next_obs: bool = False,
    valid_fraction: float = 0.0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the episodes of the raygen dataset at ``root`` to one robomimic / Isaac Lab Mimic HDF5 file.

    ``episodes``: a selection as :func:`raygen.hdf5.common.select_episodes` reads it ("0-9,15", "@keys.txt")
    or a list of indices; None = all. ``images``: none / rgb / rgbd; ``size``: (height, width) to resize to,
    None = as recorded. ``workers``: Ray tasks writing parts in parallel (see the module docstring). An
    existing file at ``output`` is replaced only with ``overwrite`` (the new file is renamed over it at the end).
    Returns a summary: file, files, demos, samples, episodes (keys in demo order), train / valid counts,
    seconds.
    """
    from raygen.datasets.reader import DatasetReader

    t0 = time.perf_counter()
    root, output = Path(root), Path(output)
    opts, workers = _options(images, size, compression, compression_level, workers, next_obs, valid_fraction)
    if output.is_dir():
        raise ValueError(f"output: {output} is a folder; give the path of the .hdf5 file to write")
    if output.exists() and not overwrite:
        raise ValueError(f"output: {output} exists; pass overwrite=True (--overwrite) to replace it")
    reader = DatasetReader(root)
    indices = _indices(reader, episodes)
    if not indices:
        raise ValueError(f"episodes: the selection {episodes!r} picks no episode of {root} ({len(reader)} episodes)")
    if valid_fraction > 0 and len(indices) < 2:
        raise ValueError(f"valid_fraction: {valid_fraction} needs at least 2 demos for a train/valid split, "
                         f"the selection has {len(indices)}")
    opts = replace(opts, timestamps="timestamp.source" in reader.info.get("features", {}))
    output.parent.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    jobs = split(list(enumerate(indices)), workers)
    parts = [(str(output.with_name(f".{output.name}.{run}.part{i:03d}")), [tuple(j) for j in job])
             for i, job in enumerate(jobs)]
    tmp = output.with_name(f".{output.name}.{run}.tmp")
    try:
        results = run_parts(_write_part, parts, workers=workers, root=str(root), opts=opts)
        n_valid = _assemble(results, tmp, valid_fraction, source=str(root))
        os.replace(tmp, output)
    finally:
        for path in [tmp, *(Path(p) for p, _ in parts)]:
            path.unlink(missing_ok=True)
    demos = [d for r in results for d in r["demos"]]
    seconds = time.perf_counter() - t0
    logger.info("exported %d episodes (%d samples) of %s to %s in %.1f s", len(demos), sum(d[2] for d in demos),
                root, output, seconds)
    return {
        "file": str(output),
        "files": [str(output)],
        "demos": len(demos),
        "samples": int(sum(d[2] for d in demos)),
        "episodes": [d[1] for d in demos],
        "train": len(demos) - n_valid,
        "valid": n_valid,
        "images": opts.images,
        "workers": workers,
        "seconds": round(seconds, 3),
    }


# --------------------------------------------------------------------------- driver side


def _options(images: str, size: Any, compression: str | None, level: int | None, workers: int, next_obs: bool,
             valid_fraction: float) -> tuple[_Options, int]:
    """Check every argument and report every problem at once."""
    problems = []
    if images not in IMAGE_MODES:
        problems.append(f"images: {images!r} is not one of {', '.join(IMAGE_MODES)}")
    if size is not None:
        ok = isinstance(size, Sequence) and len(size) == 2 and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 8 and v % 2 == 0 for v in size)
        if not ok:
            problems.append(f"size: {size!r} must be (height, width), both even and >= 8 pixels, or None")
        else:
            size = (int(size[0]), int(size[1]))
    comp = "none" if compression is None else str(compression).lower()
    if comp not in COMPRESSIONS:
        problems.append(f"compression: {compression!r} is not one of {', '.join(COMPRESSIONS)}")
    if comp == "gzip" and not (isinstance(level, int) and 0 <= level <= 9):
        problems.append(f"compression_level: gzip takes 0..9, got {level!r}")
    if not isinstance(workers, int) or workers < 1:
        problems.append(f"workers: must be an integer >= 1, got {workers!r}")
    if not isinstance(valid_fraction, int | float) or not 0.0 <= float(valid_fraction) < 1.0:
        problems.append(f"valid_fraction: must be in [0, 1), got {valid_fraction!r}")
    if problems:
        raise ValueError("export_robomimic: " + "; ".join(problems))
    return _Options(images=images, size=size, compression=None if comp == "none" else comp,
                    compression_level=level if comp == "gzip" else None, next_obs=bool(next_obs),
                    timestamps=False), workers


def _indices(reader: Any, episodes: str | Sequence[int] | None) -> list[int]:
    if episodes is None or isinstance(episodes, str):
        return select_episodes(reader, episodes)
    n, out = len(reader), []
    for i in episodes:
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= int(i) < n:
            raise ValueError(f"episodes: {i!r} is not an episode index of {reader.root} (0..{n - 1})")
        out.append(int(i))
    return list(dict.fromkeys(out))


def _assemble(results: list[dict[str, Any]], tmp: Path, valid_fraction: float, *, source: str) -> int:
    """Join the part files into ``tmp`` and write the file-level attrs and masks; returns the valid count."""
    if len(results) == 1:
        os.replace(results[0]["path"], tmp)
    else:
        with h5py.File(tmp, "w") as dst:
            data = dst.create_group("data")
            for r in results:
                with h5py.File(r["path"], "r") as src:
                    for name in src["data"]:
                        src.copy(src["data"][name], data, name=name)
    demos = [d for r in results for d in r["demos"]]
    names = [d[0] for d in demos]
    n_valid = 0
    with h5py.File(tmp, "r+") as f:
        data = f["data"]
        data.attrs["total"] = int(sum(d[2] for d in demos))
        data.attrs["env_args"] = json.dumps(results[0]["env_args"])
        data.attrs["raygen"] = json.dumps({"format": FORMAT_VERSION, "source": source, **results[0]["raygen"]})
        if valid_fraction > 0:
            n_valid = min(len(names) - 1, max(1, round(valid_fraction * len(names))))
            pick = set(np.random.default_rng(0).permutation(len(names))[:n_valid].tolist())
            mask = f.create_group("mask")
            mask.create_dataset("train", data=np.array([n for i, n in enumerate(names) if i not in pick], "S"))
            mask.create_dataset("valid", data=np.array([n for i, n in enumerate(names) if i in pick], "S"))
    return n_valid


# --------------------------------------------------------------------------- worker side


def _write_part(part: tuple[str, list[tuple[int, int]]], *, root: str, opts: _Options) -> dict[str, Any]:
    """Write demos ``[(demo number, episode index), ...]`` of ``root`` into the part file; runs in a worker."""
    from raygen.datasets.reader import DatasetReader

    path, jobs = part
    reader = DatasetReader(root)
    demos, env_args = [], None
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for number, index in jobs:
            ep = reader.episode(int(index), decode_video=opts.images != "none",
                                 decode_depth=opts.images == "rgbd")
            if env_args is None:
                env_args = _env_args(ep, reader)
            name = f"demo_{int(number)}"
            _write_demo(data.create_group(name), ep, opts)
            demos.append((name, ep.episode_key, ep.length))
    return {"path": path, "demos": demos, "env_args": env_args,
            "raygen": {"fps": reader.fps, "robot_type": reader.info.get("robot_type"),
                       "codebase_version": reader.info.get("codebase_version"), "images": opts.images,
                       "size": list(opts.size) if opts.size else None}}


def _env_args(ep: Episode, reader: Any) -> dict[str, Any]:
    prov = ep.provenance
    backend, task = prov.get("backend"), prov.get("task")
    env_name = "/".join(str(x) for x in (task, backend) if x) or "raygen"
    return {"env_name": env_name, "type": ENV_TYPE_GYM,
            "env_kwargs": {"backend": backend, "backend_version": prov.get("backend_version"), "task": task,
                           "robot_type": ep.robot_type, "fps": reader.fps, "cameras": list(reader.cameras),
                           "raygen_dataset": str(reader.root)}}


class _Obs:
    """The obs of one demo: HDF5 key -> (array, attrs); two features mapping to one key is an error."""

    def __init__(self, episode_key: str):
        self.episode_key = episode_key
        self.items: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self.owner: dict[str, str] = {}

    def add(self, key: str, owner: str, arr: np.ndarray, attrs: dict[str, Any]) -> None:
        if key in self.items:
            raise ValueError(f"episode {self.episode_key!r}: {owner} and {self.owner[key]} both become obs/{key}; "
                             "rename one of the features")
        self.items[key], self.owner[key] = (arr, attrs), owner

    def feature(self, feature: str, arr: np.ndarray, names: list[str] | None, key: str | None = None) -> None:
        a = np.asarray(arr)
        attrs = {"raygen_feature": feature, "raygen_shape": json.dumps(list(a.shape[1:]))}
        if names:
            attrs["raygen_names"] = json.dumps(list(names))
        self.add(key or obs_key(feature), f"feature {feature!r}", a.reshape(len(a), 1) if a.ndim == 1 else a, attrs)


def _write_demo(g: h5py.Group, ep: Episode, opts: _Options) -> None:
    t = ep.length
    obs = _Obs(ep.episode_key)
    obs.feature("observation.state", np.asarray(ep.state, np.float32), ep.names.get("observation.state"))
    obs.feature("gripper.pose", np.asarray(ep.gripper_pose, np.float32), None)
    obs.feature("gripper.opening", np.asarray(ep.gripper_opening, np.float32), None)
    if opts.timestamps and ep.timestamp is not None:
        obs.feature("timestamp", np.asarray(ep.timestamp, np.float64), None)
    datagen: dict[str, np.ndarray] = {}
    carried: dict[str, np.ndarray] = {}
    for fname, arr in ep.frame_features.items():
        if fname in (REWARD, DONE):
            carried[fname] = np.asarray(arr)
        elif fname.startswith(DATAGEN_PREFIX):
            datagen[fname[len(DATAGEN_PREFIX):].replace(".", "/")] = np.asarray(arr)
        else:
            obs.feature(fname, arr, ep.names.get(fname))
    derived = []
    if not any(k.startswith("eef_pose/") for k in datagen):  # Isaac Lab Mimic names the eef by its robot
        eef = f"eef_pose/{re.sub(r'[^A-Za-z0-9_]', '_', ep.robot_type) or 'robot'}"
        datagen[eef] = np.asarray(ep.gripper_pose, np.float32)
        derived.append(eef)
    for fname, arr in ep.frame_features.items():
        m = _OBJECT_POSE.match(fname)
        leaf = f"object_pose/{m.group(1) or 'object'}" if m else None
        if leaf and leaf not in datagen and np.asarray(arr).shape[1:] in ((7,), (4, 4)):
            datagen[leaf] = pose_matrices(arr).astype(np.float32)
            derived.append(leaf)

    cameras: dict[str, Any] = {}
    for cam, frames in ep.cameras.items():
        rgb, depth, k = camera_images(frames, opts.images, opts.size)
        h, w = opts.size or frames.resolution
        info: dict[str, Any] = {"intrinsics": k.tolist(), "distortion": np.asarray(frames.distortion).tolist(),
                                "height": int(h), "width": int(w), "moving": bool(frames.moving),
                                "image": None, "depth": None, "info": frames.info}
        if rgb is not None:
            info["image"] = f"{cam}_image"
            obs.add(info["image"], f"camera {cam!r}", rgb, {"raygen_camera": cam})
        if depth is not None:
            info["depth"] = f"{cam}_depth"
            obs.add(info["depth"], f"camera {cam!r} depth", depth[..., None],
                    {"raygen_camera": cam, "units": "mm", "invalid": 0})
        if frames.moving:
            info["extrinsics"] = f"{cam}_extrinsics"
            obs.feature(CAMERA_POSE.format(camera=cam), np.asarray(frames.pose, np.float32), None,
                        key=info["extrinsics"])
        else:
            info["extrinsics"] = np.asarray(frames.pose, np.float64).tolist()
        cameras[cam] = info

    seed = ep.provenance.get("seed")
    g.attrs["num_samples"] = t
    if isinstance(seed, int) and not isinstance(seed, bool):
        g.attrs["seed"] = seed
    g.attrs["success"] = bool(ep.success)
    g.attrs["ep_meta"] = json.dumps({"lang": ep.task})
    g.attrs["camera_info"] = json.dumps(cameras)
    g.attrs["raygen_episode_key"] = ep.episode_key
    g.attrs["raygen_provenance"] = json.dumps(ep.provenance)
    g.attrs["raygen_metrics"] = json.dumps(ep.metrics)
    g.attrs["raygen_gripper_geometry"] = json.dumps(ep.gripper_geometry)

    _dataset(g, "actions", np.asarray(ep.action, np.float32), opts,
             {"raygen_feature": "action", **_names_attr(ep.names.get("action"))})
    _dataset(g, "states", np.asarray(ep.state, np.float32), opts,
             {"raygen_feature": "observation.state", **_names_attr(ep.names.get("observation.state"))})
    rewards = np.zeros(t)
    rewards[-1] = float(ep.success)
    dones = np.zeros(t, np.int64)
    dones[-1] = 1
    for name, fname, fallback in (("rewards", REWARD, rewards), ("dones", DONE, dones)):
        if fname in carried:
            _dataset(g, name, carried[fname], opts, {"raygen_feature": fname})
        else:
            _dataset(g, name, fallback, opts, {"raygen_derived": True})
    og = g.create_group("obs")
    for key, (arr, attrs) in obs.items.items():
        _dataset(og, key, arr, opts, attrs)
    if datagen:
        dg = og.create_group("datagen_info")
        dg.attrs["raygen_derived"] = json.dumps(derived)
        for leaf, arr in datagen.items():
            carried_as = {} if leaf in derived else {"raygen_feature": DATAGEN_PREFIX + leaf.replace("/", ".")}
            _dataset(dg, leaf, arr, opts, carried_as)
    if opts.next_obs:
        ng = g.create_group("next_obs")
        for key, (arr, attrs) in obs.items.items():
            _dataset(ng, key, np.concatenate([arr[1:], arr[-1:]]), opts, attrs)


def _names_attr(names: list[str] | None) -> dict[str, str]:
    return {"raygen_names": json.dumps(list(names))} if names else {}


def _dataset(g: h5py.Group, name: str, arr: np.ndarray, opts: _Options, attrs: dict[str, Any]) -> None:
    a = np.ascontiguousarray(arr)
    kw: dict[str, Any] = {}
    if opts.compression and a.size:
        kw["compression"] = opts.compression
        if opts.compression_level is not None:
            kw["compression_opts"] = opts.compression_level
        if a.ndim == 4:  # images: one frame per chunk
            kw["chunks"] = (1, *a.shape[1:])
    ds = g.create_dataset(name, data=a, **kw)
    for k, v in attrs.items():
        ds.attrs[k] = v
