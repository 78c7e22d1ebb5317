"""Two arms in one scene: allocation, the separation-keeping schedule, and PyBullet episodes that validate,
keep the minimum separation on every recorded frame, project both arms' tracks and repeat exactly."""


import numpy as np
import pytest

from raygen.actors.spec import EpisodeFailed, EpisodeSpec
from raygen.actors.tasks.two_arms import (
    TwoArmParams,
    _segment_distance,
    allocate_nearest,
    arm_bases,
    run_two_arms,
    sample_two_arm_scene,
    schedule_two_arms,
)
from raygen.datasets.episode import episode_from_row, episode_to_row, validate_episode
from raygen.pipelines.flow import add_flow
from tests.actors.episode_hash import episode_hash

SOURCE = "bullet-two_arms"
WAITING = EpisodeSpec(SOURCE, 0, 2)  # arm 1 waits ~130 frames for arm 0 here


def _hash(ep) -> str:
    return episode_hash(ep, ("rgb", "depth", "pose"))


def _tcps(ep) -> tuple[np.ndarray, np.ndarray]:
    """The measured TCP positions of both arms, read from observation.state by name."""
    names = ep.names["observation.state"]
    cols = [[names.index(f"{arm}_eef_{ax}") for ax in "xyz"] for arm in ("arm0", "arm1")]
    return ep.state[:, cols[0]].astype(np.float64), ep.state[:, cols[1]].astype(np.float64)


# ----------------------------------------------------------------------------- no simulator


def test_nearest_neighbour_allocation_matches_the_closest_pair_first():
    bases = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert allocate_nearest(np.array([[0.7, 0.0], [0.35, 0.1]]), bases) == [1, 0]
    # both points nearer arm 0: it takes the nearer one, arm 1 the other
    assert allocate_nearest(np.array([[0.45, 0.0], [0.3, 0.0]]), bases) == [1, 0]
    rng = np.random.default_rng(0)
    params = TwoArmParams()
    base_xy = np.array([b[:2, 3] for b in arm_bases(params)])
    for _ in range(200):
        scene = sample_two_arm_scene(rng, params, ("cube", "cylinder"))
        for field in ("object_xy", "place_xy"):
            pts = np.array([getattr(s, field) for s in scene.arms])  # arm a's point in row a
            d = np.linalg.norm(base_xy[:, None] - pts[None], axis=-1)  # d[arm, point]
            arm, point = np.unravel_index(np.argmin(d), d.shape)
            assert arm == point, (field, d)  # the globally closest arm-point pair is matched
        assert scene.arms[0].colour_name != scene.arms[1].colour_name
        spots = [np.array(s.object_xy) for s in scene.arms] + [np.array(s.place_xy) for s in scene.arms]
        gaps = [np.linalg.norm(a - b) for i, a in enumerate(spots) for b in spots[i + 1:]]
        assert min(gaps) >= params.min_place_distance


def test_schedule_waits_for_the_other_arm_and_never_enters_a_blocked_cell():
    k = 60
    s = np.linspace(0.0, 1.0, k + 1)
    out_and_back = np.sin(np.pi * s)
    tcp0 = np.stack([0.3 + 0.25 * out_and_back, np.zeros_like(s), np.full_like(s, 0.2)], axis=1)  # 0.3 -> 0.55
    tcp1 = np.stack([0.7 - 0.25 * out_and_back, np.zeros_like(s), np.full_like(s, 0.2)], axis=1)  # 0.7 -> 0.45
    free = np.linalg.norm(tcp0[:, None] - tcp1[None], axis=-1) >= 0.14
    sched = schedule_two_arms(free)
    a, b = sched.progress[:, 0], sched.progress[:, 1]
    assert free[a, b].all()
    assert (a[-1], b[-1]) == (k, k) and np.isin(np.diff(a), [0, 1]).all() and np.isin(np.diff(b), [0, 1]).all()
    assert sched.waiting[:, 1].sum() >= k // 2 and not sched.waiting[:, 0].any()  # arm 1 waits, arm 0 never
    # arms that may hold only at their waypoints (every 10th target) wait there and nowhere else
    stops = np.arange(k + 1) % 10 == 0
    sched = schedule_two_arms(free, stops, stops)
    a, b = sched.progress[:, 0], sched.progress[:, 1]
    assert free[a, b].all() and (a[-1], b[-1]) == (k, k) and sched.waiting[:, 1].sum() >= k // 2
    assert stops[b[sched.waiting[:, 1]]].all() and stops[a[sched.waiting[:, 0]]].all()
    # both paths blocked from the start: no order of moves works
    with pytest.raises(EpisodeFailed, match="no order of the arms' moves"):
        schedule_two_arms(np.zeros((5, 5), bool) | np.eye(5, dtype=bool)[::-1])


def test_segment_distance_agrees_with_brute_force():
    rng = np.random.default_rng(3)
    t = np.linspace(0.0, 1.0, 401)[:, None]
    for _ in range(200):
        p1, q1, p2, q2 = rng.normal(size=(4, 3))
        if rng.random() < 0.2:
            q2 = p2  # a point
        brute = np.linalg.norm((p1 + (q1 - p1) * t)[:, None] - (p2 + (q2 - p2) * t)[None], axis=-1).min()
        got = float(_segment_distance(p1, q1, p2, q2))
        assert got <= brute + 1e-9 and brute - got < 5e-3


def test_params_are_checked():
    with pytest.raises(ValueError, match="min_separation_m"):
        TwoArmParams.from_options({"min_separation_m": -1.0})
    with pytest.raises(ValueError, match="unknown parameter"):
        TwoArmParams.from_options({"separation": 0.2})
    assert TwoArmParams.from_options({"min_separation_m": 0.2}).min_separation_m == 0.2
    with pytest.raises(ValueError, match="the platform is a single-arm part"):
        TwoArmParams.from_options({"scene": {"platform": {"enabled": True}, "person": {"enabled": True}}})
    assert TwoArmParams.from_options({"scene": {"lighting": {"enabled": True}}}).variation.active


def test_distractors_keep_clear_of_both_arms_spots_and_bases():
    from raygen.actors.tasks.scene import BASE_KEEPOUT_M, MARKER_RADIUS_M, TABLE_Y
    from raygen.actors.tasks.two_arms import _vary

    class Recorder:  # only records what the task hands over: no simulator is involved
        name = "recorder"

        def vary(self, variation):
            self.variation = variation

    params = TwoArmParams.from_options({"scene": {"distractors": {"enabled": True, "count": [6, 8],
                                                                  "x_range": [0.05, 0.9]}}})
    rec, placed = Recorder(), 0
    for i in range(40):
        spec = EpisodeSpec(SOURCE, 5, i)
        scene = sample_two_arm_scene(np.random.default_rng(np.random.SeedSequence(spec.rng_seed)), params)
        _vary(rec, spec, scene, params)
        c = params.variation.distractors.clearance_m
        for d in rec.variation.distractors:
            xy = np.asarray(d.xy)
            placed += 1
            for s in scene.arms:
                r_obj = s.object_size * np.sqrt(2) / 2
                assert np.linalg.norm(xy - s.object_xy) >= d.radius + r_obj + c - 1e-9
                assert np.linalg.norm(xy - s.place_xy) >= d.radius + max(MARKER_RADIUS_M, r_obj) + c - 1e-9
            for bx, by, _ in scene.bases:
                assert np.hypot(xy[0] - bx, xy[1] - by) >= BASE_KEEPOUT_M + d.radius - 1e-9
            assert 0.0 + d.radius <= xy[0] <= params.arm_distance_m - d.radius
            assert TABLE_Y[0] + d.radius <= xy[1] <= TABLE_Y[1] - d.radius
    assert placed >= 40 * 4  # the keep-outs leave room for most of them


# ----------------------------------------------------------------------------- PyBullet


@pytest.fixture(scope="module")
def sim():
    pytest.importorskip("pybullet")
    from raygen.actors.bullet.two_arms import BulletTwoArms

    s = BulletTwoArms(width=64, height=64, renderer="tiny")
    yield s
    s.close()


@pytest.fixture(scope="module")
def episode(sim):
    return run_two_arms(sim, WAITING, TwoArmParams())


def test_lighting_and_distractors_vary_the_two_arm_scene(sim, episode):
    """The same spec with a changing light and distractors: the same task draws and arm motions (within the
    few millimetres dynamic distractors move PyBullet's solver), other images, every drawn value recorded."""
    params = TwoArmParams.from_options({"scene": {"lighting": {"enabled": True, "change_every_s": 2.0},
                                                  "distractors": {"enabled": True, "count": [3, 4]}}})
    ep = run_two_arms(sim, WAITING, params)
    validate_episode(ep, cameras={"cam_high", "cam_wrist", "cam_wrist_1"}, state_dim=46, action_dim=16)
    assert ep.success and ep.length == episode.length and ep.task == episode.task
    assert np.array_equal(ep.action, episode.action)  # the same plan: the variation has its own streams
    tcp, tcp_ref = _tcps(ep), _tcps(episode)
    for a in range(2):
        assert np.abs(tcp[a] - tcp_ref[a]).max() < 0.005
    m = ep.metrics
    assert m["scene.distractors"] >= 3 and m["scene.light_dynamic"] is True and m["scene.agents"] == 2
    assert ep.provenance["scene_variation"]["params"]["lighting"]["change_every_s"] == 2.0
    diff = np.abs(ep.cameras["cam_high"].rgb.astype(int) - episode.cameras["cam_high"].rgb).mean(axis=(1, 2, 3))
    assert diff.min() > 2.0  # every frame lit differently or showing the distractors
    assert "scene_variation" not in episode.provenance


SIDE_WALK = {"enabled": True, "through_x": [0.45, 0.55], "through_y": [0.42, 0.5], "heading_deg": [0, 0],
             "start_s": [1.0, 3.0], "speed_mps": [0.3, 0.5], "max_wait_s": 8.0}
"""A person walking along the table's side, near enough that an arm reaching that way must wait."""


def test_both_arms_keep_clear_of_the_person_and_wait_for_it(sim):
    """Physics only: the schedule holds an arm at a waypoint until its motion to the next one stays clear of
    the person; PyBullet finds no contact between either robot and the person on any frame."""
    params = TwoArmParams.from_options({"scene": {"person": SIDE_WALK}})
    step, seen = sim.step, []

    def measured(q, g):
        step(q, g)
        seen.append(min(min((p[8] for p in sim.p.getClosestPoints(arm.robot, sim._person, 1.0,
                                                                    physicsClientId=sim.client)), default=1.0)
                        for arm in sim.arms))

    plain = run_two_arms(sim, EpisodeSpec(SOURCE, 3, 6), TwoArmParams(), render=False)
    sim.step = measured
    held = 0
    try:
        for index in (4, 6):  # index 4: arm 0 waits for the person
            seen.clear()
            ep = run_two_arms(sim, EpisodeSpec(SOURCE, 3, index), params, render=False)
            m = ep.metrics
            assert ep.success and m["two_arms.separation_kept"]
            assert min(seen[:ep.length]) > 0.0 and m["task.person_gap_m"] > 0.0
            assert m["task.person_planned_gap_m"] >= params.variation.person.clearance_m - 1e-9
            arm0, arm1 = m["two_arms.arm0_person_wait_frames"], m["two_arms.arm1_person_wait_frames"]
            held += arm0 + arm1
            assert ep.provenance["scene_variation"]["person"]["speed"] > 0
    finally:
        del sim.step
    assert held > 0
    again = run_two_arms(sim, EpisodeSpec(SOURCE, 3, 6), TwoArmParams(), render=False)
    assert np.array_equal(again.state, plain.state)  # the person is gone with its episode


def test_a_person_crossing_between_the_arms_fails_the_episode_with_the_reason(sim):
    across = {"enabled": True, "through_x": [0.5, 0.5], "through_y": [0.0, 0.0], "heading_deg": [90, 90],
              "start_s": [1.0, 1.0], "speed_mps": [0.4, 0.4], "max_wait_s": 2.0}
    params = TwoArmParams.from_options({"max_scene_draws": 2, "scene": {"person": across}})
    with pytest.raises(EpisodeFailed, match="clear of the person|waiting for the person would take"):
        run_two_arms(sim, EpisodeSpec(SOURCE, 3, 0), params, render=False)


def test_rendering_is_set_before_the_first_reset(sim):
    """A simulator that renders warm-up frames at reset (Isaac Sim) must know before it, on the physics-only
    pass and on the rendered replay alike."""
    calls = []
    set_rendering, reset = sim.set_rendering, sim.reset
    sim.set_rendering = lambda on: (calls.append(("render", on)), set_rendering(on))[1]
    sim.reset = lambda scene: (calls.append(("reset", None)), reset(scene))[1]
    try:
        run_two_arms(sim, EpisodeSpec(SOURCE, 0, 0), TwoArmParams(steps_per_segment=6), render=False)
    finally:
        del sim.set_rendering, sim.reset
    assert calls[0] == ("render", False) and ("reset", None) in calls


def test_two_arm_episode_validates_and_names_both_arms(episode):
    ep = episode
    validate_episode(ep, cameras={"cam_high", "cam_wrist", "cam_wrist_1"}, state_dim=46, action_dim=16)
    t = ep.length
    assert ep.success, {k: v for k, v in ep.metrics.items() if ".task." in k}
    assert ep.frame_features["contact.pads"].shape == (t, 4, 3)
    assert ep.frame_features["arm1.gripper_pose"].shape == (t, 4, 4)
    assert ep.frame_features["arm1.gripper_opening"].shape == (t,)
    assert ep.names["observation.state"][0] == "arm0_joint_0" and ep.names["observation.state"][23] == "arm1_joint_0"
    assert ep.names["action"][7] == "arm0_gripper" and ep.names["action"][15] == "arm1_gripper"
    assert ep.metrics["arm0.task.grasped"] and ep.metrics["arm1.task.grasped"]
    assert ep.cameras["cam_wrist"].pose.shape == (t, 4, 4) and ep.cameras["cam_wrist_1"].pose.shape == (t, 4, 4)
    assert ep.cameras["cam_high"].pose.shape == (4, 4)
    # each arm's pads sit as far from its own flange on every frame (arm 1's features belong to arm 1)
    pads = ep.frame_features["contact.pads"].reshape(t, 2, 2, 3).mean(axis=2)
    flanges = np.stack([ep.gripper_pose[:, :3, 3], ep.frame_features["arm1.gripper_pose"][:, :3, 3]], axis=1)
    reach = np.linalg.norm(pads - flanges, axis=-1)
    assert np.ptp(reach) < 0.003, (reach.min(axis=0), reach.max(axis=0))
    back = episode_from_row(episode_to_row(ep))
    assert _hash(back) == _hash(ep)


def test_minimum_separation_holds_on_every_measured_frame(episode):
    tcp0, tcp1 = _tcps(episode)
    sep = np.linalg.norm(tcp0 - tcp1, axis=1)
    required = episode.metrics["two_arms.required_separation_m"]
    assert sep.min() >= required, (int(sep.argmin()), float(sep.min()))
    np.testing.assert_allclose(episode.frame_features["two_arms.separation_m"], sep, atol=1e-5)
    waits = episode.frame_features["two_arms.waiting"]
    assert waits[:, 1].sum() == episode.metrics["two_arms.wait_frames"] > 30  # arm 1 did wait here
    assert episode.length >= 270 + episode.metrics["two_arms.wait_frames"]  # arm 0's 270 frames, then arm 1's rest
    # arm 1 holds its commanded joints while it waits, at a waypoint: its command was at rest already
    hold = np.flatnonzero(waits[1:, 1]) + 1
    np.testing.assert_array_equal(episode.action[hold, 8:], episode.action[hold - 1, 8:])
    for arm in (slice(0, 7), slice(8, 15)):  # smooth as single-arm pick-and-place: no sudden stops
        jerk = np.diff(episode.action[:, arm].astype(np.float64), n=3, axis=0) * episode.fps ** 3
        assert np.sqrt((jerk ** 2).mean()) < 20.0


def test_a_wider_separation_makes_the_arms_wait_and_is_kept(sim):
    params = TwoArmParams(min_separation_m=0.3)
    ep = run_two_arms(sim, EpisodeSpec(SOURCE, 0, 6), params, render=False)
    tcp0, tcp1 = _tcps(ep)
    assert np.linalg.norm(tcp0 - tcp1, axis=1).min() >= 0.3
    assert ep.metrics["two_arms.wait_frames"] + ep.metrics["two_arms.arm0_wait_frames"] > 0
    assert ep.metrics["two_arms.separation_kept"]


def test_both_arms_tracks_are_projected_into_cam_high(episode):
    import copy

    ep = add_flow(copy.deepcopy(episode))
    validate_episode(ep)
    t = ep.length
    assert ep.frame_features["tracks3d"].shape == (t, 6, 3)
    assert ep.frame_features["tracks2d.cam_high"].shape == (t, 6, 2)
    vis = ep.frame_features["tracks2d.cam_high.visible"]
    assert vis.shape == (t, 6)
    assert vis[:, 0:3].any(axis=1).mean() > 0.8 and vis[:, 3:6].any(axis=1).mean() > 0.8, vis.mean(axis=0)
    assert vis[:, 0].mean() > 0.5 and vis[:, 3].mean() > 0.5  # both centroids, most of the time
    assert ep.gripper_geometry["tracks"][:4] == ["arm0.centroid", "arm0.left_pad", "arm0.right_pad", "arm1.centroid"]
    # each wrist camera sees its own arm's fingers
    assert ep.frame_features["tracks2d.cam_wrist.visible"][:, 1:3].all(axis=1).mean() > 0.7
    assert ep.frame_features["tracks2d.cam_wrist_1.visible"][:, 4:6].all(axis=1).mean() > 0.7
    # the flow of each arm at 1 mm steps of its own centroid path
    steps = ep.gripper_geometry["flow_steps"]
    assert ep.flow.shape == (max(steps), 6, 3)
    tracks = ep.frame_features["tracks3d"].astype(np.float64)
    for g, m in enumerate(steps):
        length = np.linalg.norm(np.diff(tracks[:, 3 * g], axis=0), axis=1).sum()
        assert abs(m - (np.floor(length / 0.001) + 1)) <= 1, (g, m, length)
        assert (ep.flow[m:, 3 * g:3 * g + 3] == ep.flow[m - 1, 3 * g:3 * g + 3]).all()  # arrived: it stays


@pytest.mark.slow  # ~8-16 s; determinism of the rigid task stays in the default suite
def test_same_spec_same_episode(sim, episode):
    from raygen.actors.bullet.two_arms import BulletTwoArms

    other = BulletTwoArms(width=64, height=64, renderer="tiny")
    try:
        # another episode first: history must not matter
        other_ep = run_two_arms(other, EpisodeSpec(SOURCE, 0, 3), TwoArmParams(), render=False)
        again = run_two_arms(other, WAITING, TwoArmParams())
    finally:
        other.close()
    assert _hash(again) == _hash(episode)
    assert _hash(other_ep) != _hash(run_two_arms(sim, WAITING, TwoArmParams(), render=False))
    # physics alone gives the same states as the rendered run
    np.testing.assert_array_equal(run_two_arms(sim, WAITING, TwoArmParams(), render=False).state, episode.state)


@pytest.mark.slow
def test_success_rate_over_10_seeds(sim):
    eps = [run_two_arms(sim, EpisodeSpec(SOURCE, 1, i), TwoArmParams()) for i in range(10)]
    rate = np.mean([ep.success for ep in eps])
    failures = {ep.episode_key: {k: v for k, v in ep.metrics.items() if ".task." in k} for ep in eps if not ep.success}
    assert rate >= 0.9, failures
    for ep in eps:
        validate_episode(ep)
        tcp0, tcp1 = _tcps(ep)
        assert np.linalg.norm(tcp0 - tcp1, axis=1).min() >= 0.15, ep.episode_key


def test_quality_judges_each_arm(episode):
    """The waiting arm's wrist camera is not 'frozen' (it did not move), and both arms' joints are checked."""
    from raygen.pipelines.quality import assess

    report = assess(episode)
    m = report.metrics
    assert episode.metrics.get("two_arms.wait_frames", 0) > 0 and report.accepted, report.reasons
    # judged by arm 0's motion, 20-27% of arm 1's wrist frames counted as frozen while it waited
    assert m["quality.cam_wrist_1.frozen_fraction"] < 0.12, m
    assert m["quality.cam_wrist.frozen_fraction"] < 0.12, m
    # both arms' 14 joints count: a limit breached by arm 1 alone shows in the margin
    bad = episode.state.copy()
    bad[5, episode.names["observation.state"].index("arm1_joint_3")] = 0.5  # joint 4's upper limit is -0.07 rad
    from dataclasses import replace

    assert assess(replace(episode, state=bad)).metrics["quality.joint_limit_margin_rad"] < 0
