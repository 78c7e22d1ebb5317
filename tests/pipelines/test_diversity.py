"""The diversity report counts committed episodes only, once each, across saves, crashes and resumes."""

from __future__ import annotations

import json

import numpy as np

from raygen.datasets import _layout as L
from raygen.datasets.writer import DatasetWriter
from raygen.pipelines.diversity import DiversityReport
from tests.conftest import small_episodes, write_dataset


def _with_descriptors(eps):
    rng = np.random.default_rng(3)
    for i, ep in enumerate(eps):
        ep.metrics.update({"diversity.descriptor": json.dumps(rng.normal(size=96).round(4).tolist()),
                           "diversity.cells": json.dumps([i]), "diversity.novelty": 0.1 * (i + 1)})
    return eps


def test_the_report_replays_shards_committed_after_its_last_save_and_never_counts_one_twice(tmp_path):
    root = tmp_path / "ds"
    eps = _with_descriptors(small_episodes(7))
    write_dataset(root, eps[:4], shard_size=2)
    report = DiversityReport.load(root)  # no state yet: built from the shard records
    assert report.n == 4 and report.seq == 1 and sum(report.tasks.values()) == 4
    report.save(root)
    with DatasetWriter(root, shard_size=2) as w:  # a crash after these commits, before the report was saved
        for ep in eps[4:6]:
            w.add(ep)
        w.add(eps[6])
        w.abort()  # the open shard: never committed, never counted
    again = DiversityReport.load(root)
    assert again.n == 6 and again.seq == 2 and again.cells == set(range(6))
    again.save(root)
    third = DiversityReport.load(root)
    assert third.n == 6 and third.catch_up(root) == 0
    descriptors = np.array([json.loads(ep.metrics["diversity.descriptor"]) for ep in eps[:6]])
    assert np.allclose(third.sample, descriptors, atol=1e-6)
    assert third.report()["trajectory_variance_m2"] > 0
    state = L.read_json(root / L.DIVERSITY_STATE)
    assert state["seq"] == 2 and state["sample_shape"] == [6, 96]


def _scene_metrics(index: int, scene: dict) -> dict:
    """The scene.* metrics a pick-and-place episode with ``scene`` varied records (drawn, not simulated)."""
    from raygen.actors.tasks.pick_place import PickPlaceParams, sample_scene
    from raygen.actors.tasks.scene_plan import sample_variation

    params = PickPlaceParams.from_options({"scene": scene})
    s = sample_scene(np.random.default_rng(index), params, ("cube", "cylinder"))
    m = {"scene.object_kind": s.object_kind, "scene.colour": s.colour_name}
    if params.variation.active:
        v = sample_variation([0, index], params.variation, s, duration_s=10.0, grasp_s=3.0,
                             place_box=(params.x_range, params.y_range, params.min_place_distance))
        m.update(v.metrics())
    return m


def _report(metrics: list[dict]) -> dict:
    report = DiversityReport()
    for i, m in enumerate(metrics):
        report.add_record({"metrics": m, "cameras": {}}, "pick", f"ep{i}")
    return report.report()


NARROW = {"lighting": {"enabled": True, "azimuth_deg": [40, 50], "elevation_deg": [60, 62], "intensity": [0.3, 0.31],
                       "ambient": [0.5, 0.51], "colour_temperature_k": [6000, 6100]},
          "distractors": {"enabled": True, "count": [2, 2], "kinds": ["cube"], "colours": ["grey"]},
          "platform": {"enabled": True, "speed_mps": [0.03, 0.031]},
          "person": {"enabled": True, "speed_mps": [0.8, 0.81]}}
WIDE = {"lighting": {"enabled": True, "ambient": [0.05, 0.95], "intensity": [0.05, 1.15],
                     "colour_temperature_k": [2600, 9900]},
        "distractors": {"enabled": True, "count": [0, 6]},
        "platform": {"enabled": True, "speed_mps": [0.005, 0.095]},
        "person": {"enabled": True, "speed_mps": [0.1, 1.9]}}


def test_scene_axes_move_when_the_ranges_widen_and_the_thin_axis_is_named():
    plain = _report([_scene_metrics(i, {}) for i in range(40)])
    narrow = _report([_scene_metrics(i, NARROW) for i in range(40)])
    wide = _report([_scene_metrics(i, WIDE) for i in range(40)])
    for axis in ("lighting", "clutter", "obstacles"):
        p, n, w = (r["scene_axes"][axis]["coverage"] for r in (plain, narrow, wide))
        assert p == 0.0 < n < w, (axis, p, n, w)
    assert wide["scene_axes"]["lighting"]["coverage"] > 0.7 and wide["scene_score"] > narrow["scene_score"]
    assert "[HIGH] lighting: coverage 0.00: every episode has the simulator's one light: enable " \
           "task_params.scene.lighting" in plain["recommendations"]
    assert any(r.startswith("[HIGH] clutter:") and "enable task_params.scene.distractors" in r
               for r in plain["recommendations"])
    thin = {d["axis"]: d for d in narrow["recommendation_details"]}
    assert thin["lighting"]["severity"] in ("high", "medium") and "azimuth_deg" in thin["lighting"]["message"]
    assert "lighting" not in {d["axis"] for d in wide["recommendation_details"]}
    assert "agents" not in wide["scene_axes"] and "materials" not in wide["scene_axes"]  # not recorded: no axis


def test_agents_and_materials_axes_read_their_metrics_when_present():
    base = [_scene_metrics(i, {}) for i in range(6)]
    mixed = _report(base + [{**m, "scene.agents": 2, "scene.material": "foam"} for m in base[:2]])
    assert mixed["scene_axes"]["agents"] == {"coverage": 2 / 3, "distribution": {"1": 6, "2": 2}, "thinnest": "count"}
    assert mixed["scene_axes"]["materials"]["distribution"] == {"rigid": 6, "foam": 2}
    one_arm = _report(base + [{**base[0], "scene.agents": 1}])
    assert any(r.startswith("[LOW] agents:") for r in one_arm["recommendations"])
    two = _report([{**m, "scene.agents": 2} for m in base])  # a two-arm run: no platform to ask for
    assert set(two["scene_axes"]["obstacles"]["share"]) == {"person"}
    assert not any("platform" in r for r in two["recommendations"])
    assert any(r.endswith("add single-arm episodes") for r in two["recommendations"])
    real = _report([{"task.grasped": True}] * 3)  # recordings without scene metrics: no scene axes at all
    assert real["scene_axes"] == {} and real["scene_score"] is None


def test_scene_axes_survive_saves_and_resumes_and_old_states_are_rebuilt(tmp_path):
    root = tmp_path / "ds"
    eps = _with_descriptors(small_episodes(5))
    for i, ep in enumerate(eps):
        ep.metrics.update(_scene_metrics(i, WIDE))
    write_dataset(root, eps, shard_size=2)
    first = DiversityReport.load(root)
    first.save(root)
    again = DiversityReport.load(root)
    assert again.report()["scene_axes"] == first.report()["scene_axes"]
    assert again.scene.simulated == 5 and again.scene.lit == 5
    state = L.read_json(root / L.DIVERSITY_STATE)
    del state["scene"]  # a state saved before the scene axes existed
    L.atomic_write_json(root / L.DIVERSITY_STATE, state, indent=None)
    rebuilt = DiversityReport.load(root)
    assert rebuilt.n == 5 and rebuilt.report()["scene_axes"] == first.report()["scene_axes"]
