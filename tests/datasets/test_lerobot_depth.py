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
from raygen.datasets._stats import QUANTILES
from raygen.datasets.encode import IMAGE_STATS_STRIDE
from raygen.datasets.lerobot_depth import DEPTH_QMAX, DepthQuantizer, DepthStats, encode_lerobot_depth
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


@pytest.mark.parametrize("qz", [DepthQuantizer(), DepthQuantizer(0.2, 3.0, 0.5), DepthQuantizer(use_log=False)])
def test_a_round_trip_moves_a_depth_by_at_most_half_the_step_above_its_code(qz):
    """What verify allows: half of step_mm (the step from the depth's code to the next), plus float rounding."""
    mm = np.arange(int(np.ceil(qz.depth_min * 1000)), int(qz.depth_max * 1000) + 1, dtype=np.uint16)
    err = np.abs(qz.dequantize(qz.quantize(mm)) - mm)
    half = qz.step_mm(mm) / 2
    assert np.all(err <= half + 1e-6)
    assert np.max(err / half) > 0.99  # and no looser than that: some depth comes close to it
    codes = qz.quantize(mm).astype(np.int64)
    assert np.allclose(qz.step_mm(mm), qz.dequantize(np.minimum(codes, DEPTH_QMAX - 1) + 1)
                       - qz.dequantize(np.minimum(codes, DEPTH_QMAX - 1)))


def test_depth_stats_are_numpys_over_raw_millimetres_with_invalid_and_far_pixels():
    """40% invalid (0), some below depth_min, 10% at 15 m and some anywhere up to 65.535 m: stats.json
    describes those raw values, so every quantile equals numpy.quantile's (the documented guarantee), not
    the quantizer's clipped reading (0 as 10 mm, 15 m as 10 m)."""
    rng = np.random.default_rng(7)
    t, h, w = 6, 40, 60
    x = rng.integers(10, 10001, t * h * w)  # within [depth_min, depth_max]
    kind = rng.random(x.size)
    x[kind < 0.40] = 0
    x[(kind >= 0.40) & (kind < 0.43)] = rng.integers(1, 10, int(((kind >= 0.40) & (kind < 0.43)).sum()))
    x[kind >= 0.90] = 15000
    x[kind >= 0.995] = rng.integers(10001, 65536, int((kind >= 0.995).sum()))
    depth = x.astype(np.uint16).reshape(t, h, w)
    parts = [DepthStats.of(depth[:2]), DepthStats.of(depth[2:5]), DepthStats.of(depth[5:])]
    merged = parts[0]
    for part in parts[1:]:  # through JSON, as episodes reach the shard manifest and the stats state
        merged = merged.merge(DepthStats.from_json(json.loads(json.dumps(part.to_json()))))
    st = merged.stats(t)
    flat = depth.reshape(-1).astype(np.float64)
    assert all(np.asarray(v).shape == (1, 1, 1) for k, v in st.items() if k != "count") and st["count"] == [t]
    for k, q in QUANTILES.items():
        assert st[k].item() == pytest.approx(np.quantile(flat, q), abs=1e-9), k
    assert st["q01"].item() == 0.0 and st["q10"].item() == 0.0 and st["q99"].item() == 15000.0
    assert (st["min"].item(), st["max"].item()) == (flat.min(), flat.max())
    assert st["mean"].item() == pytest.approx(flat.mean(), rel=1e-12)
    assert st["std"].item() == pytest.approx(flat.std(), rel=1e-12)


def test_depth_stats_refuse_what_they_cannot_count_exactly():
    with pytest.raises(ValueError, match="uint16 millimetres, got dtype float32"):
        DepthStats.of(np.ones((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="earlier raygen that kept only 12-bit codes"):
        DepthStats.from_json({"n": 4, "sum": 4.0, "sum_sq": 4.0, "min": 1, "max": 1, "codes": {"0": 4}})


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


def test_the_written_depth_statistics_are_numpys_over_the_counted_frames(with_depth):
    stats = json.loads((with_depth / L.STATS).read_text())["observation.images.cam_high_depth"]
    depth = np.concatenate([e.cameras["cam_high"].depth[::IMAGE_STATS_STRIDE] for e in small_episodes(5)])
    flat = depth.reshape(-1).astype(np.float64)
    assert flat.min() == 0  # the synthetic camera has invalid pixels
    want = {"min": flat.min(), "max": flat.max(), "mean": flat.mean(), "std": flat.std(),
            **{k: np.quantile(flat, q) for k, q in QUANTILES.items()}}
    for k, v in want.items():
        assert np.asarray(stats[k]).item() == pytest.approx(v, rel=1e-12, abs=1e-9), k


def test_a_copy_one_code_off_is_caught(with_depth, tmp_path):
    """Every pixel one code deeper: off by about a whole step, more than the half step a round trip allows."""

    class OneCodeDeeper(DepthQuantizer):
        def quantize(self, depth_mm):
            return np.minimum(super().quantize(depth_mm) + 1, DEPTH_QMAX).astype(np.uint16)

    from raygen.datasets._video import concat_segments
    from raygen.datasets.reader import DatasetReader

    bad = tmp_path / "bad"
    shutil.copytree(with_depth, bad)
    reader = DatasetReader(with_depth)
    eps = [reader.episode(i) for i in (0, 1)]
    segs = [encode_lerobot_depth(e.cameras["cam_wrist"].depth, 30.0, OneCodeDeeper()) for e in eps]
    rel = "videos/observation.images.cam_wrist_depth/chunk-000/file-000.mp4"
    concat_segments(segs, [e.length for e in eps], 30.0, bad / rel)
    report = verify_dataset(bad)
    assert any(p.startswith(f"depth: {rel}: episode 0: LeRobot depth differs") for p in report.problems), \
        report.format()


def test_an_ffv1_file_that_does_not_decode_is_named_not_the_lerobot_copy(with_depth, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(with_depth, bad)
    ffv1 = "depth/cam_high/chunk-000/file-000.mkv"
    (bad / ffv1).write_bytes(b"not a video" * 100)
    problems = verify_dataset(bad).problems
    assert any(p.startswith(f"depth: {ffv1}: episode 0 does not decode") for p in problems), problems
    assert not any("observation.images.cam_high_depth" in p and "does not decode" in p for p in problems), problems


def test_reopening_keeps_the_depth_statistics(with_depth, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(with_depth, root)
    before = json.loads((root / L.STATS).read_text())["observation.images.cam_wrist_depth"]
    write_dataset(root, small_episodes(2, start=5), shard_size=2, lerobot_depth=True)  # reopens, commits one more
    after = json.loads((root / L.STATS).read_text())["observation.images.cam_wrist_depth"]
    info = json.loads((root / L.INFO).read_text())
    assert after["count"] == [info["total_frames"]] and after["count"][0] > before["count"][0]
    assert verify_dataset(root).ok
