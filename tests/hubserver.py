"""A local, in-memory Hugging Face Hub look-alike for tests, driven by the real ``huggingface_hub`` client.

``LocalHub`` runs a small HTTP server (stdlib ``ThreadingHTTPServer``) on ``127.0.0.1`` that speaks the subset of
the Hub's HTTP API that ``huggingface_hub`` 2.4 uses to create repos, commit files (regular and Git LFS), list and
download them, and manage tags and branches. Everything lives in memory; every commit keeps a full snapshot of the
repo, so any revision can be inspected afterwards. Faults (5xx, timeouts, dropped connections, commit conflicts, a
commit applied but never acknowledged) can be injected to test an uploader's recovery logic.

Usage::

    with LocalHub(token="test-token") as hub:
        api = HfApi(endpoint=hub.endpoint, token="test-token")
        api.create_repo("user/ds", repo_type="dataset")
        api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="user/ds", repo_type="dataset")
        assert hub.files("user/ds")["a.txt"] == b"x"
        hf_hub_download("user/ds", "a.txt", repo_type="dataset", endpoint=hub.endpoint, cache_dir=tmp)

What the caller must configure in the client (huggingface_hub 2.4.0):

* **Xet off.** ``huggingface_hub.constants.HF_HUB_DISABLE_XET`` is read from the environment once, when
  ``huggingface_hub`` is imported (``constants.py``); later ``setenv`` calls have no effect. Every use goes through
  the module attribute (``utils/_runtime.py::is_xet_available``, ``file_download.py``, ``utils/_shared_blobs.py``),
  so patch the attribute: ``monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)`` (and set
  the env var too, for subprocesses). ``patch_hf_client(monkeypatch)`` below does both. This matters because with
  ``hf_xet`` installed, ``create_commit`` uploads large files through Xet *without asking the server first*
  (``_commit_api.py::_upload_files``); this server answers the Xet token route with a 501, and the upload fails
  at once with ``ConnectionError: ... 501 Not Implemented ... /xet-write-token/main``.
  The server itself never sends Xet headers (``X-Xet-*``, ``Link: ...xet-auth``), so downloads always use plain HTTP.
* **Endpoint.** Pass ``endpoint=hub.endpoint`` to ``HfApi(...)`` and to ``hf_hub_download(...)``. Module-level
  helpers that take no endpoint read ``constants.ENDPOINT`` (and ``hf_hub_url`` reads
  ``constants.HUGGINGFACE_CO_URL_TEMPLATE``), both fixed at import; ``patch_hf_client(monkeypatch, hub)`` patches
  them as well.
* **Token.** Write calls need ``Authorization: Bearer <token>`` with the hub's token. Pass ``token=`` explicitly;
  ``token=False`` sends none.

Behaviour notes (documented differences from the real Hub):

* A new repo gets an initial commit holding an abbreviated ``.gitattributes`` (as the Hub does); pass
  ``gitattributes=False`` to start empty.
* ``preupload`` answers ``uploadMode="lfs"`` for files of ``lfs_threshold`` bytes or more, ``"regular"`` otherwise.
* ``HEAD``/``GET`` on ``/resolve/`` answer 200 directly (the Hub redirects LFS files to a CDN) with ``ETag``
  (git blob id, or the sha256 for LFS files), ``X-Repo-Commit``, ``Content-Length`` and, for LFS files,
  ``X-Linked-Etag`` and ``X-Linked-Size``. ``Range`` requests are honoured.
* The LFS upload ``href`` points back at this server (``/_localhub/lfs/<ticket>``; the client sends no auth there,
  like a presigned URL). The PUT body is checked against the announced sha256 and size.
* No pull requests, no pagination (everything in one page), no Xet.
* Any request carrying a *wrong* token is refused with 401 "Invalid credentials in Authorization header", as the
  Hub does. Reads of public repos need no token; reads of private repos and all writes need the right one.

Privacy: ``hub.requests`` keeps only method, path (without the query string), status and fault. Header values are
never stored or logged; the Authorization header is compared and dropped. ``http.server`` logging is silenced.

Client facts (huggingface_hub 2.4.0, HTTP client ``httpx2``), useful when writing tests against this server:

* The shared client is ``httpx2.Client(follow_redirects=True, timeout=None)`` (``utils/_http.py:341-349``): calls
  that pass no timeout wait forever. Override with ``huggingface_hub.set_client_factory``.
* ``http_backoff`` (``utils/_http.py:461-569``) retries 5 times on httpx2 timeouts, network errors and
  ``RemoteProtocolError`` (dropped connection) and on status 408/429/500/502/503/504, sleeping 1, 2, 4, 8, 8 s.
  It is used by preupload (``_commit_api.py:762``), the LFS batch call (``lfs.py:206``), the LFS PUT
  (``lfs.py:367``), the LFS verify call (``lfs.py:303``) and paginated listings (``utils/_pagination.py:41``:
  list_repo_tree/list_repo_files/list_repo_commits).
* The commit POST itself is sent once, without retry and without timeout: ``create_commit`` does not pass
  ``retry_on_error`` to ``_send_commit``, which then uses ``get_session().post`` (``_commit_api.py:1064-1068``).
  ``create_repo`` (it only loops on a 409 "another conflicting operation is in progress", ``hf_api.py:4751-4756``),
  ``repo_info`` (optional ``timeout=``), ``list_repo_refs``, ``create_tag`` and ``create_branch`` are also single
  attempts with no timeout by default.
* ``hf_hub_download``: the HEAD uses ``etag_timeout`` (default 10 s; env ``HF_HUB_ETAG_TIMEOUT``, read at import,
  wins when set, ``file_download.py:986-988``) without retries; if it fails with a timeout/connection error or a
  retryable status and the file is not cached, it is retried once more with a 60 s timeout and full backoff
  (``file_download.py:1170-1190``). The GET uses ``constants.HF_HUB_DOWNLOAD_TIMEOUT`` (default 10 s, env
  ``HF_HUB_DOWNLOAD_TIMEOUT`` read at import) and resumes up to 5 times on connect/timeout/protocol errors
  (``file_download.py:390-399, 468-483``). A ``RemoteProtocolError`` on the first HEAD is not caught
  (``file_download.py:1823-1846``) and propagates to the caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import sys
import threading
import traceback
import typing
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "COMMIT_CONFLICT_MESSAGE",
    "FAULT_KINDS",
    "GITATTRIBUTES_PATH",
    "CommitRecord",
    "Fault",
    "LocalHub",
    "RequestRecord",
    "StoredFile",
    "patch_hf_client",
]

FaultKind = Literal["500", "502", "503", "timeout", "drop", "conflict", "commit_then_drop"]
FAULT_KINDS: tuple[str, ...] = typing.get_args(FaultKind)

#: The text the Hub sends with a 412 when ``parentCommit`` is not the branch head (huggingface_hub's own tests
#: assert on it; uploaders commonly match on it).
COMMIT_CONFLICT_MESSAGE = "A commit has happened since. Please refresh and try again."
INVALID_CREDENTIALS_MESSAGE = "Invalid credentials in Authorization header"

GITATTRIBUTES_PATH = ".gitattributes"
# Abbreviated version of the file the Hub puts in every new repo.
GITATTRIBUTES_CONTENT = (
    b"*.7z filter=lfs diff=lfs merge=lfs -text\n"
    b"*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.gz filter=lfs diff=lfs merge=lfs -text\n"
    b"*.npy filter=lfs diff=lfs merge=lfs -text\n"
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.tar filter=lfs diff=lfs merge=lfs -text\n"
    b"*.zip filter=lfs diff=lfs merge=lfs -text\n"
    b"*.zst filter=lfs diff=lfs merge=lfs -text\n"
    b"# Video files - compressed\n"
    b"*.mp4 filter=lfs diff=lfs merge=lfs -text\n"
    b"*.webm filter=lfs diff=lfs merge=lfs -text\n"
)

_TYPE_BY_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_HEX_RE = re.compile(r"[0-9a-f]{5,40}")
_LFS_UPLOAD_ROUTE = "_localhub"


def _git_blob_oid(data: bytes) -> str:
    """The git object id of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _iso(ts: datetime) -> str:
    """The Hub's date format: ``2024-01-31T12:34:56.789Z``."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _truthy(values: list[str] | None) -> bool:
    return bool(values) and values[-1].lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True)
class StoredFile:
    """One file as stored at a revision: its full content and whether it is an LFS file."""

    content: bytes = field(repr=False)
    lfs: bool
    sha256: str
    blob_oid: str  # git blob id: of the content (regular) or of the LFS pointer (LFS)

    @classmethod
    def make(cls, content: bytes, *, lfs: bool) -> StoredFile:
        sha = hashlib.sha256(content).hexdigest()
        blob = _git_blob_oid(_lfs_pointer(sha, len(content)) if lfs else content)
        return cls(content=content, lfs=lfs, sha256=sha, blob_oid=blob)

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def pointer(self) -> bytes:
        return _lfs_pointer(self.sha256, self.size)

    @property
    def etag(self) -> str:
        """What the Hub sends as the file's ETag: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.blob_oid


@dataclass(frozen=True)
class CommitRecord:
    """A commit on the local hub; ``tree`` is the full state of the repo after it."""

    oid: str
    title: str
    description: str
    parents: tuple[str, ...]
    branch: str
    added: tuple[str, ...]  # paths added or overwritten, in operation order
    deleted: tuple[str, ...]  # file paths removed (folders expanded to their files)
    created_at: datetime
    tree: Mapping[str, StoredFile] = field(repr=False)


@dataclass(frozen=True)
class RequestRecord:
    """One request seen by the server, recorded just before it is answered.

    ``status`` is the status answered, or None when the connection was closed without an answer. ``fault`` is the
    kind of the injected fault that hit it, if any. No header value is ever recorded.
    """

    method: str
    path: str
    status: int | None
    fault: str | None = None


@dataclass
class Fault:
    """An armed fault; see ``LocalHub.inject``."""

    kind: str
    method: str | None
    path: re.Pattern[str] | None
    times: int
    after: int
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path.search(path) is not None


# --------------------------------------------------------------------------------------------------------------------
# Internal state and request plumbing


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: datetime
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, CommitRecord] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # commit oids in creation order
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content (uploaded, maybe uncommitted)


@dataclass
class _Request:
    method: str
    path: str  # raw (percent-encoded) path, no query
    query: dict[str, list[str]]
    auth: Literal["none", "valid", "invalid"]
    content_type: str
    range: str | None
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as exc:
            raise _HttpError(400, f"Malformed JSON body: {exc}") from exc


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class _HttpError(Exception):
    """Raised by a route to answer with an error; ``code`` goes to ``X-Error-Code`` like on the Hub."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def response(self) -> _Response:
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return _Response(self.status, json.dumps({"error": self.message}).encode(), headers)


def _json(data: Any, status: int = 200) -> _Response:
    return _Response(status, json.dumps(data).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: LocalHub, address: tuple[str, int]):
        self.hub = hub
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or (
            isinstance(exc, OSError) and self.hub._stopping.is_set()
        ):
            return
        self.hub._record_server_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub: a dropped connection is then a real surprise
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's per-request stderr logging."""

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        method, path = self.command, split.path
        kind: str | None = None
        recorded = False
        hub._begin_request()
        try:
            request = _Request(
                method=method,
                path=path,
                query=parse_qs(split.query, keep_blank_values=True),
                auth=hub._check_auth(self.headers.get("Authorization")),
                content_type=self.headers.get("Content-Type", ""),
                range=self.headers.get("Range"),
                body=self._read_body(),  # always read in full, so the connection stays usable after any answer
            )
            fault = hub._take_fault(method, path)
            kind = fault.kind if fault else None
            response: _Response | None  # None: close the connection without answering
            if kind in ("500", "502", "503"):
                response = hub._fault_response(int(kind))
            elif kind == "conflict":
                response = _HttpError(412, COMMIT_CONFLICT_MESSAGE).response()
            elif kind == "drop" or (kind == "timeout" and hub._stopping.wait(hub.slow_seconds)):
                response = None  # a stalled request is given up, unprocessed, when the hub shuts down
            else:
                response = hub._dispatch(request)
                if kind == "commit_then_drop":
                    response = None
            # Record before answering: a client that has seen the answer (or the closed connection) sees the record.
            hub._record(RequestRecord(method, path, response.status if response else None, kind))
            recorded = True
            if response is None:
                self._drop()
            else:
                self._send(response)
        finally:
            if not recorded:  # failed before an answer was decided (e.g. the client went away mid-body)
                hub._record(RequestRecord(method, path, None, kind))
            hub._end_request()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        body = response.body
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))  # for HEAD: the length a GET would return
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. after its own timeout)

    def _drop(self) -> None:
        """Close the connection without sending a single byte."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------------------------
# The hub


class LocalHub:
    """An in-memory Hub served over HTTP on 127.0.0.1; use as a context manager (or ``start()``/``stop()``).

    Args:
        token: the only token accepted (as ``Authorization: Bearer <token>``).
        lfs_threshold: files of at least this many bytes are uploaded through Git LFS (preupload answer).
        user: the namespace used when a repo is created without one, and the name ``whoami`` reports.
        slow_seconds: how long a ``"timeout"`` fault stalls a request before processing it.
        gitattributes: give new repos an initial commit with a ``.gitattributes`` file, as the Hub does.
    """

    def __init__(
        self,
        token: str = "localhub-token",
        *,
        lfs_threshold: int = 1024,
        user: str = "localhub-user",
        slow_seconds: float = 5.0,
        gitattributes: bool = True,
    ) -> None:
        if not token:
            raise ValueError("LocalHub needs a non-empty token")
        self._token = token.encode()
        self.lfs_threshold = lfs_threshold
        self.user = user
        self.slow_seconds = slow_seconds
        self.gitattributes = gitattributes

        self.requests: list[RequestRecord] = []
        self.faults_fired: Counter[str] = Counter()
        self.server_errors: list[str] = []  # tracebacks of bugs in this server; tests should assert it stays empty

        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._stopping = threading.Event()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._faults: list[Fault] = []
        self._tickets: dict[str, tuple[tuple[str, str], str, int]] = {}  # LFS upload ticket -> (repo, oid, size)
        self._connections: set[socket.socket] = set()
        self._seq = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> LocalHub:
        if self._server is not None:
            raise RuntimeError("LocalHub already started")
        self._stopping.clear()
        self._server = _Server(self, ("127.0.0.1", 0))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="localhub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake up stalled ("timeout") requests and close every open connection."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LocalHub is not running")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """Base URL to give to ``HfApi(endpoint=...)`` and ``hf_hub_download(endpoint=...)``."""
        return f"http://127.0.0.1:{self.port}"

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled (e.g. a stalled "timeout" request has finished)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    # ---- fault injection -------------------------------------------------------------------------------------------

    def inject(
        self, kind: FaultKind, *, method: str | None = None, path: str | None = None, times: int = 1, after: int = 0
    ) -> Fault:
        """Arm a fault for the next matching requests.

        Args:
            kind: ``"500"``, ``"502"``, ``"503"`` (that status with a JSON error body, request not processed),
                ``"timeout"`` (stall ``slow_seconds``, then process and answer normally, so a client with a shorter
                timeout gives up while the server may still apply the request; use ``wait_idle``), ``"drop"``
                (close the connection without answering, request not processed), ``"conflict"`` (412 with
                ``COMMIT_CONFLICT_MESSAGE``, not processed) or ``"commit_then_drop"`` (process the request fully,
                e.g. apply a commit, then close the connection without answering).
            method: only requests with this HTTP method (e.g. ``"POST"``).
            path: only requests whose raw URL path (percent-encoded, without query) matches this regex (re.search).
            times: how many matching requests the fault affects.
            after: let this many matching requests through untouched first.

        Faults are checked in injection order: a matching fault with ``after`` left lets the request pass (and
        counts it down); the first matching fault with none left fires and ends the check. ``hub.faults_fired[kind]``
        counts what fired.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if times < 1 or after < 0:
            raise ValueError("times must be >= 1 and after >= 0")
        fault = Fault(
            kind=kind,
            method=method.upper() if method else None,
            path=re.compile(path) if path is not None else None,
            times=times,
            after=after,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[Fault]:
        """Faults that have not fired all their ``times`` yet."""
        with self._lock:
            return [f for f in self._faults if f.fired < f.times]

    # ---- inspection ------------------------------------------------------------------------------------------------

    def repo_exists(self, repo_id: str, repo_type: str = "dataset") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def private(self, repo_id: str, repo_type: str = "dataset") -> bool:
        with self._lock:
            return self._get_repo(repo_type, repo_id).private

    def head(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> str:
        """The commit oid a revision (branch, tag or commit) points to."""
        with self._lock:
            return self._commit_at(repo_type, repo_id, revision).oid

    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, bytes]:
        """Full content of every file at a revision (LFS content resolved)."""
        with self._lock:
            commit = self._commit_at(repo_type, repo_id, revision)
            return {path: stored.content for path, stored in sorted(commit.tree.items())}

    def stored_files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, StoredFile]:
        """Like ``files`` but with the storage details (LFS or not, sha256, git blob id)."""
        with self._lock:
            return dict(sorted(self._commit_at(repo_type, repo_id, revision).tree.items()))

    def commits(self, repo_id: str, repo_type: str = "dataset", revision: str | None = None) -> list[CommitRecord]:
        """Commits, oldest first: all of the repo's commits in creation order, or the first-parent history of
        ``revision`` when given. Includes the initial ``.gitattributes`` commit when ``gitattributes=True``."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            if revision is None:
                return [repo.commits[oid] for oid in repo.order]
            return list(reversed(list(self._history(repo, self._commit_at(repo_type, repo_id, revision)))))

    def tags(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        """Tag name -> commit oid."""
        with self._lock:
            return dict(self._get_repo(repo_type, repo_id).tags)

    def branches(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        """Branch name -> commit oid."""
        with self._lock:
            return dict(self._get_repo(repo_type, repo_id).branches)

    def lfs_objects(self, repo_id: str, repo_type: str = "dataset") -> dict[str, int]:
        """sha256 -> size of every LFS object uploaded to the repo, committed or not."""
        with self._lock:
            return {oid: len(data) for oid, data in self._get_repo(repo_type, repo_id).lfs_objects.items()}

    def calls(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Recorded requests filtered by method and by a regex searched in the path."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper()) and (path is None or re.search(path, r.path))
            ]

    def seed_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes] | None = None,
        *,
        repo_type: str = "dataset",
        private: bool = False,
        message: str = "seed",
        branch: str = "main",
    ) -> str:
        """Create the repo if needed and commit ``files`` directly (no HTTP); returns the commit oid."""
        with self._lock:
            repo = self._repos.get((repo_type, repo_id)) or self._create_repo(repo_type, repo_id, private)
            if not files:
                return repo.branches[branch]
            parent = repo.commits[repo.branches[branch]]
            tree = dict(parent.tree)
            for path, content in files.items():
                tree[path] = StoredFile.make(content, lfs=len(content) >= self.lfs_threshold)
                if tree[path].lfs:
                    repo.lfs_objects[tree[path].sha256] = content
            commit = self._add_commit(repo, branch, message, "", tree, added=tuple(files), deleted=())
            return commit.oid

    # ---- internals: bookkeeping ------------------------------------------------------------------------------------

    def _check_auth(self, header: str | None) -> Literal["none", "valid", "invalid"]:
        """Classify the Authorization header; its value is not kept anywhere."""
        if not header:
            return "none"
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token):
            return "valid"
        return "invalid"

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _begin_request(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def _end_request(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def _record_server_error(self, text: str) -> None:
        with self._lock:
            self.server_errors.append(text)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.fired >= fault.times or not fault.matches(method, path):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.fired += 1
                self.faults_fired[fault.kind] += 1
                return fault
        return None

    @staticmethod
    def _fault_response(status: int) -> _Response:
        reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}[status]
        return _Response(status, json.dumps({"error": f"{reason} (injected by LocalHub)"}).encode())

    # ---- internals: state ------------------------------------------------------------------------------------------

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on this LocalHub")
        return repo

    def _commit_at(self, repo_type: str, repo_id: str, revision: str) -> CommitRecord:
        """``_resolve`` for the inspection API: raises KeyError rather than an HTTP error."""
        try:
            return self._resolve(self._get_repo(repo_type, repo_id), revision)
        except _HttpError as err:
            raise KeyError(f"{repo_type} repo {repo_id!r}: {err.message}") from None

    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=datetime.now(UTC))
        self._repos[(repo_type, repo_id)] = repo
        tree: dict[str, StoredFile] = {}
        added: tuple[str, ...] = ()
        if self.gitattributes:
            tree[GITATTRIBUTES_PATH] = StoredFile.make(GITATTRIBUTES_CONTENT, lfs=False)
            added = (GITATTRIBUTES_PATH,)
        self._add_commit(repo, "main", "initial commit", "", tree, added=added, deleted=(), parents=())
        return repo

    def _add_commit(
        self,
        repo: _Repo,
        branch: str,
        title: str,
        description: str,
        tree: dict[str, StoredFile],
        *,
        added: tuple[str, ...],
        deleted: tuple[str, ...],
        parents: tuple[str, ...] | None = None,
    ) -> CommitRecord:
        if parents is None:
            parents = (repo.branches[branch],)
        self._seq += 1
        digest = hashlib.sha1()
        digest.update(f"{repo.repo_type}/{repo.repo_id}\n{parents}\n{self._seq}\n{title}\n".encode())
        for path, stored in sorted(tree.items()):
            digest.update(f"{path}\0{stored.blob_oid}\n".encode())
        commit = CommitRecord(
            oid=digest.hexdigest(),
            title=title,
            description=description,
            parents=parents,
            branch=branch,
            added=added,
            deleted=deleted,
            created_at=datetime.now(UTC),
            tree=MappingProxyType(dict(tree)),
        )
        repo.commits[commit.oid] = commit
        repo.order.append(commit.oid)
        repo.branches[branch] = commit.oid
        return commit

    def _resolve(self, repo: _Repo, revision: str) -> CommitRecord:
        """A branch, a tag, a full commit oid or an unambiguous prefix of at least 7 hex digits."""
        oid = repo.branches.get(revision) or repo.tags.get(revision)
        if oid is None and revision in repo.commits:
            oid = revision
        if oid is None and len(revision) >= 7 and _HEX_RE.fullmatch(revision):
            candidates = [c for c in repo.commits if c.startswith(revision)]
            oid = candidates[0] if len(candidates) == 1 else None
        if oid is None:
            raise _HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    @staticmethod
    def _history(repo: _Repo, commit: CommitRecord) -> Iterator[CommitRecord]:
        """First-parent history, newest first."""
        current: CommitRecord | None = commit
        while current is not None:
            yield current
            current = repo.commits[current.parents[0]] if current.parents else None

    # ---- internals: routing ----------------------------------------------------------------------------------------

    def _dispatch(self, req: _Request) -> _Response:
        try:
            if req.auth == "invalid":
                raise _HttpError(401, INVALID_CREDENTIALS_MESSAGE)
            return self._route(req)
        except _HttpError as err:
            return err.response()
        except Exception:  # a bug in this server: answer 500 and keep the traceback for the test to see
            self._record_server_error(traceback.format_exc())
            return _Response(500, json.dumps({"error": "LocalHub internal error"}).encode())

    def _route(self, req: _Request) -> _Response:
        parts = [unquote(p) for p in req.path.split("/")[1:]]
        m = req.method
        if parts[:1] == [_LFS_UPLOAD_ROUTE] and len(parts) == 3 and parts[1] == "lfs" and m == "PUT":
            return self._lfs_put(req, parts[2])
        if parts[:1] == ["api"]:
            return self._route_api(req, parts[1:])
        # Git-side routes: /[datasets|spaces/]ns/name{.git/info/lfs/objects/...|/resolve/rev/path}
        repo_type = _TYPE_BY_PLURAL.get(parts[0], "model") if parts else "model"
        rest = parts[1:] if repo_type != "model" else parts
        if len(rest) >= 6 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"] and m == "POST":
            repo_id = f"{rest[0]}/{rest[1][: -len('.git')]}"
            if rest[5] == "batch":
                return self._lfs_batch(req, repo_type, repo_id)
            if rest[5] == "verify":
                return self._lfs_verify(req, repo_type, repo_id)
        if len(rest) >= 5 and rest[2] == "resolve" and m in ("GET", "HEAD"):
            return self._resolve_file(req, repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        raise _HttpError(404, f"LocalHub does not implement {m} {req.path}")

    def _route_api(self, req: _Request, parts: list[str]) -> _Response:
        m = req.method
        if parts == ["repos", "create"] and m == "POST":
            return self._api_create_repo(req)
        if parts == ["repos", "delete"] and m == "DELETE":
            return self._api_delete_repo(req)
        if parts == ["whoami-v2"] and m == "GET":
            self._require_auth(req)
            return _json({"type": "user", "name": self.user, "auth": {"type": "access_token"}})
        if parts == ["validate-yaml"] and m == "POST":
            return _json({"errors": [], "warnings": []})
        if len(parts) < 3 or parts[0] not in _TYPE_BY_PLURAL:
            raise _HttpError(404, f"LocalHub does not implement {m} /api/{'/'.join(parts)}")
        repo_type, repo_id = _TYPE_BY_PLURAL[parts[0]], f"{parts[1]}/{parts[2]}"
        action, args = (parts[3], parts[4:]) if len(parts) > 3 else ("", [])

        if action == "" and m == "GET":
            return self._api_repo_info(req, repo_type, repo_id, None)
        if action == "revision" and args and m == "GET":
            return self._api_repo_info(req, repo_type, repo_id, args[0])
        if action == "tree" and args and m == "GET":
            return self._api_tree(req, repo_type, repo_id, args[0], "/".join(args[1:]))
        if action == "paths-info" and len(args) == 1 and m == "POST":
            return self._api_paths_info(req, repo_type, repo_id, args[0])
        if action == "commits" and len(args) == 1 and m == "GET":
            return self._api_commits(req, repo_type, repo_id, args[0])
        if action == "refs" and not args and m == "GET":
            return self._api_refs(req, repo_type, repo_id)
        if action == "preupload" and len(args) == 1 and m == "POST":
            return self._api_preupload(req, repo_type, repo_id, args[0])
        if action == "commit" and len(args) == 1 and m == "POST":
            return self._api_commit(req, repo_type, repo_id, args[0])
        if action == "tag" and len(args) == 1 and m in ("POST", "DELETE"):
            if m == "POST":
                return self._api_create_tag(req, repo_type, repo_id, args[0])
            return self._api_delete_tag(req, repo_type, repo_id, args[0])
        if action == "branch" and len(args) == 1 and m in ("POST", "DELETE"):
            if m == "POST":
                return self._api_create_branch(req, repo_type, repo_id, args[0])
            return self._api_delete_branch(req, repo_type, repo_id, args[0])
        if action.startswith("xet-"):
            raise _HttpError(
                501, "LocalHub does not speak Xet: set huggingface_hub.constants.HF_HUB_DISABLE_XET = True"
            )
        raise _HttpError(404, f"LocalHub does not implement {m} /api/{'/'.join(parts)}")

    # ---- internals: access control ---------------------------------------------------------------------------------

    @staticmethod
    def _require_auth(req: _Request) -> None:
        if req.auth != "valid":
            raise _HttpError(401, "You must be authenticated to perform this action")

    def _repo_for_read(self, req: _Request, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HttpError(404, "Repository not found", "RepoNotFound")
        if repo.private and req.auth != "valid":
            raise _HttpError(401, "Repository not found", "RepoNotFound")
        return repo

    def _repo_for_write(self, req: _Request, repo_type: str, repo_id: str) -> _Repo:
        self._require_auth(req)
        return self._repo_for_read(req, repo_type, repo_id)

    def _branch_head(self, repo: _Repo, branch: str) -> CommitRecord:
        if branch not in repo.branches:
            raise _HttpError(404, f"Invalid rev id: {branch} (not a branch)", "RevisionNotFound")
        return repo.commits[repo.branches[branch]]

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.endpoint}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    # ---- internals: repo endpoints ---------------------------------------------------------------------------------

    def _api_create_repo(self, req: _Request) -> _Response:
        self._require_auth(req)
        payload = req.json()
        name, organization = payload.get("name"), payload.get("organization") or self.user
        repo_type = payload.get("type") or "model"
        if not isinstance(name, str) or not name or "/" in name or repo_type not in _URL_PREFIX:
            raise _HttpError(400, "Invalid repo name or type")
        private = payload.get("visibility") == "private" or payload.get("private") is True
        repo_id = f"{organization}/{name}"
        with self._lock:
            existing = self._repos.get((repo_type, repo_id))
            if existing is not None:
                body = {"error": f"You already created this {repo_type} repo", "url": self._repo_url(existing)}
                return _Response(409, json.dumps(body).encode(), {"X-Error-Message": body["error"]})
            repo = self._create_repo(repo_type, repo_id, private)
            return _json({"url": self._repo_url(repo), "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _api_delete_repo(self, req: _Request) -> _Response:
        self._require_auth(req)
        payload = req.json()
        repo_id = f"{payload.get('organization') or self.user}/{payload.get('name')}"
        with self._lock:
            if self._repos.pop((payload.get("type") or "model", repo_id), None) is None:
                raise _HttpError(404, "Repository not found", "RepoNotFound")
        return _json({})

    def _api_repo_info(self, req: _Request, repo_type: str, repo_id: str, revision: str | None) -> _Response:
        with self._lock:
            repo = self._repo_for_read(req, repo_type, repo_id)
            commit = self._resolve(repo, revision or "main")
            blobs = _truthy(req.query.get("blobs"))
            siblings = []
            for path, stored in sorted(commit.tree.items()):
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    sibling.update(size=stored.size, blobId=stored.blob_oid)
                    if stored.lfs:
                        sibling["lfs"] = {
                            "size": stored.size,
                            "sha256": stored.sha256,
                            "pointerSize": len(stored.pointer),
                        }
                siblings.append(sibling)
            info = {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": _iso(repo.created_at),
                "lastModified": _iso(commit.created_at),
                "siblings": siblings,
                "usedStorage": sum(s.size for s in commit.tree.values()),
            }
            return _json(info)

    def _file_entry(self, path: str, stored: StoredFile) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": stored.blob_oid, "size": stored.size, "path": path}
        if stored.lfs:
            entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": len(stored.pointer)}
        return entry

    @staticmethod
    def _folder_entry(path: str, tree: Mapping[str, StoredFile]) -> dict[str, Any]:
        digest = hashlib.sha1()
        for p, stored in sorted(tree.items()):
            if p.startswith(path + "/"):
                digest.update(f"{p}\0{stored.blob_oid}\n".encode())
        return {"type": "directory", "oid": digest.hexdigest(), "path": path}

    def _api_tree(self, req: _Request, repo_type: str, repo_id: str, revision: str, base: str) -> _Response:
        recursive = _truthy(req.query.get("recursive"))
        base = base.strip("/")
        with self._lock:
            commit = self._resolve(self._repo_for_read(req, repo_type, repo_id), revision)
            prefix = f"{base}/" if base else ""
            paths = [p for p in commit.tree if p.startswith(prefix)]
            if base and not paths:
                raise _HttpError(404, f"{base} does not exist on {revision}", "EntryNotFound")
            files: list[str] = []
            folders: set[str] = set()
            for path in paths:
                parts = path[len(prefix) :].split("/")
                if recursive:
                    files.append(path)
                    folders.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts)))
                elif len(parts) == 1:
                    files.append(path)
                else:
                    folders.add(prefix + parts[0])
            entries = [self._folder_entry(f, commit.tree) for f in sorted(folders)]
            entries += [self._file_entry(p, commit.tree[p]) for p in sorted(files)]
            return _json(entries)

    def _api_paths_info(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        if req.content_type.startswith("application/json"):
            wanted = req.json().get("paths", [])
        else:
            wanted = parse_qs(req.body.decode(), keep_blank_values=True).get("paths", [])
        with self._lock:
            commit = self._resolve(self._repo_for_read(req, repo_type, repo_id), revision)
            entries = []
            for path in wanted:
                path = path.strip("/")
                if path in commit.tree:
                    entries.append(self._file_entry(path, commit.tree[path]))
                elif any(p.startswith(path + "/") for p in commit.tree):
                    entries.append(self._folder_entry(path, commit.tree))
            return _json(entries)

    def _api_commits(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        with self._lock:
            repo = self._repo_for_read(req, repo_type, repo_id)
            items = [
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.description,
                    "authors": [{"user": self.user, "avatar": None}],
                    "date": _iso(c.created_at),
                }
                for c in self._history(repo, self._resolve(repo, revision))
            ]
            return _json(items)

    def _api_refs(self, req: _Request, repo_type: str, repo_id: str) -> _Response:
        with self._lock:
            repo = self._repo_for_read(req, repo_type, repo_id)
            refs: dict[str, Any] = {
                "branches": [
                    {"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in sorted(repo.branches.items())
                ],
                "converts": [],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in sorted(repo.tags.items())],
            }
            if _truthy(req.query.get("include_prs")):
                refs["pullRequests"] = []
            return _json(refs)

    def _api_create_tag(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        tag = req.json().get("tag")
        if not isinstance(tag, str) or not tag:
            raise _HttpError(400, "Missing tag name")
        with self._lock:
            repo = self._repo_for_write(req, repo_type, repo_id)
            commit = self._resolve(repo, revision)
            if tag in repo.tags:
                raise _HttpError(409, f"Tag reference refs/tags/{tag} already exists")
            repo.tags[tag] = commit.oid
        return _json({})

    def _api_delete_tag(self, req: _Request, repo_type: str, repo_id: str, tag: str) -> _Response:
        with self._lock:
            repo = self._repo_for_write(req, repo_type, repo_id)
            if repo.tags.pop(tag, None) is None:
                raise _HttpError(404, f"Tag {tag} does not exist", "RevisionNotFound")
        return _json({})

    def _api_create_branch(self, req: _Request, repo_type: str, repo_id: str, branch: str) -> _Response:
        start = req.json().get("startingPoint")
        with self._lock:
            repo = self._repo_for_write(req, repo_type, repo_id)
            commit = self._resolve(repo, start if isinstance(start, str) else "main")
            if branch in repo.branches:
                raise _HttpError(409, f"Reference refs/heads/{branch} already exists")
            repo.branches[branch] = commit.oid
        return _json({})

    def _api_delete_branch(self, req: _Request, repo_type: str, repo_id: str, branch: str) -> _Response:
        with self._lock:
            repo = self._repo_for_write(req, repo_type, repo_id)
            if branch == "main":
                raise _HttpError(403, "Cannot delete the main branch")
            if repo.branches.pop(branch, None) is None:
                raise _HttpError(404, f"Branch {branch} does not exist", "RevisionNotFound")
        return _json({})

    # ---- internals: upload endpoints -------------------------------------------------------------------------------

    def _api_preupload(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        files = req.json().get("files")
        if not isinstance(files, list):
            raise _HttpError(400, "Missing 'files'")
        with self._lock:
            repo = self._repo_for_write(req, repo_type, repo_id)
            head = self._branch_head(repo, revision)
            answer = []
            for item in files:
                path, size = item.get("path"), item.get("size")
                if not isinstance(path, str) or not isinstance(size, int):
                    raise _HttpError(400, "Each file needs a 'path' and a 'size'")
                entry: dict[str, Any] = {
                    "path": path,
                    "uploadMode": "lfs" if size >= self.lfs_threshold else "regular",
                    "shouldIgnore": False,
                }
                if path in head.tree:  # lets the client skip files that did not change
                    entry["oid"] = head.tree[path].etag
                answer.append(entry)
            return _json({"files": answer, "commitOid": head.oid})

    def _lfs_batch(self, req: _Request, repo_type: str, repo_id: str) -> _Response:
        payload = req.json()
        if payload.get("operation") != "upload":
            raise _HttpError(400, "LocalHub only implements the LFS 'upload' operation")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise _HttpError(400, "LocalHub only implements the 'basic' LFS transfer")
        with self._lock:
            repo = self._repo_for_write(req, repo_type, repo_id)
            objects = []
            for obj in payload.get("objects", []):
                oid, size = obj.get("oid"), obj.get("size")
                if not isinstance(oid, str) or not _SHA256_RE.fullmatch(oid) or not isinstance(size, int) or size < 0:
                    raise _HttpError(422, "Each LFS object needs a sha256 'oid' and a non-negative 'size'")
                stored = repo.lfs_objects.get(oid)
                if stored is not None and len(stored) == size:
                    objects.append({"oid": oid, "size": size})  # already there: no actions
                    continue
                if stored is not None:
                    objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "Size mismatch"}})
                    continue
                ticket = secrets.token_urlsafe(16)
                self._tickets[ticket] = ((repo_type, repo_id), oid, size)
                git_base = f"{self.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}.git/info/lfs/objects"
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {
                            "upload": {"href": f"{self.endpoint}/{_LFS_UPLOAD_ROUTE}/lfs/{ticket}"},
                            "verify": {"href": f"{git_base}/verify"},
                        },
                    }
                )
        body = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return _Response(200, json.dumps(body).encode(), content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, req: _Request, ticket: str) -> _Response:
        with self._lock:
            target = self._tickets.get(ticket)
            if target is None:
                raise _HttpError(403, "Unknown or expired upload URL")
            key, oid, size = target
            repo = self._repos.get(key)
            if repo is None:
                raise _HttpError(404, "Repository not found", "RepoNotFound")
        if len(req.body) != size:
            raise _HttpError(400, f"Uploaded {len(req.body)} bytes for an object announced as {size} bytes")
        if hashlib.sha256(req.body).hexdigest() != oid:
            raise _HttpError(400, "Uploaded content does not match the announced sha256")
        with self._lock:
            repo.lfs_objects[oid] = req.body  # the ticket stays valid: a retried PUT must not fail
        return _Response(200, headers={"ETag": f'"{hashlib.md5(req.body).hexdigest()}"'})

    def _lfs_verify(self, req: _Request, repo_type: str, repo_id: str) -> _Response:
        payload = req.json()
        with self._lock:
            repo = self._repo_for_write(req, repo_type, repo_id)
            stored = repo.lfs_objects.get(payload.get("oid", ""))
        if stored is None:
            raise _HttpError(404, "LFS object not found")
        if len(stored) != payload.get("size"):
            raise _HttpError(422, "LFS object size mismatch")
        return _json({"success": True})

    def _api_commit(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        if _truthy(req.query.get("create_pr")):
            raise _HttpError(400, "LocalHub does not implement pull requests")
        try:
            lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        except ValueError as exc:
            raise _HttpError(400, f"Malformed NDJSON commit payload: {exc}") from exc
        if not lines or lines[0].get("key") != "header":
            raise _HttpError(400, "The commit payload must start with a header line")
        header = lines[0].get("value") or {}
        title = header.get("summary")
        if not isinstance(title, str) or not title:
            raise _HttpError(400, "Missing commit summary")
        with self._lock:
            repo = self._repo_for_write(req, repo_type, repo_id)
            head = self._branch_head(repo, revision)
            parent = header.get("parentCommit")
            if parent is not None and not (parent == head.oid or (len(parent) >= 7 and head.oid.startswith(parent))):
                raise _HttpError(412, COMMIT_CONFLICT_MESSAGE)
            tree = dict(head.tree)
            added: list[str] = []
            deleted: list[str] = []
            for line in lines[1:]:
                self._apply_operation(repo, tree, line.get("key"), line.get("value") or {}, added, deleted)
            commit = self._add_commit(
                repo,
                revision,
                title,
                header.get("description") or "",
                tree,
                added=tuple(dict.fromkeys(added)),
                deleted=tuple(dict.fromkeys(deleted)),
            )
            url = f"{self._repo_url(repo)}/commit/{commit.oid}"
            answer = {"success": True, "commitOid": commit.oid, "commitUrl": url, "hookOutput": ""}
            return _json({**answer, "pullRequestUrl": None})

    def _apply_operation(
        self,
        repo: _Repo,
        tree: dict[str, StoredFile],
        key: Any,
        value: dict[str, Any],
        added: list[str],
        deleted: list[str],
    ) -> None:
        path = value.get("path")
        if not isinstance(path, str) or not path.strip("/"):
            raise _HttpError(400, f"Commit operation {key!r} has no path")
        if key == "file":
            encoding = value.get("encoding", "base64")
            raw = value.get("content", "")
            try:
                content = base64.b64decode(raw, validate=True) if encoding == "base64" else raw.encode()
            except ValueError as exc:
                raise _HttpError(400, f"Bad base64 content for {path}") from exc
            tree[path] = StoredFile.make(content, lfs=False)
            added.append(path)
        elif key == "lfsFile":
            oid = value.get("oid")
            content = repo.lfs_objects.get(oid) if isinstance(oid, str) else None
            if content is None:
                raise _HttpError(422, f"LFS object {oid} for {path} was never uploaded to this repo")
            if "size" in value and value["size"] != len(content):
                raise _HttpError(422, f"LFS object {oid} for {path} has size {len(content)}, not {value['size']}")
            tree[path] = StoredFile.make(content, lfs=True)
            added.append(path)
        elif key == "deletedFile":
            if path not in tree:
                raise _HttpError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            del tree[path]
            deleted.append(path)
        elif key == "deletedFolder":
            prefix = path.strip("/") + "/"
            inside = [p for p in tree if p.startswith(prefix)]
            if not inside:
                raise _HttpError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in inside:
                del tree[p]
            deleted.extend(sorted(inside))
        else:
            raise _HttpError(400, f"Unknown commit operation {key!r}")

    # ---- internals: downloads --------------------------------------------------------------------------------------

    def _resolve_file(self, req: _Request, repo_type: str, repo_id: str, revision: str, path: str) -> _Response:
        with self._lock:
            repo = self._repo_for_read(req, repo_type, repo_id)
            commit = self._resolve(repo, revision)
            stored = commit.tree.get(path)
        if stored is None:
            raise _HttpError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.etag}"',
            "Accept-Ranges": "bytes",
        }
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{stored.sha256}"'
            headers["X-Linked-Size"] = str(stored.size)
        content, status = stored.content, 200
        if req.range:
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", req.range)
            if match is None or match.groups() == ("", ""):
                raise _HttpError(416, f"Unsupported range {req.range!r}")
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last), stored.size - 1) if last else stored.size - 1
            else:
                start, end = max(stored.size - int(last), 0), stored.size - 1
            if start >= stored.size or start > end:
                raise _HttpError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{stored.size}"})
            content, status = content[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        return _Response(status, content, headers, content_type="application/octet-stream")


def patch_hf_client(monkeypatch: Any, hub: LocalHub | None = None) -> None:
    """Configure the installed huggingface_hub for tests against a LocalHub (lazy import: the server stays stdlib-only).

    Always turns Xet off (env var and the import-time constant). With ``hub``, also points the module-level
    defaults (``constants.ENDPOINT``, the ``resolve`` URL template, env ``HF_ENDPOINT``) at it, so calls that take
    no ``endpoint=`` reach the local hub too. ``monkeypatch`` is pytest's fixture (anything with ``setenv`` and
    ``setattr``); everything is undone at teardown.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    if hub is not None:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
