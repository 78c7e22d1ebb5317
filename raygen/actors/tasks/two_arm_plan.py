"""The two-arm task's schedule and body model: the Panda's links, hand, fingers and a held object as
capsules (:data:`LINK_CAPSULES`, :data:`HAND_CAPSULES`) placed by forward kinematics from joint targets, the
distances between two arms' capsules, and the frame-by-frame :class:`Schedule` (:func:`schedule_two_arms`,
:func:`plan_schedule`) that keeps both arms apart and still lets both finish. :mod:`raygen.actors.tasks.two_arms`
runs the episode and re-exports the public names. Imports numpy and the standard library only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from raygen.actors.spec import EpisodeFailed
from raygen.actors.tasks.pick_place import _DH, FLANGE_D, TCP_D, _dh
from raygen.actors.tasks.varied import _chain_distance

if TYPE_CHECKING:
    from raygen.actors.tasks.scene import PersonParams
    from raygen.actors.tasks.scene_plan import PersonPlan
    from raygen.actors.tasks.two_arms import TwoArmParams

__all__ = [
    "CAPSULE_RADII",
    "HAND_CAPSULES",
    "LINK_CAPSULES",
    "PersonClearance",
    "person_clearance",
    "Schedule",
    "plan_schedule",
    "schedule_two_arms",
]

LINK_CAPSULES = ((1, 3, 0.075), (3, 4, 0.075), (4, 5, 0.08), (5, 7, 0.075), (7, 8, 0.06))
"""The Panda's links from the shoulder to the flange as capsules (from frame, to frame, radius) between
the origins of :func:`_panda_frames` (1: shoulder, 3 and 4: elbow, 5: wrist, 7: joint 7, 8: flange). The
base and the first link are left out: the bases stand apart."""
HAND_CAPSULES = (
    ((0.0, -0.065, -0.063), (0.0, 0.065, -0.063), 0.045),  # the hand, 21 cm along y
    ((0.0, -0.05, -0.02), (0.0, 0.05, -0.02), 0.035),  # the fingers, open
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.035),  # between the fingertips: a held object
)
"""The Franka hand, fingers and a held object as capsules (end, end, radius) in the TCP frame (z along the
fingers, y their closing axis). Checked against PyBullet's collision shapes of two Pandas 1 m apart in 400
random poses: no contact where these capsules are more than 2 cm apart."""


# ----------------------------------------------------------------------------- the schedule


@dataclass
class Schedule:
    """Which target of each arm's own schedule each frame applies (index 0 = home before the first move,
    k = the k-th eased target)."""

    progress: np.ndarray
    """[T,2] int: per frame, the target index of arm 0 and of arm 1."""
    waiting: np.ndarray
    """[T,2] bool: the arm holds its target although it has not finished."""
    planned_separation: np.ndarray
    """[T] the predicted TCP distance of the targets each frame applies."""
    planned_gap: np.ndarray | None = None
    """[T] the predicted least gap between the arms' bodies (LINK_CAPSULES, HAND_CAPSULES)."""
    person_holds: tuple[int, int] = (0, 0)
    """Frames each arm held for the person proxy (not for the other arm)."""


def _panda_frames(q: np.ndarray) -> list[np.ndarray]:
    """The Panda's frames in its base frame: [0] the base, [1..7] after each joint, [8] the flange, [9] the
    TCP (the same chain as :func:`pick_place.panda_fk`)."""
    t, out = np.eye(4), [np.eye(4)]
    for (a, d, alpha), theta in zip(_DH, q):
        t = t @ _dh(a, d, alpha, theta)
        out.append(t)
    out.append(t := t @ _dh(0, FLANGE_D, 0, 0))
    out.append(t @ _dh(0, TCP_D, 0, -np.pi / 4))
    return out


CAPSULE_RADII = np.array([r for *_, r in LINK_CAPSULES] + [r for *_, r in HAND_CAPSULES])


def _body_points(q: np.ndarray, base: np.ndarray) -> np.ndarray:
    """[K,1+2C,3] world positions, for joint targets [K,7], of the TCP and then of both ends of each body
    capsule (LINK_CAPSULES, then HAND_CAPSULES; radii CAPSULE_RADII)."""
    hand = np.array([end for p, q_, _ in HAND_CAPSULES for end in (p, q_)])
    out = []
    for qk in q:
        f = [base @ m for m in _panda_frames(qk)]
        links = [f[k][:3, 3] for i, j, _ in LINK_CAPSULES for k in (i, j)]
        out.append(np.concatenate([f[9][None, :3, 3], links, hand @ f[9][:3, :3].T + f[9][:3, 3]]))
    return np.asarray(out)


def _segment_distance(p1: np.ndarray, q1: np.ndarray, p2: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Distance between segments p1-q1 and p2-q2 (broadcast arrays [...,3]), closest points as in Ericson,
    Real-Time Collision Detection 5.1.9; a segment may be a point."""
    eps = 1e-12
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e = (d1 * d1).sum(-1), (d2 * d2).sum(-1)
    b, c, f = (d1 * d2).sum(-1), (d1 * r).sum(-1), (d2 * r).sum(-1)
    denom = a * e - b * b
    s = np.where(denom > eps, np.clip((b * f - c * e) / np.maximum(denom, eps), 0.0, 1.0), 0.0)
    t = np.where(e > eps, (b * s + f) / np.maximum(e, eps), 0.0)
    s_lo = np.where(a > eps, np.clip(-c / np.maximum(a, eps), 0.0, 1.0), 0.0)
    s_hi = np.where(a > eps, np.clip((b - c) / np.maximum(a, eps), 0.0, 1.0), 0.0)
    s = np.where(e > eps, np.where(t < 0.0, s_lo, np.where(t > 1.0, s_hi, s)), s_lo)  # a point: s_lo
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(p1 + d1 * s[..., None] - (p2 + d2 * t[..., None]), axis=-1)


def _trailing_min(d: np.ndarray, lag: int) -> np.ndarray:
    """d[a, b] -> min over d[a-lag..a, b-lag..b] (indices clipped at 0)."""
    out = d.copy()
    for _ in range(lag):
        out[1:] = np.minimum(out[1:], out[:-1])
    for _ in range(lag):
        out[:, 1:] = np.minimum(out[:, 1:], out[:, :-1])
    return out


def _can_finish(free: np.ndarray, stops0: np.ndarray, stops1: np.ndarray) -> np.ndarray:
    """can[a, b]: from targets (a, b) both arms reach their last targets through free cells only, each frame
    advancing both arms by one target, or one of them while the other holds at one of its stops."""
    k0, k1 = free.shape[0] - 1, free.shape[1] - 1
    can = np.zeros_like(free)
    below = [False] * (k1 + 1)  # can[min(a + 1, k0)]
    for a in range(k0, -1, -1):
        row, f, hold0 = [False] * (k1 + 1), free[a].tolist(), bool(stops0[a])
        if a == k0:
            below = row  # arm 0 has arrived: it stays
        for b in range(k1, -1, -1):
            nb = min(b + 1, k1)
            row[b] = f[b] and ((a == k0 and b == k1) or below[nb] or (bool(stops1[b]) and below[b])
                               or (hold0 and b < k1 and row[nb]))
        can[a] = row
        below = row
    return can


def schedule_two_arms(free: np.ndarray, stops0: np.ndarray | None = None, stops1: np.ndarray | None = None,
                      person: PersonClearance | None = None) -> Schedule:
    """A frame-by-frame schedule of two arms along their own targets (index 0 = home) through the cells
    ``free`` [K0+1,K1+1] (True where arm 0 at target a and arm 1 at target b are far enough apart). An arm
    may hold only at its ``stops`` ([K+1] bool; default: anywhere), the waypoints where its eased motion is
    at rest, so a wait never stops it mid-move. Each frame both arms advance one target when that stays
    free and still lets both finish; otherwise arm 1 waits while arm 0 advances; only when that too leads
    nowhere does arm 0 wait for arm 1. Both end on their last target. Raises :class:`EpisodeFailed` when no
    order of moves stays free (``planned_separation`` is left empty: the caller fills it). With ``person``,
    both arms also keep clear of the person proxy (:func:`_schedule_around`)."""
    k0, k1 = free.shape[0] - 1, free.shape[1] - 1
    stops0 = np.ones(k0 + 1, bool) if stops0 is None else np.asarray(stops0, bool)
    stops1 = np.ones(k1 + 1, bool) if stops1 is None else np.asarray(stops1, bool)
    can = _can_finish(free, stops0, stops1)
    if not can[0, 0]:
        raise EpisodeFailed(f"{EpisodeFailed.PREFIX}: two arms: no order of the arms' moves keeps their grippers "
                            "apart")
    if person is not None:
        return _schedule_around(can, stops0, stops1, person)
    a = b = 0
    prog, waiting = [], []
    while a < k0 or b < k1:
        na, nb = min(a + 1, k0), min(b + 1, k1)
        if not can[na, nb]:  # both cannot advance: arm 1 waits at a stop, else arm 0 does
            na, nb = (na, b) if (stops1[b] or b == k1) and can[na, b] else (a, nb)
        assert can[na, nb] and (na, nb) != (a, b), "can[a, b] holds, so one of the moves does"
        waiting.append((na == a and a < k0, nb == b and b < k1))
        a, b = na, nb
        prog.append((a, b))
    return Schedule(progress=np.asarray(prog, np.int64).reshape(-1, 2),
                    waiting=np.asarray(waiting, bool).reshape(-1, 2), planned_separation=np.zeros(0))


@dataclass
class PersonClearance:
    """What the schedule needs to keep both arms clear of the person proxy: ``clear(arm, targets, frames)``
    says, per pair, whether that arm at that target index (and the ``lag`` targets before it) keeps the
    clearance from the person as it is at that frame; ``max_hold`` frames of waiting for it per arm."""

    clear: Callable[[int, np.ndarray, np.ndarray], np.ndarray]
    max_hold: int
    reason: str = ""
    """Filled in when no schedule exists: what was in the way."""


def person_clearance(person: PersonPlan, pp: PersonParams, chains: list[np.ndarray], fps: float, lag: int
                     ) -> PersonClearance:
    """Each arm's kinematic chain (``chains[arm]`` [K+1, P, 2]: :func:`varied.table_chain` of its targets, in
    the table plane; capsules of ``pp.arm_radius_m``) at a target, and the ``lag`` targets before it, keeps
    ``pp.clearance_m`` from ``person`` where it is at that frame (``fps``); waits up to ``pp.max_wait_s``."""
    def clear(arm: int, targets: np.ndarray, frames: np.ndarray) -> np.ndarray:
        xy = person.position(np.asarray(frames, np.float64) / fps)
        worst = np.full(len(targets), np.inf)
        for k in range(lag + 1):
            worst = np.minimum(worst, _chain_distance(chains[arm][np.maximum(targets - k, 0)], xy))
        return worst - pp.arm_radius_m - person.radius >= pp.clearance_m

    return PersonClearance(clear=clear, max_hold=int(round(pp.max_wait_s * fps)))


def _schedule_around(can: np.ndarray, stops0: np.ndarray, stops1: np.ndarray, person: PersonClearance) -> Schedule:
    """schedule_two_arms with the person: each frame the first of these that keeps the arms apart (``can``)
    and clear of the person is taken: both advance; arm 1 holds at a stop; arm 0 holds at a stop; both hold
    at stops. An arm leaves a stop only when its whole motion to the next stop stays clear of the person
    (it cannot stop on the way) and, from there, some wait at that stop clear of the person leads to a clear
    next motion (one stop of look-ahead); it holds only while the person is not where it rests. This is a
    greedy choice per frame, not a search: an episode it cannot schedule (no choice at all, or more than
    ``max_hold`` frames of waiting for the person) fails, with the reason, where a deeper search might have
    waited earlier."""
    k = (can.shape[0] - 1, can.shape[1] - 1)
    stops = (stops0, stops1)
    nxt_stop = []
    for arm in (0, 1):
        idx = np.flatnonzero(stops[arm])
        nxt_stop.append([int(idx[idx > i][0]) if (idx > i).any() else k[arm] for i in range(k[arm] + 1)])

    def ok(arm: int, cur: int, new: int, t: int) -> bool:
        if new == cur or not stops[arm][cur]:  # holding, or on the way (checked when it left its stop)
            return bool(person.clear(arm, np.array([new]), np.array([t + 1]))[0])
        end = nxt_stop[arm][cur]
        run = np.arange(cur + 1, end + 1)  # from a stop: the whole motion to the next one
        if not person.clear(arm, run, t + 1 + np.arange(len(run))).all():
            return False
        return end >= k[arm] or goes_on(arm, end, t + len(run))

    def goes_on(arm: int, stop: int, arrive: int) -> bool:
        """From ``stop``, reached at frame ``arrive``, the arm can hold there (clear of the person every
        frame) and then make its next run clear of it, within what is left of its waiting budget."""
        run = np.arange(stop + 1, nxt_stop[arm][stop] + 1)
        hold = np.arange(person.max_hold - held[arm] + 1)
        resting = person.clear(arm, np.full(len(hold), stop), arrive + hold)
        last = int(np.argmin(resting)) if not resting.all() else len(hold)  # holds up to here stay clear
        if last == 0:
            return False
        h, i = np.meshgrid(hold[:last], np.arange(len(run)), indexing="ij")
        runs = person.clear(arm, run[i].ravel(), (arrive + h + 1 + i).ravel()).reshape(h.shape)
        return bool(runs.all(axis=1).any())

    a = b = 0
    prog, waiting, held = [], [], [0, 0]
    while a < k[0] or b < k[1]:
        t = len(prog)
        na, nb = min(a + 1, k[0]), min(b + 1, k[1])
        rest0, rest1 = bool(stops0[a]) or a == k[0], bool(stops1[b]) or b == k[1]
        options = [(na, nb)] + [(na, b)] * rest1 + [(a, nb)] * rest0 + [(a, b)] * (rest0 and rest1)
        for ca, cb in options:
            if can[ca, cb] and ok(0, a, ca, t) and ok(1, b, cb, t):
                break
        else:
            person.reason = (f"no move keeps both arms clear of the person at frame {t} (arm 0 at target {a}, "
                             f"arm 1 at {b})")
            raise EpisodeFailed(f"{EpisodeFailed.PREFIX}: two arms: {person.reason}")
        alone = next(o for o in options if can[o])  # what the arms' separation alone would do
        for arm, (cur, new, fin) in enumerate(((a, ca, k[0]), (b, cb, k[1]))):
            if new == cur < fin and alone[arm] != cur:
                held[arm] += 1  # a hold for the person, not for the other arm
        if max(held) > person.max_hold:
            person.reason = f"waiting for the person would take more than {person.max_hold} frames"
            raise EpisodeFailed(f"{EpisodeFailed.PREFIX}: two arms: {person.reason}")
        waiting.append((ca == a and a < k[0], cb == b and b < k[1]))
        a, b = ca, cb
        prog.append((a, b))
    return Schedule(progress=np.asarray(prog, np.int64).reshape(-1, 2),
                    waiting=np.asarray(waiting, bool).reshape(-1, 2), planned_separation=np.zeros(0),
                    person_holds=tuple(held))


def _separations(pts0: np.ndarray, pts1: np.ndarray, exact_below: float) -> tuple[np.ndarray, np.ndarray]:
    """TCP distance [K0,K1] and the least gap between the two arms' body capsules [K0,K1] for every pair of
    targets, from :func:`_body_points` of each arm: exact where it is below ``exact_below``, else a lower
    bound no less than that (a capsule pair whose bounding spheres are that far apart is not measured)."""
    tcp = np.linalg.norm(pts0[:, None, 0] - pts1[None, :, 0], axis=-1)
    gap = np.full(tcp.shape, np.inf)
    for i, ri in enumerate(CAPSULE_RADII):
        p0, q0 = pts0[:, 1 + 2 * i], pts0[:, 2 + 2 * i]
        m0, h0 = (p0 + q0) / 2, np.linalg.norm(q0 - p0, axis=-1) / 2 + ri
        for j, rj in enumerate(CAPSULE_RADII):
            p1, q1 = pts1[:, 1 + 2 * j], pts1[:, 2 + 2 * j]
            m1, h1 = (p1 + q1) / 2, np.linalg.norm(q1 - p1, axis=-1) / 2 + rj
            lower = np.linalg.norm(m0[:, None] - m1[None], axis=-1) - h0[:, None] - h1[None]
            near = lower < exact_below
            np.minimum(gap, np.where(near, np.inf, lower), out=gap)
            a, b = np.nonzero(near)
            if len(a):
                exact = _segment_distance(p0[a], q0[a], p1[b], q1[b]) - ri - rj
                gap[a, b] = np.minimum(gap[a, b], exact)
    return tcp, gap


def plan_schedule(pts0: np.ndarray, pts1: np.ndarray, params: TwoArmParams, stops0: np.ndarray | None = None,
                  stops1: np.ndarray | None = None, person: PersonClearance | None = None) -> Schedule:
    """The schedule (:func:`schedule_two_arms`) that keeps the TCPs ``min_separation_m`` and the bodies
    ``body_clearance_m`` apart, both with ``separation_margin_m`` to spare and checked over the last
    ``lag_frames`` targets of both arms, for the arms' predicted TCPs and body capsules ``pts0`` and ``pts1``
    (:func:`_body_points`), each arm holding only at its ``stops``. Raises :class:`EpisodeFailed` when there
    is none."""
    lag, margin = params.lag_frames, params.separation_margin_m
    tcp, gap = _separations(pts0, pts1, params.body_clearance_m + margin + 0.01)
    free = ((_trailing_min(tcp, lag) >= params.min_separation_m + margin)
            & (_trailing_min(gap, lag) >= params.body_clearance_m + margin))
    try:
        sched = schedule_two_arms(free, stops0, stops1, person)
    except EpisodeFailed:
        if person is not None and person.reason:
            raise
        raise EpisodeFailed(f"{EpisodeFailed.PREFIX}: two arms: no order of the arms' moves keeps their TCPs "
                            f"{params.min_separation_m + margin:.3f} m and their bodies "
                            f"{params.body_clearance_m + margin:.3f} m apart") from None
    a, b = sched.progress[:, 0], sched.progress[:, 1]
    sched.planned_separation, sched.planned_gap = tcp[a, b], gap[a, b]
    return sched
