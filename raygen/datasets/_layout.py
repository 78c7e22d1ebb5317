"""Where things live in a dataset, and atomic writes.

LeRobot v3.0 paths (REFERENCE.md section 1) plus raygen's own files beside them
(ARCHITECTURE.md "The dataset on disk"). One shard = one (chunk, file) pair,
the same for data, every video, every depth file, flow and episodes metadata.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNKS_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_MB = 100
DEFAULT_VIDEO_FILE_SIZE_MB = 200

_CF = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = f"data/{_CF}.parquet"
VIDEO_PATH = "videos/{video_key}/" + _CF + ".mp4"
EPISODES_PATH = f"meta/episodes/{_CF}.parquet"
DEPTH_PATH = "depth/{camera}/" + _CF + ".mkv"
FLOW_PATH = f"flow/{_CF}.parquet"
SHARD_RECORD_PATH = f"meta/raygen/shards/{_CF}.json"

INFO = "meta/info.json"
STATS = "meta/stats.json"
TASKS = "meta/tasks.parquet"
RAYGEN_INFO = "meta/raygen/info.json"
LEDGER = "meta/raygen/ledger.jsonl"
REJECTS_DIR = "meta/raygen/rejects"
"""Reject records, one parquet part per fold (raygen.pipelines.rejects)."""
REJECTS = "meta/raygen/rejects.parquet"
"""Where datasets written before parts kept them all (still read)."""
DIVERSITY = "meta/raygen/diversity.json"
DIVERSITY_STATE = "meta/raygen/diversity_state.json"
RUN = "meta/raygen/run.json"
LOCK = "meta/raygen/.lock"
UPLOADS = "meta/raygen/uploads.jsonl"
FEED_LEDGER = "meta/raygen/feeds/{name}.jsonl"
"""One line per batch a live feed delivered (local, never uploaded)."""
STATS_STATE_DIR = "meta/raygen/stats_state"
STATS_STATE = STATS_STATE_DIR + "/seq-{seq:08d}.npz"
"""The statistics accumulator as of a commit (local: never uploaded; only the last commit's is kept)."""
STAGING = ".staging"

IMAGE_PREFIX = "observation.images."

# Top-level folders whose files are numbered by (chunk, file); the ledger must name all of them.
NUMBERED_DIRS = ("data", "videos", "depth", "flow", "meta/episodes", "meta/raygen/shards")
_CF_RE = re.compile(r"chunk-(\d+)/file-(\d+)\.[a-z0-9]+$")


def video_key(camera: str) -> str:
    """LeRobot feature name of a camera's colour video."""
    return IMAGE_PREFIX + camera


def position(seq: int, chunks_size: int) -> tuple[int, int]:
    """(chunk_index, file_index) of the shard committed ``seq``-th (0-based)."""
    return divmod(seq, chunks_size)


def chunk_file_of(relpath: str) -> tuple[int, int] | None:
    """Parse (chunk, file) out of a numbered path, or None."""
    m = _CF_RE.search(relpath)
    return (int(m.group(1)), int(m.group(2))) if m else None


def numbered_files(root: Path) -> list[str]:
    """Every numbered file under the dataset root, as paths relative to it (posix)."""
    out = []
    for d in NUMBERED_DIRS:
        base = root / d
        if base.is_dir():
            for p in base.rglob("*"):
                if p.is_file() and chunk_file_of(p.relative_to(root).as_posix()):
                    out.append(p.relative_to(root).as_posix())
    return sorted(out)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a uniquely named temp file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = 4) -> None:
    """Pretty JSON for files people read (info.json, stats.json); ``indent=None`` for bulky records."""
    seps = None if indent else (",", ":")
    atomic_write_bytes(path, (json.dumps(obj, indent=indent, separators=seps, allow_nan=False) + "\n").encode())


def atomic_write_parquet(path: Path, table: pa.Table, *, row_group_lengths: list[int] | None = None) -> None:
    """Write a parquet file atomically; ``row_group_lengths`` splits it (one row group per episode)."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema) as w:
        start = 0
        for n in row_group_lengths or [table.num_rows]:
            w.write_table(table.slice(start, n))
            start += n
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines file (a torn last line, left by a crash, is not one); [] if absent."""
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return []
    lines = raw.splitlines() if raw.endswith("\n") else raw.splitlines()[:-1]
    out = []
    for i, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {i} is not JSON ({exc}); the file is damaged") from None
    return out


def cut_torn_tail(path: Path) -> int:
    """Cut a torn last line (a crash mid-append) off a JSON-lines file, so the next append starts clean.

    Returns the bytes removed. The caller must be the file's only writer.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0
    keep = raw.rfind(b"\n") + 1
    if keep == len(raw):
        return 0
    with open(path, "r+b") as f:
        f.truncate(keep)
        os.fsync(f.fileno())
    return len(raw) - keep


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync it: used for the ledger, whose lines are commit points."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())
    if new:
        fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
