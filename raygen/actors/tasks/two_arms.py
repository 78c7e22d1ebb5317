"""Two arms in one scene, simulator-agnostic: each picks its own object and places it on its own spot.

Two Franka Pandas face each other across the table: arm 0 at the world origin (the episode's base frame, as
in single-arm pick-and-place), arm 1 at ``(arm_distance_m, 0, 0)`` turned 180 degrees about z. Two objects
and two place spots are drawn in the shared workspace and given to the arms by nearest neighbour (the
closest arm-object pair first, then the other arm takes the other one; the same for the spots). Each arm's
waypoints come from pick-and-place's own planner (:func:`pick_place._cartesian_plan` and
:func:`pick_place._solve`, in that arm's base frame) and are eased as there.

The grippers keep ``min_separation_m`` between their TCPs on every frame, and the arms' bodies (links,
hand, fingers, a held object, as capsules) ``body_clearance_m``. Both are predicted from the joint targets
by forward kinematics (pick-and-place's DH model of the Panda, moved by the arm's base), and a scheduler
(:func:`schedule_two_arms`) advances both arms along their own eased targets frame by frame: both move when
that keeps the distances (plus ``separation_margin_m``) now and still lets both finish (a look-ahead over
the rest of the episode, so no wait ends in a deadlock); otherwise arm 1 waits (holds its target) while
arm 0 proceeds; only when that leads nowhere either does arm 0 wait for arm 1. Each check covers the last
``lag_frames`` targets of both arms, because the measured joints trail their targets. Waits are recorded
(``two_arms.wait_frames`` for arm 1, ``two_arms.arm0_wait_frames``, the per-frame ``two_arms.waiting``); an
episode is longer than a single-arm one by the frames some arm waited. A scene with no such schedule at
all (an arm must reach past the other's home) is drawn again (``two_arms.scene_draws``).

Scene variation (``task_params.scene``): lighting and distractors as for one arm (their own random streams,
so the task's draws stay the same; distractors keep clear of both arms' objects, place spots and bases) and
the person proxy: the schedule keeps both arms' kinematic chains (capsules of ``person.arm_radius_m``, as for
one arm) ``person.clearance_m`` from it, an arm leaving a waypoint only when its whole motion to the next
stays clear and holding only where the person does not come (:class:`two_arm_plan.PersonClearance`); the
gap is measured again on the recorded joints (``task.person_gap_m``, not a success unless > 0). All of it
is recorded in ``scene.*`` metrics and ``provenance.scene_variation``; the platform is a single-arm part and
refused here. A simulator that varies the scene has ``vary(variation)``, called before ``reset``.

A simulator adapts the task by implementing :class:`TwoArmSim` with one :class:`ArmSim` per arm. Imports
numpy and the standard library only.

The episode (one for both arms; every position and pose in the world = arm 0's base frame):

- ``observation.state`` [T,46]: arm 0's 23 single-arm dimensions then arm 1's, named ``arm0_joint_0`` ..
  ``arm1_eef_qz``; ``action`` [T,16]: ``arm0_joint_0`` .. ``arm0_gripper``, ``arm1_joint_0`` ..
  ``arm1_gripper``.
- ``gripper_pose`` / ``gripper_opening``: arm 0's flange and finger gap (so single-arm consumers keep
  working); frame features ``arm1.gripper_pose`` [T,4,4] and ``arm1.gripper_opening`` [T] for arm 1.
- ``contact.pads`` [T,4,3]: arm 0 left pad, arm 0 right pad, arm 1 left pad, arm 1 right pad (two pads per
  gripper, grippers in arm order: the flow stage makes 3 tracks per gripper from them).
- ``task.phase`` [T] and ``arm1.task.phase`` [T]: the waypoint each arm is heading for (1..9 as in
  pick-and-place; 0 while the arm still waits at home before its first move); ``object.pose`` and
  ``arm1.object.pose`` [T,7]; ``two_arms.waiting`` [T,2] (the arm holds its target) and
  ``two_arms.separation_m`` [T] (the measured TCP distance).
- ``success``: both arms placed their objects and are home, and the measured TCPs kept
  ``min_separation_m`` on every frame (``two_arms.separation_kept``). Metrics per arm (``arm0.task.grasped``,
  ``arm1.task.place_error_m``, ...), the worst of both under the single-arm names (``task.grasped`` is
  both grasped, ``task.place_error_m`` the larger error, ...), ``two_arms.*`` and ``scene.arm<i>.*``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from raygen.actors.spec import EpisodeFailed, EpisodeSpec
from raygen.actors.tasks.pick_place import (
    _FLANGE_TO_TCP_ROT,
    ACTION_NAMES,
    COLOURS,
    OBJECT_POSE_NAMES,
    PHASES,
    STATE_NAMES,
    CameraImage,
    PickPlaceParams,
    Scene,
    _cartesian_plan,
    _schedule,
    _solve,
    look_at,
    quat_wxyz,
)
from raygen.actors.tasks.two_arm_plan import (  # noqa: F401 (capsules, _segment_distance: re-exported)
    CAPSULE_RADII,
    HAND_CAPSULES,
    LINK_CAPSULES,
    PersonClearance,
    Schedule,
    _body_points,
    _panda_frames,
    _segment_distance,
    person_clearance,
    plan_schedule,
    schedule_two_arms,
)
from raygen.actors.tasks.varied import person_gap, table_chain
from raygen.datasets.episode import CameraFrames, Episode, continuous_quaternions

if TYPE_CHECKING:
    from raygen.actors.tasks.scene_plan import SceneVariation

__all__ = [
    "ARMS",
    "ArmSim",
    "Schedule",
    "TwoArmParams",
    "TwoArmScene",
    "TwoArmSim",
    "allocate_nearest",
    "arm_bases",
    "high_camera_pose",
    "plan_schedule",
    "run_two_arms",
    "sample_two_arm_scene",
    "schedule_two_arms",
]

ARMS = ("arm0", "arm1")
PAD_NAMES = [f"{arm}_{pad}_{ax}" for arm in ARMS for pad in ("left_pad", "right_pad") for ax in "xyz"]


@dataclass(frozen=True)
class TwoArmParams(PickPlaceParams):
    """Two-arm task parameters: every pick-and-place parameter (the same meaning, per arm; ``x_range`` and
    ``y_range`` bound both objects and both place spots in the world frame, ``min_place_distance`` is
    the least xy distance between any two of them) and the ones below."""

    arm_distance_m: float = 1.0
    """Arm 1's base sits this far along x from arm 0's, turned 180 degrees about z, facing it."""
    min_separation_m: float = 0.15
    """The grippers' TCPs stay at least this far apart on every frame (measured, not only planned)."""
    separation_margin_m: float = 0.03
    """Planned clearance beyond min_separation_m, for the measured TCPs trailing their targets."""
    lag_frames: int = 3
    """Each separation check covers the targets of the last lag_frames frames of both arms as well."""
    max_scene_draws: int = 20
    """A scene whose arms cannot keep their distance in any order of moves (one must reach past the
    other's home, say) is drawn again, up to this many times; then the episode fails."""
    body_clearance_m: float = 0.02
    """The arms' bodies (links, hand, fingers, a held object: capsules, LINK_CAPSULES and HAND_CAPSULES) stay
    at least this far apart in the plan as well: two hands side by side along their 21 cm width touch
    with their TCPs 20 cm apart, and a waiting arm must not rest on the other's forearm."""

    @classmethod
    def from_options(cls, options: dict[str, Any], *, where: str = "task") -> TwoArmParams:
        params = super().from_options(options, where=where)
        assert isinstance(params, TwoArmParams)
        problems = []
        if not params.min_separation_m >= 0:
            problems.append(f"{where}.min_separation_m: must be >= 0 metres, got {params.min_separation_m}")
        if not params.separation_margin_m >= 0:
            problems.append(f"{where}.separation_margin_m: must be >= 0 metres, got {params.separation_margin_m}")
        if not params.body_clearance_m >= 0:
            problems.append(f"{where}.body_clearance_m: must be >= 0 metres, got {params.body_clearance_m}")
        if params.scene and params.variation.platform.enabled:
            problems.append(f"{where}.scene: the platform is a single-arm part, not combined with two arms "
                            "(lighting, distractors and the person are); turn it off")
        if params.max_scene_draws < 1:
            problems.append(f"{where}.max_scene_draws: must be >= 1, got {params.max_scene_draws}")
        if params.lag_frames < 0:
            problems.append(f"{where}.lag_frames: must be >= 0, got {params.lag_frames}")
        if not 0.5 <= params.arm_distance_m <= 1.6:
            problems.append(f"{where}.arm_distance_m: must be in [0.5, 1.6] metres (both arms reach the "
                            f"middle of the table), got {params.arm_distance_m}")
        if problems:
            raise ValueError("; ".join(problems))
        return params

    @property
    def max_frames(self) -> int:
        """The longest an episode can be: one arm waits for all of the other's frames, then does its own, and
        with the person proxy each arm may also wait ``max_wait_s`` for it."""
        person = self.variation.person if self.scene else None
        waits = 2 * int(round(person.max_wait_s * self.fps)) if person is not None and person.enabled else 0
        return 2 * self.frames + waits


def arm_bases(params: TwoArmParams) -> tuple[np.ndarray, np.ndarray]:
    """Base-to-world [4,4] of arm 0 (the identity) and arm 1 (at ``arm_distance_m`` on x, yaw 180 deg)."""
    b1 = np.diag([-1.0, -1.0, 1.0, 1.0])
    b1[0, 3] = params.arm_distance_m
    return np.eye(4), b1


def high_camera_pose(centre_x: float) -> np.ndarray:
    """``cam_high`` of a two-arm scene (camera-to-world, OpenCV axes), every simulator's: above the table's
    corner on arm 0's side (-x, -y), looking at the middle between the bases; both arms in view, and the
    fingers, which close across the line between the arms, seen at 45 degrees."""
    return look_at(np.array([centre_x - 0.95, -0.95, 1.05]), np.array([centre_x, 0.0, 0.12]),
                   np.array([0.0, 0.0, 1.0]))


def _yaw(base: np.ndarray) -> float:
    return float(np.arctan2(base[1, 0], base[0, 0]))


@dataclass(frozen=True)
class TwoArmScene:
    """What both arms do; positions in the world (arm 0's base frame)."""

    arms: tuple[Scene, Scene]
    """Per arm: its object (kind, size, colour) and its place spot."""
    bases: tuple[tuple[float, float, float], tuple[float, float, float]]
    """Per arm: base (x, y, yaw) in the world."""
    allocation: tuple[tuple[int, int], tuple[int, int]]
    """Per arm: (index of its object, index of its place spot) in the order they were drawn."""

    @property
    def task(self) -> str:
        a, b = self.arms
        return (f"arm 0 picks the {a.colour_name} {a.object_kind}, arm 1 the {b.colour_name} {b.object_kind}; "
                "each places it on its target")

    def base(self, arm: int) -> np.ndarray:
        x, y, yaw = self.bases[arm]
        t = np.eye(4)
        t[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
        t[:2, 3] = x, y
        return t

    def in_base(self, arm: int) -> Scene:
        """Arm ``arm``'s scene in its own base frame (what pick-and-place's planner expects)."""
        inv = np.linalg.inv(self.base(arm))
        s = self.arms[arm]

        def to_base(xy: tuple[float, float]) -> tuple[float, float]:
            return tuple((inv @ np.array([xy[0], xy[1], 0.0, 1.0]))[:2].tolist())

        return Scene(to_base(s.object_xy), to_base(s.place_xy), s.object_size, s.object_kind, s.colour_name,
                     s.rgba)


def allocate_nearest(points: np.ndarray, bases: np.ndarray) -> list[int]:
    """Nearest-neighbour allocation of ``points`` [K,2] to arms at ``bases`` [A,2] (xy), one point per arm
    (K == A): the closest (arm, point) pair is matched first, then the closest of those left, and so on.
    Returns the point index of each arm."""
    points, bases = np.asarray(points, np.float64), np.asarray(bases, np.float64)
    d = np.linalg.norm(bases[:, None, :] - points[None, :, :], axis=-1)
    out = [-1] * len(bases)
    free_arms, free_points = set(range(len(bases))), set(range(len(points)))
    while free_arms and free_points:
        i, k = min(((i, k) for i in free_arms for k in free_points), key=lambda ik: (d[ik], ik))
        out[i] = k
        free_arms.discard(i)
        free_points.discard(k)
    return out


def sample_two_arm_scene(rng: np.random.Generator, params: TwoArmParams,
                         kinds: tuple[str, ...] = ("cube",)) -> TwoArmScene:
    """Two objects and two place spots in the workspace (every two at least ``min_place_distance`` apart in
    xy), two different colours, kinds and sizes; objects and spots allocated to the arms by nearest
    neighbour to each arm's base."""
    lo = [params.x_range[0], params.y_range[0]]
    hi = [params.x_range[1], params.y_range[1]]
    spots: list[np.ndarray] = []
    for _ in range(4):  # object 0, object 1, spot 0, spot 1
        for _ in range(1000):
            xy = rng.uniform(lo, hi)
            if all(np.linalg.norm(xy - s) >= params.min_place_distance for s in spots):
                break
        spots.append(xy)
    colours = [list(COLOURS)[int(i)] for i in rng.permutation(len(COLOURS))[:2]]
    kind = [kinds[int(rng.integers(len(kinds)))] for _ in range(2)]
    size = [float(rng.uniform(*params.object_size)) for _ in range(2)]
    bases = arm_bases(params)
    base_xy = np.array([b[:2, 3] for b in bases])
    obj_of = allocate_nearest(np.array(spots[:2]), base_xy)
    spot_of = allocate_nearest(np.array(spots[2:]), base_xy)
    arms = tuple(Scene(tuple(spots[obj_of[a]].tolist()), tuple(spots[2 + spot_of[a]].tolist()), size[obj_of[a]],
                       kind[obj_of[a]], colours[obj_of[a]], COLOURS[colours[obj_of[a]]]) for a in range(2))
    return TwoArmScene(arms=arms, bases=tuple((float(b[0, 3]), float(b[1, 3]), _yaw(b)) for b in bases),
                       allocation=tuple((obj_of[a], spot_of[a]) for a in range(2)))


# ----------------------------------------------------------------------------- the simulator adapter


class ArmSim(Protocol):
    """One arm of a :class:`TwoArmSim`. ``ik`` takes targets in this arm's base frame (as
    :class:`pick_place.PickPlaceSim` does); everything it reports is in the world (arm 0's base frame)."""

    base: np.ndarray  # [4,4] base-to-world

    def ik(self, target_xyz: np.ndarray, q_seed: np.ndarray) -> np.ndarray | None: ...
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...  # q[7], qd[7], fingers[2]
    def flange_pose(self) -> np.ndarray: ...  # [4,4] world
    def tcp_position(self) -> np.ndarray: ...  # [3] world
    def finger_pads(self) -> np.ndarray: ...  # [2,3] world, left and right pad centres
    def object_position(self) -> np.ndarray: ...  # [3] this arm's object
    def object_pose(self) -> np.ndarray: ...  # [7] xyz + wxyz
    def attach(self) -> None: ...  # hold this arm's object
    def detach(self) -> None: ...


class TwoArmSim(Protocol):
    """What a simulator provides to run the two-arm task."""

    name: str
    version: str
    object_kinds: tuple[str, ...]
    camera_names: tuple[str, ...]
    arms: tuple[ArmSim, ArmSim]  # valid after reset

    def reset(self, scene: TwoArmScene) -> None: ...
    def step(self, q_targets: list[np.ndarray], finger_targets: list[np.ndarray]) -> None: ...  # both, one frame
    def set_rendering(self, on: bool) -> None: ...
    def render(self) -> dict[str, CameraImage]: ...
    def intrinsics(self, camera: str) -> np.ndarray: ...
    def camera_is_moving(self, camera: str) -> bool: ...
    def gripper_geometry(self) -> dict[str, Any]: ...


# ----------------------------------------------------------------------------- one arm's gripper


class _Hand:
    """One arm's fingers and grasp across frames, as :func:`pick_place.execute` runs them: the fingers follow
    the command at the gripper's speed and stop where they meet a held object; the object is attached when
    the grasp is tried with the TCP within tolerance, and let go when the command opens."""

    def __init__(self, arm: ArmSim, params: PickPlaceParams):
        self.arm, self.params = arm, params
        self.step_m = params.gripper_speed / params.fps
        self.fingers_to: np.ndarray | None = None
        self.held: np.ndarray | None = None
        self.attached = self.grasped = False
        self.grasp_distance = float("nan")

    def fingers(self, observed: np.ndarray, command: float) -> np.ndarray:
        if self.attached and command > self.held.max():  # the command opens: let go as the fingers part
            self.release()
        goal = np.full(2, command) if self.held is None else np.maximum(command, self.held)
        prev = observed.astype(np.float64) if self.fingers_to is None else self.fingers_to
        self.fingers_to = prev + np.clip(goal - prev, -self.step_m, self.step_m)
        return self.fingers_to

    def try_grasp(self) -> None:
        if self.attached:
            return
        hand, obj = self.arm.tcp_position(), self.arm.object_position()
        self.grasp_distance = float(np.linalg.norm(hand - obj))
        near = np.linalg.norm(hand[:2] - obj[:2]) <= self.params.grasp_xy_tol
        if near and abs(hand[2] - obj[2]) <= self.params.grasp_z_tol:
            self.arm.attach()
            self.grasped = self.attached = True
            self.held = self.fingers_to = self.arm.joint_state()[2].copy()

    def release(self) -> None:
        if self.attached:
            self.arm.detach()
            self.attached, self.held = False, None


@dataclass
class _ArmPlan:
    q: np.ndarray  # [K+1,7] targets, index 0 = home
    g: np.ndarray  # [K+1] gripper commands
    phase: np.ndarray  # [K+1] the waypoint each target heads for (0 = home before the first move)
    grasp_at: int  # target index at which the grasp is tried
    release_at: int
    fallbacks: int


def _plan_arm(sim: TwoArmSim, scene: TwoArmScene, arm: int, rng: np.random.Generator, params: TwoArmParams
              ) -> _ArmPlan:
    plan = _cartesian_plan(scene.in_base(arm), params)
    q_way, fallbacks = _solve(sim.arms[arm], plan, rng, params)
    grip = np.array([g for _, _, g in plan])
    q, g, phase = _schedule(q_way, grip, params.steps_per_segment)
    steps = params.steps_per_segment
    return _ArmPlan(q=np.concatenate([q_way[:1], q]), g=np.concatenate([grip[:1], g]),
                    phase=np.concatenate([[0], phase]), grasp_at=PHASES.index("CLOSE_GRIPPER") * steps,
                    release_at=PHASES.index("OPEN_GRIPPER") * steps, fallbacks=fallbacks)


# ----------------------------------------------------------------------------- the episode


def run_two_arms(sim: TwoArmSim, spec: EpisodeSpec, params: TwoArmParams, *, render: bool = True) -> Episode:
    """Run one two-arm episode on ``sim``; the same spec always gives the same episode. ``render=False`` runs
    the physics alone (no camera frames), as for :func:`pick_place.run_pick_place`."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.rng_seed))
    failure: EpisodeFailed | None = None
    blocked: list[str] = []  # why the person proxy left no schedule, per scene it did
    sim.set_rendering(render)  # before any reset, as run_pick_place does (a simulator may warm up its renderer)
    for draw in range(params.max_scene_draws):
        scene = sample_two_arm_scene(rng, params, sim.object_kinds)
        variation = _vary(sim, spec, scene, params)
        sim.reset(scene)
        person = None
        try:
            plans = [_plan_arm(sim, scene, a, rng, params) for a in range(2)]
            pts = [_body_points(p.q, scene.base(a)) for a, p in enumerate(plans)]
            stops = [np.arange(len(p.q)) % params.steps_per_segment == 0 for p in plans]  # the waypoints
            if variation is not None and variation.person is not None:
                person = person_clearance(variation.person, params.variation.person,
                                          [table_chain(p.q, scene.base(a)) for a, p in enumerate(plans)],
                                          params.fps, params.lag_frames)
            sched = plan_schedule(pts[0], pts[1], params, *stops, person=person)
        except (EpisodeFailed, RuntimeError) as exc:  # no schedule, or no IK solution
            failure = exc
            if person is not None and person.reason:
                blocked.append(person.reason)
            continue
        return _execute(sim, spec, scene, params, plans, sched, render, draws=draw + 1, variation=variation)
    by_person = (f"; the person proxy blocked {len(blocked)} of them (first: {blocked[0]})" if blocked else "")
    raise EpisodeFailed(f"{EpisodeFailed.PREFIX}: two arms: none of {params.max_scene_draws} scenes drawn could "
                        f"be planned; the last: {failure}{by_person}")


def _vary(sim: TwoArmSim, spec: EpisodeSpec, scene: TwoArmScene, params: TwoArmParams) -> SceneVariation | None:
    """The episode's lighting and distractors (``params.scene``; the platform and the person are refused by
    TwoArmParams), drawn from their own streams as for one arm, with distractors clear of both arms' objects,
    place spots and bases, handed to the simulator before its reset; None when the section is off."""
    if not (params.scene and params.variation.active):
        return None
    if not hasattr(sim, "vary"):
        raise ValueError(f"task.scene: the {sim.name} simulator has no scene variation; remove task_params.scene")
    from raygen.actors.tasks.scene_plan import sample_variation

    xs = [b[0] for b in scene.bases]
    variation = sample_variation(spec.rng_seed, params.variation, scene.arms[0], others=scene.arms[1:],
                                 bases=tuple((b[0], b[1]) for b in scene.bases), table_x=(min(xs), max(xs)),
                                 duration_s=params.max_frames / params.fps + 2.0, grasp_s=0.0,
                                 place_box=(params.x_range, params.y_range, params.min_place_distance))
    sim.vary(variation)
    return variation


@dataclass
class _Rollout:
    state: np.ndarray  # [2,T,23] per arm, as pick-and-place's observation.state
    flange: np.ndarray  # [2,T,4,4]
    opening: np.ndarray  # [2,T]
    pads: np.ndarray  # [2,T,2,3]
    object_pose: np.ndarray  # [2,T,7]
    images: dict[str, list[CameraImage]]
    results: list[dict[str, Any]]  # per arm: grasped, place error, ...
    t_physics: float
    t_render: float


def _rollout(sim: TwoArmSim, scene: TwoArmScene, params: TwoArmParams, plans: list[_ArmPlan], sched: Schedule,
             render: bool) -> _Rollout:
    """Drive both arms through the schedule, observing each frame before acting (as pick_place.execute),
    then let the objects settle and judge each arm."""
    n = len(sched.progress)
    hands = [_Hand(arm, params) for arm in sim.arms]
    r = _Rollout(state=np.zeros((2, n, 23), np.float32), flange=np.zeros((2, n, 4, 4)), opening=np.zeros((2, n)),
                 pads=np.zeros((2, n, 2, 3)), object_pose=np.zeros((2, n, 7)),
                 images={c: [] for c in sim.camera_names}, results=[], t_physics=0.0, t_render=0.0)
    sim.set_rendering(render)
    prev = np.array([-1, -1])
    for t in range(n):
        t0 = time.perf_counter()
        observed = []
        for a, arm in enumerate(sim.arms):
            q, qd, fingers = arm.joint_state()
            f = arm.flange_pose()
            tcp_quat = quat_wxyz(f[:3, :3] @ _FLANGE_TO_TCP_ROT)
            r.state[a, t] = np.concatenate([q, qd, fingers, arm.tcp_position(), tcp_quat])
            r.flange[a, t], r.opening[a, t], r.pads[a, t] = f, float(fingers.sum()), arm.finger_pads()
            r.object_pose[a, t] = arm.object_pose()
            observed.append(fingers)
        t1 = time.perf_counter()
        if render:
            for cam, img in sim.render().items():
                r.images[cam].append(img)
        t2 = time.perf_counter()
        k = sched.progress[t]
        sim.step([plans[a].q[k[a]] for a in range(2)],
                 [hands[a].fingers(observed[a], plans[a].g[k[a]]) for a in range(2)])
        for a in range(2):  # on arriving at the target where the grasp is tried / the object let go
            if k[a] != prev[a] and k[a] == plans[a].grasp_at:
                hands[a].try_grasp()
            if k[a] != prev[a] and k[a] == plans[a].release_at:
                hands[a].release()
        prev = k
        r.t_physics += (t1 - t0) + (time.perf_counter() - t2)
        r.t_render += t2 - t1
    last = sched.progress[-1]
    for _ in range(int(params.fps)):  # let the objects settle before judging (not recorded)
        sim.step([plans[a].q[last[a]] for a in range(2)],
                 [hands[a].fingers(sim.arms[a].joint_state()[2], plans[a].g[last[a]]) for a in range(2)])
    for a, arm in enumerate(sim.arms):
        obj = arm.object_position()
        place_err = float(np.linalg.norm(obj[:2] - np.asarray(scene.arms[a].place_xy)))
        at_home = bool(np.max(np.abs(arm.joint_state()[0] - plans[a].q[0])) <= params.home_tol_rad)
        resting = bool(-0.01 < obj[2] < scene.arms[a].object_size)
        ok = hands[a].grasped and place_err <= params.success_radius and at_home and resting
        r.results.append({"grasped": hands[a].grasped, "grasp_distance_m": hands[a].grasp_distance,
                          "place_error_m": place_err, "at_home": at_home, "object_resting": resting,
                          "ik_fallbacks": plans[a].fallbacks, "success": bool(ok)})
        r.object_pose[a, :, 3:] = continuous_quaternions(r.object_pose[a, :, 3:])
        r.state[a, :, 19:23] = continuous_quaternions(r.state[a, :, 19:23])
    return r


def _execute(sim: TwoArmSim, spec: EpisodeSpec, scene: TwoArmScene, params: TwoArmParams, plans: list[_ArmPlan],
             sched: Schedule, render: bool, *, draws: int, variation: SceneVariation | None = None) -> Episode:
    if variation is not None and variation.person is not None:  # per arm: task.person_waits counts arms that waited
        variation.waits = [(arm, held / params.fps) for arm, held in zip(ARMS, sched.person_holds) if held]
    r = _rollout(sim, scene, params, plans, sched, render)
    n, results = len(sched.progress), r.results
    separation = np.linalg.norm(r.state[0, :, 16:19].astype(np.float64) - r.state[1, :, 16:19], axis=1)
    kept = bool(separation.min() >= params.min_separation_m)
    person_metrics: dict[str, Any] = {}
    met_person = False
    if variation is not None and variation.person is not None:  # measured on the recorded joints
        person, pp = variation.person, params.variation.person
        xy = person.position(np.arange(n) / params.fps)
        gaps = [person_gap(r.state[a, :, :7], xy, pp.arm_radius_m, person.radius, scene.base(a)) for a in range(2)]
        reached = person.position((np.arange(n) + 1) / params.fps)  # a frame's target is reached as it ends
        planned = [person_gap(plans[a].q[sched.progress[:, a]], reached, pp.arm_radius_m, person.radius,
                              scene.base(a)) for a in range(2)]
        person_metrics = {"task.person_gap_m": float(min(g.min() for g in gaps)),
                          "task.person_planned_gap_m": float(min(g.min() for g in planned)),
                          "two_arms.arm0_person_wait_frames": sched.person_holds[0],
                          "two_arms.arm1_person_wait_frames": sched.person_holds[1]}
        met_person = person_metrics["task.person_gap_m"] <= 0.0  # the arms met the person: not a success
    cameras = {}
    for cam, frames in r.images.items():
        if frames:
            poses = np.stack([im.pose for im in frames])
            cameras[cam] = CameraFrames(rgb=np.stack([im.rgb for im in frames]),
                                        depth=np.stack([im.depth_mm for im in frames]),
                                        intrinsics=sim.intrinsics(cam),
                                        pose=poses if sim.camera_is_moving(cam) else poses[0])
    k0, k1 = sched.progress[:, 0], sched.progress[:, 1]
    action = np.concatenate([plans[0].q[k0], plans[0].g[k0, None], plans[1].q[k1], plans[1].g[k1, None]], axis=1)
    metrics: dict[str, Any] = {}
    for a, arm_name in enumerate(ARMS):
        metrics.update({f"{arm_name}.task.{k}": v for k, v in results[a].items()})
        s = scene.arms[a]
        metrics.update({f"scene.{arm_name}.{k}": v for k, v in (
            ("object_x", s.object_xy[0]), ("object_y", s.object_xy[1]), ("place_x", s.place_xy[0]),
            ("place_y", s.place_xy[1]), ("object_kind", s.object_kind), ("colour", s.colour_name),
            ("object_size_m", s.object_size))})
    metrics.update({
        "task.grasped": all(x["grasped"] for x in results),
        "task.grasp_distance_m": max(x["grasp_distance_m"] for x in results),
        "task.place_error_m": max(x["place_error_m"] for x in results),
        "task.at_home": all(x["at_home"] for x in results),
        "task.object_resting": all(x["object_resting"] for x in results),
        "task.ik_fallbacks": sum(x["ik_fallbacks"] for x in results),
        "scene.agents": 2, "scene.object_kind": scene.arms[0].object_kind, "scene.colour": scene.arms[0].colour_name,
        "two_arms.wait_frames": int(sched.waiting[:, 1].sum()),
        "two_arms.arm0_wait_frames": int(sched.waiting[:, 0].sum()),
        "two_arms.min_separation_m": float(separation.min()),
        "two_arms.planned_min_separation_m": float(sched.planned_separation.min()),
        "two_arms.planned_min_body_gap_m": float(sched.planned_gap.min()),
        "two_arms.required_separation_m": params.min_separation_m,
        "two_arms.separation_kept": kept,
        "two_arms.scene_draws": draws,
        "timing.physics_s": r.t_physics, "timing.render_s": r.t_render,
    })
    extra: dict[str, Any] = {}
    metrics.update(person_metrics)
    if variation is not None:
        metrics.update(variation.metrics())
        extra["scene_variation"] = variation.to_dict()
    bases = [list(b) for b in scene.bases]
    return Episode(
        episode_key=spec.episode_key,
        task=scene.task,
        fps=params.fps,
        state=np.concatenate([r.state[0], r.state[1]], axis=1),
        action=action.astype(np.float32),
        cameras=cameras,
        gripper_pose=r.flange[0],
        gripper_opening=r.opening[0],
        success=all(x["success"] for x in results) and kept and not met_person,
        robot_type="franka",
        provenance={
            "backend": sim.name, "backend_version": sim.version, "task": "two_arms",
            "source": spec.source, "seed": spec.seed, "index": spec.index, "params": spec.params,
            "task_params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()},
            "arm_bases": bases,
            "allocation": {arm: {"object": int(o), "place": int(p)} for arm, (o, p) in zip(ARMS, scene.allocation)},
            **extra,
        },
        gripper_geometry={**sim.gripper_geometry(), "grippers": list(ARMS), "arm_bases": bases},
        frame_features={
            "contact.pads": r.pads.transpose(1, 0, 2, 3).reshape(n, 4, 3).astype(np.float32),
            "task.phase": plans[0].phase[k0].astype(np.int64),
            "arm1.task.phase": plans[1].phase[k1].astype(np.int64),
            "object.pose": r.object_pose[0].astype(np.float32),
            "arm1.object.pose": r.object_pose[1].astype(np.float32),
            "arm1.gripper_pose": r.flange[1].astype(np.float32),
            "arm1.gripper_opening": r.opening[1].astype(np.float32),
            "two_arms.waiting": sched.waiting.copy(),
            "two_arms.separation_m": separation.astype(np.float32),
        },
        names={"observation.state": [f"{arm}_{x}" for arm in ARMS for x in STATE_NAMES],
               "action": [f"{arm}_{x}" for arm in ARMS for x in ACTION_NAMES],
               "object.pose": list(OBJECT_POSE_NAMES), "arm1.object.pose": list(OBJECT_POSE_NAMES),
               "contact.pads": list(PAD_NAMES), "two_arms.waiting": list(ARMS)},
        metrics=metrics,
    )
