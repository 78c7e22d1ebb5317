"""Edge cases found in review: concurrent writers, failed commits, B-frame joins, clocks, bad values."""

import json

import numpy as np
import pytest

import raygen.datasets.commit as commit_mod
from raygen.datasets import Committer, DatasetLayoutError, DatasetWriter, VideoSettings
from raygen.datasets.episode import EpisodeValidationError, validate_episode
from raygen.datasets.reader import DatasetReader
from raygen.datasets.synthetic import synthetic_episode
from raygen.datasets.verify import verify_dataset
from tests.conftest import small_episodes, write_dataset


def test_second_writer_is_refused(tmp_path):
    with DatasetWriter(tmp_path / "ds", shard_size=2) as w:
        with pytest.raises(DatasetLayoutError, match="another process is writing this dataset"):
            Committer(tmp_path / "ds")
        for e in small_episodes(2, frames=6, height=16, width=16):
            w.add(e)
    assert Committer(tmp_path / "ds").total_episodes == 2  # released on close


def test_an_aborted_run_keeps_the_dataset_locked_until_it_closes(tmp_path):
    w = DatasetWriter(tmp_path / "ds", shard_size=4)
    eps = small_episodes(3, frames=6, height=16, width=16)
    w.add(eps[0])
    w.abort(release=False)  # the open shard is dropped; the run still writes its report and run.json
    with pytest.raises(DatasetLayoutError, match="another process is writing this dataset"):
        Committer(tmp_path / "ds")
    w.close()
    assert Committer(tmp_path / "ds").total_episodes == 0


def test_failed_commit_poisons_the_committer_until_reopened(tmp_path, monkeypatch):
    eps = small_episodes(4, frames=6, height=16, width=16)
    real = commit_mod._append_ledger

    def full_disk(path, entry):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(commit_mod, "_append_ledger", full_disk)
    w = DatasetWriter(tmp_path / "ds", shard_size=2)
    with pytest.raises(OSError, match="No space left"):
        for e in eps[:2]:
            w.add(e)
    with pytest.raises(RuntimeError, match="an earlier commit failed .*reopen the dataset"):
        w.committer.commit(None)
    w.abort()
    monkeypatch.setattr(commit_mod, "_append_ledger", real)
    with DatasetWriter(tmp_path / "ds", shard_size=2) as w2:
        assert w2.committed_keys == frozenset()
        for e in eps:
            w2.add(e)
    assert verify_dataset(tmp_path / "ds").ok
    assert DatasetReader(tmp_path / "ds").keys == [e.episode_key for e in eps]


@pytest.mark.parametrize("lengths,g", [([20, 1, 20], 2), ([1, 30, 2], 30)])
def test_bframe_joins_with_short_episodes(tmp_path, lengths, g):
    eps = [synthetic_episode(i, frames=n, height=32, width=32) for i, n in enumerate(lengths)]
    write_dataset(tmp_path / "ds", eps, shard_size=len(eps), video=VideoSettings(codec="libx264", g=g))
    report = verify_dataset(tmp_path / "ds", decode=True)
    assert report.ok, report.format()
    reader = DatasetReader(tmp_path / "ds")
    for i, e in enumerate(eps):
        got = reader.episode(i).cameras["cam_high"].rgb
        assert got.shape == e.cameras["cam_high"].rgb.shape
        assert np.abs(got.astype(int) - e.cameras["cam_high"].rgb).mean() < 8


@pytest.mark.parametrize("fps", [15.0, 29.97])
def test_other_frame_rates(tmp_path, fps):
    eps = small_episodes(3, frames=17, fps=fps)
    write_dataset(tmp_path / "ds", eps, shard_size=3)
    assert verify_dataset(tmp_path / "ds", decode=True).ok
    back = DatasetReader(tmp_path / "ds").episode(2)
    np.testing.assert_array_equal(back.cameras["cam_wrist"].depth, eps[2].cameras["cam_wrist"].depth)


def test_source_timestamps_are_kept_beside_lerobot_timestamps(tmp_path):
    ep = synthetic_episode(0, frames=12, height=16, width=16)
    ep.timestamp = np.arange(12) / 15.0 + np.random.default_rng(0).uniform(-0.004, 0.004, 12) + 1.7e9
    write_dataset(tmp_path / "ds", [ep])
    assert verify_dataset(tmp_path / "ds").ok
    back = DatasetReader(tmp_path / "ds").episode(0)
    np.testing.assert_array_equal(back.timestamp, ep.timestamp)  # float64, exact
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["features"]["timestamp.source"]["dtype"] == "float64"


def test_torn_ledger_tail_is_not_committed_for_readers(written_copy):
    root, eps = written_copy
    with open(root / "meta/raygen/ledger.jsonl", "a") as f:
        f.write('{"seq": 3, "shard_id": "torn')
    assert len(DatasetReader(root)) == 7
    report = verify_dataset(root)
    assert report.ok and "ignoring a torn last line" in report.format()


def _problems(ep):
    with pytest.raises(EpisodeValidationError) as err:
        validate_episode(ep)
    return err.value.problems


def test_values_that_would_fail_later_are_rejected_now():
    ep = synthetic_episode(0, frames=6, height=16, width=16, flow=True)
    ep.fps = True
    ep.gripper_opening = ep.gripper_opening * 0 + 1e39
    ep.flow = np.zeros((0, 3, 3), np.float32)
    ep.frame_features["counts"] = np.zeros((6, 2), np.uint64)
    ep.frame_features["empty"] = np.zeros((6, 0), np.float32)
    probs = _problems(ep)
    assert any(p.startswith("fps: must be a number in (0, 240]") for p in probs)
    assert any(p.startswith("gripper.opening: 6 values exceed the float32 range") for p in probs)
    assert any(p.startswith("flow: shape [0, 3, 3] is empty") for p in probs)
    assert any("uint64 is not stored" in p for p in probs)
    assert any("per-frame shape [0] has an empty dimension" in p for p in probs)

    tiny = synthetic_episode(1, frames=3, height=4, width=4)
    assert any("height and width must be even and >= 8" in p for p in _problems(tiny))
    long = synthetic_episode(2, frames=3, height=16, width=16, fps=0.001)
    assert any("split it" in p for p in _problems(long))
    ok = synthetic_episode(3, frames=3, height=16, width=16)
    ok.fps = np.float32(30.0)
    validate_episode(ok)
