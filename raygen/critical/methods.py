"""Critical-state annotation methods (seed 002): which frames of one episode are easy to fail.

Each method is a pure function on one episode's arrays that returns ``int8 [T]`` 0/1 (1 = critical):

- ``reward_threshold``: frames whose reward reaches a threshold;
- ``action_variance``: frames whose local action variance is in the episode's top quantile;
- ``gripper_changes``: frames near a change of the gripper command (grasp, release);
- ``pose_changes``: frames of rapid end-effector motion (top quantile of linear or angular speed);
- ``subtask_signals``: frames near a 0 -> 1 transition of an Isaac Lab Mimic subtask signal;
- ``combined``: the union of some of the above (gripper_changes and pose_changes by default).

``METHODS`` names them (with the input each reads from a dataset); ``resolve_params`` checks a method's
parameters and completes them with every default, as an annotated dataset records them.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COMBINED_DEFAULT",
    "METHODS",
    "AnnotationError",
    "Method",
    "action_variance",
    "combined",
    "gripper_changes",
    "pose_changes",
    "resolve_params",
    "reward_threshold",
    "subtask_signals",
]

COMBINED_DEFAULT = ("gripper_changes", "pose_changes")
"""What ``combined`` unites unless told otherwise: the two methods every raygen dataset has inputs for."""


class AnnotationError(ValueError):
    """A method, its parameters, its inputs or a dataset path is unusable; the message says which and why."""


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

