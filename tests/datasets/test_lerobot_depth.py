"""LeRobot >= 0.6 depth beside raygen's FFV1 depth: LeRobot's quantizer, a lossless gray12le round trip, the
feature and stats LeRobot reads, and `raygen verify` proving both copies agree."""

from __future__ import annotations

import io
import json
import shutil

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from raygen.datasets import _layout as L
from raygen.datasets.lerobot_depth import DepthQuantizer, encode_lerobot_depth
from raygen.datasets.verify import verify_dataset
from tests.conftest import small_episodes, write_dataset


def lerobot_dequantize(q, dmin=0.01, dmax=10.0, shift=3.5):
    """LeRobot 0.6's formula as REFERENCE.md section 9 gives it (metres), written out here independently."""
    log_min, log_max = np.log(dmin + shift), np.log(dmax + shift)
    d = np.exp(q * (log_max - log_min) / 4095 + log_min) - shift
    return np.clip(d, dmin, dmax) * 1000.0  # millimetres


def test_the_quantizer_is_lerobots_and_its_error_stays_within_a_step_at_every_depth():
    qz = DepthQuantizer()
    mm = np.arange(10, 10001, dtype=np.uint16)  # every millimetre LeRobot's default range holds
    codes = qz.quantize(mm)
    assert codes.dtype == np.uint16 and codes.min() == 0 and codes.max() == 4095
    back = lerobot_dequantize(codes.astype(np.float64))
    assert np.allclose(back, qz.dequantize(codes))
    steps = np.diff(lerobot_dequantize(np.arange(4096.0)))
    step_at = steps[np.minimum(codes, 4094)]
    assert np.all(np.abs(back - mm) <= step_at / 2 + 1e-6)
    for depth, step in ((100, 1.2), (1000, 1.5), (10000, 4.4)):  # REFERENCE.md: the step at the defaults
        assert steps[qz.quantize(np.array([depth]))[0] - 1] == pytest.approx(step, abs=0.1)
    assert qz.dequantize(qz.quantize(np.array([0])))[0] == pytest.approx(10.0)  # invalid 0 reads as depth_min


def test_hevc_gray12le_holds_the_codes_losslessly():
    rng = np.random.default_rng(0)
    depth = rng.integers(0, 12000, (6, 32, 48)).astype(np.uint16)
    segment = encode_lerobot_depth(depth, 30.0, DepthQuantizer())
    with av.open(io.BytesIO(segment)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("hevc", "gray12le")
        codes = np.stack([f.to_ndarray(format="gray12le") for f in c.decode(s)])  # as LeRobot's reader decodes
    assert np.array_equal(codes, DepthQuantizer().quantize(depth))


@pytest.fixture(scope="module")
def with_depth(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot_depth") / "ds"
    write_dataset(root, small_episodes(5), shard_size=2, lerobot_depth=True)
    return root


def test_a_dataset_carries_lerobot_depth_features_stats_and_both_copies_agree(with_depth, tmp_path):
    info = json.loads((with_depth / L.INFO).read_text())
    feat = info["features"]["observation.images.cam_high_depth"]
    assert feat["dtype"] == "video" and feat["shape"] == [32, 48, 1]
    block = feat["info"]
    assert block["is_depth_map"] is True and block["depth_unit"] == "mm"
    assert (block["video.codec"], block["video.pix_fmt"], block["video.channels"]) == ("hevc", "gray12le", 1)
    assert (block["video.depth_min"], block["video.depth_max"], block["video.shift"], block["video.use_log"]) == (
        0.01, 10.0, 3.5, True)
    assert info["features"]["observation.images.cam_high"]["info"]["video.is_depth_map"] is False
    stats = json.loads((with_depth / L.STATS).read_text())["observation.images.cam_high_depth"]
    assert np.asarray(stats["mean"]).shape == (1, 1, 1) and stats["count"] == [info["total_frames"]]
    eps = pq.read_table(sorted((with_depth / "meta/episodes").rglob("*.parquet"))).to_pylist()
    assert all("videos/observation.images.cam_high_depth/from_timestamp" in e for e in eps)
    assert np.asarray(eps[0]["stats/observation.images.cam_high_depth/q50"]).shape == (1, 1, 1)
    report = verify_dataset(with_depth)
    assert report.ok, report.format()
    assert "LeRobot depth videos of 2 cameras agree" in report.format()
    # a copy that drifted from the FFV1 truth (30 mm deeper, same size so only the comparison can tell)
    bad = tmp_path / "bad"
    shutil.copytree(with_depth, bad)
    rel = "videos/observation.images.cam_high_depth/chunk-000/file-000.mp4"
    from raygen.datasets.reader import DatasetReader

    reader = DatasetReader(with_depth)
    depth = np.concatenate([reader.episode(i).cameras["cam_high"].depth for i in (0, 1)])
    from raygen.datasets._video import concat_segments

    lengths = [reader.episode(i).length for i in (0, 1)]
    segs = [encode_lerobot_depth(d + 30, 30.0, DepthQuantizer()) for d in np.split(depth, [lengths[0]])]
    concat_segments(segs, lengths, 30.0, bad / rel)
    report = verify_dataset(bad)
    assert any("LeRobot depth differs from the FFV1 depth by" in p for p in report.problems), report.format()


def test_reopening_keeps_the_depth_statistics(with_depth, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(with_depth, root)
    before = json.loads((root / L.STATS).read_text())["observation.images.cam_wrist_depth"]
    write_dataset(root, small_episodes(2, start=5), shard_size=2, lerobot_depth=True)  # reopens, commits one more
    after = json.loads((root / L.STATS).read_text())["observation.images.cam_wrist_depth"]
    info = json.loads((root / L.INFO).read_text())
    assert after["count"] == [info["total_frames"]] and after["count"][0] > before["count"][0]
    assert verify_dataset(root).ok
