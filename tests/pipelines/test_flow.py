"""Flow stage: 1 mm steps on a straight line, projections equal OpenCV's, visibility, and real episodes."""

import cv2
import numpy as np
import pytest

from raygen.datasets.episode import validate_episode
from raygen.datasets.synthetic import synthetic_episode
from raygen.pipelines.flow import add_flow, contact_tracks, normalized_flow, project_points


def test_straight_line_gives_exact_1mm_steps():
    t = 50
    speed = np.abs(np.sin(np.linspace(0, 3, t))) + 0.1  # uneven speed, with the same straight path
    x = 0.2 + 0.1 * np.cumsum(speed) / speed.sum()
    x[0] = 0.2
    x[10:13] = x[10]  # a pause: no path length
    c = np.stack([x, np.full(t, 0.1), np.full(t, 0.05)], axis=1)
    tracks = np.stack([c, c + [0, 0.04, 0], c - [0, 0.04, 0]], axis=1)
    flow = normalized_flow(tracks).astype(np.float64)
    steps = np.linalg.norm(np.diff(flow[:, 0], axis=0), axis=1)
    np.testing.assert_allclose(steps, 0.001, atol=1e-6)  # float32 output
    assert flow.shape == (int(np.floor((x[-1] - 0.2) / 0.001 + 1e-9)) + 1, 3, 3)
    np.testing.assert_allclose(flow[:, 1] - flow[:, 0], [[0, 0.04, 0]] * len(flow), atol=1e-6)


def test_projection_equals_opencv_projectpoints():
    rng = np.random.default_rng(0)
    k = np.array([[400.0, 0, 160.2], [0, 410.0, 119.7], [0, 0, 1]])
    dist = np.array([0.1, -0.05, 0.001, -0.002, 0.01])
    rvec = np.array([0.1, -0.2, 0.05])
    r, _ = cv2.Rodrigues(rvec)
    cam_to_base = np.eye(4)
    cam_to_base[:3, :3], cam_to_base[:3, 3] = r, [0.3, -0.1, 0.9]
    pts = rng.uniform([-0.2, -0.3, 0.0], [0.6, 0.3, 0.4], size=(7, 3, 3))
    uv, z = project_points(pts, cam_to_base, k, dist)
    base_to_cam = np.linalg.inv(cam_to_base)
    rv, _ = cv2.Rodrigues(base_to_cam[:3, :3])
    want, _ = cv2.projectPoints(pts.reshape(-1, 3), rv, base_to_cam[:3, 3], k, dist)
    np.testing.assert_allclose(uv.reshape(-1, 2), want.reshape(-1, 2), atol=1e-7)
    np.testing.assert_allclose(z.reshape(-1), (pts.reshape(-1, 3) @ base_to_cam[:3, :3].T + base_to_cam[:3, 3])[:, 2])


def test_add_flow_on_a_synthetic_episode_and_visibility():
    ep = synthetic_episode(0, frames=20, height=32, width=32)
    ep.frame_features.clear()
    ep.gripper_geometry = {"centroid_in_flange_m": [0, 0, 0.1034], "finger_axis_in_flange": [0.7071, 0.7071, 0]}
    add_flow(ep)
    validate_episode(ep)
    assert ep.frame_features["tracks3d"].shape == (20, 3, 3)
    assert ep.frame_features["tracks2d.cam_high"].shape == (20, 3, 2)
    vis = ep.frame_features["tracks2d.cam_high.visible"]
    assert vis.dtype == np.bool_ and vis.shape == (20, 3)
    # a point behind the camera is never visible; one hidden behind a near surface is not either
    cam = ep.cameras["cam_high"]
    behind = cam.pose[:3, 3] - 0.5 * cam.pose[:3, 2]
    uv, z = project_points(np.tile(behind, (20, 1, 1)), cam.pose, cam.intrinsics, cam.distortion)
    assert (z < 0).all()
    with pytest.raises(ValueError, match="no contact.pads and gripper_geometry lacks"):
        bad = synthetic_episode(1, frames=5, height=16, width=16)
        bad.gripper_geometry = {}
        contact_tracks(bad)


def test_pybullet_pads_are_visible_from_the_overhead_camera():
    from raygen.actors.bullet.worker import BulletBackend
    from raygen.actors.spec import EpisodeSpec

    b = BulletBackend({"width": 64, "height": 64, "task": {"steps_per_segment": 10}})
    ep = b.run_episode(EpisodeSpec("bullet-pick_place", 0, 1))
    b.close()
    add_flow(ep)
    validate_episode(ep)
    vis = ep.frame_features["tracks2d.cam_high.visible"]
    assert vis[:, 0].mean() > 0.5  # the TCP region is in view of the overhead camera most of the time
    total = np.linalg.norm(np.diff(ep.frame_features["tracks3d"][:, 0], axis=0), axis=1).sum()
    assert abs(len(ep.flow) - (np.floor(total / 0.001) + 1)) <= 1


def _two_gripper_episode(frames: int = 40):
    """A synthetic episode whose contact.pads hold two grippers [T,4,3]: gripper 0 moves 6 cm along x, gripper
    1 3 cm along y (different path lengths), both 4 cm wide."""
    ep = synthetic_episode(2, frames=frames, height=32, width=32)
    s = (1 - np.cos(np.linspace(0, np.pi, frames))) / 2
    c0 = np.stack([0.3 + 0.06 * s, np.full(frames, -0.05), np.full(frames, 0.05)], axis=1)
    c1 = np.stack([np.full(frames, 0.35), 0.05 + 0.03 * s, np.full(frames, 0.05)], axis=1)
    side = np.array([0.0, 0.02, 0.0])
    ep.frame_features.clear()
    ep.frame_features["contact.pads"] = np.stack([c0 + side, c0 - side, c1 + side, c1 - side], axis=1).astype(
        np.float32)
    ep.gripper_geometry = {**ep.gripper_geometry, "grippers": ["arm0", "arm1"]}
    return ep, c0, c1


def test_two_grippers_give_three_tracks_each_and_a_flow_per_gripper():
    ep, c0, c1 = _two_gripper_episode()
    add_flow(ep)
    validate_episode(ep)
    t = ep.length
    tracks = ep.frame_features["tracks3d"]
    assert tracks.shape == (t, 6, 3)
    np.testing.assert_allclose(tracks[:, 0], c0, atol=1e-6)  # arm 0's centroid, then its pads
    np.testing.assert_allclose(tracks[:, 3], c1, atol=1e-6)  # arm 1's centroid
    np.testing.assert_allclose(tracks[:, 1] - tracks[:, 0], [[0, 0.02, 0]] * t, atol=1e-6)
    np.testing.assert_allclose(tracks[:, 5] - tracks[:, 3], [[0, -0.02, 0]] * t, atol=1e-6)
    for cam in ep.cameras:
        assert ep.frame_features[f"tracks2d.{cam}"].shape == (t, 6, 2)
        assert ep.frame_features[f"tracks2d.{cam}.visible"].shape == (t, 6)
        assert ep.names[f"tracks2d.{cam}"][:2] == ["arm0_centroid_u", "arm0_centroid_v"]
        assert ep.names[f"tracks2d.{cam}.visible"][3] == "arm1_centroid"
    # each gripper's projection is the single-gripper projection of its own tracks
    cam = ep.cameras["cam_high"]
    uv1, _ = project_points(tracks[:, 3:6].astype(np.float64), cam.pose, cam.intrinsics, cam.distortion)
    np.testing.assert_allclose(ep.frame_features["tracks2d.cam_high"][:, 3:6], uv1, atol=1e-3)
    assert ep.gripper_geometry["tracks"] == ["arm0.centroid", "arm0.left_pad", "arm0.right_pad",
                                             "arm1.centroid", "arm1.left_pad", "arm1.right_pad"]
    assert ep.names["tracks3d"][:3] == ["arm0_centroid_x", "arm0_centroid_y", "arm0_centroid_z"]
    # the flow: each gripper at 1 mm steps of its own path (6 cm -> 61 steps, 3 cm -> 31), the shorter one padded
    assert ep.gripper_geometry["flow_steps"] == [61, 31] and ep.gripper_geometry["grippers"] == ["arm0", "arm1"]
    flow = ep.flow.astype(np.float64)
    assert flow.shape == (61, 6, 3)
    np.testing.assert_allclose(np.linalg.norm(np.diff(flow[:, 0], axis=0), axis=1), 0.001, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.diff(flow[:31, 3], axis=0), axis=1), 0.001, atol=1e-6)
    assert (flow[31:, 3:] == flow[30, 3:]).all()
    np.testing.assert_allclose(flow[:31, 3:], normalized_flow(contact_tracks(ep)[:, 3:6]), atol=1e-6)


def test_gripper_names_default_and_a_bad_pad_count_is_named():
    ep, _, _ = _two_gripper_episode(10)
    ep.gripper_geometry = {k: v for k, v in ep.gripper_geometry.items() if k != "grippers"}
    add_flow(ep)
    assert ep.gripper_geometry["tracks"][3] == "gripper1.centroid"
    bad, _, _ = _two_gripper_episode(10)
    bad.frame_features["contact.pads"] = bad.frame_features["contact.pads"][:, :3]
    with pytest.raises(ValueError, match=r"contact.pads has shape \[10, 3, 3\]"):
        add_flow(bad)
