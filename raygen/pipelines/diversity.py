"""The driver's diversity report over committed episodes (meta/raygen/diversity.json), in bounded memory.

Per episode the diversity stage sends a trajectory descriptor (the gripper path resampled to 32 points),
the workspace cells it passes through and its novelty; the report keeps only running summaries of them:
the descriptors' mean and spread (Welford: exact trajectory variance without keeping a descriptor), the set
of visited cells (at most the grid), a KLL sketch of novelty (its median within 1.7% in rank), counts per
task and object, the fixed viewpoints, and a uniform sample of SAMPLE_CAP descriptors (the diversity stage
of the next run measures novelty against it, so a resumed run compares with what is already committed).

Only committed episodes count: the report reads each shard's record after its commit (:meth:`add_shard`),
so an aborted open shard never enters it. Its state is saved beside the report
(meta/raygen/diversity_state.json) with the ledger seq it covers; opening replays the shards committed after
that seq (a crash between a commit and the save loses nothing, and nothing counts twice).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from raygen.datasets import _layout as L
from raygen.datasets.encode import EncodedEpisode

__all__ = ["DiversityReport"]

logger = logging.getLogger(__name__)

SAMPLE_CAP = 1000
"""Descriptors kept for the next run's novelty reference (96 float32 each: 384 kB in the state file)."""

TOP_TASKS = 50
"""The report lists this many tasks by count (and how many others there are)."""


class DiversityReport:
    def __init__(self) -> None:
        from datasketches import kll_floats_sketch

        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.cells: set[int] = set()
        self.tasks: dict[str, int] = {}
        self.objects: dict[str, int] = {}
        self.novelty = kll_floats_sketch(200)
        self.viewpoints: set[tuple] = set()
        self.moving: set[str] = set()
        self.seq = -1
        """The last committed shard (ledger seq) the report covers."""
        self.sample = np.zeros((0, 96), dtype=np.float32)

    def add(self, enc: EncodedEpisode) -> None:
        """One episode (tests and tools; a run adds whole committed shards with :meth:`add_shard`)."""
        self.add_record(enc.record, enc.task, enc.episode_key)

    def add_shard(self, root: Path, entry: dict[str, Any]) -> None:
        """The episodes of one committed shard (its ledger entry), read from its shard record."""
        import pyarrow.parquet as pq

        if entry["seq"] <= self.seq:
            return
        cf = {"chunk_index": entry["chunk_index"], "file_index": entry["file_index"]}
        record = L.read_json(root / L.SHARD_RECORD_PATH.format(**cf))
        tasks = pq.read_table(root / L.EPISODES_PATH.format(**cf), columns=["tasks"]).column(0).to_pylist()
        for rec, task in zip(record["episodes"], tasks):
            self.add_record(rec, str(task[0]) if task else "", rec["episode_key"])
        self.seq = entry["seq"]

    def catch_up(self, root: Path) -> int:
        """Add the shards committed after :attr:`seq` (the ledger is the truth); returns how many."""
        entries = [e for e in L.read_jsonl(root / L.LEDGER) if e["seq"] > self.seq]
        for e in entries:
            self.add_shard(root, e)
        return len(entries)

    def _sample(self, key: str, d: np.ndarray) -> None:
        """Reservoir sampling by a hash of the key: each episode is equally likely to be in the sample."""
        if len(self.sample) < SAMPLE_CAP:
            self.sample = np.concatenate([self.sample, d[None].astype(np.float32)]) if self.sample.size \
                else d[None].astype(np.float32)
            return
        slot = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % self.n
        if slot < SAMPLE_CAP:
            self.sample[slot] = d

    def add_record(self, record: dict[str, Any], task: str, key: str) -> None:
        m = record["metrics"]
        for cam, rec in record["cameras"].items():
            if rec.get("moving"):
                self.moving.add(cam)
            elif "pose" in rec:  # a fixed camera's viewpoint, on a 5 cm grid
                self.viewpoints.add((cam, *np.round(np.asarray(rec["pose"])[:3, 3] / 0.05).astype(int).tolist()))
        if "diversity.descriptor" in m:
            d = np.asarray(json.loads(m["diversity.descriptor"]), dtype=np.float64)
            self.n += 1
            if self.mean is None:
                self.mean, self.m2 = d.copy(), np.zeros_like(d)
            else:
                delta = d - self.mean
                self.mean += delta / self.n
                self.m2 += delta * (d - self.mean)
            self._sample(key, d)
            self.cells |= set(json.loads(m["diversity.cells"]))
            if m.get("diversity.novelty") is not None:  # none for the very first episode of a dataset
                self.novelty.update(float(m["diversity.novelty"]))
        self.tasks[task] = self.tasks.get(task, 0) + 1
        obj = f"{m.get('scene.colour', '?')} {m.get('scene.object_kind', '?')}"
        self.objects[obj] = self.objects.get(obj, 0) + 1

    def report(self) -> dict[str, Any]:
        from raygen.pipelines.stages import CELL_M, WORKSPACE

        total_cells = int(np.prod([round((b[1] - b[0]) / CELL_M) for b in WORKSPACE]))
        coverage = len(self.cells) / total_cells
        variance = float(self.m2.sum() / self.n) if self.n > 1 and self.m2 is not None else 0.0
        counts = np.array(list(self.tasks.values()), dtype=float)
        balance = float(counts.min() / counts.max()) if len(counts) else 0.0
        score = float(np.mean([min(1.0, coverage / 0.2), min(1.0, variance / 0.05), balance]))
        median_novelty = None if self.novelty.is_empty() else float(self.novelty.get_quantile(0.5))
        recs = []
        if coverage < 0.1:
            recs.append(f"workspace coverage is {coverage:.1%}: widen task_params x_range/y_range or add episodes")
        if balance < 0.5 and len(counts) > 1:
            recs.append("task distribution is uneven: more seeds even it out, or sample tasks explicitly")
        if len(self.viewpoints) <= 1 and self.n:
            recs.append("every episode sees the scene from the same fixed viewpoint(s): randomize camera poses "
                        "if the policy must generalize across views")
        if median_novelty is not None and median_novelty < 0.02:
            recs.append("many episodes are near-duplicates: raise joint noise or scene randomization")
        top = sorted(self.tasks.items(), key=lambda kv: (-kv[1], kv[0]))
        return {"episodes": self.n, "trajectory_variance_m2": variance,
                "workspace_coverage": coverage, "workspace_cells_visited": len(self.cells),
                "workspace_cells_total": total_cells, "fixed_viewpoints": len(self.viewpoints),
                "moving_cameras": sorted(self.moving), "task_distribution": dict(top[:TOP_TASKS]),
                "tasks_total": len(self.tasks), "tasks_not_listed": max(0, len(top) - TOP_TASKS),
                "object_distribution": self.objects, "median_novelty_m": median_novelty,
                "overall_score": score, "recommendations": recs}

    # ------------------------------------------------------------------ state
    def save(self, root: Path) -> None:
        """The report and the state behind it (written at each shard, between commits)."""
        L.atomic_write_json(root / L.DIVERSITY, self.report())
        state = {"n": self.n, "mean": None if self.mean is None else self.mean.tolist(),
                 "m2": None if self.m2 is None else self.m2.tolist(), "cells": sorted(self.cells),
                 "tasks": self.tasks, "objects": self.objects,
                 "novelty": base64.b64encode(self.novelty.serialize()).decode(),
                 "viewpoints": sorted(list(v) for v in self.viewpoints), "moving": sorted(self.moving),
                 "seq": self.seq, "sample_shape": list(self.sample.shape),
                 "sample": base64.b64encode(self.sample.astype("<f4").tobytes()).decode()}
        L.atomic_write_json(root / L.DIVERSITY_STATE, state, indent=None)

    @classmethod
    def load(cls, root: Path) -> DiversityReport:
        """The report of a dataset's committed episodes: the saved state plus the shards committed after it
        (all of them when there is no state or it cannot be read)."""
        out = cls._load_state(root)
        if (root / L.LEDGER).exists():
            replayed = out.catch_up(root)
            if replayed:
                logger.info("diversity report: added %d shards committed after its last save", replayed)
        return out

    @classmethod
    def _load_state(cls, root: Path) -> DiversityReport:
        from datasketches import kll_floats_sketch

        out = cls()
        path = root / L.DIVERSITY_STATE
        if not path.exists():
            return out
        try:
            s = L.read_json(path)
            out.n = int(s["n"])
            out.mean = None if s["mean"] is None else np.asarray(s["mean"], dtype=np.float64)
            out.m2 = None if s["m2"] is None else np.asarray(s["m2"], dtype=np.float64)
            out.cells = set(s["cells"])
            out.tasks, out.objects = dict(s["tasks"]), dict(s["objects"])
            out.novelty = kll_floats_sketch.deserialize(base64.b64decode(s["novelty"]))
            out.viewpoints = {tuple(v) for v in s["viewpoints"]}
            out.moving = set(s["moving"])
            if "seq" in s:
                out.seq = int(s["seq"])
                out.sample = np.frombuffer(base64.b64decode(s["sample"]), dtype="<f4").reshape(s["sample_shape"])
                out.sample = out.sample.astype(np.float32)  # writable
            else:  # saved before the report recorded its seq (and at every commit): it covers the ledger
                out.seq = max((e["seq"] for e in L.read_jsonl(root / L.LEDGER)), default=-1) \
                    if (root / L.LEDGER).exists() else -1
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            logger.warning("%s: unreadable (%s); the diversity report is rebuilt from the shard records", path, exc)
            return cls()
        return out
