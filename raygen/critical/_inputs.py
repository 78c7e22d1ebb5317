"""Where an annotation method's inputs are in a dataset: found from its feature names (and their ``names``).

``resolve_inputs`` maps each input a method reads (rewards, actions, gripper, positions with quats,
signals) to the feature, dimensions and transform it comes from, or reports every missing input at once;
``episode_inputs`` reads them for one episode's rows of a data file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raygen.critical.methods import METHODS, AnnotationError

__all__ = ["describe", "episode_inputs", "features_read", "resolve_inputs"]

_EE = {"ee", "eef", "tcp", "hand", "flange", "endeffector", "end_effector"}


@dataclass(frozen=True)
class _Source:
    """Where one input comes from: a feature, some of its dimensions, and how they are combined."""

    feature: str
    dims: tuple[int, ...] | None = None
    how: str = "take"  # take | sum | translation | rotation (of a flattened 4x4 pose)
    label: str = ""

    def get(self, cols: Mapping[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        v = np.asarray(cols[self.feature][rows], dtype=np.float64)
        v = v[:, None] if v.ndim == 1 else v
        if self.how == "translation":
            return v[:, [3, 7, 11]]
        if self.how == "rotation":
            from scipy.spatial.transform import Rotation

            return Rotation.from_matrix(v.reshape(-1, 4, 4)[:, :3, :3]).as_quat()
        if self.dims is not None:
            v = v[:, list(self.dims)]
        return v.sum(axis=1) if self.how == "sum" else v


def _tokens(name: str) -> set[str]:
    return {t for t in re.split(r"[._/]", name.lower()) if t}


def _segments(name: str) -> list[str]:
    return [s for s in re.split(r"[./]", name.lower()) if s]


def _width(spec: Mapping[str, Any]) -> int:
    return int(np.prod(spec.get("shape") or [1]))


def _names(spec: Mapping[str, Any]) -> list[str]:
    names = spec.get("names")
    return [str(n) for n in names] if isinstance(names, list) and len(names) == _width(spec) else []


def _scalar(feats: Mapping[str, Any], exact: tuple[str, ...], last: set[str], label: str) -> _Source | None:
    for name in [*exact, *sorted(feats)]:
        spec = feats.get(name)
        if spec and _width(spec) == 1 and (name in exact or _segments(name)[-1] in last):
            return _Source(name, label=f"{name} ({label})")
    return None


def _find_rewards(feats: Mapping[str, Any]) -> _Source | None:
    return (_scalar(feats, ("next.reward", "reward", "rewards", "observation.reward"), {"reward", "rewards"},
                    "reward")
            or _scalar(feats, ("next.success", "success", "observation.success"), {"success"}, "success as reward"))


def _find_actions(feats: Mapping[str, Any]) -> _Source | None:
    for name in ("action", "actions", *sorted(feats)):
        if name in feats and _segments(name)[-1] in ("action", "actions"):
            return _Source(name, label=name)
    return None


def _find_gripper(feats: Mapping[str, Any]) -> _Source | None:
    action = _find_actions(feats)
    if action:
        for j, n in enumerate(_names(feats[action.feature])):
            if "gripper" in n.lower():
                return _Source(action.feature, (j,), label=f"{action.feature}[{j}] ({n}, the command)")
    for name in sorted(feats):
        if _segments(name)[-1] == "gripper_action":
            return _Source(name, (0,), label=f"{name}[0] (the command)")
    for name in ("gripper.opening", *sorted(feats)):
        last = _segments(name)[-1] if name in feats else ""
        if name in feats and _width(feats[name]) == 1 and "gripper" in name.lower() and (
                name == "gripper.opening" or last in ("gripper_width", "gripper_opening", "gripper_state", "width")):
            return _Source(name, label=f"{name} (measured)")
    state = feats.get("observation.state")
    names = _names(state) if state else []
    grip = [j for j, n in enumerate(names) if "gripper" in n.lower()]
    fingers = [j for j, n in enumerate(names) if n.lower().startswith("finger") and "vel" not in n.lower()]
    if grip or fingers:
        dims = tuple(grip[:1] or fingers)
        return _Source("observation.state", dims, "sum",
                       f"observation.state{list(dims)} ({', '.join(names[j] for j in dims)}, measured)")
    return None


def _find_pose(feats: Mapping[str, Any]) -> tuple[_Source, _Source | None] | None:
    from raygen.datasets.episode import quaternion_slices

    state = feats.get("observation.state")
    names = _names(state) if state else []
    lower = [n.lower() for n in names]
    found: list[tuple[_Source, _Source | None]] = []
    for j in range(len(lower) - 2):
        stem = lower[j][:-1]
        if lower[j:j + 3] == [stem + "x", stem + "y", stem + "z"] and _tokens(stem) & _EE:
            quats = quaternion_slices(lower)
            quat = next((sl for sl in quats if lower[sl.start][:-2] == stem), None) or next(
                (sl for sl in quats if _tokens(lower[sl.start][:-2]) & _EE), None)
            pos = _Source("observation.state", (j, j + 1, j + 2), label=f"observation.state[{j}:{j + 3}] "
                          f"({', '.join(names[j:j + 3])})")
            rot = quat and _Source("observation.state", tuple(range(quat.start, quat.stop)),
                                   label=f"observation.state[{quat.start}:{quat.stop}] ({', '.join(names[quat])})")
            found.append((pos, rot))
    if found:
        return max(found, key=lambda f: f[1] is not None)
    for name in sorted(feats):
        tok = _tokens(_segments(name)[-1])
        if _width(feats[name]) == 3 and tok & _EE and tok & {"pos", "position", "positions", "xyz"}:
            rot = next((_Source(q, label=q) for q in sorted(feats) if _width(feats[q]) == 4 and _tokens(
                _segments(q)[-1]) & _EE and _tokens(_segments(q)[-1]) & {"quat", "quaternion", "rotation"}), None)
            return _Source(name, label=name), rot
    poses = [n for n in sorted(feats) if _width(feats[n]) == 16 and "target" not in n.lower() and any(
        s in ("eef_pose", "ee_pose") for s in _segments(n))]
    for name in [*poses, "gripper.pose"]:
        if name in feats and _width(feats[name]) == 16:
            return (_Source(name, how="translation", label=f"{name} (translation of the 4x4 pose)"),
                    _Source(name, how="rotation", label=f"{name} (rotation of the 4x4 pose)"))
    return None


def _find_signals(feats: Mapping[str, Any]) -> dict[str, _Source]:
    out = {}
    for name in sorted(feats):
        segs = _segments(name)
        if not {"subtask_term_signals", "subtask_start_signals"} & set(segs):
            continue
        names = _names(feats[name])
        for j in range(_width(feats[name])):
            key = name if _width(feats[name]) == 1 else f"{name}[{names[j] if names else j}]"
            out[key] = _Source(name, (j,), label=key)
    return out


_LOOKED_FOR = {
    "rewards": "next.reward, reward, rewards or any '*.reward' / '*.rewards' (then next.success, success or "
               "'*.success') with one value per frame",
    "actions": "action, actions or any '*.action'",
    "gripper": "an action dimension named like 'gripper', '*.gripper_action', gripper.opening, "
               "'*.gripper_width' / '*.gripper_opening', or observation.state dimensions named 'gripper*' / "
               "'finger*'",
    "positions": "observation.state dimensions like eef_x, eef_y, eef_z (ee/eef/tcp/hand stems), a 3-wide "
                 "'*.ee_pos' / '*.eef_pos' feature, a 16-wide '*.eef_pose.*' (datagen_info) or gripper.pose",
    "signals": "features with a 'subtask_term_signals' or 'subtask_start_signals' segment, e.g. "
               "datagen_info.subtask_term_signals.grasp_1",
}


def resolve_inputs(root: Path, info: Mapping[str, Any], method: str, params: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """input name -> _Source (signals: name -> _Source) for what ``method`` reads; every missing input is
    reported at once, naming the dataset, the method and what was looked for."""
    feats = {k: f for k, f in info["features"].items() if f.get("dtype") != "video"}
    needed = [METHODS[m].input for m in (params["methods"] if method == "combined" else [method])]
    out: dict[str, Any] = {}
    missing = []
    for need in needed:
        if need == "positions":
            pose = _find_pose(feats)
            if pose:
                out["positions"], out["quats"] = pose
        else:
            found = {"rewards": _find_rewards, "actions": _find_actions, "gripper": _find_gripper,
                     "signals": _find_signals}[need](feats)
            if found:
                out[need] = found
        if need not in out:
            missing.append(f"{need} (looked for {_LOOKED_FOR[need]})")
    if missing:
        raise AnnotationError(f"{root}: method {method!r} needs inputs this dataset lacks: {'; '.join(missing)}. "
                              f"Its per-frame features: {sorted(feats)}")
    return out


def describe(sources: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ({n: s.label for n, s in v.items()} if isinstance(v, dict) else v.label)
            for k, v in sources.items() if v is not None}


def episode_inputs(sources: Mapping[str, Any], cols: Mapping[str, np.ndarray], rows: np.ndarray
                    ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, src in sources.items():
        if src is None:
            out[k] = None
        elif isinstance(src, dict):
            out[k] = {n: s.get(cols, rows) for n, s in src.items()}
        else:
            out[k] = src.get(cols, rows)
    return out


def features_read(sources: Mapping[str, Any]) -> set[str]:
    out = set()
    for src in sources.values():
        for s in (src.values() if isinstance(src, dict) else [src]):
            if s is not None:
                out.add(s.feature)
    return out
