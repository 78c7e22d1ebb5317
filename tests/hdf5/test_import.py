"""HDF5 import: a raygen export comes back as it was (state / action exactly, images within codec tolerance);
Isaac Lab Mimic and robomimic / MimicGen files written by hand import with their annotations, and each bad
demo is one error naming file, demo and key while the others still import."""

import json

import h5py
import numpy as np
import pytest

from raygen.datasets.reader import DatasetReader
from raygen.hdf5.importer import import_hdf5
from raygen.hdf5.robomimic import export_robomimic
from tests.hdf5.conftest import write_isaaclab_mimic, write_robomimic_mimicgen


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def test_round_trip_reproduces_the_dataset(exported, read_back, tmp_path):
    path, _ = exported
    summary = import_hdf5(path, tmp_path / "back", video_codec="libx264")
    assert summary["format"] == "raygen" and summary["errors"] == [] and summary["skipped"] == []
    assert summary["imported"] == [e.episode_key for e in read_back]
    reader = DatasetReader(tmp_path / "back")
    assert reader.fps == 30.0 and reader.info["robot_type"] == "franka"
    for orig in read_back:
        back = reader.episode(orig.episode_key)
        assert back.task == orig.task and back.success == orig.success
        assert back.provenance == orig.provenance and back.provenance["seed"] == orig.provenance["seed"]
        assert back.metrics == orig.metrics and back.gripper_geometry == orig.gripper_geometry
        assert back.names == orig.names
        np.testing.assert_array_equal(back.state, orig.state)
        np.testing.assert_array_equal(back.action, orig.action)
        np.testing.assert_array_equal(back.timestamp, orig.timestamp)
        np.testing.assert_array_equal(back.gripper_pose, orig.gripper_pose)
        np.testing.assert_array_equal(back.gripper_opening, orig.gripper_opening)
        assert set(back.frame_features) == set(orig.frame_features)
        for name, arr in orig.frame_features.items():
            assert back.frame_features[name].dtype == arr.dtype, name
            np.testing.assert_array_equal(back.frame_features[name], arr, err_msg=name)
        assert set(back.cameras) == set(orig.cameras)
        for cam, frames in orig.cameras.items():
            got = back.cameras[cam]
            assert psnr(got.rgb, frames.rgb) > 30.0, cam
            assert np.abs(got.rgb.astype(np.int16) - frames.rgb).mean() < 4.0, cam
            np.testing.assert_array_equal(got.depth, frames.depth)  # FFV1 -> uint16 -> FFV1: lossless
            np.testing.assert_array_equal(got.intrinsics, frames.intrinsics)
            np.testing.assert_array_equal(got.distortion, frames.distortion)
            np.testing.assert_allclose(got.pose, frames.pose, atol=1e-6)
            assert got.moving == frames.moving


def test_lowdim_export_imports_with_frameless_cameras(rich_dataset, read_back, tmp_path):
    out = export_robomimic(rich_dataset, tmp_path / "lowdim.hdf5", episodes="0,2")
    summary = import_hdf5(out["file"], tmp_path / "back", shard_size=1)
    assert summary["errors"] == [] and len(summary["imported"]) == 2
    reader = DatasetReader(tmp_path / "back")
    back = reader.episode(1)
    orig = read_back[2]
    assert back.episode_key == orig.episode_key
    np.testing.assert_array_equal(back.state, orig.state)
    np.testing.assert_array_equal(back.action, orig.action)
    assert all(c.rgb is None for c in back.cameras.values())
    assert back.cameras["cam_high"].resolution == (32, 48)
    # running it again adds nothing: the keys are committed
    again = import_hdf5(out["file"], tmp_path / "back")
    assert again["imported"] == [] and again["already"] == summary["imported"]


def test_damaged_raygen_export_reports_each_bad_demo(exported, read_back, tmp_path):
    path = tmp_path / "damaged.hdf5"
    path.write_bytes(exported[0].read_bytes())
    with h5py.File(path, "r+") as f:
        f["data/demo_1"].attrs["camera_info"] = "{not json"
        del f["data/demo_3/actions"]
        f["data/demo_4/obs/observation_state"].attrs["raygen_shape"] = "[5]"
    summary = import_hdf5(path, tmp_path / "ds", video_codec="libx264")
    assert summary["imported"] == [read_back[0].episode_key, read_back[2].episode_key]
    errors = summary["errors"]
    assert len(errors) == 3
    assert errors[0].startswith(f"{path}: /data/demo_1: attr 'camera_info' is not JSON")
    assert errors[1] == f"{path}: /data/demo_3: actions: missing (every demo needs actions, shape (T, A))"
    assert errors[2].startswith(f"{path}: /data/demo_4: obs/observation_state: shape [16, 23] does not fit")


def test_isaaclab_mimic_file_with_bad_demos(tmp_path):
    path = tmp_path / "mimic.hdf5"
    expected = write_isaaclab_mimic(path)
    with pytest.raises(ValueError, match=r"does not say its frame rate .* pass fps="):
        import_hdf5(path, tmp_path / "nofps")
    summary = import_hdf5(path, tmp_path / "ds", fps=20, task="stack the cubes", video_codec="libx264")
    assert summary["format"] == "isaaclab-mimic"
    assert summary["imported"] == ["mimic-demo_0", "mimic-demo_2", "mimic-demo_4"]
    errors = summary["errors"]
    assert len(errors) == 2
    assert errors[0].startswith(f"{path}: /data/demo_1: ") and "actions: missing" in errors[0]
    assert errors[1].startswith(f"{path}: /data/demo_3: ")
    assert "obs/eef_pos: 10 rows, actions has 12 (ragged lengths)" in errors[1]
    assert "obs/label: dtype |S1 is not numeric" in errors[1]

    reader = DatasetReader(tmp_path / "ds")
    assert reader.fps == 20.0 and reader.cameras == ["table_cam"]
    for key, demo in zip(summary["imported"], ("demo_0", "demo_2", "demo_4")):
        exp = expected[demo]
        ep = reader.episode(key)
        assert ep.task == "stack the cubes" and ep.success is exp["success"]
        assert ep.provenance["seed"] == exp["seed"] and ep.provenance["demo"] == demo
        assert ep.provenance["source_format"] == "isaaclab-mimic"
        np.testing.assert_array_equal(ep.action, exp["actions"])
        assert ep.names["action"] == [f"action_{j}" for j in range(7)]
        # state: the low-dim obs in key order (eef_pos, gripper_pos, joint_pos)
        assert ep.names["observation.state"][:5] == ["eef_pos_0", "eef_pos_1", "eef_pos_2", "gripper_pos_0",
                                                     "gripper_pos_1"]
        np.testing.assert_array_equal(ep.state[:, :3], exp["eef_pos"])
        np.testing.assert_array_equal(ep.state[:, 5:], exp["joint_pos"])
        assert ep.provenance["state_layout"]["obs/joint_pos"] == [5, 14]
        np.testing.assert_allclose(ep.gripper_pose, exp["eef_pose"])
        np.testing.assert_allclose(ep.gripper_opening, 0.04, atol=1e-7)
        ff = ep.frame_features
        np.testing.assert_array_equal(ff["datagen_info.subtask_term_signals.grasp_1"], exp["term"])
        np.testing.assert_array_equal(ff["datagen_info.subtask_start_signals.grasp_1"], exp["start"])
        assert ff["datagen_info.subtask_term_signals.grasp_1"].dtype == np.bool_
        np.testing.assert_allclose(ff["datagen_info.eef_pose.franka"], exp["eef_pose"])
        assert ff["datagen_info.object_pose.cube_1"].shape == (12, 4, 4)
        np.testing.assert_array_equal(ff["states.articulation.robot.joint_position"], exp["joint_pos"])
        assert "initial_state" in ep.provenance
        assert np.abs(ep.cameras["table_cam"].rgb.astype(np.int16) - exp["image"]).mean() < 6
        assert psnr(ep.cameras["table_cam"].rgb, exp["image"]) > 28
        assert ep.cameras["table_cam"].info["intrinsics"].startswith("unknown")


def test_mimic_signals_survive_export_and_reimport(tmp_path):
    """An imported Mimic file exported again puts its annotations back under obs/datagen_info."""
    path = tmp_path / "mimic.hdf5"
    write_isaaclab_mimic(path)
    import_hdf5(path, tmp_path / "ds", fps=20, video_codec="libx264")
    out = export_robomimic(tmp_path / "ds", tmp_path / "again.hdf5", images="rgb")
    with h5py.File(out["file"], "r") as f, h5py.File(path, "r") as src:
        g, s = f["data/demo_0"], src["data/demo_0"]
        dg = g["obs/datagen_info"]
        assert set(dg) == {"eef_pose", "object_pose", "target_eef_pose", "subtask_term_signals",
                           "subtask_start_signals"}
        assert json.loads(dg.attrs["raygen_derived"]) == []  # every leaf came from the file
        for leaf in ("subtask_term_signals/grasp_1", "eef_pose/franka", "object_pose/cube_1"):
            np.testing.assert_array_equal(dg[leaf][()], s[f"obs/datagen_info/{leaf}"][()], err_msg=leaf)
        assert g.attrs["seed"] == 1000 and bool(g.attrs["success"])
        assert g["obs/table_cam_image"].shape == (12, 32, 48, 3)


def test_robomimic_file_with_mimicgen_datagen_info(tmp_path):
    path = tmp_path / "lift.hdf5"
    write_robomimic_mimicgen(path)
    summary = import_hdf5(path, tmp_path / "ds", video_codec="libx264")  # fps from env_kwargs.control_freq
    assert summary["format"] == "mimicgen" and summary["errors"] == []
    assert summary["imported"] == ["lift-demo_1", "lift-demo_2"]
    assert "/data/demo_1/next_obs/robot0_eef_pos" not in summary["skipped"]
    reader = DatasetReader(tmp_path / "ds")
    assert reader.fps == 20.0 and reader.info["robot_type"] == "Panda"
    one, two = reader.episode(0), reader.episode(1)
    assert one.success and not two.success and one.provenance["success_from"] == "rewards"
    assert one.task == "Lift"
    assert one.names["observation.state"][:3] == ["object_0", "object_1", "object_2"]
    with h5py.File(path, "r") as f:
        g = f["data/demo_1"]
        np.testing.assert_allclose(one.action, g["actions"][()].astype(np.float32))
        np.testing.assert_allclose(one.frame_features["states"], g["states"][()], rtol=1e-6)
        np.testing.assert_array_equal(one.frame_features["next.reward"], g["rewards"][()])
        np.testing.assert_array_equal(one.frame_features["next.done"], g["dones"][()])
        np.testing.assert_allclose(one.gripper_pose, g["datagen_info/eef_pose"][()])
        np.testing.assert_array_equal(one.frame_features["datagen_info.subtask_term_signals.grasp"],
                                      g["datagen_info/subtask_term_signals/grasp"][()])
        assert one.frame_features["datagen_info.object_poses.cube"].shape == (10, 4, 4)
    np.testing.assert_allclose(one.gripper_opening, 0.04)
    cam = one.cameras["agentview"]
    assert cam.resolution == (16, 16) and cam.intrinsics[0, 0] == 20.0


def test_layout_mismatch_and_bad_file(tmp_path):
    path = tmp_path / "mixed.hdf5"
    write_robomimic_mimicgen(path)
    with h5py.File(path, "r+") as f:
        g = f["data/demo_2"]
        del g["actions"]
        g.create_dataset("actions", data=np.zeros((10, 3)))  # 3 actions, demo_1 has 7
    summary = import_hdf5(path, tmp_path / "ds", video_codec="libx264")
    assert summary["imported"] == ["mixed-demo_1"] and len(summary["errors"]) == 1
    assert summary["errors"][0].startswith(f"{path}: /data/demo_2: action: ((3,)")
    # a second file whose demos do not fit the dataset already there
    other = tmp_path / "other.hdf5"
    write_isaaclab_mimic(other, good=(0,))
    summary = import_hdf5(other, tmp_path / "ds", fps=20, video_codec="libx264")
    assert summary["imported"] == [] and len(summary["errors"]) == 5
    assert "(the dataset's layout comes from" in summary["errors"][0]
    (tmp_path / "not.hdf5").write_text("hello")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        import_hdf5(tmp_path / "not.hdf5", tmp_path / "x")
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("episodes")
    with pytest.raises(ValueError, match=r"no /data group \(top-level keys: \['episodes'\]\)"):
        import_hdf5(tmp_path / "empty.hdf5", tmp_path / "x")
    with pytest.raises(ValueError, match="fps: must be a number"):
        import_hdf5(path, tmp_path / "x", fps=-1)
