"""Bottleneck-focused generation, driver side: critical states, inverse-usage sampling, spherical perturbations.

Seed 002's system, on raygen's specs:

- :func:`load_critical_states` reads the frames an annotated dataset marks with ``augment_states`` (see
  ``raygen annotate``) in its successful demos, with everything a worker needs to restore them (joints,
  fingers, object pose, grasp, the demo's remaining targets and phases, its scene and task parameters).
- :class:`UsagePlan` assigns a critical state to each episode index of a run: state ``k`` is drawn with
  probability proportional to ``1 / (1 + count_k)``, ``count_k`` being how often it was planned before, so
  the least-used states come first and the counts level out. The counts and each seed's plan are persisted
  in the output dataset (``meta/raygen/bottleneck/usage.json``): a resumed run gets the same state for the
  same index, and a later run (another seed, more episodes) continues from the counts. A planned episode
  counts as a use whether it is committed or rejected: it spent simulator time on that state.
- :func:`sample_perturbation` draws seed 002's spherical perturbation for one episode: r uniform in
  ``radius_m``, elevation (from vertical) in ``elevation_deg``, azimuth in ``azimuth_deg``, and roll, pitch and
  yaw each in ``rotation_deg``; the seed's ranges are the defaults (0.2-0.5 m, 5-80 deg, 0-360 deg, +-180 deg).

The worker side is :mod:`raygen.actors.tasks.bottleneck`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raygen.actors.tasks.pick_place import PHASES
from raygen.actors.tasks.scene_plan import variation_at
from raygen.datasets import _layout as L

__all__ = ["USAGE", "CriticalState", "UsagePlan", "load_critical_states", "sample_perturbation"]

logger = logging.getLogger(__name__)

USAGE = "meta/raygen/bottleneck/usage.json"
_STATE_STREAM, _PERTURBATION_STREAM = 0xB077, 0x9E27  # independent random streams per (seed, index)
REQUIRED = ("augment_states", "object.pose", "task.phase")


class SourceDatasetError(ValueError):
    """The dataset cannot seed bottleneck generation; the message names it and what is missing."""


@dataclass(frozen=True)
class CriticalState:
    demo: str
    """The source episode's key."""
    frame: int
    tcp: tuple[float, float, float]
    """The TCP position at the critical frame (world, m)."""
    params: dict[str, Any]
    """The worker's ``bottleneck`` spec part, less the perturbation and recovery (see
    :mod:`raygen.actors.tasks.bottleneck`)."""
    task_params: dict[str, Any]
    """The demo's task parameters (the episode uses the same physics and success check)."""

    @property
    def key(self) -> tuple[str, int]:
        return self.demo, self.frame

    @property
    def digest(self) -> str:
        """What a planned episode from this state depends on: its spec part and task parameters."""
        import hashlib

        text = json.dumps([self.params, self.task_params], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _names(info: dict[str, Any], feature: str) -> list[str]:
    return list(info["features"].get(feature, {}).get("names") or [])


def load_critical_states(root: Path | str) -> list[CriticalState]:
    """Every frame marked critical in the annotated pick-and-place dataset at ``root``."""
    from raygen.datasets.reader import DatasetReader

    root = Path(root)
    if not (root / L.INFO).exists():
        raise SourceDatasetError(f"source.bottleneck.dataset: {root} is not a raygen dataset ({L.INFO} missing)")
    reader = DatasetReader(root)
    missing = [f for f in REQUIRED if f not in reader.info["features"]]
    if missing:
        hint = (" Mark its critical states first: raygen annotate " f"{root} --method combined --output ANNOTATED"
                if missing == ["augment_states"] else
                " It must be a pick-and-place dataset made by raygen (bullet or isaac) after object.pose was added.")
        raise SourceDatasetError(f"source.bottleneck.dataset: {root} has no per-frame {', '.join(missing)}.{hint}")
    names = _names(reader.info, "observation.state")
    try:
        iq, ifing, itcp = names.index("joint_0"), names.index("finger_left"), names.index("eef_x")
    except ValueError:
        raise SourceDatasetError(f"source.bottleneck.dataset: {root}: observation.state names {names} lack "
                                 "joint_0, finger_left or eef_x (a raygen pick-and-place state)") from None
    out: list[CriticalState] = []
    failed: list[str] = []
    for i in range(len(reader)):
        ep = reader.episode(i, decode_video=False, decode_depth=False)
        marks = np.flatnonzero(np.asarray(ep.frame_features["augment_states"]).reshape(len(ep.state)) > 0)
        if not len(marks):
            continue
        if not ep.success:  # its remaining targets lead to a failure: no state of it is worth restarting from
            failed.append(ep.episode_key)
            continue
        prov, m = ep.provenance, ep.metrics
        if not str(prov.get("task", "")).startswith("pick_place"):
            raise SourceDatasetError(f"source.bottleneck.dataset: {root} episode {ep.episode_key}: task "
                                     f"{prov.get('task')!r} is not pick_place")
        try:
            scene = {"object_xy": [float(m["scene.object_x"]), float(m["scene.object_y"])],
                     "place_xy": [float(m["scene.place_x"]), float(m["scene.place_y"])],
                     "object_size": float(m["scene.object_size_m"]), "object_kind": str(m["scene.object_kind"]),
                     "colour_name": str(m["scene.colour"])}
        except KeyError as exc:
            raise SourceDatasetError(f"source.bottleneck.dataset: {root} episode {ep.episode_key}: metrics lack "
                                     f"{exc} (the scene cannot be rebuilt)") from None
        phase = np.asarray(ep.frame_features["task.phase"]).reshape(-1).astype(np.int64)
        pose = np.asarray(ep.frame_features["object.pose"], np.float64).reshape(-1, 7)
        closes = np.flatnonzero(phase == PHASES.index("CLOSE_GRIPPER"))  # the object is held after its last frame
        opens = np.flatnonzero(phase == PHASES.index("OPEN_GRIPPER"))  # let go within its first frame
        grasp_at = int(closes[-1]) if len(closes) else len(phase)
        release_at = int(opens[0]) if len(opens) else len(phase)
        demo_grasped = bool(m.get("task.grasped", True))
        for t in marks.tolist():
            s = ep.state[t].astype(np.float64)
            params = {"demo": ep.episode_key, "frame": t, "scene": scene,
                      "q": s[iq:iq + 7].tolist(), "fingers": s[ifing:ifing + 2].tolist(),
                      "object_pose": pose[t].tolist(), "grasped": demo_grasped and grasp_at < t <= release_at,
                      "after_grasp": demo_grasped and t > grasp_at,
                      "actions": np.asarray(ep.action[t:], np.float64).tolist(), "phases": phase[t:].tolist()}
            kept = variation_at(prov["scene_variation"], t / ep.fps) if prov.get("scene_variation") else None
            if kept is not None and (kept.get("light") or kept.get("distractors")):  # back with the state
                params["variation"] = kept  # (a demo with only a platform or a person keeps its state's digest)
            out.append(CriticalState(ep.episode_key, t, tuple(float(v) for v in s[itcp:itcp + 3]), params,
                                     dict(prov.get("task_params") or {})))
    if failed:
        logger.info("%s: critical states of %d unsuccessful demo(s) skipped (%s%s)", root, len(failed),
                    ", ".join(failed[:3]), ", ..." if len(failed) > 3 else "")
    if not out:
        why = (f"only unsuccessful demos ({len(failed)}) mark any" if failed else
               "augment_states is 0 on every frame; annotate it with other parameters")
        raise SourceDatasetError(f"source.bottleneck.dataset: {root} has no critical state to start from ({why})")
    return out


def sample_perturbation(rng: np.random.Generator, *, radius_m: tuple[float, float], elevation_deg: tuple[float, float],
                        azimuth_deg: tuple[float, float], rotation_deg: tuple[float, float]) -> dict[str, float]:
    """Seed 002's spherical perturbation: r (m), theta and phi (rad), roll, pitch, yaw (rad)."""
    rot = np.deg2rad(rng.uniform(*rotation_deg, size=3))
    return {"r": float(rng.uniform(*radius_m)), "theta": float(np.deg2rad(rng.uniform(*elevation_deg))),
            "phi": float(np.deg2rad(rng.uniform(*azimuth_deg))), "roll": float(rot[0]), "pitch": float(rot[1]),
            "yaw": float(rot[2])}


class UsagePlan:
    """Which critical state each episode index gets, with inverse-usage balance, persisted in a dataset.

    Each state is kept with a digest of what an episode from it depends on (its joints, object pose,
    remaining demo, task parameters): a source whose state under the same (demo, frame) changed would make
    different episodes for indices already planned, so that is an error, not a silent drift."""

    def __init__(self, states: list[tuple[str, int]], counts: list[int] | None = None,
                 plans: dict[str, list[int]] | None = None, dataset: str = "", digests: list[str] | None = None):
        self.states = [tuple(s) for s in states]
        self.counts = list(counts) if counts is not None else [0] * len(self.states)
        self.digests = list(digests) if digests is not None else [""] * len(self.states)
        self.plans = {str(k): list(v) for k, v in (plans or {}).items()}
        self.dataset = dataset
        self.path: Path | None = None

    @classmethod
    def load(cls, root: Path | str) -> UsagePlan | None:
        path = Path(root) / USAGE
        if not path.exists():
            return None
        try:
            d = json.loads(path.read_text())
            usage = cls([(str(a), int(b)) for a, b in d["states"]], [int(c) for c in d["counts"]],
                        d.get("plans", {}), str(d.get("dataset", "")), d.get("digests"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SourceDatasetError(f"{path}: unreadable usage record ({type(exc).__name__}: {exc}); it holds "
                                     "the critical-state counts and plans of earlier runs") from None
        usage.path = path
        return usage

    def save(self, root: Path | str) -> None:
        path = Path(root) / USAGE
        path.parent.mkdir(parents=True, exist_ok=True)
        L.atomic_write_json(path, {"version": 1, "dataset": self.dataset, "states": [list(s) for s in self.states],
                                   "digests": self.digests, "counts": self.counts, "plans": self.plans})

    def plan(self, current: list[Any], seed: int, n: int, *, dataset: str = "") -> list[int]:
        """Indices into ``self.states`` for episodes 0..n-1 of ``seed``, drawn among the ``current`` critical
        states (CriticalState, or (demo, frame) keys; new ones join with a count of 0); an existing plan is
        kept and only extended. The draw is p(k) = (1 / (1 + count_k)) / sum, one episode at a time."""
        where = {s: i for i, s in enumerate(self.states)}
        record = self.path or Path(USAGE)
        pool = []
        for item in current:
            key = tuple(item.key) if isinstance(item, CriticalState) else tuple(item)
            digest = item.digest if isinstance(item, CriticalState) else ""
            if key not in where:
                where[key] = len(self.states)
                self.states.append(key)
                self.counts.append(0)
                self.digests.append(digest)
            elif digest and self.digests[where[key]] and self.digests[where[key]] != digest:
                raise SourceDatasetError(
                    f"{record}: critical state {key} of source.bottleneck.dataset {dataset or self.dataset} is not "
                    f"the one planned before from {self.dataset} (digest {digest} != {self.digests[where[key]]}): "
                    "the source changed under the same episode keys. Write to a new output folder, or delete "
                    f"{record} to plan afresh")
            elif digest:
                self.digests[where[key]] = digest
            pool.append(where[key])
        pool_arr = np.array(pool, dtype=np.int64)
        plan = self.plans.setdefault(str(seed), [])
        live = set(pool)
        gone = [self.states[k] for k in plan[:n] if k not in live]
        if gone:
            raise SourceDatasetError(f"{record}: seed {seed} planned critical state(s) {gone[:3]} that "
                                     f"source.bottleneck.dataset {dataset or self.dataset} no longer marks; run with "
                                     f"another source.seed, or delete {record} to plan afresh")
        counts = np.asarray(self.counts, dtype=np.float64)
        for index in range(len(plan), n):
            rng = np.random.default_rng([int(seed), index, _STATE_STREAM])
            w = 1.0 / (1.0 + counts[pool_arr])
            k = int(pool_arr[rng.choice(len(pool_arr), p=w / w.sum())])
            plan.append(k)
            counts[k] += 1
        self.counts = counts.astype(np.int64).tolist()
        if dataset:
            self.dataset = dataset
        return plan[:n]


def perturbation_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), _PERTURBATION_STREAM])
