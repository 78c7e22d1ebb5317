"""Isaac Sim 5.x adapter for pick-and-place (GPU with RT cores; runs in its own child process).

Everything task-related (scene sampling, waypoints, schedule, success) is in
raygen.actors.tasks.pick_place and shared with PyBullet; this file only maps
the PickPlaceSim calls onto Isaac Sim:

- ``SimulationApp({"headless": True, ...})`` is created first; no ``omni.*``,
  ``pxr`` or ``isaacsim.core`` import happens before it (PhysX and Kit are
  process singletons: one world per process, which is why WorkerHost hosts
  one child per simulator).
- World at 120 Hz physics / 30 Hz rendering, a FixedCuboid table, the Franka
  from the Isaac assets root, a DynamicCuboid/DynamicCylinder with a
  high-friction PhysicsMaterial, an overhead and a wrist Camera with
  distance-to-image-plane depth and intrinsics.
- Grasps are a USD FixedJoint between the hand and the object (created on
  attach, removed on detach), the reliable way to hold small objects.
- Link poses (hand, flange, fingers) are read through rigid-body views, and a
  wrist camera's pose is its hand's times the shared mount: physics, not USD,
  which the GPU pipeline does not write back. IK is Lula's, called with the
  task's numpy seed and the robot's base pose (``lula_ik``).
- The materials isaacsim makes for each coloured object are removed with the
  episode's objects (``MATERIAL_ROOTS``).
- Cameras are re-initialized after every world reset, and a few frames are
  rendered before the first recorded one (the renderer warms up).
- Each instance gets its own Kit cache, shader cache and data folders
  (RAYGEN_CACHE_DIR from WorkerHost) and a CPU-thread limit.

Scene variation (lighting, distractors, platform, person) is :mod:`raygen.actors.isaac.variation`'s; a
Franka's readings and grasp are :mod:`raygen.actors.isaac.arm`'s (shared with the two-arm adapter).

Cannot be exercised on a machine without an RTX GPU; see tests/actors/test_isaac.py for what is checked
without one.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raygen._deps import require
from raygen.actors.isaac.arm import (  # noqa: F401 (PAD_OFFSET, DOWN_WXYZ, _yaw_wxyz: the adapters' names)
    DOWN_WXYZ,
    PAD_OFFSET,
    FrankaArm,
    _np,
    _pose_matrix,
    _yaw_wxyz,
    lula_ik,
    robot_links,
)
from raygen.actors.isaac.variation import (  # noqa: F401 (the stage paths and light scales, re-exported)
    DOME_LIGHT_PATH,
    DOME_PER_UNIT,
    KEY_LIGHT_PATH,
    KEY_PER_UNIT,
    PERSON_PATH,
    PLATFORM_PATH,
    VARIATION_PATH,
    IsaacVariation,
)
from raygen.actors.tasks.pick_place import (
    GRIPPER_OPEN,
    HOME_Q,
    TCP_D,
    WRIST_CAMERA_IN_HAND,
    CameraImage,
    Scene,
    look_at,
    quat_wxyz,
)

if TYPE_CHECKING:
    from raygen.actors.tasks.scene_plan import SceneVariation

logger = logging.getLogger(__name__)

__all__ = ["IsaacPickPlace", "isolate_caches", "kit_args"]

FRANKA_USD = "/Isaac/Robots/FrankaRobotics/FrankaPanda/franka.usd"  # 5.x layout (4.x: /Isaac/Robots/Franka/)
ROBOT_PATH = "/World/Franka"
OBJECT_PATH = "/World/Object"
JOINT_PATH = "/World/GraspJoint"
MARKER_RGB = (0.1, 0.8, 0.3)
MARKER_PATH = "/World/PlaceMarker"
MATERIAL_ROOTS = ("/World/Looks", "/World/Physics_Materials")
"""Where isaacsim's object classes put the material each new coloured object gets."""


def isolate_caches(cache_dir: Path) -> None:
    """Give this process its own Kit portable root and GPU shader/OptiX/CUDA/Warp caches, before Kit starts.

    SimulationApp adds ``--portable`` (Kit's cache, data and logs inside the shared install) unless
    ``--portable-root`` is on the process's own command line, so it goes into ``sys.argv``.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    if "--portable-root" not in sys.argv:
        sys.argv += ["--portable-root", str(cache_dir / "kit-root")]
    for var, sub in (("OPTIX_CACHE_PATH", "optix"), ("CUDA_CACHE_PATH", "cuda"),
                     ("__GL_SHADER_DISK_CACHE_PATH", "gl"), ("WARP_CACHE_PATH", "warp")):
        os.environ[var] = str(cache_dir / sub)


def kit_args(cache_dir: Path) -> list[str]:
    """Kit settings that point this instance's cache, data and log tokens at its own folders."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "/app/tokens/cache": cache_dir / "kit",
        "/app/tokens/data": cache_dir / "data",
        "/app/tokens/logs": cache_dir / "logs",
        "/rtx/shaderDb/cachePath": cache_dir / "shaders",
        "/rtx/optixDenoiser/cachePath": cache_dir / "optix",
    }
    return [f"--{key}={path}" for key, path in paths.items()]


class IsaacPickPlace(IsaacVariation, FrankaArm):
    """One Isaac Sim process running pick-and-place episodes."""

    name = "isaac"
    object_kinds = ("cube", "cylinder")
    camera_names = ("cam_high", "cam_wrist")
    restorable = True
    """It restores a rigid single-arm state (restore, teleport, perturbed_joints: bottleneck episodes)."""
    KIT_SETTINGS: tuple[str, ...] = ()
    """Kit settings this adapter adds to the command line of its SimulationApp."""

    def __init__(self, *, width: int = 512, height: int = 512, physics_hz: float = 120.0, fps: float = 30.0,
                 warmup_frames: int = 30, cpu_threads: int = 2, assets_root: str | None = None,
                 franka_usd: str = FRANKA_USD, active_gpu: int = 0):
        self._launch(width=width, height=height, fps=fps, cpu_threads=cpu_threads, active_gpu=active_gpu)
        self.warmup_frames = int(warmup_frames)
        root = assets_root or self._api["get_assets_root_path"]()
        if not root:
            raise RuntimeError("Isaac Sim assets root not found; set backend option assets_root (a local "
                               "copy of the Isaac assets or their URL)")
        self.world = self._api["World"](physics_dt=1.0 / physics_hz, rendering_dt=1.0 / fps, stage_units_in_meters=1.0,
                                        **self._world_options())
        self._substeps = max(1, round(physics_hz / fps))  # physics steps in one rendering_dt
        self._build_world(root + franka_usd)
        self._keep_materials()
        self.world.reset()
        self._after_first_reset()
        self._init_cameras()

    def _launch(self, *, width: int, height: int, fps: float, cpu_threads: int, active_gpu: int) -> None:
        """Start Kit (SimulationApp) in this process, then import what the adapter calls into ``self._api``."""
        isaacsim = require("isaacsim", "the Isaac Sim backend")
        self._rendering = True
        cache = Path(os.environ.get("RAYGEN_CACHE_DIR") or Path.home() / ".cache" / "raygen-isaac")
        isolate_caches(cache)
        self._active_gpu = int(active_gpu)
        self.app = isaacsim.SimulationApp({
            "headless": True, "width": int(width), "height": int(height), "renderer": "RaytracedLighting",
            "active_gpu": int(active_gpu), "physics_gpu": int(active_gpu), "multi_gpu": False,
            "limit_cpu_threads": int(cpu_threads), "anti_aliasing": 0,
            "extra_args": [*kit_args(cache), *self.KIT_SETTINGS],
        })
        # Only now may omni / pxr / isaacsim.core be imported.
        from isaacsim.core.api import World
        from isaacsim.core.api.materials import PhysicsMaterial
        from isaacsim.core.api.objects import DynamicCuboid, DynamicCylinder, FixedCuboid, VisualCylinder
        from isaacsim.core.prims import SingleArticulation, SingleRigidPrim, SingleXFormPrim
        from isaacsim.core.utils.stage import add_reference_to_stage, get_current_stage
        from isaacsim.core.utils.types import ArticulationAction
        from isaacsim.robot_motion.motion_generation import LulaKinematicsSolver, interface_config_loader
        from isaacsim.sensors.camera import Camera
        from isaacsim.storage.native import get_assets_root_path
        from pxr import Gf, UsdGeom, UsdLux, UsdPhysics

        self._api = {
            "World": World, "DynamicCuboid": DynamicCuboid, "DynamicCylinder": DynamicCylinder,
            "FixedCuboid": FixedCuboid, "VisualCylinder": VisualCylinder, "PhysicsMaterial": PhysicsMaterial,
            "SingleArticulation": SingleArticulation, "SingleXFormPrim": SingleXFormPrim,
            "SingleRigidPrim": SingleRigidPrim,
            "ArticulationAction": ArticulationAction, "add_reference_to_stage": add_reference_to_stage,
            "get_current_stage": get_current_stage, "Camera": Camera, "get_assets_root_path": get_assets_root_path,
            "LulaKinematicsSolver": LulaKinematicsSolver,
            "lula_config": lambda: interface_config_loader.load_supported_lula_kinematics_solver_config("Franka"),
            "Gf": Gf, "UsdPhysics": UsdPhysics, "UsdLux": UsdLux, "UsdGeom": UsdGeom,
        }
        self._variation: SceneVariation | None = None  # this episode's scene variation
        self._pending: SceneVariation | None = None  # set by vary(), built by the next reset()
        self._steps = 0
        self._var_objects: list[str] = []  # names in world.scene of the variation's rigid bodies
        self._platform_view: Any = None
        self._person: Any = None
        self._hidden_lights: list[str] = []
        self._object = None
        self._object_index = 0
        self.version = f"isaacsim {getattr(isaacsim, '__version__', '5.x')}"
        self.width, self.height, self.fps = int(width), int(height), float(fps)

    def _world_options(self) -> dict[str, Any]:
        """Extra World arguments (the default CPU physics pipeline with numpy arrays here)."""
        return {}

    def _build_world(self, franka_usd: str) -> None:
        """Table, robot, cameras and the grip material, before the first world.reset()."""
        api = self._api
        self.world.scene.add(api["FixedCuboid"](prim_path="/World/Table", name="table",
                                                position=np.array([0.45, 0, -0.375]),
                                                scale=np.array([0.9, 1.2, 0.75]), color=np.array([0.62, 0.48, 0.33])))
        api["add_reference_to_stage"](usd_path=franka_usd, prim_path=ROBOT_PATH)
        self.robot = self.world.scene.add(api["SingleArticulation"](prim_path=ROBOT_PATH, name="franka"))
        self._hand, self._flange, self._fingers = robot_links(api, ROBOT_PATH)
        self._hand_path, self._object_path, self._joint_path = f"{ROBOT_PATH}/panda_hand", OBJECT_PATH, JOINT_PATH
        self.cameras = {
            "cam_high": api["Camera"](prim_path="/World/cam_high", resolution=(self.width, self.height),
                                      frequency=int(self.fps), position=np.array([1.15, 0.0, 0.85])),
            "cam_wrist": api["Camera"](prim_path=f"{ROBOT_PATH}/panda_hand/cam_wrist",
                                       resolution=(self.width, self.height), frequency=int(self.fps),
                                       translation=WRIST_CAMERA_IN_HAND[:3, 3].copy()),
        }
        self._material = api["PhysicsMaterial"](prim_path="/World/Materials/grip", static_friction=1.5,
                                                dynamic_friction=1.5, restitution=0.0)

    def _after_first_reset(self) -> None:
        """Lula's kinematics for the robot."""
        self._lula = self._api["LulaKinematicsSolver"](**self._api["lula_config"]())

    def _links(self) -> list[Any]:
        """The link views read for poses (hand, flange, fingers of every robot)."""
        return [self._hand, self._flange, *self._fingers]

    def _marker(self, path: str, name: str, xy: tuple[float, float]) -> None:
        """The green place marker PyBullet draws: a flat visual disc (no collision) on the table."""
        self.world.scene.add(self._api["VisualCylinder"](prim_path=path, name=name,
                                                         position=np.array([xy[0], xy[1], 0.0006]), radius=0.035,
                                                         height=0.001, color=np.array(MARKER_RGB)))

    # ------------------------------------------------------------------ helpers
    def _init_cameras(self) -> None:
        for cam in self.cameras.values():
            cam.initialize()  # again after every world.reset(): Isaac 4.5+ drops render products on reset
            cam.add_distance_to_image_plane_to_frame()
        self._look_at_table()

    def camera_pose(self, camera: str) -> np.ndarray:
        """Camera-to-world [4,4], OpenCV axes: the overhead camera where it was put, a wrist camera from its
        hand's physics pose (USD poses are not written back on the GPU pipeline)."""
        if camera == "cam_high":
            return self._high_pose.copy()
        return self.hand_pose() @ WRIST_CAMERA_IN_HAND

    def _look_at_table(self) -> None:
        # overhead camera: PyBullet's pose (OpenCV axes = Isaac's "ros" camera axes), looking at the table
        pose = look_at(np.array([1.15, 0.0, 0.85]), np.array([0.45, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]))
        self._high_pose = pose
        self.cameras["cam_high"].set_world_pose(position=pose[:3, 3], orientation=quat_wxyz(pose[:3, :3]),
                                                camera_axes="ros")
        # wrist camera: the mount every simulator shares
        self.cameras["cam_wrist"].set_local_pose(
            translation=WRIST_CAMERA_IN_HAND[:3, 3].copy(), orientation=quat_wxyz(WRIST_CAMERA_IN_HAND[:3, :3]),
            camera_axes="ros")

    def _render(self, frames: int) -> None:
        """Advance ``frames`` rendering_dt. With rendering off, world.step(render=False) runs one physics_dt
        only, so it runs _substeps of them: the physics-only pass must simulate the same world as the
        rendered replay."""
        for _ in range(frames):
            if self._rendering:
                self.world.step(render=True)  # app.update(): one rendering_dt = _substeps physics steps
            else:
                for _ in range(self._substeps):
                    self.world.step(render=False)

    # ------------------------------------------------------------------ PickPlaceSim
    def reset(self, scene: Scene) -> None:
        stage = self._begin_reset()
        v = self._variation
        s = scene.object_size
        at = np.array([*scene.object_xy, s / 2 + 1e-3])
        if v is not None and v.platform is not None and v.platform.carries_object:
            at = np.array([*v.platform.start, v.platform.size[2] + s / 2 + 1e-3])  # on the platform
        self._object = self._add_object(OBJECT_PATH, scene.object_kind, s, scene.rgba, at)
        self._marker(MARKER_PATH, f"marker{self._object_index}", scene.place_xy)
        self._episode_objects.append((f"marker{self._object_index}", MARKER_PATH))
        self._finish_reset(stage)

    def _begin_reset(self) -> Any:
        """Let go, remove the last episode's objects, markers and variation, take up the pending variation."""
        self.detach()
        stage = self._api["get_current_stage"]()
        for name, path in getattr(self, "_episode_objects", []):
            self.world.scene.remove_object(name)
            if stage.GetPrimAtPath(path).IsValid():
                stage.RemovePrim(path)
        self._episode_objects: list[tuple[str, str]] = []
        self._clear_variation(stage)
        for root in MATERIAL_ROOTS:  # the materials isaacsim made for the last episode's objects
            prim = stage.GetPrimAtPath(root)
            for child in list(prim.GetChildren()) if prim.IsValid() else []:
                if child.GetPath().pathString not in self._kept_materials:
                    stage.RemovePrim(child.GetPath())
        self._variation, self._pending = self._pending, None
        self._steps = 0
        self._object_index += 1
        return stage

    def _add_object(self, path: str, kind: str, size: float, rgba: tuple[float, ...], at: np.ndarray) -> Any:
        """A rigid cube or cylinder of 80 g with the grip material, in the scene and in this episode's list."""
        name = f"{path.rsplit('/', 1)[-1].lower()}_{self._object_index}"
        common = dict(prim_path=path, name=name, mass=0.08, position=at, color=np.array(rgba[:3]),
                      physics_material=self._material)
        if kind == "cylinder":
            obj = self._api["DynamicCylinder"](radius=size / 2, height=size, **common)
        else:
            obj = self._api["DynamicCuboid"](scale=np.array([size, size, size]), **common)
        self._episode_objects.append((name, path))
        return self.world.scene.add(obj)

    def _finish_reset(self, stage: Any) -> None:
        """The variation's bodies, a world reset, the robots home, cameras up, then the warm-up frames."""
        v = self._variation
        if v is not None:
            self._build_variation(stage, v)
        self.world.reset()
        if v is not None and v.platform is not None:  # a view for kinematic targets, once physics is up
            self._platform_view = self.world.physics_sim_view.create_rigid_body_view(PLATFORM_PATH)
            self._drive_platform(0.0)
        for robot in self._robots():
            robot.set_joint_positions(self._dev(np.concatenate([HOME_Q, [GRIPPER_OPEN, GRIPPER_OPEN]])))
        for link in self._links():  # physics views, again after every reset (they are not in world.scene)
            link.initialize(self.world.physics_sim_view)
        self._init_cameras()
        self._pose_for(0.0)
        self._render(self.warmup_frames)  # the platform and the person stay at t = 0 meanwhile

    def _keep_materials(self) -> None:
        """Remember the visual and physics materials on the stage now (the world's own); the ones isaacsim
        adds for each episode's objects (one per coloured cuboid or cylinder) go at the next reset."""
        stage = self._api["get_current_stage"]()
        self._kept_materials = {child.GetPath().pathString for root in MATERIAL_ROOTS
                                if stage.GetPrimAtPath(root).IsValid()
                                for child in stage.GetPrimAtPath(root).GetChildren()}

    def _robots(self) -> list[Any]:
        return [self.robot]

    def _dev(self, x: np.ndarray) -> Any:
        """``x`` as the World's backend takes it (numpy here; a GPU pipeline takes torch tensors)."""
        return x

    def ik(self, target_xyz: np.ndarray, q_seed: np.ndarray) -> np.ndarray | None:
        return lula_ik(self._lula, self.robot, target_xyz, DOWN_WXYZ, q_seed)

    def step(self, q_target: np.ndarray, gripper_target: float | np.ndarray) -> None:
        fingers = np.broadcast_to(np.asarray(gripper_target, dtype=np.float64), (2,))
        action = self._api["ArticulationAction"](joint_positions=self._dev(np.concatenate([q_target, fingers])))
        self.robot.apply_action(action)
        v = self._variation
        if v is None:
            self._render(1)  # one rendering_dt: 4 physics steps at 120 Hz, with or without a frame
            return
        self._pose_for((self._steps + 1) / self.fps)  # what the frame at the end of this step shows
        if v.platform is None:
            self._render(1)
        else:  # a kinematic target per physics step, then the frame
            for k in range(self._substeps):
                self._drive_platform((self._steps + (k + 1) / self._substeps) / self.fps)
                self.world.step(render=False)
            if self._rendering:
                self.world.render()
        self._steps += 1

    def set_rendering(self, on: bool) -> None:
        """Physics alone (False: no RTX frame per step, for a pass that only decides success) or with frames."""
        self._rendering = bool(on)

    # ------------------------------------------------------------------ restore and perturb (bottleneck runs)
    def restore(self, q: np.ndarray, fingers: np.ndarray, object_pose: np.ndarray, grasped: bool) -> None:
        """Robot at joints ``q`` [7] and fingers [2], the object at ``object_pose`` (xyz + wxyz), all at rest;
        the object attached when ``grasped`` (after :meth:`reset` of the scene)."""
        self.detach()
        self.robot.set_joint_positions(np.concatenate([np.asarray(q, np.float64), np.asarray(fingers, np.float64)]))
        self.robot.set_joint_velocities(np.zeros(9))
        self._object.set_world_pose(position=np.asarray(object_pose[:3], np.float64),
                                    orientation=np.asarray(object_pose[3:], np.float64))
        self._object.set_linear_velocity(np.zeros(3))
        self._object.set_angular_velocity(np.zeros(3))
        self.robot.apply_action(self._api["ArticulationAction"](
            joint_positions=np.concatenate([np.asarray(q, np.float64), np.asarray(fingers, np.float64)])))
        self.world.step(render=False)  # PhysX updates link poses on a step: attach() reads the hand's pose
        if grasped:
            self.attach()

    def teleport(self, q: np.ndarray) -> None:
        """Arm to joints ``q`` at once; a held object moves with the hand (the joint is re-made there)."""
        held = self._holds()
        rel = np.linalg.inv(self.hand_pose()) @ _pose_matrix(*self._object.get_world_pose())
        if held:
            self.detach()
        fingers = _np(self.robot.get_joint_positions())[7:9]
        self.robot.set_joint_positions(np.concatenate([np.asarray(q, np.float64), fingers]))
        self.robot.set_joint_velocities(np.zeros(9))
        target = np.concatenate([np.asarray(q, np.float64), fingers])
        self.robot.apply_action(self._api["ArticulationAction"](joint_positions=target))
        self.world.step(render=False)  # link poses are current only after a step
        if held:
            m = self.hand_pose() @ rel
            self._object.set_world_pose(position=m[:3, 3], orientation=quat_wxyz(m[:3, :3]))
            self._object.set_linear_velocity(np.zeros(3))
            self._object.set_angular_velocity(np.zeros(3))
            self.attach()
        self.robot.apply_action(self._api["ArticulationAction"](
            joint_positions=np.concatenate([np.asarray(q, np.float64), fingers])))

    def perturbed_joints(self, q: np.ndarray, offset: np.ndarray, rotation: np.ndarray) -> np.ndarray | None:
        """Joints that move the TCP of joints ``q`` by ``offset`` [3] (world, m) and turn it by ``rotation``
        [3,3] (world axes, about the TCP), or None when Lula finds none. Called with the arm at ``q`` (after
        :meth:`restore`); Lula's forward kinematics gives the start pose, in the base frame, which is the world
        frame here (the Franka stands at the origin)."""
        base_pos, base_rot = self.robot.get_world_pose()
        self._lula.set_robot_base_pose(_np(base_pos), _np(base_rot))
        pos, rot = self._lula.compute_forward_kinematics("right_gripper", np.asarray(q, np.float64))
        want = np.asarray(rotation, np.float64) @ np.asarray(rot, np.float64)
        return lula_ik(self._lula, self.robot, np.asarray(pos, np.float64) + np.asarray(offset, np.float64),
                       quat_wxyz(want), q)

    def render(self) -> dict[str, CameraImage]:
        out = {}
        for name, cam in self.cameras.items():
            rgb = np.asarray(cam.get_rgba())[..., :3].astype(np.uint8)  # annotator data: numpy on every pipeline
            depth_m = _np(cam.get_depth())
            valid = np.isfinite(depth_m) & (depth_m > 0)
            mm = np.where(valid, np.round(np.where(valid, depth_m, 0) * 1000.0), 0).clip(0, 65535).astype(np.uint16)
            out[name] = CameraImage(rgb=np.ascontiguousarray(rgb), depth_mm=mm, pose=self.camera_pose(name))
        return out

    def capabilities(self) -> dict[str, Any]:
        return {"resolution": [self.height, self.width], "renderer": "RaytracedLighting",
                "scene_variation": ["lighting", "distractors", "platform", "person"]}

    def intrinsics(self, camera: str) -> np.ndarray:
        return np.asarray(self.cameras[camera].get_intrinsics_matrix(), dtype=np.float64)

    def camera_is_moving(self, camera: str) -> bool:
        return camera == "cam_wrist"

    def gripper_geometry(self) -> dict[str, Any]:
        return {
            "gripper": "franka_hand", "model": f"Isaac assets {FRANKA_USD}", "flange_link": "panda_link8",
            "tcp": f"panda_hand + {TCP_D} m along z", "pad_offset_in_finger_frame_m": PAD_OFFSET.tolist(),
            "finger_links": ["panda_leftfinger", "panda_rightfinger"],
            "tracks": ["centroid", "left_pad", "right_pad"],
        }

    def close(self) -> None:
        try:
            self.app.close()
        except Exception:  # the app may already be gone after a crash
            logger.debug("SimulationApp.close failed", exc_info=True)
