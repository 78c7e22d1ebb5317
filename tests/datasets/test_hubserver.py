"""Tests of tests/hubserver.py (LocalHub) driven by the real huggingface_hub client."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoFile, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.hubserver import COMMIT_CONFLICT_MESSAGE, GITATTRIBUTES_PATH, LocalHub, patch_hf_client

TOKEN = "localhub_test_token_0123456789"
REPO = "raygen-test/droid-mini"

SMALL = b'{"codebase_version": "v3.0", "fps": 15}\n'
VIDEO = os.urandom(6000)  # >= lfs_threshold: goes through Git LFS
PARQUET = b"PAR1" + os.urandom(3000) + b"PAR1"

# huggingface_hub's LFS PUT passes a file object as `data=`, which httpx2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


@pytest.fixture(autouse=True)
def _hf_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Xet off for the installed client: the env var alone is too late, the constant is read at import."""
    patch_hf_client(monkeypatch)
    assert constants.HF_HUB_DISABLE_XET is True


@pytest.fixture
def hub() -> Iterator[LocalHub]:
    with LocalHub(token=TOKEN) as local_hub:
        yield local_hub
        assert local_hub.server_errors == []


@pytest.fixture
def api(hub: LocalHub) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=TOKEN)


def content(hub: LocalHub, revision: str = "main") -> dict[str, bytes]:
    """Files of REPO at a revision, without the .gitattributes the hub adds to every new repo."""
    return {p: c for p, c in hub.files(REPO, revision=revision).items() if p != GITATTRIBUTES_PATH}


def first_commit(api: HfApi) -> str:
    """Create REPO and commit a small regular file and two LFS files; returns the commit oid."""
    api.create_repo(REPO, repo_type="dataset")
    operations = [
        CommitOperationAdd("meta/info.json", SMALL),
        CommitOperationAdd("videos/chunk-000/file-000.mp4", VIDEO),
        CommitOperationAdd("data/chunk-000/file-000.parquet", PARQUET),
    ]
    return api.create_commit(REPO, operations, commit_message="Upload shard 0", repo_type="dataset").oid


def statuses(hub: LocalHub, method: str, path: str) -> list[int | None]:
    return [r.status for r in hub.calls(method, path)]


@pytest.mark.timeout(60)
def test_create_repo_private_and_exist_ok(hub: LocalHub, api: HfApi) -> None:
    url = api.create_repo(REPO, repo_type="dataset", private=True)
    assert url.repo_id == REPO and url.repo_type == "dataset"
    assert hub.repo_exists(REPO) and hub.private(REPO)
    assert not hub.repo_exists(REPO, repo_type="model")

    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO, repo_type="dataset")
    assert err.value.response.status_code == 409
    assert api.create_repo(REPO, repo_type="dataset", exist_ok=True).repo_id == REPO

    info = api.dataset_info(REPO)
    assert info.private is True and info.sha == hub.head(REPO)
    assert [s.rfilename for s in info.siblings] == [GITATTRIBUTES_PATH]
    with pytest.raises(RepositoryNotFoundError):  # private: no token, no read
        HfApi(endpoint=hub.endpoint, token=False).dataset_info(REPO)
    assert api.repo_exists(REPO, repo_type="dataset")
    assert not api.repo_exists("raygen-test/missing", repo_type="dataset")


@pytest.mark.timeout(60)
def test_commit_regular_and_lfs_files(hub: LocalHub, api: HfApi) -> None:
    oid = first_commit(api)

    assert content(hub) == {
        "meta/info.json": SMALL,
        "videos/chunk-000/file-000.mp4": VIDEO,
        "data/chunk-000/file-000.parquet": PARQUET,
    }
    stored = hub.stored_files(REPO)
    assert not stored["meta/info.json"].lfs
    assert stored["videos/chunk-000/file-000.mp4"].lfs and stored["data/chunk-000/file-000.parquet"].lfs
    assert sorted(api.list_repo_files(REPO, repo_type="dataset")) == sorted(hub.files(REPO))
    listing = api.list_repo_tree(REPO, repo_type="dataset", recursive=True)
    tree = {f.path: f for f in listing if isinstance(f, RepoFile)}
    assert tree["videos/chunk-000/file-000.mp4"].lfs.sha256 == stored["videos/chunk-000/file-000.mp4"].sha256
    assert tree["meta/info.json"].lfs is None and tree["meta/info.json"].size == len(SMALL)

    # Went through the LFS protocol (not Xet): one batch call, one PUT per object, then the commit.
    assert statuses(hub, "POST", r"/info/lfs/objects/batch$") == [200]
    assert statuses(hub, "PUT", r"^/_localhub/lfs/") == [200, 200]
    assert not hub.calls(path="xet")
    assert set(hub.lfs_objects(REPO)) == {stored[p].sha256 for p in stored if stored[p].lfs}

    commit = hub.commits(REPO)[-1]
    assert commit.oid == oid == hub.head(REPO) and commit.title == "Upload shard 0"
    assert set(commit.added) == {"meta/info.json", "videos/chunk-000/file-000.mp4", "data/chunk-000/file-000.parquet"}


@pytest.mark.timeout(60)
def test_hf_hub_download(hub: LocalHub, api: HfApi, tmp_path: Path) -> None:
    oid = first_commit(api)
    for path, expected in content(hub).items():
        local = hf_hub_download(
            REPO, path, repo_type="dataset", endpoint=hub.endpoint, token=TOKEN, cache_dir=tmp_path / "cache"
        )
        assert Path(local).read_bytes() == expected

    # An older revision stays downloadable after the file changed.
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="meta/info.json", repo_id=REPO, repo_type="dataset")
    old = hf_hub_download(
        REPO, "meta/info.json", repo_type="dataset", revision=oid, endpoint=hub.endpoint, cache_dir=tmp_path / "c2"
    )
    assert Path(old).read_bytes() == SMALL
    assert hub.files(REPO)["meta/info.json"] == b"{}" and hub.files(REPO, revision=oid)["meta/info.json"] == SMALL


@pytest.mark.timeout(60)
def test_delete_history_tags_and_branches(hub: LocalHub, api: HfApi) -> None:
    first = first_commit(api)
    second = api.create_commit(
        REPO,
        [CommitOperationDelete("meta/info.json")],
        commit_message="Drop info",
        repo_type="dataset",
        parent_commit=first,
    ).oid
    assert "meta/info.json" not in hub.files(REPO) and "meta/info.json" in hub.files(REPO, revision=first)
    assert hub.commits(REPO)[-1].deleted == ("meta/info.json",)

    commits = api.list_repo_commits(REPO, repo_type="dataset")
    assert [c.title for c in commits] == ["Drop info", "Upload shard 0", "initial commit"]
    assert [c.commit_id for c in commits[:2]] == [second, first]
    assert [c.oid for c in hub.commits(REPO)] == [c.commit_id for c in reversed(commits)]

    api.create_tag(REPO, tag="v3.0", repo_type="dataset")
    api.create_tag(REPO, tag="v2.1", revision=first, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(REPO, tag="v3.0", repo_type="dataset")
    assert err.value.response.status_code == 409
    refs = api.list_repo_refs(REPO, repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags} == {"v3.0": second, "v2.1": first} == hub.tags(REPO)
    assert hub.files(REPO, revision="v2.1") == hub.files(REPO, revision=first)
    with pytest.raises(KeyError):
        hub.files(REPO, revision="v9.9")

    api.create_branch(REPO, branch="staging", revision=first, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, repo_type="dataset", revision="staging")
    assert "x.txt" in hub.files(REPO, revision="staging") and "x.txt" not in hub.files(REPO)
    assert hub.head(REPO) == second
    assert {b.name for b in api.list_repo_refs(REPO, repo_type="dataset").branches} == {"main", "staging"}


@pytest.mark.timeout(60)
def test_wrong_token_is_refused_and_changes_nothing(hub: LocalHub, api: HfApi) -> None:
    first_commit(api)
    before = (hub.commits(REPO), hub.files(REPO), hub.tags(REPO), hub.lfs_objects(REPO))
    intruder = HfApi(endpoint=hub.endpoint, token="hf_wrong_token")

    with pytest.raises(HfHubHTTPError) as err:
        intruder.create_commit(
            REPO, [CommitOperationAdd("evil.mp4", os.urandom(4096))], commit_message="evil", repo_type="dataset"
        )
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as err:
        intruder.create_tag(REPO, tag="evil", repo_type="dataset")
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError):
        intruder.create_repo("raygen-test/evil", repo_type="dataset")
    anonymous = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(HfHubHTTPError) as err:
        anonymous.delete_file("meta/info.json", repo_id=REPO, repo_type="dataset")
    assert err.value.response.status_code == 401

    assert (hub.commits(REPO), hub.files(REPO), hub.tags(REPO), hub.lfs_objects(REPO)) == before
    assert not hub.repo_exists("raygen-test/evil")
    assert anonymous.list_repo_files(REPO, repo_type="dataset")  # public reads need no token
    # Nothing the server records holds a token.
    assert all(TOKEN not in repr(r) and "hf_wrong_token" not in repr(r) for r in hub.requests)


@pytest.mark.timeout(60)
def test_stale_parent_commit_is_a_412_conflict(hub: LocalHub, api: HfApi) -> None:
    first = first_commit(api)
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(
            REPO, [CommitOperationAdd("b.txt", b"2")], commit_message="late", repo_type="dataset", parent_commit=first
        )
    assert err.value.response.status_code == 412 and COMMIT_CONFLICT_MESSAGE in str(err.value)
    assert "b.txt" not in hub.files(REPO)


@pytest.mark.timeout(60)
def test_fault_500_on_commit_is_not_retried(hub: LocalHub, api: HfApi) -> None:
    first_commit(api)
    head = hub.head(REPO)
    hub.inject("500", method="POST", path=r"/commit/main$")
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    assert err.value.response.status_code == 500
    assert hub.faults_fired["500"] == 1 and statuses(hub, "POST", "/commit/")[-1:] == [500]
    assert hub.head(REPO) == head and "a.txt" not in hub.files(REPO)
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    assert hub.files(REPO)["a.txt"] == b"1"


@pytest.mark.timeout(60)
def test_fault_after_skips_matching_requests(hub: LocalHub, api: HfApi) -> None:
    api.create_repo(REPO, repo_type="dataset")
    hub.inject("500", method="POST", path=r"/commit/", after=1)
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError):
        api.upload_file(path_or_fileobj=b"2", path_in_repo="b.txt", repo_id=REPO, repo_type="dataset")
    assert statuses(hub, "POST", "/commit/") == [200, 500] and hub.pending_faults() == []


@pytest.mark.timeout(60)
def test_fault_503_on_preupload_and_502_on_lfs_put_are_retried(hub: LocalHub, api: HfApi) -> None:
    api.create_repo(REPO, repo_type="dataset")
    hub.inject("503", path=r"/preupload/")
    hub.inject("502", method="PUT", path=r"^/_localhub/lfs/")
    api.upload_file(path_or_fileobj=VIDEO, path_in_repo="v.mp4", repo_id=REPO, repo_type="dataset")
    assert statuses(hub, "POST", "/preupload/") == [503, 200]
    assert statuses(hub, "PUT", "/_localhub/lfs/") == [502, 200]
    assert hub.faults_fired == {"503": 1, "502": 1}
    assert hub.files(REPO)["v.mp4"] == VIDEO


@pytest.mark.timeout(60)
def test_fault_timeout(hub: LocalHub, api: HfApi) -> None:
    first_commit(api)
    # A client with a short timeout gives up; the server answers later anyway.
    hub.slow_seconds = 1.5
    hub.inject("timeout", method="GET", path=r"^/api/datasets/")
    with pytest.raises(httpx2.TimeoutException):
        api.dataset_info(REPO, timeout=0.3)
    assert hub.wait_idle(timeout=5)
    assert hub.calls("GET", r"^/api/datasets/")[-1].status == 200 and hub.faults_fired["timeout"] == 1

    # The commit POST has no client timeout at all (shared httpx2 client: timeout=None): it just waits.
    hub.slow_seconds = 0.5
    hub.inject("timeout", method="POST", path=r"/commit/")
    started = time.monotonic()
    api.upload_file(path_or_fileobj=b"1", path_in_repo="slow.txt", repo_id=REPO, repo_type="dataset")
    assert time.monotonic() - started >= 0.5 and hub.files(REPO)["slow.txt"] == b"1"


@pytest.mark.timeout(60)
def test_fault_timeout_sleep_ends_on_shutdown() -> None:
    with LocalHub(token=TOKEN, slow_seconds=30) as hub:
        api = HfApi(endpoint=hub.endpoint, token=TOKEN)
        api.create_repo(REPO, repo_type="dataset")
        hub.inject("timeout", method="GET")
        with pytest.raises(httpx2.TimeoutException):
            api.dataset_info(REPO, timeout=0.3)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert hub.wait_idle(timeout=5) and hub.requests[-1].status is None  # given up, not answered


@pytest.mark.timeout(60)
def test_fault_drop(hub: LocalHub, api: HfApi, tmp_path: Path) -> None:
    first_commit(api)
    head = hub.head(REPO)
    # The commit POST is sent once: a dropped connection reaches the caller, nothing is applied.
    hub.inject("drop", method="POST", path=r"/commit/")
    with pytest.raises(httpx2.RemoteProtocolError):
        api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    assert hub.head(REPO) == head and statuses(hub, "POST", "/commit/")[-1] is None

    # preupload goes through http_backoff: the drop is retried transparently.
    hub.inject("drop", path=r"/preupload/")
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    assert statuses(hub, "POST", "/preupload/")[-2:] == [None, 200] and hub.files(REPO)["a.txt"] == b"1"

    # hf_hub_download does not catch a dropped HEAD (RemoteProtocolError is not a "connection" error there).
    hub.inject("drop", method="HEAD")
    with pytest.raises(httpx2.RemoteProtocolError):
        hf_hub_download(REPO, "a.txt", repo_type="dataset", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert hub.faults_fired["drop"] == 3


@pytest.mark.timeout(60)
def test_fault_500_on_download_head_is_retried(hub: LocalHub, api: HfApi, tmp_path: Path) -> None:
    first_commit(api)
    hub.inject("500", method="HEAD")
    local = hf_hub_download(REPO, "meta/info.json", repo_type="dataset", endpoint=hub.endpoint, cache_dir=tmp_path)
    assert Path(local).read_bytes() == SMALL
    assert statuses(hub, "HEAD", "/resolve/") == [500, 200]


@pytest.mark.timeout(60)
def test_fault_conflict(hub: LocalHub, api: HfApi) -> None:
    first_commit(api)
    head = hub.head(REPO)
    hub.inject("conflict", method="POST", path=r"/commit/")
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    assert err.value.response.status_code == 412 and COMMIT_CONFLICT_MESSAGE in str(err.value)
    assert hub.head(REPO) == head and hub.faults_fired["conflict"] == 1


@pytest.mark.timeout(60)
def test_fault_commit_then_drop(hub: LocalHub, api: HfApi) -> None:
    first_commit(api)
    hub.inject("commit_then_drop", method="POST", path=r"/commit/")
    new_video = os.urandom(5000)
    operations = [CommitOperationAdd("videos/chunk-000/file-001.mp4", new_video), CommitOperationAdd("b.txt", b"b")]
    with pytest.raises(httpx2.RemoteProtocolError):
        api.create_commit(REPO, operations, commit_message="Upload shard 1", repo_type="dataset")

    # The client never learned it, but the commit landed.
    assert hub.faults_fired["commit_then_drop"] == 1 and statuses(hub, "POST", "/commit/")[-1] is None
    landed = hub.commits(REPO)[-1]
    assert landed.title == "Upload shard 1" and landed.oid == hub.head(REPO)
    assert set(landed.added) == {"videos/chunk-000/file-001.mp4", "b.txt"}
    assert content(hub)["videos/chunk-000/file-001.mp4"] == new_video

    # Retrying the same additions is a no-op for the client: preupload reports identical oids, no new commit.
    n_commits = len(hub.commits(REPO))
    retry = [CommitOperationAdd("videos/chunk-000/file-001.mp4", new_video), CommitOperationAdd("b.txt", b"b")]
    info = api.create_commit(REPO, retry, commit_message="Upload shard 1", repo_type="dataset")
    assert info.oid == landed.oid and len(hub.commits(REPO)) == n_commits


@pytest.mark.timeout(60)
def test_patch_hf_client_points_module_defaults_at_the_hub(
    hub: LocalHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    patch_hf_client(monkeypatch, hub)
    api = HfApi(token=TOKEN)  # no endpoint argument
    api.create_repo(REPO, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="hello.txt", repo_id=REPO, repo_type="dataset")
    local = hf_hub_download(REPO, "hello.txt", repo_type="dataset", cache_dir=tmp_path)
    assert Path(local).read_bytes() == b"hello"
