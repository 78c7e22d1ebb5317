"""A dataset uploaded by raygen's own uploader loads in LeRobot from the Hub by repo id, as users load it (slow).

The live Hub is unreachable, so the Hub is tests/hubserver.py's LocalHub; the uploader and lerobot both talk to
it through their own huggingface_hub clients (raygen's in-process, lerobot's in its own venv, a different
huggingface_hub major version). lerobot is not a dependency: the test runs when RAYGEN_LEROBOT_PYTHON names a
lerobot interpreter or the default /tmp/lerobot-venv exists (tools/lerobot_venv.sh), and is skipped otherwise.

lerobot (0.4.x) loads ``LeRobotDataset(repo_id)`` with no local root like this: ``get_safe_version`` lists the
repo's refs (branches and tags) and picks the ref named after its CODEBASE_VERSION ("v3.0"), then
``snapshot_download(revision="v3.0", local_dir=$HF_LEROBOT_HOME/repo_id)`` fetches meta/ and then everything.
To prove the tag is what it loads, a commit pushed to main *after* tagging breaks meta/info.json and adds a junk
file: loading main would fail, loading the tag must not see either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from raygen.config import UploadConfig
from raygen.datasets import _layout as L
from raygen.datasets.hub import CARD, Uploader
from tests.compat.test_lerobot import LEROBOT_PY, save_expected
from tests.conftest import HUB_TOKEN, small_episodes, write_dataset

SCRIPT = Path(__file__).with_name("lerobot_hub_load.py")
REPO = "raygen-lab/hub-roundtrip"
JUNK = "after-tag.txt"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not Path(LEROBOT_PY).exists(), reason=f"no lerobot interpreter at {LEROBOT_PY}"),
]


def lerobot_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    """The environment of a user pointed at ``endpoint``: fresh caches, a token, no offline mode, no Xet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_TOKEN=HUB_TOKEN,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_LEROBOT_HOME=str(tmp_path / "lerobot_home"),  # lerobot.utils.constants; default $HF_HOME/lerobot
    )
    return env


def test_lerobot_loads_uploaded_dataset_from_hub_at_tag(tmp_path, local_hub):
    hub = local_hub
    eps = small_episodes(4, frames=16, height=32, width=48)
    root = tmp_path / "ds"
    write_dataset(root, eps, shard_size=2)  # default codec (libsvtav1), 2 shards
    n_frames = sum(len(e.state) for e in eps)

    # raygen's uploader: one shard per commit, then the dataset card and the v3.0 tag (private repo by default)
    Uploader(root, UploadConfig(repo=REPO, endpoint=hub.endpoint, batch_shards=1), token=HUB_TOKEN).finish()
    assert hub.private(REPO)
    ours = [c for c in hub.commits(REPO) if c.title.startswith("raygen:")]
    assert len(ours) >= 2, [c.title for c in hub.commits(REPO)]
    tagged = hub.head(REPO)
    assert hub.tags(REPO) == {L.CODEBASE_VERSION: tagged}
    tagged_files = hub.files(REPO, revision=L.CODEBASE_VERSION)
    assert CARD in tagged_files and "meta/info.json" in tagged_files
    info = json.loads(tagged_files["meta/info.json"])
    assert info["codebase_version"] == L.CODEBASE_VERSION == "v3.0"
    assert (info["total_episodes"], info["total_frames"]) == (len(eps), n_frames)

    # after tagging, main moves on with a commit that would break a load of main
    HfApi(endpoint=hub.endpoint, token=HUB_TOKEN).create_commit(
        REPO, repo_type="dataset", commit_message="after the tag: breaks main",
        operations=[CommitOperationAdd("meta/info.json", b"{ not json"), CommitOperationAdd(JUNK, b"junk")],
    )
    main_head = hub.head(REPO)
    assert main_head != tagged and hub.tags(REPO) == {L.CODEBASE_VERSION: tagged}

    save_expected(eps, tmp_path / "expected.npz")

    n_requests = len(hub.requests)
    proc = subprocess.run([LEROBOT_PY, str(SCRIPT), REPO, str(tmp_path / "expected.npz")], cwd=tmp_path,
                          env=lerobot_env(tmp_path, hub.endpoint), capture_output=True, text=True, timeout=540)
    seen = hub.requests[n_requests:]
    trace = "\n".join(f"{r.method} {r.path} -> {r.status}" for r in seen)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}\nrequests:\n{trace}"
    result = json.loads(lines[-1])
    print(json.dumps(result), file=sys.stderr)
    assert proc.returncode == 0 and result["ok"], result
    assert not hub.server_errors, hub.server_errors[0]

    # everything written is there and decodes like what raygen was given
    assert (result["episodes"], result["frames"], result["len"], result["items_read"]) == (len(eps), n_frames,
                                                                                            n_frames, n_frames)
    assert sorted(result["camera_keys"]) == ["observation.images.cam_high", "observation.images.cam_wrist"]
    assert result["root_under_lerobot_home"], result["root"]
    # downloaded from the tag: lerobot asked for "v3.0", every file came from the tagged commit, nothing of main's
    assert result["revision"] == result["meta_revision"] == L.CODEBASE_VERSION
    assert result["downloaded_from"] == [tagged], (result["downloaded_from"], tagged, main_head)
    assert JUNK not in result["local_files"]
    expected_files = {p for p in tagged_files if p != ".gitattributes"}
    assert expected_files <= set(result["local_files"]), expected_files - set(result["local_files"])

    # the requests lerobot's huggingface_hub made: refs (get_safe_version), repo info at the tag (snapshot_download),
    # then file downloads pinned to the tagged commit; nothing resolved on main, and no failures
    base = f"/api/datasets/{REPO}"
    assert any(r.method == "GET" and r.path == f"{base}/refs" for r in seen), trace
    assert any(r.method == "GET" and r.path == f"{base}/revision/{L.CODEBASE_VERSION}" for r in seen), trace
    resolves = [r for r in seen if "/resolve/" in r.path]
    assert resolves and all(f"/resolve/{tagged}/" in r.path for r in resolves), trace
    assert all(r.status is not None and r.status < 400 for r in seen), trace
