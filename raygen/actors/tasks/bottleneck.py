"""Bottleneck episodes: restore a demo's critical state, perturb the hand around it, recover, finish the demo.

A spec made by the bottleneck source (``raygen.critical.sampler``) carries, under ``params["bottleneck"]``,
everything the simulator needs, so a worker never reads the source dataset:

- ``demo``, ``frame``: the source episode's key and the critical frame t_c (provenance only);
- ``scene``: the source scene (``object_xy``, ``place_xy``, ``object_size``, ``object_kind``, ``colour_name``);
- ``q`` [7], ``fingers`` [2], ``object_pose`` [7] (xyz + wxyz), ``grasped``: the state at t_c (the object
  held); ``after_grasp``: the demo grasped the object before t_c (held or already placed), so the grasp
  counts towards success although no grasp happens in this episode;
- ``actions`` [T - t_c][8] and ``phases`` [T - t_c]: the demo's joint + gripper targets and phase from t_c on;
- ``perturbation``: ``r`` (m), ``theta`` (rad from vertical), ``phi`` (rad, azimuth), ``roll``, ``pitch``,
  ``yaw`` (rad); seed 002's spherical sampling, drawn by the driver so that a spec is its own record;
- ``recovery_steps``: frames of the return from the perturbed pose to the critical state, at least (more when
  a joint would otherwise move faster than ``RECOVERY_JOINT_SPEED`` at the peak; the frames used are recorded);
- ``variation`` (when the demo had scene variation, :func:`~raygen.actors.tasks.scene_plan.variation_at`): the
  demo's light at t_c (held for the episode) and its distractors where they were drawn are rebuilt; its
  platform and person are not (they move; named in ``dropped`` and the metric ``bottleneck.scene_dropped``).

The episode starts at the perturbed pose: the TCP moved by (r sin(theta) cos(phi), r sin(theta) sin(phi),
r cos(theta)) in world axes and turned by roll, pitch, yaw about world x, y, z (applied in that order) about
the TCP point. When the simulator finds no joints for that pose within the joint limits, the whole
perturbation is scaled by 0.75 and tried again (up to 6 times; the scale used is recorded). The arm then
eases back to the critical joints over the recovery frames (task.phase -1), holding the fingers where they
were at t_c, and follows the demo's remaining targets, attaching the object where the demo closed the
gripper. A held object moves with the hand. Imports numpy and the standard library only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from raygen.actors.spec import EpisodeFailed, EpisodeSpec
from raygen.actors.tasks.pick_place import (
    COLOURS,
    PHASES,
    Q_LOWER,
    Q_UPPER,
    PickPlaceParams,
    PickPlaceSim,
    Rollout,
    Scene,
    execute,
    to_episode,
)
from raygen.actors.tasks.scene_plan import restored_variation
from raygen.datasets.episode import Episode

__all__ = ["RECOVERY_PHASE", "RestorableSim", "perturbation_transform", "run_bottleneck"]

RECOVERY_PHASE = -1
"""task.phase of the recovery frames (the demo's phases are 1..9)."""
SHRINK, TRIES = 0.75, 6
RECOVERY_JOINT_SPEED = 1.0
"""rad/s: the recovery lasts at least long enough that no joint's peak speed exceeds this (about half the
Franka's limits), so a large perturbation is not undone with a jerk."""


class RestorableSim(PickPlaceSim, Protocol):
    """What a simulator adds for bottleneck episodes (PyBullet and Isaac Sim implement it); one whose
    ``restorable`` is False (soft objects, two arms) inherits these methods but cannot restore its state."""

    restorable: bool

    def restore(self, q: np.ndarray, fingers: np.ndarray, object_pose: np.ndarray, grasped: bool) -> None: ...
    def teleport(self, q: np.ndarray) -> None: ...
    def perturbed_joints(self, q: np.ndarray, offset: np.ndarray, rotation: np.ndarray) -> np.ndarray | None: ...


def _rot(axis: int, a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def perturbation_transform(p: dict[str, float], scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(offset [3] in world axes, rotation [3,3] in world axes) of a perturbation, scaled by ``scale``."""
    r, theta, phi = scale * float(p["r"]), float(p["theta"]), float(p["phi"])
    offset = np.array([r * np.sin(theta) * np.cos(phi), r * np.sin(theta) * np.sin(phi), r * np.cos(theta)])
    rotation = _rot(2, scale * float(p["yaw"])) @ _rot(1, scale * float(p["pitch"])) @ _rot(0, scale * float(p["roll"]))
    return offset, rotation


def _scene(d: dict[str, Any], where: str) -> Scene:
    try:
        colour = str(d["colour_name"])
        return Scene(tuple(float(v) for v in d["object_xy"]), tuple(float(v) for v in d["place_xy"]),
                     float(d["object_size"]), str(d["object_kind"]), colour, COLOURS[colour])
    except KeyError as exc:
        raise ValueError(f"{where}.scene: missing or unknown {exc} (scene keys: object_xy, place_xy, object_size, "
                         f"object_kind, colour_name; colours: {', '.join(COLOURS)})") from None


def _event_frame(phases: np.ndarray, name: str, offset: int) -> int | None:
    """The last frame of phase ``name`` in the remaining demo, shifted by ``offset``; None when it is over."""
    hits = np.flatnonzero(phases == PHASES.index(name))
    return int(hits[-1]) + offset if len(hits) else None


def run_bottleneck(sim: RestorableSim, spec: EpisodeSpec, params: PickPlaceParams, *, render: bool = True
                   ) -> Episode:
    """One bottleneck episode (see the module docstring); the same spec always gives the same episode."""
    where = f"spec {spec.episode_key} params.bottleneck"
    if not getattr(sim, "restorable", True):
        raise ValueError(f"{where}: the {type(sim).__name__} simulator cannot restore a rigid single-arm state "
                         "(bottleneck episodes are pick_place only)")
    b = spec.params.get("bottleneck")
    if not isinstance(b, dict):
        raise ValueError(f"{where}: missing (a bottleneck spec comes from source.bottleneck)")
    def field(name: str, convert: Any, shape: tuple[int, ...] | None = None) -> Any:
        try:
            value = convert(b[name])
            return value.reshape(shape) if shape is not None else value
        except KeyError:
            raise ValueError(f"{where}.{name}: missing") from None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}.{name}: {exc} (got {str(b[name])[:80]})") from None

    q_c = field("q", lambda v: np.asarray(v, np.float64), (7,))
    fingers = field("fingers", lambda v: np.asarray(v, np.float64), (2,))
    obj_pose = field("object_pose", lambda v: np.asarray(v, np.float64), (7,))
    actions = field("actions", lambda v: np.asarray(v, np.float64), (-1, 8))
    phases = field("phases", lambda v: np.asarray(v, np.int64), (-1,))
    pert, steps, grasped = field("perturbation", dict), field("recovery_steps", int), field("grasped", bool)
    after_grasp = bool(b.get("after_grasp", grasped))
    missing = sorted({"r", "theta", "phi", "roll", "pitch", "yaw"} - set(pert))
    if missing:
        raise ValueError(f"{where}.perturbation: missing {missing}")
    if len(phases) != len(actions) or not len(actions):
        raise ValueError(f"{where}: {len(actions)} actions but {len(phases)} phases (need the same, > 0)")
    if steps < 2:
        raise ValueError(f"{where}.recovery_steps: must be >= 2, got {steps}")
    scene = _scene(b.get("scene") or {}, where)
    params = replace(params, scene={})  # the run's own scene section is not drawn: the demo's scene is restored
    kept = b.get("variation") or {}
    variation = restored_variation(kept, scene)

    sim.set_rendering(render)  # before the reset: a simulator may warm up its renderer there
    if variation is not None:
        if not hasattr(sim, "vary"):
            raise ValueError(f"{where}.variation: the {sim.name} simulator has no scene variation")
        sim.vary(variation)  # the demo's light at t_c and its distractors, built by the reset
    sim.reset(scene)
    sim.restore(q_c, fingers, obj_pose, grasped)
    q_p, scale = None, 1.0
    for _ in range(TRIES):
        offset, rotation = perturbation_transform(pert, scale)
        q_p = sim.perturbed_joints(q_c, offset, rotation)
        if q_p is not None and bool(np.all((q_p >= Q_LOWER) & (q_p <= Q_UPPER))):
            break
        q_p = None  # unreachable, or only beyond a joint limit
        scale *= SHRINK
    if q_p is None:
        raise EpisodeFailed(f"{EpisodeFailed.PREFIX}: no joints reach the perturbed pose within the joint limits; "
                            f"around {b.get('demo')} frame {b.get('frame')}, even scaled to {scale / SHRINK:.2f}")
    sim.teleport(q_p)
    # cosine easing peaks at pi/2 x the mean speed: stretch the recovery so that stays under the limit
    steps = max(steps, int(np.ceil(np.pi / 2 * np.max(np.abs(q_c - q_p)) / RECOVERY_JOINT_SPEED * params.fps)))
    alpha = (1 - np.cos(np.pi * np.arange(1, steps + 1) / steps)) / 2
    q_rec = q_p + alpha[:, None] * (q_c - q_p)
    q_tgt = np.concatenate([q_rec, actions[:, :7]])
    # the fingers stay where they were at t_c during the recovery (the demo's command there would close them on
    # nothing, or open them on the held object, away from the critical state), then the demo's commands resume
    g_tgt = np.concatenate([np.full(steps, float(fingers.max())), actions[:, 7]])
    phase = np.concatenate([np.full(steps, RECOVERY_PHASE), phases])
    rollout: Rollout = execute(sim, scene, params, q_tgt, g_tgt, grasp_at=_event_frame(phases, "CLOSE_GRIPPER", steps),
                               release_at=_event_frame(phases, "OPEN_GRIPPER", steps), attached=grasped, render=render)
    if after_grasp and not rollout.grasped:  # placed before t_c: success is the place, the home and the rest
        rollout = replace(rollout, grasped=True, success=rollout.place_err <= params.success_radius
                          and rollout.at_home and rollout.resting)
    light = {k: v for k, v in b.items() if k not in ("actions", "phases")}  # the arrays stay in the spec
    restored: dict[str, Any] = {}
    scene_record: dict[str, Any] = {}
    if variation is not None:
        restored = {**variation.metrics(), "bottleneck.scene_restored": True}
        scene_record = {"scene_variation": {**variation.to_dict(), "restored_from_demo": True,
                                            "dropped": list(kept.get("dropped", []))}}
    if kept.get("dropped"):
        restored["bottleneck.scene_dropped"] = ",".join(kept["dropped"])
    return to_episode(
        sim, spec, scene, params, rollout, q_tgt, g_tgt, phase, task="pick_place-bottleneck",
        provenance={"params": {**spec.params, "bottleneck": light},
                    "bottleneck": {"demo": b.get("demo"), "frame": b.get("frame"), "perturbation": pert,
                                   "scale": scale, "recovery_steps": steps, "grasped": grasped,
                                   "after_grasp": after_grasp},
                    **scene_record},
        metrics={**restored, **({"task.grasp_distance_m": None} if after_grasp and not grasped else {}),
                 "bottleneck.frame": int(b.get("frame", -1)), "bottleneck.recovery_steps": steps,
                 "bottleneck.scale": scale,
                 "bottleneck.r_m": scale * float(pert["r"]), "bottleneck.grasped": grasped,
                 "bottleneck.tcp_start_x": float(rollout.state[0, 16]),
                 "bottleneck.tcp_start_y": float(rollout.state[0, 17]),
                 "bottleneck.tcp_start_z": float(rollout.state[0, 18])})
