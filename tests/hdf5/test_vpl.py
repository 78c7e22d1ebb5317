"""GenSim2 VPL export: layout, keys, dtypes, modes, parallel parts, overwrite, and point clouds of a known plane."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from raygen.actors.tasks.pick_place import ACTION_NAMES, OBJECT_POSE_NAMES, STATE_NAMES
from raygen.datasets.episode import CameraFrames, Episode
from raygen.hdf5.vpl import OutputExistsError, export_vpl
from tests.conftest import write_dataset

H, W, T, FPS = 48, 64, 6, 30.0
FX, FY, CX, CY = 50.0, 52.0, 31.5, 23.5
K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
TOP_RGB = (200, 40, 40)  # constant colours survive the video codec within a few levels
WRIST_RGB = (30, 60, 220)
TOP_CENTRE = np.array([0.5, 0.1, 0.8])  # cam_top 0.8 m above the table (z = 0), looking straight down
DOWN = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])  # OpenCV camera axes: x = world x, y = -world y
WRIST_DIST = np.array([-0.2, 0.05, 0.001, 0.0005, 0.0])  # the wrist camera's lens distorts

SEED_KEYS = {"action", "reward", "done", "joint_pos", "joint_vel", "ee_position", "ee_rotation", "eef_pose",
             "gripper_width", "gripper_state", "state", "observation", "point_cloud", "obj_positions",
             "obj_rotations", "task_description"}


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, np.cross(z, x), z, eye
    return pose


def _plane_depth(pose: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
    """[H,W] uint16 mm along the optical axis of a camera at ``pose`` seeing the table plane z = 0."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    xy = np.stack([(u - CX) / FX, (v - CY) / FY], axis=-1)
    if dist is not None:
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
        xy = cv2.undistortPoints(np.stack([u, v], -1).reshape(-1, 1, 2), K, dist, None, None, None, crit)
        xy = xy.reshape(H, W, 2)
    rays = np.concatenate([xy, np.ones((H, W, 1))], axis=-1) @ pose[:3, :3].T
    s = -pose[2, 3] / rays[..., 2]  # ray parameter at z = 0; with z_cam = 1 it is the depth
    return np.round(s * 1000).astype(np.uint16)


def _invalidate(depth: np.ndarray, t: int) -> np.ndarray:
    d = depth.copy()
    d[:5, :7] = 0  # a block of invalid pixels, and a column that moves with t
    d[:, 10 + t] = 0
    return d


def _episode(i: int) -> Episode:
    rng = np.random.default_rng(i)
    s = np.linspace(0, 1, T)
    joints = 0.2 * np.sin(2 * np.pi * s[:, None] + rng.uniform(0, 3, 7))
    vel = np.gradient(joints, 1 / FPS, axis=0)
    fingers = np.where(s < 0.5, 0.04, 0.01)[:, None] * np.ones((1, 2))
    eef = np.stack([0.4 + 0.1 * s, 0.05 * s, 0.3 - 0.1 * s], axis=1)
    half = np.radians(10 + 20 * s) / 2  # a rotation about z: quaternion (cos, 0, 0, sin)
    quat = np.stack([np.cos(half), 0 * half, 0 * half, np.sin(half)], axis=1)
    state = np.concatenate([joints, vel, fingers, eef, quat], axis=1).astype(np.float32)
    action = np.concatenate([joints + 0.01, np.where(s < 0.5, 0.04, 0.0)[:, None]], axis=1).astype(np.float32)
    flange = np.tile(np.eye(4), (T, 1, 1))
    flange[:, :3, 3] = eef + [0, 0, 0.1]
    obj = np.concatenate([np.stack([0.5 + 0.01 * s, -0.1 + 0 * s, 0.02 + 0.1 * s], axis=1), quat], axis=1)

    top = np.eye(4)
    top[:3, :3], top[:3, 3] = DOWN, TOP_CENTRE
    wrist = np.stack([_look_at(np.array([0.3 + 0.05 * k, -0.2, 0.5]), np.array([0.55, 0.05 * k, 0.0]))
                      for k in range(T)])
    cams = {
        "cam_top": CameraFrames(
            rgb=np.tile(np.array(TOP_RGB, np.uint8), (T, H, W, 1)),
            depth=np.stack([_invalidate(_plane_depth(top), t) for t in range(T)]), intrinsics=K.copy(), pose=top),
        "cam_wrist": CameraFrames(
            rgb=np.tile(np.array(WRIST_RGB, np.uint8), (T, H, W, 1)),
            depth=np.stack([_invalidate(_plane_depth(wrist[t], WRIST_DIST), t) for t in range(T)]),
            intrinsics=K.copy(), pose=wrist, distortion=WRIST_DIST.copy()),
    }
    return Episode(
        episode_key=f"vpl-test-{i:03d}", task=f"pick the red cube {i} and place it on the target", fps=FPS,
        state=state, action=action, cameras=cams, gripper_pose=flange, gripper_opening=fingers.sum(1),
        success=i != 2, robot_type="franka", provenance={"backend": "test", "index": i},
        frame_features={"object.pose": obj.astype(np.float32)},
        names={"observation.state": list(STATE_NAMES), "action": list(ACTION_NAMES),
               "object.pose": list(OBJECT_POSE_NAMES)},
    )


@pytest.fixture(scope="module")
def plane_dataset(tmp_path_factory: pytest.TempPathFactory):
    """Three pick-and-place-shaped episodes (6 frames, 48x64, two cameras seeing the table plane z = 0)."""
    root = tmp_path_factory.mktemp("vpl_src") / "ds"
    eps = [_episode(i) for i in range(3)]
    write_dataset(root, eps, shard_size=2)
    return root, eps


@pytest.fixture(scope="module")
def exported(plane_dataset, tmp_path_factory: pytest.TempPathFactory):
    root, eps = plane_dataset
    out = tmp_path_factory.mktemp("vpl_out") / "vpl"
    summary = export_vpl(root, out)
    return out, summary, eps


def _h5_tree(path: Path) -> dict[str, object]:
    """Every dataset (values), attribute and soft link of a file, by path; for comparing two files."""
    tree: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        tree["/attrs"] = {k: np.asarray(v).tolist() for k, v in f.attrs.items()}

        def visit(name: str, obj: object) -> None:
            tree[name + "/attrs"] = {k: np.asarray(v).tolist() for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                tree[name] = (obj.dtype.str, obj.shape, obj[()].tobytes() if obj.dtype.kind != "O" else obj[()])
            else:
                for key in obj:
                    link = obj.get(key, getlink=True)
                    if isinstance(link, h5py.SoftLink):
                        tree[f"{name}/{key}->"] = link.path

        f.visititems(visit)
    return tree


def test_layout_metadata_and_keys(exported):
    out, summary, eps = exported
    assert sorted(p.name for p in out.iterdir()) == ["episode_0", "episode_1", "episode_2", "intrinsics.h5",
                                                      "metadata.json"]
    assert json.loads((out / "metadata.json").read_text()) == {"num_timesteps": [T, T, T], "num_episodes": 3}
    assert summary["episodes"] == 3 and summary["timesteps"] == 3 * T and summary["workers"] == 1
    assert sorted(summary["files"]) == sorted(str(p) for p in out.rglob("*") if p.is_file())
    for i, ep in enumerate(eps):
        assert [p.name for p in (out / f"episode_{i}").iterdir()] == [f"episode_{i}.h5"]
        with h5py.File(out / f"episode_{i}" / f"episode_{i}.h5", "r") as f:
            assert set(f) == SEED_KEYS
            shapes = {k: (f[k].dtype, f[k].shape) for k in SEED_KEYS - {"observation", "point_cloud",
                                                                         "obj_positions", "obj_rotations",
                                                                         "task_description"}}
            f32 = np.dtype(np.float32)
            assert shapes == {
                "action": (f32, (T, 8)), "reward": (f32, (T,)), "done": (np.dtype(bool), (T,)),
                "joint_pos": (f32, (T, 9)), "joint_vel": (f32, (T, 9)), "ee_position": (f32, (T, 3)),
                "ee_rotation": (f32, (T, 4)), "eef_pose": (f32, (T, 16)), "gripper_width": (f32, (T, 1)),
                "gripper_state": (f32, (T,)), "state": (f32, (T, 23)),
            }
            assert f["task_description"].asstr()[()] == ep.task
            assert f.attrs["episode_key"] == ep.episode_key and f.attrs["source_episode_index"] == i
            # values come from the named dimensions of the recorded arrays
            assert np.allclose(f["action"][:], ep.action) and np.allclose(f["state"][:], ep.state)
            assert np.allclose(f["joint_pos"][:], ep.state[:, [0, 1, 2, 3, 4, 5, 6, 14, 15]])
            assert np.allclose(f["joint_vel"][:, :7], ep.state[:, 7:14])  # measured where recorded
            assert np.allclose(f["joint_vel"][:, 7:], np.gradient(ep.state[:, 14:16], 1 / FPS, axis=0), atol=1e-5)
            assert json.loads(f["joint_vel"].attrs["derived"]) == ["finger_left", "finger_right"]
            assert np.allclose(f["ee_position"][:], ep.state[:, 16:19])
            assert np.allclose(f["ee_rotation"][:], ep.state[:, 19:23])
            pose = f["eef_pose"][:].reshape(T, 4, 4)  # row-major 4x4 of the same pose
            assert np.allclose(pose[:, :3, 3], ep.state[:, 16:19], atol=1e-6)
            assert np.allclose(pose[:, 3], [0, 0, 0, 1])
            half = np.arctan2(ep.state[:, 22], ep.state[:, 19])  # a rotation about z by 2 * half
            assert np.allclose(pose[:, 0, :2], np.stack([np.cos(2 * half), -np.sin(2 * half)], 1), atol=1e-5)
            assert np.allclose(f["gripper_width"][:, 0], ep.gripper_opening)
            assert np.allclose(f["gripper_state"][:], ep.action[:, 7])
            reward = np.zeros(T)
            reward[-1] = float(ep.success)
            assert np.array_equal(f["reward"][:], reward) and f["done"][:].tolist() == [False] * (T - 1) + [True]
            assert set(f["obj_positions"]) == set(f["obj_rotations"]) == {"object"}
            obj = ep.frame_features["object.pose"]
            assert f["obj_positions/object"].shape == (T, 3) and np.allclose(f["obj_positions/object"][:], obj[:, :3])
            assert f["obj_rotations/object"].shape == (T, 4) and np.allclose(f["obj_rotations/object"][:], obj[:, 3:])
            # observation: images by camera, state and point clouds by soft link to the top-level copies
            assert set(f["observation"]) == {"image", "state", "point_cloud"}
            assert list(f["observation/image"]) == ["cam_top", "cam_wrist"]
            img = f["observation/image/cam_top"]
            assert img.dtype == np.uint8 and img.shape == (T, H, W, 3) and img.compression == "gzip"
            assert np.abs(img[:].astype(int) - TOP_RGB).max() <= 4
            assert isinstance(f["observation"].get("state", getlink=True), h5py.SoftLink)
            assert f["observation/point_cloud"] == f["point_cloud"]
            assert sorted(f["point_cloud"], key=int) == [str(t) for t in range(T)]
            assert all(f[f"point_cloud/{t}"].dtype == f32 and f[f"point_cloud/{t}"].shape[1] == 6 for t in range(T))


def test_intrinsics_in_camera_order(exported, plane_dataset):
    out, _, _ = exported
    with h5py.File(out / "intrinsics.h5", "r") as f:
        assert list(f) == ["intrinsics"]
        k = f["intrinsics"]
        assert k.dtype == np.float32 and k.shape == (2, 3, 3)
        assert json.loads(k.attrs["camera_names"]) == ["cam_top", "cam_wrist"]
        assert np.allclose(k[:], np.stack([K, K]))


def test_point_clouds_lie_on_the_plane_with_the_right_colours(exported):
    out, _, eps = exported
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    with h5py.File(out / "episode_0" / "episode_0.h5", "r") as f:
        for t in range(T):
            pts = f[f"point_cloud/{t}"][:]
            top_d, wrist_d = (eps[0].cameras[c].depth[t] for c in ("cam_top", "cam_wrist"))
            n_top, n_wrist = int((top_d > 0).sum()), int((wrist_d > 0).sum())
            assert len(pts) == n_top + n_wrist < 2 * H * W  # invalid depth gives no point
            assert np.abs(pts[:, 2]).max() < 1.5e-3  # every point on the table plane z = 0 (mm depth steps)
            # cam_top's points first (camera order), in pixel order, where the straight-down view puts them
            valid = top_d > 0
            z = top_d[valid] / 1000.0
            want = np.stack([TOP_CENTRE[0] + z * (u[valid] - CX) / FX, TOP_CENTRE[1] - z * (v[valid] - CY) / FY],
                            axis=1)
            assert np.allclose(pts[:n_top, :2], want, atol=1e-5)
            assert np.abs(pts[:n_top, 3:] - np.array(TOP_RGB) / 255).max() <= 4 / 255
            assert np.abs(pts[n_top:, 3:] - np.array(WRIST_RGB) / 255).max() <= 4 / 255
            # the moving, distorting camera: each point projects (OpenCV's forward lens model) back onto the
            # centre of the pixel it came from, seen from that camera's pose at frame t
            pose = eps[0].cameras["cam_wrist"].pose[t]
            world_to_cam = np.linalg.inv(pose)
            rvec, _ = cv2.Rodrigues(world_to_cam[:3, :3])
            px, _ = cv2.projectPoints(pts[n_top:, :3].astype(np.float64), rvec, world_to_cam[:3, 3], K, WRIST_DIST)
            valid = wrist_d > 0
            assert np.abs(px.reshape(-1, 2) - np.stack([u[valid], v[valid]], axis=1)).max() < 0.01


def test_states_only_and_point_cloud_only(plane_dataset, tmp_path):
    root, eps = plane_dataset
    export_vpl(root, tmp_path / "states", states_only=True, episodes="1", compression="lzf")
    with h5py.File(tmp_path / "states" / "episode_0" / "episode_0.h5", "r") as f:
        assert set(f) == SEED_KEYS - {"point_cloud"}
        assert set(f["observation"]) == {"state"}
        assert f["action"].compression == "lzf" and f.attrs["episode_key"] == eps[1].episode_key
    assert json.loads((tmp_path / "states" / "metadata.json").read_text()) == {"num_timesteps": [T],
                                                                               "num_episodes": 1}
    export_vpl(root, tmp_path / "pc", point_cloud_only=True, episodes="2", point_cloud_stride=2,
               point_cloud_max_points=100, compression=None)
    with h5py.File(tmp_path / "pc" / "episode_0" / "episode_0.h5", "r") as f:
        assert set(f) == SEED_KEYS
        assert set(f["observation"]) == {"state", "point_cloud"}  # no images
        assert sorted(f["point_cloud"], key=int) == ["0", "2", "4"]
        assert all(f[f"point_cloud/{t}"].shape == (100, 6) for t in ("0", "2", "4"))
        assert np.abs(f["point_cloud/2"][:, 2]).max() < 1.5e-3
        assert f["action"].compression is None


def test_rgbd_and_size(plane_dataset, tmp_path):
    root, eps = plane_dataset
    export_vpl(root, tmp_path / "v", images="rgbd", size=(24, 32), episodes="0")
    with h5py.File(tmp_path / "v" / "episode_0" / "episode_0.h5", "r") as f:
        assert f["observation/image/cam_wrist"].shape == (T, 24, 32, 3)
        depth = f["observation/depth/cam_wrist"]
        assert depth.dtype == np.uint16 and depth.shape == (T, 24, 32)
        assert np.array_equal(depth[0], eps[0].cameras["cam_wrist"].depth[0][1::2, 1::2])  # nearest centres
        n = int((depth[3] > 0).sum() + (f["observation/depth/cam_top"][3] > 0).sum())
        assert f["point_cloud/3"].shape == (n, 6) and np.abs(f["point_cloud/3"][:, 2]).max() < 1.5e-3
    with h5py.File(tmp_path / "v" / "intrinsics.h5", "r") as f:
        assert np.allclose(f["intrinsics"][0], [[FX / 2, 0, (CX + 0.5) / 2 - 0.5], [0, FY / 2, (CY + 0.5) / 2 - 0.5],
                                                [0, 0, 1]])


def test_a_dataset_without_state_names(written, tmp_path):
    """The synthetic episodes name no state dimensions: no joints, the flange pose for the end effector."""
    root, eps = written
    export_vpl(root, tmp_path / "v", episodes="0", states_only=True)
    with h5py.File(tmp_path / "v" / "episode_0" / "episode_0.h5", "r") as f:
        assert "joint_pos" not in f and "joint_vel" not in f and "gripper_state" not in f
        assert "joint_pos" in f.attrs["omitted"]
        assert np.allclose(f["ee_position"][:], eps[0].gripper_pose[:, :3, 3], atol=1e-6)
        assert np.allclose(f["eef_pose"][:].reshape(-1, 4, 4), eps[0].gripper_pose, atol=1e-6)


def test_refuses_to_overwrite(plane_dataset, tmp_path):
    root, _ = plane_dataset
    out = tmp_path / "v"
    export_vpl(root, out, episodes="0-1", states_only=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=f"{out}: the output folder is not empty.*overwrite=True"):
        export_vpl(root, out, episodes="0", states_only=True)
    summary = export_vpl(root, out, episodes="0", states_only=True, overwrite=True)
    assert summary["episodes"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["episode_0", "intrinsics.h5", "metadata.json", "notes.txt"]
    with pytest.raises(ValueError) as err:
        export_vpl(root, tmp_path / "w", images="depth", states_only=True, point_cloud_only=True,
                   compression="zstd", point_cloud_stride=0)
    for word in ("images: 'depth'", "choose one", "compression: 'zstd'", "point_cloud_stride"):
        assert word in str(err.value)


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_two_workers_write_the_same_files(plane_dataset, exported, tmp_path):
    import ray

    root, _ = plane_dataset
    out1, _, _ = exported
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        summary = export_vpl(root, tmp_path / "v2", workers=2)
    finally:
        ray.shutdown()
    assert summary["episodes"] == 3
    out2 = tmp_path / "v2"
    names = sorted(str(p.relative_to(out1)) for p in out1.rglob("*"))
    assert names == sorted(str(p.relative_to(out2)) for p in out2.rglob("*"))
    assert (out1 / "metadata.json").read_text() == (out2 / "metadata.json").read_text()
    for name in names:
        if name.endswith(".h5"):
            assert _h5_tree(out1 / name) == _h5_tree(out2 / name), name
