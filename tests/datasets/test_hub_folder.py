"""The uploader against a plain folder target: batches, metadata-only, resume from the upload ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raygen.config import ConfigError, UploadConfig
from raygen.datasets import _layout as L
from raygen.datasets.hub import CARD, FolderTarget, Uploader, make_target
from raygen.datasets.writer import DatasetWriter
from tests.conftest import small_episodes


def local_files(root: Path) -> dict[str, bytes]:
    """What an upload of ``root`` must deliver: everything but the lock, the upload ledger, staging and the
    saved statistics state (local to the writer)."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in (L.LOCK, L.UPLOADS) and not rel.startswith((L.STAGING + "/",
                                                                                  L.STATS_STATE_DIR + "/")):
            out[rel] = p.read_bytes()
    return out


def folder_files(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def five_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubfolder") / "ds"
    with DatasetWriter(root, shard_size=1) as w:
        for ep in small_episodes(5, frames=8, height=16, width=16):
            w.add(ep)
    return root


def test_folder_upload_in_batches_then_nothing_to_do(five_shards, tmp_path):
    root = tmp_path / "ds"
    import shutil

    shutil.copytree(five_shards, root)
    dest = tmp_path / "mirror"
    up = Uploader(root, UploadConfig(repo=str(dest), batch_shards=2))
    rep = up.finish()[f"file://{dest.resolve()}"]
    assert rep.commits == 3 + 1  # shards 0-1, 2-3, 4 (+ metadata), then the card
    got = folder_files(dest)
    want = local_files(root)
    assert set(got) == set(want) | {CARD}
    assert all(got[k] == want[k] for k in want)
    assert rep.pending_shards == 0 and rep.bytes >= sum(len(v) for v in want.values())
    lines = L.read_jsonl(root / L.UPLOADS)
    assert sorted(s for line in lines for s in line["shards"]) == [0, 1, 2, 3, 4]
    card = got[CARD].decode()
    assert "- LeRobot" in card and "data_files: data/*/*.parquet" in card and "| episodes | 5 |" in card

    # a second upload finds everything there: no commit at all
    again = Uploader(root, UploadConfig(repo=str(dest), batch_shards=2)).finish()
    assert again[f"file://{dest.resolve()}"].commits == 0


def test_metadata_only_target_has_no_video_or_depth(five_shards, tmp_path):
    dest, meta = tmp_path / "full", tmp_path / "meta"
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(five_shards, root)
    Uploader(root, UploadConfig(repo=str(dest), metadata_repo=str(meta))).finish()
    got = folder_files(meta)
    assert not [p for p in got if p.startswith(("videos/", "depth/"))]
    assert any(p.startswith("data/") for p in got) and any(p.startswith("flow/") for p in got)
    assert L.INFO in got and "meta/episodes/chunk-000/file-004.parquet" in got
    assert any(p.startswith("videos/") for p in folder_files(dest))
    assert "Metadata only" in got[CARD].decode()


def test_missing_shard_files_are_sent_again_and_a_foreign_dataset_is_refused(five_shards, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(five_shards, root)
    dest = tmp_path / "mirror"
    Uploader(root, UploadConfig(repo=str(dest))).finish()
    gone = dest / "data/chunk-000/file-002.parquet"
    gone.unlink()
    rep = Uploader(root, UploadConfig(repo=str(dest))).finish()[f"file://{dest.resolve()}"]
    assert gone.read_bytes() == (root / "data/chunk-000/file-002.parquet").read_bytes()
    shard2 = L.read_jsonl(root / L.LEDGER)[2]["files"]
    assert rep.files == len(shard2) and rep.commits == 1  # that shard again, nothing else
    # trusting the ledger skips the check: a deleted file stays missing
    gone.unlink()
    Uploader(root, UploadConfig(repo=str(dest), skip_hub_check=True)).finish()
    assert not gone.exists()
    # the same paths with other sizes: another dataset lives there
    (dest / "data/chunk-000/file-000.parquet").write_bytes(b"not this dataset")
    with pytest.raises(RuntimeError, match="another dataset"):
        Uploader(root, UploadConfig(repo=str(dest))).finish()


def test_targets_and_token_errors(tmp_path, monkeypatch):
    cfg = UploadConfig()
    assert isinstance(make_target(str(tmp_path / "x"), cfg, None), FolderTarget)
    assert isinstance(make_target("file:///tmp/x", cfg, None), FolderTarget)
    with pytest.raises(ConfigError, match="no Hugging Face token"):
        make_target("org/name", cfg, None)
    with pytest.raises(ConfigError, match="only dataset repos"):
        make_target("hf://models/org/name", cfg, "tok")
    with pytest.raises(ConfigError, match="nothing to upload"):
        Uploader(tmp_path, cfg)
    env = tmp_path / "secrets.env"
    env.write_text("# comment\nOTHER=1\n")
    with pytest.raises(ConfigError, match="no HF_TOKEN") as info:
        Uploader(tmp_path, UploadConfig(repo="org/name", env_file=str(env)))
    assert str(env) in str(info.value)
    with pytest.raises(ConfigError, match="does not exist"):
        Uploader(tmp_path, UploadConfig(repo="org/name", env_file=str(tmp_path / "nope.env")))
    with pytest.raises(ValueError, match="upload.repo"):
        from raygen.config import load_config

        load_config(None, ["upload.repo=''"])
    assert json.loads(json.dumps(UploadConfig().model_dump()))["batch_interval_s"] == 600


def test_the_interval_sends_shards_without_a_notify(tmp_path):
    """Fewer shards than batch_shards wait: the batch_interval_s timer sends them anyway."""
    import time

    root, dest = tmp_path / "ds", tmp_path / "mirror"
    w = DatasetWriter(root, shard_size=1)
    up = Uploader(root, UploadConfig(repo=str(dest), batch_shards=100, batch_interval_s=0.5),
                  commit_lock=w.committer.commit_lock).start()
    try:
        for ep in small_episodes(2, frames=8, height=16, width=16):
            w.add(ep)
            w.flush()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (dest / "data/chunk-000/file-001.parquet").exists():
            time.sleep(0.1)
        assert (dest / "data/chunk-000/file-001.parquet").exists()
    finally:
        w.close()
        up.stop()
    assert not (dest / CARD).exists()  # the card comes with finish(), not with a batch


def test_an_fsspec_url_target(five_shards, tmp_path):
    import shutil

    import fsspec

    root = tmp_path / "ds"
    shutil.copytree(five_shards, root)
    Uploader(root, UploadConfig(repo="memory://mirror/pick-place", batch_shards=3)).finish(card=False)
    fs = fsspec.filesystem("memory")
    got = {p.split("/pick-place/", 1)[1] for p in fs.find("/mirror/pick-place")}
    assert got == set(local_files(root))
    assert fs.cat_file("/mirror/pick-place/meta/info.json") == (root / L.INFO).read_bytes()
    lines = L.read_jsonl(root / L.UPLOADS)
    assert [len(line["shards"]) for line in lines] == [3, 2] and lines[0]["target"] == "memory://mirror/pick-place"


def test_raygen_upload_recovers_a_crashed_dataset_first(five_shards, tmp_path):
    """A crash after the metadata rewrite, before the ledger line: the upload sends the recovered dataset."""
    import shutil

    from raygen.datasets.verify import verify_dataset

    root, dest = tmp_path / "ds", tmp_path / "mirror"
    shutil.copytree(five_shards, root)
    ledger = (root / L.LEDGER).read_text().splitlines(keepends=True)
    (root / L.LEDGER).write_text("".join(ledger[:-1]) + ledger[-1][:20])  # the last commit never completed
    Uploader(root, UploadConfig(repo=str(dest))).finish()
    assert verify_dataset(dest).ok
    assert L.read_json(dest / L.INFO)["total_episodes"] == 4
    assert not (dest / "data/chunk-000/file-004.parquet").exists()


def test_a_torn_upload_ledger_line_is_cut_not_fatal(five_shards, tmp_path, caplog):
    import logging
    import shutil

    root, dest = tmp_path / "ds", tmp_path / "mirror"
    shutil.copytree(five_shards, root)
    Uploader(root, UploadConfig(repo=str(dest), batch_shards=2)).finish()
    with open(root / L.UPLOADS, "a") as f:
        f.write('{"target": "file:///x", "sha')  # a crash mid-append
    with caplog.at_level(logging.WARNING):
        rep = Uploader(root, UploadConfig(repo=str(dest))).finish()[f"file://{dest.resolve()}"]
    assert "torn last line" in caplog.text and rep.commits == 0
    assert len(L.read_jsonl(root / L.UPLOADS)) == 4  # intact, and appendable again
    (root / L.UPLOADS).write_text((root / L.UPLOADS).read_text() + "not json\n")
    with pytest.raises(ValueError, match=r"uploads.jsonl: line 5 is not JSON"):
        Uploader(root, UploadConfig(repo=str(dest)))
    DatasetWriter(root).close()  # the failed open released the dataset's lock
