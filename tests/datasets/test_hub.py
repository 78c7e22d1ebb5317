"""The uploader against a local Hub-compatible server, through the real huggingface_hub client.

The server (tests/hubserver.py) is a test double for the live Hub, which is unreachable here; the client
code path (create_repo, preupload, LFS batch + PUT, commit, list_repo_tree, list_repo_commits, tags) is
huggingface_hub's own. Xet is off: the local server speaks the LFS protocol only.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest

from raygen.config import UploadConfig
from raygen.datasets import _layout as L
from raygen.datasets import hub as hubmod
from raygen.datasets.hub import CARD, Uploader, UploadError
from raygen.datasets.writer import DatasetWriter
from tests.conftest import HUB_TOKEN as TOKEN
from tests.conftest import small_episodes
from tests.datasets.test_hub_folder import local_files
from tests.hubserver import LocalHub

REPO = "lab/pick-place"
META = "lab/pick-place-meta"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def hub(local_hub):
    return local_hub


@pytest.fixture(scope="module")
def shards6(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub") / "ds"
    with DatasetWriter(root, shard_size=1) as w:
        for ep in small_episodes(6, frames=8, height=16, width=16):
            w.add(ep)
    return root


@pytest.fixture
def ds(shards6, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(shards6, root)
    return root


def cfg(hub: LocalHub, **kw) -> UploadConfig:
    kw.setdefault("repo", REPO)
    kw.setdefault("batch_shards", 2)
    kw.setdefault("attempts", 4)
    kw.setdefault("timeout_s", 1.0)
    return UploadConfig(endpoint=hub.endpoint, **kw)


def uploader(root: Path, hub: LocalHub, **kw) -> Uploader:
    return Uploader(root, cfg(hub, **kw), token=TOKEN, backoff_s=0.05)


def hub_content(hub: LocalHub, repo: str = REPO) -> dict[str, bytes]:
    return {k: v for k, v in hub.files(repo).items() if k not in (".gitattributes", CARD)}


def shard_adds(hub: LocalHub, repo: str = REPO) -> Counter:
    """How many commits added each numbered (shard) file: exactly once means all ones."""
    return Counter(p for c in hub.commits(repo) for p in c.added if L.chunk_file_of(p))


def test_batches_land_exactly_the_local_files_with_card_and_tag(ds, hub):
    up = uploader(ds, hub)
    rep = up.finish()[f"hf://datasets/{REPO}@main on {hub.endpoint}"]
    assert hub_content(hub) == local_files(ds)
    ours = [c for c in hub.commits(REPO) if c.title.startswith("raygen:")]
    assert [c.title.split(" [")[0] for c in ours] == [
        "raygen: shards 0-1, episodes 0-1", "raygen: shards 2-3, episodes 2-3", "raygen: shards 4-5, episodes 4-5",
        "raygen: dataset card"]
    assert rep.commits == 4 and set(shard_adds(hub).values()) == {1}
    assert L.INFO in ours[2].added and L.INFO not in ours[0].added  # metadata travels with the last batch
    assert hub.private(REPO) and hub.tags(REPO)["v3.0"] == hub.head(REPO)
    card = hub.files(REPO)[CARD].decode()
    assert "- LeRobot" in card and "| episodes | 6 |" in card
    stored = hub.stored_files(REPO)
    assert {f.lfs for p, f in stored.items() if p != ".gitattributes"} == {True, False}  # both upload paths

    # nothing new: no commit, the tag stays
    n = len(hub.commits(REPO))
    assert uploader(ds, hub).finish()[f"hf://datasets/{REPO}@main on {hub.endpoint}"].commits == 0
    assert len(hub.commits(REPO)) == n


def test_background_batches_during_a_run_and_the_final_flush(tmp_path, hub):
    """Shards committed while the uploader thread runs reach the Hub in several commits, each consistent."""
    root = tmp_path / "ds"
    eps = small_episodes(7, frames=8, height=16, width=16)
    w = DatasetWriter(root, shard_size=1)
    up = Uploader(root, cfg(hub, batch_shards=2, batch_interval_s=30), commit_lock=w.committer.commit_lock,
                  token=TOKEN, backoff_s=0.05).start()
    for ep in eps:
        w.add(ep)
        w.flush()
        up.notify()
    w.close()
    up.finish()
    assert hub_content(hub) == local_files(root)
    ours = [c for c in hub.commits(REPO) if c.title.startswith("raygen: shards")]
    assert len(ours) >= 3 and set(shard_adds(hub).values()) == {1}
    for c in ours:  # every commit that carries info.json describes exactly the shards the repo holds then
        if L.INFO in c.added:
            import json

            info = json.loads(c.tree[L.INFO].content)
            data = [p for p in c.tree if p.startswith("data/")]
            assert info["total_episodes"] == len(data)


@pytest.mark.parametrize("kind,path,after", [
    ("500", r"/commit/", 1),
    ("503", r"/commit/", 1),
    ("drop", r"/commit/", 1),
    ("timeout", r"/commit/", 1),
    ("conflict", r"/commit/", 1),
    ("commit_then_drop", r"/commit/", 1),
    ("commit_then_drop", r"/commit/", 3),
    ("503", r"/preupload/", 1),
    ("drop", r"/_localhub/lfs/", 1),
    ("timeout", r"/tree/", 0),
    ("500", r"/commits/", 0),
])
def test_faults_lose_nothing_and_duplicate_nothing(ds, hub, kind, path, after):
    hub.inject(kind, path=path, after=after)
    rep = uploader(ds, hub).finish()[f"hf://datasets/{REPO}@main on {hub.endpoint}"]
    hub.wait_idle()
    assert hub.faults_fired[kind] == 1
    assert hub_content(hub) == local_files(ds)
    assert set(shard_adds(hub).values()) == {1}, shard_adds(hub)
    titles = [c.title for c in hub.commits(REPO)]
    assert len(titles) == len(set(titles))  # no batch landed twice
    assert rep.pending_shards == 0


def test_crash_after_the_hub_commit_before_the_ledger_line(ds, hub, monkeypatch):
    real = hubmod._append_upload_ledger
    calls = []

    def crash_on_second(path, line):
        calls.append(line)
        if len(calls) == 2:
            raise OSError("simulated crash: the Hub has the batch, the upload ledger does not")
        real(path, line)

    monkeypatch.setattr(hubmod, "_append_upload_ledger", crash_on_second)
    with pytest.raises(UploadError, match="did not finish"):
        uploader(ds, hub).finish()
    monkeypatch.setattr(hubmod, "_append_upload_ledger", real)
    landed = len(hub.commits(REPO))
    rep = uploader(ds, hub).finish()[f"hf://datasets/{REPO}@main on {hub.endpoint}"]
    assert rep.reconciled_shards == 2  # found on the Hub, recorded, not sent
    assert set(shard_adds(hub).values()) == {1}, shard_adds(hub)
    assert hub_content(hub) == local_files(ds)
    assert len(hub.commits(REPO)) == landed + 2  # shards 4-5 (+ metadata) and the card only


def test_a_failed_batch_stays_pending_and_goes_at_the_next_pass(ds, hub, caplog):
    hub.inject("503", path=r"/commit/", times=100)
    up = uploader(ds, hub, attempts=2)
    with caplog.at_level(logging.WARNING):
        reps = up.upload_pending()
    rep = reps[f"hf://datasets/{REPO}@main on {hub.endpoint}"]
    assert rep.pending_shards == 6 and rep.last_error and "503" in rep.last_error
    assert not any(L.chunk_file_of(p) for p in hub.files(REPO))
    hub.clear_faults()
    up.finish()
    assert hub_content(hub) == local_files(ds)
    assert (ds / "data/chunk-000/file-000.parquet").exists()  # local files are never deleted


def test_metadata_repo_and_a_branch(ds, hub):
    up = uploader(ds, hub, metadata_repo=META, revision="raygen-runs", private=False)
    up.finish()
    meta = hub.files(META, revision="raygen-runs")
    assert not [p for p in meta if p.startswith(("videos/", "depth/"))]
    assert any(p.startswith("data/") for p in meta) and L.INFO in meta
    assert any(p.startswith("videos/") for p in hub.files(REPO, revision="raygen-runs"))
    assert not hub.private(META)
    assert hub.tags(META)["v3.0"] == hub.head(META, revision="raygen-runs")


def test_a_wrong_token_fails_at_start_and_never_shows(ds, hub, caplog):
    bad = "wrong-wrong-wrong-0987654321"
    with caplog.at_level(logging.DEBUG), pytest.raises(UploadError) as info:
        Uploader(ds, cfg(hub), token=bad, backoff_s=0.01).start()
    assert "401" in str(info.value) and bad not in str(info.value)
    assert bad not in caplog.text
    assert not hub.repo_exists(REPO)


def test_token_from_env_file_and_env_never_reaches_logs_files_or_errors(ds, hub, tmp_path, monkeypatch, caplog,
                                                                        capfd):
    env = tmp_path / "hf.env"
    env.write_text(f"HF_TOKEN='{TOKEN}'\n")
    hub.inject("500", path=r"/commit/", after=1)
    with caplog.at_level(logging.DEBUG):
        up = Uploader(ds, cfg(hub, env_file=str(env)), backoff_s=0.05)
        up.finish()
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        hub.inject("503", path=r"/commit/", times=100)
        (ds / L.DIVERSITY).write_text('{"overall_score": 0.5}')
        with pytest.raises(UploadError) as info:
            Uploader(ds, cfg(hub, attempts=2), backoff_s=0.01).finish()
    out, err = capfd.readouterr()
    texts = [caplog.text, out, err, str(info.value), repr(info.value)]
    texts += [p.read_bytes().decode("latin-1") for p in ds.rglob("*") if p.is_file()]
    texts += [v.decode("latin-1") for v in hub.files(REPO).values()]
    texts += [repr(r) for r in hub.requests]
    assert all(TOKEN not in t for t in texts)
    assert "upload" in caplog.text  # the logs were captured at all


def test_raygen_upload_cli(ds, hub, monkeypatch, capsys):
    from raygen.cli import main

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["upload", str(ds), "--repo", f"hf://datasets/{REPO}", "--metadata-repo", META,
                 "--endpoint", hub.endpoint, "--batch-shards", "4"]) == 0
    out = capsys.readouterr().out
    assert f"hf://datasets/{REPO}@main on {hub.endpoint}: 3 commits" in out and "(metadata only)" in out
    assert hub_content(hub) == local_files(ds)
    assert main(["upload", str(ds.parent / "nope"), "--repo", REPO]) == 2


def test_new_metadata_under_old_names_is_sent_every_time(ds, hub):
    """A batch id names content: a later run.json is not mistaken for the earlier commit of run.json."""
    uploader(ds, hub).finish()
    for gen in range(2):
        (ds / L.RUN).write_text(f'{{"generation": {gen}}}')
        rep = uploader(ds, hub).finish()[f"hf://datasets/{REPO}@main on {hub.endpoint}"]
        assert hub.files(REPO)[L.RUN] == (ds / L.RUN).read_bytes(), gen
        assert rep.commits == 1
