"""DatasetWriter: the single-process front of encode -> shard -> commit.

The distributed run splits these steps over Ray Data stages; this class runs
them in one process for the demo, the benchmark, tests and small jobs:

    with DatasetWriter(root, shard_size=8) as w:
        for ep in episodes:
            if ep.episode_key not in w.committed_keys:
                w.add(ep)

States: open -> (add/add_encoded)* -> closed. ``close`` commits the last,
partial shard and is safe to call twice; the context manager calls it in
``finally``. An exception inside the ``with`` block aborts the open shard
instead: what was committed stays committed, what was not is not.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from raygen.datasets._layout import DEFAULT_CHUNKS_SIZE
from raygen.datasets._video import VideoSettings
from raygen.datasets.commit import Committer
from raygen.datasets.encode import EncodedEpisode, encode_episode
from raygen.datasets.episode import Episode
from raygen.datasets.lerobot_depth import DepthQuantizer
from raygen.datasets.shard import ShardWriter

logger = logging.getLogger(__name__)

__all__ = ["DatasetWriter"]


class DatasetWriter:
    def __init__(
        self,
        root: Path | str,
        *,
        video: VideoSettings | None = None,
        shard_size: int = 16,
        chunks_size: int = DEFAULT_CHUNKS_SIZE,
        encode_workers: int = 4,
        lerobot_depth: bool = False,
    ):
        if shard_size < 1:
            raise ValueError(f"shard_size: must be >= 1, got {shard_size}")
        self.video = video or VideoSettings()
        self.shard_size = shard_size
        self.encode_workers = encode_workers
        self.lerobot_depth = DepthQuantizer() if lerobot_depth else None
        """Also write LeRobot >= 0.6 depth videos (raygen.datasets.lerobot_depth) beside the FFV1 depth."""
        self.committer = Committer(root, chunks_size=chunks_size)
        self._shard: ShardWriter | None = None
        self._pending: set[str] = set()
        self._closed = False
        self.entries: list[dict[str, Any]] = []

    @property
    def root(self) -> Path:
        return self.committer.root

    @property
    def committed_keys(self) -> frozenset[str]:
        return self.committer.committed_keys

    def add(self, episode: Episode) -> None:
        """Validate, encode and add one episode; commits a shard every ``shard_size`` episodes."""
        self._check_key(episode.episode_key)
        self.add_encoded(encode_episode(episode, self.video, workers=self.encode_workers,
                                        lerobot_depth=self.lerobot_depth))

    def add_encoded(self, encoded: EncodedEpisode) -> dict[str, Any] | None:
        """Add an encoded episode; returns the ledger entry when this completed and committed a shard."""
        self._check_key(encoded.episode_key)
        if self._shard is None:
            self._shard = ShardWriter(self.committer.staging_dir, self.video)
        self._shard.add(encoded)
        self._pending.add(encoded.episode_key)
        if len(self._shard) >= self.shard_size:
            return self.flush()
        return None

    def flush(self) -> dict[str, Any] | None:
        """Commit the open shard now (if it has episodes); returns its ledger entry."""
        shard, self._shard = self._shard, None
        if shard is None:
            return None
        staged = shard.finalize()
        self._pending.clear()
        if staged is None:
            return None
        entry = self.committer.commit(staged)
        self.entries.append(entry)
        return entry

    def close(self) -> None:
        """Commit the last partial shard (unless aborted) and release the dataset; safe to call twice."""
        if self._closed:
            self.committer.close()
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self.committer.close()

    def abort(self, *, release: bool = True) -> None:
        """Drop the open shard (nothing of it is committed); release the dataset unless ``release`` is False
        (then it stays locked, ours, until :meth:`close`)."""
        if self._shard is not None:
            self._shard.abort()
            self._shard = None
        self._pending.clear()
        self._closed = True
        if release:
            self.committer.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _check_key(self, key: str) -> None:
        if self._closed:
            raise RuntimeError(f"DatasetWriter for {self.root} is closed; cannot add {key!r}")
        if key in self.committer.committed_keys:
            raise ValueError(f"episode {key!r} is already committed to {self.root}; skip committed_keys")
        if key in self._pending:
            raise ValueError(f"episode {key!r} was already added to the open shard")
