"""PyBullet adapter for the two-arm task: two Franka Pandas facing each other across one table.

Arm 0 stands at the world origin (the episode's base frame), arm 1 where the scene puts it (by default
1 m along x, turned 180 degrees about z). Each arm has its own object, place marker, wrist camera
(``cam_wrist`` on arm 0, ``cam_wrist_1`` on arm 1) and grasp constraint. ``cam_high`` looks at the
table's middle from above its corner on arm 0's side (-x, -y): both arms in view, and the fingers, which
close across the line between the arms, seen at 45 degrees, so the point between them is rarely hidden
(from straight at the side, one finger hides it). Rendering, the renderer probe and the camera conventions are
:class:`~raygen.actors.bullet.sim.BulletPickPlace`'s (this class extends it); the per-arm part of the
simulator is :class:`BulletArm`, one per arm in ``sim.arms``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raygen.actors.bullet.sim import (
    _ARM,
    _FINGERS,
    BulletPickPlace,
    FrankaReadings,
    drive,
    ik_down,
)
from raygen.actors.tasks.pick_place import GRIPPER_OPEN, HOME_Q, WRIST_CAMERA_IN_HAND
from raygen.actors.tasks.two_arms import TwoArmScene, high_camera_pose

__all__ = ["BulletArm", "BulletTwoArms"]

DEFAULT_BASES = ((0.0, 0.0, 0.0), (1.0, 0.0, float(np.pi)))
WRIST_CAMERAS = ("cam_wrist", "cam_wrist_1")


class BulletArm(FrankaReadings):
    """One Panda of a :class:`BulletTwoArms` world and the object it is given. ``ik`` takes targets in this
    arm's base frame; poses and positions it reports are in the world (arm 0's base frame)."""

    hand_yaws = (0.0, np.pi / 4, -np.pi / 4, np.pi / 2, -np.pi / 2)
    """Hand yaws IK tries in turn, about the base's z (BulletPickPlace's order): the single-arm grasp
    first, fingers closing across the line between the arms, so the hands, 20 cm wide along the
    fingers' axis but 6 cm across it, pass each other narrow side on (a quarter turn collides at
    the minimum separation)."""

    def __init__(self, sim: BulletTwoArms, index: int, robot: int, base: np.ndarray, obj: int | None):
        self.sim, self.index, self.robot, self.base, self.obj = sim, index, robot, base, obj
        self.p, self.client = sim.p, sim.client
        self._constraint: int | None = None
        self._yaw = float(np.arctan2(base[1, 0], base[0, 0]))

    def ik(self, target_xyz: np.ndarray, q_seed: np.ndarray) -> np.ndarray | None:
        """PyBullet's IK for the TCP pointing down at ``target_xyz`` (this arm's base frame); tries a few hand
        yaws (about the base's own axes) and keeps the first that lands within 5 mm and 3 degrees."""
        world = (self.base @ np.append(np.asarray(target_xyz, np.float64), 1.0))[:3]
        return ik_down(self.p, self.client, self.robot, self._link_pose, world, q_seed,
                       [self._yaw + yaw for yaw in self.hand_yaws])

    def command(self, q_target: np.ndarray, finger_targets: float | np.ndarray) -> None:
        """Motor targets for the next physics steps (the simulator steps both arms together)."""
        drive(self.p, self.client, self.robot, q_target, finger_targets)


def _base_matrix(x: float, y: float, yaw: float) -> np.ndarray:
    t = np.eye(4)
    t[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    t[:2, 3] = x, y
    return t


class BulletTwoArms(BulletPickPlace):
    """One PyBullet world (DIRECT mode) that runs two-arm episodes (:class:`raygen.actors.tasks.two_arms.
    TwoArmSim`). The single-arm calls (ik, joint_state, ..., attach) take ``arm`` (default 0) and go to
    ``self.arms[arm]``; ``step`` drives both arms."""

    camera_names = ("cam_high", *WRIST_CAMERAS)
    restorable = False  # bottleneck episodes restore one arm's state

    def __init__(self, **kw: Any):
        self.arms: tuple[BulletArm, ...] = ()
        self._centre_x = 0.5 * (DEFAULT_BASES[0][0] + DEFAULT_BASES[1][0])
        super().__init__(**kw)

    # ------------------------------------------------------------------ world
    def _build(self, scene: TwoArmScene | None) -> None:  # type: ignore[override]
        p, c = self.p, self.client
        import pybullet_data

        p.resetSimulation(physicsClientId=c)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / (self.fps * self.substeps), physicsClientId=c)
        bases = scene.bases if scene is not None else DEFAULT_BASES
        x0, x1 = min(b[0] for b in bases), max(b[0] for b in bases)
        self._centre_x = 0.5 * (x0 + x1)
        floor_half = [2.5, 2.5, 0.01]
        p.createMultiBody(
            0, p.createCollisionShape(p.GEOM_BOX, halfExtents=floor_half, physicsClientId=c),
            p.createVisualShape(p.GEOM_BOX, halfExtents=floor_half, rgbaColor=[0.55, 0.57, 0.6, 1], physicsClientId=c),
            basePosition=[self._centre_x, 0, -0.76], physicsClientId=c)
        table_half = [0.5 * (x1 - x0), 0.6, 0.375]  # from one base to the other
        self.table = p.createMultiBody(
            0, p.createCollisionShape(p.GEOM_BOX, halfExtents=table_half, physicsClientId=c),
            p.createVisualShape(p.GEOM_BOX, halfExtents=table_half, rgbaColor=[0.62, 0.48, 0.33, 1], physicsClientId=c),
            basePosition=[self._centre_x, 0, -0.375], physicsClientId=c)
        robots = []
        for x, y, yaw in bases:
            robot = p.loadURDF(self.robot_urdf, [x, y, 0], p.getQuaternionFromEuler([0, 0, yaw]), useFixedBase=True,
                               flags=p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT, physicsClientId=c)
            for j, q in zip(_ARM, HOME_Q):
                p.resetJointState(robot, j, q, physicsClientId=c)
            for j in _FINGERS:
                p.resetJointState(robot, j, GRIPPER_OPEN, physicsClientId=c)
            robots.append(robot)
        self.robot = robots[0]
        objs: list[int | None] = [None, None]
        if scene is not None:
            for a, s in enumerate(scene.arms):
                objs[a] = self._object(s.object_kind, s.object_size, s.rgba, s.object_xy)
                marker = p.createVisualShape(p.GEOM_CYLINDER, radius=0.035, length=0.001,
                                             rgbaColor=[0.1, 0.8, 0.3, 1], physicsClientId=c)
                p.createMultiBody(0, -1, marker, basePosition=[*s.place_xy, 0.0006], physicsClientId=c)
        self.obj = objs[0]
        self.arms = tuple(BulletArm(self, a, robots[a], _base_matrix(*bases[a]), objs[a]) for a in range(2))

    def _object(self, kind: str, s: float, rgba: tuple[float, ...], xy: tuple[float, float]) -> int:
        p, c = self.p, self.client
        if kind == "cylinder":
            col = p.createCollisionShape(p.GEOM_CYLINDER, radius=s / 2, height=s, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=s / 2, length=s, rgbaColor=rgba, physicsClientId=c)
        else:
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[s / 2] * 3, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[s / 2] * 3, rgbaColor=rgba, physicsClientId=c)
        obj = p.createMultiBody(0.08, col, vis, basePosition=[*xy, s / 2 + 1e-4], physicsClientId=c)
        p.changeDynamics(obj, -1, lateralFriction=1.5, spinningFriction=0.01, physicsClientId=c)
        return obj

    # ------------------------------------------------------------------ TwoArmSim
    # reset is BulletPickPlace's: this _build, then the variation's distractors (lighting is drawn at render)

    def step(self, q_targets: list[np.ndarray], finger_targets: list[np.ndarray]) -> None:  # type: ignore[override]
        """One control frame for both arms: each arm's joint and finger targets, then the physics substeps."""
        for arm, q, f in zip(self.arms, q_targets, finger_targets):
            arm.command(q, f)
        for _ in range(self.substeps):
            self.p.stepSimulation(physicsClientId=self.client)
        self._steps += 1  # the light of a changing scene variation and the person follow the frames
        self._move_person()

    # the single-arm calls, per arm
    def ik(self, target_xyz: np.ndarray, q_seed: np.ndarray, arm: int = 0) -> np.ndarray | None:
        return self.arms[arm].ik(target_xyz, q_seed)

    def joint_state(self, arm: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.arms[arm].joint_state()

    def flange_pose(self, arm: int = 0) -> np.ndarray:
        return self.arms[arm].flange_pose()

    def tcp_position(self, arm: int = 0) -> np.ndarray:
        return self.arms[arm].tcp_position()

    def finger_pads(self, arm: int = 0) -> np.ndarray:
        return self.arms[arm].finger_pads()

    def object_position(self, arm: int = 0) -> np.ndarray:
        return self.arms[arm].object_position()

    def object_pose(self, arm: int = 0) -> np.ndarray:
        return self.arms[arm].object_pose()

    def attach(self, arm: int = 0) -> None:
        self.arms[arm].attach()

    def detach(self, arm: int = 0) -> None:
        self.arms[arm].detach()

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "arms": len(DEFAULT_BASES), "scene_variation": ["lighting", "distractors",
                                                                                          "person"]}

    # ------------------------------------------------------------------ cameras
    def camera_pose(self, camera: str) -> np.ndarray:
        if camera == "cam_high":  # above the table's corner on arm 0's side, looking at its middle
            return high_camera_pose(self._centre_x)
        if camera in WRIST_CAMERAS:
            return self.arms[WRIST_CAMERAS.index(camera)].hand_pose() @ WRIST_CAMERA_IN_HAND
        raise ValueError(f"camera {camera!r} is not one of {list(self.camera_names)}")

    def camera_is_moving(self, camera: str) -> bool:
        return camera in WRIST_CAMERAS

    def gripper_geometry(self) -> dict[str, Any]:
        geo = super().gripper_geometry()
        geo["wrist_cameras"] = list(WRIST_CAMERAS)
        return geo
