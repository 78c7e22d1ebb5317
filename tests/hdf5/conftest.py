"""HDF5 test factories: a small raygen dataset with every kind of feature, its robomimic export, and
hand-written Isaac Lab Mimic / robomimic (MimicGen) files as those tools lay them out (REFERENCE.md 10)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from raygen.datasets import VideoSettings
from raygen.datasets.reader import DatasetReader
from raygen.hdf5.robomimic import export_robomimic
from tests.conftest import small_episodes, write_dataset

STATE_NAMES = [*(f"joint_{i}" for i in range(7)), *(f"joint_{i}_vel" for i in range(7)), "finger_left",
               "finger_right", "eef_x", "eef_y", "eef_z", "eef_qw", "eef_qx", "eef_qy", "eef_qz"]
ACTION_NAMES = [*(f"joint_{i}" for i in range(7)), "gripper"]
OBJECT_NAMES = ["object_x", "object_y", "object_z", "object_qw", "object_qx", "object_qy", "object_qz"]
SIGNAL = "datagen_info.subtask_term_signals.grasp"
FAST_VIDEO = VideoSettings(codec="libx264", preset="ultrafast")
N_EPISODES, FRAMES = 5, 16


def rich_episodes(n: int = N_EPISODES, frames: int = FRAMES):
    """Synthetic episodes (2 cameras with depth, one moving) with names, an object pose, an int phase, a
    Mimic subtask signal, the source's own timestamps and a distinct seed each."""
    eps = small_episodes(n, frames=frames, height=32, width=48, flow=False)
    for i, ep in enumerate(eps):
        t = ep.length
        rng = np.random.default_rng(100 + i)
        angle = np.linspace(0.0, 0.5 + 0.1 * i, t)
        obj = np.zeros((t, 7), np.float32)
        obj[:, :3] = [0.5, 0.1 * i, 0.02] + rng.normal(0, 0.01, (t, 3))
        obj[:, 3], obj[:, 6] = np.cos(angle / 2), np.sin(angle / 2)
        ep.frame_features.update({
            "object.pose": obj,
            "task.phase": (np.arange(t) // 4).astype(np.int64),
            "contact.pads": rng.normal(0, 0.1, (t, 2, 3)).astype(np.float32),
            SIGNAL: np.arange(t) >= t // 2,
        })
        ep.names = {"observation.state": list(STATE_NAMES), "action": list(ACTION_NAMES),
                    "object.pose": list(OBJECT_NAMES)}
        ep.timestamp = np.arange(t) / ep.fps + rng.uniform(0, 0.001, t)
        ep.provenance = {**ep.provenance, "seed": 40 + i, "task": "pick_place"}
    return eps


@pytest.fixture(scope="session")
def rich_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-episode raygen dataset (16 frames, 32x48, libx264) of :func:`rich_episodes`; do not modify."""
    root = tmp_path_factory.mktemp("hdf5") / "ds"
    write_dataset(root, rich_episodes(), shard_size=2, video=FAST_VIDEO)
    return root


@pytest.fixture(scope="session")
def read_back(rich_dataset: Path):
    """The episodes of ``rich_dataset`` as the reader gives them (decoded RGB): what an export holds."""
    reader = DatasetReader(rich_dataset)
    return [reader.episode(i) for i in range(len(reader))]


@pytest.fixture(scope="session")
def exported(rich_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``rich_dataset`` exported with RGB-D, next_obs and a 40 % validation mask; do not modify."""
    out = tmp_path_factory.mktemp("hdf5-export") / "rich.hdf5"
    summary = export_robomimic(rich_dataset, out, images="rgbd", next_obs=True, valid_fraction=0.4)
    return out, summary


def h5_content(path: Path) -> dict:
    """Every group / dataset of a file by path: its attrs and (datasets) its values, dtype and shape."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = (attrs, obj.dtype.str, obj.shape, obj[()])
            else:
                out[name] = (attrs,)
        f.visititems(visit)
        out["/"] = ({k: v for k, v in f["data"].attrs.items()},)
    return out


# --------------------------------------------------------------------------- hand-written foreign files

def _poses(t: int, x0: float) -> np.ndarray:
    p = np.tile(np.eye(4, dtype=np.float32), (t, 1, 1))
    p[:, 0, 3] = x0 + np.linspace(0, 0.1, t)
    p[:, 2, 3] = 0.3
    return p


def _smooth_frames(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """Camera-like frames (a gradient with a moving square): random noise would not survive any codec."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([40 + 150 * xx / w, 60 + 120 * yy / h, np.full((h, w), 90.0 + 10 * seed)], axis=-1)
    frames = np.repeat(base[None], t, axis=0)
    for i in range(t):
        frames[i, 8:16, 4 + i % (w - 12):12 + i % (w - 12)] = [200, 80, 60]
    return frames.astype(np.uint8)


def write_isaaclab_mimic(path: Path, *, frames: int = 12, good: tuple[int, ...] = (0, 2, 4)) -> dict:
    """An Isaac Lab Mimic file as HDF5DatasetFileHandler + the Mimic annotation write it: /data attrs total and
    env_args (type 2, no fps), demo_k attrs num_samples / seed / success, gzip leaves, obs terms, a table
    camera, obs/datagen_info/{eef_pose,object_pose,target_eef_pose,subtask_term_signals,subtask_start_signals},
    states/ and initial_state/ by asset. Demos 1 and 3 are bad: 1 has no actions, 3 has a ragged obs and a
    string dataset. Returns what the good demos hold."""
    t = frames
    expected = {}
    gz = {"compression": "gzip", "compression_opts": 4}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Isaac-Stack-Cube-Franka-IK-Rel-Mimic-v0", "type": 2})
        total = 0
        for k in range(5):
            rng = np.random.default_rng(k)
            g = data.create_group(f"demo_{k}")
            g.attrs["num_samples"] = t
            g.attrs["seed"] = 1000 + k
            g.attrs["success"] = k != 4
            actions = rng.uniform(-1, 1, (t, 7)).astype(np.float32)
            if k != 1:
                g.create_dataset("actions", data=actions, **gz)
            joint = rng.normal(0, 0.3, (t, 9)).astype(np.float32)
            eef_pos = rng.normal(0, 0.1, (t, 3)).astype(np.float32)
            g.create_dataset("obs/joint_pos", data=joint, **gz)
            g.create_dataset("obs/eef_pos", data=eef_pos if k != 3 else eef_pos[:-2], **gz)
            g.create_dataset("obs/gripper_pos", data=np.full((t, 2), 0.02, np.float32), **gz)
            img = _smooth_frames(t, 32, 48, k)
            g.create_dataset("obs/table_cam", data=img, **gz)
            eef = _poses(t, 0.4 + 0.01 * k)
            cube = _poses(t, 0.6)
            term = np.arange(t) >= t // 2
            start = np.arange(t) >= t // 3
            dg = "obs/datagen_info/"
            g.create_dataset(dg + "eef_pose/franka", data=eef, **gz)
            g.create_dataset(dg + "target_eef_pose/franka", data=eef, **gz)
            g.create_dataset(dg + "object_pose/cube_1", data=cube, **gz)
            g.create_dataset(dg + "subtask_term_signals/grasp_1", data=term, **gz)
            g.create_dataset(dg + "subtask_start_signals/grasp_1", data=start, **gz)
            g.create_dataset("states/articulation/robot/joint_position", data=joint, **gz)
            g.create_dataset("states/rigid_object/cube_1/root_pose", data=rng.normal(0, 1, (t, 7)).astype(np.float32),
                             **gz)
            g.create_dataset("initial_state/articulation/robot/joint_position", data=joint[:1], **gz)
            if k == 3:
                g.create_dataset("obs/label", data=np.array([b"x"] * t))
            if k in good:
                total += t
                expected[f"demo_{k}"] = {"actions": actions, "joint_pos": joint, "eef_pos": eef_pos, "image": img,
                                         "eef_pose": eef, "term": term, "start": start, "seed": 1000 + k,
                                         "success": k != 4}
        data.attrs["total"] = total
    return expected


def write_robomimic_mimicgen(path: Path, *, frames: int = 10) -> None:
    """A robomimic (robosuite) file with MimicGen's datagen_info directly under each demo: env_args type 1
    with control_freq, rewards / dones, sim states, robot0_eef_pos/quat (xyzw), robot0_gripper_qpos, an
    84x84-style agentview_image (here 16x16) and camera_info; demo_1 succeeds by reward only."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1,
                                             "env_kwargs": {"robots": ["Panda"], "control_freq": 20}})
        data.attrs["total"] = 2 * frames
        for k in (1, 2):  # robomimic numbers from 1
            rng = np.random.default_rng(k)
            g = data.create_group(f"demo_{k}")
            g.attrs["num_samples"] = frames
            g.attrs["model_file"] = "<mujoco/>"
            g.attrs["camera_info"] = json.dumps({"agentview": {"intrinsics": [[20, 0, 8], [0, 20, 8], [0, 0, 1]],
                                                               "extrinsics": np.eye(4).tolist()}})
            g.create_dataset("actions", data=rng.uniform(-1, 1, (frames, 7)))
            g.create_dataset("states", data=rng.normal(0, 1, (frames, 32)))
            rewards = np.zeros(frames)
            rewards[-1] = float(k == 1)
            g.create_dataset("rewards", data=rewards)
            dones = np.zeros(frames, np.int64)
            dones[-1] = 1
            g.create_dataset("dones", data=dones)
            g.create_dataset("obs/robot0_eef_pos", data=rng.normal(0, 0.1, (frames, 3)))
            g.create_dataset("obs/robot0_eef_quat", data=np.tile([0.0, 0.0, 0.0, 1.0], (frames, 1)))
            g.create_dataset("obs/robot0_gripper_qpos", data=np.tile([0.02, -0.02], (frames, 1)))
            g.create_dataset("obs/object", data=rng.normal(0, 0.1, (frames, 10)))
            g.create_dataset("obs/agentview_image", data=_smooth_frames(frames, 16, 16, k))
            g.create_dataset("next_obs/robot0_eef_pos", data=rng.normal(0, 0.1, (frames, 3)))
            g.create_dataset("datagen_info/eef_pose", data=_poses(frames, 0.1).astype(np.float64))
            g.create_dataset("datagen_info/object_poses/cube", data=_poses(frames, 0.2).astype(np.float64))
            g.create_dataset("datagen_info/subtask_term_signals/grasp", data=(np.arange(frames) > 5).astype(np.int64))
            g.create_dataset("datagen_info/target_pose", data=_poses(frames, 0.1).astype(np.float64))
            g.create_dataset("datagen_info/gripper_action", data=rng.uniform(-1, 1, (frames, 1)))
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array(["demo_1"], "S"))
        mask.create_dataset("valid", data=np.array(["demo_2"], "S"))
