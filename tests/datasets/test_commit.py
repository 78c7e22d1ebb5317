"""Exactly once across crashes: a process killed mid-commit leaves a dataset that resumes cleanly."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from raygen.datasets import Committer, DatasetLayoutError, DatasetWriter
from raygen.datasets.reader import DatasetReader
from raygen.datasets.verify import verify_dataset
from tests.conftest import small_episodes

REPO = Path(__file__).resolve().parents[2]

# The child writes 7 episodes in shards of 3 and dies with os._exit (no cleanup, no finally blocks)
# at the chosen point of the SECOND shard's commit.
CHILD = textwrap.dedent(
    """
    import os, sys
    import raygen.datasets.commit as commit
    from raygen.datasets.writer import DatasetWriter
    from tests.conftest import small_episodes

    point = sys.argv[2]
    calls = {"move": 0, "ledger": 0}
    real_move, real_ledger = commit._move, commit._append_ledger

    def move(src, dst):
        calls["move"] += 1
        if point == "mid-move" and calls["move"] == 6:  # 4 moves per shard: 2 cameras x (video, depth)
            os._exit(17)
        real_move(src, dst)

    def ledger(path, entry):
        if point == "before-ledger" and entry["seq"] == 1:
            os._exit(17)
        if point == "first-commit" and entry["seq"] == 0:
            os._exit(17)
        if point == "torn-ledger" and entry["seq"] == 1:
            with open(path, "a") as f:
                f.write('{"seq": 1, "shard_id": "half-writ')
            os._exit(17)
        real_ledger(path, entry)

    commit._move, commit._append_ledger = move, ledger
    with DatasetWriter(sys.argv[1], shard_size=3) as w:
        for ep in small_episodes(7, frames=8, height=16, width=16):
            w.add(ep)
    """
)


def _crash_child(root: Path, point: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), point], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr[-2000:]


@pytest.mark.parametrize("point", ["before-ledger", "mid-move", "torn-ledger", "first-commit"])
def test_crash_mid_commit_resumes_without_duplicates_or_orphans(tmp_path, point):
    root = tmp_path / "ds"
    _crash_child(root, point)
    # the crash left the second shard's files (some or all) in place, but the ledger names only the first
    failed = "file-000.*" if point == "first-commit" else "file-001.*"
    committed = 0 if point == "first-commit" else 3
    leftovers = sorted(p.relative_to(root).as_posix() for p in root.rglob(failed))
    assert leftovers, "the crash should have left uncommitted files behind"
    before = verify_dataset(root)
    if point != "mid-move":
        assert not before.ok  # info.json was already rewritten for the uncommitted shard, and orphans exist

    w = DatasetWriter(root, shard_size=3)
    eps = small_episodes(7, frames=8, height=16, width=16)
    assert w.committed_keys == {e.episode_key for e in eps[:committed]}
    assert not list(root.rglob(failed)), "orphans of the failed commit must be gone"
    assert not (root / ".staging").exists()
    if committed:
        info = json.loads((root / "meta/info.json").read_text())
        assert (info["total_episodes"], info["total_frames"]) == (3, 24)
        assert verify_dataset(root).ok
    else:
        assert not (root / "meta/info.json").exists()
    with w:
        for e in eps:
            if e.episode_key not in w.committed_keys:
                w.add(e)
    report = verify_dataset(root)
    assert report.ok, report.format()
    reader = DatasetReader(root)
    assert reader.keys == [e.episode_key for e in eps]  # each exactly once, in order
    ledger = (root / "meta/raygen/ledger.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in ledger] == [0, 1, 2]


def test_staged_shard_never_committed_is_discarded(tmp_path):
    root = tmp_path / "ds"
    with DatasetWriter(root, shard_size=2) as w:
        for e in small_episodes(2, frames=6, height=16, width=16):
            w.add(e)
    (root / ".staging/abc123.partial/videos").mkdir(parents=True)
    (root / ".staging/abc123.partial/videos/cam_high.mp4").write_bytes(b"half")
    (root / ".staging/def456").mkdir()
    c = Committer(root)
    assert c.total_episodes == 2 and not (root / ".staging").exists()


def test_plain_lerobot_dataset_is_not_appended_to(reference_dataset, tmp_path):
    import shutil

    shutil.copytree(reference_dataset, tmp_path / "ref")
    with pytest.raises(DatasetLayoutError, match="has 3 episodes but no meta/raygen/ledger.jsonl"):
        Committer(tmp_path / "ref")


def test_lost_committed_file_is_reported_not_papered_over(written_copy):
    root, _ = written_copy
    (root / "depth/cam_high/chunk-000/file-001.mkv").unlink()
    with pytest.raises(DatasetLayoutError, match="the ledger names 1 files that are gone"):
        Committer(root)
