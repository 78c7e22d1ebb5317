"""Quality stage: good episodes pass, each kind of defect lowers the score and says why."""

import numpy as np

from raygen.datasets.synthetic import synthetic_episode
from raygen.pipelines.quality import QualitySettings, assess

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


def _good():
    ep = synthetic_episode(0, frames=30, height=32, width=32)
    ep.state = ep.state.copy()
    ep.state[:, :7] = HOME + 0.1 * np.sin(np.linspace(0, np.pi, 30))[:, None]  # a Panda-like, smooth motion
    ep.action = ep.action.copy()
    ep.action[:, :7] = ep.state[:, :7]
    ep.success = True
    ep.metrics["task.grasp_distance_m"] = 0.005
    return ep


def test_a_good_episode_is_accepted():
    r = assess(_good())
    assert r.accepted and r.score > 0.8 and not r.reasons, r
    assert 0.0 <= r.metrics["quality.score"] <= 1.0 and r.metrics["quality.finite"]


def test_failed_task_and_nan_are_hard_rejects():
    ep = _good()
    ep.success = False
    r = assess(ep)
    assert r.score == 0.0 and not r.accepted and "task failed (success is required)" in r.reasons
    assert assess(ep, QualitySettings(require_success=False)).accepted
    assert not assess(ep, QualitySettings(min_score=0.0)).accepted  # a hard failure stays a reject
    ep = _good()
    ep.frame_features["tracks3d"] = np.full((30, 3, 3), np.nan, np.float32)
    r = assess(ep)
    assert r.score == 0.0 and any("non-finite" in x for x in r.reasons)


def test_black_and_frozen_frames_and_bad_depth_lower_the_score():
    ep = _good()
    ep.cameras["cam_wrist"].rgb[:] = 0  # black
    r = assess(ep)
    assert not r.accepted and r.metrics["quality.cam_wrist.black_fraction"] == 1.0
    assert any(x.startswith("cam_wrist: 100% black") for x in r.reasons)
    ep = _good()
    ep.cameras["cam_high"].rgb[:] = ep.cameras["cam_high"].rgb[0]  # stuck while the gripper moves
    r = assess(ep)
    assert r.metrics["quality.cam_high.frozen_fraction"] > 0.9 and not r.accepted
    still = _good()
    still.gripper_pose = np.repeat(still.gripper_pose[:1], 30, axis=0)  # nothing moves: a still image is fine
    still.cameras["cam_high"].rgb[:] = still.cameras["cam_high"].rgb[0]
    assert assess(still).metrics["quality.cam_high.frozen_fraction"] == 0.0
    ep = _good()
    ep.cameras["cam_high"].depth[:] = 0
    r = assess(ep)
    assert r.metrics["quality.depth_valid_fraction"] == 0.0 and any("valid depth" in x for x in r.reasons)


def test_jerk_limits_and_grasp_distance():
    ep = _good()
    ep.action = ep.action.copy()
    ep.action[::2, :7] += 0.3  # chatter
    r = assess(ep)
    assert r.metrics["quality.action_jerk_rms"] > 1000 and any("jerky" in x for x in r.reasons)
    ep = _good()
    ep.state = ep.state.copy()
    ep.state[5, 3] = -0.07  # joint 4 at its upper limit
    assert any("of a limit" in x for x in assess(ep).reasons)
    ep = _good()
    ep.metrics["task.grasp_distance_m"] = 0.05
    assert any("from the object at grasp" in x for x in assess(ep).reasons)


def test_pybullet_episodes_score_high():
    from raygen.actors.bullet.worker import BulletBackend
    from raygen.actors.spec import EpisodeSpec

    b = BulletBackend({"width": 32, "height": 32, "task": {"steps_per_segment": 10}})
    reports = [assess(b.run_episode(EpisodeSpec("bullet-pick_place", 0, i))) for i in range(3)]
    b.close()
    assert all(r.accepted for r in reports), [(r.score, r.reasons) for r in reports]
