"""A raygen dataset as GenSim2 VPL HDF5 files (seed 001, REFERENCE.md section 10).

    summary = export_vpl("out/pick_place", "out/pick_place_vpl", workers=2)

Layout (one file per episode, written by the worker that exports it; the two dataset files by the driver at
the end; every file through a temporary name and an atomic rename)::

    <output>/metadata.json                {"num_timesteps": [T per episode], "num_episodes": n}
    <output>/intrinsics.h5                "intrinsics" (N_cams, 3, 3) float32, in the dataset's camera order
    <output>/episode_<i>/episode_<i>.h5   i = 0..n-1 in the order the episodes were selected

Each episode file holds, time first (T frames), float32 unless said:

- ``action`` (T, A) as recorded; ``state`` (T, D) observation.state as recorded (attr ``names``).
- ``reward`` (T,): 1.0 on the last frame of a successful episode, else 0 (raygen records success, not rewards;
  attr ``source`` says so). ``done`` (T,) bool: True on the last frame.
- ``joint_pos`` (T, 7|9): the state's ``joint_<i>`` dimensions, then its finger dimensions (``finger_*``) when it
  has them, like SAPIEN's Panda qpos. ``joint_vel`` (same width): the state's ``<name>_vel`` dimensions where it
  records them, the others central finite differences at the dataset's fps (attr ``derived`` names them). Both
  are left out when the state names no joints (the file's attr ``omitted`` says so).
- ``ee_position`` (T, 3), ``ee_rotation`` (T, 4) quaternion (w, x, y, z): the state's ``eef_*`` dimensions (the TCP
  on pick-and-place), else the flange pose (``gripper.pose``); ``eef_pose`` (T, 16): the same pose as a 4x4
  matrix, row-major. Attr ``source`` names where they came from.
- ``gripper_width`` (T, 1): the finger gap in metres (``gripper.opening``). ``gripper_state`` (T,): the gripper
  command, the action's ``gripper`` dimension (the seed files gripper states under actions; on pick-and-place
  the commanded per-finger opening, 0.04 open, 0 closed), else the state's ``gripper`` dimension; left out
  when neither exists. Attr ``source`` names the column; its units are the dataset's own.
- ``obj_positions/<name>`` (T, 3) and ``obj_rotations/<name>`` (T, 4, w x y z): every frame feature whose seven
  names are ``<name>_x, _y, _z, _qw, _qx, _qy, _qz`` (pick-and-place: ``object.pose`` -> ``object``).
- ``point_cloud/<t>`` (N_t, 6): x, y, z in metres in the robot base frame (raygen's world) and r, g, b / 255, every
  camera with depth fused by concatenation in camera order, one dataset per kept frame; ``<t>`` is the frame
  index, so with ``point_cloud_stride`` s the names are 0, s, 2s, ... A pixel with depth 0 (invalid) gives no
  point. Points are recorded pixels back-projected through their own ray (intrinsics and distortion of the
  recorded size): with ``size``, the recorded pixels the stored depth images keep (nearest neighbour), so there
  are as many as the stored images have pixels but none is moved by resampling. ``point_cloud_max_points``
  keeps a random subset (seeded with the source episode index and frame, so reruns and worker counts agree),
  in pixel order.
- ``observation/``: the seed's observation key. ``observation/image/<camera>`` (T, h, w, 3) uint8 RGB and, with
  ``images="rgbd"``, ``observation/depth/<camera>`` (T, h, w) uint16 millimetres (0 = invalid); chunked per frame.
  ``observation/state`` and ``observation/point_cloud`` are HDF5 soft links to ``/state`` and ``/point_cloud``,
  so readers of the seed's layout and of the saver's code (which writes ``state`` and ``point_cloud`` at the
  top) both find them without a second copy.
- ``task_description``: a variable-length UTF-8 string.

Where seed 001 and REFERENCE.md section 10 differ, the seed is followed: it lists ``observation``, so images live
under ``observation/image/<camera>``, one dataset per camera, and there is no top-level ``image`` (the saver's
code stacked whatever its environment returned). There are no ``articulated_*`` groups: raygen records no
articulated objects. Additions the VPL files did not have, which their readers ignore: the dataset ``intrinsics``
carries an attr ``camera_names`` (JSON list, the order of its first axis; the original stored no names, so its
rows could not be told apart); each episode file carries attrs ``episode_key``, ``source_episode_index``,
``fps``, ``success``, ``robot_type``, ``camera_names`` and ``intrinsics`` (that episode's K at the stored size;
``intrinsics.h5`` holds the first exported episode's, and a warning is logged when another episode's differ);
arrays carry ``names`` or ``source`` attrs as said above.

Modes, with the saver's meanings: ``states_only`` writes no images and no point clouds; ``point_cloud_only``
writes point clouds but no images; otherwise images as ``images`` says (none, rgb, rgbd) and point clouds.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raygen.datasets.episode import CameraFrames, Episode, continuous_quaternions
from raygen.hdf5.common import IMAGE_MODES, camera_images, nearest_indices, run_parts, select_episodes, split

__all__ = ["COMPRESSIONS", "OutputExistsError", "export_vpl"]

logger = logging.getLogger(__name__)

COMPRESSIONS = ("gzip", "lzf", "none")
_EPISODE_DIR = re.compile(r"^episode_\d+$")
_JOINT = re.compile(r"^joint_(\d+)$")
_POSE_SUFFIXES = ("_x", "_y", "_z", "_qw", "_qx", "_qy", "_qz")


class OutputExistsError(ValueError):
    """The output folder already holds files and ``overwrite`` was not given."""


@dataclass(frozen=True)
class _Options:
    images: str
    size: tuple[int, int] | None
    compression: str | None
    compression_level: int | None
    point_clouds: bool
    point_cloud_stride: int
    point_cloud_max_points: int | None

    def h5(self) -> dict[str, Any]:
        """create_dataset keywords for compressed arrays."""
        if self.compression is None:
            return {}
        if self.compression == "gzip":
            return {"compression": "gzip", "compression_opts": self.compression_level}
        return {"compression": self.compression}


def export_vpl(
    root: Path | str,
    output: Path | str,
    *,
    episodes: str | None = None,
    images: str = "rgb",
    size: tuple[int, int] | None = None,
    compression: str | None = "gzip",
    compression_level: int = 9,
    workers: int = 1,
    states_only: bool = False,
    point_cloud_only: bool = False,
    point_cloud_stride: int = 1,
    point_cloud_max_points: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the episodes of the raygen dataset at ``root`` as GenSim2 VPL files under ``output`` (layout in the
    module docstring).

    ``episodes``: a selection as :func:`raygen.hdf5.common.select_episodes` reads it (None: all); they become
    episode_0.. in that order. ``images``: none, rgb or rgbd; ``size``: (height, width) of the stored images and
    of the pixel grid point clouds are taken on, None for the recorded size. ``compression``: gzip (at
    ``compression_level`` 0-9), lzf or none (None). ``workers`` > 1 splits the episodes over that many Ray tasks.
    ``states_only``: no images, no point clouds; ``point_cloud_only``: point clouds, no images.
    ``point_cloud_stride``: a point cloud every that many frames; ``point_cloud_max_points``: at most that many
    points per frame. ``overwrite``: replace an earlier export in ``output`` (its metadata.json, intrinsics.h5
    and episode_<i> folders; nothing else there is touched).

    Returns a summary: output (the folder), files (every path written), episodes, timesteps, images (the mode
    written), point_clouds (bool), workers, seconds.
    """
    from raygen.datasets.reader import DatasetReader

    t0 = time.perf_counter()
    opts = _options(images=images, size=size, compression=compression, compression_level=compression_level,
                    workers=workers, states_only=states_only, point_cloud_only=point_cloud_only,
                    point_cloud_stride=point_cloud_stride, point_cloud_max_points=point_cloud_max_points)
    reader = DatasetReader(root)
    chosen = select_episodes(reader, episodes)
    out = Path(output)
    _prepare_output(out, overwrite=overwrite)
    cameras = reader.cameras
    jobs = list(enumerate(chosen))
    parts = split(jobs, workers) if jobs else []
    results = [r for part in run_parts(_export_part, parts, workers=workers, root=str(reader.root),
                                       output=str(out), opts=opts, cameras=cameras) for r in part]
    results.sort(key=lambda r: r["index"])
    files = [r["path"] for r in results]
    if results:
        files.append(str(_write_intrinsics(out, results)))
    files.append(str(_atomic_write_text(out / "metadata.json", json.dumps(
        {"num_timesteps": [r["timesteps"] for r in results], "num_episodes": len(results)}, indent=4))))
    seconds = time.perf_counter() - t0
    summary = {"output": str(out), "files": files, "episodes": len(results),
               "timesteps": int(sum(r["timesteps"] for r in results)), "images": opts.images,
               "point_clouds": opts.point_clouds, "workers": workers, "seconds": round(seconds, 3)}
    logger.info("exported %d episodes (%d frames) of %s to %s in %.1f s", summary["episodes"],
                summary["timesteps"], reader.root, out, seconds)
    return summary


# --------------------------------------------------------------------------- driver side


def _options(*, images: str, size: Any, compression: str | None, compression_level: int, workers: int,
             states_only: bool, point_cloud_only: bool, point_cloud_stride: int,
             point_cloud_max_points: int | None) -> _Options:
    """Check every argument and report every problem at once."""
    problems = []
    if images not in IMAGE_MODES:
        problems.append(f"images: {images!r} is not one of {', '.join(IMAGE_MODES)}")
    if size is not None:
        ok = isinstance(size, tuple | list) and len(size) == 2 and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in size)
        if ok:
            size = (int(size[0]), int(size[1]))
        else:
            problems.append(f"size: expected (height, width) in pixels, got {size!r}")
    comp = "none" if compression is None else compression
    if comp not in COMPRESSIONS:
        problems.append(f"compression: {compression!r} is not one of {', '.join(COMPRESSIONS)}")
    if comp == "gzip" and not (isinstance(compression_level, int) and 0 <= compression_level <= 9):
        problems.append(f"compression_level: gzip takes 0..9, got {compression_level!r}")
    if not isinstance(workers, int) or workers < 1:
        problems.append(f"workers: must be an integer >= 1, got {workers!r}")
    if states_only and point_cloud_only:
        problems.append("states_only and point_cloud_only: choose one (states_only writes no point clouds)")
    if not isinstance(point_cloud_stride, int) or point_cloud_stride < 1:
        problems.append(f"point_cloud_stride: must be an integer >= 1, got {point_cloud_stride!r}")
    if point_cloud_max_points is not None and (not isinstance(point_cloud_max_points, int)
                                               or point_cloud_max_points < 1):
        problems.append(f"point_cloud_max_points: must be an integer >= 1 or None, got {point_cloud_max_points!r}")
    if problems:
        raise ValueError("export_vpl: invalid arguments:\n" + "\n".join(f"  - {p}" for p in problems))
    return _Options(
        images="none" if states_only or point_cloud_only else images,
        size=size,
        compression=None if comp == "none" else comp,
        compression_level=compression_level if comp == "gzip" else None,
        point_clouds=not states_only,
        point_cloud_stride=point_cloud_stride,
        point_cloud_max_points=point_cloud_max_points,
    )


def _prepare_output(out: Path, *, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another output")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out}: the output folder is not empty; choose an empty or new folder, or "
                                    "pass overwrite=True (--overwrite) to replace an earlier VPL export there")
        for entry in out.iterdir():  # only what a VPL export writes, never a folder's other contents
            if entry.name in ("metadata.json", "intrinsics.h5") and entry.is_file():
                entry.unlink()
            elif entry.is_dir() and _EPISODE_DIR.match(entry.name):
                shutil.rmtree(entry)
    out.mkdir(parents=True, exist_ok=True)


def _write_intrinsics(out: Path, results: list[dict[str, Any]]) -> Path:
    import h5py

    first = results[0]
    k = np.asarray(first["intrinsics"], dtype=np.float32).reshape(-1, 3, 3)
    for r in results[1:]:
        other = np.asarray(r["intrinsics"], dtype=np.float32).reshape(-1, 3, 3)
        if other.shape != k.shape or not np.allclose(other, k, rtol=0, atol=1e-4):
            logger.warning("%s: episode_%d's intrinsics differ from episode_%d's in intrinsics.h5; its own are in "
                           "the attr 'intrinsics' of its episode file", out, r["index"], first["index"])
    tmp = out / f"intrinsics.h5.tmp-{uuid.uuid4().hex}"
    try:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset("intrinsics", data=k, track_times=False)
            ds.attrs["camera_names"] = json.dumps(first["cameras"])
        os.replace(tmp, out / "intrinsics.h5")
    finally:
        tmp.unlink(missing_ok=True)
    return out / "intrinsics.h5"


def _atomic_write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- worker side


def _export_part(jobs: list[tuple[int, int]], *, root: str, output: str, opts: _Options,
                 cameras: list[str]) -> list[dict[str, Any]]:
    """Export (output index, source index) pairs; returns what the driver needs of each."""
    from raygen.datasets.reader import DatasetReader

    reader = DatasetReader(root)
    results = []
    for index, source in jobs:
        t0 = time.perf_counter()
        ep = reader.episode(int(source), decode_video=opts.images != "none" or opts.point_clouds)
        present = [c for c in cameras if c in ep.cameras]
        path = Path(output) / f"episode_{index}" / f"episode_{index}.h5"
        ks = _write_episode_file(path, ep, int(source), opts, present)
        results.append({"index": int(index), "source": int(source), "timesteps": ep.length, "cameras": present,
                        "path": str(path),
                        "intrinsics": ks.tolist(), "seconds": time.perf_counter() - t0})
        logger.debug("episode %s -> %s in %.2f s", ep.episode_key, path, time.perf_counter() - t0)
    return results


def _write_episode_file(path: Path, ep: Episode, source: int, opts: _Options, cameras: list[str]) -> np.ndarray:
    """Write one episode file through a temporary name (a retried task never leaves half a file); returns the
    (N_cams, 3, 3) intrinsics at the stored size."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        with h5py.File(tmp, "w") as f:
            ks = _write_episode(f, ep, source, opts, cameras)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ks


def _write_episode(f: Any, ep: Episode, source: int, opts: _Options, cameras: list[str]) -> np.ndarray:
    import h5py

    comp = opts.h5()
    t = ep.length

    def put(name: str, data: np.ndarray, **attrs: Any) -> None:
        data = np.asarray(data)
        ds = f.create_dataset(name, data=data, track_times=False, **(comp if data.size > 1 else {}))
        for key, value in attrs.items():
            ds.attrs[key] = value

    f.attrs["episode_key"] = ep.episode_key
    f.attrs["source_episode_index"] = source
    f.attrs["fps"] = float(ep.fps)
    f.attrs["success"] = bool(ep.success)
    f.attrs["robot_type"] = ep.robot_type
    omitted: list[str] = []

    put("action", np.asarray(ep.action, np.float32), names=json.dumps(ep.names.get("action", [])))
    reward = np.zeros(t, np.float32)
    reward[-1] = float(bool(ep.success))
    put("reward", reward, source="derived: 1.0 on the last frame of a successful episode (raygen records "
                                 "success, not rewards)")
    done = np.zeros(t, bool)
    done[-1] = True
    put("done", done, source="derived: True on the last frame")

    robot = _robot_arrays(ep)
    for name in ("joint_pos", "joint_vel"):
        if name not in robot:
            omitted.append(f"{name}: observation.state names no joint_<i> dimensions")
    if "gripper_state" not in robot:
        omitted.append("gripper_state: neither the action nor the state has a dimension named 'gripper'")
    for name, (data, attrs) in robot.items():
        put(name, data, **attrs)
    put("state", np.asarray(ep.state, np.float32), names=json.dumps(ep.names.get("observation.state", [])))

    objects = _object_poses(ep)
    if objects:
        pos, rot = f.create_group("obj_positions"), f.create_group("obj_rotations")
        for obj, (p, q, feature) in objects.items():
            pos.create_dataset(obj, data=p, track_times=False, **comp).attrs["source"] = feature
            rot.create_dataset(obj, data=q, track_times=False, **comp).attrs["source"] = feature
    else:
        omitted.append("obj_positions, obj_rotations: no frame feature is named as a pose (<name>_x .. _qz)")

    obs = f.create_group("observation")
    obs["state"] = h5py.SoftLink("/state")
    ks = []
    clouds: dict[str, CameraFrames] = {}
    for name in cameras:
        cam = ep.cameras[name]
        rgb, depth, k = camera_images(cam, opts.images, opts.size)
        ks.append(k)
        if rgb is not None:
            h, w = rgb.shape[1:3]
            obs.require_group("image").create_dataset(name, data=rgb, chunks=(1, h, w, 3), track_times=False,
                                                      **comp)
            if depth is not None:
                obs.require_group("depth").create_dataset(name, data=depth, chunks=(1, h, w), track_times=False,
                                                          **comp).attrs["units"] = "mm, 0 = invalid"
        if opts.point_clouds and cam.rgb is not None and cam.depth is not None:
            clouds[name] = cam
    intrinsics = np.stack(ks).astype(np.float32) if ks else np.zeros((0, 3, 3), np.float32)
    f.attrs["camera_names"] = json.dumps(cameras)
    f.attrs["intrinsics"] = intrinsics

    if opts.point_clouds:
        if clouds:
            _write_point_clouds(f, ep, source, clouds, opts, comp)
            obs["point_cloud"] = h5py.SoftLink("/point_cloud")
        else:
            omitted.append("point_cloud: no camera of this episode has depth")

    f.create_dataset("task_description", data=ep.task, dtype=h5py.string_dtype("utf-8"), track_times=False)
    if omitted:
        f.attrs["omitted"] = json.dumps(omitted)
    return intrinsics


# --------------------------------------------------------------------------- point clouds


def _write_point_clouds(f: Any, ep: Episode, source: int, clouds: dict[str, CameraFrames], opts: _Options,
                        comp: dict[str, Any]) -> None:
    grp = f.create_group("point_cloud")
    grp.attrs["frame"] = "robot base (world): x y z in metres, then r g b in [0, 1]"
    grp.attrs["cameras"] = json.dumps(list(clouds))
    grp.attrs["stride"] = opts.point_cloud_stride
    grp.attrs["max_points"] = opts.point_cloud_max_points or 0
    grids = {name: _pixel_grid(cam, opts.size) for name, cam in clouds.items()}
    for t in range(0, ep.length, opts.point_cloud_stride):
        parts = []
        for name, cam in clouds.items():
            rows, cols, rays = grids[name]
            pose = np.asarray(cam.pose, np.float64)
            depth = cam.depth[t][np.ix_(rows, cols)]
            rgb = cam.rgb[t][np.ix_(rows, cols)]
            parts.append(_frame_points(depth, rgb, rays, pose[t] if pose.ndim == 3 else pose))
        pts = np.concatenate(parts)
        cap = opts.point_cloud_max_points
        if cap is not None and len(pts) > cap:
            keep = np.random.default_rng([source, t]).choice(len(pts), cap, replace=False)
            pts = pts[np.sort(keep)]
        grp.create_dataset(str(t), data=pts, track_times=False, **(comp if len(pts) else {}))


def _pixel_grid(cam: CameraFrames, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, rays) of the recorded pixels point clouds use: all of them, or with ``size`` those the stored
    depth images keep (nearest neighbour); rays (rows*cols, 3) through those pixels' centres with the recorded
    intrinsics, undistorted, scaled to z = 1 (OpenCV axes), row-major."""
    h0, w0 = cam.resolution
    h, w = size or (h0, w0)
    rows, cols = nearest_indices(h0, h), nearest_indices(w0, w)  # the pixels camera_images keeps
    v, u = np.meshgrid(rows.astype(np.float64), cols.astype(np.float64), indexing="ij")
    k = np.asarray(cam.intrinsics, np.float64)
    dist = np.asarray(cam.distortion, np.float64).reshape(-1)
    if np.any(dist != 0):
        import cv2

        uv = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
        exact = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)  # the default 5 steps: 0.01 px off
        xy = cv2.undistortPoints(uv, k, dist, None, None, None, exact).reshape(-1, 2)
    else:
        y = (v.ravel() - k[1, 2]) / k[1, 1]
        xy = np.stack([(u.ravel() - k[0, 2] - k[0, 1] * y) / k[0, 0], y], axis=1)
    return rows, cols, np.concatenate([xy, np.ones((len(xy), 1))], axis=1)


def _frame_points(depth: np.ndarray, rgb: np.ndarray, rays: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(N, 6) float32 points of one camera frame: the pixels with depth > 0 in pixel order, x y z in the base frame
    (depth is along the optical axis; mm / 1000) and colour / 255."""
    d = depth.reshape(-1)
    valid = d > 0
    cam_xyz = rays[valid] * (d[valid].astype(np.float64) * 1e-3)[:, None]
    world = cam_xyz @ pose[:3, :3].T + pose[:3, 3]
    colour = rgb.reshape(-1, 3)[valid].astype(np.float32) / 255.0
    return np.concatenate([world.astype(np.float32), colour], axis=1)


# --------------------------------------------------------------------------- robot and object arrays


def _robot_arrays(ep: Episode) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """The VPL robot keys of an episode, each (array, attrs); keys the episode cannot give are absent."""
    state = np.asarray(ep.state, np.float64)
    names = list(ep.names.get("observation.state", []))
    col = {n: i for i, n in enumerate(names)} if len(names) == state.shape[1] else {}
    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    joints = [n for n in col if _JOINT.match(n)]
    if joints:
        pos_names = joints + [n for n in col if n.startswith("finger") and not n.endswith("_vel")]
        pos = state[:, [col[n] for n in pos_names]]
        vel = _finite_differences(pos, float(ep.fps))
        derived = []
        for j, n in enumerate(pos_names):
            if f"{n}_vel" in col:
                vel[:, j] = state[:, col[f"{n}_vel"]]
            else:
                derived.append(n)
        out["joint_pos"] = (pos.astype(np.float32), {"names": json.dumps(pos_names), "source": "observation.state"})
        out["joint_vel"] = (vel.astype(np.float32), {
            "names": json.dumps(pos_names),
            "source": "observation.state <name>_vel where recorded; the rest (attr derived) central finite "
                      "differences of joint_pos at fps (numpy.gradient)",
            "derived": json.dumps(derived)})

    eef = ["eef_x", "eef_y", "eef_z", "eef_qw", "eef_qx", "eef_qy", "eef_qz"]
    if all(n in col for n in eef):
        position = state[:, [col[n] for n in eef[:3]]]
        quat = continuous_quaternions(state[:, [col[n] for n in eef[3:]]])
        src = "observation.state eef_x .. eef_qz"
    else:
        from scipy.spatial.transform import Rotation

        pose = np.asarray(ep.gripper_pose, np.float64)
        position = pose[:, :3, 3]
        quat = continuous_quaternions(Rotation.from_matrix(pose[:, :3, :3]).as_quat()[:, [3, 0, 1, 2]])
        src = "gripper.pose (the flange pose in the robot base frame)"
    out["ee_position"] = (position.astype(np.float32), {"source": src})
    out["ee_rotation"] = (quat.astype(np.float32), {"source": src, "convention": "quaternion w, x, y, z"})
    out["eef_pose"] = (_pose_matrices(position, quat).reshape(len(position), 16).astype(np.float32), {
        "source": src, "convention": "4x4 homogeneous transform, flattened row-major"})
    out["gripper_width"] = (np.asarray(ep.gripper_opening, np.float32).reshape(-1, 1), {
        "source": "gripper.opening", "units": "m, gap between the fingers"})

    action = np.asarray(ep.action)
    a_names = list(ep.names.get("action", []))
    if "gripper" in a_names and len(a_names) == action.shape[1]:
        out["gripper_state"] = (action[:, a_names.index("gripper")].astype(np.float32),
                                {"source": "action[gripper] (the gripper command; units as the dataset's action)"})
    elif "gripper" in col:
        out["gripper_state"] = (state[:, col["gripper"]].astype(np.float32),
                                {"source": "observation.state[gripper] (units as the dataset's state)"})
    return out


def _finite_differences(x: np.ndarray, fps: float) -> np.ndarray:
    if len(x) < 2:
        return np.zeros_like(x)
    return np.gradient(x, 1.0 / fps, axis=0)


def _pose_matrices(position: np.ndarray, quat_wxyz: np.ndarray) -> np.ndarray:
    """(T, 4, 4) transforms from positions and (w, x, y, z) quaternions (normalised here)."""
    q = np.asarray(quat_wxyz, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    w, x, y, z = q.T
    m = np.zeros((len(q), 4, 4))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = 1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = 2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)
    m[:, 2, 0], m[:, 2, 1], m[:, 2, 2] = 2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)
    m[:, :3, 3] = position
    m[:, 3, 3] = 1.0
    return m


def _object_poses(ep: Episode) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """name -> (positions (T, 3), quaternions (T, 4) w x y z, the feature) for each frame feature named as a
    pose: seven names <name>_x, _y, _z, _qw, _qx, _qy, _qz."""
    out: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
    for feature, arr in ep.frame_features.items():
        names = list(ep.names.get(feature, []))
        arr = np.asarray(arr)
        if len(names) != 7 or arr.ndim != 2 or arr.shape[1] != 7:
            continue
        stem = names[0][: -len(_POSE_SUFFIXES[0])]
        if not stem or any(n != stem + sfx for n, sfx in zip(names, _POSE_SUFFIXES)):
            continue
        out[feature if stem in out else stem] = (arr[:, :3].astype(np.float32), arr[:, 3:].astype(np.float32),
                                                 feature)
    return out
