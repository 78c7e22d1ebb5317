"""Critical-state annotation: each method on trajectories with known critical frames, parameter checks, and
annotated datasets that verify, leave their source alone and say how they were made."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from raygen.critical import (
    ANNOTATION_KEY,
    COLUMN,
    METHODS,
    AnnotationError,
    action_variance,
    annotate_dataset,
    annotation_of,
    combined,
    critical_states,
    gripper_changes,
    pose_changes,
    resolve_params,
    reward_threshold,
    subtask_signals,
)
from raygen.datasets._stats import StatsAccumulator, stats_to_json
from raygen.datasets.reader import DatasetReader
from raygen.datasets.synthetic import synthetic_episode, synthetic_key
from raygen.datasets.verify import verify_dataset
from raygen.datasets.writer import DatasetWriter
from tests.conftest import write_dataset


def _frames(mask: np.ndarray) -> list[int]:
    assert mask.dtype == np.int8 and set(np.unique(mask)) <= {0, 1}
    return np.flatnonzero(mask).tolist()


def _span(a: int, b: int) -> list[int]:
    return list(range(a, b + 1))


# ------------------------------------------------------------------------------------------ methods


def test_gripper_step_marks_the_margin_around_the_change():
    g = np.r_[np.full(40, 0.04), np.zeros(40), np.full(20, 0.04)]  # close at 40, open again at 80
    assert _frames(gripper_changes(g, margin=3)) == _span(37, 43) + _span(77, 83)
    assert _frames(gripper_changes(g)) == _span(35, 45) + _span(75, 85)  # default margin 5
    assert _frames(gripper_changes(np.where(g > 0, -1.0, 1.0), margin=0)) == [40, 80]  # a -1/1 command
    assert _frames(gripper_changes(g[:, None], margin=2, threshold=0.01)) == _span(38, 42) + _span(78, 82)
    assert _frames(gripper_changes(np.r_[np.zeros(3), np.full(5, 0.04)], margin=5)) == _span(0, 7)  # cut at ends


def test_gripper_without_a_change_marks_nothing():
    assert _frames(gripper_changes(np.full(50, 0.04))) == []
    jitter = 0.04 + np.random.default_rng(0).normal(0, 1e-5, 50)  # noise on a gripper that never moves
    assert _frames(gripper_changes(jitter)) == []
    assert _frames(gripper_changes(np.array([0.04]))) == []


def test_measured_opening_changes_where_it_crosses_halfway():
    opening = np.r_[np.full(40, 0.08), np.linspace(0.08, 0.0, 25), np.zeros(35)]  # closes over frames 40..64
    marks = _frames(gripper_changes(opening, margin=2))
    assert marks == _span(51, 55)  # 0.04 (halfway) at frame 52, below it from frame 53


def test_reward_threshold_marks_rewarded_frames():
    r = np.zeros(100)
    r[60:63] = 1.0
    assert _frames(reward_threshold(r)) == [60, 61, 62]
    assert _frames(reward_threshold(r, threshold=2.0)) == []
    assert _frames(reward_threshold(np.linspace(0, 1, 11), threshold=0.75)) == [8, 9, 10]


def test_action_variance_finds_the_burst():
    rng = np.random.default_rng(1)
    a = np.tile([0.1, -0.3, 0.04], (60, 1))
    a[20:26] += rng.normal(0, 0.05, (6, 3))
    marks = _frames(action_variance(a, window=5, quantile=0.9))
    assert marks and set(marks) <= set(_span(18, 27))
    assert _frames(action_variance(np.ones((60, 3)))) == []  # a constant action has no variance at all
    assert len(action_variance(a[:, 0], normalize=False)) == 60  # [T] actions work too


def test_pose_changes_finds_rapid_motion_not_jitter():
    t = 100
    p = np.zeros((t, 3)) + np.arange(t)[:, None] * 1e-6  # a slow drift, under min_speed
    p[51:] += np.minimum(np.arange(1, t - 50), 10)[:, None] * [0.01, 0.0, 0.0]  # 1 cm a frame, frames 50..60
    marks = _frames(pose_changes(p))
    assert marks and set(marks) <= set(_span(50, 60))
    assert _frames(pose_changes(np.zeros((t, 3)))) == []


def test_pose_changes_sees_rotation_and_ignores_quaternion_sign():
    t = 60
    angle = np.zeros(t)
    angle[31:36] = np.linspace(0.2, 1.0, 5)  # turns about z between frames 30 and 35
    angle[36:] = 1.0
    q = np.stack([np.cos(angle / 2), 0 * angle, 0 * angle, np.sin(angle / 2)], axis=1)
    q[::2] *= -1  # q and -q are the same rotation
    still = np.zeros((t, 3))
    marks = _frames(pose_changes(still, q))
    assert marks and set(marks) <= set(_span(30, 35))
    assert _frames(pose_changes(still, np.tile([1.0, 0, 0, 0], (t, 1)) * np.where(np.arange(t) % 2, 1, -1)[:, None])) \
        == []


def test_subtask_signals_marks_each_rise():
    t = 100
    grasp = np.arange(t) >= 30
    lift = (np.arange(t) >= 70).astype(np.float32)
    start = np.ones(t, bool)  # already on at frame 0: no transition
    marks = subtask_signals({"grasp": grasp, "lift": lift, "start": start}, margin=2)
    assert _frames(marks) == _span(28, 32) + _span(68, 72)
    with pytest.raises(AnnotationError, match="no signals given"):
        subtask_signals({})
    with pytest.raises(AnnotationError, match="differ in length"):
        subtask_signals({"a": grasp, "b": grasp[:50]})


def test_combined_is_the_union_of_its_methods():
    t = 100
    g = np.r_[np.full(40, 0.04), np.zeros(60)]
    p = np.zeros((t, 3))
    p[71:] += np.minimum(np.arange(1, 30), 8)[:, None] * [0.0, 0.02, 0.0]
    r = np.zeros(t)
    r[-2:] = 1
    both = combined(gripper=g, positions=p)  # default: gripper_changes + pose_changes
    assert np.array_equal(both, gripper_changes(g) | pose_changes(p))
    three = combined(gripper=g, positions=p, rewards=r, methods=["gripper_changes", "reward_threshold"],
                     params={"gripper_changes": {"margin": 1}})
    assert _frames(three) == [39, 40, 41, 98, 99]
    with pytest.raises(AnnotationError, match="'pose_changes' needs 'positions'"):
        combined(gripper=g)


@pytest.mark.parametrize("call, message", [
    (lambda: gripper_changes(np.zeros(5), margin=-1), "gripper_changes.margin: must be an integer >= 0"),
    (lambda: gripper_changes(np.zeros(5), margin=1.5), "gripper_changes.margin: must be an integer >= 0"),
    (lambda: action_variance(np.zeros((5, 2)), window=1), "action_variance.window: must be an integer >= 2"),
    (lambda: action_variance(np.zeros((5, 2)), quantile=1.0), r"action_variance.quantile: must be a number in \[0, 1"),
    (lambda: reward_threshold(np.zeros(5), threshold=float("nan")), "reward_threshold.threshold: must be a finite"),
    (lambda: pose_changes(np.zeros((5, 3)), speed_quantile=-0.1), "pose_changes.speed_quantile"),
    (lambda: pose_changes(np.zeros((5, 3)), np.zeros((4, 4))), r"quats: expected \[5,4\]"),
    (lambda: gripper_changes(np.zeros((5, 2))), r"gripper: expected one value per frame"),
    (lambda: reward_threshold(np.array([0.0, np.nan])), "non-finite values .* first at frame 1"),
    (lambda: resolve_params("gripper_changes", {"margni": 3}), r"unknown parameter\(s\) \['margni'\]; known: "
                                                                r"\['margin', 'min_range', 'threshold'\]"),
    (lambda: resolve_params("bottleneck"), "'bottleneck' is not an annotation method; known: reward_threshold"),
    (lambda: resolve_params("combined", {"methods": ["combined"]}), "are not methods it can unite"),
    (lambda: resolve_params("combined", {"methods": []}), "must be a non-empty list"),
    (lambda: resolve_params("combined", {"action_variance": {"window": 3}}),
     "parameters for 'action_variance', which is not in methods"),
])
def test_bad_parameters_are_refused_clearly(call, message):
    with pytest.raises(AnnotationError, match=message):
        call()


def test_every_problem_is_reported_at_once_and_defaults_are_filled():
    with pytest.raises(AnnotationError) as exc:
        resolve_params("combined", {"methods": ["action_variance", "gripper_changes"],
                                    "action_variance": {"window": 1, "quantile": 2}, "gripper_changes": {"x": 1}})
    text = str(exc.value)
    assert "action_variance.window" in text and "action_variance.quantile" in text and "['x']" in text
    assert resolve_params("gripper_changes", {"margin": 3}) == {"threshold": None, "margin": 3, "min_range": 1e-3}
    assert type(resolve_params("subtask_signals", {"margin": np.int64(2)})["margin"]) is int  # recorded as JSON
    assert resolve_params("combined")["methods"] == ["gripper_changes", "pose_changes"]
    assert set(METHODS) == {"reward_threshold", "action_variance", "gripper_changes", "pose_changes",
                            "subtask_signals", "combined"}
    for m in METHODS.values():  # every default is itself valid and JSON
        json.dumps(resolve_params(m.name))


# ------------------------------------------------------------------------------------------ datasets


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def annotated(written, tmp_path_factory):
    """``written`` (7 episodes of 24 frames; the synthetic gripper closes at frame 10) annotated with
    gripper_changes, margin 3."""
    root, eps = written
    before = _digest(root)
    out = tmp_path_factory.mktemp("annotated") / "ds"
    result = annotate_dataset(root, out, method="gripper_changes", params={"margin": 3})
    return root, out, eps, before, result


def test_annotated_dataset_verifies_and_leaves_its_source_alone(annotated):
    root, out, eps, before, result = annotated
    report = verify_dataset(out)
    assert report.ok, report.format()
    assert _digest(root) == before
    assert verify_dataset(root).ok


def test_videos_and_depth_are_hard_linked(annotated):
    root, out, *_ = annotated
    heavy = [p for d in ("videos", "depth", "flow") for p in (root / d).rglob("*") if p.is_file()]
    assert len(heavy) > 10
    for p in heavy:
        assert os.path.samefile(p, out / p.relative_to(root)), p
    data = next((root / "data").rglob("*.parquet"))
    assert not os.path.samefile(data, out / data.relative_to(root))  # rewritten, not shared
    assert not (out / "meta/raygen/.lock").exists() and not list(out.parent.glob(".*.tmp"))


def test_metadata_records_method_params_and_counts(annotated):
    root, out, eps, _, result = annotated
    info = json.loads((out / "meta/info.json").read_text())
    assert info["features"][COLUMN] == {"dtype": "int8", "shape": [1], "names": ["critical"]}
    assert list(info["features"]).index(COLUMN) == list(info["features"]).index("timestamp") - 1
    ann = info[ANNOTATION_KEY]
    assert ann == annotation_of(out) and {k: v for k, v in result.items() if k != "output"} == ann
    assert ann["method"] == "gripper_changes"
    assert ann["params"] == {"threshold": None, "margin": 3, "min_range": 1e-3}
    assert ann["inputs"] == {"gripper": "gripper.opening (measured)"}
    n = sum(len(e.state) for e in eps)
    assert ann["counts"] == {"critical_frames": 7 * len(eps), "total_frames": n, "fraction": round(49 / n, 6),
                             "episodes": 7, "episodes_with_critical": 7, "by_method": {"gripper_changes": 49}}
    assert ann["source"] == str(root.resolve())
    stats = json.loads((out / "meta/stats.json").read_text())
    assert stats[COLUMN]["count"] == [n] and stats[COLUMN]["min"] == [0] and stats[COLUMN]["max"] == [1]
    assert stats[COLUMN]["mean"] == pytest.approx([49 / n])
    meta = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet")
    assert meta.column(f"stats/{COLUMN}/mean").to_pylist()[0] == pytest.approx([7 / 24])
    table = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert str(table.schema.field(COLUMN).type) == "int8"
    hf = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert hf[COLUMN] == {"dtype": "int8", "_type": "Value"}


def test_critical_states_returns_the_marked_frames(annotated):
    root, out, eps, *_ = annotated
    want = [(e, synthetic_key(e), f) for e in range(len(eps)) for f in range(7, 14)]  # 10 +- 3
    assert critical_states(out) == want
    ep = DatasetReader(out).episode(2, decode_video=False)
    assert np.flatnonzero(ep.frame_features[COLUMN]).tolist() == list(range(7, 14))
    with pytest.raises(AnnotationError, match="not annotated"):
        critical_states(root)


def test_raygen_does_not_append_to_an_annotated_dataset(annotated, tmp_path):
    _, out, *_ = annotated
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    ledger = (copy / "meta/raygen/ledger.jsonl").read_text()
    with pytest.raises(ValueError, match="augment_states|annotated"):
        with DatasetWriter(copy, shard_size=1) as w:
            w.add(synthetic_episode(100, frames=24, height=32, width=48))
    assert (copy / "meta/raygen/ledger.jsonl").read_text() == ledger
    report = verify_dataset(copy)
    assert report.ok, report.format()


def test_saved_statistics_state_carries_the_column(annotated):
    """What raygen's committer restores its statistics from (instead of reading every data file)."""
    root, out, *_ = annotated
    seq = json.loads((out / "meta/raygen/ledger.jsonl").read_text().splitlines()[-1])["seq"]
    state = StatsAccumulator.from_bytes((out / f"meta/raygen/stats_state/seq-{seq:08d}.npz").read_bytes())
    stats = json.loads((out / "meta/stats.json").read_text())
    saved = stats_to_json(state.compute()[COLUMN])
    assert saved == stats[COLUMN]
    source = json.loads((root / "meta/stats.json").read_text())
    assert {k: v for k, v in stats.items() if k != COLUMN} == source


def test_output_is_never_overwritten_unless_asked(annotated, tmp_path):
    root, out, *_ = annotated
    with pytest.raises(AnnotationError, match="already exists; .*overwrite=True"):
        annotate_dataset(root, out, method="combined")
    target = tmp_path / "again"
    annotate_dataset(root, target, method="gripper_changes")
    result = annotate_dataset(root, target, method="combined", overwrite=True)
    assert annotation_of(target)["method"] == "combined" and result["output"] == str(target)
    assert verify_dataset(target).ok
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "todo.txt").write_text("keep me")
    with pytest.raises(AnnotationError, match="is not a dataset"):
        annotate_dataset(root, stranger, method="combined", overwrite=True)
    assert (stranger / "todo.txt").read_text() == "keep me"


def test_bad_requests_fail_before_anything_is_written(annotated, tmp_path):
    root, out, *_ = annotated
    with pytest.raises(AnnotationError, match="lie outside the dataset"):
        annotate_dataset(root, root / "annotated", method="combined")
    with pytest.raises(AnnotationError, match="lie outside the dataset"):
        annotate_dataset(root, root, method="combined", overwrite=True)
    with pytest.raises(AnnotationError, match="already annotated"):
        annotate_dataset(out, tmp_path / "twice", method="combined")
    with pytest.raises(AnnotationError, match="not an annotation method"):
        annotate_dataset(root, tmp_path / "x", method="bottleneck")
    with pytest.raises(AnnotationError, match="unknown parameter"):
        annotate_dataset(root, tmp_path / "x", method="pose_changes", params={"quantile": 0.5})
    with pytest.raises(AnnotationError) as exc:
        annotate_dataset(root, tmp_path / "x", method="reward_threshold")
    msg = str(exc.value)
    assert str(root) in msg and "'reward_threshold'" in msg and "next.reward" in msg and "gripper.opening" in msg
    with pytest.raises(AnnotationError, match="no dataset here"):
        annotate_dataset(tmp_path / "nothing", tmp_path / "x", method="combined")
    assert not (tmp_path / "x").exists() and not (root / "annotated").exists()


def _mimic_like(i: int) -> object:
    """A synthetic episode carrying what an Isaac Lab Mimic import holds: subtask term signals, an eef pose,
    a reward, and named actions whose last dimension is the gripper command."""
    ep = synthetic_episode(i, frames=40, height=16, width=16, cameras=("cam_high",), depth=False)
    t = np.arange(40)
    ep.frame_features["datagen_info.subtask_term_signals.grasp"] = t >= 12 + i
    ep.frame_features["datagen_info.subtask_term_signals.lift"] = t >= 25
    ep.frame_features["datagen_info.eef_pose.right"] = ep.gripper_pose.reshape(40, 16).astype(np.float32)
    ep.frame_features["next.reward"] = (t >= 37).astype(np.float32)
    ep.names["action"] = [*(f"joint_{j}" for j in range(7)), "gripper"]
    return ep


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic") / "ds"
    write_dataset(root, [_mimic_like(i) for i in range(3)], shard_size=2)
    return root


def test_subtask_signals_and_rewards_of_an_imported_dataset(mimic, tmp_path):
    out = annotate_dataset(mimic, tmp_path / "sig", method="subtask_signals", params={"margin": 1})
    assert out["inputs"] == {"signals": {"datagen_info.subtask_term_signals.grasp":
                                         "datagen_info.subtask_term_signals.grasp",
                                         "datagen_info.subtask_term_signals.lift":
                                         "datagen_info.subtask_term_signals.lift"}}
    frames = critical_states(tmp_path / "sig")
    assert frames == [(e, synthetic_key(e), f) for e in range(3) for f in sorted({11 + e, 12 + e, 13 + e, 24, 25, 26})]
    assert verify_dataset(tmp_path / "sig").ok
    annotate_dataset(mimic, tmp_path / "rew", method="reward_threshold")
    assert [f for _, _, f in critical_states(tmp_path / "rew")] == [37, 38, 39] * 3
    both = annotate_dataset(mimic, tmp_path / "all", method="combined",
                            params={"methods": ["gripper_changes", "pose_changes", "subtask_signals"]})
    assert both["inputs"]["gripper"] == "action[7] (gripper, the command)"
    assert both["inputs"]["positions"] == "datagen_info.eef_pose.right (translation of the 4x4 pose)"
    assert set(both["counts"]["by_method"]) == {"gripper_changes", "pose_changes", "subtask_signals"}
    report = verify_dataset(tmp_path / "all")
    assert report.ok, report.format()


def test_a_lerobot_dataset_raygen_did_not_write(reference_dataset, tmp_path):
    before = _digest(reference_dataset)
    out = tmp_path / "ref"
    result = annotate_dataset(reference_dataset, out, method="action_variance", params={"quantile": 0.8})
    assert result["inputs"] == {"actions": "action"} and result["counts"]["critical_frames"] > 0
    report = verify_dataset(out, decode=True)
    assert report.ok, report.format()
    frames = critical_states(out)
    assert frames and all(key == f"episode_{e:06d}" for e, key, _ in frames)
    assert len(frames) == result["counts"]["critical_frames"]
    assert _digest(reference_dataset) == before
