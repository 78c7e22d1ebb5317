"""DatasetReader: raygen datasets back into Episodes (decoded RGB, bit-exact depth, flow).

    reader = DatasetReader("out/pick_place")
    ep = reader.episode(0)                  # by global episode index
    ep = reader.episode("bullet-s0-000003")  # or by episode key

It reads the LeRobot files (data parquet, episodes metadata, MP4s) and
raygen's own (depth, flow, shard records) and rebuilds the Episode exactly
as the contract describes it; RGB comes back within codec tolerance.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raygen.datasets import _layout as L
from raygen.datasets._arrow import column_values
from raygen.datasets._video import decode_window
from raygen.datasets.episode import (
    CAMERA_POSE,
    GRIPPER_OPENING,
    GRIPPER_POSE,
    SOURCE_TIMESTAMP,
    CameraFrames,
    Episode,
)

__all__ = ["DatasetReader"]

_BUILTIN = {"observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index",
            GRIPPER_POSE, GRIPPER_OPENING, SOURCE_TIMESTAMP}


class DatasetReader:
    """Read a raygen-written LeRobot v3.0 dataset."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        if not (self.root / L.INFO).exists():
            raise FileNotFoundError(f"{self.root / L.INFO}: no dataset here (meta/info.json is missing)")
        if not (self.root / L.RAYGEN_INFO).exists():
            raise ValueError(
                f"{self.root}: no {L.RAYGEN_INFO}; this is a LeRobot dataset raygen did not write "
                "(load it with lerobot or ray.data.read_lerobot instead)"
            )
        self.info = L.read_json(self.root / L.INFO)
        self.raygen_info = L.read_json(self.root / L.RAYGEN_INFO)
        self.episodes: pa.Table | None = None
        self._record_cache: dict[tuple[int, int], dict[str, Any]] = {}
        self.keys: list[str] = []
        self._index_of: dict[str, int] = {}
        self._shards = 0
        self.refresh()

    def refresh(self) -> int:
        """Take in the shards committed since the reader was made or last refreshed (a dataset another process
        is still writing); returns how many episodes are new. Reads only the new shards' metadata."""
        entries = L.read_jsonl(self.root / L.LEDGER)  # the authority on what is committed, in episode order
        new = entries[self._shards:]
        if not new:
            return 0
        tables = [pq.read_table(self.root / L.EPISODES_PATH.format(chunk_index=e["chunk_index"],
                                                                   file_index=e["file_index"])) for e in new]
        keys = [k for e in new for k in e["episodes"]]
        rows = sum(t.num_rows for t in tables)
        if rows != len(keys):
            raise ValueError(f"{self.root / L.LEDGER}: names {len(keys)} new episodes, their meta/episodes files "
                             f"hold {rows}; run `raygen verify` on this dataset")
        self.episodes = pa.concat_tables(([self.episodes] if self.episodes is not None else []) + tables,
                                         promote_options="default")
        for k in keys:
            self._index_of[k] = len(self.keys)
            self.keys.append(k)
        self._shards = len(entries)
        return len(keys)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def cameras(self) -> list[str]:
        return list(self.raygen_info["layout"]["cameras"])

    def index_of(self, key: str) -> int:
        try:
            return self._index_of[key]
        except KeyError:
            raise KeyError(f"{self.root}: no episode with key {key!r}") from None

    def _row(self, index: int) -> dict[str, Any]:
        assert self.episodes is not None
        return {k: v[0] for k, v in self.episodes.slice(index, 1).to_pydict().items()}

    def _record(self, index: int, row: dict[str, Any]) -> dict[str, Any]:
        cf = (row["meta/episodes/chunk_index"], row["meta/episodes/file_index"])
        if cf not in self._record_cache:
            path = self.root / L.SHARD_RECORD_PATH.format(chunk_index=cf[0], file_index=cf[1])
            self._record_cache[cf] = L.read_json(path)
        rec = self._record_cache[cf]
        return rec["episodes"][index - rec["episode_from"]]

    def episode(self, which: int | str, *, decode_video: bool = True, decode_depth: bool = True) -> Episode:
        """The episode at a global index or with a key; ``decode_video=False`` leaves RGB empty (zeros),
        ``decode_depth=False`` leaves depth out (None)."""
        index = self.index_of(which) if isinstance(which, str) else int(which)
        if not 0 <= index < len(self):
            raise IndexError(f"{self.root}: episode index {index} out of range 0..{len(self) - 1}")
        row = self._row(index)
        rec = self._record(index, row)
        cf = {"chunk_index": row["data/chunk_index"], "file_index": row["data/file_index"]}
        data = _read_episode_rows(self.root / L.DATA_PATH.format(**cf), index)
        t = data.num_rows
        cols = {name: column_values(data.column(name)) for name in data.column_names}
        fps = self.fps
        cameras: dict[str, CameraFrames] = {}
        for cam, crec in rec["cameras"].items():
            h, w = crec["height"], crec["width"]
            rgb = depth = None
            if crec.get("has_video", True):
                vk = L.video_key(cam)
                vcf = {"chunk_index": row[f"videos/{vk}/chunk_index"], "file_index": row[f"videos/{vk}/file_index"]}
                start = row[f"videos/{vk}/from_timestamp"]
                rgb = (
                    decode_window(self.root / L.VIDEO_PATH.format(video_key=vk, **vcf), start, t, fps)
                    if decode_video
                    else np.zeros((t, h, w, 3), np.uint8)
                )
                if crec["has_depth"] and decode_depth:
                    depth = decode_window(self.root / L.DEPTH_PATH.format(camera=cam, **vcf), start, t, fps,
                                          depth=True)
            pose_col = CAMERA_POSE.format(camera=cam)
            pose = cols[pose_col].reshape(t, 4, 4).astype(np.float64) if crec["moving"] else np.array(crec["pose"])
            cameras[cam] = CameraFrames(
                rgb=rgb, depth=depth, intrinsics=np.array(crec["intrinsics"]),
                distortion=np.array(crec["distortion"]), pose=pose, size=(h, w), info=dict(crec.get("info", {})),
            )
        shapes = rec.get("frame_features", {})
        moving = {CAMERA_POSE.format(camera=c) for c in rec["cameras"]}
        frame_features = {
            name: cols[name].reshape((t, *shapes.get(name, [])))
            for name in cols
            if name not in _BUILTIN and name not in moving
        }
        flow = None
        if rec.get("flow_shape"):
            flow = self._flow(cf, index, rec["flow_shape"])
        tasks = row["tasks"]
        names = {k: list(f["names"]) for k, f in self.info["features"].items()
                 if f.get("names") and f["dtype"] != "video" and (k in cols and (k not in _BUILTIN or k in (
                     "observation.state", "action")))}
        return Episode(
            episode_key=rec["episode_key"],
            task=tasks[0],
            fps=fps,
            state=cols["observation.state"],
            action=cols["action"],
            timestamp=cols.get(SOURCE_TIMESTAMP, cols["timestamp"]),
            cameras=cameras,
            gripper_pose=cols[GRIPPER_POSE].reshape(t, 4, 4).astype(np.float64),
            gripper_opening=cols[GRIPPER_OPENING].reshape(t).astype(np.float64),
            success=bool(rec["success"]),
            robot_type=self.info["robot_type"],
            provenance=rec["provenance"],
            gripper_geometry=rec["gripper_geometry"],
            frame_features=frame_features,
            names=names,
            flow=flow,
            metrics=rec["metrics"],
        )

    def _flow(self, cf: dict[str, int], index: int, shape: list[int]) -> np.ndarray:
        table = _flow_table(str(self.root / L.FLOW_PATH.format(**cf)))
        sel = table.filter(pc.equal(table.column("episode_index"), index)).sort_by("step")
        return column_values(sel.column("flow")).reshape(shape)


@lru_cache(maxsize=8)
def _flow_table(path: str):
    return pq.read_table(path)


def _read_episode_rows(path: Path, index: int):
    """Rows of one episode: read only the row groups whose episode_index range covers it."""
    f = pq.ParquetFile(path)
    col = f.schema_arrow.get_field_index("episode_index")
    groups = []
    for g in range(f.num_row_groups):
        st = f.metadata.row_group(g).column(col).statistics
        if st is None or not st.has_min_max or st.min <= index <= st.max:
            groups.append(g)
    table = f.read_row_groups(groups)
    return table.filter(pc.equal(table.column("episode_index"), index))
