"""Shared factories: synthetic episodes, small written datasets, an isolated HF_HOME."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import av
import pytest

from raygen.datasets.synthetic import synthetic_episode
from raygen.datasets.writer import DatasetWriter

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "lerobot-v3.0-reference"
if not REFERENCE.exists():  # a clean clone has shared/ beside it; a worktree may sit deeper
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "fixtures" / "lerobot-v3.0-reference").exists():
            REFERENCE = parent / "shared" / "fixtures" / "lerobot-v3.0-reference"
            break

av.logging.set_level(av.logging.ERROR)

# Core claims (raygen.actors.cores) of the tests' simulators stay apart from those of real runs on this
# machine; set before any Ray instance starts, so its workers inherit it.
os.environ.setdefault("RAYGEN_CORE_CLAIMS_DIR", tempfile.mkdtemp(prefix="raygen-test-cores-"))


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf_home"))


HUB_TOKEN = "raygen-test-secret-0123456789"


@pytest.fixture
def local_hub(monkeypatch: pytest.MonkeyPatch):
    """A local Hub-compatible server (test double for the unreachable live Hub), token ``HUB_TOKEN``."""
    from huggingface_hub.utils import _http

    from tests.hubserver import LocalHub, patch_hf_client

    with LocalHub(token=HUB_TOKEN, lfs_threshold=2048, slow_seconds=3.0) as server:
        patch_hf_client(monkeypatch, server)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server
        assert not server.server_errors, server.server_errors[0]
    _http.set_client_factory(_http.default_client_factory)  # the uploader sets a client with a timeout


@pytest.fixture(scope="session")
def reference_dataset() -> Path:
    if not REFERENCE.exists():
        pytest.skip(f"reference fixture not found at {REFERENCE}")
    return REFERENCE


def small_episodes(n: int, *, start: int = 0, **kw):
    kw.setdefault("frames", 24)
    kw.setdefault("height", 32)
    kw.setdefault("width", 48)
    kw.setdefault("flow", True)
    return [synthetic_episode(i, **kw) for i in range(start, start + n)]


def write_dataset(root: Path, episodes, shard_size: int = 3, **kw) -> DatasetWriter:
    with DatasetWriter(root, shard_size=shard_size, **kw) as w:
        for ep in episodes:
            w.add(ep)
    return w


@pytest.fixture(scope="session")
def written(tmp_path_factory: pytest.TempPathFactory):
    """A 7-episode, 3-shard dataset with the default codec (libsvtav1), depth and flow; do not modify."""
    root = tmp_path_factory.mktemp("written") / "ds"
    eps = small_episodes(7)
    write_dataset(root, eps, shard_size=3)
    return root, eps


@pytest.fixture
def written_copy(written, tmp_path: Path):
    """A private copy of ``written`` that a test may damage."""
    root, eps = written
    dst = tmp_path / "ds"
    shutil.copytree(root, dst)
    return dst, eps


FAKES = Path(__file__).resolve().parent / "fakes"
"""Test doubles (tests/fakes/README.md): the pyzed double lives here."""


@pytest.fixture(scope="session")
def droid_tree(tmp_path_factory: pytest.TempPathFactory):
    """A synthetic DROID raw tree (tests/droid_synth.py): two successes (released and newer metadata
    spelling, different days) and one failure, 24 steps at 320x180; do not modify (copy it)."""
    import datetime as dt

    from tests.droid_synth import make_episode

    root = tmp_path_factory.mktemp("droid") / "droid_raw"
    eps = [make_episode(root, 0, steps=24),
           make_episode(root, 1, steps=24, version_key="droid_version", day=dt.date(2023, 8, 1), im128=False,
                        h5_intrinsics=True),
           make_episode(root, 2, steps=24, outcome="failure", lab="OTHERLAB", truth=False)]
    return root, eps
