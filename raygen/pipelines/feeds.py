"""Live feeds: accepted episodes stream to trainers while the run goes on, filtered by quality, never blocking it.

Two ways to take episodes as they are committed:

- **HTTP feeds** (``feeds:`` in the run config, several allowed): a thread on the driver POSTs batches of
  committed episodes whose quality score reaches ``min_quality_score`` to a trainer's URL.
- **In-cluster** (:func:`feed`, ``raygen.feed``): a generator a trainer on the same cluster (or machine)
  iterates, following the dataset's ledger while another job writes it; each batch says where to resume.

The backlog never sits in memory: both read the committed dataset, which is on disk anyway. A trainer slower
than generation only falls behind (the ``pending`` count grows); commits never wait for it and nothing is
dropped. At the end of a run an HTTP feed gets ``drain_timeout_s`` to catch up; what it has not delivered
stays pending and is sent by the next run (or the next ``raygen run`` of the same config): each batch is
fixed before its first POST (an ``intent`` line of ``meta/raygen/feeds/<name>.jsonl``, local, never
uploaded) and every acknowledged batch is a line there too; after a crash the feed first resends the batch
that was on its way, as it was, then what was committed but not acknowledged, as the Hub uploader does.

**The HTTP payload** (``format: raygen-feed/1``): one POST per batch, ``Content-Type: application/zip``,
headers ``Idempotency-Key`` (the batch id: a hash of its episode keys, the same on every retry and after a
crash, so a trainer drops duplicates) and ``X-Raygen-Feed`` (the feed's name), and the API key in
``api_key_header`` when one is configured. The zip (stored, not compressed) holds ``batch.json``::

    {"format": "raygen-feed/1", "feed": ..., "batch_id": ..., "dataset": ..., "episodes": [
        {"key", "index", "task", "quality_score", "fps", "length", "committed_at",
         "arrays": {"observation.state": "e/<index>/observation.state.npy", "action": ..., ...},
         "videos": {"<camera>": "e/<index>/videos/<camera>.mp4"},     colour, as encoded (stream copy)
         "depth": {"<camera>": "e/<index>/depth/<camera>.mkv"},       FFV1 gray16le, uint16 mm, 0 = invalid
         "references": {"data": ..., "videos": {...}, "depth": {...}}}]}   always: files in the dataset

and the files it names: every per-frame column of the episode as a NumPy ``.npy`` (flattened columns in
their recorded shapes), and the episode's own video and depth segments. With ``payload: references`` the
zip holds ``batch.json`` only, and a trainer with access to the dataset reads the files it points at.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import io
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raygen.datasets import _layout as L

logger = logging.getLogger(__name__)

__all__ = ["FeedBatch", "FeedStats", "HttpFeed", "check_feeds", "feed"]

FORMAT = "raygen-feed/1"
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_LAG_KEEP = 10_000


# ------------------------------------------------------------------------------------------ committed episodes


@dataclass(frozen=True)
class Committed:
    index: int
    key: str
    task: str
    score: float | None
    committed_ts: float
    chunk: int
    file: int


class CommittedEpisodes:
    """The dataset's committed episodes in commit order, read incrementally from the ledger: the ledger is
    re-read only when it grew, and only shards with episodes from ``start`` on are opened."""

    def __init__(self, root: Path, start: int = 0):
        self.root = root
        self.start = start
        self._shards = 0
        self._size = -1

    def new(self) -> list[Committed]:
        import pyarrow.parquet as pq

        path = self.root / L.LEDGER
        size = path.stat().st_size if path.exists() else 0
        if size == self._size:
            return []
        entries = L.read_jsonl(path)
        out: list[Committed] = []
        for e in entries[self._shards:]:
            if e["episode_from"] + len(e["episodes"]) <= self.start:
                continue  # delivered before
            cf = {"chunk_index": e["chunk_index"], "file_index": e["file_index"]}
            rec = L.read_json(self.root / L.SHARD_RECORD_PATH.format(**cf))
            tasks = pq.read_table(self.root / L.EPISODES_PATH.format(**cf), columns=["tasks"]).column(0).to_pylist()
            ts = float(e.get("committed_ts") or dt.datetime.fromisoformat(e["committed_at"]).timestamp())
            for i, (key, r) in enumerate(zip(e["episodes"], rec["episodes"])):
                score = r.get("metrics", {}).get("quality.score")
                out.append(Committed(index=e["episode_from"] + i, key=key, task=str(tasks[i][0] if tasks[i] else ""),
                                     score=None if score is None else float(score), committed_ts=ts,
                                     chunk=e["chunk_index"], file=e["file_index"]))
        self._shards, self._size = len(entries), size
        return out


def _passes(ep: Committed, min_score: float) -> bool:
    return min_score <= 0 or (ep.score is not None and ep.score >= min_score)


# ------------------------------------------------------------------------------------------ payloads


def _episode_files(root: Path, reader: Any, ep: Committed, references_only: bool) -> tuple[dict, dict[str, bytes]]:
    """batch.json's entry of one episode and the files it names (none with references only)."""
    from raygen.datasets._arrow import column_values
    from raygen.datasets._video import extract_window
    from raygen.datasets.reader import _read_episode_rows

    row = reader._row(ep.index)
    rec = reader._record(ep.index, row)
    fps, n = reader.fps, int(row["length"])
    cf = {"chunk_index": row["data/chunk_index"], "file_index": row["data/file_index"]}
    data_rel = L.DATA_PATH.format(**cf)
    entry: dict[str, Any] = {"key": ep.key, "index": ep.index, "task": ep.task, "quality_score": ep.score,
                             "fps": fps, "length": n, "committed_at": ep.committed_ts, "arrays": {}, "videos": {},
                             "depth": {}, "references": {"data": {"path": data_rel, "episode_index": ep.index},
                                                         "videos": {}, "depth": {}}}
    files: dict[str, bytes] = {}
    windows = {}
    for cam, crec in rec["cameras"].items():
        if not crec.get("has_video", True):
            continue
        vk = L.video_key(cam)
        vcf = {"chunk_index": row[f"videos/{vk}/chunk_index"], "file_index": row[f"videos/{vk}/file_index"]}
        start = float(row[f"videos/{vk}/from_timestamp"])
        vrel = L.VIDEO_PATH.format(video_key=vk, **vcf)
        entry["references"]["videos"][cam] = {"path": vrel, "from_timestamp": start, "frames": n}
        windows[("videos", cam, "mp4")] = (vrel, start)
        if crec.get("has_depth"):
            drel = L.DEPTH_PATH.format(camera=cam, **vcf)
            entry["references"]["depth"][cam] = {"path": drel, "from_timestamp": start, "frames": n}
            windows[("depth", cam, "mkv")] = (drel, start)
    if references_only:
        return entry, files
    table = _read_episode_rows(root / data_rel, ep.index)
    shapes = reader.raygen_info.get("flattened_features", {})
    for name in table.column_names:
        values = column_values(table.column(name))
        if name in shapes:
            values = values.reshape(len(values), *shapes[name])
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(values), allow_pickle=False)
        path = f"e/{ep.index}/{name}.npy"
        files[path] = buf.getvalue()
        entry["arrays"][name] = path
    for (kind, cam, ext), (rel, start) in windows.items():
        path = f"e/{ep.index}/{kind}/{cam}.{ext}"
        files[path] = extract_window(root / rel, start, n, fps)
        entry[kind][cam] = path
    return entry, files


def _batch_id(episodes: list[Committed]) -> str:
    """The Idempotency-Key: a hash of the batch's episode keys."""
    return hashlib.sha256("\n".join(ep.key for ep in episodes).encode()).hexdigest()[:20]


def build_payload(root: Path, reader: Any, feed_name: str, episodes: list[Committed], references_only: bool
                  ) -> tuple[str, bytes]:
    """(batch id, zip bytes) of one batch."""
    batch_id = _batch_id(episodes)
    entries, files = [], {}
    for ep in episodes:
        entry, more = _episode_files(root, reader, ep, references_only)
        entries.append(entry)
        files.update(more)
    batch = {"format": FORMAT, "feed": feed_name, "batch_id": batch_id, "dataset": root.resolve().name,
             "episodes": entries}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("batch.json", json.dumps(batch))
        for path, data in files.items():
            z.writestr(path, data)
    return batch_id, buf.getvalue()


# ------------------------------------------------------------------------------------------ HTTP feed


@dataclass
class FeedStats:
    """What one feed did in this run (the summary, run.json and the dashboard metrics carry it)."""

    name: str
    url: str
    queued: int = 0
    """Episodes that passed the quality bar and were queued for the feed."""
    sent: int = 0
    filtered: int = 0
    """Episodes below the quality bar, not sent."""
    pending: int = 0
    """Queued but not yet acknowledged (the trainer's backlog)."""
    batches: int = 0
    bytes: int = 0
    retries: int = 0
    last_error: str | None = None
    lag_s: list[float] = field(default_factory=list)
    """Commit-to-acknowledgement seconds of the episodes sent (the last 10,000)."""

    def to_dict(self) -> dict[str, Any]:
        lag = np.asarray(self.lag_s) if self.lag_s else None
        return {"name": self.name, "url": self.url, "queued": self.queued, "sent": self.sent,
                "filtered": self.filtered, "pending": self.pending, "batches": self.batches, "bytes": self.bytes,
                "retries": self.retries, "last_error": self.last_error,
                "lag_median_s": None if lag is None else float(np.median(lag)),
                "lag_p95_s": None if lag is None else float(np.percentile(lag, 95))}


class FeedError(RuntimeError):
    """A batch the trainer refused for good (a 4xx other than 408/425/429): the message says which."""


class _Stopping(Exception):
    """The feed was stopped while a batch was on its way (it stays pending)."""


class HttpFeed:
    """One HTTP feed's thread: reads committed episodes, batches those above the bar, POSTs, records acks."""

    def __init__(self, root: Path | str, cfg: Any, *, metrics: Any = None):
        self.root = Path(root)
        self.cfg = cfg
        self.secret = _api_key(cfg)
        self.stats = FeedStats(cfg.name, _redact_url(cfg.url))
        self.metrics = metrics
        self._ledger = self.root / L.FEED_LEDGER.format(name=cfg.name)
        L.cut_torn_tail(self._ledger)
        lines = L.read_jsonl(self._ledger)
        acks = [line for line in lines if "through" in line]
        self.position = int(acks[-1]["through"]) if acks else 0
        """Episodes before this index were sent (or filtered) and acknowledged."""
        self._resume: list[int] | None = lines[-1]["episodes"] if lines and "intent" in lines[-1] else None
        """The batch that was on its way when the last run ended: sent again first, as it was."""
        self._episodes = CommittedEpisodes(self.root, start=self.position)
        self._incoming: collections.deque[Committed] = collections.deque()
        self._pending: list[tuple[Committed, float]] = []
        self._inflight: list[Committed] | None = None
        """The batch being sent: fixed (its Idempotency-Key too) until the trainer acknowledges it."""
        self._considered = self.position
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: Any = None

    # --------------------------------------------------------------- lifecycle
    def start(self) -> HttpFeed:
        self._thread = threading.Thread(target=self._loop, name=f"raygen-feed-{self.cfg.name}", daemon=True)
        self._thread.start()
        return self

    def notify(self) -> None:
        """A shard was committed."""
        self._wake.set()

    def finish(self, timeout_s: float | None = None) -> FeedStats:
        """Deliver what is committed for up to ``timeout_s`` (the config's drain_timeout_s), then stop; what is
        left stays pending for the next run."""
        self._draining.set()
        self._wake.set()
        deadline = time.monotonic() + (self.cfg.drain_timeout_s if timeout_s is None else timeout_s)
        entries = L.read_jsonl(self.root / L.LEDGER)  # the run has stopped committing: this is all there is
        committed = entries[-1]["episode_from"] + len(entries[-1]["episodes"]) if entries else 0
        while time.monotonic() < deadline and self._thread is not None and self._thread.is_alive():
            if not self._pending and self._inflight is None and self.position >= committed:
                break
            time.sleep(0.1)
        self.stop()
        try:  # what was committed but never taken (a short drain) is pending too
            self._take_new()
        except Exception:
            logger.debug("feed %s: could not count pending episodes", self.cfg.name, exc_info=True)
        if self.stats.pending:
            logger.warning("feed %s: %d episodes not delivered within %.0f s; the next run sends them",
                           self.cfg.name, self.stats.pending, self.cfg.drain_timeout_s)
        return self.stats

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.timeout_s + 5)

    # --------------------------------------------------------------- the loop
    def _loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._take_new()
                batch = self._due()
                if batch is None:
                    self._wake.wait(0.5 if not self._pending else min(0.5, self.cfg.max_wait_s / 4))
                    self._wake.clear()
                    continue
                self._send(batch)
                backoff = 0.5
            except _Stopping:
                break
            except FeedError as exc:
                self.stats.last_error = self._redact(str(exc))
                logger.error("feed %s: %s", self.cfg.name, self.stats.last_error)
                self._stop.wait(self.cfg.retry_after_s)
            except Exception as exc:  # a feed never takes the run down: log, wait, try again
                self.stats.last_error = self._redact(f"{type(exc).__name__}: {exc}")
                self.stats.retries += 1
                logger.warning("feed %s: %s; retrying in %.1f s", self.cfg.name, self.stats.last_error, backoff)
                self._stop.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 30.0)

    def _take_new(self) -> None:
        self._incoming.extend(self._episodes.new())  # each leaves the backlog only once it is handled
        filtered = 0
        while self._incoming:
            ep = self._incoming[0]
            if ep.index >= self._considered:  # else acknowledged in an earlier run
                if _passes(ep, self.cfg.min_quality_score):
                    self._pending.append((ep, time.monotonic()))
                    self.stats.queued += 1
                else:
                    self.stats.filtered += 1
                    filtered += 1
                self._considered = ep.index + 1
            self._incoming.popleft()
        self.stats.pending = len(self._pending)
        if filtered:
            self._count(filtered=filtered)

    def _due(self) -> list[Committed] | None:
        if self._inflight is not None:
            return self._inflight
        if self._resume is not None:
            batch, self._resume = self._resume_batch(self._resume), None
            if batch:
                self._inflight = batch
                return batch
        if not self._pending:
            if self._considered > self.position:  # only filtered episodes since the last ack: record the progress
                self._ack([], self._considered, 0)
            return None
        full = len(self._pending) >= self.cfg.batch_size
        waited = time.monotonic() - self._pending[0][1] >= self.cfg.max_wait_s
        if full or waited or self._draining.is_set():
            batch = [ep for ep, _ in self._pending[: self.cfg.batch_size]]
            L.append_line(self._ledger, json.dumps({"intent": _batch_id(batch), "episodes": [ep.index for ep in batch],
                                                    "at": time.time()}))
            self._inflight = batch
            return batch
        return None

    def _resume_batch(self, indices: list[int]) -> list[Committed] | None:
        """The batch a crash left on its way, when the pending episodes still start with it (the same
        Idempotency-Key, so a trainer that took it drops the copy)."""
        head = [ep for ep, _ in self._pending[: len(indices)]]
        if [ep.index for ep in head] == list(indices):
            return head
        logger.info("feed %s: the batch on its way when the last run ended (episodes %s) no longer matches the "
                    "pending episodes (min_quality_score changed?); batching afresh", self.cfg.name, indices)
        return None

    def _send(self, batch: list[Committed]) -> None:
        from raygen.datasets.reader import DatasetReader

        if self._reader is None:
            self._reader = DatasetReader(self.root)
        self._reader.refresh()
        batch_id, body = build_payload(self.root, self._reader, self.cfg.name, batch, self.cfg.payload == "references")
        headers = {"Content-Type": "application/zip", "Idempotency-Key": batch_id, "X-Raygen-Feed": self.cfg.name}
        if self.secret:
            headers[self.cfg.api_key_header] = self.cfg.api_key_prefix + self.secret
        self._post(body, headers, batch_id)
        rest = self._pending[len(batch):]
        through = rest[0][0].index if rest else self._considered
        now = time.time()
        self._ack([ep.index for ep in batch], through, len(body), batch_id)
        self._pending, self._inflight = rest, None
        self.stats.sent += len(batch)
        self.stats.batches += 1
        self.stats.bytes += len(body)
        self.stats.pending = len(self._pending)
        lags = [now - ep.committed_ts for ep in batch]
        self.stats.lag_s = (self.stats.lag_s + lags)[-_LAG_KEEP:]
        self._count(sent=len(batch), bytes=len(body), lags=lags)

    def _count(self, **kw: Any) -> None:
        """The dashboard's feed metrics; best effort, never in the way of delivery."""
        if self.metrics is None:
            return
        try:
            self.metrics.feed(self.cfg.name, **kw)
        except Exception:
            logger.debug("feed %s: metrics failed", self.cfg.name, exc_info=True)

    def _post(self, body: bytes, headers: dict[str, str], batch_id: str) -> None:
        delay = 0.5
        for attempt in range(1, self.cfg.attempts + 1):
            if self._stop.is_set():
                raise _Stopping()
            request = urllib.request.Request(self.cfg.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                if exc.code not in _RETRY_STATUS:
                    raise FeedError(f"batch {batch_id}: the trainer answered HTTP {exc.code} ({exc.reason}); "
                                    "not retrying until the feed's retry_after_s has passed") from None
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            self.stats.retries += 1
            self.stats.last_error = self._redact(f"batch {batch_id}: {problem}")
            if attempt == self.cfg.attempts:
                raise RuntimeError(self.stats.last_error)
            logger.info("feed %s: %s, retrying (%d/%d)", self.cfg.name, self.stats.last_error, attempt,
                        self.cfg.attempts)
            self._stop.wait(delay * (0.5 + random.random()))
            delay = min(delay * 2, 30.0)

    def _ack(self, indices: list[int], through: int, size: int, batch_id: str = "") -> None:
        L.append_line(self._ledger, json.dumps({"batch_id": batch_id, "episodes": indices, "through": through,
                                                "bytes": size, "acked_at": time.time()}))
        self.position = through

    def _redact(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text


def check_feeds(feeds: list[Any]) -> None:
    """Each feed's API key can be read (a run checks this before it opens the dataset)."""
    for cfg in feeds:
        _api_key(cfg)


def _api_key(cfg: Any) -> str | None:
    if cfg.api_key_env:
        value = os.environ.get(cfg.api_key_env)
        if not value:
            raise ValueError(f"feeds[{cfg.name}].api_key_env: the environment variable {cfg.api_key_env} is not set")
        return value.strip()
    if cfg.api_key_file:
        try:
            return Path(cfg.api_key_file).read_text().strip()
        except OSError as exc:
            raise ValueError(f"feeds[{cfg.name}].api_key_file: cannot read {cfg.api_key_file} ({exc.strerror})") \
                from None
    return None


def _redact_url(url: str) -> str:
    """A URL without user:password@ (it goes into the summary and run.json)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password or parts.username:
        parts = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts)


# ------------------------------------------------------------------------------------------ in-cluster consumer


@dataclass
class FeedBatch:
    """Episodes for a trainer: numpy arrays, ready for torch.from_numpy."""

    episodes: list[dict[str, Any]]
    position: int
    """Pass as ``start=`` to continue after this batch (a restarted trainer resumes here)."""


def feed(source: Any, *, min_quality_score: float = 0.0, batch_size: int = 8, start: int = 0,
         follow: bool = True, poll_s: float = 1.0, idle_timeout_s: float | None = None,
         decode_video: bool = True) -> Iterator[FeedBatch]:
    """Committed episodes of a dataset, in commit order, as they are committed.

    ``source``: a dataset folder another job may still be writing, or a :class:`RunHandle` (then it follows
    until the run has ended and everything is read). Episodes below ``min_quality_score`` are skipped. Each
    episode is a dict: ``key, index, task, quality_score, fps``, every per-frame array under its column name
    (``observation.state``, ``action``, ``tracks3d``, ...), ``frames`` ({camera: [T,H,W,3] uint8}) and
    ``depth`` ({camera: [T,H,W] uint16 mm}). ``follow=False`` stops once caught up; ``idle_timeout_s`` stops
    after that long without a new episode.
    """
    from raygen.datasets.reader import DatasetReader

    handle = source if hasattr(source, "running") and hasattr(source, "config") else None
    root = Path(handle.config.output.path if handle is not None else source)
    position, reader, last_new = int(start), None, time.monotonic()
    batch: list[dict[str, Any]] = []
    while True:
        running = handle.running if handle is not None else follow
        if reader is None and (root / L.INFO).exists() and (root / L.LEDGER).exists():
            reader = DatasetReader(root)
        elif reader is not None:
            reader.refresh()
        total = len(reader) if reader is not None else 0
        while position < total:
            ep = reader.episode(position, decode_video=decode_video)
            position += 1
            last_new = time.monotonic()  # idle time counts from the last episode taken, not the trainer's work
            score = ep.metrics.get("quality.score")
            if min_quality_score > 0 and (score is None or float(score) < min_quality_score):
                continue
            batch.append(_as_dict(ep, position - 1))
            if len(batch) >= batch_size:
                yield FeedBatch(batch, position)
                batch = []
        if not running or (idle_timeout_s is not None and time.monotonic() - last_new > idle_timeout_s):
            if reader is not None and (reader.refresh() or position < len(reader)):
                continue  # more was committed while the last batches were out
            if batch:
                yield FeedBatch(batch, position)
            return
        time.sleep(poll_s)


def _as_dict(ep: Any, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"key": ep.episode_key, "index": index, "task": ep.task,
                           "quality_score": ep.metrics.get("quality.score"), "fps": ep.fps,
                           "observation.state": ep.state, "action": ep.action, "gripper.pose": ep.gripper_pose,
                           "gripper.opening": ep.gripper_opening, **ep.frame_features,
                           "frames": {c: cam.rgb for c, cam in ep.cameras.items() if cam.rgb is not None},
                           "depth": {c: cam.depth for c, cam in ep.cameras.items() if cam.depth is not None}}
    return out
