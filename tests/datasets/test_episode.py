import numpy as np
import pytest

from raygen.datasets.episode import EpisodeValidationError, episode_from_row, episode_to_row, validate_episode
from raygen.datasets.synthetic import synthetic_episode


def _assert_same(a, b):
    assert a.episode_key == b.episode_key and a.task == b.task and a.fps == b.fps
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.timestamps(), b.timestamps())
    np.testing.assert_array_equal(a.gripper_pose, b.gripper_pose)
    assert set(a.cameras) == set(b.cameras)
    for name in a.cameras:
        for attr in ("rgb", "depth", "intrinsics", "distortion", "pose"):
            np.testing.assert_array_equal(getattr(a.cameras[name], attr), getattr(b.cameras[name], attr))
    assert a.frame_features.keys() == b.frame_features.keys()
    for k in a.frame_features:
        np.testing.assert_array_equal(a.frame_features[k], b.frame_features[k])
    np.testing.assert_array_equal(a.flow, b.flow)
    assert a.provenance == b.provenance and a.metrics == b.metrics and a.success == b.success


def test_synthetic_episode_is_valid():
    validate_episode(synthetic_episode(0, flow=True), cameras={"cam_high", "cam_wrist"}, state_dim=23, action_dim=8)


def test_every_problem_is_reported_at_once():
    ep = synthetic_episode(1, frames=10)
    ep.state = ep.state.copy()
    ep.state[3, 5] = np.nan
    ep.action = ep.action[:7]
    ep.cameras["cam_high"].depth = ep.cameras["cam_high"].depth.astype(np.float32)
    ep.cameras["cam_wrist"].intrinsics = np.zeros((3, 3))
    ep.gripper_pose = ep.gripper_pose[:, :3]
    ep.task = ""
    with pytest.raises(EpisodeValidationError) as err:
        validate_episode(ep, cameras={"cam_high", "cam_side"}, state_dim=23)
    text = str(err.value)
    problems = err.value.problems
    assert err.value.episode_key == ep.episode_key and ep.episode_key in text
    expect = [
        "observation.state: 1 non-finite values (NaN/Inf), first at index [3, 5] = nan",
        "action: shape [7, 8] does not match expected [10,*]",
        "cameras.cam_high.depth: dtype float32 but uint16 millimetres are required",
        "cameras.cam_wrist.intrinsics: fx and fy must be positive",
        "gripper.pose: shape [10, 3, 4] does not match expected [10,4,4]",
        "task: must be a non-empty string",
        "cameras: unknown camera(s) ['cam_wrist']",
        "cameras: missing camera(s) ['cam_side']",
    ]
    for e in expect:
        assert any(p.startswith(e) for p in problems), (e, problems)
    assert len(problems) == len(expect)


def test_depth_shape_and_timestamps_checked():
    ep = synthetic_episode(2, frames=6, height=16, width=16)
    ep.cameras["cam_high"].depth = ep.cameras["cam_high"].depth[:, :8]
    ep.timestamp = np.array([0, 0.1, 0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    with pytest.raises(EpisodeValidationError) as err:
        validate_episode(ep)
    assert any("cameras.cam_high.depth: shape [6, 8, 16]" in p for p in err.value.problems)
    assert any(p.startswith("timestamp: must increase strictly; frame 2") for p in err.value.problems)


def test_row_round_trip_preserves_everything():
    ep = synthetic_episode(3, flow=True)
    row = episode_to_row(ep)
    assert all(isinstance(k, str) for k in row)
    assert row["cameras.cam_high.depth"].dtype == np.uint16
    _assert_same(ep, episode_from_row(row))


@pytest.mark.ray
def test_episode_rows_travel_through_ray_data():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=1, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        eps = [synthetic_episode(i, frames=8, height=16, width=16, flow=True) for i in range(3)]
        ds = ray.data.from_items([episode_to_row(e) for e in eps])
        ds = ds.map_batches(lambda b: b, batch_size=2, batch_format="numpy")
        rows = sorted(ds.take_all(), key=lambda r: r["episode_key"])
        for ep, row in zip(eps, rows, strict=True):
            _assert_same(ep, episode_from_row(row))
    finally:
        ray.shutdown()


def test_frame_feature_names_cannot_shadow_writer_columns():
    ep = synthetic_episode(4, frames=5, height=16, width=16)
    ep.frame_features["gripper.pose"] = np.zeros((5, 16), np.float32)
    ep.frame_features["cameras.cam_high.pose"] = np.zeros((5, 16), np.float32)
    ep.frame_features["tracks 3d"] = np.zeros((5, 3), np.float32)
    with pytest.raises(EpisodeValidationError) as err:
        validate_episode(ep)
    assert sum("is taken by a column the writer makes" in p for p in err.value.problems) == 2
    assert any("frame_features['tracks 3d']: name must be dotted identifiers" in p for p in err.value.problems)
