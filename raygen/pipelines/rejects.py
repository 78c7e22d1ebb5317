"""Rejected episodes: what failed, where and why, kept so a run does not make them again.

Stages (and hosts' error rows) write one small JSON record per rejected episode into the dataset's staging
folder; after each committed shard the driver folds the new records into one more parquet part of
``meta/raygen/rejects/`` (``part-NNNNNN.parquet``): each fold writes only what is new, so it costs the same
at the millionth episode as at the first. Read them as one table with :func:`read_rejects`. A dataset
written before parts existed keeps its ``meta/raygen/rejects.parquet``, read as the first part.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from raygen.datasets import _layout as L

__all__ = ["REJECT_SCHEMA", "fold_rejects", "read_rejects", "rejected_keys"]

REJECT_SCHEMA = pa.schema([("episode_key", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
                           ("score", pa.float64()), ("attempts", pa.int64()), ("stderr_tail", pa.string()),
                           ("recorded_at", pa.float64())])


def _parts(root: Path) -> list[Path]:
    folder = root / L.REJECTS_DIR
    parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    legacy = root / L.REJECTS
    return ([legacy] if legacy.exists() else []) + parts


def read_rejects(root: Path | str, columns: list[str] | None = None) -> pa.Table:
    """Every reject record of the dataset, oldest first (an empty table when there is none)."""
    parts = _parts(Path(root))
    schema = REJECT_SCHEMA if columns is None else pa.schema([REJECT_SCHEMA.field(c) for c in columns])
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(p, columns=columns).cast(schema) for p in parts])


def rejected_keys(root: Path | str) -> set[str]:
    return set(read_rejects(root, ["episode_key"]).column(0).to_pylist())


def fold_rejects(root: Path, staging: Path) -> list[dict[str, Any]]:
    """Move the reject records in ``staging`` into a new part; returns them."""
    files = sorted(staging.glob("*.json")) if staging.exists() else []
    if not files:
        return []
    records = [json.loads(f.read_text()) for f in files]
    now = time.time()
    rows = [{"episode_key": r["episode_key"], "stage": r["stage"], "reason": r["reason"], "score": r.get("score"),
             "attempts": r.get("attempts"), "stderr_tail": r.get("stderr_tail"), "recorded_at": now}
            for r in records]
    existing = [p for p in _parts(root) if p.parent.name == "rejects"]
    number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    L.atomic_write_parquet(root / L.REJECTS_DIR / f"part-{number:06d}.parquet",
                           pa.Table.from_pylist(rows, schema=REJECT_SCHEMA))
    for f in files:
        f.unlink()
    return records
