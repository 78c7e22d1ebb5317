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
