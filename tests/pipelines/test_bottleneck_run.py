"""A bottleneck run end to end: 3 demos -> annotate -> episodes around their critical states, on local Ray."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raygen.config import ConfigError, load_config
from raygen.critical.annotate import annotate_dataset
from raygen.critical.compare import tcp_positions
from raygen.critical.sampler import USAGE, load_critical_states
from raygen.datasets import _layout as L
from raygen.datasets.commit import DatasetLayoutError
from raygen.datasets.reader import DatasetReader
from raygen.datasets.verify import verify_dataset
from raygen.datasets.writer import DatasetWriter
from raygen.hdf5.importer import import_hdf5
from raygen.hdf5.robomimic import export_robomimic
from raygen.pipelines.rejects import read_rejects
from raygen.pipelines.run import run
from raygen.pipelines.sources import make_source
from tests.pipelines.test_run import REPO, SMALL, ray_local  # noqa: F401 (a fixture)

pytestmark = pytest.mark.ray
CONFIG = REPO / "configs" / "pick_place_local.yaml"
SETTINGS = [*SMALL, "source.task_params={steps_per_segment: 12}", "resources.cpu_workers=1"]


def test_bottleneck_run_commits_valid_episodes_with_provenance(ray_local, tmp_path):  # noqa: F811
    demos, annotated, out = tmp_path / "demos", tmp_path / "annotated", tmp_path / "bottleneck"
    regular = run(load_config(CONFIG, [*SETTINGS, "source.episodes=3"], output=str(demos)), show_progress=False)
    assert regular.accepted == 3 and regular.verify_ok

    bn = f"source.bottleneck={{dataset: {annotated}, compare_with: {demos}, recovery_steps: 8}}"
    unannotated = load_config(CONFIG, [*SETTINGS, f"source.bottleneck={{dataset: {demos}}}"], output=str(out))
    with pytest.raises(ConfigError, match=r"has no per-frame augment_states.*raygen annotate"):
        make_source(unannotated)
    assert not out.exists()  # nothing started

    annotate_dataset(demos, annotated, method="gripper_changes")
    with pytest.raises(DatasetLayoutError, match=r"annotated copy \(raygen annotate, method 'gripper_changes'\)"):
        DatasetWriter(annotated)  # new episodes would lack augment_states
    states = load_critical_states(annotated)
    demo_keys = {DatasetReader(demos).episode(i, decode_video=False, decode_depth=False).episode_key for i in range(3)}
    assert {s.demo for s in states} == demo_keys
    # the same demos through HDF5 (raygen's robomimic export, imported back) seed the same critical states
    export_robomimic(demos, tmp_path / "demos.hdf5")
    assert not import_hdf5(tmp_path / "demos.hdf5", tmp_path / "imported")["errors"]
    annotate_dataset(tmp_path / "imported", tmp_path / "imported-annotated", method="gripper_changes")
    via_hdf5 = load_critical_states(tmp_path / "imported-annotated")
    assert [(s.key, s.params["actions"]) for s in via_hdf5] == [(s.key, s.params["actions"]) for s in states]
    assert [s.params["scene"] for s in via_hdf5] == [s.params["scene"] for s in states]

    cfg = load_config(CONFIG, [*SETTINGS, "source.episodes=6", bn], output=str(out))
    assert cfg.source.name == "bullet-pick_place-bottleneck" and cfg.source.renders_only_kept
    summary = run(cfg, show_progress=False)
    assert summary.verify_ok and summary.accepted + summary.rejected == 6 and summary.accepted >= 1, summary.format()

    # every committed episode says where it came from, and starts with the recovery from its perturbation
    reader = DatasetReader(out)
    by_key = {s.key: s for s in states}
    for i in range(len(reader)):
        ep = reader.episode(i, decode_video=False, decode_depth=False)
        prov = ep.provenance["bottleneck"]
        state = by_key[(prov["demo"], prov["frame"])]
        assert set(prov["perturbation"]) == {"r", "theta", "phi", "roll", "pitch", "yaw"}
        assert 0.2 <= prov["perturbation"]["r"] <= 0.5 and 0.0 < prov["scale"] <= 1.0
        k = prov["recovery_steps"]
        assert k >= 8 and (ep.frame_features["task.phase"][:k] == -1).all() and ep.frame_features["task.phase"][k] > 0
        assert len(ep.state) == k + len(state.params["actions"]) and ep.success
        # the recovery's targets end at the critical joints; the arm follows them within the controller's lag
        np.testing.assert_allclose(ep.action[k - 1, :7], state.params["q"], atol=1e-5)
        assert np.linalg.norm(ep.state[k, 16:19] - state.tcp) < 0.05
        assert ep.cameras["cam_high"].rgb.shape[0] == len(ep.state)

    # failures were found without rendering: rejects whose reason says so, counted in the summary
    rejects = read_rejects(out).to_pylist()
    saved = [r for r in rejects if r["stage"] == "generate" and "physics-only pass" in r["reason"]]
    assert summary.renders_saved == len(saved) >= 1 and all("; not rendered (" in r["reason"] for r in saved)

    # the plan and the counts are in the output; the comparison is in run.json and the summary
    usage = json.loads((out / USAGE).read_text())
    assert sum(usage["counts"]) == 6 and len(usage["plans"]["0"]) == 6
    comparison = L.read_json(out / L.RUN)["summary"]["bottleneck"]
    assert comparison["critical_states"] == len({s.tcp for s in states})
    for name in ("bottleneck", "source", "regular"):
        assert 0.0 <= comparison[name]["coverage"] <= 1.0 and 0.0 <= comparison[name]["success_rate"] <= 1.0
    assert comparison["source"]["success_rate"] == 1.0
    assert comparison["bottleneck"]["not_rendered"] == len(saved)
    n = comparison["at_n"]
    assert n == min(summary.accepted, 3)
    assert comparison["radius_m"] == 0.2  # the smallest perturbation distance: the region recoveries cross
    assert 0.0 < comparison["bottleneck"]["coverage_at_n"] <= comparison["bottleneck"]["coverage"]
    # recoveries pass near the critical states with the hand tilted, where the demos (hand down) never are
    centres = np.array(sorted({s.tcp for s in states}))
    for name, expect_tilted in (("bottleneck", True), ("regular", False)):
        poses = tcp_positions(comparison[name]["path"])
        near = np.min(np.linalg.norm(poses[:, None, :3] - centres[None], axis=2), axis=1) <= 0.2
        assert bool((poses[near, 3] >= 20.0).any()) == expect_tilted, name
    assert "bottleneck (" in summary.format()

    # 100,000 episodes are held as an index array and a plan, not as 100,000 specs with the demo's targets
    big = make_source(load_config(CONFIG, [*SETTINGS, "source.episodes=100000", bn], output=str(tmp_path / "big")))
    todo = big.todo()
    assert len(todo) == 100_000 and todo.specs == [] and todo.indices is not None and len(todo.row_kwargs["plan"]) \
        == 100_000 and len(todo.row_kwargs["states"]) == len(states)
    first = big.specs(skip={f"{cfg.source.name}-s0-{i:06d}" for i in range(1, 100_000)})
    assert len(first) == 1 and first[0].params["bottleneck"]["demo"] in demo_keys

    # a rerun resumes: nothing to do, the plan and counts unchanged
    again = run(cfg, show_progress=False)
    assert again.planned == 0 and json.loads((out / USAGE).read_text()) == usage
    assert verify_dataset(out).ok
