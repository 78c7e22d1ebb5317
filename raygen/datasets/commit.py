"""The committer: staged shards become part of the dataset, exactly once.

Only the committer (on the driver) assigns global numbers: episode and frame
indices, task indices, and the (chunk, file) position of each shard. One
commit, in this order:

1. write the shard's data parquet (with global indices), move its videos and
   depth files into place, write its flow parquet, episodes metadata and
   raygen shard record;
2. rewrite meta/info.json, meta/stats.json and meta/tasks.parquet (atomically);
3. append one line to meta/raygen/ledger.jsonl and fsync it: the commit point.

Opening a dataset recovers from a crash anywhere before step 3: numbered
files the ledger does not name are deleted, staging is emptied, a torn last
ledger line is cut off, and info/stats/tasks are rebuilt from what the ledger
says is committed. Nothing committed is touched.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygen import __version__
from raygen.datasets import _layout as L
from raygen.datasets._arrow import column_values
from raygen.datasets._stats import RANK_ERROR, SKETCH_K, STAT_KEYS, StatsAccumulator, numeric_stats, stats_to_json
from raygen.datasets._video import DEPTH_CODEC, DEPTH_PIX_FMT, VideoSettings
from raygen.datasets.encode import IMAGE_STATS_STRIDE, FeatureSpec
from raygen.datasets.lerobot_depth import DepthQuantizer, DepthStats, depth_feature
from raygen.datasets.shard import FLOW, FRAMES, StagedShard, depth_stream

logger = logging.getLogger(__name__)

__all__ = ["Committer", "DatasetLayoutError"]

DEFAULT_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_DEFAULT_DTYPES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64", "index": "int64",
                   "task_index": "int64"}


class DatasetLayoutError(ValueError):
    """A dataset or shard does not fit what the committer expects (names the file and field)."""


def _hf_feature(typ: pa.DataType) -> dict[str, Any]:
    """The `datasets` feature description LeRobot's loader reads from the parquet schema metadata."""
    if pa.types.is_fixed_size_list(typ):
        return {"feature": _hf_feature(typ.value_type), "length": typ.list_size, "_type": "List"}
    name = {"float": "float32", "double": "float64", "bool": "bool"}.get(str(typ), str(typ))
    return {"dtype": name, "_type": "Value"}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _tasks_table(tasks: dict[str, int]) -> pa.Table:
    """meta/tasks.parquet as LeRobot writes it: a pandas frame whose index is the task string."""
    names = list(tasks)
    meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "str",
             "metadata": {"encoding": "UTF-8"}}
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "object", "numpy_type": "str",
             "metadata": None},
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    schema = pa.schema(
        [pa.field("task_index", pa.int64()), pa.field("__index_level_0__", pa.large_string())],
        metadata={b"pandas": json.dumps(meta).encode()},
    )
    return pa.Table.from_arrays(
        [pa.array([tasks[n] for n in names], pa.int64()), pa.array(names, pa.large_string())], schema=schema
    )


class Committer:
    """Owns a dataset folder: opens or creates it, recovers it, and commits staged shards."""

    def __init__(self, root: Path | str, *, chunks_size: int = L.DEFAULT_CHUNKS_SIZE):
        self.root = Path(root)
        self.chunks_size = int(chunks_size)
        self.staging_dir = self.root / L.STAGING
        self._ledger: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._tasks: dict[str, int] = {}
        self._stats = StatsAccumulator()
        self._info: dict[str, Any] | None = None
        self._raygen_info: dict[str, Any] | None = None
        self._total_frames = 0
        self._broken: str | None = None
        self.commit_lock = threading.Lock()
        """Held during a commit; a reader in this process (the uploader) takes it for a consistent snapshot."""
        self._lock_fd = _lock(self.root)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the dataset's lock (another process may then open it); safe to call twice."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            self.close()

    # ------------------------------------------------------------------ state
    @property
    def committed_keys(self) -> frozenset[str]:
        """Episode keys already in the dataset (a run skips these)."""
        return frozenset(self._keys)

    @property
    def total_episodes(self) -> int:
        return len(self._keys)

    @property
    def total_frames(self) -> int:
        return self._total_frames

    # ------------------------------------------------------------------ open / recover
    def _open(self) -> None:
        root = self.root
        info_path = root / L.INFO
        ledger_path = root / L.LEDGER
        if info_path.exists() and not ledger_path.exists() and not (root / L.RAYGEN_INFO).exists():
            info = L.read_json(info_path)
            if info.get("total_episodes", 0):
                raise DatasetLayoutError(
                    f"{root}: has {info['total_episodes']} episodes but no {L.LEDGER}; raygen appends only to "
                    "datasets it created. Write to a new folder, or `raygen verify` this one."
                )
        if info_path.exists():
            annotation = L.read_json(info_path).get("raygen_annotation")
            if annotation is not None:  # its per-frame augment_states would be missing from new episodes
                raise DatasetLayoutError(
                    f"{root}: an annotated copy (raygen annotate, method {annotation.get('method')!r}) of "
                    f"{annotation.get('source', 'another dataset')}; raygen does not append to it. Add episodes to "
                    "the source dataset (or write to a new folder), then annotate again.")
        self._ledger = self._read_ledger(ledger_path)
        if self._ledger:
            self.chunks_size = int(L.read_json(info_path)["chunks_size"]) if info_path.exists() else self.chunks_size
        self._discard_uncommitted()
        if not self._ledger:
            for rel in (L.INFO, L.STATS, L.TASKS, L.RAYGEN_INFO, L.DIVERSITY, L.DIVERSITY_STATE):
                (root / rel).unlink(missing_ok=True)
            shutil.rmtree(root / L.STATS_STATE_DIR, ignore_errors=True)
            return
        self._info = L.read_json(info_path)
        self._raygen_info = L.read_json(root / L.RAYGEN_INFO)
        for entry in self._ledger:
            self._tasks.update(entry["new_tasks"])
            self._keys.update(entry["episodes"])
        self._total_frames = self._ledger[-1]["frame_to"]
        last = self._ledger[-1]["seq"]
        state = self._state_path(last)
        loaded = False
        if state.exists():  # the statistics as of the last commit: no data file is read
            try:
                self._stats = StatsAccumulator.from_bytes(state.read_bytes())
                loaded = True
            except Exception as exc:  # damaged, or another version's format: the data has the truth
                logger.warning("%s: unreadable (%s: %s); rebuilding the statistics from the data files", state,
                               type(exc).__name__, exc)
                self._stats = StatsAccumulator()
        if not loaded:  # also a dataset from before raygen saved them: rebuilt from the data once, then saved
            logger.info("%s: rebuilding the statistics from the data files (once)", root)
            for entry in self._ledger:
                self._load_shard_stats(entry)
            L.atomic_write_bytes(state, self._stats.to_bytes())
        self._prune_states(last)
        self._write_meta()
        logger.info("opened %s: %d shards, %d episodes, %d frames", root, len(self._ledger),
                    self.total_episodes, self.total_frames)

    def _read_ledger(self, path: Path) -> list[dict[str, Any]]:
        if not path.exists():
            return []
        raw = path.read_bytes()
        entries: list[dict[str, Any]] = []
        good = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetLayoutError(f"{path}: line {len(entries) + 1} is not JSON ({exc})") from exc
            if entry.get("seq") != len(entries):
                raise DatasetLayoutError(
                    f"{path}: line {len(entries) + 1} has seq={entry.get('seq')!r}, expected {len(entries)}"
                )
            entries.append(entry)
            good += len(line)
        if good != len(raw):
            logger.warning("%s: dropping a torn last line (%d bytes) left by a crash", path, len(raw) - good)
            with open(path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        return entries

    def _discard_uncommitted(self) -> None:
        named = {rel for e in self._ledger for rel in e["files"]}
        for rel in L.numbered_files(self.root):
            if rel not in named:
                logger.warning("discarding %s: not named by the ledger (left by an interrupted commit)", rel)
                (self.root / rel).unlink()
        for d in (*L.NUMBERED_DIRS, "meta"):
            base = self.root / d
            if base.is_dir():
                for tmp in base.rglob(".*.tmp"):
                    tmp.unlink()
        if self.staging_dir.exists():
            for child in self.staging_dir.iterdir():
                logger.warning("discarding %s in staging: never committed", child.name)
            shutil.rmtree(self.staging_dir)
        missing = [rel for rel in sorted(named) if not (self.root / rel).exists()]
        if missing:
            raise DatasetLayoutError(
                f"{self.root}: the ledger names {len(missing)} files that are gone, e.g. {missing[:3]}; "
                "the dataset lost committed data. Restore them or start a new dataset."
            )

    def _load_shard_stats(self, entry: dict[str, Any]) -> None:
        cf = {"chunk_index": entry["chunk_index"], "file_index": entry["file_index"]}
        path = self.root / L.SHARD_RECORD_PATH.format(**cf)
        record = L.read_json(path)
        try:
            self._add_image_stats(record, entry["frame_to"] - entry["frame_from"])
        except ValueError as exc:
            raise DatasetLayoutError(f"{path}: depth_stats: {exc}") from None
        table = pq.read_table(self.root / L.DATA_PATH.format(**cf))
        for name in table.column_names:
            self._stats.add_values(name, column_values(table.column(name)))

    def _state_path(self, seq: int) -> Path:
        return self.root / L.STATS_STATE.format(seq=seq)

    def _prune_states(self, keep: int) -> None:
        """Remove saved statistics other than those of commit ``keep`` (older ones, or a newer one an
        interrupted commit left)."""
        folder = self.root / L.STATS_STATE_DIR
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name != self._state_path(keep).name:
                    p.unlink(missing_ok=True)

    def _add_image_stats(self, shard: dict[str, Any], n_frames: int) -> None:
        """A shard's pixel histograms (colour) and depth statistics (LeRobot depth videos) into the stats."""
        for cam, hist in shard["histograms"].items():
            self._stats.add_histogram(L.video_key(cam), np.asarray(hist), n_frames)
        for cam, d in shard.get("depth_stats", {}).items():
            self._stats.add_depth(L.video_key(depth_stream(cam)), DepthStats.from_json(d), n_frames)

    # ------------------------------------------------------------------ commit
    def commit(self, staged: StagedShard) -> dict[str, Any]:
        """Make a staged shard part of the dataset; returns its ledger entry.

        A commit that raises leaves files the ledger does not name; the committer then refuses
        further commits until the dataset is reopened, which discards them and rebuilds its state.
        """
        if self._broken:
            raise RuntimeError(f"{self.root}: an earlier commit failed ({self._broken}); reopen the dataset "
                               "(a new Committer/DatasetWriter) to recover before committing again")
        if self._lock_fd is None:
            raise RuntimeError(f"{self.root}: this committer was closed")
        try:
            with self.commit_lock:
                return self._commit(staged)
        except BaseException as exc:
            self._broken = f"{type(exc).__name__}: {exc}"
            raise

    def _commit(self, staged: StagedShard) -> dict[str, Any]:
        manifest = staged.manifest
        self._check_layout(staged, manifest)
        keys = [e["episode_key"] for e in manifest["episodes"]]
        dup = sorted(set(keys) & self._keys)
        if dup:
            raise DatasetLayoutError(
                f"{staged.path / 'manifest.json'}: episodes {dup[:5]} are already committed; "
                "a run must skip committed keys (Committer.committed_keys)"
            )
        seq = len(self._ledger)
        chunk, file = L.position(seq, self.chunks_size)
        cf = {"chunk_index": chunk, "file_index": file}
        ep_from = self.total_episodes
        fr_from = self.total_frames
        new_tasks: dict[str, int] = {}
        for e in manifest["episodes"]:
            if e["task"] not in self._tasks and e["task"] not in new_tasks:
                new_tasks[e["task"]] = len(self._tasks) + len(new_tasks)
        tasks = {**self._tasks, **new_tasks}
        if self._info is None:
            self._init_info(manifest)
        files: list[str] = []

        # 1. data parquet with global indices, one row group per episode
        frames = pq.read_table(staged.path / FRAMES)
        lengths = [e["length"] for e in manifest["episodes"]]
        ep_idx = np.repeat(np.arange(ep_from, ep_from + len(lengths), dtype=np.int64), lengths)
        task_idx = np.repeat(np.array([tasks[e["task"]] for e in manifest["episodes"]], dtype=np.int64), lengths)
        index = np.arange(fr_from, fr_from + len(ep_idx), dtype=np.int64)
        data = self._data_table(frames, ep_idx, index, task_idx, manifest["shard_id"])
        values = {name: column_values(data.column(name)) for name in data.column_names}
        rel = L.DATA_PATH.format(**cf)
        L.atomic_write_parquet(self.root / rel, data, row_group_lengths=lengths)
        files.append(rel)

        # 2. videos and depth: already encoded and joined; move them
        for stream in _video_streams(manifest):
            rel = L.VIDEO_PATH.format(video_key=L.video_key(stream), **cf)
            _move(staged.path / "videos" / f"{stream}.mp4", self.root / rel)
            files.append(rel)
        for cam in _video_cameras(manifest):
            if manifest["cameras"][cam]["has_depth"]:
                rel = L.DEPTH_PATH.format(camera=cam, **cf)
                _move(staged.path / "depth" / f"{cam}.mkv", self.root / rel)
                files.append(rel)
        if manifest["has_flow"]:
            flow = pq.read_table(staged.path / FLOW)
            local = flow.column("episode_index").to_numpy()
            flow = flow.set_column(0, "episode_index", pa.array(local + ep_from, pa.int64()))
            rel = L.FLOW_PATH.format(**cf)
            L.atomic_write_parquet(self.root / rel, flow)
            files.append(rel)

        # 3. episodes metadata and the raygen shard record
        episodes = self._episodes_table(manifest, values, lengths, ep_from, fr_from, cf)
        rel = L.EPISODES_PATH.format(**cf)
        L.atomic_write_parquet(self.root / rel, episodes)
        files.append(rel)
        record = {
            "shard_id": manifest["shard_id"],
            "episode_from": ep_from,
            "frame_from": fr_from,
            "episodes": [
                {"episode_index": ep_from + i, "episode_key": e["episode_key"], "success": e["success"],
                 **e["record"]}
                for i, e in enumerate(manifest["episodes"])
            ],
            "histograms": manifest["histograms"],
            "depth_stats": manifest.get("depth_stats", {}),
        }
        rel = L.SHARD_RECORD_PATH.format(**cf)
        L.atomic_write_json(self.root / rel, record, indent=None)
        files.append(rel)

        # 4. small metadata, then the commit point
        self._add_image_stats(manifest, len(ep_idx))
        for name, v in values.items():
            self._stats.add_values(name, v)
        self._tasks = tasks
        self._keys.update(keys)
        self._total_frames = fr_from + len(ep_idx)
        entry = {
            "seq": seq,
            "shard_id": manifest["shard_id"],
            "chunk_index": chunk,
            "file_index": file,
            "episode_from": ep_from,
            "episode_to": ep_from + len(keys),
            "frame_from": fr_from,
            "frame_to": self._total_frames,
            "episodes": keys,
            "new_tasks": new_tasks,
            "files": {r: (self.root / r).stat().st_size for r in files},
            "committed_at": _now(),
            "committed_ts": round(time.time(), 3),
        }
        self._write_meta()
        L.atomic_write_bytes(self._state_path(seq), self._stats.to_bytes())  # the statistics as of this commit
        _append_ledger(self.root / L.LEDGER, entry)
        self._ledger.append(entry)
        self._prune_states(seq)
        shutil.rmtree(staged.path, ignore_errors=True)
        logger.debug("committed shard %s as chunk %03d file %03d: episodes %d-%d", manifest["shard_id"], chunk,
                    file, ep_from, ep_from + len(keys) - 1)
        return entry

    # ------------------------------------------------------------------ helpers
    def _check_layout(self, staged: StagedShard, manifest: dict[str, Any]) -> None:
        if self._raygen_info is None:
            return
        mine = {**self._raygen_info["layout"]}
        mine["cameras"] = {cam: {"has_video": True, **c} for cam, c in mine["cameras"].items()}
        theirs = _layout_of(manifest)
        problems = [
            f"{k}: shard has {theirs[k]!r}, dataset has {mine[k]!r}" for k in mine if mine[k] != theirs.get(k)
        ]
        if problems:
            raise DatasetLayoutError(
                f"{staged.path / 'manifest.json'} does not fit the dataset {self.root}: " + "; ".join(problems)
            )

    def _init_info(self, manifest: dict[str, Any]) -> None:
        fps = manifest["fps"]
        fps_out: int | float = int(fps) if float(fps).is_integer() else fps
        video = manifest["video"]
        codec_family = VideoSettings(**video).codec_family
        features: dict[str, Any] = {}
        for name, f in manifest["features"].items():
            features[name] = FeatureSpec(f["dtype"], tuple(f["shape"]), f["names"]).to_info()
        for cam in _video_cameras(manifest):
            c = manifest["cameras"][cam]
            features[L.video_key(cam)] = {
                "dtype": "video",
                "shape": [c["height"], c["width"], 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": c["height"],
                    "video.width": c["width"],
                    "video.codec": codec_family,
                    "video.pix_fmt": video["pix_fmt"],
                    "video.is_depth_map": False,
                    "video.fps": fps_out,
                    "video.channels": 3,
                    "has_audio": False,
                },
            }
        lerobot_depth = {cam: c for cam, c in manifest["cameras"].items() if c.get("lerobot_depth")}
        for cam, c in lerobot_depth.items():
            features[L.video_key(depth_stream(cam))] = depth_feature(c["height"], c["width"], fps, DepthQuantizer())
        for name in DEFAULT_COLUMNS:
            features[name] = {"dtype": _DEFAULT_DTYPES[name], "shape": [1], "names": None}
        self._info = {
            "codebase_version": L.CODEBASE_VERSION,
            "robot_type": manifest["robot_type"],
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": L.DEFAULT_DATA_FILE_SIZE_MB,
            "video_files_size_in_mb": L.DEFAULT_VIDEO_FILE_SIZE_MB,
            "fps": fps_out,
            "splits": {},
            "data_path": L.DATA_PATH,
            "video_path": L.VIDEO_PATH if _video_streams(manifest) else None,
            "features": features,
        }
        self._raygen_info = {
            "raygen_version": __version__,
            "layout": _layout_of(manifest),
            "video": video,
            "depth": {
                cam: {"codec": DEPTH_CODEC, "pix_fmt": DEPTH_PIX_FMT, "container": "matroska",
                      "unit": "millimetre", "invalid_value": 0, "height": c["height"], "width": c["width"],
                      **({"method": c["depth_method"]} if c.get("depth_method") else {})}
                for cam, c in manifest["cameras"].items()
                if c["has_depth"]
            },
            "depth_path": L.DEPTH_PATH,
            "lerobot_depth": {cam: {"feature": L.video_key(depth_stream(cam)), **DepthQuantizer().info()}
                              for cam in lerobot_depth},
            "flow_path": L.FLOW_PATH if manifest["has_flow"] else None,
            "shard_record_path": L.SHARD_RECORD_PATH,
            "image_stats_frame_stride": IMAGE_STATS_STRIDE,
            "stats": {"numeric": "exact count, min, max, mean, std; quantiles from KLL sketches (Apache "
                                 "DataSketches)", "sketch_k": SKETCH_K, "quantile_rank_error": RANK_ERROR},
            "flattened_features": {
                name: f["source_shape"] for name, f in manifest["features"].items() if f.get("source_shape")
            },
        }
        L.atomic_write_json(self.root / L.RAYGEN_INFO, self._raygen_info)

    def _data_table(
        self, frames: pa.Table, ep_idx: np.ndarray, index: np.ndarray, task_idx: np.ndarray, shard_id: str
    ) -> pa.Table:
        user = [c for c in frames.column_names if c not in DEFAULT_COLUMNS]
        cols = [frames.column(c) for c in user] + [
            frames.column("timestamp"),
            frames.column("frame_index"),
            pa.array(ep_idx, pa.int64()),
            pa.array(index, pa.int64()),
            pa.array(task_idx, pa.int64()),
        ]
        names = user + list(DEFAULT_COLUMNS)
        fields = [pa.field(n, c.type) for n, c in zip(names, cols)]
        hf = {
            "info": {"features": {f.name: _hf_feature(f.type) for f in fields}},
            "fingerprint": hashlib.sha256(shard_id.encode()).hexdigest()[:16],
        }
        schema = pa.schema(fields, metadata={b"huggingface": json.dumps(hf).encode()})
        return pa.Table.from_arrays(cols, schema=schema)

    def _episodes_table(
        self,
        manifest: dict[str, Any],
        values: dict[str, np.ndarray],
        lengths: list[int],
        ep_from: int,
        fr_from: int,
        cf: dict[str, int],
    ) -> pa.Table:
        assert self._info is not None
        n = len(lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        eps = manifest["episodes"]
        cols: dict[str, pa.Array] = {
            "episode_index": pa.array(range(ep_from, ep_from + n), pa.int64()),
            "tasks": pa.array([[e["task"]] for e in eps], pa.list_(pa.string())),
            "length": pa.array(lengths, pa.int64()),
            "data/chunk_index": pa.array([cf["chunk_index"]] * n, pa.int64()),
            "data/file_index": pa.array([cf["file_index"]] * n, pa.int64()),
            "dataset_from_index": pa.array((fr_from + starts[:-1]).tolist(), pa.int64()),
            "dataset_to_index": pa.array((fr_from + starts[1:]).tolist(), pa.int64()),
        }
        for stream in _video_streams(manifest):
            vk = L.video_key(stream)
            cols[f"videos/{vk}/chunk_index"] = pa.array([cf["chunk_index"]] * n, pa.int64())
            cols[f"videos/{vk}/file_index"] = pa.array([cf["file_index"]] * n, pa.int64())
            cols[f"videos/{vk}/from_timestamp"] = pa.array([e["from_timestamp"] for e in eps], pa.float64())
            cols[f"videos/{vk}/to_timestamp"] = pa.array([e["to_timestamp"] for e in eps], pa.float64())
        for feat, spec in self._info["features"].items():
            if spec["dtype"] == "video":
                cam = feat[len(L.IMAGE_PREFIX):]
                per = [e["image_stats"][cam] for e in eps]
                for k in STAT_KEYS:
                    typ = pa.list_(pa.int64()) if k == "count" else pa.list_(pa.list_(pa.list_(pa.float64())))
                    cols[f"stats/{feat}/{k}"] = pa.array([p[k] for p in per], typ)
                continue
            per = [numeric_stats(values[feat][starts[i]:starts[i + 1]]) for i in range(n)]
            is_int = spec["dtype"] in ("int64", "bool")
            for k in STAT_KEYS:
                elem = pa.int64() if k == "count" or (is_int and k in ("min", "max")) else pa.float64()
                cols[f"stats/{feat}/{k}"] = pa.array([np.asarray(p[k]).tolist() for p in per], pa.list_(elem))
        cols["meta/episodes/chunk_index"] = pa.array([cf["chunk_index"]] * n, pa.int64())
        cols["meta/episodes/file_index"] = pa.array([cf["file_index"]] * n, pa.int64())
        return pa.table(cols)

    def _write_meta(self) -> None:
        assert self._info is not None
        info = dict(self._info)
        info["total_episodes"] = self.total_episodes
        info["total_frames"] = self.total_frames
        info["total_tasks"] = len(self._tasks)
        info["splits"] = {"train": f"0:{self.total_episodes}"}
        self._info = info
        L.atomic_write_json(self.root / L.INFO, info)
        stats = self._stats.compute()
        order = [f for f in info["features"] if f in stats]
        L.atomic_write_json(self.root / L.STATS, {f: stats_to_json(stats[f]) for f in order})
        L.atomic_write_parquet(self.root / L.TASKS, _tasks_table(self._tasks))


def _video_cameras(manifest: dict[str, Any]) -> list[str]:
    """Cameras whose frames the shard holds (a camera may be known by its calibration only)."""
    return [cam for cam, c in manifest["cameras"].items() if c.get("has_video", True)]


def _video_streams(manifest: dict[str, Any]) -> list[str]:
    """Every video of the shard, by stream name: the colour cameras, then the LeRobot depth copies."""
    return _video_cameras(manifest) + [depth_stream(cam) for cam, c in manifest["cameras"].items()
                                       if c.get("lerobot_depth")]


def _layout_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """What every shard of one dataset must share (datasets written before cameras could lack frames
    have no ``has_video``: all their cameras have video)."""
    return {
        "fps": manifest["fps"],
        "robot_type": manifest["robot_type"],
        "features": manifest["features"],
        "cameras": {cam: {"has_video": True, **c} for cam, c in manifest["cameras"].items()},
        "has_flow": manifest["has_flow"],
        "video_codec": manifest["video"]["codec"],
        "video_pix_fmt": manifest["video"]["pix_fmt"],
    }


def _move(src: Path, dst: Path) -> None:
    """Durable move: the file's bytes reach the disk before it is renamed, and so does the rename."""
    with open(src, "rb") as f:
        os.fsync(f.fileno())
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    L.fsync_dir(dst.parent)


def _lock(root: Path) -> int:
    """An exclusive lock on the dataset for this committer's lifetime: two writers would corrupt it."""
    path = root / L.LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatasetLayoutError(
            f"{root}: another process is writing this dataset (it holds {L.LOCK}); one writer per dataset"
        ) from None
    return fd


def _append_ledger(path: Path, entry: dict[str, Any]) -> None:
    """The commit point. Tests inject crashes here."""
    L.append_line(path, json.dumps(entry, separators=(",", ":")))
