"""Critical-state annotation of a dataset (seed 002): mark the frames of every demonstration where it is easy to fail.

The methods themselves are pure per-episode functions in :mod:`raygen.critical.methods` (re-exported here);
where a dataset holds their inputs is :mod:`raygen.critical._inputs`.

``annotate_dataset`` runs one of them over every episode of a LeRobot v3.0 dataset and writes a NEW
dataset beside it (the source is never modified): the data parquet gains an int8 column ``augment_states``,
info.json gains the feature and a ``raygen_annotation`` entry (method, every parameter, inputs, counts),
stats, episodes metadata and raygen's ledger and statistics state follow, and videos, depth and flow are
hard-linked. ``critical_states`` lists the marked frames of an annotated dataset.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from raygen.critical._inputs import describe, episode_inputs, features_read, resolve_inputs
from raygen.critical.methods import (
    COMBINED_DEFAULT,
    METHODS,
    AnnotationError,
    Method,
    _apply,
    action_variance,
    combined,
    gripper_changes,
    pose_changes,
    resolve_params,
    reward_threshold,
    subtask_signals,
)
from raygen.datasets import _layout as L

logger = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_KEY",
    "COLUMN",
    "COMBINED_DEFAULT",
    "METHODS",
    "AnnotationError",
    "Method",
    "action_variance",
    "annotate_dataset",
    "annotation_of",
    "combined",
    "critical_states",
    "gripper_changes",
    "pose_changes",
    "resolve_params",
    "reward_threshold",
    "subtask_signals",
]

COLUMN = "augment_states"
"""The per-frame int8 column (1 = critical), named as the seed's HDF5 files name it."""
ANNOTATION_KEY = "raygen_annotation"
"""Top-level info.json key of an annotated dataset: method, params, inputs, counts, source."""
FEATURE = {"dtype": "int8", "shape": [1], "names": ["critical"]}


def _read_info(root: Path) -> dict[str, Any]:
    try:
        return L.read_json(root / L.INFO)
    except FileNotFoundError:
        raise AnnotationError(f"{root}: no dataset here ({L.INFO} is missing)") from None


def annotation_of(root: Path | str) -> dict[str, Any]:
    """The ``raygen_annotation`` entry of an annotated dataset (method, params, inputs, counts, source)."""
    root = Path(root)
    info = _read_info(root)
    if COLUMN not in info.get("features", {}) or ANNOTATION_KEY not in info:
        raise AnnotationError(f"{root}: not annotated (info.json has no {COLUMN!r} feature and "
                              f"{ANNOTATION_KEY!r} entry); annotate it first: raygen.critical.annotate_dataset("
                              f"{str(root)!r}, OUTPUT, method=...)")
    return info[ANNOTATION_KEY]


@contextmanager
def _locked(root: Path, *, exclusive: bool, why: str) -> Iterator[None]:
    """Hold the dataset's writer lock (when it has one) so that no raygen writer changes it meanwhile."""
    path = root / L.LOCK
    if not path.exists():
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AnnotationError(f"{root}: a process is writing this dataset (it holds {L.LOCK}); {why}") from None
        yield
    finally:
        os.close(fd)


def _data_and_keys(root: Path, info: Mapping[str, Any]) -> tuple[list[str], list[str], list[str], list[dict]]:
    """(data files, episodes metadata files, episode keys by index, ledger entries) of a dataset."""
    import pyarrow.parquet as pq

    entries = L.read_jsonl(root / L.LEDGER)
    named = {rel for e in entries for rel in e["files"]}
    ep_files = sorted(p.relative_to(root).as_posix() for p in (root / "meta/episodes").rglob("*.parquet"))
    if entries:
        ep_files = [rel for rel in ep_files if rel in named]
    data: set[str] = set()
    total = 0
    for rel in ep_files:
        t = pq.read_table(root / rel, columns=["data/chunk_index", "data/file_index"])
        total += t.num_rows
        for c, f in zip(t.column(0).to_pylist(), t.column(1).to_pylist()):
            data.add(info["data_path"].format(chunk_index=c, file_index=f))
    keys = [k for e in entries for k in e["episodes"]] if entries else [f"episode_{i:06d}" for i in range(total)]
    if total != info.get("total_episodes") or len(keys) != total:
        raise AnnotationError(f"{root}: info.json says {info.get('total_episodes')} episodes, the episodes metadata "
                              f"holds {total}" + (f" and the ledger {len(keys)}" if entries else "")
                              + "; run `raygen verify` on it (opening it with raygen's writer repairs an "
                                "interrupted commit)")
    return sorted(data), ep_files, keys, entries


def _insert_before(items: list[tuple[str, Any]], key: str, new: tuple[str, Any]) -> list[tuple[str, Any]]:
    at = next((i for i, (k, _) in enumerate(items) if k == key), len(items))
    return items[:at] + [new] + items[at:]


def _with_column(table: Any, values: np.ndarray) -> Any:
    """The data table with ``augment_states`` before the default columns, the Hugging Face schema note too."""
    import pyarrow as pa

    at = table.column_names.index("timestamp") if "timestamp" in table.column_names else table.num_columns
    out = table.add_column(at, pa.field(COLUMN, pa.int8()), pa.array(values, pa.int8()))
    meta = dict(table.schema.metadata or {})
    if b"huggingface" in meta:
        hf = json.loads(meta[b"huggingface"])
        feats = hf.setdefault("info", {}).setdefault("features", {})
        hf["info"]["features"] = dict(_insert_before(list(feats.items()), "timestamp",
                                                     (COLUMN, {"dtype": "int8", "_type": "Value"})))
        if hf.get("fingerprint"):  # other content than the source's file: another fingerprint
            hf["fingerprint"] = hashlib.sha256(f"{hf['fingerprint']}+{COLUMN}".encode()).hexdigest()[:16]
        meta[b"huggingface"] = json.dumps(hf).encode()
    return out.replace_schema_metadata(meta)


def _episode_stats_columns(table: Any, per_episode: Mapping[int, Mapping[str, np.ndarray]], rel: str) -> Any:
    import pyarrow as pa

    from raygen.datasets._stats import STAT_KEYS

    idx = table.column("episode_index").to_pylist()
    lost = [i for i in idx if i not in per_episode]
    if lost:
        raise AnnotationError(f"{rel}: episodes {lost[:5]} have no rows in the data files")
    at = (table.column_names.index("meta/episodes/chunk_index") if "meta/episodes/chunk_index" in table.column_names
          else table.num_columns)
    for k in STAT_KEYS:
        typ = pa.list_(pa.int64()) if k in ("count", "min", "max") else pa.list_(pa.float64())
        values = [np.asarray(per_episode[i][k]).tolist() for i in idx]
        table = table.add_column(at, pa.field(f"stats/{COLUMN}/{k}", typ), pa.array(values, typ))
        at += 1
    return table


def _place(src: Path, dst: Path, *, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError as exc:  # another filesystem, or links not allowed: a copy holds the same bytes
            logger.debug("cannot hard-link %s (%s); copying", src, exc)
    shutil.copy2(src, dst)


_LINKED = ("videos/", "depth/", "flow/")
"""Large files that never change once committed: hard-linked into the output."""
_LEFT_OUT = (L.STAGING + "/", L.STATS_STATE_DIR + "/", "meta/raygen/feeds/")


def _check_output(root: Path, output: Path, overwrite: bool) -> None:
    r, o = root.resolve(), output.resolve()
    if o == r or o.is_relative_to(r):
        raise AnnotationError(f"{output}: the output must lie outside the dataset it annotates ({root}); "
                              "annotation writes a new dataset and never modifies its input")
    if r.is_relative_to(o):
        raise AnnotationError(f"{output}: the dataset to annotate ({root}) lies inside the output; choose another")
    if not output.exists():
        return
    if not overwrite:
        raise AnnotationError(f"{output}: already exists; choose another output, or pass overwrite=True "
                              "(`--overwrite`) to replace it")
    if not output.is_dir() or (any(output.iterdir()) and not (output / L.INFO).exists()):
        raise AnnotationError(f"{output}: exists and is not a dataset (no {L.INFO}); refusing to replace it")


def annotate_dataset(root: Path | str, output: Path | str, *, method: str, params: Mapping[str, Any] | None = None,
                     overwrite: bool = False) -> dict[str, Any]:
    """Annotate every episode of the dataset at ``root`` with ``method`` and write the result to ``output``.

    method: a name in METHODS; params: its parameters (None: every default), as :func:`resolve_params` takes
    them; the inputs come from the dataset's features (error if one is missing); overwrite: replace an
    existing dataset at ``output`` (never anything else).

    ``root`` is only read (under its writer lock, shared). The output holds everything the source holds
    except local-only files (upload and feed records, staging), with: an int8 ``augment_states`` column
    in every data file, its feature, statistics and per-episode statistics, the ``raygen_annotation``
    entry in info.json, and raygen's ledger (file sizes), statistics state and layout updated; videos,
    depth and flow are hard-linked (copied where links fail). It is built in a temporary folder beside
    ``output`` and renamed into place. Returns the annotation entry plus ``output``.
    """
    from raygen.datasets._stats import StatsAccumulator

    root, output = Path(root), Path(output)
    resolved = resolve_params(method, params)
    info = _read_info(root)
    if COLUMN in info.get("features", {}) or ANNOTATION_KEY in info:
        source = (info.get(ANNOTATION_KEY) or {}).get("source")
        raise AnnotationError(f"{root}: already annotated; annotate its source dataset instead ({source})")
    _check_output(root, output, overwrite)
    sources = resolve_inputs(root, info, method, resolved)
    tmp = output.parent / f".{output.name}.annotate-{L.new_id()}.tmp"
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(root, exclusive=False, why="annotate it once the run has finished"):
            data_files, ep_files, keys, entries = _data_and_keys(root, info)
            if not keys:
                raise AnnotationError(f"{root}: has no episodes to annotate")
            state = _saved_state(root, entries)
            acc = StatsAccumulator()
            run = _Run(method, resolved, sources)
            for rel in data_files:
                mask = run.data_file(root, tmp, rel)
                for a in (acc, state):
                    if a is not None:
                        a.add_values(COLUMN, mask)
            annotation = {"method": method, "params": resolved, "inputs": describe(sources),
                          "counts": run.counts(), "source": str(root.resolve()), **_made_by()}
            rewritten = _write_metadata(root, tmp, info, annotation, acc, run.per_episode, ep_files)
            rewritten |= set(data_files)
            if entries:
                _write_ledger(tmp, entries, rewritten, state)
                rewritten.add(L.LEDGER)
            _copy_the_rest(root, tmp, rewritten, {r for e in entries for r in e["files"]})
        _move_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("annotated %s -> %s with %s: %d of %d frames critical", root, output, method,
                annotation["counts"]["critical_frames"], annotation["counts"]["total_frames"])
    return {**annotation, "output": str(output)}


class _Run:
    """Annotates data files one at a time and keeps what the metadata needs: per-episode stats, counts."""

    def __init__(self, method: str, params: Mapping[str, Any], sources: Mapping[str, Any]):
        self.method, self.params, self.sources = method, params, sources
        self.read = sorted(features_read(sources) | {"episode_index", "frame_index"})
        self.per_episode: dict[int, dict[str, np.ndarray]] = {}
        self.by_method: dict[str, int] = {}
        self.marked_episodes = self.critical = self.total = 0

    def data_file(self, root: Path, tmp: Path, rel: str) -> np.ndarray:
        """Annotate each episode of one data file, write it with the column to ``tmp``; returns the column."""
        import pyarrow.parquet as pq

        from raygen.datasets._arrow import column_values
        from raygen.datasets._stats import numeric_stats

        pf = pq.ParquetFile(root / rel)
        groups = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
        table = pf.read()
        cols = {n: column_values(table.column(n)) for n in self.read}
        ep, fi = cols["episode_index"], cols["frame_index"]
        order = np.lexsort((fi, ep))  # each episode's rows in frame order
        starts = np.flatnonzero(np.r_[True, ep[order][1:] != ep[order][:-1]])
        mask = np.zeros(table.num_rows, np.int8)
        for rows in np.split(order, starts[1:]):
            if not len(rows):
                continue
            try:
                parts = _apply(self.method, self.params, episode_inputs(self.sources, cols, rows))
            except AnnotationError as exc:
                raise AnnotationError(f"{root / rel}: episode {int(ep[rows[0]])}: {exc}") from None
            marks = np.bitwise_or.reduce(list(parts.values())).astype(np.int8)
            mask[rows] = marks
            self.per_episode[int(ep[rows[0]])] = numeric_stats(marks)
            self.marked_episodes += bool(marks.any())
            self.critical, self.total = self.critical + int(marks.sum()), self.total + len(marks)
            for m, v in parts.items():
                self.by_method[m] = self.by_method.get(m, 0) + int(v.sum())
        L.atomic_write_parquet(tmp / rel, _with_column(table, mask), row_group_lengths=groups)
        return mask

    def counts(self) -> dict[str, Any]:
        return {"critical_frames": self.critical, "total_frames": self.total,
                "fraction": round(self.critical / self.total, 6) if self.total else 0.0,
                "episodes": len(self.per_episode), "episodes_with_critical": self.marked_episodes,
                "by_method": self.by_method}


def _made_by() -> dict[str, str]:
    from raygen import __version__

    return {"raygen_version": __version__,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def _saved_state(root: Path, entries: list[dict[str, Any]]) -> Any:
    """raygen's statistics state as of the last commit, or None (none saved, or unreadable: then the
    output's writer rebuilds it from the data files when it opens the dataset)."""
    from raygen.datasets._stats import StatsAccumulator

    path = root / L.STATS_STATE.format(seq=entries[-1]["seq"]) if entries else None
    if path is None or not path.exists():
        return None
    try:
        return StatsAccumulator.from_bytes(path.read_bytes())
    except Exception as exc:
        logger.warning("%s: unreadable (%s); the output's writer will rebuild it", path, exc)
        return None


def _write_metadata(root: Path, tmp: Path, info: Mapping[str, Any], annotation: dict[str, Any], acc: Any,
                    per_episode: Mapping[int, Mapping[str, np.ndarray]], ep_files: list[str]) -> set[str]:
    """info.json, stats.json, the episodes metadata and raygen's info with the new column; returns them."""
    import pyarrow.parquet as pq

    from raygen.datasets._stats import stats_to_json

    for rel in ep_files:
        pf = pq.ParquetFile(root / rel)
        groups = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
        L.atomic_write_parquet(tmp / rel, _episode_stats_columns(pf.read(), per_episode, rel),
                               row_group_lengths=groups)
    feats = dict(_insert_before(list(info["features"].items()), "timestamp", (COLUMN, dict(FEATURE))))
    L.atomic_write_json(tmp / L.INFO, {**info, "features": feats, ANNOTATION_KEY: annotation})
    stats = L.read_json(root / L.STATS)
    stats[COLUMN] = stats_to_json(acc.compute()[COLUMN])
    L.atomic_write_json(tmp / L.STATS, {**{f: stats[f] for f in feats if f in stats}, **stats})
    out = {L.INFO, L.STATS, *ep_files}
    if (root / L.RAYGEN_INFO).exists():
        raygen_info = L.read_json(root / L.RAYGEN_INFO)
        if "layout" in raygen_info:  # a shard without the column no longer fits: raygen's committer refuses it
            raygen_info["layout"]["features"][COLUMN] = {**FEATURE, "source_shape": None}
        L.atomic_write_json(tmp / L.RAYGEN_INFO, raygen_info)
        out.add(L.RAYGEN_INFO)
    return out


def _write_ledger(tmp: Path, entries: list[dict[str, Any]], rewritten: set[str], state: Any) -> None:
    """The source's ledger with the sizes of the rewritten files, and the statistics state beside it."""
    lines = []
    for e in entries:
        files = {r: (tmp / r).stat().st_size if r in rewritten else n for r, n in e["files"].items()}
        lines.append(json.dumps({**e, "files": files}, separators=(",", ":")) + "\n")
    L.atomic_write_bytes(tmp / L.LEDGER, "".join(lines).encode())
    if state is not None:
        L.atomic_write_bytes(tmp / L.STATS_STATE.format(seq=entries[-1]["seq"]), state.to_bytes())


def _copy_the_rest(root: Path, tmp: Path, rewritten: set[str], named: set[str]) -> None:
    """Every other file of the source: large immutable ones hard-linked, small ones copied; left out are
    local-only records, staging, temporary files and numbered files no commit (or no episode) names."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel in rewritten:
            continue
        orphan = (bool(named) and L.chunk_file_of(rel) is not None and rel not in named) or (
            rel.startswith("data/") and rel.endswith(".parquet"))
        if orphan:
            logger.warning("%s: left out of the annotated copy (no committed episode uses it)", root / rel)
        if orphan or rel in (L.LOCK, L.UPLOADS) or rel.startswith(_LEFT_OUT) or path.name.endswith(".tmp"):
            continue
        _place(path, tmp / rel, link=rel.startswith(_LINKED))


def _move_into_place(tmp: Path, output: Path) -> None:
    """Rename the finished dataset to ``output``, replacing an old one there (overwrite was checked)."""
    if output.exists():
        old = output.parent / f".{output.name}.replaced-{L.new_id()}.tmp"
        with _locked(output, exclusive=True, why="it cannot be replaced while a run writes it"):
            os.replace(output, old)
        os.replace(tmp, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, output)
    L.fsync_dir(output.parent)


def critical_states(root: Path | str) -> list[tuple[int, str, int]]:
    """(episode_index, episode_key, frame_index) of every frame marked 1 in an annotated dataset, in order.

    Episode keys are raygen's (from the ledger); a dataset raygen did not write has ``episode_<index:06d>``.
    The annotation itself (method, params, counts) is :func:`annotation_of`.
    """
    import pyarrow.parquet as pq

    from raygen.datasets._arrow import column_values

    root = Path(root)
    annotation_of(root)
    info = _read_info(root)
    data_files, _, keys, _ = _data_and_keys(root, info)
    out: list[tuple[int, str, int]] = []
    for rel in data_files:
        t = pq.read_table(root / rel, columns=["episode_index", "frame_index", COLUMN])
        mark = column_values(t.column(COLUMN)).reshape(-1) == 1
        ep = column_values(t.column("episode_index"))[mark]
        fi = column_values(t.column("frame_index"))[mark]
        out.extend((int(e), keys[int(e)], int(f)) for e, f in zip(ep, fi))
    return sorted(out)
