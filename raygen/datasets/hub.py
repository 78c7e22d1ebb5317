"""Batched, exactly-once upload of committed shards to the Hugging Face Hub or to a folder / fsspec URL.

The uploader runs beside the committer (a background thread on the driver, or ``raygen upload`` on its
own). Every ``batch_interval_s`` or as soon as ``batch_shards`` committed shards wait, it makes ONE commit
per target with the files of the shards committed since the last upload plus the small metadata files
that changed. It never blocks the committer: it only takes the committer's lock for the moment it
copies the metadata files, so what it sends describes exactly the shards it sends.

Exactly once. ``meta/raygen/uploads.jsonl`` (never uploaded) gets one fsynced line per landed batch:
the target, the ledger ``seq`` of its shards and the hashes of the metadata sent. At start the target's
file list is read once (unless ``skip_hub_check``): shards whose files are all there with the local sizes
are recorded as landed without sending anything (a crash between a Hub commit and the ledger line), and
shards recorded but missing are sent again. Every commit title carries a batch id; when a commit call
fails in a way that leaves its outcome unknown (a timeout, a dropped connection, a 5xx), the target's
recent commits are searched for that id before it is tried again, and every try names the head it
builds on, so a try that lands late is refused by the Hub instead of duplicating the batch.

Faults: 5xx, 408/409/412/429, timeouts and dropped connections are retried with exponential backoff and
jitter; a batch that still fails stays pending for the next interval. Local files are never deleted.
The token is never logged, stored or put in an error message: every message that leaves this module
goes through :func:`redact`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from raygen import __version__
from raygen.config import ConfigError, UploadConfig
from raygen.datasets import _layout as L

logger = logging.getLogger(__name__)

__all__ = ["HubTarget", "FolderTarget", "UploadError", "Uploader", "make_target", "redact", "resolve_token"]

CARD = "README.md"
# Files that exist for this machine only: never sent anywhere.
_NEVER = frozenset({L.LOCK, L.UPLOADS})
_NEVER_PREFIXES = (L.STAGING + "/", L.STATS_STATE_DIR + "/", "meta/raygen/feeds/")
# What a metadata-only target leaves out.
_HEAVY_PREFIXES = ("videos/", "depth/")
_RETRY_STATUS = frozenset({408, 409, 412, 429, 500, 502, 503, 504})
_SECRETS: set[str] = set()
T = TypeVar("T")


class UploadError(RuntimeError):
    """An upload step failed for good (after its retries); the message names the target and the step."""


def redact(text: str) -> str:
    """``text`` with every token this process has seen replaced by ``***``."""
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


def _describe(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------- token
def _read_env_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"upload.env_file: {path} does not exist") from None
    out = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        out[key.strip()] = value.strip().strip("'\"")
    return out


def resolve_token(env_file: str | None = None) -> str | None:
    """The Hub token: from ``env_file`` if named, else ``HF_TOKEN``, else huggingface_hub's stored login."""
    token: str | None = None
    if env_file:
        values = _read_env_file(Path(env_file))
        token = values.get("HF_TOKEN") or values.get("HUGGING_FACE_HUB_TOKEN")
        if not token:
            raise ConfigError(f"upload.env_file: {env_file} has no HF_TOKEN=... line")
    if not token:
        token = os.environ.get("HF_TOKEN") or None
    if not token:
        from huggingface_hub import get_token

        token = get_token()
    if token:
        _SECRETS.add(token)
    return token


# ---------------------------------------------------------------------------------------------- retries
def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return int(code) if isinstance(code, int) else None


def _retryable(exc: BaseException) -> bool:
    """5xx, conflicts, rate limits, timeouts and dropped connections, anywhere in the exception chain."""
    try:
        import httpx2 as httpx  # the HTTP client of huggingface_hub >= 2
    except ImportError:  # pragma: no cover - older huggingface_hub
        import httpx

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        status = _status(cur)
        if status is not None:
            return status in _RETRY_STATUS
        if isinstance(cur, httpx.TimeoutException | httpx.TransportError | ConnectionError | TimeoutError):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _use_timeout(timeout_s: float) -> None:
    """huggingface_hub's shared client has no timeout by default; a stuck request would hang a batch forever.

    Wraps whatever client factory the application set (proxies, CA bundles stay), gives its clients a
    timeout only where they have none, and installs itself once per process.
    """
    import httpx2
    from huggingface_hub.utils import _http

    current = _http._GLOBAL_CLIENT_FACTORY
    if getattr(current, "_raygen_timeout", None) is not None:
        current._raygen_timeout = timeout_s  # type: ignore[attr-defined]
        return

    def factory() -> Any:
        client = current()
        if client.timeout == httpx2.Timeout(None):
            client.timeout = httpx2.Timeout(factory._raygen_timeout)  # type: ignore[attr-defined]
        return client

    factory._raygen_timeout = timeout_s  # type: ignore[attr-defined]
    _http.set_client_factory(factory)


# ---------------------------------------------------------------------------------------------- targets
class HubTarget:
    """A dataset repo on the Hugging Face Hub (or a Hub-compatible endpoint)."""

    def __init__(self, repo_id: str, *, token: str | None, revision: str = "main", private: bool = True,
                 endpoint: str | None = None, metadata_only: bool = False):
        from huggingface_hub import HfApi

        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ConfigError(f"upload: {repo_id!r} is not a Hub dataset id; expected 'org/name'")
        self.repo_id, self.revision, self.private = repo_id, revision, private
        self.metadata_only = metadata_only
        self.key = f"hf://datasets/{repo_id}@{revision}" + (f" on {endpoint.rstrip('/')}" if endpoint else "")
        self.name = self.key
        self.api = HfApi(endpoint=endpoint, token=token, library_name="raygen", library_version=__version__)

    def prepare(self) -> None:
        self.api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)
        if self.revision != "main":
            self.api.create_branch(self.repo_id, repo_type="dataset", branch=self.revision, exist_ok=True)

    def remote_files(self) -> dict[str, tuple[int, str | None]]:
        """path -> (size, digest): ``sha256:<hex>`` for LFS files, ``git:<blob sha1>`` for the others."""
        from huggingface_hub.hf_api import RepoFile

        tree = self.api.list_repo_tree(self.repo_id, repo_type="dataset", revision=self.revision, recursive=True)
        out: dict[str, tuple[int, str | None]] = {}
        for f in tree:
            if isinstance(f, RepoFile):
                digest = f"sha256:{f.lfs.sha256}" if f.lfs else (f"git:{f.blob_id}" if f.blob_id else None)
                out[f.path] = (int(f.size), digest)
        return out

    def commit(self, files: list[tuple[str, Path | bytes]], title: str, description: str,
               parent: str | None) -> str:
        """One Hub commit on top of ``parent``: if the head moved (an earlier try landed late), the Hub refuses."""
        from huggingface_hub import CommitOperationAdd

        ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(src) if isinstance(src, Path) else src)
               for rel, src in files]
        info = self.api.create_commit(self.repo_id, operations=ops, commit_message=title,
                                      commit_description=description, repo_type="dataset",
                                      revision=self.revision, parent_commit=parent)
        return str(info.oid)

    def state(self, batch_id: str) -> tuple[str | None, str | None]:
        """(head commit, the commit whose title carries ``batch_id`` or None), from one listing."""
        head = None
        for i, c in enumerate(self.api.list_repo_commits(self.repo_id, repo_type="dataset", revision=self.revision)):
            head = head or str(c.commit_id)
            if f"[{batch_id}]" in c.title:
                return head, str(c.commit_id)
            if i >= 200:
                break
        return head, None

    def tag(self, tag: str) -> bool:
        """Point ``tag`` at the head of the revision (LeRobot loads the revision its codebase tag names)."""
        refs = self.api.list_repo_refs(self.repo_id, repo_type="dataset")
        head = next((b.target_commit for b in refs.branches if b.name == self.revision), None)
        current = next((t.target_commit for t in refs.tags if t.name == tag), None)
        if current is not None and current == head:
            return False
        if current is not None:
            self.api.delete_tag(self.repo_id, tag=tag, repo_type="dataset")
        self.api.create_tag(self.repo_id, tag=tag, revision=self.revision, repo_type="dataset")
        return True


class FolderTarget:
    """A plain folder or any fsspec URL (``s3://``, ``gs://``, ... with its fsspec package installed)."""

    def __init__(self, url: str, *, metadata_only: bool = False):
        import fsspec

        self.fs, self.base = fsspec.core.url_to_fs(url)
        self.base = self.base.rstrip("/")
        self.metadata_only = metadata_only
        self.key = url if "://" in url else f"file://{Path(url).resolve()}"
        self.name = self.key

    def prepare(self) -> None:
        self.fs.makedirs(self.base, exist_ok=True)

    def remote_files(self) -> dict[str, tuple[int, str | None]]:
        """path -> (size, None): folders give no digest, so metadata is sent again after a restart."""
        if not self.fs.exists(self.base):
            return {}
        found = self.fs.find(self.base, detail=True)
        prefix = self.base + "/"
        return {p[len(prefix):]: (int(d.get("size") or 0), None) for p, d in found.items()
                if p.startswith(prefix) and d.get("type") != "directory" and not p.endswith(".raygen-part")}

    def commit(self, files: list[tuple[str, Path | bytes]], title: str, description: str,
               parent: str | None) -> str:
        # each file lands whole (written aside, then moved); sending a file again rewrites the same bytes
        for rel, src in files:
            dst = f"{self.base}/{rel}"
            part = f"{dst}.{os.getpid()}-{uuid.uuid4().hex[:8]}.raygen-part"  # never shared by two writers
            self.fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
            if isinstance(src, Path):
                self.fs.put_file(str(src), part)
            else:
                self.fs.pipe_file(part, src)
            self.fs.mv(part, dst)
        return ""

    def state(self, batch_id: str) -> tuple[str | None, str | None]:
        return None, None  # no commit log: re-sending a batch rewrites identical files

    def tag(self, tag: str) -> bool:
        return False  # folders have no tags


Target = HubTarget | FolderTarget


def make_target(spec: str, config: UploadConfig, token: str | None, *, metadata_only: bool = False) -> Target:
    """``org/name`` or ``hf://datasets/org/name`` -> HubTarget; a folder or another URL -> FolderTarget."""
    if spec.startswith("hf://"):
        rest = spec[len("hf://"):]
        if not rest.startswith("datasets/"):
            raise ConfigError(f"upload: {spec!r}: only dataset repos are supported (hf://datasets/org/name)")
        spec = rest[len("datasets/"):]
    elif "://" in spec or spec.startswith(("/", ".", "~")) or spec.count("/") != 1:
        return FolderTarget(os.path.expanduser(spec), metadata_only=metadata_only)
    if token is None:
        raise ConfigError("upload: no Hugging Face token for hf://datasets/" + spec + "; set HF_TOKEN, name a .env "
                          "file in upload.env_file, or log in with `hf auth login`")
    return HubTarget(spec, token=token, revision=config.revision, private=config.private,
                     endpoint=config.endpoint, metadata_only=metadata_only)


# ---------------------------------------------------------------------------------------------- uploader
@dataclasses.dataclass
class TargetReport:
    """What one target received in this process."""

    target: str
    metadata_only: bool
    commits: int = 0
    files: int = 0
    bytes: int = 0
    reconciled_shards: int = 0
    pending_shards: int = 0
    last_error: str | None = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _matches(data: bytes, digest: str | None) -> bool:
    """Does ``data`` have the remote ``digest`` (an LFS sha256 or a git blob id)?"""
    if digest is None:
        return False
    kind, _, value = digest.partition(":")
    if kind == "sha256":
        return _sha256(data) == value
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == value


def _chunks(items: list[T], n: int) -> Iterator[list[T]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class Uploader:
    """Sends committed shards of the dataset at ``root`` to the configured targets, in batches, exactly once.

    In a run: ``Uploader(root, cfg, commit_lock=committer.commit_lock).start()``, ``notify()`` after each
    committed shard, ``finish()`` at the end (final flush, dataset card, tag). On its own (``raygen upload``):
    ``finish()`` alone; it then holds the dataset's lock so no run can commit meanwhile.
    """

    def __init__(self, root: Path | str, config: UploadConfig, *, commit_lock: threading.Lock | None = None,
                 token: str | None = None, backoff_s: float = 1.0, card_info: dict[str, Any] | None = None):
        if not (config.repo or config.metadata_repo):
            raise ConfigError("upload: neither upload.repo nor upload.metadata_repo is set; nothing to upload to")
        self.root = Path(root)
        self.config = config
        self.backoff_s = backoff_s
        self.card_info = dict(card_info or {})
        if token is None:
            token = resolve_token(config.env_file)
        else:
            _SECRETS.add(token)
        self.targets: list[Target] = []
        if config.repo:
            self.targets.append(make_target(config.repo, config, token))
        if config.metadata_repo:
            self.targets.append(make_target(config.metadata_repo, config, token, metadata_only=True))
        if any(isinstance(t, HubTarget) for t in self.targets):
            from huggingface_hub.utils import disable_progress_bars

            _use_timeout(config.timeout_s)
            disable_progress_bars()  # a week-long run logs batches, not progress bars
        self.reports = {t.key: TargetReport(t.name, t.metadata_only) for t in self.targets}
        self._committer = None
        if commit_lock is None:  # on its own: hold the dataset like a writer, and recover it first
            from raygen.datasets.commit import Committer

            self._committer = Committer(self.root)
            commit_lock = self._committer.commit_lock
        self._commit_lock = commit_lock
        self._state_lock = threading.Lock()  # one pass at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._prepared: set[str] = set()
        self._checked: set[str] = set()
        self._remote: dict[str, dict[str, tuple[int, str | None]]] = {}  # the listing read by _check
        self._ledger_meta: dict[str, dict[str, str]] = {}  # what the ledger said was sent, before _check
        self._uploaded: dict[str, set[int]] = {t.key: set() for t in self.targets}
        self._meta_sent: dict[str, dict[str, str]] = {t.key: {} for t in self.targets}
        try:
            cut = L.cut_torn_tail(self.root / L.UPLOADS)
            if cut:
                logger.warning("upload: %s: dropped a torn last line (%d bytes) left by a crash; the target's file "
                               "list decides what it holds", self.root / L.UPLOADS, cut)
            lines = L.read_jsonl(self.root / L.UPLOADS)
        except BaseException:
            self._release()
            raise
        for line in lines:
            if line.get("target") in self._uploaded:
                self._uploaded[line["target"]].update(line.get("shards", []))
                self._meta_sent[line["target"]].update(line.get("meta", {}))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Uploader:
        """Create missing repos (auth errors fail here, before a run starts), then upload in the background."""
        for target in self.targets:
            try:
                self._prepare(target)
            except UploadError as exc:
                if not getattr(exc, "retryable", False):
                    raise
                logger.warning("upload: %s; will try again at the first batch", exc)
        self._thread = threading.Thread(target=self._loop, name="raygen-uploader", daemon=True)
        self._thread.start()
        return self

    def notify(self) -> None:
        """A shard was committed (cheap; never blocks)."""
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the background thread without a final flush (the next run or `raygen upload` sends the rest).

        A batch in flight gets ``timeout_s`` to land; after that the thread is left behind (a daemon: it
        dies with the process), which is safe because a batch is recorded only after its commit landed.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("upload: a batch is still in flight; leaving it (it is recorded only if it lands)")
            self._thread = None
        self._release()

    def finish(self, *, card: bool | None = None) -> dict[str, TargetReport]:
        """Final flush of every committed shard, then the dataset card and the v3.0 tag; returns the reports."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.upload_pending(final=True, card=self.config.card if card is None else card)
        finally:
            self._release()
        return self.reports

    def _release(self) -> None:
        if self._committer is not None:
            self._committer.close()
            self._committer = None

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stopping.is_set():
            woke = self._wake.wait(timeout=max(0.0, last + self.config.batch_interval_s - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                return
            due = time.monotonic() - last >= self.config.batch_interval_s
            if not due and not woke:
                continue
            if not due and self._waiting_shards() < self.config.batch_shards:
                continue
            try:
                self.upload_pending()
            except Exception as exc:  # a failed batch stays pending; never take the run down
                logger.warning("upload: %s; pending shards wait for the next batch", _describe(exc))
            last = time.monotonic()

    def _waiting_shards(self) -> int:
        seqs = {e["seq"] for e in L.read_jsonl(self.root / L.LEDGER)}
        return max((len(seqs - done) for done in self._uploaded.values()), default=0)

    # ------------------------------------------------------------------ one pass
    def upload_pending(self, *, final: bool = False, card: bool = False) -> dict[str, TargetReport]:
        """Send every committed shard a target lacks (in commits of at most ``batch_shards`` shards)."""
        with self._state_lock:
            entries, meta = self._snapshot()
            errors = []
            for target in self.targets:
                rep = self.reports[target.key]
                try:
                    self._prepare(target)
                    self._check(target, entries, meta)
                    self._send(target, entries, meta, final=final)
                    if card:
                        self._card(target, entries)
                    rep.last_error = None
                except Exception as exc:
                    rep.last_error = _describe(exc)
                    errors.append(f"{target.name}: {rep.last_error}")
                rep.pending_shards = len({e["seq"] for e in entries} - self._uploaded[target.key])
            if errors and final:
                raise UploadError("upload did not finish (committed shards stay pending; run `raygen upload` to "
                                  "finish): " + "; ".join(errors))
            if errors:
                logger.warning("upload: %s", "; ".join(errors))
            return self.reports

    def _snapshot(self) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        """The ledger and the small metadata files, as of one moment between commits."""
        with self._commit_lock:
            entries = L.read_jsonl(self.root / L.LEDGER)
            numbered = {rel for e in entries for rel in e["files"]}
            meta = {}
            for path in sorted((self.root / "meta").rglob("*")):
                rel = path.relative_to(self.root).as_posix()
                if path.is_file() and rel not in numbered and self._uploadable(rel) and not L.chunk_file_of(rel):
                    meta[rel] = path.read_bytes()
        return entries, meta

    @staticmethod
    def _uploadable(rel: str) -> bool:
        return rel not in _NEVER and not rel.startswith(_NEVER_PREFIXES) and ".tmp" not in rel.rsplit("/", 1)[-1]

    @staticmethod
    def _wants(target: Target, rel: str) -> bool:
        return not (target.metadata_only and rel.startswith(_HEAVY_PREFIXES))

    def _prepare(self, target: Target) -> None:
        if target.key not in self._prepared:
            self._call(target, "create the repo", target.prepare)
            self._prepared.add(target.key)

    def _check(self, target: Target, entries: list[dict[str, Any]], meta: dict[str, bytes]) -> None:
        """Once per target: what the target already holds decides what is pending."""
        if target.key in self._checked or self.config.skip_hub_check:
            return
        remote = self._call(target, "list its files", target.remote_files)
        done = self._uploaded[target.key]
        found = []
        for e in entries:
            want = {rel: size for rel, size in e["files"].items() if self._wants(target, rel)}
            present = {rel: remote[rel][0] if rel in remote else None for rel in want}
            if all(present[rel] == size for rel, size in want.items()):
                if e["seq"] not in done:
                    found.append(e["seq"])
                continue
            clash = [rel for rel, size in want.items() if present[rel] is not None and present[rel] != size]
            if clash:
                raise UploadError(f"{target.name} already holds {clash[0]} with {present[clash[0]]} bytes, this "
                                  f"dataset's file has {want[clash[0]]}: the target holds another dataset; "
                                  "upload to a new repo or folder")
            if e["seq"] in done:
                logger.warning("upload: %s lacks shard %d that the upload ledger records; sending it again",
                               target.name, e["seq"])
                done.discard(e["seq"])
        if found:
            self._record(target, {"shards": sorted(found), "reconciled": True})
            self.reports[target.key].reconciled_shards += len(found)
            logger.info("upload: %s already holds %d shard(s) not in the upload ledger (a crash after a commit); "
                        "recorded, not sent again", target.name, len(found))
        self._remote[target.key], self._ledger_meta[target.key] = remote, self._meta_sent[target.key]
        self._meta_sent[target.key] = {rel: _sha256(data) for rel, data in meta.items()
                                       if self._holds(target, rel, data)}
        self._checked.add(target.key)

    def _holds(self, target: Target, rel: str, data: bytes) -> bool:
        """Did the target hold these bytes at ``rel`` when its files were listed? By its digest; where it
        gives none (folders), by the size and the upload ledger's record of what was sent there."""
        size, digest = self._remote.get(target.key, {}).get(rel, (None, None))
        if size is None:
            return False
        if digest is not None:
            return _matches(data, digest)
        return size == len(data) and self._ledger_meta.get(target.key, {}).get(rel) == _sha256(data)

    def _send(self, target: Target, entries: list[dict[str, Any]], meta: dict[str, bytes], *, final: bool) -> None:
        rep = self.reports[target.key]
        pending = [e for e in entries if e["seq"] not in self._uploaded[target.key]]
        changed = {rel: data for rel, data in meta.items()
                   if self._wants(target, rel) and self._meta_sent[target.key].get(rel) != _sha256(data)}
        if not entries or not (pending or (changed and final)):
            return  # between batches, metadata travels only with shards
        groups = list(_chunks(pending, self.config.batch_shards)) or [[]]
        for i, group in enumerate(groups):
            files: list[tuple[str, Path | bytes]] = [(rel, self.root / rel) for e in group for rel in e["files"]
                                                     if self._wants(target, rel)]
            last = i == len(groups) - 1
            if last:  # the metadata describes every shard in the snapshot: it goes with the last batch
                files += list(changed.items())
            if not files:
                continue
            seqs = [e["seq"] for e in group]
            # the id names the content: shard ids and metadata digests (the same seqs may hold other bytes)
            content = [[e["shard_id"] for e in group], {r: _sha256(d) for r, d in changed.items()} if last else {}]
            batch_id = _sha256(json.dumps([target.key, content], sort_keys=True).encode())[:12]
            title = self._title(group, batch_id)
            description = f"raygen {__version__}: {len(group)} shard(s), {len(files)} file(s)."
            oid = self._commit(target, files, title, description, batch_id)
            nbytes = sum(len(src) if isinstance(src, bytes) else src.stat().st_size for _, src in files)
            line: dict[str, Any] = {"shards": seqs, "commit": oid, "batch": batch_id, "files": len(files),
                                    "bytes": nbytes}
            if last:
                line["meta"] = {rel: _sha256(data) for rel, data in changed.items()}
            self._record(target, line)
            rep.commits += 1
            rep.files += len(files)
            rep.bytes += nbytes
            logger.info("upload: %s <- %s (%d files, %.1f MB)", target.name, title, len(files), nbytes / 1e6)

    @staticmethod
    def _title(group: list[dict[str, Any]], batch_id: str) -> str:
        if not group:
            return f"raygen: metadata [{batch_id}]"
        first, last = group[0], group[-1]
        return (f"raygen: shards {first['seq']}-{last['seq']}, episodes {first['episode_from']}-"
                f"{last['episode_to'] - 1} [{batch_id}]")

    def _record(self, target: Target, line: dict[str, Any]) -> None:
        line = {"target": target.key, **line, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _append_upload_ledger(self.root / L.UPLOADS, line)
        self._uploaded[target.key].update(line.get("shards", []))
        self._meta_sent[target.key].update(line.get("meta", {}))

    def _card(self, target: Target, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        text = dataset_card(self.root, repo_id=getattr(target, "repo_id", None), metadata_only=target.metadata_only,
                            license=self.config.license, extra=self.card_info).encode()
        digest = _sha256(text)
        if self._meta_sent[target.key].get(CARD) != digest and not self._holds(target, CARD, text):
            bid = _sha256(json.dumps([target.key, "card", digest]).encode())[:12]
            oid = self._commit(target, [(CARD, text)], f"raygen: dataset card [{bid}]", "", bid)
            self._record(target, {"shards": [], "commit": oid, "batch": bid, "files": 1, "bytes": len(text),
                                  "meta": {CARD: digest}})
            self.reports[target.key].commits += 1
        if self._call(target, f"tag {L.CODEBASE_VERSION}", lambda: target.tag(L.CODEBASE_VERSION)):
            logger.info("upload: %s tagged %s", target.name, L.CODEBASE_VERSION)

    def _call(self, target: Target, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, tried again after failures that may pass (backoff with jitter)."""
        for attempt in range(1, self.config.attempts + 1):
            try:
                return fn()
            except Exception as exc:
                self._retry_or_raise(target, what, exc, attempt)
        raise AssertionError("unreachable")

    def _commit(self, target: Target, files: list[tuple[str, Path | bytes]], title: str, description: str,
                batch_id: str) -> str:
        """Exactly one commit of ``files``, even when a try fails after the target applied it.

        Every try commits on top of the head seen before it, so of two tries only one can land; after a
        failure the commit log is read again (head and our batch id from one listing) before the next try.
        """
        what = f"commit {title!r}"
        head, landed = self._call(target, "read its commit log", lambda: target.state(batch_id))
        if landed is not None:
            return landed
        for attempt in range(1, self.config.attempts + 1):
            try:
                return target.commit(files, title, description, head)
            except Exception as exc:
                if not _retryable(exc):
                    self._retry_or_raise(target, what, exc, attempt)
                try:
                    head, landed = target.state(batch_id)
                except Exception as check_exc:
                    self._retry_or_raise(target, what, check_exc, attempt)
                    continue
                if landed is not None:
                    logger.info("upload: %s: %s landed despite %s", target.name, what, _describe(exc))
                    return landed
                self._retry_or_raise(target, what, exc, attempt)
        raise AssertionError("unreachable")

    def _retry_or_raise(self, target: Target, what: str, exc: Exception, attempt: int) -> None:
        retry = _retryable(exc)
        if not retry or attempt >= self.config.attempts:
            err = UploadError(f"{target.name}: could not {what} after {attempt} attempt(s): {_describe(exc)}")
            err.retryable = retry  # type: ignore[attr-defined]
            raise err from None
        delay = min(60.0, self.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
        logger.warning("upload: %s: %s failed (%s); try %d/%d in %.1f s", target.name, what, _describe(exc),
                       attempt + 1, self.config.attempts, delay)
        time.sleep(delay)


def _append_upload_ledger(path: Path, line: dict[str, Any]) -> None:
    """One landed batch; tests inject crashes here."""
    L.append_line(path, json.dumps(line, separators=(",", ":")))


# ---------------------------------------------------------------------------------------------- the card
def dataset_card(root: Path, *, repo_id: str | None, metadata_only: bool, license: str = "other",
                 extra: dict[str, Any] | None = None) -> str:
    """README.md for the Hub: LeRobot's tag and parquet config, what is in the dataset and how it was made."""
    info = L.read_json(root / L.INFO)
    run = L.read_json(root / L.RUN) if (root / L.RUN).exists() else {}
    diversity = L.read_json(root / L.DIVERSITY) if (root / L.DIVERSITY).exists() else {}
    entries = L.read_jsonl(root / L.LEDGER)
    cfg = run.get("config", {})
    src = cfg.get("source", {})
    from raygen.pipelines.rejects import read_rejects

    rejected = read_rejects(root, ["episode_key"]).num_rows
    cams = sorted(k[len(L.IMAGE_PREFIX):] for k in info.get("features", {}) if k.startswith(L.IMAGE_PREFIX))
    tags = ["LeRobot", "raygen", "robotics"] + ([src["backend"]] if src.get("backend") else [])
    front = io.StringIO()
    front.write("---\n")
    front.write(f"license: {license}\n")
    front.write("task_categories:\n- robotics\n")
    front.write("tags:\n" + "".join(f"- {t}\n" for t in tags))
    front.write("configs:\n- config_name: default\n  data_files: data/*/*.parquet\n")
    front.write("---\n\n")
    name = repo_id or root.name
    lines = [
        f"# {name}",
        "",
        f"Made with raygen {__version__}: simulated episodes streamed through "
        "quality, flow and diversity stages and committed as LeRobot v3.0 shards.",
    ]
    if metadata_only:
        lines += ["", "**Metadata only**: data and flow parquet plus `meta/`; the videos and depth live in the full "
                  "dataset repo."]
    lines += [
        "",
        "| | |",
        "|---|---|",
        f"| episodes | {info.get('total_episodes', 0)} |",
        f"| frames | {info.get('total_frames', 0)} |",
        f"| shards | {len(entries)} |",
        f"| fps | {info.get('fps')} |",
        f"| cameras | {', '.join(cams) or '-'} |",
        f"| tasks | {info.get('total_tasks', 0)} |",
        f"| rejected episodes | {rejected} |",
    ]
    if "overall_score" in diversity:
        lines.append(f"| diversity score | {diversity['overall_score']:.3f} |")
    if src:
        lines.append(f"| source | {src.get('backend')} {src.get('task')}, seed {src.get('seed')}, "
                     f"{src.get('width')}x{src.get('height')} |")
    for k, v in (extra or {}).items():
        lines.append(f"| {k} | {v} |")
    lines += [
        "",
        "Extra files beside the LeRobot layout: `depth/<camera>/` (FFV1 16-bit millimetres, lossless), `flow/` "
        "(gripper tracks resampled at fixed path-length steps), `meta/raygen/` (calibration, provenance, metrics, "
        "the commit ledger, rejects, diversity).",
        "",
        "```python",
        "from lerobot.datasets.lerobot_dataset import LeRobotDataset",
        f'ds = LeRobotDataset("{name}")',
        "```",
        "",
        "## How it was made",
        "",
        "```json",
        json.dumps({k: cfg[k] for k in ("source", "stages", "output") if k in cfg}, indent=2, sort_keys=True),
        "```",
        "",
        "## meta/info.json",
        "",
        "```json",
        json.dumps(info, indent=2),
        "```",
        "",
    ]
    return front.getvalue() + "\n".join(lines)
