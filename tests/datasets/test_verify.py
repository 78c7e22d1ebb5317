"""`raygen verify` accepts good datasets and names the file and field of every problem."""

import json

import pytest

from raygen.cli import main


def _verify(capsys, root, *extra):
    code = main(["verify", str(root), *extra])
    return code, capsys.readouterr().out


def test_reference_fixture_is_valid(capsys, reference_dataset):
    code, out = _verify(capsys, reference_dataset, "--decode")
    assert code == 0, out
    assert "[SKIP] depth: not a raygen dataset" in out and "RESULT: VALID" in out


def test_written_dataset_is_valid(capsys, written):
    code, out = _verify(capsys, written[0])
    assert code == 0, out
    assert "[PASS] depth" in out and "bit-exact" in out and "[PASS] ledger: 3 shards, 7 episodes" in out


def test_deleted_video_is_caught(capsys, written_copy):
    root, _ = written_copy
    (root / "videos/observation.images.cam_wrist/chunk-000/file-001.mp4").unlink()
    code, out = _verify(capsys, root)
    assert code == 1
    assert "episode 3: video file videos/observation.images.cam_wrist/chunk-000/file-001.mp4 does not exist" in out
    assert "videos/observation.images.cam_wrist/chunk-000/file-001.mp4: named by the ledger but missing" in out


def test_truncated_parquet_is_caught(capsys, written_copy):
    root, _ = written_copy
    p = root / "data/chunk-000/file-002.parquet"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    code, out = _verify(capsys, root)
    assert code == 1
    assert "[FAIL] data" in out and "data/chunk-000/file-002.parquet: unreadable, possibly truncated" in out
    assert "data/chunk-000/file-002.parquet: " in out and "the ledger recorded" in out


def test_wrong_totals_are_caught(capsys, written_copy):
    root, _ = written_copy
    info = json.loads((root / "meta/info.json").read_text())
    info["total_frames"] += 5
    info["total_episodes"] = 9
    (root / "meta/info.json").write_text(json.dumps(info))
    code, out = _verify(capsys, root)
    assert code == 1
    assert "meta/info.json: total_episodes = 9 but metadata lists 7" in out
    assert "total_frames = 173 but episode lengths add up to 168" in out
    assert "meta/raygen/ledger.jsonl: names 7 episodes, info.json total_episodes = 9" in out


def test_depth_that_is_not_bit_exact_is_caught(capsys, written_copy, tmp_path):
    """Re-encode one depth file lossily (16-bit values shifted) with the same frame count."""
    import av
    import numpy as np

    from raygen.datasets._video import concat_segments, encode_depth

    root, eps = written_copy
    seg = [encode_depth((e.cameras["cam_high"].depth // 2 * 2).astype(np.uint16), 30.0) for e in eps[3:6]]
    p = root / "depth/cam_high/chunk-000/file-001.mkv"
    concat_segments(seg, [len(e.state) for e in eps[3:6]], 30.0, p)
    assert av.open(str(p)).streams.video[0].codec_context.name == "ffv1"
    code, out = _verify(capsys, root)
    assert code == 1
    assert "depth/cam_high/chunk-000/file-001.mkv: episode 3 depth is not bit-exact" in out


def test_orphan_file_is_caught(capsys, written_copy):
    root, _ = written_copy
    src = root / "flow/chunk-000/file-000.parquet"
    (root / "flow/chunk-000/file-007.parquet").write_bytes(src.read_bytes())
    code, out = _verify(capsys, root)
    assert code == 1 and "flow/chunk-000/file-007.parquet: not named by the ledger (orphan" in out


@pytest.mark.parametrize("orphan", ["copy", "partial"])
def test_an_orphan_data_file_is_reported_but_not_counted_in_the_stats(capsys, written_copy, orphan):
    """A crashed commit leaves a data file no episode points at: a copy of a committed one, or half of one."""
    root, _ = written_copy
    raw = (root / "data/chunk-000/file-000.parquet").read_bytes()
    (root / "data/chunk-000/file-007.parquet").write_bytes(raw if orphan == "copy" else raw[: len(raw) // 2])
    code, out = _verify(capsys, root)
    assert code == 1
    assert "data/chunk-000/file-007.parquet: data file that no episode points at" in out
    assert "data/chunk-000/file-007.parquet: not named by the ledger (orphan" in out
    assert "[PASS] stats" in out and "numeric features against the data" in out, out


@pytest.mark.parametrize("missing", ["meta/info.json"])
def test_not_a_dataset(capsys, tmp_path, missing):
    code, out = _verify(capsys, tmp_path)
    assert code == 1 and f"{missing}: missing; this is not a LeRobot dataset" in out
