"""The driver at scale: statistics in bounded memory (exact moments, sketched quantiles), saved with each
commit so reopening reads no data file; rejects and the diversity state that do not grow per commit; a
run's input that does not hold a million specs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from raygen.bench_scale import synthetic_encoded
from raygen.datasets import _layout as L
from raygen.datasets._arrow import column_values
from raygen.datasets._stats import RANK_ERROR
from raygen.datasets._video import VideoSettings
from raygen.datasets.commit import Committer
from raygen.datasets.shard import ShardWriter
from raygen.datasets.verify import verify_dataset
from tests.datasets.test_writer import assert_quantile_ranks

VIDEO = VideoSettings(codec="libx264", preset="ultrafast")


def commit_shards(committer: Committer, make, start: int, shards: int, size: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    for s in range(shards):
        writer = ShardWriter(committer.staging_dir, VIDEO)
        for i in range(start + s * size, start + (s + 1) * size):
            writer.add(make(i, rng))
        committer.commit(writer.finalize())
    return start + shards * size


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    """12 shards x 8 episodes x 30 frames: 2,880 values per dimension, past what a sketch keeps exactly."""
    root = tmp_path_factory.mktemp("scale") / "ds"
    _, make = synthetic_encoded(frames=30)
    committer = Committer(root)
    commit_shards(committer, make, 0, 12, 8, seed=1)
    committer.close()
    return root, make


def _all(root, name):
    return np.concatenate([column_values(pq.read_table(f, columns=[name]).column(0))
                           for f in sorted((root / "data").rglob("*.parquet"))])


def test_merged_stats_equal_one_shot_stats_exactly_and_quantiles_within_the_bound(many_shards):
    root, _ = many_shards
    stats = json.loads((root / L.STATS).read_text())
    for name in ("observation.state", "tracks3d", "index", "tracks2d.cam_high.visible"):
        values = _all(root, name)
        x = values.reshape(len(values), -1).astype(np.float64)
        s = stats[name]
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-7, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(s["min"], dtype=np.float64), x.min(0))
        np.testing.assert_array_equal(np.asarray(s["max"], dtype=np.float64), x.max(0))
        assert s["count"] == [len(x)] == [12 * 8 * 30]
        assert_quantile_ranks(x, s, RANK_ERROR)
    info = json.loads((root / L.RAYGEN_INFO).read_text())
    assert info["stats"]["quantile_rank_error"] == RANK_ERROR and info["stats"]["sketch_k"] == 800
    report = verify_dataset(root)
    assert report.ok, report.format()
    assert "numeric features against the data: count exact" in report.format()


def test_verify_catches_stats_that_do_not_fit_the_data(many_shards, tmp_path):
    import shutil

    root, _ = many_shards
    bad = tmp_path / "ds"
    shutil.copytree(root, bad)
    stats = json.loads((bad / L.STATS).read_text())
    stats["observation.state"]["q50"][3] = stats["observation.state"]["q90"][3]  # a median 40% off in rank
    stats["action"]["mean"][0] += 0.5
    L.atomic_write_json(bad / L.STATS, stats)
    problems = verify_dataset(bad).problems
    assert any("observation.state: q50 is the value of rank" in p and "dimension 3" in p for p in problems), problems
    assert any("action: mean differs from the data (dimension 0" in p for p in problems), problems


def test_reopening_reads_no_data_file_and_goes_on_as_if_never_closed(many_shards, tmp_path, monkeypatch):
    import shutil

    from raygen.datasets import commit as commit_module

    root, make = many_shards
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    shutil.copytree(root, resumed)
    shutil.copytree(root, straight)
    opened: list[str] = []
    real_read, real_file = commit_module.pq.read_table, commit_module.pq.ParquetFile
    monkeypatch.setattr(commit_module.pq, "read_table", lambda p, *a, **k: opened.append(str(p)) or real_read(p, *a,
                                                                                                             **k))
    monkeypatch.setattr(commit_module.pq, "ParquetFile", lambda p, *a, **k: opened.append(str(p)) or real_file(p, *a,
                                                                                                               **k))
    committer = Committer(resumed)
    assert committer.total_episodes == 96 and not any("/data/" in p for p in opened), opened
    commit_shards(committer, make, 96, 2, 8, seed=7)
    committer.close()
    monkeypatch.undo()
    other = Committer(straight)  # the same two shards on a committer that was never reopened
    commit_shards(other, make, 96, 2, 8, seed=7)
    other.close()
    a, b = (json.loads((r / L.STATS).read_text()) for r in (resumed, straight))
    for name in ("observation.state", "action", "index"):
        for k in ("min", "max", "count"):
            assert a[name][k] == b[name][k], (name, k)
        for k in ("mean", "std"):
            np.testing.assert_allclose(a[name][k], b[name][k], rtol=1e-12)
        assert_quantile_ranks(_all(resumed, name).astype(np.float64), a[name], RANK_ERROR)
    assert [p.name for p in (resumed / L.STATS_STATE_DIR).iterdir()] == ["seq-00000013.npz"]


def test_an_unreadable_stats_state_is_rebuilt_from_the_data(many_shards, tmp_path):
    import shutil

    root, _ = many_shards
    shutil.copytree(root, tmp_path / "ds")
    before = json.loads((tmp_path / "ds" / L.STATS).read_text())
    [state] = (tmp_path / "ds" / L.STATS_STATE_DIR).iterdir()
    state.write_bytes(b"not an npz")  # damaged, or written by another version
    Committer(tmp_path / "ds").close()
    after = json.loads((tmp_path / "ds" / L.STATS).read_text())
    assert after["action"]["count"] == before["action"]["count"] and after["action"]["max"] == before["action"]["max"]
    assert state.read_bytes()[:2] == b"PK"  # saved again, as an npz


def test_a_crash_before_the_commit_point_leaves_the_saved_stats_of_the_last_commit(many_shards, tmp_path,
                                                                                   monkeypatch):
    import shutil

    from raygen.datasets import commit as commit_module

    root, make = many_shards
    ds = tmp_path / "ds"
    shutil.copytree(root, ds)
    before = json.loads((ds / L.STATS).read_text())
    committer = Committer(ds)
    monkeypatch.setattr(commit_module, "_append_ledger", lambda *a: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError, match="disk gone"):
        commit_shards(committer, make, 96, 1, 8, seed=3)
    committer.close()
    monkeypatch.undo()
    assert (ds / L.STATS_STATE.format(seq=12)).exists()  # the interrupted commit's state, never committed
    reopened = Committer(ds)
    after = json.loads((ds / L.STATS).read_text())
    assert reopened.total_episodes == 96
    assert [p.name for p in (ds / L.STATS_STATE_DIR).iterdir()] == ["seq-00000011.npz"]
    assert after == before  # the same accumulator, restored from the last commit's state
    reopened.close()
    assert verify_dataset(ds).ok


def test_rejects_append_one_part_per_fold_and_read_as_one_table(tmp_path):
    from raygen.pipelines.rejects import fold_rejects, read_rejects, rejected_keys
    from raygen.pipelines.stages import record_reject

    root, staging = tmp_path / "ds", tmp_path / "ds/.staging/rejects"
    import pyarrow as pa

    from raygen.pipelines.rejects import REJECT_SCHEMA

    legacy = pa.Table.from_pylist([{"episode_key": "old-1", "stage": "quality", "reason": "old"}], schema=REJECT_SCHEMA)
    L.atomic_write_parquet(root / L.REJECTS, legacy)  # a dataset from before parts
    for batch in (["a", "b"], ["c"]):
        for key in batch:
            record_reject(staging, key, "generate", f"{key} failed", attempts=1)
        assert len(fold_rejects(root, staging)) == len(batch)
    assert fold_rejects(root, staging) == []  # nothing new: no empty part
    parts = sorted(p.name for p in (root / L.REJECTS_DIR).iterdir())
    assert parts == ["part-000000.parquet", "part-000001.parquet"]
    table = read_rejects(root)
    assert table.column("episode_key").to_pylist() == ["old-1", "a", "b", "c"]
    assert rejected_keys(root) == {"old-1", "a", "b", "c"}


def test_the_diversity_state_is_bounded_and_survives_a_resume(tmp_path):
    from raygen.pipelines.diversity import DiversityReport
    from raygen.pipelines.stages import DiversityStage

    stage = DiversityStage(False, 0.0, str(tmp_path), reference_cap=10)
    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(50, 96))
    for i, d in enumerate(descriptors):
        stage._remember(f"ep-{i}", d)
    assert stage.kept == 10 and stage.seen == 50 and stage.reference.shape == (10, 96)
    assert sum(any(np.array_equal(r, d) for d in descriptors[10:]) for r in stage.reference) > 0  # sampled later ones

    from dataclasses import dataclass, field

    @dataclass
    class Enc:  # what DiversityReport reads of an encoded episode
        task: str
        record: dict = field(default_factory=dict)
        episode_key: str = ""

    report = DiversityReport()
    for i, d in enumerate(descriptors[:30]):
        report.add(Enc(f"task {i % 3}", episode_key=f"ep-{i}", record={"cameras": {}, "metrics": {
            "diversity.descriptor": json.dumps(d.tolist()), "diversity.cells": json.dumps([i % 7]),
            "diversity.novelty": float(i) / 30}}))
    (tmp_path / "meta/raygen").mkdir(parents=True)
    report.save(tmp_path)
    again = DiversityReport.load(tmp_path)
    assert np.allclose(again.sample, descriptors[:30], atol=1e-6)  # the next run's novelty reference
    seeded = DiversityStage(False, 0.0, str(tmp_path), reference=again.sample, committed=again.n)
    assert seeded.kept == 30 and seeded.seen == 30
    for i, d in enumerate(descriptors[30:], 30):
        again.add(Enc(f"task {i % 3}", episode_key=f"ep-{i}", record={"cameras": {}, "metrics": {
            "diversity.descriptor": json.dumps(d.tolist()), "diversity.cells": json.dumps([i % 7]),
            "diversity.novelty": float(i) / 30}}))
    r = again.report()
    assert r["episodes"] == 50 and r["workspace_cells_visited"] == 7 and sum(r["task_distribution"].values()) == 50
    assert r["trajectory_variance_m2"] == pytest.approx(float(descriptors.var(axis=0).sum()), rel=1e-12)


def test_a_million_episode_run_starts_from_an_index_array(monkeypatch):
    import resource
    import time

    from raygen.config import load_config
    from raygen.pipelines.sources import _seeded_rows, make_source

    source = make_source(load_config(None, ["source.episodes=1000000", "source.seed=4"]))
    done = {f"bullet-pick_place-s4-{i:06d}" for i in range(0, 1_000_000, 3)}
    t0, rss0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    todo = source.todo(done)
    seconds = time.perf_counter() - t0
    assert len(todo) == 1_000_000 - len(done) and todo.indices.dtype == np.int64 and not todo.specs
    assert seconds < 5 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # KB
    rows = _seeded_rows({"data": todo.indices[:3]}, source="bullet-pick_place", seed=4)
    from raygen.actors.spec import EpisodeSpec

    keys = [EpisodeSpec.from_dict({k: v[i] for k, v in rows.items()}).episode_key for i in range(3)]
    assert keys == ["bullet-pick_place-s4-000001", "bullet-pick_place-s4-000002", "bullet-pick_place-s4-000004"]
