"""Live feeds against a real local HTTP trainer stand-in (tests/feedserver.py), and the in-cluster consumer."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import av
import numpy as np
import pytest

from raygen.config import FeedConfig, load_config
from raygen.datasets import _layout as L
from raygen.datasets.reader import DatasetReader
from raygen.pipelines.feeds import HttpFeed
from tests.conftest import small_episodes, write_dataset
from tests.feedserver import Trainer

REPO = Path(__file__).resolve().parents[2]
SECRET = "feed-secret-key-0123456789"
SMALL = ["source.width=32", "source.height=32", "source.task_params={steps_per_segment: 10}",
         "resources.cpu_workers=2", "output.shard_size=2", "output.video_codec=libx264"]


def _wait(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    """A 6-episode, 3-shard dataset written without a run (quality scores set by hand)."""
    root = tmp_path_factory.mktemp("feed") / "ds"
    eps = small_episodes(6)
    for i, ep in enumerate(eps):
        ep.metrics["quality.score"] = [0.9, 0.5, 0.95, 0.6, 0.99, 0.8][i]
    write_dataset(root, eps, shard_size=2)
    return root, eps


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_feed_sends_what_passes_the_bar_once_through_failures_and_a_crash(six, tmp_path):
    root = _copy(six[0], tmp_path / "ds")
    keys = DatasetReader(root).keys
    with Trainer() as trainer:
        cfg = FeedConfig(name="t", url=trainer.url, min_quality_score=0.7, batch_size=2, max_wait_s=0.2,
                         attempts=3, timeout_s=5, retry_after_s=0.2)
        trainer.fail_next = 2  # two 500s: retried, nothing lost
        trainer.accept_batches = 1  # then the trainer refuses, and the feed is abandoned (a killed driver)
        feed = HttpFeed(root, cfg).start()
        feed.notify()
        assert _wait(lambda: feed.stats.last_error is not None and "HTTP 400" in feed.stats.last_error)
        feed.stop()
        first = list(trainer.keys)
        acked = L.read_jsonl(root / L.FEED_LEDGER.format(name="t"))
        assert [e for line in acked if "through" in line for e in line["episodes"]] == [0, 2]  # above the bar
        trainer.accept_batches = None
        again = HttpFeed(root, cfg).start()  # the next run: resends only what was not acknowledged
        stats = again.finish(timeout_s=20)
    want = [k for k, s in zip(keys, [0.9, 0.5, 0.95, 0.6, 0.99, 0.8]) if s >= 0.7]
    assert first == want[:2] and trainer.keys == want
    assert sum(trainer.seen_batches.values()) == len(trainer.seen_batches)  # no batch delivered twice
    assert feed.stats.filtered + stats.filtered == 2 and feed.stats.sent + stats.sent == 4
    assert stats.pending == 0 and stats.lag_s
    # what arrived is the dataset: arrays exactly, the video segment decodes to the stored frames
    reader = DatasetReader(root)
    ep = reader.episode(4)
    got = trainer.arrays[ep.episode_key]
    assert np.array_equal(got["observation.state"], ep.state) and np.array_equal(got["action"], ep.action)
    assert got["gripper.pose"].shape == (ep.length, 4, 4)
    video = next(v for p, v in trainer.files[ep.episode_key].items() if p.endswith("videos/cam_high.mp4"))
    with av.open(io.BytesIO(video)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert np.array_equal(frames, ep.cameras["cam_high"].rgb)
    depth = next(v for p, v in trainer.files[ep.episode_key].items() if p.endswith("depth/cam_high.mkv"))
    with av.open(io.BytesIO(depth)) as c:
        d = np.stack([f.to_ndarray(format="gray16le") for f in c.decode(video=0)])
    assert np.array_equal(d, ep.cameras["cam_high"].depth)  # bit-exact, as in the dataset
    batch = trainer.batches[-1]
    assert batch["format"] == "raygen-feed/1" and batch["episodes"][0]["references"]["videos"]["cam_high"]["path"]


def test_a_batch_on_its_way_keeps_its_idempotency_key_through_retries_and_a_restart(six, tmp_path):
    root = _copy(six[0], tmp_path / "ds")
    keys = DatasetReader(root).keys
    want = [k for k, s in zip(keys, [0.9, 0.5, 0.95, 0.6, 0.99, 0.8]) if s >= 0.7]

    class BrokenMetrics:  # the dashboard's metrics failing must not lose or reorder episodes
        def feed(self, *args, **kw):
            raise AttributeError("feed_sent")

    with Trainer() as trainer:
        cfg = FeedConfig(name="t", url=trainer.url, min_quality_score=0.7, batch_size=2, max_wait_s=0.1,
                         attempts=1, timeout_s=5, retry_after_s=0.1)
        trainer.lose_answers = 10**6  # every POST is taken, but its answer never arrives
        feed = HttpFeed(root, cfg, metrics=BrokenMetrics()).start()
        assert _wait(lambda: trainer.requests >= 3)
        feed.stop()  # a driver killed while the batch was on its way
        ids = {h["Idempotency-Key"] for h in trainer.headers_seen}
        assert len(ids) == 1 and trainer.keys == want[:2]  # every retry was the same batch
        trainer.lose_answers = 0
        # the next run batches 4 at a time: it still sends the batch on its way first, as it was
        again = HttpFeed(root, cfg.model_copy(update={"batch_size": 4}), metrics=BrokenMetrics()).start()
        stats = again.finish(timeout_s=20)
    assert trainer.keys == want and stats.pending == 0  # each episode once, in commit order
    assert trainer.seen_batches[ids.pop()] >= 4 and len(trainer.seen_batches) == 2
    assert stats.filtered == 2 and stats.sent == 4


def test_the_in_cluster_consumer_finds_shards_committed_while_the_trainer_was_busy(tmp_path):
    from raygen.datasets.writer import DatasetWriter
    from raygen.pipelines.feeds import feed

    root = tmp_path / "ds"
    eps = small_episodes(6)
    write_dataset(root, eps[:4], shard_size=2)
    got = []
    for batch in feed(root, batch_size=1, idle_timeout_s=0.5, poll_s=0.1, decode_video=False):
        got += [ep["key"] for ep in batch.episodes]
        if len(got) == 1:  # while the trainer works on its first batch, the run commits another shard
            with DatasetWriter(root, shard_size=2) as w:
                for ep in eps[4:]:
                    w.add(ep)
            time.sleep(0.8)  # longer than idle_timeout_s: the time is the trainer's, not idle
    assert got == [ep.episode_key for ep in eps]


def test_the_api_key_goes_in_the_header_and_nowhere_else(six, tmp_path, monkeypatch, caplog):
    root = _copy(six[0], tmp_path / "ds")
    monkeypatch.setenv("TRAINER_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with Trainer(api_key=SECRET) as trainer:
        cfg = FeedConfig(name="k", url=trainer.url, batch_size=3, max_wait_s=0.1, api_key_env="TRAINER_KEY",
                         payload="references", attempts=2, timeout_s=5)
        trainer.fail_next = 1
        stats = HttpFeed(root, cfg).start().finish(timeout_s=20)
        assert len(trainer.keys) == 6 and stats.sent == 6
        assert all(h.get("Authorization") == f"Bearer {SECRET}" for h in trainer.headers_seen)
        assert not trainer.files[trainer.keys[0]]  # references only: no arrays or segments in the POST
    with Trainer(api_key="another-key") as wrong:  # refused (401): an error that must not show the key
        bad = HttpFeed(_copy(six[0], tmp_path / "ds2"), cfg.model_copy(update={"url": wrong.url})).start()
        assert _wait(lambda: bad.stats.last_error is not None)
        bad.stop()
        assert "HTTP 401" in bad.stats.last_error
    texts = [r.getMessage() for r in caplog.records] + [bad.stats.last_error, json.dumps(stats.to_dict())]
    assert not any(SECRET in t for t in texts)
    for f in (tmp_path / "ds").rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_a_stalled_trainer_never_holds_up_a_run_and_catches_up_after(tmp_path):
    ray = pytest.importorskip("ray")
    from raygen.pipelines.run import run

    with Trainer() as trainer:
        trainer.stall_s = 3.0  # every answer comes after the feed's 1 s timeout
        overrides = [*SMALL, "source.episodes=4", f"feeds=[{{name: slow, url: '{trainer.url}', batch_size: 1, "
                     "timeout_s: 1, attempts: 2, max_wait_s: 0.1, drain_timeout_s: 1}]"]
        cfg = load_config(REPO / "configs" / "pick_place_local.yaml", overrides, output=str(tmp_path / "ds"))
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            s = run(cfg)
        finally:
            ray.shutdown()
        committed = DatasetReader(tmp_path / "ds").keys
        assert s.accepted + s.rejected == 4 and s.shards >= 1 and s.verify_ok, s.format()
        assert s.feeds["slow"]["pending"] > 0  # the trainer is behind; the run did not wait for it
        trainer.stall_s = 0.0
        again = run(cfg)  # nothing left to make: the feed sends what is pending
        assert again.planned == 0 and again.feeds["slow"]["pending"] == 0
        assert sorted(set(trainer.keys)) == sorted(committed)  # everything, and a stalled batch taken once


def test_the_in_cluster_consumer_gets_every_episode_once_in_commit_order_while_the_run_goes_on(tmp_path):
    ray = pytest.importorskip("ray")
    import raygen

    cfg = load_config(REPO / "configs" / "pick_place_local.yaml", [*SMALL, "source.episodes=6"],
                      output=str(tmp_path / "ds"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        handle = raygen.start(cfg)
        got, while_running, position = [], [], 0
        for batch in raygen.feed(handle, batch_size=2, poll_s=0.2):
            while_running.append(handle.running)
            got += [(ep["index"], ep["key"]) for ep in batch.episodes]
            assert batch.episodes[0]["frames"]["cam_high"].dtype == np.uint8
            assert batch.episodes[0]["observation.state"].shape[1] == 23
            position = batch.position
        summary = handle.wait(60)
    finally:
        ray.shutdown()
    keys = DatasetReader(tmp_path / "ds").keys
    assert [k for _, k in got] == keys and [i for i, _ in got] == list(range(len(keys)))
    assert len(keys) == summary.accepted and while_running[0]  # the first batch came before the run ended
    # a restarted trainer resumes where it stopped
    rest = list(raygen.feed(tmp_path / "ds", start=2, follow=False, decode_video=False))
    assert [ep["key"] for b in rest for ep in b.episodes] == keys[2:] and rest[-1].position == position


def test_a_missing_api_key_stops_the_run_before_the_dataset_is_opened(tmp_path, monkeypatch):
    from raygen.pipelines.run import run

    monkeypatch.delenv("NO_SUCH_TRAINER_KEY", raising=False)
    overrides = [*SMALL, "source.episodes=2", "feeds=[{name: a, url: 'http://127.0.0.1:9/x'}, "
                 "{name: b, url: 'http://127.0.0.1:9/y', api_key_env: NO_SUCH_TRAINER_KEY}]"]
    cfg = load_config(REPO / "configs" / "pick_place_local.yaml", overrides, output=str(tmp_path / "ds"))
    with pytest.raises(ValueError, match=r"feeds\[b\].api_key_env: the environment variable NO_SUCH_TRAINER_KEY"):
        run(cfg)
    assert not (tmp_path / "ds").exists()
