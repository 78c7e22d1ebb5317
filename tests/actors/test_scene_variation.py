"""Scene variation on PyBullet: each part changes what it should and nothing else; off, nothing changes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raygen.actors.bullet.worker import BulletBackend
from raygen.actors.spec import EpisodeFailed, EpisodeSpec
from raygen.actors.tasks.pick_place import PHASES, PickPlaceParams, sample_scene
from raygen.actors.tasks.scene import MARKER_RADIUS_M, SceneVariationParams
from raygen.actors.tasks.scene_plan import sample_variation
from raygen.actors.tasks.varied import arm_points, person_gap
from raygen.datasets.episode import validate_episode
from tests.actors.episode_hash import CAMERA_FIELDS, episode_hash

SOURCE = "bullet-pick_place"
SIZE = {"width": 32, "height": 32, "renderer": "tiny"}


class _Backends:
    """One PyBullet backend per task configuration (``task_params.scene`` reaches a backend as its task
    options, as in a run), kept for the module."""

    def __init__(self):
        self.made: dict[str, BulletBackend] = {}

    def get(self, scene: dict | None, **task):
        key = json.dumps([scene, task], sort_keys=True)
        if key not in self.made:
            self.made[key] = BulletBackend({**SIZE, "task": {**task, **({} if scene is None else {"scene": scene})}})
        return self.made[key]

    def close(self):
        for b in self.made.values():
            b.close()


@pytest.fixture(scope="module")
def backend():
    b = _Backends()
    yield b
    b.close()


def _run(backend, index: int, scene: dict | None, seed: int = 3, **task):
    return backend.get(scene, **task).run_episode(EpisodeSpec(SOURCE, seed, index))


def _hash(ep, *, images: bool = True) -> str:
    """Every array, and the metrics (less timing) and provenance, of an episode."""
    meta = {"metrics": {k: v for k, v in ep.metrics.items() if not k.startswith(("timing.", "render."))},
            "provenance": ep.provenance, "task": ep.task, "success": ep.success}
    return episode_hash(ep, CAMERA_FIELDS if images else ("depth", "pose"),
                        json.dumps(meta, sort_keys=True).encode())


ALL_OFF = {"lighting": {"enabled": False, "intensity": [0.1, 0.2]}, "distractors": {"count": [3, 3]},
           "platform": {"speed_mps": [0.01, 0.02]}, "person": {"enabled": False}}


def test_every_part_off_is_the_episode_without_the_section(backend):
    """Absent, empty and all-off give the same bytes (arrays, metrics and provenance) for the same spec.
    (That these equal the episodes of the code before scene variation was checked against a copy of it.)"""
    for index in (0, 1):
        plain = _hash(_run(backend, index, None))
        assert _hash(_run(backend, index, {})) == plain
        assert _hash(_run(backend, index, ALL_OFF)) == plain
    assert "scene" not in _run(backend, 0, ALL_OFF).provenance["task_params"]


LIGHT = {"enabled": True, "intensity": [0.6, 0.8], "ambient": [0.2, 0.3], "colour_temperature_k": [3000, 4000]}


def test_lighting_changes_the_images_and_nothing_else(backend):
    plain, lit = _run(backend, 2, None), _run(backend, 2, {"lighting": LIGHT})
    assert np.array_equal(plain.state, lit.state) and np.array_equal(plain.action, lit.action)
    for name, cam in plain.cameras.items():
        assert np.array_equal(cam.depth, lit.cameras[name].depth)
        diff = np.abs(cam.rgb.astype(float) - lit.cameras[name].rgb.astype(float)).mean()
        assert diff > 5.0, (name, diff)
    task = {k: v for k, v in plain.metrics.items() if k.startswith(("scene.", "task.")) and "light" not in k}
    assert {k: lit.metrics[k] for k in task} == task  # the task's own draws are untouched
    assert 0.6 <= lit.metrics["scene.light_intensity"] <= 0.8 and lit.metrics["scene.light_dynamic"] is False
    assert lit.provenance["scene_variation"]["lighting"]["values"][0][3] == pytest.approx(
        lit.metrics["scene.light_intensity"], abs=1e-4)


def test_dynamic_lighting_changes_the_images_within_an_episode(backend):
    """A patch of the floor the arm never crosses: constant under one light, stepping under a changing one."""
    step = {**LIGHT, "intensity": [0.1, 1.2], "ambient": [0.1, 0.9], "change_every_s": 1.0, "transition": "step"}
    static, dynamic = _run(backend, 2, {"lighting": LIGHT}), _run(backend, 2, {"lighting": step})
    patch = np.s_[:, -4:, :4]  # the floor in front of the table, bottom-left of cam_high
    level = {n: ep.cameras["cam_high"].rgb[patch].astype(float).mean(axis=(1, 2, 3))
             for n, ep in (("static", static), ("dynamic", dynamic))}
    assert np.ptp(level["static"]) < 1.0
    jumps = np.flatnonzero(np.abs(np.diff(level["dynamic"])) > 3.0) + 1
    fps = dynamic.fps
    assert len(jumps) >= 3 and all(j % int(fps) == 0 for j in jumps), jumps  # at the keyframes, 1 s apart
    keys = json.loads(dynamic.metrics["scene.light_keyframes"])
    assert dynamic.metrics["scene.light_dynamic"] and keys[1][0] == 1.0 and len(keys) >= 9
    assert np.array_equal(static.state, dynamic.state)


def test_egl_takes_the_light_s_direction_and_forgets_it_for_the_next_unlit_episode():
    """The EGL renderer keeps the last light direction it was given: an unlit episode after a lit one must
    still be the unlit episode (the simulator starts a fresh client)."""
    try:
        b = BulletBackend({"width": 24, "height": 24, "renderer": "egl", "task": {"steps_per_segment": 4}})
    except RuntimeError as exc:
        pytest.skip(f"no EGL renderer here: {exc}")
    try:
        lit_spec = EpisodeSpec(SOURCE, 3, 0, params={"task": {"scene": {"lighting": {**LIGHT, "azimuth_deg": [170, 190],
                                                                                    "elevation_deg": [20, 25]}}}})
        plain, lit, again = (b.run_episode(s) for s in (EpisodeSpec(SOURCE, 3, 0), lit_spec, EpisodeSpec(SOURCE, 3, 0)))
    finally:
        b.close()
    assert b.sim.renderer_name == "egl"
    for name, cam in plain.cameras.items():
        assert np.array_equal(cam.rgb, again.cameras[name].rgb)
        assert np.abs(cam.rgb.astype(float) - lit.cameras[name].rgb.astype(float)).mean() > 5.0
        assert np.array_equal(cam.depth, lit.cameras[name].depth)


def _variation(index: int, scene: dict, seed: int = 11):
    params = PickPlaceParams.from_options({"scene": scene})
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    s = sample_scene(rng, params, ("cube", "cylinder"))
    return s, sample_variation([seed, index], params.variation, s, duration_s=12.0, grasp_s=3.0,
                               place_box=(params.x_range, params.y_range, params.min_place_distance))


def test_distractors_never_overlap_the_object_the_place_spot_or_each_other():
    clutter = {"enabled": True, "count": [4, 8], "clearance_m": 0.05}
    placed = 0
    for index in range(300):
        _, v = _variation(index, {"distractors": clutter, "platform": {"enabled": index % 2 == 0}})
        scene = v.scene  # the place spot may have moved out of the platform's way
        obj_r = scene.object_size * np.sqrt(2) / 2
        for i, d in enumerate(v.distractors):
            xy = np.asarray(d.xy)
            assert np.linalg.norm(xy - scene.object_xy) >= d.radius + obj_r + 0.05 - 1e-9
            assert np.linalg.norm(xy - scene.place_xy) >= d.radius + max(obj_r, MARKER_RADIUS_M) + 0.05 - 1e-9
            for e in v.distractors[i + 1:]:
                assert np.linalg.norm(xy - np.asarray(e.xy)) >= d.radius + e.radius + 0.05 - 1e-9
            if v.platform is not None:
                a, b = v.platform.segment
                t = np.clip(np.dot(xy - a, b - a) / np.dot(b - a, b - a), 0, 1)
                assert np.linalg.norm(xy - (a + t * (b - a))) >= d.radius + v.platform.radius + 0.05 - 1e-9
            assert not (d.kind == scene.object_kind and d.colour_name == scene.colour_name)
        placed += len(v.distractors)
    assert placed > 300 * 4  # the table has room for most of them


def test_distractors_rest_on_the_table_and_the_task_still_succeeds(backend):
    scene = {"distractors": {"enabled": True, "count": [5, 5]}}
    ep = _run(backend, 4, scene)
    sim = backend.get(scene).sim
    assert ep.success and ep.metrics["scene.distractors"] == len(sim.distractors) >= 4
    validate_episode(ep)
    recorded = json.loads(ep.metrics["scene.distractor_xy"])
    for body, d, xy in zip(sim.distractors, ep.provenance["scene_variation"]["distractors"], recorded):
        pos = np.asarray(sim.p.getBasePositionAndOrientation(body, physicsClientId=sim.client)[0])
        assert abs(pos[2] - d["size"][2] / 2) < 0.005 and np.linalg.norm(pos[:2] - xy) < 0.01  # not knocked


def test_the_object_rides_the_platform_to_the_predicted_pick_spot(backend):
    ep = _run(backend, 5, {"platform": {"enabled": True, "speed_mps": [0.04, 0.05]}})
    m = ep.metrics
    assert ep.success and m["scene.platform_carries_object"], {k: v for k, v in m.items() if "task." in k}
    phase = ep.frame_features["task.phase"]
    grasp = int(np.flatnonzero(phase == PHASES.index("CLOSE_GRIPPER"))[-1])
    xy = ep.frame_features["object.pose"][:, :2].astype(float)
    speed = np.linalg.norm(xy[grasp] - xy[grasp - 15]) / (15 / ep.fps)  # the ride lasts > 0.5 s
    assert speed == pytest.approx(m["scene.platform_speed_mps"], rel=0.1)  # it moved with the platform
    assert np.linalg.norm(xy[grasp] - xy[0]) == pytest.approx(m["scene.platform_ride_m"], abs=0.005)
    assert np.linalg.norm(xy[grasp] - [m["scene.object_x"], m["scene.object_y"]]) < 0.01  # where predicted
    assert np.linalg.norm(xy[0] - [m["scene.platform_start_x"], m["scene.platform_start_y"]]) < 0.01
    assert np.linalg.norm(xy[-1] - [m["scene.place_x"], m["scene.place_y"]]) < 0.03


PERSON = {"enabled": True, "through_x": [0.65, 0.9], "start_s": [0.5, 4.0], "speed_mps": [0.5, 0.8]}


def _closest(sim):
    """Wrap the simulator's step: PyBullet's own closest distance between the arm and the person, per frame."""
    seen = []
    step = sim.step

    def measured(q, g):
        step(q, g)
        pts = sim.p.getClosestPoints(sim.robot, sim._person, 1.0, physicsClientId=sim.client)
        seen.append(min((p[8] for p in pts), default=1.0))

    sim.step = measured
    return seen, lambda: setattr(sim, "step", step)


def test_the_arm_waits_for_the_person_and_never_meets_it(backend):
    seen, restore = _closest(backend.get({"person": PERSON}, steps_per_segment=20).sim)
    kept, waited, refused = 0, 0, []
    try:
        for index in range(8):
            seen.clear()
            try:
                ep = _run(backend, index, {"person": PERSON}, seed=5, steps_per_segment=20)
            except EpisodeFailed as exc:
                refused.append(str(exc))
                continue
            if not ep.success:
                continue
            kept += 1
            waited += ep.metrics["task.person_wait_s"] > 0
            assert min(seen[:len(ep.state)]) > 0.0, ep.episode_key  # PyBullet: no contact on a recorded frame
            assert ep.metrics["task.person_gap_m"] > 0.0 and ep.metrics["task.person_planned_gap_m"] >= 0.05
            person = ep.provenance["scene_variation"]["person"]
            t = np.arange(len(ep.state)) / ep.fps
            s = np.clip((t - person["t_start"]) * person["speed"] / np.linalg.norm(
                np.subtract(person["b"], person["a"])), 0, 1)
            xy = np.asarray(person["a"]) + s[:, None] * np.subtract(person["b"], person["a"])
            gap = person_gap(ep.state[:, :7].astype(float), xy, 0.1, person["radius"])
            assert gap.min() == pytest.approx(ep.metrics["task.person_gap_m"])
            waits = np.flatnonzero(np.all(np.diff(ep.action[:, :7], axis=0) == 0, axis=1))
            assert len(waits) >= round(ep.metrics["task.person_wait_s"] * ep.fps) - 1  # held still meanwhile
    finally:
        restore()
    assert kept >= 5 and waited >= 3, (kept, waited, refused)
    assert all(r.startswith("task failed: the person proxy blocks the arm") for r in refused)


def test_a_plain_episode_after_a_varied_one_on_the_same_simulator_is_the_plain_episode(backend):
    """A simulator that ran a lit person, platform and distractors episode forgets them at the next reset
    (the renderer kept the last light it was given: the next plain episode was drawn with it)."""
    from raygen.actors.tasks.pick_place import PickPlaceParams, run_pick_place
    from raygen.actors.tasks.varied import run_varied

    sim = backend.get(None, steps_per_segment=10).sim
    plain = _hash(run_pick_place(sim, EpisodeSpec(SOURCE, 3, 1), PickPlaceParams(steps_per_segment=10)))
    varied = PickPlaceParams.from_options({"steps_per_segment": 10, "scene": {
        "person": PERSON, "platform": {"enabled": True}, "distractors": {"enabled": True},
        "lighting": {"enabled": True}}})
    try:
        run_varied(sim, EpisodeSpec(SOURCE, 3, 0), varied)
    except EpisodeFailed:
        pass  # a blocked person: the bodies were built all the same
    assert sim._lit  # it was drawn lit: the plain episode below needs the fresh client
    assert _hash(run_pick_place(sim, EpisodeSpec(SOURCE, 3, 1), PickPlaceParams(steps_per_segment=10))) == plain


def test_a_person_walking_into_the_robot_fails_the_episode_with_the_reason(backend):
    into = {"enabled": True, "through_x": [0.0, 0.0], "through_y": [0.0, 0.0], "start_s": [0.0, 0.0],
            "max_wait_s": 1.0}
    with pytest.raises(EpisodeFailed, match=r"task failed: the person proxy blocks the arm .*waits up to 1.0 s"):
        _run(backend, 0, {"person": into})


def test_the_predicted_gap_uses_the_arm_s_links():
    q = np.zeros((1, 7))
    pts = arm_points(q)[0]
    assert pts.shape == (10, 3) and np.allclose(pts[0], 0) and pts[-1, 2] > 0.8  # stretched up
    far, near = np.array([[2.0, 0.0]]), np.array([[0.05, 0.0]])
    assert person_gap(q, far, 0.1, 0.2)[0] > 1.5 and person_gap(q, near, 0.1, 0.2)[0] < 0


def test_every_drawn_value_is_recorded_and_regenerates():
    everything = {"lighting": {"enabled": True, "change_every_s": 2.0}, "distractors": {"enabled": True},
                  "platform": {"enabled": True}, "person": {"enabled": True}}
    scene, v = _variation(7, everything)
    again = _variation(7, everything)[1]
    assert v.to_dict() == again.to_dict()
    m = v.metrics()
    for key in ("scene.light_azimuth_deg", "scene.light_keyframes", "scene.distractors", "scene.distractor_kinds",
                "scene.platform_speed_mps", "scene.platform_heading_deg", "scene.person_speed_mps",
                "scene.person_start_s"):
        assert key in m
    assert all(isinstance(x, (bool, int, float, str)) for x in m.values())
    json.dumps(v.to_dict())
    # each part has its own stream: the light does not change when the other parts are turned off
    alone = _variation(7, {"lighting": everything["lighting"]})[1]
    assert alone.lighting == v.lighting


def test_the_scene_section_is_checked_and_every_problem_named():
    with pytest.raises(ValueError) as err:
        PickPlaceParams.from_options({"scene": {"lights": {}, "lighting": {"enabled": "yes", "transition": "fade"},
                                                "distractors": {"count": [5, 2], "kinds": ["sphere"]}}},
                                     where="source.task_params")
    text = str(err.value)
    for piece in ("source.task_params.scene: unknown part(s) ['lights']", "lighting.enabled: must be true or false",
                  "distractors.count: [lo, hi] integers", "distractors.kinds: a non-empty list of"):
        assert piece in text, text
    assert SceneVariationParams.from_options({}).active is False


def test_the_isaac_adapter_builds_and_animates_the_variation_in_usd():
    """IsaacPickPlace's scene variation against real USD (usd-core; isaacsim itself cannot be installed
    here): the stand-ins of tests/actors/isaac_standins.py replace only the isaacsim classes. Skipped without
    pxr."""
    pytest.importorskip("pxr")
    from pxr import Gf, Usd, UsdGeom, UsdLux, UsdPhysics

    from raygen.actors.isaac import sim as isim
    from tests.actors.isaac_standins import Fake, build

    fake = Fake()
    stage = fake.stage
    UsdLux.DistantLight.Define(stage, "/Environment/defaultLight")  # a light the stage already had
    sim = build(isim.IsaacPickPlace, fake)

    everything = {"lighting": {"enabled": True, "change_every_s": 1.0}, "distractors": {"enabled": True},
                  "platform": {"enabled": True}, "person": {"enabled": True}}
    scene, v = _variation(0, everything)
    sim.vary(v)
    sim.reset(v.scene)
    key = UsdLux.DistantLight(stage.GetPrimAtPath(isim.KEY_LIGHT_PATH))
    light = v.lighting.at(0.0)
    assert key.GetIntensityAttr().Get() == pytest.approx(isim.KEY_PER_UNIT * light.intensity, rel=1e-5)
    assert key.GetColorTemperatureAttr().Get() == pytest.approx(light.colour_temperature_k, rel=1e-5)
    to_world = UsdGeom.Xformable(key.GetPrim()).ComputeLocalToWorldTransform(Usd.TimeCode.Default())
    assert np.allclose(to_world.TransformDir(Gf.Vec3d(0, 0, 1)), light.direction, atol=1e-5)  # shines along -z
    dome = UsdLux.DomeLight(stage.GetPrimAtPath(isim.DOME_LIGHT_PATH))
    assert dome.GetIntensityAttr().Get() == pytest.approx(isim.DOME_PER_UNIT * light.ambient, rel=1e-5)

    def visible(p):
        return UsdGeom.Imageable(stage.GetPrimAtPath(p)).ComputeVisibility() != "invisible"

    assert not visible("/Environment/defaultLight") and visible(isim.KEY_LIGHT_PATH)
    platform = stage.GetPrimAtPath(isim.PLATFORM_PATH)
    assert UsdPhysics.RigidBodyAPI(platform).GetKinematicEnabledAttr().Get() is True
    assert UsdGeom.Capsule(stage.GetPrimAtPath(isim.PERSON_PATH)).GetAxisAttr().Get() == "Z"
    assert sum(o.startswith("distractor") for o in sim.world.scene.objects) == len(v.distractors) > 0
    renders = sim.world.renders
    for _ in range(40):
        sim.step(np.zeros(7), 0.04)
    assert len(sim.world.targets) == 1 + 40 * 4 and sim.world.renders - renders == 40  # a target per physics step
    assert np.allclose(sim.world.targets[-1][:2], v.platform.position(40 / 30.0), atol=1e-5)
    person = UsdGeom.Xformable(stage.GetPrimAtPath(isim.PERSON_PATH)).ComputeLocalToWorldTransform(0)
    assert np.allclose(list(person.ExtractTranslation())[:2], v.person.position(40 / 30.0), atol=1e-5)
    assert key.GetIntensityAttr().Get() == pytest.approx(
        isim.KEY_PER_UNIT * v.lighting.at(40 / 30.0).intensity, rel=1e-5)
    sim.reset(scene)  # the next episode without variation: ours gone or hidden, the stage's light back
    assert not stage.GetPrimAtPath(isim.PLATFORM_PATH).IsValid() and not stage.GetPrimAtPath(isim.PERSON_PATH)
    assert not any(o.startswith(("distractor", "platform")) for o in sim.world.scene.objects)
    assert visible("/Environment/defaultLight") and not visible(isim.KEY_LIGHT_PATH)
