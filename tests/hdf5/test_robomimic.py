"""robomimic / Isaac Lab Mimic HDF5 export: the layout of REFERENCE.md section 10, key by key and attr by attr;
selection, resizing, argument errors, parallel parts; and (slow) robomimic 0.3's own SequenceDataset."""

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from raygen.hdf5.robomimic import export_robomimic, pose_matrices
from tests.hdf5.conftest import ACTION_NAMES, FRAMES, N_EPISODES, OBJECT_NAMES, SIGNAL, STATE_NAMES, h5_content

ROBOMIMIC_PY = os.environ.get("RAYGEN_ROBOMIMIC_PYTHON", "/tmp/robomimic-venv/bin/python")

OBS_KEYS = {"observation_state", "gripper_pose", "gripper_opening", "timestamp", "object_pose", "task_phase",
            "contact_pads", "cam_high_image", "cam_high_depth", "cam_wrist_image", "cam_wrist_depth",
            "cam_wrist_extrinsics"}


def test_layout_follows_robomimic_and_isaac_lab_mimic(exported, read_back):
    path, summary = exported
    assert summary["demos"] == N_EPISODES and summary["samples"] == N_EPISODES * FRAMES
    assert summary["episodes"] == [e.episode_key for e in read_back]
    with h5py.File(path, "r") as f:
        assert set(f) == {"data", "mask"}
        data = f["data"]
        assert data.attrs["total"] == N_EPISODES * FRAMES
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["env_name"] == "pick_place/synthetic" and env_args["type"] == 2
        assert env_args["env_kwargs"]["fps"] == 30.0 and env_args["env_kwargs"]["robot_type"] == "franka"
        assert json.loads(data.attrs["raygen"])["format"] == 1
        assert sorted(data, key=lambda k: int(k[5:])) == [f"demo_{i}" for i in range(N_EPISODES)]
        for i, ep in enumerate(read_back):
            g = data[f"demo_{i}"]
            t = ep.length
            assert set(g) == {"actions", "states", "rewards", "dones", "obs", "next_obs"}
            assert g.attrs["num_samples"] == t and g.attrs["seed"] == 40 + i
            assert bool(g.attrs["success"]) is ep.success
            assert g.attrs["raygen_episode_key"] == ep.episode_key
            assert json.loads(g.attrs["raygen_provenance"]) == ep.provenance
            assert json.loads(g.attrs["ep_meta"]) == {"lang": ep.task}
            assert g["actions"].dtype == np.float32 and g["actions"].shape == (t, 8)
            np.testing.assert_array_equal(g["actions"][()], ep.action)
            np.testing.assert_array_equal(g["states"][()], ep.state)
            assert json.loads(g["actions"].attrs["raygen_names"]) == ACTION_NAMES
            rewards, dones = g["rewards"][()], g["dones"][()]
            assert rewards.shape == dones.shape == (t,)
            assert rewards[:-1].sum() == 0 and rewards[-1] == float(ep.success)
            assert dones.tolist() == [0] * (t - 1) + [1]
            assert g["actions"].compression == "gzip" and g["actions"].compression_opts == 4

            obs = g["obs"]
            assert set(obs) == OBS_KEYS | {"datagen_info"}
            assert obs["observation_state"].attrs["raygen_feature"] == "observation.state"
            assert json.loads(obs["observation_state"].attrs["raygen_names"]) == STATE_NAMES
            assert json.loads(obs["object_pose"].attrs["raygen_names"]) == OBJECT_NAMES
            assert obs["task_phase"].dtype == np.int64 and obs["task_phase"].shape == (t, 1)
            assert obs["contact_pads"].shape == (t, 2, 3)
            np.testing.assert_array_equal(obs["timestamp"][()][:, 0], ep.timestamp)
            np.testing.assert_array_equal(obs["gripper_pose"][()], ep.gripper_pose.astype(np.float32))
            for cam, frames in ep.cameras.items():
                img = obs[f"{cam}_image"]
                assert img.dtype == np.uint8 and img.shape == (t, 32, 48, 3) and img.chunks == (1, 32, 48, 3)
                np.testing.assert_array_equal(img[()], frames.rgb)  # exactly the decoded frames
                depth = obs[f"{cam}_depth"]
                assert depth.dtype == np.uint16 and depth.shape == (t, 32, 48, 1)
                np.testing.assert_array_equal(depth[()][..., 0], frames.depth)
            np.testing.assert_array_equal(obs["cam_wrist_extrinsics"][()], ep.cameras["cam_wrist"].pose
                                          .astype(np.float32))
            info = json.loads(g.attrs["camera_info"])
            assert set(info) == {"cam_high", "cam_wrist"}
            np.testing.assert_allclose(info["cam_high"]["intrinsics"], ep.cameras["cam_high"].intrinsics)
            np.testing.assert_allclose(info["cam_high"]["extrinsics"], ep.cameras["cam_high"].pose)
            assert info["cam_wrist"]["extrinsics"] == "cam_wrist_extrinsics" and info["cam_high"]["height"] == 32

            dg = obs["datagen_info"]
            assert set(dg) == {"eef_pose", "object_pose", "subtask_term_signals"}
            assert dg["eef_pose/franka"].shape == (t, 4, 4) and dg["object_pose/object"].shape == (t, 4, 4)
            np.testing.assert_array_equal(dg["eef_pose/franka"][()], ep.gripper_pose.astype(np.float32))
            np.testing.assert_allclose(dg["object_pose/object"][()],
                                       pose_matrices(ep.frame_features["object.pose"]), atol=1e-6)
            np.testing.assert_array_equal(dg["subtask_term_signals/grasp"][()], ep.frame_features[SIGNAL])
            assert json.loads(dg.attrs["raygen_derived"]) == ["eef_pose/franka", "object_pose/object"]

            nxt = g["next_obs"]
            assert set(nxt) == OBS_KEYS
            state = obs["observation_state"][()]
            np.testing.assert_array_equal(nxt["observation_state"][()], np.concatenate([state[1:], state[-1:]]))
        train = [n.decode() for n in f["mask/train"][()]]
        valid = [n.decode() for n in f["mask/valid"][()]]
        assert len(valid) == 2 and sorted(train + valid) == sorted(data) and not set(train) & set(valid)
        assert summary["train"] == 3 and summary["valid"] == 2


def test_object_pose_matrices_are_rotations():
    t = np.linspace(0, 1, 5)
    pose = np.stack([t, 2 * t, 3 * t, np.cos(t / 2), 0 * t, 0 * t, np.sin(t / 2)], axis=1)
    m = pose_matrices(pose)
    np.testing.assert_allclose(m[:, :3, 3], pose[:, :3])
    np.testing.assert_allclose(m[:, :3, :3] @ m[:, :3, :3].transpose(0, 2, 1), np.tile(np.eye(3), (5, 1, 1)),
                               atol=1e-12)
    np.testing.assert_allclose(m[:, 0, 1], -np.sin(t))  # a rotation by t about z


def test_resize_scales_intrinsics_and_images_none_keeps_cameras(rich_dataset, read_back, tmp_path):
    out = export_robomimic(rich_dataset, tmp_path / "small.hdf5", images="rgb", size=(16, 24), compression=None)
    with h5py.File(out["file"], "r") as f:
        g = f["data/demo_0"]
        assert "mask" not in f and "next_obs" not in g
        assert g["obs/cam_high_image"].shape == (FRAMES, 16, 24, 3) and "cam_high_depth" not in g["obs"]
        assert g["obs/cam_high_image"].compression is None
        k = np.array(json.loads(g.attrs["camera_info"])["cam_high"]["intrinsics"])
        k0 = read_back[0].cameras["cam_high"].intrinsics
        np.testing.assert_allclose(k[0, 0], k0[0, 0] / 2)
        np.testing.assert_allclose(k[0, 2], (k0[0, 2] + 0.5) / 2 - 0.5)
    out = export_robomimic(rich_dataset, tmp_path / "lowdim.hdf5", compression="lzf")
    with h5py.File(out["file"], "r") as f:
        g = f["data/demo_0"]
        assert not any(k.endswith(("_image", "_depth")) for k in g["obs"])
        assert g["actions"].compression == "lzf"
        assert json.loads(g.attrs["camera_info"])["cam_high"]["image"] is None


def test_episode_selection(rich_dataset, read_back, tmp_path):
    keys = [e.episode_key for e in read_back]
    out = export_robomimic(rich_dataset, tmp_path / "a.hdf5", episodes="3,1")
    assert out["episodes"] == [keys[3], keys[1]] and out["demos"] == 2
    with h5py.File(out["file"], "r") as f:
        assert sorted(f["data"]) == ["demo_0", "demo_1"]
        assert f["data/demo_0"].attrs["raygen_episode_key"] == keys[3]
        assert f["data"].attrs["total"] == 2 * FRAMES
    assert export_robomimic(rich_dataset, tmp_path / "b.hdf5", episodes=[4])["episodes"] == [keys[4]]
    (tmp_path / "keys.txt").write_text(f"# two\n{keys[2]}\n{keys[0]}  # first\n")
    out = export_robomimic(rich_dataset, tmp_path / "c.hdf5", episodes=f"@{tmp_path / 'keys.txt'}")
    assert out["episodes"] == [keys[2], keys[0]]
    assert export_robomimic(rich_dataset, tmp_path / "d.hdf5", episodes="3-")["episodes"] == keys[3:]
    # an existing file is kept unless overwrite is asked for
    with pytest.raises(ValueError, match=r"d\.hdf5 exists; pass overwrite=True"):
        export_robomimic(rich_dataset, tmp_path / "d.hdf5", episodes="0")
    assert export_robomimic(rich_dataset, tmp_path / "d.hdf5", episodes="0", overwrite=True)["episodes"] == keys[:1]


def test_bad_arguments_are_named(rich_dataset, tmp_path):
    with pytest.raises(ValueError) as err:
        export_robomimic(rich_dataset, tmp_path / "x.hdf5", images="depth", size=(15, 24), compression="zstd",
                         workers=0, valid_fraction=1.5)
    msg = str(err.value)
    for part in ("images: 'depth' is not one of none, rgb, rgbd", "size: (15, 24) must be (height, width)",
                 "compression: 'zstd' is not one of gzip, lzf, none", "workers: must be an integer >= 1, got 0",
                 "valid_fraction: must be in [0, 1), got 1.5"):
        assert part in msg
    with pytest.raises(ValueError, match=r"compression_level: gzip takes 0\.\.9, got 12"):
        export_robomimic(rich_dataset, tmp_path / "x.hdf5", compression_level=12)
    with pytest.raises(ValueError, match=r"episodes: 9 is not an episode index .* \(0\.\.4\)"):
        export_robomimic(rich_dataset, tmp_path / "x.hdf5", episodes=[9])
    with pytest.raises(ValueError, match=r"'7-9' is outside 0\.\.4"):
        export_robomimic(rich_dataset, tmp_path / "x.hdf5", episodes="7-9")
    with pytest.raises(ValueError, match="needs at least 2 demos"):
        export_robomimic(rich_dataset, tmp_path / "x.hdf5", episodes="0", valid_fraction=0.5)
    with pytest.raises(ValueError, match="is a folder"):
        export_robomimic(rich_dataset, tmp_path, images="rgb")
    with pytest.raises(FileNotFoundError, match="meta/info.json is missing"):
        export_robomimic(tmp_path / "nothing", tmp_path / "x.hdf5")
    assert not list(tmp_path.glob("*.hdf5*")) and not list(tmp_path.glob(".x.hdf5*"))


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_two_workers_write_the_same_file_as_one(rich_dataset, tmp_path):
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        kw = {"images": "rgbd", "next_obs": True, "valid_fraction": 0.4}
        one = export_robomimic(rich_dataset, tmp_path / "one.hdf5", workers=1, **kw)
        two = export_robomimic(rich_dataset, tmp_path / "two.hdf5", workers=2, **kw)
    finally:
        ray.shutdown()
    assert one["episodes"] == two["episodes"] and two["workers"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.hdf5", "two.hdf5"]  # parts removed
    a, b = h5_content(tmp_path / "one.hdf5"), h5_content(tmp_path / "two.hdf5")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name][0] == b[name][0], name
        if len(a[name]) > 1:
            assert a[name][1:3] == b[name][1:3], name
            np.testing.assert_array_equal(a[name][3], b[name][3], err_msg=name)


# --------------------------------------------------------------------------- robomimic itself (slow)

LOADER = r'''
import json, sys
import numpy as np
import robomimic
import robomimic.utils.obs_utils as ObsUtils
from robomimic.utils.dataset import SequenceDataset

path, expected = sys.argv[1], np.load(sys.argv[2])
low_dim, rgb = ["observation_state", "gripper_opening", "object_pose"], ["cam_high_image", "cam_wrist_image"]
ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": low_dim, "rgb": rgb}})
out = {"ok": True, "problems": [], "robomimic": robomimic.__version__, "lengths": {}}
def check(what, got, want):
    if got.shape != want.shape or not np.array_equal(got, want):
        out["ok"] = False
        out["problems"].append(f"{what}: {got.shape} vs {want.shape}")
for filt in (None, "train", "valid"):
    ds = SequenceDataset(hdf5_path=path, obs_keys=low_dim + rgb, dataset_keys=("actions", "rewards", "dones"),
                         load_next_obs=True, frame_stack=1, seq_length=1, hdf5_cache_mode="low_dim",
                         filter_by_attribute=filt)
    out["lengths"][str(filt)] = [len(ds), list(ds.demos)]
    for i, demo in enumerate(ds.demos):
        traj = ds.get_trajectory_at_index(i)
        check(f"{demo}/actions", traj["actions"], expected[f"{demo}/actions"])
        check(f"{demo}/rewards", traj["rewards"], expected[f"{demo}/rewards"])
        check(f"{demo}/dones", traj["dones"], expected[f"{demo}/dones"])
        for k in low_dim + rgb:
            check(f"{demo}/obs/{k}", traj["obs"][k], expected[f"{demo}/obs/{k}"])
        state = expected[f"{demo}/obs/observation_state"]
        check(f"{demo}/next_obs", traj["next_obs"]["observation_state"], np.concatenate([state[1:], state[-1:]]))
seq = SequenceDataset(hdf5_path=path, obs_keys=low_dim + rgb, dataset_keys=("actions",), load_next_obs=False,
                      frame_stack=2, seq_length=10, hdf5_cache_mode=None)
item = seq[len(seq) - 1]  # the last frame of the last demo: one frame before it, itself, then 9 padded
out["sequence"] = {"actions": list(item["actions"].shape), "image": list(item["obs"]["cam_high_image"].shape)}
last = expected[f"{seq.demos[-1]}/actions"]
check("padded sequence", item["actions"], np.concatenate([last[-2:-1], np.repeat(last[-1:], 10, axis=0)]))
print(json.dumps(out))
'''


@pytest.mark.slow
@pytest.mark.skipif(not Path(ROBOMIMIC_PY).exists(),
                    reason=f"no robomimic interpreter at {ROBOMIMIC_PY} (make robomimic-venv builds it)")
def test_robomimic_sequence_dataset_reads_the_export(exported, read_back, tmp_path):
    path, summary = exported
    expected = {}
    for i, ep in enumerate(read_back):
        d = f"demo_{i}"
        rewards = np.zeros(ep.length, np.float32)
        rewards[-1] = float(ep.success)
        dones = np.zeros(ep.length, np.float32)
        dones[-1] = 1
        expected.update({f"{d}/actions": ep.action, f"{d}/rewards": rewards, f"{d}/dones": dones,
                         f"{d}/obs/observation_state": ep.state,
                         f"{d}/obs/gripper_opening": ep.gripper_opening.astype(np.float32)[:, None],
                         f"{d}/obs/object_pose": ep.frame_features["object.pose"],
                         f"{d}/obs/cam_high_image": ep.cameras["cam_high"].rgb,
                         f"{d}/obs/cam_wrist_image": ep.cameras["cam_wrist"].rgb})
    np.savez(tmp_path / "expected.npz", **expected)
    (tmp_path / "loader.py").write_text(LOADER)
    proc = subprocess.run([ROBOMIMIC_PY, str(tmp_path / "loader.py"), str(path), str(tmp_path / "expected.npz")],
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["ok"], result["problems"]
    assert result["robomimic"] == "0.3.0"
    lengths = result["lengths"]
    assert lengths["None"] == [N_EPISODES * FRAMES, [f"demo_{i}" for i in range(N_EPISODES)]]
    assert lengths["train"][0] + lengths["valid"][0] == N_EPISODES * FRAMES
    assert len(lengths["valid"][1]) == summary["valid"]
    assert result["sequence"] == {"actions": [11, 8], "image": [11, 32, 48, 3]}
