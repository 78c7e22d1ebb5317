"""Pick-and-place, simulator-agnostic: scene randomization, waypoints, schedule, success, the episode.

A simulator adapts the task by implementing :class:`PickPlaceSim` (reset a
scene, inverse kinematics, one control frame, read state, attach/detach,
render); :func:`run_pick_place` does the rest, identically for PyBullet and
Isaac Sim. Imports numpy and the standard library only.

The robot base is at the origin of the world, the table top at z = 0.
Phases: HOME -> APPROACH_PICK -> DOWN_PICK -> CLOSE_GRIPPER -> LIFT ->
MOVE_TO_PLACE -> DOWN_PLACE -> OPEN_GRIPPER -> RETRACT -> HOME, each
transition ``steps_per_segment`` frames (9 x 30 = 270 frames by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from raygen.actors.spec import EpisodeSpec
from raygen.datasets.episode import CameraFrames, Episode, continuous_quaternions

if TYPE_CHECKING:
    from raygen.actors.tasks.scene import SceneVariationParams

__all__ = [
    "look_at",
    "GRIPPER_CLOSED",
    "GRIPPER_OPEN",
    "HOME_Q",
    "PHASES",
    "PickPlaceParams",
    "PickPlaceSim",
    "Rollout",
    "WRIST_CAMERA_IN_HAND",
    "Scene",
    "panda_fk",
    "quat_wxyz",
    "panda_ik",
    "run_pick_place",
    "sample_scene",
    "execute",
    "to_episode",
]

PHASES = ("HOME", "APPROACH_PICK", "DOWN_PICK", "CLOSE_GRIPPER", "LIFT", "MOVE_TO_PLACE", "DOWN_PLACE",
          "OPEN_GRIPPER", "RETRACT", "HOME")
GRIPPER_OPEN = 0.04
GRIPPER_CLOSED = 0.0
HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
Q_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
Q_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
COLOURS = {
    "red": (0.85, 0.1, 0.1, 1.0), "green": (0.1, 0.7, 0.2, 1.0), "blue": (0.1, 0.25, 0.9, 1.0),
    "yellow": (0.95, 0.85, 0.1, 1.0), "orange": (0.95, 0.5, 0.1, 1.0), "purple": (0.6, 0.2, 0.75, 1.0),
}
# Waypoints where the hand must be precise get noise on the wrist roll only (it does not move the grasp point).
_PRECISE = {"DOWN_PICK", "CLOSE_GRIPPER", "DOWN_PLACE", "OPEN_GRIPPER"}
STATE_NAMES = [*(f"joint_{i}" for i in range(7)), *(f"joint_{i}_vel" for i in range(7)), "finger_left",
               "finger_right", "eef_x", "eef_y", "eef_z", "eef_qw", "eef_qx", "eef_qy", "eef_qz"]
ACTION_NAMES = [*(f"joint_{i}" for i in range(7)), "gripper"]


def _wrist_mount() -> np.ndarray:
    """cam_wrist in the hand frame (panda_hand; OpenCV axes), the same on every simulator: 8 cm off the hand's
    side, looking along the fingers and tilted 35 degrees towards them, the fingers' closing axis
    horizontal in the image, so the fingers and a grasped object sit in the lower half of the view as
    on a real wrist camera."""
    tilt = np.radians(-35.0)
    mount = np.eye(4)
    mount[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
        [[1.0, 0.0, 0.0], [0.0, np.cos(tilt), -np.sin(tilt)], [0.0, np.sin(tilt), np.cos(tilt)]])
    mount[:3, 3] = [0.08, 0.0, 0.0]
    return mount


WRIST_CAMERA_IN_HAND = _wrist_mount()


@dataclass(frozen=True)
class PickPlaceParams:
    """Task parameters (spec params override them by name)."""

    steps_per_segment: int = 30
    """Frames per phase transition."""
    fps: float = 30.0
    x_range: tuple[float, float] = (0.3, 0.7)
    """Object and place spot x range in front of the robot, metres."""
    y_range: tuple[float, float] = (-0.3, 0.3)
    min_place_distance: float = 0.10
    """The place spot is at least this far (xy) from the object."""
    joint_noise: float = 0.05
    """Uniform noise (+-rad) added to waypoint joints (wrist roll only at the precise waypoints)."""
    approach_height: float = 0.12
    """Hand height above the object top when approaching and lifting, metres."""
    lift_height: float = 0.20
    place_clearance: float = 0.01
    """Gap under the object when it is released."""
    grasp_xy_tol: float = 0.08
    grasp_z_tol: float = 0.15
    success_radius: float = 0.05
    home_tol_rad: float = 0.15
    object_size: tuple[float, float] = (0.04, 0.055)
    """Edge length (cube) or diameter/height (cylinder), metres."""
    gripper_speed: float = 0.05
    """How fast each finger follows the gripper command, m/s (the Franka hand: ~0.05; 1.7 mm a frame at
    30 fps). The command (the action) switches open/closed; the fingers move at this speed, stop where they
    meet the object, and part from it at this speed when the command opens."""
    scene: dict[str, Any] = field(default_factory=dict)
    """Scene variation: lighting, distractors, a moving platform, a person proxy (the fields of
    :class:`raygen.actors.tasks.scene.SceneVariationParams`, each part off unless ``enabled``). Empty or all
    off: the episode is the same, byte for byte, as without it."""

    @classmethod
    def from_options(cls, options: dict[str, Any], *, where: str = "task") -> PickPlaceParams:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"{where}: unknown parameter(s) {unknown}; known: {sorted(known)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        params = cls(**kw)
        if params.steps_per_segment < 2:
            raise ValueError(f"{where}.steps_per_segment: must be >= 2, got {params.steps_per_segment}")
        if not params.gripper_speed > 0:
            raise ValueError(f"{where}.gripper_speed: must be > 0 (m/s per finger), got {params.gripper_speed}")
        if not isinstance(params.scene, dict):
            raise ValueError(f"{where}.scene: must be a mapping (lighting, distractors, platform, person), got "
                             f"{params.scene!r}")
        if params.scene:
            from raygen.actors.tasks.scene import SceneVariationParams

            SceneVariationParams.from_options(params.scene, where=f"{where}.scene")
        return params

    @property
    def variation(self) -> SceneVariationParams:
        """The parsed ``scene`` section."""
        from raygen.actors.tasks.scene import SceneVariationParams

        return SceneVariationParams.from_options(self.scene)

    @property
    def frames(self) -> int:
        return (len(PHASES) - 1) * self.steps_per_segment


@dataclass(frozen=True)
class Scene:
    object_xy: tuple[float, float]
    place_xy: tuple[float, float]
    object_size: float
    object_kind: str
    colour_name: str
    rgba: tuple[float, float, float, float]

    @property
    def task(self) -> str:
        return f"pick the {self.colour_name} {self.object_kind} and place it on the target"


def sample_scene(rng: np.random.Generator, params: PickPlaceParams, kinds: tuple[str, ...] = ("cube",)) -> Scene:
    """Random object and place spot (at least min_place_distance apart), colour and kind."""
    obj = rng.uniform([params.x_range[0], params.y_range[0]], [params.x_range[1], params.y_range[1]])
    for _ in range(1000):
        place = rng.uniform([params.x_range[0], params.y_range[0]], [params.x_range[1], params.y_range[1]])
        if np.linalg.norm(place - obj) >= params.min_place_distance:
            break
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    kind = kinds[int(rng.integers(len(kinds)))]
    size = float(rng.uniform(*params.object_size))
    return Scene(tuple(obj.tolist()), tuple(place.tolist()), size, kind, colour, COLOURS[colour])


# ----------------------------------------------------------------------------- kinematics (fallback IK)

# Franka Panda, modified DH (Craig): a, d, alpha per joint, then the flange and the hand's TCP.
_DH = np.array([[0, 0.333, 0], [0, 0, -np.pi / 2], [0, 0.316, np.pi / 2], [0.0825, 0, np.pi / 2],
                [-0.0825, 0.384, -np.pi / 2], [0, 0, np.pi / 2], [0.088, 0, np.pi / 2]])
FLANGE_D = 0.107
TCP_D = 0.1034  # flange -> between the fingertips, along the tool axis
_FLANGE_TO_TCP_ROT = np.array([[np.cos(-np.pi / 4), -np.sin(-np.pi / 4), 0],
                               [np.sin(-np.pi / 4), np.cos(-np.pi / 4), 0], [0, 0, 1]])  # the hand sits at -45 deg


def _dh(a: float, d: float, alpha: float, theta: float) -> np.ndarray:
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    return np.array([[ct, -st, 0, a], [st * ca, ct * ca, -sa, -d * sa], [st * sa, ct * sa, ca, d * ca], [0, 0, 0, 1]])


def panda_fk(q: np.ndarray, tcp: bool = True) -> np.ndarray:
    """4x4 pose of the Panda flange (tcp=False) or of the TCP between the fingertips, in the base frame."""
    t = np.eye(4)
    for (a, d, alpha), theta in zip(_DH, q):
        t = t @ _dh(a, d, alpha, theta)
    t = t @ _dh(0, FLANGE_D, 0, 0)
    if tcp:
        t = t @ _dh(0, TCP_D, 0, -np.pi / 4)
    return t


def panda_ik(target_xyz: np.ndarray, q_seed: np.ndarray, iters: int = 300, tol: float = 1e-3) -> np.ndarray | None:
    """Damped least-squares IK on the DH model: TCP at ``target_xyz`` pointing straight down.

    The fallback when a simulator's own IK misses; returns None if it does not converge within ``tol``.
    """
    q = np.array(q_seed, dtype=np.float64)
    down = np.array([0.0, 0.0, -1.0])
    for _ in range(iters):
        t = panda_fk(q)
        err = np.concatenate([target_xyz - t[:3, 3], -np.cross(t[:3, 2], down)])  # drive cross(z, down) to 0
        if np.linalg.norm(err[:3]) < tol and np.linalg.norm(err[3:]) < 1e-2:
            return q
        jac = np.zeros((6, 7))
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = 1e-6
            tj = panda_fk(q + dq)
            jac[:3, j] = (tj[:3, 3] - t[:3, 3]) / 1e-6
            jac[3:, j] = (np.cross(tj[:3, 2], down) - np.cross(t[:3, 2], down)) / 1e-6
        step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), err)
        norm = np.linalg.norm(step)
        q = np.clip(q + (step * (0.2 / norm) if norm > 0.2 else step), Q_LOWER, Q_UPPER)
    return None


# ----------------------------------------------------------------------------- the simulator adapter


@dataclass
class CameraImage:
    rgb: np.ndarray  # [H,W,3] uint8
    depth_mm: np.ndarray  # [H,W] uint16, 0 = invalid
    pose: np.ndarray  # [4,4] camera-to-base, OpenCV axes


class PickPlaceSim(Protocol):
    """What a simulator provides to run pick-and-place."""

    name: str
    version: str
    object_kinds: tuple[str, ...]
    camera_names: tuple[str, ...]

    def reset(self, scene: Scene) -> None: ...
    def ik(self, target_xyz: np.ndarray, q_seed: np.ndarray) -> np.ndarray | None: ...
    def step(self, q_target: np.ndarray, gripper_target: float | np.ndarray) -> None: ...  # per finger, or both
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...  # q[7], qd[7], fingers[2]
    def flange_pose(self) -> np.ndarray: ...  # [4,4]
    def tcp_position(self) -> np.ndarray: ...  # [3]
    def finger_pads(self) -> np.ndarray: ...  # [2,3] left, right pad centres
    def object_position(self) -> np.ndarray: ...  # [3]
    def object_pose(self) -> np.ndarray: ...  # [7] position and quaternion (w, x, y, z)
    def set_rendering(self, on: bool) -> None: ...  # False: physics alone (render() is not called)
    def attach(self) -> None: ...
    def detach(self) -> None: ...
    def render(self) -> dict[str, CameraImage]: ...
    def intrinsics(self, camera: str) -> np.ndarray: ...
    def camera_is_moving(self, camera: str) -> bool: ...
    def gripper_geometry(self) -> dict[str, Any]: ...


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Camera-to-world pose [4,4] with OpenCV axes (x right, y down, z forward) looking from ``eye`` at
    ``target``, ``up`` pointing up in the image."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def quat_wxyz(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (w, x, y, z) with w >= 0."""
    m = r
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def _cartesian_plan(scene: Scene, params: PickPlaceParams) -> list[tuple[str, np.ndarray | None, float]]:
    """(phase, TCP target or None for HOME, gripper target) for each waypoint."""
    ox, oy = scene.object_xy
    px, py = scene.place_xy
    grasp_z = max(scene.object_size / 2, 0.015)
    above_obj = scene.object_size + params.approach_height
    carry_z = max(params.lift_height, above_obj)
    place_z = scene.object_size / 2 + params.place_clearance
    o, c = GRIPPER_OPEN, GRIPPER_CLOSED
    return [
        ("HOME", None, o),
        ("APPROACH_PICK", np.array([ox, oy, above_obj]), o),
        ("DOWN_PICK", np.array([ox, oy, grasp_z]), o),
        ("CLOSE_GRIPPER", np.array([ox, oy, grasp_z]), c),
        ("LIFT", np.array([ox, oy, carry_z]), c),
        ("MOVE_TO_PLACE", np.array([px, py, carry_z]), c),
        ("DOWN_PLACE", np.array([px, py, place_z]), c),
        ("OPEN_GRIPPER", np.array([px, py, place_z]), o),
        ("RETRACT", np.array([px, py, carry_z]), o),
        ("HOME", None, o),
    ]


def _solve(sim: PickPlaceSim, plan: list, rng: np.random.Generator, params: PickPlaceParams) -> tuple[np.ndarray, int]:
    """Joint waypoints [10,7] by the simulator's IK (DH fallback), plus noise; returns (q, fallbacks)."""
    qs, fallbacks, seed = [], 0, HOME_Q.copy()
    for phase, target, _ in plan:
        if target is None:
            q = HOME_Q.copy()
        else:
            q = sim.ik(target, seed)
            if q is None:
                fallbacks += 1
                q = panda_ik(target, seed)
            if q is None:
                q = panda_ik(target, HOME_Q)
            if q is None:
                raise RuntimeError(f"no IK solution for {phase} at {np.round(target, 3).tolist()}")
        seed = q
        noise = rng.uniform(-params.joint_noise, params.joint_noise, 7)
        if phase in _PRECISE:
            noise[:6] = 0.0
        if phase == "HOME" and len(qs) == 0:
            noise[:] = 0.0  # start exactly at home
        qs.append(np.clip(q + noise, Q_LOWER, Q_UPPER))
    return np.asarray(qs), fallbacks


def _schedule(q_way: np.ndarray, grip: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame joint targets [T,7], gripper targets [T] and phase index [T] (smooth cosine easing)."""
    n_seg = len(q_way) - 1
    alpha = (1 - np.cos(np.pi * np.arange(1, steps + 1) / steps)) / 2
    q = np.concatenate([q_way[s] + alpha[:, None] * (q_way[s + 1] - q_way[s]) for s in range(n_seg)])
    g = np.repeat(grip[1:], steps)
    phase = np.repeat(np.arange(1, n_seg + 1), steps)
    return q, g, phase


def run_pick_place(sim: PickPlaceSim, spec: EpisodeSpec, params: PickPlaceParams, *, render: bool = True,
                   sample: Callable[[np.random.Generator], Scene] | None = None,
                   waypoints: Callable[[Scene, PickPlaceParams], list[tuple[str, np.ndarray | None, float]]] | None
                   = None, observe: Callable[[PickPlaceSim], PickPlaceSim] | None = None, task: str = "pick_place"
                   ) -> Episode:
    """Run one pick-and-place episode on ``sim``; the same spec always gives the same episode.

    ``render=False`` runs the physics alone (no camera frames: a first pass that only decides success, see
    :func:`raygen.actors._backend.render_if_kept`); the physics is the same either way. With a scene
    variation on (``params.scene``), :func:`raygen.actors.tasks.varied.run_varied` runs it. A task built on
    pick-and-place (soft objects) passes its own scene draw (``sample``, from the episode's generator), its
    waypoints (``waypoints``), what ``execute`` drives (``observe`` wraps the simulator) and its name."""
    if params.scene and params.variation.active:
        from raygen.actors.tasks.varied import run_varied

        return run_varied(sim, spec, params, render=render, sample=sample, waypoints=waypoints, observe=observe,
                          task=task)
    rng = np.random.default_rng(np.random.SeedSequence(spec.rng_seed))
    scene = sample(rng) if sample is not None else sample_scene(rng, params, sim.object_kinds)
    sim.set_rendering(render)  # before the reset: a simulator may warm up its renderer there
    sim.reset(scene)
    plan = (waypoints or _cartesian_plan)(scene, params)
    q_way, fallbacks = _solve(sim, plan, rng, params)
    grip = np.array([g for _, _, g in plan])
    q_tgt, g_tgt, phase = _schedule(q_way, grip, params.steps_per_segment)
    close_end = PHASES.index("CLOSE_GRIPPER") * params.steps_per_segment - 1
    open_end = PHASES.index("OPEN_GRIPPER") * params.steps_per_segment - 1
    driven = observe(sim) if observe is not None else sim
    rollout = execute(driven, scene, params, q_tgt, g_tgt, grasp_at=close_end, release_at=open_end, render=render)
    return to_episode(sim, spec, scene, params, rollout, q_tgt, g_tgt, phase, metrics={"task.ik_fallbacks": fallbacks},
                      task=task)


@dataclass
class Rollout:
    """What the simulator did under a sequence of targets (see :func:`execute`)."""

    state: np.ndarray
    flange: np.ndarray
    opening: np.ndarray
    pads: np.ndarray
    object_pose: np.ndarray
    """[T,7] the object's position and quaternion (w, x, y, z), continuous along time."""
    images: dict[str, list[CameraImage]]
    grasped: bool
    grasp_distance: float
    place_err: float
    at_home: bool
    resting: bool
    success: bool
    t_physics: float
    t_render: float


def execute(sim: PickPlaceSim, scene: Scene, params: PickPlaceParams, q_tgt: np.ndarray, g_tgt: np.ndarray, *,
            grasp_at: int | None, release_at: int | None, attached: bool = False, render: bool = True) -> Rollout:
    """Drive ``sim`` through per-frame joint targets ``q_tgt`` [T,7] and gripper commands ``g_tgt`` [T] from
    its current state, observing each frame before acting. The object is attached at frame ``grasp_at`` when
    the TCP is within the grasp tolerances of it, and let go at ``release_at`` or as soon as the command
    opens the fingers past where they hold it. ``attached``: the object is already held (a restored
    state). ``render=False`` records no camera frames."""
    t_frames = len(q_tgt)
    state = np.zeros((t_frames, 23), np.float32)
    step_m = params.gripper_speed / params.fps  # the most a finger moves in one frame
    fingers_to: np.ndarray | None = None  # where the fingers are driven this frame (each its own)
    held: np.ndarray | None = sim.joint_state()[2].copy() if attached else None  # fingers where they met it
    flange = np.zeros((t_frames, 4, 4))
    opening = np.zeros(t_frames)
    pads = np.zeros((t_frames, 2, 3))
    obj_pose = np.zeros((t_frames, 7))
    images: dict[str, list[CameraImage]] = {c: [] for c in sim.camera_names}
    sim.set_rendering(render)
    grasped = attached
    grasp_distance = float(np.linalg.norm(sim.tcp_position() - sim.object_position())) if attached else float("nan")
    t_physics = t_render = 0.0
    for t in range(t_frames):
        # observe, then act: frame t shows the world before action t is applied
        t0 = time.perf_counter()
        q, qd, fingers = sim.joint_state()
        f = sim.flange_pose()
        tcp_rot = f[:3, :3] @ _FLANGE_TO_TCP_ROT  # the simulator's own flange, turned to the TCP
        state[t] = np.concatenate([q, qd, fingers, sim.tcp_position(), quat_wxyz(tcp_rot)])
        flange[t], opening[t], pads[t] = f, float(fingers.sum()), sim.finger_pads()
        obj_pose[t] = sim.object_pose()
        t1 = time.perf_counter()
        if render:
            for cam, img in sim.render().items():
                images[cam].append(img)
        t2 = time.perf_counter()
        if attached and g_tgt[t] > held.max():  # the command opens: the object is let go as the fingers part
            sim.detach()
            attached, held = False, None
        # the fingers follow the command at the gripper's speed; while the fixed joint holds the object they
        # stay where they met it (each on its own side) instead of closing through it
        goal = np.full(2, g_tgt[t]) if held is None else np.maximum(g_tgt[t], held)
        prev = fingers.astype(np.float64) if fingers_to is None else fingers_to
        fingers_to = prev + np.clip(goal - prev, -step_m, step_m)
        sim.step(q_tgt[t], fingers_to)
        if t == grasp_at and not attached:
            hand, obj = sim.tcp_position(), sim.object_position()
            grasp_distance = float(np.linalg.norm(hand - obj))
            near = np.linalg.norm(hand[:2] - obj[:2]) <= params.grasp_xy_tol
            if near and abs(hand[2] - obj[2]) <= params.grasp_z_tol:
                sim.attach()
                grasped = attached = True
                held = fingers_to = sim.joint_state()[2].copy()
        if t == release_at and attached:
            sim.detach()
            attached, held = False, None
        t_physics += (t1 - t0) + (time.perf_counter() - t2)
        t_render += t2 - t1
    if fingers_to is None:
        fingers_to = sim.joint_state()[2].astype(np.float64)
    for _ in range(int(params.fps)):  # let the object settle before judging (not recorded)
        fingers_to = fingers_to + np.clip(g_tgt[-1] - fingers_to, -step_m, step_m)
        sim.step(q_tgt[-1], fingers_to)
    obj = sim.object_position()
    place_err = float(np.linalg.norm(obj[:2] - np.asarray(scene.place_xy)))
    q_final = sim.joint_state()[0]
    at_home = bool(np.max(np.abs(q_final - HOME_Q)) <= params.home_tol_rad)
    resting = bool(-0.01 < obj[2] < scene.object_size)  # on the table: not held up, not fallen off
    obj_pose[:, 3:] = continuous_quaternions(obj_pose[:, 3:])
    return Rollout(state=state, flange=flange, opening=opening, pads=pads, object_pose=obj_pose, images=images,
                   grasped=grasped, grasp_distance=grasp_distance, place_err=place_err, at_home=at_home,
                   resting=resting, success=grasped and place_err <= params.success_radius and at_home and resting,
                   t_physics=t_physics, t_render=t_render)


OBJECT_POSE_NAMES = ["object_x", "object_y", "object_z", "object_qw", "object_qx", "object_qy", "object_qz"]


def to_episode(sim: PickPlaceSim, spec: EpisodeSpec, scene: Scene, params: PickPlaceParams, r: Rollout,
               q_tgt: np.ndarray, g_tgt: np.ndarray, phase: np.ndarray, *, metrics: dict[str, Any] | None = None,
               provenance: dict[str, Any] | None = None, task: str = "pick_place") -> Episode:
    """The episode of a rollout (camera frames only if it was rendered)."""
    task_params = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}
    if "scene" in task_params and not (params.scene and params.variation.active):
        del task_params["scene"]  # no variation: the provenance of an episode without the section
    state = r.state.copy()
    state[:, 19:23] = continuous_quaternions(state[:, 19:23])  # per frame it is w >= 0; along time, no flips
    action = np.concatenate([q_tgt, g_tgt[:, None]], axis=1).astype(np.float32)  # the gripper command itself
    cameras = {}
    for cam in sim.camera_names:
        frames = r.images[cam]
        if not frames:
            continue
        poses = np.stack([im.pose for im in frames])
        cameras[cam] = CameraFrames(
            rgb=np.stack([im.rgb for im in frames]),
            depth=np.stack([im.depth_mm for im in frames]),
            intrinsics=sim.intrinsics(cam),
            pose=poses if sim.camera_is_moving(cam) else poses[0],
        )
    return Episode(
        episode_key=spec.episode_key,
        task=scene.task,
        fps=params.fps,
        state=state,
        action=action,
        cameras=cameras,
        gripper_pose=r.flange,
        gripper_opening=r.opening,
        success=bool(r.success),
        robot_type="franka",
        provenance={
            "backend": sim.name, "backend_version": sim.version, "task": task,
            "source": spec.source, "seed": spec.seed, "index": spec.index, "params": spec.params,
            "task_params": task_params,
            **(provenance or {}),
        },
        gripper_geometry=sim.gripper_geometry(),
        frame_features={"contact.pads": r.pads.astype(np.float32), "task.phase": np.asarray(phase, np.int64),
                        "object.pose": r.object_pose.astype(np.float32)},
        names={"observation.state": list(STATE_NAMES), "action": list(ACTION_NAMES),
               "object.pose": list(OBJECT_POSE_NAMES)},
        metrics={
            "task.grasped": r.grasped, "task.grasp_distance_m": r.grasp_distance,
            "task.place_error_m": r.place_err, "task.at_home": r.at_home,
            "task.object_resting": r.resting,
            "scene.object_x": scene.object_xy[0], "scene.object_y": scene.object_xy[1],
            "scene.place_x": scene.place_xy[0], "scene.place_y": scene.place_xy[1],
            "scene.object_kind": scene.object_kind, "scene.colour": scene.colour_name,
            "scene.object_size_m": scene.object_size,
            "timing.physics_s": r.t_physics, "timing.render_s": r.t_render,
            **(metrics or {}),
        },
    )
