"""`raygen verify`: check a dataset after a long job and say exactly what is wrong.

Works on any LeRobot v3.0 dataset; raygen's own checks (depth, flow, ledger)
run when the dataset has raygen's files and are reported as skipped
otherwise. Every check runs even when an earlier one failed, and each
problem names the file and the field or episode at fault.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raygen.datasets import _layout as L
from raygen.datasets._arrow import column_values
from raygen.datasets._stats import QUANTILES, STAT_KEYS
from raygen.datasets._video import DEPTH_CODEC, DEPTH_PIX_FMT, decode_window, probe_timestamps, window_problem
from raygen.datasets.lerobot_depth import LEROBOT_DEPTH_CODEC, LEROBOT_DEPTH_PIX_FMT, DepthQuantizer

__all__ = ["Check", "VerifyReport", "verify_dataset"]

TIMESTAMP_TOL_S = 1e-4  # what LeRobot's loader tolerates
DEPTH_TOL_S = 1.1e-3  # Matroska stores milliseconds
DEQUANTIZE_ROUNDING_MM = 1e-6  # allowance for float64 rounding in the quantizer's log/exp
_INFO_KEYS = ("codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks", "chunks_size",
              "fps", "splits", "data_path", "video_path", "features")
_MAX_LISTED = 20


@dataclass
class Check:
    name: str
    status: str = "pass"  # pass | fail | skip
    summary: str = ""
    problems: list[str] = field(default_factory=list)

    def fail(self, msg: str) -> None:
        self.status = "fail"
        self.problems.append(msg)


@dataclass
class VerifyReport:
    root: Path
    checks: list[Check]

    @property
    def problems(self) -> list[str]:
        return [f"{c.name}: {p}" for c in self.checks for p in c.problems]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def format(self) -> str:
        lines = [f"raygen verify {self.root}"]
        for c in self.checks:
            tag = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[c.status]
            lines.append(f"  [{tag}] {c.name}: {c.summary}".rstrip(": "))
            for p in c.problems[:_MAX_LISTED]:
                lines.append(f"      - {p}")
            if len(c.problems) > _MAX_LISTED:
                lines.append(f"      ... and {len(c.problems) - _MAX_LISTED} more")
        n = len(self.problems)
        lines.append("RESULT: VALID" if self.ok else f"RESULT: INVALID ({n} problem{'s' * (n != 1)})")
        return "\n".join(lines)


class _Ctx:
    """What the checks share: parsed metadata, loaded once."""

    def __init__(self, root: Path, decode: bool):
        self.root = root
        self.decode = decode
        self.info: dict[str, Any] | None = None
        self.episodes: list[dict[str, Any]] | None = None
        self.tasks: dict[str, int] | None = None
        self.raygen_info: dict[str, Any] | None = None
        self.records: dict[tuple[int, int], dict[str, Any] | None] = {}

    @property
    def fps(self) -> float:
        return float(self.info["fps"]) if self.info else 0.0

    def video_keys(self) -> list[str]:
        return [k for k, f in (self.info or {}).get("features", {}).items() if f.get("dtype") == "video"]


def _run(check: Check, fn: Callable[[Check], None]) -> Check:
    try:
        fn(check)
    except Exception as exc:  # a check that crashes is a failed check, not a crashed verify
        check.fail(f"could not complete: {type(exc).__name__}: {exc}")
    return check


def verify_dataset(root: Path | str, *, decode: bool = False) -> VerifyReport:
    """Run every check on the dataset at ``root``. ``decode=True`` also decodes every RGB frame."""
    ctx = _Ctx(Path(root), decode)
    checks = [
        _run(Check("info.json"), lambda c: _check_info(ctx, c)),
        _run(Check("tasks"), lambda c: _check_tasks(ctx, c)),
        _run(Check("episodes metadata"), lambda c: _check_episodes(ctx, c)),
        _run(Check("data"), lambda c: _check_data(ctx, c)),
        _run(Check("videos"), lambda c: _check_videos(ctx, c)),
        _run(Check("stats"), lambda c: _check_stats(ctx, c)),
        _run(Check("depth"), lambda c: _check_depth(ctx, c)),
        _run(Check("flow"), lambda c: _check_flow(ctx, c)),
        _run(Check("ledger"), lambda c: _check_ledger(ctx, c)),
    ]
    return VerifyReport(ctx.root, checks)


# ---------------------------------------------------------------------------------------- checks


def _read_tables(ctx: _Ctx, c: Check, folder: str) -> Iterator[tuple[str, pa.Table]]:
    """Every parquet file under ``folder``; an unreadable one is a failure of ``c``, then skipped."""
    for f in sorted((ctx.root / folder).rglob("*.parquet")):
        rel = f.relative_to(ctx.root).as_posix()
        try:
            yield rel, pq.read_table(f)
        except Exception as exc:
            c.fail(f"{rel}: unreadable ({type(exc).__name__}: {exc})")


def _check_info(ctx: _Ctx, c: Check) -> None:
    p = ctx.root / L.INFO
    if not p.exists():
        c.fail(f"{L.INFO}: missing; this is not a LeRobot dataset")
        return
    info = json.loads(p.read_text())
    for k in _INFO_KEYS:
        if k not in info:
            c.fail(f"{L.INFO}: key {k!r} is missing")
    if info.get("codebase_version") != L.CODEBASE_VERSION:
        c.fail(f"{L.INFO}: codebase_version is {info.get('codebase_version')!r}, expected {L.CODEBASE_VERSION!r}")
    for name, f in info.get("features", {}).items():
        if not isinstance(f, dict) or "dtype" not in f or "shape" not in f:
            c.fail(f"{L.INFO}: features[{name!r}] needs dtype and shape, got {f!r}")
    ctx.info = info
    if (ctx.root / L.RAYGEN_INFO).exists():
        ctx.raygen_info = json.loads((ctx.root / L.RAYGEN_INFO).read_text())
    c.summary = (
        f"{info.get('codebase_version')}, {info.get('total_episodes')} episodes, {info.get('total_frames')} frames, "
        f"{info.get('total_tasks')} tasks, fps {info.get('fps')}"
    )


def _check_tasks(ctx: _Ctx, c: Check) -> None:
    t = pq.read_table(ctx.root / L.TASKS)
    names = t.column("__index_level_0__").to_pylist() if "__index_level_0__" in t.column_names else None
    if names is None:
        c.fail(f"{L.TASKS}: no task strings (expected a pandas index column '__index_level_0__')")
        return
    idx = t.column("task_index").to_pylist()
    if sorted(idx) != list(range(len(idx))):
        c.fail(f"{L.TASKS}: task_index must be 0..{len(idx) - 1}, got {sorted(idx)[:10]}")
    ctx.tasks = dict(zip(names, idx))
    if ctx.info and ctx.info.get("total_tasks") != len(idx):
        c.fail(f"{L.INFO}: total_tasks = {ctx.info.get('total_tasks')} but {L.TASKS} has {len(idx)} tasks")
    c.summary = f"{len(idx)} tasks"


def _check_episodes(ctx: _Ctx, c: Check) -> None:
    if ctx.info is None:
        c.status, c.summary = "skip", "no info.json"
        return
    tables = list(_read_tables(ctx, c, "meta/episodes"))
    if not tables:
        c.fail("meta/episodes/: no readable episodes metadata files")
        return
    rows: list[dict[str, Any]] = []
    for rel, t in tables:
        pos = L.chunk_file_of(rel)
        for r in t.to_pylist():
            if pos and (r.get("meta/episodes/chunk_index"), r.get("meta/episodes/file_index")) != pos:
                c.fail(f"{rel}: episode {r.get('episode_index')} says it lives in meta/episodes chunk/file "
                       f"{(r.get('meta/episodes/chunk_index'), r.get('meta/episodes/file_index'))}")
            rows.append(r)
    rows.sort(key=lambda r: r["episode_index"])
    ctx.episodes = rows
    idx = [r["episode_index"] for r in rows]
    if idx != list(range(len(rows))):
        c.fail(f"episode_index must run 0..{len(rows) - 1} without gaps or repeats; got {_first_gap(idx)}")
    if ctx.info.get("total_episodes") != len(rows):
        c.fail(f"{L.INFO}: total_episodes = {ctx.info.get('total_episodes')} but metadata lists {len(rows)}")
    expect_from = 0
    for r in rows:
        e = r["episode_index"]
        if r["dataset_from_index"] != expect_from:
            c.fail(f"episode {e}: dataset_from_index = {r['dataset_from_index']}, expected {expect_from}")
        if r["dataset_to_index"] - r["dataset_from_index"] != r["length"]:
            c.fail(f"episode {e}: dataset_to_index - dataset_from_index != length ({r['length']})")
        expect_from = r["dataset_to_index"]
        if ctx.tasks is not None:
            for task in r["tasks"]:
                if task not in ctx.tasks:
                    c.fail(f"episode {e}: task {task!r} is not in {L.TASKS}")
        dp = ctx.info["data_path"].format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        if not (ctx.root / dp).exists():
            c.fail(f"episode {e}: data file {dp} does not exist")
        for vk in ctx.video_keys():
            vp = ctx.info["video_path"].format(video_key=vk, chunk_index=r[f"videos/{vk}/chunk_index"],
                                               file_index=r[f"videos/{vk}/file_index"])
            if not (ctx.root / vp).exists():
                c.fail(f"episode {e}: video file {vp} does not exist")
    if ctx.info.get("total_frames") != expect_from:
        c.fail(f"{L.INFO}: total_frames = {ctx.info.get('total_frames')} but episode lengths add up to {expect_from}")
    c.summary = f"{len(rows)} episodes in {len(tables)} files"


def _data_files(ctx: _Ctx) -> dict[str, list[dict[str, Any]]]:
    """The data files the episodes metadata points at, each with its episodes (orphans are not among them)."""
    assert ctx.info is not None and ctx.episodes is not None
    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in ctx.episodes:
        dp = ctx.info["data_path"].format(chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        by_file.setdefault(dp, []).append(r)
    return by_file


def _check_data(ctx: _Ctx, c: Check) -> None:
    if ctx.info is None or ctx.episodes is None:
        c.status, c.summary = "skip", "no episodes metadata"
        return
    by_file = _data_files(ctx)
    on_disk = sorted(p.relative_to(ctx.root).as_posix() for p in (ctx.root / "data").rglob("*.parquet"))
    for extra in sorted(set(on_disk) - set(by_file)):
        c.fail(f"{extra}: data file that no episode points at")
    columns = [k for k, f in ctx.info["features"].items() if f["dtype"] != "video"]
    total = 0
    fps = ctx.fps
    for dp, eps in sorted(by_file.items()):
        if not (ctx.root / dp).exists():
            continue  # reported by the episodes check
        try:
            t = pq.read_table(ctx.root / dp)
        except Exception as exc:
            c.fail(f"{dp}: unreadable, possibly truncated ({type(exc).__name__}: {exc})")
            continue
        missing = [k for k in columns if k not in t.column_names]
        if missing:
            c.fail(f"{dp}: columns {missing} declared in info.json features are missing")
            continue
        total += t.num_rows
        ep = t.column("episode_index").to_numpy()
        fi = t.column("frame_index").to_numpy()
        gi = t.column("index").to_numpy()
        ts = t.column("timestamp").to_numpy().astype(np.float64)
        ti = t.column("task_index").to_numpy()
        for r in eps:
            e = r["episode_index"]
            sel = ep == e
            n = int(sel.sum())
            if n != r["length"]:
                c.fail(f"{dp}: episode {e} has {n} rows, metadata says length {r['length']}")
                continue
            if not np.array_equal(fi[sel], np.arange(n)):
                c.fail(f"{dp}: episode {e} frame_index is not 0..{n - 1}")
            if not np.array_equal(gi[sel], np.arange(r["dataset_from_index"], r["dataset_to_index"])):
                c.fail(f"{dp}: episode {e} index is not {r['dataset_from_index']}..{r['dataset_to_index'] - 1}")
            err = np.abs(ts[sel] - fi[sel] / fps)
            if err.size and err.max() > TIMESTAMP_TOL_S:
                c.fail(f"{dp}: episode {e} timestamp differs from frame_index/fps by up to {err.max():.6f} s")
            if ctx.tasks is not None:
                want = {ctx.tasks.get(task) for task in r["tasks"]}
                if not set(np.unique(ti[sel]).tolist()) <= want:
                    c.fail(f"{dp}: episode {e} task_index {np.unique(ti[sel]).tolist()} != tasks {r['tasks']}")
    if total != ctx.info.get("total_frames"):
        c.fail(f"{L.INFO}: total_frames = {ctx.info.get('total_frames')} but the data files hold {total} rows")
    c.summary = f"{total} frames in {len(by_file)} files"


def _check_streams(ctx: _Ctx, c: Check, key: str, template: str, tol: float, depth: bool) -> int:
    """Check one camera's files (RGB video or depth) for every episode; returns files checked."""
    assert ctx.info is not None and ctx.episodes is not None
    by_file: dict[str, list[dict[str, Any]]] = {}
    vk = L.video_key(key) if depth else key
    for r in ctx.episodes:
        cf = {"chunk_index": r[f"videos/{vk}/chunk_index"], "file_index": r[f"videos/{vk}/file_index"]}
        by_file.setdefault(template.format(**cf), []).append(r)
    for path, eps in sorted(by_file.items()):
        if not (ctx.root / path).exists():
            if depth:
                c.fail(f"{path}: missing (episodes {eps[0]['episode_index']}-{eps[-1]['episode_index']})")
            continue
        try:
            ts, info = probe_timestamps(ctx.root / path)
        except Exception as exc:
            c.fail(f"{path}: unreadable ({type(exc).__name__}: {exc})")
            continue
        if depth and (info["codec"] != DEPTH_CODEC or info["pix_fmt"] != DEPTH_PIX_FMT):
            c.fail(f"{path}: depth must be lossless {DEPTH_CODEC} {DEPTH_PIX_FMT}, found {info['codec']} "
                   f"{info['pix_fmt']}")
        if not depth:
            want = ctx.info["features"][key].get("info", {})
            if want.get("is_depth_map") and (info["codec"], info["pix_fmt"]) != (LEROBOT_DEPTH_CODEC,
                                                                                 LEROBOT_DEPTH_PIX_FMT):
                c.fail(f"{path}: a LeRobot depth map must be {LEROBOT_DEPTH_CODEC} {LEROBOT_DEPTH_PIX_FMT}, found "
                       f"{info['codec']} {info['pix_fmt']}")
            if want.get("video.height") not in (None, info["height"]) or want.get("video.width") not in (
                None, info["width"]):
                c.fail(f"{path}: {info['width']}x{info['height']} but info.json says "
                       f"{want.get('video.width')}x{want.get('video.height')}")
        for r in eps:
            start = r[f"videos/{vk}/from_timestamp"]
            msg = window_problem(ts, start, r["length"], ctx.fps, tol)
            if msg:
                c.fail(f"{path}: episode {r['episode_index']}: {msg}")
            elif depth or ctx.decode:
                _decode_and_compare(ctx, c, path, r, start, key if depth else None)
    return len(by_file)


def _decode_and_compare(ctx: _Ctx, c: Check, path: str, r: dict[str, Any], start: float, camera: str | None) -> None:
    try:
        frames = decode_window(ctx.root / path, start, r["length"], ctx.fps, depth=camera is not None)
    except Exception as exc:
        c.fail(f"{path}: episode {r['episode_index']} does not decode ({type(exc).__name__}: {exc})")
        return
    if camera is None:
        return
    if frames.dtype != np.uint16:
        c.fail(f"{path}: episode {r['episode_index']} decodes to {frames.dtype}, not uint16")
        return
    want = _record(ctx, r).get("cameras", {}).get(camera, {}).get("depth_crc32")
    got = f"{zlib.crc32(np.ascontiguousarray(frames).data):08x}"
    if want is not None and got != want:
        c.fail(f"{path}: episode {r['episode_index']} depth is not bit-exact (crc32 {got}, written {want})")


def _record(ctx: _Ctx, r: dict[str, Any]) -> dict[str, Any]:
    """The episode's entry in its raygen shard record ({} when there is none)."""
    cf = (r["meta/episodes/chunk_index"], r["meta/episodes/file_index"])
    if cf not in ctx.records:
        p = ctx.root / L.SHARD_RECORD_PATH.format(chunk_index=cf[0], file_index=cf[1])
        ctx.records[cf] = json.loads(p.read_text()) if p.exists() else None
    rec = ctx.records[cf]
    if rec is None:
        return {}
    return rec["episodes"][r["episode_index"] - rec["episode_from"]]


def _check_videos(ctx: _Ctx, c: Check) -> None:
    if ctx.info is None or ctx.episodes is None:
        c.status, c.summary = "skip", "no episodes metadata"
        return
    keys = ctx.video_keys()
    if not keys:
        c.status, c.summary = "skip", "no video features"
        return
    n = sum(_check_streams(ctx, c, vk, ctx.info["video_path"].replace("{video_key}", vk), TIMESTAMP_TOL_S, False)
            for vk in keys)
    c.summary = f"{len(keys)} cameras, {n} files, every episode's frames at from_timestamp + i/fps" + (
        ", all decoded" if ctx.decode else "")


def _check_depth(ctx: _Ctx, c: Check) -> None:
    if ctx.raygen_info is None:
        c.status, c.summary = "skip", "not a raygen dataset (no meta/raygen/info.json)"
        return
    cams = ctx.raygen_info.get("depth", {})
    if not cams:
        c.status, c.summary = "skip", "no depth cameras"
        return
    if ctx.episodes is None:
        c.fail("no episodes metadata to locate depth")
        return
    n = 0
    for cam in cams:
        template = ctx.raygen_info["depth_path"].replace("{camera}", cam)
        n += _check_streams(ctx, c, cam, template, DEPTH_TOL_S, True)
    c.summary = f"{len(cams)} cameras, {n} files, FFV1 gray16le, decoded and bit-exact against written checksums"
    copies = ctx.raygen_info.get("lerobot_depth") or {}
    for cam, spec in copies.items():
        _compare_lerobot_depth(ctx, c, cam, spec)
    if copies:
        c.summary += (f"; LeRobot depth videos of {len(copies)} cameras agree with them within half the "
                      "quantizer's step")


def _compare_lerobot_depth(ctx: _Ctx, c: Check, cam: str, spec: dict[str, Any]) -> None:
    """The LeRobot copy of a camera's depth, dequantized as LeRobot does, against the bit-exact FFV1 copy:
    every pixel in [depth_min, depth_max] within half the quantizer step above its code (``step_mm``, which
    says why that bounds a round trip) plus float rounding. Pixels outside the range (invalid 0 among them)
    read back clipped and are not compared."""
    assert ctx.info is not None and ctx.episodes is not None
    key = spec["feature"]
    quantizer = DepthQuantizer(depth_min=spec["video.depth_min"], depth_max=spec["video.depth_max"],
                               shift=spec["video.shift"], use_log=spec["video.use_log"])
    for r in ctx.episodes:
        rgb = L.video_key(cam)  # FFV1 depth sits at its colour video's position
        vpath = ctx.info["video_path"].format(video_key=key, chunk_index=r[f"videos/{key}/chunk_index"],
                                              file_index=r[f"videos/{key}/file_index"])
        dpath = ctx.raygen_info["depth_path"].format(camera=cam, chunk_index=r[f"videos/{rgb}/chunk_index"],
                                                    file_index=r[f"videos/{rgb}/file_index"])
        decoded: dict[str, np.ndarray] = {}
        for path, start, kw in ((vpath, r[f"videos/{key}/from_timestamp"], {"pix_fmt": LEROBOT_DEPTH_PIX_FMT}),
                                (dpath, r[f"videos/{rgb}/from_timestamp"], {"depth": True})):
            try:
                decoded[path] = decode_window(ctx.root / path, start, r["length"], ctx.fps, **kw)
            except Exception as exc:
                c.fail(f"{path}: episode {r['episode_index']} does not decode ({type(exc).__name__}: {exc})")
        if len(decoded) < 2:
            continue
        got, exact = quantizer.dequantize(decoded[vpath]), decoded[dpath]
        lo, hi = quantizer.depth_min * 1000.0, quantizer.depth_max * 1000.0
        valid = (exact >= lo) & (exact <= hi)
        err = np.abs(got[valid] - exact[valid])
        bound = quantizer.step_mm(exact[valid]) / 2 + DEQUANTIZE_ROUNDING_MM
        if err.size and np.any(err > bound):
            worst = int(np.argmax(err - bound))
            c.fail(f"{vpath}: episode {r['episode_index']}: LeRobot depth differs from the FFV1 depth by "
                   f"{err[worst]:.2f} mm at {exact[valid][worst]} mm (allowed {bound[worst]:.2f} mm)")


def _check_stats(ctx: _Ctx, c: Check) -> None:
    if ctx.info is None:
        c.status = "skip"
        return
    stats = json.loads((ctx.root / L.STATS).read_text())
    for name, f in ctx.info["features"].items():
        if name not in stats:
            c.fail(f"{L.STATS}: feature {name!r} has no statistics")
            continue
        missing = [k for k in STAT_KEYS if k not in stats[name]]
        if missing:
            c.fail(f"{L.STATS}: {name} lacks {missing}")
            continue
        count = stats[name]["count"][0]
        if count != ctx.info.get("total_frames"):
            c.fail(f"{L.STATS}: {name} count = {count}, total_frames = {ctx.info.get('total_frames')}")
        shape = np.asarray(stats[name]["mean"]).shape
        want = (1, 1, 1) if f.get("info", {}).get("is_depth_map") else (3, 1, 1)
        if f["dtype"] == "video" and shape != want:
            c.fail(f"{L.STATS}: {name} image stats must have shape {want}, got {shape}")
    c.summary = f"{len(stats)} features with {', '.join(STAT_KEYS)}"
    if c.status != "fail":
        # quantiles only where raygen wrote them: LeRobot's own aggregation averages per-episode quantiles
        bound = None if ctx.raygen_info is None else float((ctx.raygen_info.get("stats") or {}).get(
            "quantile_rank_error", 0.0))
        if ctx.episodes is None:
            c.summary += "; not checked against the data (no episodes metadata)"
            return
        checked = _check_stats_against_data(ctx, c, stats, bound)
        if isinstance(checked, str):
            c.summary += f"; not checked against the data ({checked})"
            return
        c.summary += (f"; {checked} numeric features against the data: count exact, min, max, mean and std to "
                      "float precision, " + ("quantiles not checked (not written by raygen)" if bound is None
                                             else f"quantiles within rank {bound:.2%} (+1/count)"))


def _check_stats_against_data(ctx: _Ctx, c: Check, stats: dict[str, Any], bound: float | None) -> int | str:
    """Read each data file the episodes point at once (the data check's set: an orphan an interrupted commit
    left is not part of the dataset) and check each numeric feature's stats.json entry against its values.
    Returns the number of features checked, or why nothing was: with a data file missing or unreadable
    (which the episodes and data checks report) the rows at hand are not the dataset's."""
    assert ctx.info is not None
    names = [n for n, f in ctx.info["features"].items() if f["dtype"] != "video" and n in stats]
    acc: dict[str, dict[str, Any]] = {}
    for dp in sorted(_data_files(ctx)):
        try:
            table = pq.read_table(ctx.root / dp)
        except Exception:
            return f"{dp} is missing or unreadable"
        for name in names:
            if name not in table.column_names:
                continue
            v = column_values(table.column(name))
            x = v.reshape(len(v), -1).astype(np.float64)
            a = acc.setdefault(name, {"n": 0, "sum": 0.0, "min": None, "max": None, "below": {}, "upto": {},
                                      "values_sq": 0.0})
            a["n"] += len(x)
            a["sum"] = a["sum"] + x.sum(axis=0)
            a["values_sq"] = a["values_sq"] + (x * x).sum(axis=0)
            a["min"] = x.min(axis=0) if a["min"] is None else np.minimum(a["min"], x.min(axis=0))
            a["max"] = x.max(axis=0) if a["max"] is None else np.maximum(a["max"], x.max(axis=0))
            for k in QUANTILES if bound is not None else ():
                qv = np.asarray(stats[name][k], dtype=np.float64).reshape(-1)
                a["below"][k] = a["below"].get(k, 0) + (x < qv).sum(axis=0)
                a["upto"][k] = a["upto"].get(k, 0) + (x <= qv).sum(axis=0)
    for name, a in acc.items():
        st, n = stats[name], a["n"]
        where = f"{L.STATS}: {name}"
        if st["count"] != [n]:
            c.fail(f"{where}: count {st['count']} but the data hold {n} rows")
            continue
        mean = a["sum"] / n
        std = np.sqrt(np.maximum(a["values_sq"] / n - mean * mean, 0.0))
        exact = ctx.info["features"][name]["dtype"] in ("int64", "int32", "bool")
        edge = 0.0 if exact else 1e-6  # float32 data; LeRobot writes float64 extremes of its float64 input
        for key, want, tol in (("min", a["min"], edge), ("max", a["max"], edge), ("mean", mean, 1e-6),
                               ("std", std, 1e-4)):
            got = np.asarray(st[key], dtype=np.float64).reshape(-1)
            scale = np.maximum(np.abs(want), 1.0) if key != "std" else np.maximum(np.abs(mean), np.maximum(std, 1.0))
            if got.shape != want.shape or np.any(np.abs(got - want) > tol * scale):
                worst = int(np.argmax(np.abs(got - want))) if got.shape == want.shape else 0
                c.fail(f"{where}: {key} differs from the data (dimension {worst}: {got.ravel()[worst]!r} vs "
                       f"{want.ravel()[worst]!r})")
        if bound is None:
            continue
        slack = bound + 1.0 / n + 1e-12
        for k, q in QUANTILES.items():
            lo, hi = a["below"][k] / n, a["upto"][k] / n
            bad = np.flatnonzero((q < lo - slack) | (q > hi + slack))
            if bad.size:
                d = int(bad[0])
                c.fail(f"{where}: {k} is the value of rank {lo[d]:.4f}-{hi[d]:.4f} in the data (dimension {d}), "
                       f"more than {slack:.2%} from {q}")
    return len(acc)


def _check_flow(ctx: _Ctx, c: Check) -> None:
    if ctx.raygen_info is None or not ctx.raygen_info.get("flow_path"):
        c.status, c.summary = "skip", "no flow files"
        return
    n_eps = len(ctx.episodes or [])
    rows = files = 0
    for rel, t in _read_tables(ctx, c, "flow"):
        files += 1
        ep = t.column("episode_index").to_numpy()
        if ep.size and (ep.min() < 0 or ep.max() >= n_eps):
            c.fail(f"{rel}: episode_index outside 0..{n_eps - 1}")
        if not pa.types.is_fixed_size_list(t.schema.field("flow").type):
            c.fail(f"{rel}: column 'flow' must be a fixed-size list of N*3 floats")
        rows += t.num_rows
    c.summary = f"{files} files, {rows} flow steps"


def _check_ledger(ctx: _Ctx, c: Check) -> None:
    p = ctx.root / L.LEDGER
    if ctx.raygen_info is None and not p.exists():
        c.status, c.summary = "skip", "not a raygen dataset (no ledger)"
        return
    if not p.exists():
        c.fail(f"{L.LEDGER}: missing")
        return
    entries = []
    raw = p.read_text()
    lines = raw.splitlines()
    if raw and not raw.endswith("\n"):
        lines = lines[:-1]  # an unterminated last line is an interrupted append: not committed
        c.summary = "(ignoring a torn last line) "
    for i, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            c.fail(f"{L.LEDGER}: line {i + 1} is not JSON")
    named: dict[str, int] = {}
    keys: list[str] = []
    for i, e in enumerate(entries):
        if e.get("seq") != i:
            c.fail(f"{L.LEDGER}: line {i + 1} has seq {e.get('seq')}, expected {i}")
        named.update(e["files"])
        keys.extend(e["episodes"])
    for rel, size in sorted(named.items()):
        f = ctx.root / rel
        if not f.exists():
            c.fail(f"{rel}: named by the ledger but missing")
        elif f.stat().st_size != size:
            c.fail(f"{rel}: {f.stat().st_size} bytes, the ledger recorded {size} (changed or truncated)")
    for rel in L.numbered_files(ctx.root):
        if rel not in named:
            c.fail(f"{rel}: not named by the ledger (orphan of an interrupted commit)")
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        c.fail(f"{L.LEDGER}: episode keys committed more than once: {dup[:5]}")
    total = ctx.info.get("total_episodes") if ctx.info else None
    if total is not None and len(keys) != total:
        c.fail(f"{L.LEDGER}: names {len(keys)} episodes, info.json total_episodes = {total}")
    if ctx.episodes is not None and ctx.raygen_info is not None:
        for r in ctx.episodes[:: max(1, len(ctx.episodes) // 50)]:
            rec = _record(ctx, r)
            i = r["episode_index"]
            if i < len(keys) and rec.get("episode_key") != keys[i]:
                c.fail(f"episode {i}: key {rec.get('episode_key')!r} in its shard record, ledger says {keys[i]!r}")
    c.summary += f"{len(entries)} shards, {len(keys)} episodes, {len(named)} files"


def _first_gap(idx: list[int]) -> str:
    for i, v in enumerate(idx):
        if v != i:
            return f"position {i} holds {v}"
    return "ok"
