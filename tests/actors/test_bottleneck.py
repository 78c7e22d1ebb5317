"""Bottleneck episodes on PyBullet (restore, perturb, recover, finish) and rendering only the kept episodes."""

from __future__ import annotations

import numpy as np
import pytest

from raygen.actors._backend import render_if_kept
from raygen.actors.bullet.worker import BulletBackend
from raygen.actors.spec import EpisodeFailed, EpisodeSpec
from raygen.actors.tasks.bottleneck import RECOVERY_PHASE, perturbation_transform
from raygen.actors.tasks.pick_place import PHASES
from raygen.datasets.episode import validate_episode

STEPS = 12  # frames per phase: 108-frame demos


@pytest.fixture(scope="module")
def backend():
    b = BulletBackend({"width": 32, "height": 32, "task": {"steps_per_segment": STEPS}})
    yield b
    b.close()


@pytest.fixture(scope="module")
def demo(backend):
    ep = backend.run_episode(EpisodeSpec("bullet-pick_place", 0, 1))
    assert ep.success
    return ep


def _bottleneck(demo, frame: int, pert: dict, steps: int = 10) -> dict:
    phase = demo.frame_features["task.phase"]
    grasp_at = int(np.flatnonzero(phase == PHASES.index("CLOSE_GRIPPER"))[-1])
    release_at = int(np.flatnonzero(phase == PHASES.index("OPEN_GRIPPER"))[0])  # the fingers part in this frame
    m, s = demo.metrics, demo.state[frame].astype(np.float64)
    return {"demo": demo.episode_key, "frame": frame,
            "scene": {"object_xy": [m["scene.object_x"], m["scene.object_y"]],
                      "place_xy": [m["scene.place_x"], m["scene.place_y"]], "object_size": m["scene.object_size_m"],
                      "object_kind": m["scene.object_kind"], "colour_name": m["scene.colour"]},
            "q": s[:7].tolist(), "fingers": s[14:16].tolist(),
            "object_pose": demo.frame_features["object.pose"][frame].astype(np.float64).tolist(),
            "grasped": grasp_at < frame <= release_at, "after_grasp": frame > grasp_at,
            "actions": demo.action[frame:].astype(np.float64).tolist(),
            "phases": demo.frame_features["task.phase"][frame:].tolist(),
            "perturbation": pert, "recovery_steps": steps}


GENTLE = {"r": 0.1, "theta": np.radians(30.0), "phi": np.radians(45.0), "roll": 0.1, "pitch": -0.1, "yaw": 0.2}


@pytest.mark.parametrize("frame_phase,at", [("LIFT", STEPS // 2), ("APPROACH_PICK", STEPS // 2),
                                            ("CLOSE_GRIPPER", 1), ("CLOSE_GRIPPER", -1), ("OPEN_GRIPPER", 0),
                                            ("OPEN_GRIPPER", STEPS // 2)])
def test_restore_perturb_recover_and_finish(backend, demo, frame_phase, at):
    """Critical states around the grasp and the release are the ones gripper_changes marks: they must work."""
    phase = demo.frame_features["task.phase"]
    frame = int(np.flatnonzero(phase == PHASES.index(frame_phase))[at])
    b = _bottleneck(demo, frame, GENTLE)
    ep = backend.run_episode(EpisodeSpec("bullet-pick_place-bottleneck", 0, 0, params={"bottleneck": b}))
    validate_episode(ep, cameras={"cam_high", "cam_wrist"}, state_dim=23, action_dim=8)
    n_rest, k = len(demo.state) - frame, ep.provenance["bottleneck"]["recovery_steps"]
    assert k >= 10 and ep.metrics["bottleneck.recovery_steps"] == k
    assert len(ep.state) == k + n_rest and ep.cameras["cam_high"].rgb.shape[0] == len(ep.state)
    assert (ep.frame_features["task.phase"][:k] == RECOVERY_PHASE).all()
    np.testing.assert_array_equal(ep.frame_features["task.phase"][k:], phase[frame:])
    # no joint moves faster than the recovery's speed limit (cosine easing: peak = pi/2 x mean)
    speed = np.abs(np.diff(ep.action[:k, :7], axis=0)).max() * 30.0
    assert speed <= 1.0 + 1e-6, speed
    # the first frame is the perturbed pose: the TCP moved by the spherical offset from the critical state
    offset, _ = perturbation_transform(GENTLE, ep.metrics["bottleneck.scale"])
    # the fingers are held through the recovery: the command is where they were at the critical frame
    np.testing.assert_allclose(ep.action[:k, 7], max(b["fingers"]), atol=1e-6)
    tcp_c = demo.state[frame, 16:19].astype(np.float64)
    assert np.linalg.norm(ep.state[0, 16:19] - (tcp_c + offset)) < 0.01
    # ... and the recovery brings it back to the critical state before the demo's targets take over
    assert np.linalg.norm(ep.state[k, 16:19] - tcp_c) < 0.06  # within the position controller's lag
    held = b["grasped"]
    obj_z = ep.frame_features["object.pose"][:, 2]
    if held:  # the object rode along with the hand to the perturbed pose
        assert obj_z[0] - demo.frame_features["object.pose"][frame, 2] > 0.5 * offset[2]
    assert ep.success, ep.metrics
    prov = ep.provenance["bottleneck"]
    assert prov["demo"] == demo.episode_key and prov["frame"] == frame and prov["grasped"] == held
    assert "actions" not in ep.provenance["params"]["bottleneck"]  # the arrays stay in the spec
    assert ep.provenance["task"] == "pick_place-bottleneck"


def test_the_same_spec_gives_the_same_episode(backend, demo):
    frame = int(np.flatnonzero(demo.frame_features["task.phase"] == PHASES.index("MOVE_TO_PLACE"))[3])
    spec = EpisodeSpec("bullet-pick_place-bottleneck", 0, 3, params={"bottleneck": _bottleneck(demo, frame, GENTLE)})
    a, b = backend.run_episode(spec), backend.run_episode(spec)
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.cameras["cam_wrist"].rgb, b.cameras["cam_wrist"].rgb)


def test_unreachable_perturbations_shrink_then_fail(backend, demo):
    frame = int(np.flatnonzero(demo.frame_features["task.phase"] == PHASES.index("LIFT"))[2])
    far = {**GENTLE, "r": 5.0, "theta": 0.0}  # 5 m straight up: out of reach even at 0.75**5 = 1.19 m
    spec = EpisodeSpec("bullet-pick_place-bottleneck", 0, 4, params={"bottleneck": _bottleneck(demo, frame, far)})
    with pytest.raises(EpisodeFailed, match=r"^task failed: no joints reach the perturbed pose within the joint "
                                            r"limits; around "):
        backend.run_episode(spec)
    bad = _bottleneck(demo, frame, GENTLE)
    bad["phases"] = bad["phases"][:-1]
    with pytest.raises(ValueError, match=r"params.bottleneck: \d+ actions but \d+ phases"):
        backend.run_episode(EpisodeSpec("bullet-pick_place-bottleneck", 0, 5, params={"bottleneck": bad}))


def test_render_only_kept_replays_successes_and_skips_failures(backend):
    spec = EpisodeSpec("bullet-pick_place", 0, 1)
    calls: list[bool] = []

    def run(render: bool):
        calls.append(render)
        return backend.run_episode(spec) if render else _physics_only(backend, spec)

    kept = render_if_kept(run)
    assert calls == [False, True] and kept.metrics["render.replay_state_diff"] == 0.0
    assert kept.cameras["cam_high"].rgb.shape[0] == len(kept.state)

    # a failing task (a 1 mm success radius) is never rendered: one physics-only pass, then EpisodeFailed
    strict = BulletBackend({"width": 32, "height": 32, "render_only_kept": True,
                            "task": {"steps_per_segment": STEPS, "success_radius": 0.001}})
    try:
        rendered = []
        orig = strict.sim.render
        strict.sim.render = lambda: rendered.append(1) or orig()  # counts frames drawn (the real renderer)
        with pytest.raises(EpisodeFailed, match=r"physics-only pass; not rendered \(grasped .*place error"):
            strict.run_episode(spec)
        assert rendered == []
    finally:
        strict.close()


def _physics_only(backend, spec):
    from raygen.actors.tasks.pick_place import PickPlaceParams, run_pick_place

    params = PickPlaceParams.from_options(backend.task_options)
    ep = run_pick_place(backend.sim, spec, params, render=False)
    assert ep.cameras == {}
    return ep


def test_a_varied_demo_s_light_and_distractors_come_back_with_its_state(backend):
    """A critical state of a demo made with lighting and distractors is restored with the demo's light as it
    was at t_c and its distractors where they stood; a moving person is not restored, and says so."""
    from raygen.actors.tasks.pick_place import PickPlaceParams
    from raygen.actors.tasks.scene_plan import variation_at
    from raygen.actors.tasks.varied import run_varied

    varied = PickPlaceParams.from_options({"steps_per_segment": STEPS, "scene": {
        "lighting": {"enabled": True, "change_every_s": 1.0}, "distractors": {"enabled": True, "count": [3, 3]}}})
    demo = run_varied(backend.sim, EpisodeSpec("bullet-pick_place", 0, 1), varied)
    assert demo.success
    frame = int(np.flatnonzero(demo.frame_features["task.phase"] == PHASES.index("LIFT"))[STEPS // 2])
    recorded = demo.provenance["scene_variation"]
    b = {**_bottleneck(demo, frame, GENTLE), "variation": variation_at(recorded, frame / demo.fps)}
    ep = backend.run_episode(EpisodeSpec("bullet-pick_place-bottleneck", 0, 0, params={"bottleneck": b}))
    plain = backend.run_episode(EpisodeSpec("bullet-pick_place-bottleneck", 0, 0,
                                            params={"bottleneck": _bottleneck(demo, frame, GENTLE)}))
    validate_episode(ep, cameras={"cam_high", "cam_wrist"}, state_dim=23, action_dim=8)
    m = ep.metrics
    assert m["bottleneck.scene_restored"] is True and m["scene.distractors"] == 3
    assert m["scene.distractor_xy"] == demo.metrics["scene.distractor_xy"]  # where the demo drew them
    from raygen.actors.tasks.scene_plan import LightingPlan

    lit = recorded["lighting"]
    at_tc = LightingPlan(tuple(lit["times"]), tuple(map(tuple, lit["values"])), lit["transition"],
                         lit["shadows"]).at(frame / demo.fps)
    assert m["scene.light_azimuth_deg"] == pytest.approx(at_tc.azimuth_deg, abs=1e-3)
    assert m["scene.light_dynamic"] is False  # held for the whole episode
    assert ep.provenance["scene_variation"]["restored_from_demo"] is True
    assert "bottleneck.scene_restored" not in plain.metrics
    diff = np.abs(ep.cameras["cam_high"].rgb[0].astype(int) - plain.cameras["cam_high"].rgb[0])
    assert diff.mean() > 2.0  # the demo's light (and the plain episode after it is not lit by it)

    with_person = {**recorded, "person": {"speed": 0.5}}
    assert variation_at(with_person, 0.0)["dropped"] == ["person"]
    assert variation_at({"lighting": None, "distractors": [], "person": {"speed": 0.5}}, 0.0) == {"dropped": ["person"]}
    assert variation_at({"lighting": None, "distractors": []}, 0.0) is None
