"""Isaac Sim 5.x adapter for the two-arm task: two Frankas facing each other across one table.

The task (schedule, separation, episode) is :mod:`raygen.actors.tasks.two_arms`, shared with PyBullet
(:class:`raygen.actors.bullet.two_arms.BulletTwoArms`); this file maps :class:`~raygen.actors.tasks.two_arms.
TwoArmSim` onto Isaac Sim, reusing :class:`~raygen.actors.isaac.sim.IsaacPickPlace` (app start, caches,
rendering, lighting and distractors, cameras' read-out):

- a second articulation: the same ``franka.usd`` referenced at ``/World/Franka`` and ``/World/Franka_1``,
  each a ``SingleArticulation`` with its own unique scene name, placed at the scene's base pose (world
  position and w-first quaternion) before the first ``world.reset()``; a base that changes later is moved
  with ``set_world_pose`` and ``set_default_state`` (a reset would put it back otherwise);
- per arm its own ``LulaKinematicsSolver`` (the base pose is per-instance state: ``set_robot_base_pose`` with
  that robot's world pose before every solve, :func:`~raygen.actors.isaac.sim.lula_ik`); targets and
  orientations are world-frame, so a target in the arm's base frame is moved by the base first, and "down" is
  turned by the base's yaw, which gives each arm the single-arm grasp in its own frame;
- per arm its object (``/World/Object0``, ``/World/Object1``), place marker, wrist camera (``cam_wrist`` under
  ``/World/Franka/panda_hand``, ``cam_wrist_1`` under ``/World/Franka_1/panda_hand``, the mount every simulator
  shares) and grasp (a USD FixedJoint ``/World/GraspJoint<arm>`` between that robot's hand and its object);
- ``cam_high`` at :func:`~raygen.actors.tasks.two_arms.high_camera_pose` (PyBullet's), the table spanning the
  bases.

Written against the Isaac Sim 5.0/5.1 sources (see tests/actors/test_isaac.py for the names confirmed and
tests/actors/test_two_arms.py for the USD calls run against usd-core); not run on an RTX GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raygen.actors.isaac.arm import DOWN_WXYZ, FrankaArm, _pose_matrix, _yaw_wxyz, lula_ik, robot_links
from raygen.actors.isaac.sim import IsaacPickPlace
from raygen.actors.tasks.pick_place import WRIST_CAMERA_IN_HAND, quat_wxyz
from raygen.actors.tasks.two_arms import TwoArmScene, high_camera_pose

__all__ = ["IsaacArm", "IsaacTwoArms"]

ROBOT_PATHS = ("/World/Franka", "/World/Franka_1")
WRIST_CAMERAS = ("cam_wrist", "cam_wrist_1")
DEFAULT_BASES = ((0.0, 0.0, 0.0), (1.0, 0.0, float(np.pi)))
TABLE_PATH = "/World/Table"
_DOWN = _pose_matrix(np.zeros(3), DOWN_WXYZ)[:3, :3]


def _base_matrix(x: float, y: float, yaw: float) -> np.ndarray:
    return _pose_matrix(np.array([x, y, 0.0]), _yaw_wxyz(yaw))


class IsaacArm(FrankaArm):
    """One Franka of an :class:`IsaacTwoArms` stage and the object it is given (the task's ``ArmSim``):
    ``ik`` takes targets in this arm's base frame; poses and positions it reports are world-frame."""

    def __init__(self, sim: IsaacTwoArms, index: int, robot: Any, base: np.ndarray):
        self._api = sim._api
        self.sim, self.index, self.robot, self.base = sim, index, robot, base
        path = ROBOT_PATHS[index]
        self._hand, self._flange, self._fingers = robot_links(self._api, path)
        self._object: Any = None
        self._hand_path = f"{path}/panda_hand"
        self._object_path = f"/World/Object{index}"
        self._joint_path = f"/World/GraspJoint{index}"
        self._lula: Any = None

    def init_kinematics(self) -> None:
        """This arm's own Lula solver (its base pose is per-instance state)."""
        api = self.sim._api
        self._lula = api["LulaKinematicsSolver"](**api["lula_config"]())

    def links(self) -> list[Any]:
        return [self._hand, self._flange, *self._fingers]

    def ik(self, target_xyz: np.ndarray, q_seed: np.ndarray) -> np.ndarray | None:
        world = (self.base @ np.append(np.asarray(target_xyz, np.float64), 1.0))[:3]
        return lula_ik(self._lula, self.robot, world, quat_wxyz(self.base[:3, :3] @ _DOWN), q_seed)

    def command(self, q_target: np.ndarray, finger_targets: float | np.ndarray) -> None:
        """Joint and finger targets for the next physics steps (the simulator steps both arms together)."""
        fingers = np.broadcast_to(np.asarray(finger_targets, dtype=np.float64), (2,))
        joints = self.sim._dev(np.concatenate([np.asarray(q_target, np.float64), fingers]))
        self.robot.apply_action(self.sim._api["ArticulationAction"](joint_positions=joints))


class IsaacTwoArms(IsaacPickPlace):
    """One Isaac Sim process running two-arm episodes (:class:`~raygen.actors.tasks.two_arms.TwoArmSim`).
    Options are IsaacPickPlace's. Scene variation: lighting and distractors (the task refuses the rest)."""

    name = "isaac"
    camera_names = ("cam_high", *WRIST_CAMERAS)
    restorable = False  # bottleneck episodes restore one arm's state

    # ------------------------------------------------------------------ world
    def _build_world(self, franka_usd: str) -> None:
        api = self._api
        self._bases = DEFAULT_BASES
        self._table(DEFAULT_BASES)
        self.robots = []
        for i, (path, (x, y, yaw)) in enumerate(zip(ROBOT_PATHS, DEFAULT_BASES)):
            api["add_reference_to_stage"](usd_path=franka_usd, prim_path=path)
            self.robots.append(self.world.scene.add(api["SingleArticulation"](
                prim_path=path, name=f"franka{i}", position=np.array([x, y, 0.0]), orientation=_yaw_wxyz(yaw))))
        self.robot = self.robots[0]
        self.arms = tuple(IsaacArm(self, i, r, _base_matrix(*b)) for i, (r, b) in enumerate(zip(self.robots,
                                                                                                  DEFAULT_BASES)))
        self.cameras = {"cam_high": api["Camera"](prim_path="/World/cam_high", resolution=(self.width, self.height),
                                                  frequency=int(self.fps))}
        for cam, path in zip(WRIST_CAMERAS, ROBOT_PATHS):
            self.cameras[cam] = api["Camera"](prim_path=f"{path}/panda_hand/{cam}",
                                              resolution=(self.width, self.height), frequency=int(self.fps),
                                              translation=WRIST_CAMERA_IN_HAND[:3, 3].copy())
        self._material = api["PhysicsMaterial"](prim_path="/World/Materials/grip", static_friction=1.5,
                                                dynamic_friction=1.5, restitution=0.0)

    def _table(self, bases: tuple[tuple[float, float, float], ...]) -> None:
        """The table from one base to the other (x), 1.2 m wide, its top at z = 0."""
        x0, x1 = min(b[0] for b in bases), max(b[0] for b in bases)
        stage = self._api["get_current_stage"]()
        if stage.GetPrimAtPath(TABLE_PATH).IsValid():
            self.world.scene.remove_object("table")
            if stage.GetPrimAtPath(TABLE_PATH).IsValid():
                stage.RemovePrim(TABLE_PATH)
        self.world.scene.add(self._api["FixedCuboid"](
            prim_path=TABLE_PATH, name="table", position=np.array([0.5 * (x0 + x1), 0.0, -0.375]),
            scale=np.array([max(x1 - x0, 0.9), 1.2, 0.75]), color=np.array([0.62, 0.48, 0.33])))

    def _after_first_reset(self) -> None:
        for arm in self.arms:
            arm.init_kinematics()

    def _robots(self) -> list[Any]:
        return list(self.robots)

    def _links(self) -> list[Any]:
        return [link for arm in self.arms for link in arm.links()]

    def camera_pose(self, camera: str) -> np.ndarray:
        if camera in WRIST_CAMERAS:
            return self.arms[WRIST_CAMERAS.index(camera)].hand_pose() @ WRIST_CAMERA_IN_HAND
        return self._high_pose.copy()

    def _look_at_table(self) -> None:
        cx = 0.5 * (min(b[0] for b in self._bases) + max(b[0] for b in self._bases))
        pose = high_camera_pose(cx)  # OpenCV axes = Isaac's "ros" camera axes
        self._high_pose = pose
        self.cameras["cam_high"].set_world_pose(position=pose[:3, 3], orientation=quat_wxyz(pose[:3, :3]),
                                                camera_axes="ros")
        for cam in WRIST_CAMERAS:
            self.cameras[cam].set_local_pose(translation=WRIST_CAMERA_IN_HAND[:3, 3].copy(),
                                             orientation=quat_wxyz(WRIST_CAMERA_IN_HAND[:3, :3]), camera_axes="ros")

    def _place_bases(self, bases: tuple[tuple[float, float, float], ...]) -> None:
        """Robots (and the table) where the scene puts the bases; they stay there through later resets."""
        if tuple(tuple(float(v) for v in b) for b in bases) == self._bases:
            return
        for arm, (x, y, yaw) in zip(self.arms, bases):
            position, orientation = np.array([x, y, 0.0]), _yaw_wxyz(yaw)
            arm.robot.set_world_pose(position=position, orientation=orientation)
            arm.robot.set_default_state(position=position, orientation=orientation)
            arm.base = _base_matrix(x, y, yaw)
        self._table(bases)
        self._keep_materials()  # the new table's material stays
        self._bases = tuple(tuple(float(v) for v in b) for b in bases)

    # ------------------------------------------------------------------ TwoArmSim
    def reset(self, scene: TwoArmScene) -> None:  # type: ignore[override]
        if not isinstance(scene, TwoArmScene):
            raise ValueError(f"IsaacTwoArms.reset: needs a TwoArmScene (raygen.actors.tasks.two_arms."
                             f"sample_two_arm_scene), got {type(scene).__name__}")
        stage = self._begin_reset()
        self._place_bases(scene.bases)
        for arm, s in zip(self.arms, scene.arms):
            at = np.array([*s.object_xy, s.object_size / 2 + 1e-3])
            arm._object = self._add_object(arm._object_path, s.object_kind, s.object_size, s.rgba, at)
            name = f"marker{arm.index}_{self._object_index}"
            self._marker(f"/World/PlaceMarker{arm.index}", name, s.place_xy)
            self._episode_objects.append((name, f"/World/PlaceMarker{arm.index}"))
        self._object = self.arms[0]._object
        self._finish_reset(stage)

    def step(self, q_targets: list[np.ndarray], finger_targets: list[np.ndarray]) -> None:  # type: ignore[override]
        """One control frame for both arms: each arm's targets, then one rendering_dt of physics."""
        for arm, q, f in zip(self.arms, q_targets, finger_targets):
            arm.command(q, f)
        self._pose_for((self._steps + 1) / self.fps)  # the light as the frame at the end of this step shows it
        self._render(1)
        self._steps += 1

    def detach(self, arm: int | None = None) -> None:  # type: ignore[override]
        for a in self.arms if arm is None else (self.arms[arm],):
            a.detach()

    def attach(self, arm: int = 0) -> None:  # type: ignore[override]
        self.arms[arm].attach()

    def camera_is_moving(self, camera: str) -> bool:
        return camera in WRIST_CAMERAS

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "arms": len(ROBOT_PATHS), "scene_variation": ["lighting", "distractors",
                                                                                       "person"]}

    def gripper_geometry(self) -> dict[str, Any]:
        return {**super().gripper_geometry(), "wrist_cameras": list(WRIST_CAMERAS)}

