"""Critical-state annotation (seed 002): mark the frames of a demonstration where it is easy to fail.

Each method is a pure function on one episode's arrays that returns ``int8 [T]`` 0/1 (1 = critical):

- ``reward_threshold``: frames whose reward reaches a threshold;
- ``action_variance``: frames whose local action variance is in the episode's top quantile;
- ``gripper_changes``: frames near a change of the gripper command (grasp, release);
- ``pose_changes``: frames of rapid end-effector motion (top quantile of linear or angular speed);
- ``subtask_signals``: frames near a 0 -> 1 transition of an Isaac Lab Mimic subtask signal;
- ``combined``: the union of some of the above (gripper_changes and pose_changes by default).

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
import inspect
import json
import logging
import math
import numbers
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
COMBINED_DEFAULT = ("gripper_changes", "pose_changes")
"""What ``combined`` unites unless told otherwise: the two methods every raygen dataset has inputs for."""


class AnnotationError(ValueError):
    """A method, its parameters, its inputs or a dataset path is unusable; the message says which and why."""


# ------------------------------------------------------------------------------------------ methods


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


_REAL = (_real, "a finite number")
_OPT_REAL = (lambda v: v is None or _real(v), "null or a finite number")
_NONNEG = (lambda v: _real(v) and v >= 0, "a number >= 0")
_QUANTILE = (lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)")
_MARGIN = (lambda v: _int(v) and v >= 0, "an integer >= 0 (frames)")
_WINDOW = (lambda v: _int(v) and v >= 2, "an integer >= 2 (frames)")
_BOOL = (lambda v: isinstance(v, bool | np.bool_), "true or false")
_CHECKS: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "reward_threshold": {"threshold": _REAL},
    "action_variance": {"window": _WINDOW, "quantile": _QUANTILE, "normalize": _BOOL},
    "gripper_changes": {"threshold": _OPT_REAL, "margin": _MARGIN, "min_range": _NONNEG},
    "pose_changes": {"speed_quantile": _QUANTILE, "min_speed": _NONNEG, "min_angular_speed": _NONNEG},
    "subtask_signals": {"margin": _MARGIN},
}


def _param_problems(method: str, params: Mapping[str, Any]) -> list[str]:
    return [f"{method}.{k}: must be {what}, got {params[k]!r}"
            for k, (ok, what) in _CHECKS[method].items() if k in params and not ok(params[k])]


def _validate(method: str, params: Mapping[str, Any]) -> None:
    problems = _param_problems(method, params)
    if problems:
        raise AnnotationError("; ".join(problems))


def _series(x: Any, what: str) -> np.ndarray:
    """[T] or [T,1] values as float64 [T]."""
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise AnnotationError(f"{what}: expected one value per frame ([T] or [T,1]), got shape {list(a.shape)}")
    return _finite(a.astype(np.float64), what)


def _matrix(x: Any, what: str) -> np.ndarray:
    """[T] or [T,D] values as float64 [T,D]."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise AnnotationError(f"{what}: expected [T] or [T,D] values, got shape {list(a.shape)}")
    return _finite(a.astype(np.float64), what)


def _finite(a: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        first = int(np.argwhere(~np.isfinite(a))[0][0])
        raise AnnotationError(f"{what}: non-finite values (NaN/Inf), first at frame {first}")
    return a


def _around(events: np.ndarray | list[int], t: int, margin: int) -> np.ndarray:
    """int8 [t]: 1 within ``margin`` frames of any event frame."""
    diff = np.zeros(t + 1, np.int64)
    for e in np.asarray(events, dtype=np.int64).reshape(-1):
        diff[max(0, e - margin)] += 1
        diff[min(t, e + margin + 1)] -= 1
    return (np.cumsum(diff[:t]) > 0).astype(np.int8)


def _top(score: np.ndarray, quantile: float, floor: float) -> np.ndarray:
    """int8: 1 where ``score`` is strictly above its ``quantile`` and above ``floor`` (ties at the cut and a
    constant score mark nothing)."""
    if not len(score):
        return np.zeros(0, np.int8)
    cut = float(np.quantile(score, quantile))
    return ((score > cut) & (score > floor)).astype(np.int8)


def reward_threshold(rewards: Any, threshold: float = 0.5) -> np.ndarray:
    """Frames whose reward is at least ``threshold``.

    rewards: [T] (or [T,1]) per-frame reward; a per-frame success flag works as a 0/1 reward.
    threshold: default 0.5, which picks the rewarded frames of the sparse 0/1 rewards robosuite, robomimic
        and LeRobot's ``next.reward`` carry, and the upper half of a dense reward scaled to [0, 1].
    """
    _validate("reward_threshold", {"threshold": threshold})
    return (_series(rewards, "rewards") >= threshold).astype(np.int8)


def action_variance(actions: Any, window: int = 5, quantile: float = 0.9, normalize: bool = True) -> np.ndarray:
    """Frames whose local action variance is in the episode's top ``1 - quantile``.

    The score of frame t is the variance of the actions over the ``window`` frames centred on t (moved
    inside the episode at its ends), summed over action dimensions; frames strictly above the score's ``quantile`` are
    marked (a constant action marks nothing).

    actions: [T,A] (or [T]) actions.
    window: frames per variance window, >= 2; default 5 (1/6 s at 30 fps: one decisive correction).
    quantile: default 0.9, the top 10% of the episode's frames.
    normalize: default True: each dimension is divided by its standard deviation over the episode first,
        so joints in radians and a gripper in metres weigh the same (constant dimensions are left out).
    """
    _validate("action_variance", {"window": window, "quantile": quantile, "normalize": normalize})
    a = _matrix(actions, "actions")
    t = len(a)
    x = a - a.mean(axis=0) if t else a
    if normalize and t:
        sd = x.std(axis=0)
        x = x[:, sd > 0] / sd[sd > 0]
    if t == 0 or x.shape[1] == 0:
        return np.zeros(t, np.int8)
    w = min(window, t)
    var = np.lib.stride_tricks.sliding_window_view(x, w, axis=0).var(axis=-1).sum(axis=1)  # [t - w + 1]
    score = var[np.clip(np.arange(t) - w // 2, 0, t - w)]  # exact 0 where the actions hold still
    return _top(score, quantile, 0.0)


def gripper_changes(gripper: Any, threshold: float | None = None, margin: int = 5, min_range: float = 1e-3
                    ) -> np.ndarray:
    """Frames within ``margin`` of a change of gripper command (a grasp or a release).

    The signal is split into two states at ``threshold``; a change is the first frame of the new state, and
    frames change - margin .. change + margin are marked.

    gripper: [T] gripper command (e.g. 0.04 open / 0.0 closed, or -1 / 1) or measured opening.
    threshold: the value between open and closed; default None: halfway between the episode's smallest and
        largest value, which fits any binary command and an opening that travels its full range.
    margin: default 5 frames either side (1/6 s at 30 fps: the approach just before closing and the lift
        or retreat just after).
    min_range: with threshold None, an episode whose signal spans less than this has no change (noise on a
        gripper that never moves); default 1e-3 (1 mm of opening; any binary command spans far more).
    """
    _validate("gripper_changes", {"threshold": threshold, "margin": margin, "min_range": min_range})
    g = _series(gripper, "gripper")
    t = len(g)
    if t < 2:
        return np.zeros(t, np.int8)
    if threshold is None:
        lo, hi = float(g.min()), float(g.max())
        if hi - lo < min_range:
            return np.zeros(t, np.int8)
        threshold = (lo + hi) / 2
    side = g >= threshold
    return _around(np.flatnonzero(side[1:] != side[:-1]) + 1, t, margin)


def pose_changes(positions: Any, quats: Any = None, speed_quantile: float = 0.9, min_speed: float = 1e-4,
                 min_angular_speed: float = 1e-3) -> np.ndarray:
    """Frames of rapid end-effector motion: linear speed, or angular speed when ``quats`` are given, strictly
    above the episode's ``speed_quantile`` and above the floor.

    Speeds are per frame: the central difference of the positions, and the mean rotation angle to the
    neighbouring frames (quaternions in any component order, either sign).

    positions: [T,3] end-effector positions (metres in raygen and Isaac Lab).
    quats: [T,4] end-effector orientations, or None for linear speed only.
    speed_quantile: default 0.9: the fastest 10% of the episode's frames.
    min_speed: default 1e-4 units per frame (0.1 mm, 3 mm/s at 30 fps): a hand that only jitters is not
        moving rapidly, whatever its quantile.
    min_angular_speed: default 1e-3 rad per frame (0.03 rad/s at 30 fps), the same floor for rotation.
    """
    _validate("pose_changes", {"speed_quantile": speed_quantile, "min_speed": min_speed,
                               "min_angular_speed": min_angular_speed})
    p = _matrix(positions, "positions")
    t = len(p)
    if t < 2:
        return np.zeros(t, np.int8)
    out = _top(np.linalg.norm(np.gradient(p, axis=0), axis=1), speed_quantile, min_speed)
    if quats is not None:
        q = _matrix(quats, "quats")
        if q.shape != (t, 4):
            raise AnnotationError(f"quats: expected [{t},4] beside positions [{t},{p.shape[1]}], got {list(q.shape)}")
        norm = np.linalg.norm(q, axis=1)
        if np.any(norm < 1e-9):
            raise AnnotationError(f"quats: zero quaternion at frame {int(np.argmax(norm < 1e-9))}")
        q = q / norm[:, None]
        step = 2 * np.arccos(np.clip(np.abs(np.einsum("ij,ij->i", q[1:], q[:-1])), 0.0, 1.0))
        w = np.empty(t)
        w[0], w[-1] = step[0], step[-1]
        w[1:-1] = (step[:-1] + step[1:]) / 2
        out |= _top(w, speed_quantile, min_angular_speed)
    return out


def subtask_signals(signals: Mapping[str, Any], margin: int = 5) -> np.ndarray:
    """Frames within ``margin`` of a 0 -> 1 transition of any subtask signal (Isaac Lab Mimic's
    ``subtask_term_signals`` / ``subtask_start_signals``: a subtask ends where its term signal first rises).

    signals: name -> [T] signal (bool or 0/1; above 0.5 counts as 1). A signal already 1 at frame 0 has no
        transition there.
    margin: default 5 frames either side of each transition.
    """
    _validate("subtask_signals", {"margin": margin})
    if not signals:
        raise AnnotationError("subtask_signals: no signals given (expected name -> [T] array)")
    series = {name: _series(s, f"signals[{name!r}]") > 0.5 for name, s in signals.items()}
    lengths = {name: len(s) for name, s in series.items()}
    if len(set(lengths.values())) > 1:
        raise AnnotationError(f"subtask_signals: the signals differ in length: {lengths}")
    t = next(iter(lengths.values()))
    events = [np.flatnonzero(~s[:-1] & s[1:]) + 1 for s in series.values()]
    return _around(np.concatenate(events) if events else [], t, margin)


_INPUTS = {"reward_threshold": "rewards", "action_variance": "actions", "gripper_changes": "gripper",
           "pose_changes": "positions", "subtask_signals": "signals"}


def _combined_parts(inputs: Mapping[str, Any], methods: tuple[str, ...] | list[str],
                    params: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    parts = {}
    for m in methods:
        x = inputs.get(_INPUTS[m])
        if x is None:
            raise AnnotationError(f"combined: method {m!r} needs {_INPUTS[m]!r}, which was not given")
        extra = {"quats": inputs.get("quats")} if m == "pose_changes" else {}
        parts[m] = METHODS[m].fn(x, **extra, **params.get(m, {}))
    lengths = {m: len(v) for m, v in parts.items()}
    if len(set(lengths.values())) > 1:
        raise AnnotationError(f"combined: the methods' inputs differ in length: {lengths}")
    return parts


def combined(*, rewards: Any = None, actions: Any = None, gripper: Any = None, positions: Any = None,
             quats: Any = None, signals: Mapping[str, Any] | None = None,
             methods: tuple[str, ...] | list[str] = COMBINED_DEFAULT,
             params: Mapping[str, Mapping[str, Any]] | None = None) -> np.ndarray:
    """The union of several methods, each with its parameters (its defaults for what ``params`` leaves out).

    methods: default ("gripper_changes", "pose_changes"): grasps, releases and fast moves, for which every
        raygen dataset has inputs. reward_threshold and subtask_signals are off by default (most datasets
        have no per-frame reward or Mimic annotation: add them when yours has), and so is action_variance
        (on joint-position actions it mostly finds again what pose_changes finds).
    params: method -> its parameters, e.g. {"gripper_changes": {"margin": 3}}.
    The inputs are those of the methods (rewards, actions, gripper, positions with optional quats,
    signals); each method in ``methods`` needs its own.
    """
    resolved = resolve_params("combined", {"methods": list(methods), **(params or {})})
    inputs = {"rewards": rewards, "actions": actions, "gripper": gripper, "positions": positions,
              "quats": quats, "signals": signals}
    parts = _combined_parts(inputs, resolved["methods"], resolved)
    return np.bitwise_or.reduce(list(parts.values())).astype(np.int8)


@dataclass(frozen=True)
class Method:
    """One annotation method: its function and the input it reads from a dataset."""

    name: str
    fn: Callable[..., np.ndarray]
    input: str | None
    """rewards | actions | gripper | positions (quats too when found) | signals; None for combined."""

    def defaults(self) -> dict[str, Any]:
        """Every parameter with its default (combined: the default methods, each with its defaults)."""
        if self.name == "combined":
            return {"methods": list(COMBINED_DEFAULT), **{m: METHODS[m].defaults() for m in COMBINED_DEFAULT}}
        sig = inspect.signature(self.fn).parameters.values()
        return {p.name: p.default for p in sig if p.default is not inspect.Parameter.empty and p.name != "quats"}


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("reward_threshold", reward_threshold, "rewards"),
    Method("action_variance", action_variance, "actions"),
    Method("gripper_changes", gripper_changes, "gripper"),
    Method("pose_changes", pose_changes, "positions"),
    Method("subtask_signals", subtask_signals, "signals"),
    Method("combined", combined, None),
)}


def _plain(v: Any) -> Any:
    """numpy scalars as Python values: parameters are recorded as JSON."""
    return v.item() if isinstance(v, np.generic) else v


def _method(name: Any) -> Method:
    if name not in METHODS:
        raise AnnotationError(f"method: {name!r} is not an annotation method; known: {', '.join(METHODS)}")
    return METHODS[name]


def resolve_params(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``params`` checked and completed with every default, as recorded in the dataset.

    For combined: {"methods": [...], "<method>": {its parameters}, ...}, one entry per method used.
    Every problem is reported in one AnnotationError.
    """
    m = _method(method)
    params = dict(params or {})
    if m.name != "combined":
        defaults = m.defaults()
        unknown = sorted(set(params) - set(defaults))
        problems = [f"{m.name}: unknown parameter(s) {unknown}; known: {sorted(defaults)}"] if unknown else []
        out = {**defaults, **{k: _plain(v) for k, v in params.items() if k in defaults}}
        problems += _param_problems(m.name, out)
        if problems:
            raise AnnotationError("; ".join(problems))
        return out
    methods = params.pop("methods", list(COMBINED_DEFAULT))
    problems = []
    if isinstance(methods, str) or not isinstance(methods, list | tuple) or not methods:
        raise AnnotationError(f"combined.methods: must be a non-empty list of methods, got {methods!r}; "
                              f"known: {', '.join(_INPUTS)}")
    bad = [x for x in methods if x not in _INPUTS]
    if bad:
        problems.append(f"combined.methods: {bad} are not methods it can unite; known: {', '.join(_INPUTS)}")
    if len(set(map(str, methods))) != len(methods):
        problems.append(f"combined.methods: {list(methods)} names a method twice")
    out: dict[str, Any] = {"methods": [str(x) for x in methods]}
    for key, sub in params.items():
        if key not in _INPUTS:
            problems.append(f"combined: unknown parameter {key!r}; known: methods and one of {', '.join(_INPUTS)}")
        elif key not in methods:
            problems.append(f"combined: parameters for {key!r}, which is not in methods {list(methods)}; add it")
        elif not isinstance(sub, Mapping):
            problems.append(f"combined.{key}: must be a mapping of its parameters, got {sub!r}")
    for name in methods:
        if name in _INPUTS and name not in bad:
            try:
                sub = params.get(name)
                out[name] = resolve_params(name, sub if isinstance(sub, Mapping) else None)
            except AnnotationError as exc:
                problems.append(f"combined.{exc}")
    if problems:
        raise AnnotationError("; ".join(problems))
    return out


def _apply(method: str, params: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each method's marks for one episode (one entry unless combined)."""
    if method == "combined":
        return _combined_parts(inputs, params["methods"], params)
    extra = {"quats": inputs.get("quats")} if method == "pose_changes" else {}
    return {method: METHODS[method].fn(inputs[METHODS[method].input], **extra, **params)}


# ------------------------------------------------------------------------------------------ inputs

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


def _resolve_inputs(root: Path, info: Mapping[str, Any], method: str, params: Mapping[str, Any]
                    ) -> dict[str, Any]:
    """input name -> _Source (signals: name -> _Source) for what ``method`` reads; every missing input is
    reported at once, naming the dataset, the method and what was looked for."""
    feats = {k: f for k, f in info["features"].items() if f.get("dtype") != "video"}
    needed = [_INPUTS[m] for m in params["methods"]] if method == "combined" else [METHODS[method].input]
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


def _describe(sources: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ({n: s.label for n, s in v.items()} if isinstance(v, dict) else v.label)
            for k, v in sources.items() if v is not None}


def _episode_inputs(sources: Mapping[str, Any], cols: Mapping[str, np.ndarray], rows: np.ndarray
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


def _features_read(sources: Mapping[str, Any]) -> set[str]:
    out = set()
    for src in sources.values():
        for s in (src.values() if isinstance(src, dict) else [src]):
            if s is not None:
                out.add(s.feature)
    return out


# ------------------------------------------------------------------------------------------ datasets


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
    sources = _resolve_inputs(root, info, method, resolved)
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
            annotation = {"method": method, "params": resolved, "inputs": _describe(sources),
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
        self.read = sorted(_features_read(sources) | {"episode_index", "frame_index"})
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
                parts = _apply(self.method, self.params, _episode_inputs(self.sources, cols, rows))
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
