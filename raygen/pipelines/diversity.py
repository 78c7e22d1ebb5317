"""The driver's diversity report over committed episodes (meta/raygen/diversity.json), in bounded memory.

Per episode the diversity stage sends a trajectory descriptor (the gripper path resampled to 32 points),
the workspace cells it passes through and its novelty; the report keeps only running summaries of them:
the descriptors' mean and spread (Welford: exact trajectory variance without keeping a descriptor), the set
of visited cells (at most the grid), a KLL sketch of novelty (its median within 1.7% in rank), counts per
task and object, the fixed viewpoints, and a uniform sample of SAMPLE_CAP descriptors (the diversity stage
of the next run measures novelty against it, so a resumed run compares with what is already committed).

Scene axes (:class:`SceneCoverage`), from the ``scene.*`` metrics of simulated episodes (those with
``scene.object_kind``): lighting (light direction on 8 azimuth x 3 elevation cells, and bins of intensity,
ambient and colour temperature; every light a changing light goes through), clutter (distractor counts,
kinds, colours), obstacles (the platform's and the person's speeds), and, when any episode records them,
agents (``scene.agents``; an episode without it has one) and materials (``scene.material``; without it,
rigid), each covered by its distinct values / 3. Each axis's coverage is in [0, 1]: the share of episodes
that vary it times how much of its bins they fill; an axis below 0.5 gets a recommendation naming its
thinnest part, high below 0.1, medium below 0.3, low below 0.5. ``scene_score`` is the mean coverage of
the axes measured (``overall_score`` is unchanged).

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

__all__ = ["DiversityReport", "SceneCoverage"]

logger = logging.getLogger(__name__)

SAMPLE_CAP = 1000
"""Descriptors kept for the next run's novelty reference (96 float32 each: 384 kB in the state file)."""

TOP_TASKS = 50
"""The report lists this many tasks by count (and how many others there are)."""


LIGHT_BINS = {"intensity": (0.0, 1.2, 6), "ambient": (0.0, 1.0, 5), "colour_temperature_k": (2500.0, 10000.0, 5)}
"""Bins (lo, hi, count) of the light's terms that full lighting coverage fills."""
SPEED_BINS = {"platform": (0.0, 0.1, 5), "person": (0.0, 2.0, 8)}
"""Bins (lo, hi, count) of the moving obstacles' speeds, m/s."""
SEVERITY = ((0.1, "high"), (0.3, "medium"), (0.5, "low"))


def _bin(value: float, lo: float, hi: float, n: int) -> int:
    return int(np.clip(np.floor((float(value) - lo) / (hi - lo) * n), 0, n - 1))


def _severity(coverage: float) -> str | None:
    return next((name for bound, name in SEVERITY if coverage < bound), None)


class SceneCoverage:
    """Running summaries of the scene axes (bounded: counts and sets of bins)."""

    def __init__(self) -> None:
        self.simulated = 0
        """Episodes with scene metrics (simulated tasks); the scene axes are shares of these."""
        self.lit = 0
        self.dynamic_light = 0
        self.light_cells: set[int] = set()
        self.light_bins: dict[str, set[int]] = {k: set() for k in LIGHT_BINS}
        self.cluttered = 0
        self.distractor_counts: dict[str, int] = {}
        self.distractor_kinds: set[str] = set()
        self.distractor_colours: set[str] = set()
        self.movers = {k: 0 for k in SPEED_BINS}
        self.speed_bins: dict[str, set[int]] = {k: set() for k in SPEED_BINS}
        self.waited = 0
        self.agents: dict[str, int] = {}
        self.materials: dict[str, int] = {}
        self.agents_seen = False
        self.materials_seen = False
        self.platform_capable = 0
        """Episodes of a task that can have the moving platform (one arm, a rigid object)."""

    def add(self, m: dict[str, Any]) -> None:
        if "scene.object_kind" not in m:
            return
        self.simulated += 1
        if "scene.light_azimuth_deg" in m:
            self.lit += 1
            self.dynamic_light += bool(m.get("scene.light_dynamic"))
            # a changing light counts every light it changes to: [t, azimuth, elevation, K, intensity, ...]
            keys = json.loads(m["scene.light_keyframes"]) if m.get("scene.light_keyframes") else [
                [0.0, *(m.get(f"scene.light_{k}", 0.0) for k in ("azimuth_deg", "elevation_deg",
                                                                 "colour_temperature_k", "intensity", "ambient"))]]
            for _, az, el, kelvin, intensity, ambient, *_ in keys:
                self.light_cells.add(_bin(float(az) % 360.0, 0.0, 360.0, 8) * 3 + _bin(el, 0.0, 90.0, 3))
                for k, value in (("colour_temperature_k", kelvin), ("intensity", intensity), ("ambient", ambient)):
                    self.light_bins[k].add(_bin(value, *LIGHT_BINS[k]))
        if int(m.get("scene.distractors") or 0) > 0:
            self.cluttered += 1
            self.distractor_kinds |= set(json.loads(m.get("scene.distractor_kinds") or "[]"))
            self.distractor_colours |= set(json.loads(m.get("scene.distractor_colours") or "[]"))
        n_d = str(int(m.get("scene.distractors") or 0))
        self.distractor_counts[n_d] = self.distractor_counts.get(n_d, 0) + 1
        for k, (lo, hi, n) in SPEED_BINS.items():
            if f"scene.{k}_speed_mps" in m:
                self.movers[k] += 1
                self.speed_bins[k].add(_bin(m[f"scene.{k}_speed_mps"], lo, hi, n))
        self.waited += float(m.get("task.person_wait_s") or 0.0) > 0
        self.agents_seen |= "scene.agents" in m
        agents = str(int(m.get("scene.agents") or 1))
        self.agents[agents] = self.agents.get(agents, 0) + 1
        self.materials_seen |= "scene.material" in m
        material = str(m.get("scene.material") or "rigid")
        self.materials[material] = self.materials.get(material, 0) + 1
        self.platform_capable += agents == "1" and material == "rigid"

    def axes(self) -> dict[str, dict[str, Any]]:
        """Per axis: coverage in [0, 1], its parts, and (thinnest) the part that holds it back."""
        n = max(self.simulated, 1)
        out: dict[str, dict[str, Any]] = {}
        light_parts = {"direction": len(self.light_cells) / 24,
                       **{k: len(v) / LIGHT_BINS[k][2] for k, v in self.light_bins.items()}}
        out["lighting"] = self._axis(self.lit / n, light_parts, episodes=self.lit,
                                     dynamic=self.dynamic_light, direction_cells=len(self.light_cells))
        clutter_parts = {"count": min(1.0, (len(self.distractor_counts)) / 4),
                         "kinds": min(1.0, len(self.distractor_kinds) / 3),
                         "colours": min(1.0, len(self.distractor_colours) / 6)}
        out["clutter"] = self._axis(self.cluttered / n, clutter_parts, episodes=self.cluttered,
                                    distractor_counts=dict(sorted(self.distractor_counts.items())),
                                    kinds=sorted(self.distractor_kinds), colours=sorted(self.distractor_colours))
        # the platform counts only where a task can have it (two arms and soft objects refuse it)
        movers = [k for k in SPEED_BINS if k != "platform" or self.platform_capable]
        shares = {k: self.movers[k] / n for k in movers}
        parts = {f"{k}_speed": len(self.speed_bins[k]) / SPEED_BINS[k][2] for k in movers}
        cov = float(np.mean([shares[k] * parts[f"{k}_speed"] for k in movers]))
        out["obstacles"] = {"coverage": cov, "share": shares, "parts": parts, "waited": self.waited,
                            "thinnest": self._thinnest({**shares, **parts})}
        if self.agents_seen:
            out["agents"] = {"coverage": min(1.0, len(self.agents) / 3), "distribution": dict(self.agents),
                             "thinnest": "count"}
        if self.materials_seen:
            out["materials"] = {"coverage": min(1.0, len(self.materials) / 3), "distribution": dict(self.materials),
                                "thinnest": "kinds"}
        return out

    @staticmethod
    def _thinnest(parts: dict[str, float]) -> str:
        return min(parts, key=lambda k: (parts[k], k))

    def _axis(self, share: float, parts: dict[str, float], **extra: Any) -> dict[str, Any]:
        cov = share * float(np.mean(list(parts.values()))) if parts else 0.0
        return {"coverage": cov, "share": share, "parts": parts, "thinnest": self._thinnest(parts), **extra}

    def recommendations(self) -> list[dict[str, str]]:
        if not self.simulated:
            return []
        out = []
        hints = {
            ("lighting", None): "every episode has the simulator's one light: enable task_params.scene.lighting",
            ("lighting", "direction"): "light directions fill {cells} of 24 azimuth x elevation cells: widen "
                                       "task_params.scene.lighting.azimuth_deg / elevation_deg, or add episodes",
            ("lighting", "intensity"): "light intensities fall in few bins: widen "
                                       "task_params.scene.lighting.intensity",
            ("lighting", "ambient"): "ambient light falls in few bins: widen task_params.scene.lighting.ambient",
            ("lighting", "colour_temperature_k"): "light colours fall in few bins: widen "
                                                  "task_params.scene.lighting.colour_temperature_k",
            ("clutter", None): "no episode has distractors: enable task_params.scene.distractors",
            ("clutter", "count"): "distractor counts take few values: widen task_params.scene.distractors.count",
            ("clutter", "kinds"): "few distractor kinds: add to task_params.scene.distractors.kinds",
            ("clutter", "colours"): "few distractor colours: add to task_params.scene.distractors.colours",
            ("obstacles", "platform"): "no moving platform: enable task_params.scene.platform",
            ("obstacles", "person"): "no moving person: enable task_params.scene.person",
            ("obstacles", "platform_speed"): "platform speeds fall in few bins: widen "
                                             "task_params.scene.platform.speed_mps, or add episodes",
            ("obstacles", "person_speed"): "walking speeds fall in few bins: widen "
                                           "task_params.scene.person.speed_mps, or add episodes",
            ("agents", "count"): "every episode has the same number of arms: add "
                                 + ("single-arm" if set(self.agents) == {"2"} else "two-arm") + " episodes",
            ("materials", "kinds"): "few object materials: add soft-object episodes or materials",
        }
        for name, axis in self.axes().items():
            severity = _severity(axis["coverage"])
            if severity is None:
                continue
            part = None if axis.get("share", 1.0) == 0 and name in ("lighting", "clutter") else axis["thinnest"]
            text = hints.get((name, part)) or f"thin in {part}"
            message = text.format(cells=len(self.light_cells))
            out.append({"axis": name, "severity": severity, "coverage": round(axis["coverage"], 3),
                        "message": f"coverage {axis['coverage']:.2f}: {message}"})
        return out

    def state(self) -> dict[str, Any]:
        return {"simulated": self.simulated, "lit": self.lit, "dynamic_light": self.dynamic_light,
                "light_cells": sorted(self.light_cells),
                "light_bins": {k: sorted(v) for k, v in self.light_bins.items()},
                "cluttered": self.cluttered, "distractor_counts": self.distractor_counts,
                "distractor_kinds": sorted(self.distractor_kinds),
                "distractor_colours": sorted(self.distractor_colours),
                "movers": self.movers, "speed_bins": {k: sorted(v) for k, v in self.speed_bins.items()},
                "waited": self.waited, "agents": self.agents, "materials": self.materials,
                "agents_seen": self.agents_seen, "materials_seen": self.materials_seen,
                "platform_capable": self.platform_capable}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> SceneCoverage:
        out = cls()
        out.simulated, out.lit, out.dynamic_light = int(s["simulated"]), int(s["lit"]), int(s["dynamic_light"])
        out.light_cells = set(s["light_cells"])
        out.light_bins = {k: set(s["light_bins"].get(k, [])) for k in LIGHT_BINS}
        out.cluttered, out.distractor_counts = int(s["cluttered"]), dict(s["distractor_counts"])
        out.distractor_kinds, out.distractor_colours = set(s["distractor_kinds"]), set(s["distractor_colours"])
        out.movers = {k: int(s["movers"].get(k, 0)) for k in SPEED_BINS}
        out.speed_bins = {k: set(s["speed_bins"].get(k, [])) for k in SPEED_BINS}
        out.waited, out.agents, out.materials = int(s["waited"]), dict(s["agents"]), dict(s["materials"])
        out.agents_seen, out.materials_seen = bool(s["agents_seen"]), bool(s["materials_seen"])
        out.platform_capable = int(s.get("platform_capable", out.agents.get("1", 0)))  # older states: one arm
        return out


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
        self.scene = SceneCoverage()
        self.scene_from_records = False

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
        self.scene.add(m)

    def report(self) -> dict[str, Any]:
        from raygen.pipelines.stages import CELL_M, WORKSPACE

        total_cells = int(np.prod([round((b[1] - b[0]) / CELL_M) for b in WORKSPACE]))
        coverage = len(self.cells) / total_cells
        variance = float(self.m2.sum() / self.n) if self.n > 1 and self.m2 is not None else 0.0
        counts = np.array(list(self.tasks.values()), dtype=float)
        balance = float(counts.min() / counts.max()) if len(counts) else 0.0
        score = float(np.mean([min(1.0, coverage / 0.2), min(1.0, variance / 0.05), balance]))
        median_novelty = None if self.novelty.is_empty() else float(self.novelty.get_quantile(0.5))
        details = []
        if coverage < 0.1:
            details.append({"axis": "workspace", "severity": "high" if coverage < 0.02 else "medium",
                            "message": f"workspace coverage is {coverage:.1%}: widen task_params x_range/y_range "
                                       "or add episodes"})
        if balance < 0.5 and len(counts) > 1:
            details.append({"axis": "tasks", "severity": "medium", "message": "task distribution is uneven: more "
                            "seeds even it out, or sample tasks explicitly"})
        if len(self.viewpoints) <= 1 and self.n:
            details.append({"axis": "viewpoints", "severity": "low", "message": "every episode sees the scene from "
                            "the same fixed viewpoint(s): randomize camera poses if the policy must generalize "
                            "across views"})
        if median_novelty is not None and median_novelty < 0.02:
            details.append({"axis": "novelty", "severity": "medium", "message": "many episodes are near-duplicates: "
                            "raise joint noise or scene randomization"})
        details += self.scene.recommendations()
        recs = [f"[{d['severity'].upper()}] {d['axis']}: {d['message']}" for d in details]
        axes = self.scene.axes() if self.scene.simulated else {}
        scene_score = float(np.mean([a["coverage"] for a in axes.values()])) if axes else None
        top = sorted(self.tasks.items(), key=lambda kv: (-kv[1], kv[0]))
        return {"episodes": self.n, "trajectory_variance_m2": variance,
                "workspace_coverage": coverage, "workspace_cells_visited": len(self.cells),
                "workspace_cells_total": total_cells, "fixed_viewpoints": len(self.viewpoints),
                "moving_cameras": sorted(self.moving), "task_distribution": dict(top[:TOP_TASKS]),
                "tasks_total": len(self.tasks), "tasks_not_listed": max(0, len(top) - TOP_TASKS),
                "object_distribution": self.objects, "median_novelty_m": median_novelty,
                "overall_score": score, "scene_axes": axes, "scene_score": scene_score,
                "recommendations": recs, "recommendation_details": details}

    # ------------------------------------------------------------------ state
    def save(self, root: Path) -> None:
        """The report and the state behind it (written at each shard, between commits)."""
        L.atomic_write_json(root / L.DIVERSITY, self.report())
        state = {"n": self.n, "mean": None if self.mean is None else self.mean.tolist(),
                 "m2": None if self.m2 is None else self.m2.tolist(), "cells": sorted(self.cells),
                 "tasks": self.tasks, "objects": self.objects,
                 "novelty": base64.b64encode(self.novelty.serialize()).decode(),
                 "viewpoints": sorted(list(v) for v in self.viewpoints), "moving": sorted(self.moving),
                 "seq": self.seq, "sample_shape": list(self.sample.shape), "scene": self.scene.state(),
                 "sample": base64.b64encode(self.sample.astype("<f4").tobytes()).decode()}
        L.atomic_write_json(root / L.DIVERSITY_STATE, state, indent=None)

    @classmethod
    def load(cls, root: Path) -> DiversityReport:
        """The report of a dataset's committed episodes: the saved state plus the shards committed after it
        (all of them when there is no state or it cannot be read)."""
        out = cls._load_state(root)
        if out.scene_from_records and (root / L.LEDGER).exists():  # a state saved before the scene axes
            for e in L.read_jsonl(root / L.LEDGER):
                if e["seq"] <= out.seq:
                    cf = {"chunk_index": e["chunk_index"], "file_index": e["file_index"]}
                    for rec in L.read_json(root / L.SHARD_RECORD_PATH.format(**cf))["episodes"]:
                        out.scene.add(rec["metrics"])
        out.scene_from_records = False
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
            if "scene" in s:
                out.scene = SceneCoverage.from_state(s["scene"])
            else:  # saved before the scene axes: load() reads them from the shard records it covers
                out.scene_from_records = True
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
