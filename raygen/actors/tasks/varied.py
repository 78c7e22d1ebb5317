"""Pick-and-place with scene variation (:mod:`raygen.actors.tasks.scene`): the arm follows a carried
object on the moving platform and waits for the person proxy; simulator-agnostic, numpy only.

The arm's geometry for the person checks is the Panda's kinematic chain on the DH model (the same model
as the fallback IK): the base, every joint origin, the flange and the TCP, consecutive points joined by
capsules of ``person.arm_radius_m``. The person is a vertical capsule taller than the arm reaches, so the
distance between them is the distance in the table plane between the person's axis and those segments,
less both radii.

Waiting: the schedule is the usual one (9 segments of ``steps_per_segment`` frames, cosine easing between
joint waypoints) with holds inserted at waypoints, where the arm is at rest, so a wait adds no jerk. The
holds are found by a depth-first search, shortest first, in steps of ``wait_step_s``, up to ``max_wait_s``
in all: a hold is kept only when the arm resting there and the next segment stay ``clearance_m`` from the
person for the whole time, each frame checked against the targets of the last ``LAG_FRAMES`` frames too
(the arm trails its targets). With a carried object the arm may not wait between the start of the
approach and the grasp (the object keeps moving); it waits before the approach instead. A wait's frames
have the ``task.phase`` of the waypoint the arm rests at (0 at home before the first move, as in the
two-arm task), so the CLOSE_GRIPPER and OPEN_GRIPPER frames are still exactly the closing and the opening.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from raygen.actors.spec import EpisodeFailed, EpisodeInputError, EpisodeSpec
from raygen.actors.tasks.pick_place import (
    _DH,
    FLANGE_D,
    PHASES,
    Q_LOWER,
    Q_UPPER,
    TCP_D,
    PickPlaceParams,
    PickPlaceSim,
    Scene,
    _cartesian_plan,
    _dh,
    _schedule,
    _solve,
    execute,
    sample_scene,
    to_episode,
)
from raygen.actors.tasks.scene_plan import PersonPlan, SceneVariation, sample_variation
from raygen.datasets.episode import Episode

__all__ = ["LAG_FRAMES", "VariedSim", "arm_points", "follow", "person_gap", "plan_holds", "run_varied", "table_chain"]

LAG_FRAMES = 3
"""Each predicted frame is also checked with the joint targets of this many frames before it."""
_SEARCH_CAP = 20000
"""Holds tried at most per episode before the person is declared in the way."""
_CLOSE = PHASES.index("CLOSE_GRIPPER")  # segment index + 1 of the grasp
_OPEN = PHASES.index("OPEN_GRIPPER")


class VariedSim(PickPlaceSim, Protocol):
    """What a simulator adds for scene variation (PyBullet and Isaac Sim implement it)."""

    def vary(self, variation: SceneVariation) -> None:
        """Called before ``reset(scene)``, which then builds the variation's bodies too (a reset without a
        preceding ``vary`` builds the plain scene). From the reset on, ``step`` moves the platform and the
        person to where they are ``steps x 1/fps`` seconds later, and ``render`` draws with
        ``variation.lighting.at(t)``. ``variation.platform.t_start`` may change before the first step."""
        ...


def _dh_batch(a: float, d: float, alpha: float, theta: np.ndarray) -> np.ndarray:
    n = len(theta)
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    t = np.zeros((n, 4, 4))
    t[:, 0, 0], t[:, 0, 1], t[:, 0, 3] = ct, -st, a
    t[:, 1, 0], t[:, 1, 1], t[:, 1, 2], t[:, 1, 3] = st * ca, ct * ca, -sa, -d * sa
    t[:, 2, 0], t[:, 2, 1], t[:, 2, 2], t[:, 2, 3] = st * sa, ct * sa, ca, d * ca
    t[:, 3, 3] = 1.0
    return t


def _chain(q: np.ndarray) -> np.ndarray:
    """Frames [N, 9, 4, 4] after joints 1..7, the flange and the TCP for joints q [N, 7] (DH model)."""
    q = np.atleast_2d(np.asarray(q, dtype=np.float64))
    t = np.broadcast_to(np.eye(4), (len(q), 4, 4))
    out = []
    for j, (a, d, alpha) in enumerate(_DH):
        t = t @ _dh_batch(a, d, alpha, q[:, j])
        out.append(t)
    t = t @ _dh(0, FLANGE_D, 0, 0)
    out.append(t)
    out.append(t @ _dh(0, TCP_D, 0, -np.pi / 4))
    return np.stack(out, axis=1)


def arm_points(q: np.ndarray) -> np.ndarray:
    """[N, 10, 3]: the base, the joint origins, the flange and the TCP for joints q [N, 7]."""
    frames = _chain(q)
    return np.concatenate([np.zeros((len(frames), 1, 3)), frames[:, :, :3, 3]], axis=1)


def _chain_distance(pts: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """[N]: distance in the table plane from xy [N, 2] to the chain of points pts [N, P, 2]."""
    a, b = pts[:, :-1], pts[:, 1:]
    p = np.asarray(xy, dtype=np.float64)[:, None, :]
    ab = b - a
    den = (ab ** 2).sum(-1)
    t = np.clip(np.where(den > 1e-12, ((p - a) * ab).sum(-1) / np.where(den > 1e-12, den, 1.0), 0.0), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(axis=1)


def person_gap(q: np.ndarray, person_xy: np.ndarray, arm_radius: float, person_radius: float,
               base: np.ndarray | None = None) -> np.ndarray:
    """[N]: gap between the arm at joints q [N, 7] and the person at person_xy [N, 2] (< 0: they overlap);
    the arm stands at ``base`` [4,4] in the world (default: the origin)."""
    return _chain_distance(table_chain(q, base), person_xy) - arm_radius - person_radius


def table_chain(q: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """[N, P, 2]: :func:`arm_points` of joints q [N, 7] of the arm at ``base`` [4,4], in the table plane."""
    pts = arm_points(np.asarray(q, np.float64))
    if base is not None:
        pts = pts @ base[:3, :3].T + base[:3, 3]
    return pts[:, :, :2]


def follow(q: np.ndarray, offsets: np.ndarray, iters: int = 4) -> np.ndarray:
    """Joints [N, 7] that put the TCP of joints q [N, 7] ``offsets`` [N, 3] further (world axes), turned as it
    was: damped least squares on the DH model's geometric Jacobian, a few iterations, within the limits."""
    q = np.asarray(q, dtype=np.float64)
    start = _chain(q)[:, -1]
    want_p, want_r = start[:, :3, 3] + offsets, start[:, :3, :3]
    out = q.copy()
    for _ in range(iters):
        fr = _chain(out)
        tcp = fr[:, -1]
        err_p = want_p - tcp[:, :3, 3]
        err_r = 0.5 * sum(np.cross(tcp[:, :3, k], want_r[:, :3, k]) for k in range(3))
        z, o = fr[:, :7, :3, 2], fr[:, :7, :3, 3]
        jac = np.concatenate([np.cross(z, tcp[:, None, :3, 3] - o), z], axis=2).transpose(0, 2, 1)  # [N,6,7]
        err = np.concatenate([err_p, err_r], axis=1)
        jjt = jac @ jac.transpose(0, 2, 1) + 1e-6 * np.eye(6)
        out = np.clip(out + (jac.transpose(0, 2, 1) @ np.linalg.solve(jjt, err[..., None]))[..., 0], Q_LOWER, Q_UPPER)
    return out


def _gaps(pts: np.ndarray, first: int, t0: int, person: PersonPlan, arm_radius: float, fps: float) -> np.ndarray:
    """Predicted gap of the frames ``pts[first:]`` (arm points [m, P, 2] of consecutive frames; the first of
    them is frame t0), each frame also with the LAG_FRAMES frames before it (those in ``pts``)."""
    n = len(pts) - first
    xy = person.position((t0 + np.arange(n)) / fps)
    worst = np.full(n, np.inf)
    for k in range(LAG_FRAMES + 1):
        idx = first + np.arange(n) - k
        ok = idx >= 0
        worst = np.minimum(worst, np.where(ok, _chain_distance(pts[np.maximum(idx, 0)], xy), np.inf))
    return worst - arm_radius - person.radius


def plan_holds(blocks: list[np.ndarray], rests: list[np.ndarray], person: PersonPlan, *, arm_radius: float,
               clearance: float, fps: float, max_hold: int, step: int) -> list[int] | None:
    """Frames to hold before each block (the arm at ``rests[b]``, then the block's joint targets [n, 7]) so
    that every frame keeps ``clearance`` from the person, at most ``max_hold`` frames in all; None when
    there is no such schedule. The arm's points are computed once per block; what fails from a block at a
    frame with some budget left is remembered (less budget fails too)."""
    pts = [arm_points(b)[:, :, :2] for b in blocks]
    rest_pts = [arm_points(r[None])[:, :, :2] for r in rests]
    failed: dict[tuple[int, int], int] = {}
    tried = 0

    def go(b: int, t: int, used: int) -> list[int] | None:
        nonlocal tried
        if b == len(blocks):
            return []
        if failed.get((b, t), -1) >= max_hold - used:
            return None
        history = pts[b - 1][-LAG_FRAMES:] if b else np.zeros((0, pts[0].shape[1], 2))
        for d in range(0, max_hold - used + 1, step):
            tried += 1
            if tried > _SEARCH_CAP:
                return None
            held = np.repeat(rest_pts[b], min(d, LAG_FRAMES + step), axis=0)  # the last frames of the hold
            if d:
                seq = np.concatenate([history, held])
                if _gaps(seq, len(seq) - step, t + d - step, person, arm_radius, fps).min() < clearance:
                    break  # resting here meets the person: a longer hold cannot help
            seq = np.concatenate([history, held, pts[b]])
            if _gaps(seq, len(seq) - len(pts[b]), t + d, person, arm_radius, fps).min() >= clearance:
                rest = go(b + 1, t + d + len(pts[b]), used + d)
                if rest is not None:
                    return [d, *rest]
        failed[(b, t)] = max(failed.get((b, t), -1), max_hold - used)
        return None

    return go(0, 0, 0)


def _assemble(segments: np.ndarray, grips: np.ndarray, phases: np.ndarray, q_way: np.ndarray, grip: np.ndarray,
              holds: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Per-frame targets with ``holds[s]`` frames at waypoint s before segment s; and each segment's start."""
    q, g, ph, starts, t = [], [], [], [], 0
    for s in range(len(segments)):
        if holds[s]:
            q.append(np.repeat(q_way[s][None], holds[s], axis=0))
            g.append(np.full(holds[s], grip[s]))
            ph.append(np.full(holds[s], s))  # resting at waypoint s (0: home before the first move)
            t += holds[s]
        starts.append(t)
        q.append(segments[s])
        g.append(grips[s])
        ph.append(phases[s])
        t += len(segments[s])
    return np.concatenate(q), np.concatenate(g), np.concatenate(ph), starts


def run_varied(sim: PickPlaceSim, spec: EpisodeSpec, params: PickPlaceParams, *, render: bool = True,
               sample: Callable[[np.random.Generator], Scene] | None = None,
               waypoints: Callable[[Scene, PickPlaceParams], list[tuple[str, np.ndarray | None, float]]] | None = None,
               observe: Callable[[PickPlaceSim], PickPlaceSim] | None = None, task: str = "pick_place") -> Episode:
    """One pick-and-place episode with ``params.scene`` varied; the task's own draws are those of
    :func:`~raygen.actors.tasks.pick_place.run_pick_place` for the same spec. A task built on pick-and-place
    (soft objects) passes its own scene draw (``sample``, from the episode's generator), its waypoints
    (``waypoints``), what ``execute`` drives (``observe`` wraps the simulator) and its name."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.rng_seed))
    scene = sample(rng) if sample is not None else sample_scene(rng, params, sim.object_kinds)
    vp = params.variation
    steps, fps = params.steps_per_segment, params.fps
    if not hasattr(sim, "vary"):
        raise ValueError(f"task.scene: the {sim.name} simulator has no scene variation (PyBullet and Isaac Sim "
                         "have); remove task_params.scene or use backend bullet or isaac")
    duration = params.frames / fps + (vp.person.max_wait_s if vp.person.enabled else 0.0) + 2.0
    try:
        variation = sample_variation(spec.rng_seed, vp, scene, duration_s=duration, grasp_s=_CLOSE * steps / fps,
                                     place_box=(params.x_range, params.y_range, params.min_place_distance))
    except ValueError as exc:
        raise EpisodeInputError(f"spec {spec.episode_key}: {exc}") from None
    scene = variation.scene
    sim.set_rendering(render)
    sim.vary(variation)  # the next reset builds the variation's bodies too
    sim.reset(scene)
    plan = (waypoints or _cartesian_plan)(scene, params)
    platform = variation.platform
    carried = platform is not None and platform.carries_object
    if carried:  # the object stands on the slab until it is grasped
        for i in (1, 2, 3):
            phase, target, g = plan[i]
            plan[i] = (phase, target + np.array([0.0, 0.0, platform.size[2]]), g)
    q_way, fallbacks = _solve(sim, plan, rng, params)
    grip = np.array([g for _, _, g in plan])
    q_nom, g_nom, ph_nom = _schedule(q_way, grip, steps)
    n_seg = len(q_way) - 1
    segments = q_nom.reshape(n_seg, steps, 7).copy()
    grips, phases = g_nom.reshape(n_seg, steps), ph_nom.reshape(n_seg, steps)
    if carried:  # follow the object from the approach to the grasp, which happens at the pick spot
        chain = segments[:_CLOSE].reshape(-1, 7)
        frames = np.arange(len(chain))
        weight = np.ones(len(chain))
        weight[:steps] = (1 - np.cos(np.pi * np.arange(1, steps + 1) / steps)) / 2
        ahead = (frames - frames[-1]) / fps * platform.speed  # where the object is relative to the grasp, m
        offsets = np.zeros((len(chain), 3))
        offsets[:, :2] = (weight * ahead)[:, None] * platform.direction
        segments[:_CLOSE] = follow(chain, offsets).reshape(_CLOSE, steps, 7)
    holds = [0] * n_seg
    person = variation.person
    if person is not None:
        pp = vp.person
        starts = [s for s in range(n_seg) if not (carried and 0 < s < _CLOSE)]
        blocks = [segments[s:(starts[i + 1] if i + 1 < len(starts) else n_seg)].reshape(-1, 7)
                  for i, s in enumerate(starts)]
        rests = [q_way[s] for s in starts]
        step = max(1, round(pp.wait_step_s * fps))
        found = plan_holds(blocks, rests, person, arm_radius=pp.arm_radius_m, clearance=pp.clearance_m, fps=fps,
                           max_hold=int(pp.max_wait_s * fps), step=step)
        if found is None:
            raise EpisodeFailed(f"{EpisodeFailed.PREFIX}: the person proxy blocks the arm (no schedule keeps "
                                f"{pp.clearance_m} m from it with waits up to {pp.max_wait_s} s; person through "
                                f"{np.round(person.through, 2).tolist()} at {person.speed:.2f} m/s from "
                                f"t={person.t_start:.1f} s)")
        for s, d in zip(starts, found):
            holds[s] = d
        variation.waits = [(PHASES[s + 1], d / fps) for s, d in enumerate(holds) if d]
    q_tgt, g_tgt, phase, seg_start = _assemble(segments, grips, phases, q_way, grip, holds)
    close_end = seg_start[_CLOSE - 1] + steps - 1
    open_end = seg_start[_OPEN - 1] + steps - 1
    if carried:  # the object reaches the pick spot as the grasp frame ends
        platform.t_start = (close_end + 1) / fps - platform.ride / platform.speed
    driven = observe(sim) if observe is not None else sim
    rollout = execute(driven, scene, params, q_tgt, g_tgt, grasp_at=close_end, release_at=open_end, render=render)
    metrics: dict[str, Any] = {"task.ik_fallbacks": fallbacks, **variation.metrics()}
    if person is not None:
        times = np.arange(len(q_tgt)) / fps
        planned = _gaps(arm_points(q_tgt)[:, :, :2], 0, 0, person, vp.person.arm_radius_m, fps)
        measured = person_gap(rollout.state[:, :7].astype(np.float64), person.position(times),
                              vp.person.arm_radius_m, person.radius)
        metrics["task.person_planned_gap_m"] = float(planned.min())
        metrics["task.person_gap_m"] = float(measured.min())
        if measured.min() <= 0.0:
            rollout.success = False
    return to_episode(sim, spec, scene, params, rollout, q_tgt, g_tgt, phase, metrics=metrics,
                      provenance={"scene_variation": variation.to_dict()}, task=task)
