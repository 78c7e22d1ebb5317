"""Writing, reading back, statistics and the on-disk format against LeRobot's own reference dataset."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from raygen.datasets import DatasetLayoutError, DatasetWriter, ShardWriter, VideoSettings, encode_episode
from raygen.datasets._stats import image_histogram
from raygen.datasets.encode import IMAGE_STATS_STRIDE
from raygen.datasets.reader import DatasetReader
from raygen.datasets.verify import verify_dataset
from tests.conftest import small_episodes, write_dataset

QUANTS = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def _assert_roundtrip(orig, back, rgb_tol=8.0):
    assert back.episode_key == orig.episode_key and back.task == orig.task and back.success == orig.success
    np.testing.assert_array_equal(back.state, orig.state)
    np.testing.assert_array_equal(back.action, orig.action)
    np.testing.assert_allclose(back.timestamp, orig.timestamps(), atol=1e-6)
    np.testing.assert_allclose(back.gripper_pose, orig.gripper_pose, atol=1e-6)
    for name, cam in orig.cameras.items():
        got = back.cameras[name]
        assert got.depth.dtype == np.uint16
        np.testing.assert_array_equal(got.depth, cam.depth)  # lossless
        err = np.abs(got.rgb.astype(np.int16) - cam.rgb.astype(np.int16)).mean()
        assert err < rgb_tol, f"{name}: mean abs RGB error {err:.2f}"
        np.testing.assert_array_equal(got.intrinsics, cam.intrinsics)
        np.testing.assert_array_equal(got.distortion, cam.distortion)
        np.testing.assert_allclose(got.pose, cam.pose, atol=1e-6)
    np.testing.assert_allclose(back.flow, orig.flow)
    np.testing.assert_array_equal(back.frame_features["tracks2d.visible"], orig.frame_features["tracks2d.visible"])
    np.testing.assert_allclose(back.frame_features["tracks3d"], orig.frame_features["tracks3d"])
    assert back.provenance == orig.provenance and back.metrics == orig.metrics
    assert back.gripper_geometry == orig.gripper_geometry


def test_round_trip_across_shards(written):
    root, eps = written
    reader = DatasetReader(root)
    assert len(reader) == 7 and reader.keys == [e.episode_key for e in eps]
    for i, orig in enumerate(eps):
        _assert_roundtrip(orig, reader.episode(i))
    _assert_roundtrip(eps[5], reader.episode(eps[5].episode_key))
    with pytest.raises(KeyError, match="no episode with key 'nope'"):
        reader.episode("nope")
    report = verify_dataset(root, decode=True)
    assert report.ok, report.format()


def test_shards_share_numbering_and_timestamps(written):
    root, eps = written
    ledger = [json.loads(line) for line in (root / "meta/raygen/ledger.jsonl").read_text().splitlines()]
    got = [(e["chunk_index"], e["file_index"], len(e["episodes"])) for e in ledger]
    assert got == [(0, 0, 3), (0, 1, 3), (0, 2, 1)]
    meta = pq.read_table(sorted((root / "meta/episodes").rglob("*.parquet"))).to_pylist()
    assert [m["episode_index"] for m in meta] == list(range(7))
    for m in meta:
        k = "videos/observation.images.cam_high"
        assert m[f"{k}/file_index"] == m["data/file_index"] == m["meta/episodes/file_index"]
        length = m["length"]
        assert m[f"{k}/to_timestamp"] - m[f"{k}/from_timestamp"] == pytest.approx(length / 30)
    # the second episode of a shard starts where the first ended
    assert meta[1][f"{k}/from_timestamp"] == meta[0][f"{k}/to_timestamp"]
    assert meta[3][f"{k}/from_timestamp"] == 0.0
    for cam in ("cam_high", "cam_wrist"):
        for f in range(3):
            assert (root / f"depth/{cam}/chunk-000/file-{f:03d}.mkv").exists()
            assert (root / f"videos/observation.images.{cam}/chunk-000/file-{f:03d}.mp4").exists()


def test_libx264_also_works(tmp_path):
    eps = small_episodes(3)
    write_dataset(tmp_path / "ds", eps, shard_size=2, video=VideoSettings(codec="libx264", preset="ultrafast"))
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["features"]["observation.images.cam_high"]["info"]["video.codec"] == "h264"
    reader = DatasetReader(tmp_path / "ds")
    for i, e in enumerate(eps):
        _assert_roundtrip(e, reader.episode(i))
    assert verify_dataset(tmp_path / "ds", decode=True).ok


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="video.codec: encoder 'libnope' is not in this PyAV/FFmpeg build"):
        VideoSettings(codec="libnope")


def assert_quantile_ranks(values: np.ndarray, stats: dict, bound: float) -> None:
    """Each reported quantile is the value of a rank within ``bound`` of the quantile asked for."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    for k, q in QUANTS.items():
        got = np.asarray(stats[k], dtype=np.float64).reshape(-1)
        below = (values < got).mean(axis=0)
        upto = (values <= got).mean(axis=0)
        assert np.all((below - bound <= q) & (q <= upto + bound)), (k, q, below, upto)


def test_stats_merge_across_shards_exactly_and_quantiles_within_the_sketch_bound(written):
    from raygen.datasets._stats import RANK_ERROR

    root, eps = written
    stats = json.loads((root / "meta/stats.json").read_text())
    state = np.concatenate([e.state for e in eps]).astype(np.float64)
    s = stats["observation.state"]
    np.testing.assert_allclose(s["mean"], state.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s["std"], state.std(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(s["min"], state.min(0))
    np.testing.assert_array_equal(s["max"], state.max(0))
    assert_quantile_ranks(state, s, RANK_ERROR)
    assert s["count"] == [len(state)]
    idx = stats["index"]
    n = len(state)
    assert idx["min"] == [0] and idx["max"] == [n - 1] and idx["count"] == [n]
    assert_quantile_ranks(np.arange(n), idx, RANK_ERROR)

    # images: every pixel of every IMAGE_STATS_STRIDE-th frame, per channel, on [0, 1]
    frames = np.concatenate([e.cameras["cam_wrist"].rgb[::IMAGE_STATS_STRIDE] for e in eps])
    img = stats["observation.images.cam_wrist"]
    px = frames.reshape(-1, 3).astype(np.float64) / 255.0
    assert np.asarray(img["mean"]).shape == (3, 1, 1)
    np.testing.assert_allclose(np.asarray(img["mean"]).ravel(), px.mean(0), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(img["std"]).ravel(), px.std(0), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(img["min"]).ravel(), px.min(0))
    np.testing.assert_allclose(np.asarray(img["max"]).ravel(), px.max(0))
    for k, q in QUANTS.items():
        want = np.quantile(frames.reshape(-1, 3), q, axis=0) / 255.0
        np.testing.assert_allclose(np.asarray(img[k]).ravel(), want, rtol=1e-9)
    assert img["count"] == [n]


def test_per_episode_stats_in_episodes_metadata(written):
    root, eps = written
    meta = pq.read_table(sorted((root / "meta/episodes").rglob("*.parquet"))).to_pylist()
    for m, e in zip(meta, eps, strict=True):
        np.testing.assert_allclose(m["stats/action/mean"], e.action.astype(np.float64).mean(0), rtol=1e-12)
        np.testing.assert_allclose(m["stats/action/q90"], np.quantile(e.action.astype(np.float64), 0.9, axis=0))
        assert m["stats/frame_index/max"] == [len(e.state) - 1]
        assert m["stats/episode_index/min"] == [m["episode_index"]]
        h = image_histogram(e.cameras["cam_high"].rgb[::IMAGE_STATS_STRIDE])
        mean = (h * np.arange(256)).sum(1) / h.sum(1) / 255.0
        np.testing.assert_allclose(np.asarray(m["stats/observation.images.cam_high/mean"]).ravel(), mean)
        assert m["tasks"] == [e.task]


# ------------------------------------------------------------------------ format vs. the LeRobot reference


def test_files_match_the_lerobot_reference(written, reference_dataset):
    root, _ = written
    ref = reference_dataset
    ours_info = json.loads((root / "meta/info.json").read_text())
    ref_info = json.loads((ref / "meta/info.json").read_text())
    assert list(ours_info) == list(ref_info)
    assert ours_info["data_path"] == ref_info["data_path"] and ours_info["video_path"] == ref_info["video_path"]
    ours_cam, ref_cam = ours_info["features"]["observation.images.cam_high"], ref_info["features"][
        "observation.images.cam_high"]
    assert list(ours_cam) == list(ref_cam) and list(ours_cam["info"]) == list(ref_cam["info"])
    assert ours_cam["info"]["video.codec"] == ref_cam["info"]["video.codec"] == "av1"
    for name in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert ours_info["features"][name]["dtype"] == ref_info["features"][name]["dtype"], name

    # data parquet: same types for the shared columns, same huggingface schema metadata shape
    ours = pq.ParquetFile(root / "data/chunk-000/file-000.parquet")
    theirs = pq.ParquetFile(ref / "data/chunk-000/file-000.parquet")
    for f in theirs.schema_arrow:
        assert ours.schema_arrow.field(f.name).type == f.type, f.name
    assert [c for c in ours.schema_arrow.names if c in theirs.schema_arrow.names] == theirs.schema_arrow.names
    ours_hf = json.loads(ours.schema_arrow.metadata[b"huggingface"])
    ref_hf = json.loads(theirs.schema_arrow.metadata[b"huggingface"])
    assert ours_hf.keys() == ref_hf.keys()
    for name, feat in ref_hf["info"]["features"].items():
        assert ours_hf["info"]["features"][name] == feat, name
    assert set(ours_hf["info"]["features"]) == set(ours.schema_arrow.names)
    assert ours.num_row_groups == 3  # one per episode, as LeRobot writes

    # episodes metadata: every reference column exists with the same type
    ours_ep = pq.read_schema(root / "meta/episodes/chunk-000/file-000.parquet")
    ref_ep = pq.read_schema(ref / "meta/episodes/chunk-000/file-000.parquet")
    for f in ref_ep:
        assert ours_ep.field(f.name).type == f.type, f.name

    # tasks: pandas frame indexed by the task string
    import pandas as pd

    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    ref_tasks = pd.read_parquet(ref / "meta/tasks.parquet")
    assert list(tasks.columns) == list(ref_tasks.columns) == ["task_index"]
    assert tasks.index.dtype == ref_tasks.index.dtype
    assert tasks.loc["pick the blue cube and place it on the green spot", "task_index"] == 1
    assert pq.read_schema(root / "meta/tasks.parquet").types == pq.read_schema(ref / "meta/tasks.parquet").types

    # stats: same keys per feature, same nesting for images
    ours_stats = json.loads((root / "meta/stats.json").read_text())
    ref_stats = json.loads((ref / "meta/stats.json").read_text())
    for name, s in ref_stats.items():
        assert list(ours_stats[name]) == list(s), name
        assert np.asarray(ours_stats[name]["mean"]).ndim == np.asarray(s["mean"]).ndim, name


# ------------------------------------------------------------------------ resume, crashes, rejections


def test_resume_continues_numbering_and_skips_committed(written_copy):
    root, eps = written_copy
    more = small_episodes(4, start=7)
    with DatasetWriter(root, shard_size=3) as w:
        assert w.committed_keys == {e.episode_key for e in eps}
        with pytest.raises(ValueError, match="already committed"):
            w.add(eps[0])
        for e in more:
            w.add(e)
    info = json.loads((root / "meta/info.json").read_text())
    assert info["total_episodes"] == 11 and info["splits"] == {"train": "0:11"}
    assert (root / "data/chunk-000/file-004.parquet").exists()
    reader = DatasetReader(root)
    assert reader.keys == [e.episode_key for e in eps + more]
    _assert_roundtrip(more[-1], reader.episode(10))
    assert verify_dataset(root).ok


def test_chunk_rollover(tmp_path):
    eps = small_episodes(5, frames=6, height=16, width=16)
    write_dataset(tmp_path / "ds", eps, shard_size=1, chunks_size=2)
    assert (tmp_path / "ds/data/chunk-002/file-000.parquet").exists()
    assert (tmp_path / "ds/depth/cam_wrist/chunk-001/file-001.mkv").exists()
    report = verify_dataset(tmp_path / "ds")
    assert report.ok, report.format()
    assert [e.episode_key for e in map(DatasetReader(tmp_path / "ds").episode, range(5))] == [
        e.episode_key for e in eps]


def test_shard_that_does_not_fit_is_rejected(written_copy, tmp_path):
    root, _ = written_copy
    other = small_episodes(1, start=20, height=16, width=16)[0]
    with pytest.raises(DatasetLayoutError) as err:
        write_dataset(root, [other])
    msg = str(err.value)
    assert "manifest.json does not fit the dataset" in msg and "cameras:" in msg and "16" in msg
    assert DatasetWriter(root).committed_keys.isdisjoint({other.episode_key})
    assert verify_dataset(root).ok


def test_shard_writer_is_a_state_machine(tmp_path):
    w = ShardWriter(tmp_path, VideoSettings())
    assert w.finalize() is None and w.finalize() is None
    w = ShardWriter(tmp_path, VideoSettings())
    enc = [encode_episode(e) for e in small_episodes(2, frames=6, height=16, width=16)]
    w.add(enc[0])
    with pytest.raises(ValueError, match="already in shard"):
        w.add(enc[0])
    w.add(enc[1])
    staged = w.finalize()
    assert staged is not None and w.finalize() == staged
    assert not w.partial_path.exists() and (staged.path / "manifest.json").exists()
    with pytest.raises(RuntimeError, match="finalized"):
        w.add(enc[0])
    odd = encode_episode(small_episodes(1, start=5, frames=6, height=16, width=32)[0])
    w2 = ShardWriter(tmp_path, VideoSettings())
    w2.add(enc[0])
    with pytest.raises(ValueError, match="cameras/resolution"):
        w2.add(odd)


def test_exception_inside_writer_commits_nothing_pending(tmp_path):
    eps = small_episodes(4, frames=6, height=16, width=16)
    with pytest.raises(RuntimeError, match="boom"):
        with DatasetWriter(tmp_path / "ds", shard_size=3) as w:
            for e in eps:
                w.add(e)
            raise RuntimeError("boom")
    w = DatasetWriter(tmp_path / "ds")
    assert w.committed_keys == {e.episode_key for e in eps[:3]}
    assert not any((tmp_path / "ds/.staging").glob("*")) if (tmp_path / "ds/.staging").exists() else True
