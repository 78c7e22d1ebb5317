"""PyBullet adapter for pick-and-place: pybullet_data's Franka Panda, a table, a cube or cylinder.

Cameras follow OpenCV conventions (x right, y down, z forward); poses are
camera-to-base. PyBullet's OpenGL view matrix is world -> (x right, y up,
z backward), so OpenCV = diag(1,-1,-1) of OpenGL and the view matrix PyBullet
needs is ``diag(1,-1,-1,1) @ inv(pose)``. Depth is the linearized depth
buffer (distance along the optical axis) in uint16 millimetres, 0 where
nothing was hit.

Scene variation (:mod:`raygen.actors.tasks.scene`, set by :meth:`BulletPickPlace.vary` before a reset):
distractors are dynamic boxes and cylinders; the platform is a dynamic slab held by a fixed constraint
whose pivot moves every physics substep (so it has a real velocity and a carried object rides it by
friction; it does not touch the table); the person is a capsule that collides with nothing, put where it
walks after every frame. The tiny renderer takes the light's direction, colour, ambient, diffuse and
specular terms and shadows as they are; the EGL renderer only takes a direction, so there the colour and
strength are applied to the image as a gain (white, intensity 0.35 and ambient 0.6 being a gain of 1). Both
renderers keep the last light they were given for later images of the same client, so the next episode
without lighting starts a fresh client.
"""

from __future__ import annotations

import logging
import os
import pkgutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raygen._deps import require
from raygen.actors.tasks.pick_place import GRIPPER_OPEN, HOME_Q, WRIST_CAMERA_IN_HAND, CameraImage, Scene
from raygen.actors.tasks.pick_place import look_at as _look_at

if TYPE_CHECKING:
    from raygen.actors.tasks.scene_plan import Light, SceneVariation

logger = logging.getLogger(__name__)

__all__ = ["BulletPickPlace", "FrankaReadings"]

_ARM = list(range(7))
_FINGERS = (9, 10)
_HAND = 8
_TCP = 11  # panda_grasptarget
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
PAD_OFFSET = np.array([0.0, 0.0, 0.045])  # finger link frame -> pad centre (pybullet_data panda.urdf)
NEAR, FAR = 0.02, 4.0
PERSON_RGBA = (0.3, 0.38, 0.62, 1.0)
PLATFORM_RGBA = (0.18, 0.18, 0.2, 1.0)
_NEUTRAL_LIGHT = 0.6 + 0.35  # the tiny renderer's own ambient + diffuse terms: a gain of 1 on EGL



def drive(p: Any, client: int, robot: int, q_target: Any, finger_targets: Any, finger_force: float = 40.0) -> None:
    """Position-control motor targets for a Panda's 7 joints and its two fingers (one value or one each)."""
    fingers = np.broadcast_to(np.asarray(finger_targets, dtype=np.float64), (2,)).tolist()
    p.setJointMotorControlArray(robot, _ARM, p.POSITION_CONTROL, targetPositions=[float(v) for v in q_target],
                                forces=[87.0] * 4 + [12.0] * 3, positionGains=[0.3] * 7, physicsClientId=client)
    p.setJointMotorControlArray(robot, list(_FINGERS), p.POSITION_CONTROL, targetPositions=fingers,
                                forces=[finger_force] * 2, physicsClientId=client)


def ik_down(p: Any, client: int, robot: int, link_pose: Any, target_xyz: np.ndarray, q_seed: np.ndarray,
            yaws: Any) -> np.ndarray | None:
    """PyBullet's IK for the TCP pointing down at ``target_xyz`` (world); tries the hand yaws (world, rad) in
    order and keeps the first that lands within 5 mm and 3 degrees (checked by forward kinematics through
    ``link_pose(link)``). The arm is left where it was."""
    target = np.asarray(target_xyz, np.float64)
    saved = [p.getJointState(robot, j, physicsClientId=client)[0] for j in _ARM]
    try:
        for yaw in yaws:
            for j, q in zip(_ARM, q_seed):
                p.resetJointState(robot, j, q, physicsClientId=client)
            down = p.getQuaternionFromEuler([np.pi, 0.0, yaw])
            sol = p.calculateInverseKinematics(robot, _TCP, target.tolist(), down, maxNumIterations=200,
                                               residualThreshold=1e-5, physicsClientId=client)
            q = np.asarray(sol[:7])
            for j, v in zip(_ARM, q):
                p.resetJointState(robot, j, v, physicsClientId=client)
            tcp = link_pose(_TCP)
            if np.linalg.norm(tcp[:3, 3] - target) < 0.005 and tcp[2, 2] < -np.cos(np.radians(3)):
                return q
    finally:
        for j, v in zip(_ARM, saved):
            p.resetJointState(robot, j, v, physicsClientId=client)
    return None

def _robot_urdf(visual: str) -> str:
    """The Panda URDF to load. 'lowpoly' draws the collision meshes (~770 instead of ~32000 lines of
    mesh per link): the tiny renderer then takes ~1.4 ms instead of ~21 ms per 128x128 image."""
    import pybullet_data

    if visual == "full":
        return "franka_panda/panda.urdf"
    src = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    mesh_dir = (src.parent / "meshes" / "collision").as_posix() + "/"
    text = src.read_text().replace("package://meshes/visual/", mesh_dir).replace("package://meshes/collision/",
                                                                                  mesh_dir)
    cache = Path(os.environ.get("RAYGEN_CACHE_DIR") or tempfile.gettempdir())
    cache.mkdir(parents=True, exist_ok=True)
    dst = cache / f"panda_lowpoly_{os.getpid()}.urdf"
    dst.write_text(text)
    return str(dst)


class FrankaReadings:
    """What the tasks read from one Panda and the object it is given, and its fixed-joint grasp: needs ``p``,
    ``client``, ``robot``, ``obj`` and ``_constraint`` (BulletPickPlace and each arm of BulletTwoArms)."""

    p: Any
    client: int
    robot: int
    obj: int | None
    _constraint: int | None

    def _link_pose(self, link: int) -> np.ndarray:
        st = self.p.getLinkState(self.robot, link, computeForwardKinematics=True, physicsClientId=self.client)
        t = np.eye(4)
        t[:3, :3] = np.asarray(self.p.getMatrixFromQuaternion(st[5])).reshape(3, 3)
        t[:3, 3] = st[4]
        return t

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        states = self.p.getJointStates(self.robot, _ARM + list(_FINGERS), physicsClientId=self.client)
        q = np.array([s[0] for s in states])
        qd = np.array([s[1] for s in states])
        return q[:7], qd[:7], q[7:]

    def flange_pose(self) -> np.ndarray:
        return self._link_pose(7)  # panda_link8, the flange

    def hand_pose(self) -> np.ndarray:
        return self._link_pose(_HAND)

    def tcp_position(self) -> np.ndarray:
        return self._link_pose(_TCP)[:3, 3]

    def finger_pads(self) -> np.ndarray:
        return np.stack([(self._link_pose(f) @ np.append(PAD_OFFSET, 1.0))[:3] for f in _FINGERS])

    def object_position(self) -> np.ndarray:
        return np.asarray(self.p.getBasePositionAndOrientation(self.obj, physicsClientId=self.client)[0])

    def object_pose(self) -> np.ndarray:
        pos, (x, y, z, w) = self.p.getBasePositionAndOrientation(self.obj, physicsClientId=self.client)
        return np.array([*pos, w, x, y, z])

    def attach(self) -> None:
        p, c = self.p, self.client
        hand = p.getLinkState(self.robot, _HAND, physicsClientId=c)
        obj_pos, obj_orn = p.getBasePositionAndOrientation(self.obj, physicsClientId=c)
        inv_pos, inv_orn = p.invertTransform(hand[4], hand[5])
        rel_pos, rel_orn = p.multiplyTransforms(inv_pos, inv_orn, obj_pos, obj_orn)
        self._constraint = p.createConstraint(self.robot, _HAND, self.obj, -1, p.JOINT_FIXED, [0, 0, 0], rel_pos,
                                              [0, 0, 0], parentFrameOrientation=rel_orn, physicsClientId=c)
        p.changeConstraint(self._constraint, maxForce=200, physicsClientId=c)
        for f in _FINGERS:  # the fixed joint holds it; fingers must not fight it
            p.setCollisionFilterPair(self.robot, self.obj, f, -1, 0, physicsClientId=c)

    def detach(self) -> None:
        p, c = self.p, self.client
        if self._constraint is not None:
            p.removeConstraint(self._constraint, physicsClientId=c)
            self._constraint = None
        for f in _FINGERS:
            p.setCollisionFilterPair(self.robot, self.obj, f, -1, 1, physicsClientId=c)


class BulletPickPlace(FrankaReadings):
    """One PyBullet world (DIRECT mode) that runs pick-and-place episodes."""

    name = "bullet"
    object_kinds = ("cube", "cylinder")
    camera_names = ("cam_high", "cam_wrist")
    restorable = True
    """It restores a rigid single-arm state (restore, teleport, perturbed_joints: bottleneck episodes)."""

    def __init__(self, *, width: int = 128, height: int = 128, fov_deg: float = 60.0, renderer: str = "auto",
                 fps: float = 30.0, substeps: int = 8, robot_visual: str = "lowpoly"):
        self.p = require("pybullet", "the PyBullet backend")
        self.version = f"pybullet {self.p.getAPIVersion()}"
        self.width, self.height, self.fov = int(width), int(height), float(fov_deg)
        self.fps, self.substeps = float(fps), int(substeps)
        if robot_visual not in ("lowpoly", "full"):
            raise ValueError(f"robot_visual: {robot_visual!r} is not one of lowpoly, full")
        self.robot_urdf = _robot_urdf(robot_visual)
        self.client = self.p.connect(self.p.DIRECT)
        self.renderer_name = "tiny"
        self._egl_plugin: int | None = None
        self._constraint: int | None = None
        if renderer not in ("auto", "tiny", "egl"):
            raise ValueError(f"renderer: {renderer!r} is not one of auto, tiny, egl")
        self.render_probe: dict[str, float] = {}
        self._variation: SceneVariation | None = None  # this episode's scene variation
        self._pending: SceneVariation | None = None  # set by vary(), built by the next reset()
        self._steps = 0  # frames stepped since the reset
        self._lit = False  # a light was given to the renderer (both keep it for later images of the client)
        self._platform: tuple[int, int] | None = None  # (body, constraint)
        self._person: int | None = None
        self.distractors: list[int] = []
        self._choose_renderer(renderer)
        fy = (self.height / 2) / np.tan(np.radians(self.fov) / 2)
        self._k = np.array([[fy, 0, self.width / 2 - 0.5], [0, fy, self.height / 2 - 0.5], [0, 0, 1.0]])
        self._proj = self.p.computeProjectionMatrixFOV(self.fov, self.width / self.height, NEAR, FAR)

    # ------------------------------------------------------------------ world
    def _build(self, scene: Scene | None) -> None:
        p, c = self.p, self.client
        import pybullet_data

        p.resetSimulation(physicsClientId=c)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / (self.fps * self.substeps), physicsClientId=c)
        floor_half = [2.0, 2.0, 0.01]  # a flat box: plane.urdf's texture costs the tiny renderer ~6 ms an image
        p.createMultiBody(
            0, p.createCollisionShape(p.GEOM_BOX, halfExtents=floor_half, physicsClientId=c),
            p.createVisualShape(p.GEOM_BOX, halfExtents=floor_half, rgbaColor=[0.55, 0.57, 0.6, 1], physicsClientId=c),
            basePosition=[0, 0, -0.76], physicsClientId=c)
        table_half = [0.45, 0.6, 0.375]
        self.table = p.createMultiBody(
            0, p.createCollisionShape(p.GEOM_BOX, halfExtents=table_half, physicsClientId=c),
            p.createVisualShape(p.GEOM_BOX, halfExtents=table_half, rgbaColor=[0.62, 0.48, 0.33, 1], physicsClientId=c),
            basePosition=[0.45, 0, -0.375], physicsClientId=c)
        self.robot = p.loadURDF(self.robot_urdf, [0, 0, 0], useFixedBase=True,
                                flags=p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT, physicsClientId=c)
        for j, q in zip(_ARM, HOME_Q):
            p.resetJointState(self.robot, j, q, physicsClientId=c)
        for j in _FINGERS:
            p.resetJointState(self.robot, j, GRIPPER_OPEN, physicsClientId=c)
        self.obj = None
        if scene is None:
            return
        s = scene.object_size
        if scene.object_kind == "cylinder":
            col = p.createCollisionShape(p.GEOM_CYLINDER, radius=s / 2, height=s, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=s / 2, length=s, rgbaColor=scene.rgba, physicsClientId=c)
        else:
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[s / 2] * 3, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[s / 2] * 3, rgbaColor=scene.rgba, physicsClientId=c)
        self.obj = p.createMultiBody(0.08, col, vis, basePosition=[*scene.object_xy, s / 2 + 1e-4],
                                     physicsClientId=c)
        p.changeDynamics(self.obj, -1, lateralFriction=1.5, spinningFriction=0.01, physicsClientId=c)
        marker = p.createVisualShape(p.GEOM_CYLINDER, radius=0.035, length=0.001, rgbaColor=[0.1, 0.8, 0.3, 1],
                                     physicsClientId=c)
        p.createMultiBody(0, -1, marker, basePosition=[*scene.place_xy, 0.0006], physicsClientId=c)

    def _choose_renderer(self, wanted: str) -> None:
        """tiny (CPU rasterizer) or the EGL plugin (GPU, or Mesa's llvmpipe): 'auto' times both here.

        EGL is timed on a throwaway client: a plugin unloaded from a client leaves its renderer stale.
        """
        main = self.client
        self._build(None)
        if wanted in ("auto", "tiny"):
            self.render_probe["tiny_s"] = self._time_render()
        if wanted in ("auto", "egl"):
            self.client = self.p.connect(self.p.DIRECT)
            try:
                self._load_egl()
                self._build(None)  # bodies must be created after the plugin loads to be drawn by it
                self.render_probe["egl_s"] = self._time_render(check_blank=True)
            except RuntimeError as exc:
                logger.info("EGL rendering unavailable: %s", exc)
                if wanted == "egl":
                    raise
            finally:
                self.p.disconnect(physicsClientId=self.client)
                self.client, self._egl_plugin = main, None
        if "egl_s" in self.render_probe and self.render_probe["egl_s"] < self.render_probe.get("tiny_s", np.inf):
            self.renderer_name = "egl"
            self._load_egl()
        logger.info("renderer %s at %dx%d (probe ms: %s)", self.renderer_name, self.width, self.height,
                    {k: round(v * 1000, 1) for k, v in self.render_probe.items()})

    def _load_egl(self) -> None:
        loader = pkgutil.get_loader("eglRenderer")
        if loader is None:
            raise RuntimeError("PyBullet's eglRenderer plugin is not installed")
        plugin = self.p.loadPlugin(loader.get_filename(), "_eglRendererPlugin", physicsClientId=self.client)
        if plugin < 0:
            raise RuntimeError("the eglRenderer plugin did not load")
        self._egl_plugin = plugin

    def _time_render(self, check_blank: bool = False, n: int = 3) -> float:
        pose = _look_at(np.array([1.1, 0.0, 0.8]), np.array([0.4, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]))
        proj = self.p.computeProjectionMatrixFOV(self.fov, self.width / self.height, NEAR, FAR)
        self._raw_image(pose, proj)  # warm-up
        t0 = time.perf_counter()
        for _ in range(n):
            _, depth = self._raw_image(pose, proj)
        dt = (time.perf_counter() - t0) / n
        if check_blank and np.all(depth >= 0.9999):
            raise RuntimeError("the EGL renderer returned an empty depth buffer")
        return dt

    def _raw_image(self, pose: np.ndarray, proj: Any, light: Light | None = None) -> tuple[np.ndarray, np.ndarray]:
        view = (_GL_TO_CV @ np.linalg.inv(pose)).T.reshape(-1).tolist()  # column-major for OpenGL
        renderer = self.p.ER_BULLET_HARDWARE_OPENGL if self._egl_plugin is not None else self.p.ER_TINY_RENDERER
        kw: dict[str, Any] = {}
        if light is not None and self._egl_plugin is not None:
            kw = {"lightDirection": light.direction.tolist()}
            self._lit = True
        elif light is not None:  # all terms at once: one given alone sets the others to 0
            self._lit = True
            kw = {"lightDirection": light.direction.tolist(), "lightColor": light.rgb.tolist(), "lightDistance": 2.0,
                  "lightAmbientCoeff": light.ambient, "lightDiffuseCoeff": light.intensity,
                  "lightSpecularCoeff": light.specular, "shadow": int(light.shadows)}
        _, _, rgba, depth, _ = self.p.getCameraImage(self.width, self.height, view, proj, renderer=renderer,
                                                     flags=self.p.ER_NO_SEGMENTATION_MASK,
                                                     physicsClientId=self.client, **kw)
        rgba = np.asarray(rgba, dtype=np.uint8).reshape(self.height, self.width, 4)
        rgb = rgba[..., :3]
        if light is not None and self._egl_plugin is not None:
            gain = light.rgb * (light.ambient + light.intensity) / _NEUTRAL_LIGHT
            rgb = np.clip(rgb * gain, 0, 255).astype(np.uint8)
        return rgb, np.asarray(depth, dtype=np.float32).reshape(self.height, self.width)

    # ------------------------------------------------------------------ PickPlaceSim
    def reset(self, scene: Scene) -> None:
        if self._lit and (self._pending is None or self._pending.lighting is None):
            self._fresh_client()  # both renderers would keep the last episode's light
        self._constraint = None
        self._variation, self._pending = self._pending, None
        self._steps = 0
        self.distractors, self._platform, self._person = [], None, None  # the last episode's bodies are gone
        self._build(scene)
        if self._variation is not None:
            self._build_variation(scene, self._variation)

    def vary(self, variation: SceneVariation) -> None:
        """The next :meth:`reset` builds ``variation`` too (distractors, platform, person; light at render)."""
        self._pending = variation

    def _fresh_client(self) -> None:
        """A new PyBullet client (renderer state and all), with the EGL plugin again when it is in use."""
        pending, self._pending = self._pending, None  # kept for the reset that asked for the new client
        self.p.disconnect(physicsClientId=self.client)
        self.client = self.p.connect(self.p.DIRECT)
        if self._egl_plugin is not None:
            self._load_egl()
        self._lit = False
        self._new_client()
        self._pending = pending

    def _new_client(self) -> None:
        """What a subclass does in a new client before its first episode (nothing here)."""

    def _build_variation(self, scene: Scene, v: SceneVariation) -> None:
        p, c = self.p, self.client
        for d in v.distractors:
            sx, sy, sz = d.size
            if d.kind == "cylinder":
                col = p.createCollisionShape(p.GEOM_CYLINDER, radius=sx / 2, height=sz, physicsClientId=c)
                vis = p.createVisualShape(p.GEOM_CYLINDER, radius=sx / 2, length=sz, rgbaColor=d.rgba,
                                          physicsClientId=c)
            else:
                col = p.createCollisionShape(p.GEOM_BOX, halfExtents=[sx / 2, sy / 2, sz / 2], physicsClientId=c)
                vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[sx / 2, sy / 2, sz / 2], rgbaColor=d.rgba,
                                          physicsClientId=c)
            body = p.createMultiBody(v.params.distractors.mass_kg, col, vis, basePosition=[*d.xy, sz / 2 + 1e-4],
                                     baseOrientation=p.getQuaternionFromEuler([0, 0, d.yaw]), physicsClientId=c)
            p.changeDynamics(body, -1, lateralFriction=1.0, physicsClientId=c)
            self.distractors.append(body)
        if v.platform is not None:
            pf = v.platform
            half = [pf.size[0] / 2, pf.size[1] / 2, pf.size[2] / 2]
            yaw = p.getQuaternionFromEuler([0, 0, pf.heading_rad])
            at = [*pf.position(0.0).tolist(), pf.size[2] / 2]
            body = p.createMultiBody(
                5.0, p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c),
                p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=PLATFORM_RGBA, physicsClientId=c),
                basePosition=at, baseOrientation=yaw, physicsClientId=c)
            p.setCollisionFilterPair(body, self.table, -1, -1, 0, physicsClientId=c)  # it slides over the table
            p.changeDynamics(body, -1, lateralFriction=1.5, physicsClientId=c)
            cid = p.createConstraint(body, -1, -1, -1, p.JOINT_FIXED, [0, 0, 0], [0, 0, 0], at,
                                     childFrameOrientation=yaw, physicsClientId=c)
            p.changeConstraint(cid, maxForce=5000, physicsClientId=c)
            self._platform = (body, cid)
            if pf.carries_object:
                s = scene.object_size
                p.resetBasePositionAndOrientation(self.obj, [*pf.start, pf.size[2] + s / 2 + 1e-4], [0, 0, 0, 1],
                                                  physicsClientId=c)
        if v.person is not None:
            pr = v.person
            length = max(pr.height - 2 * pr.radius, 0.0)
            col = p.createCollisionShape(p.GEOM_CAPSULE, radius=pr.radius, height=length, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CAPSULE, radius=pr.radius, length=length, rgbaColor=PERSON_RGBA,
                                      physicsClientId=c)
            self._person = p.createMultiBody(0, col, vis, basePosition=[*pr.position(0.0).tolist(), pr.height / 2],
                                             physicsClientId=c)
            p.setCollisionFilterGroupMask(self._person, -1, 0, 0, physicsClientId=c)  # touches nothing

    def ik(self, target_xyz: np.ndarray, q_seed: np.ndarray) -> np.ndarray | None:
        """PyBullet's IK for the TCP pointing down; tries a few hand yaws, keeps the first that lands
        within 5 mm and 3 degrees (checked by forward kinematics)."""
        return ik_down(self.p, self.client, self.robot, self._link_pose, target_xyz, q_seed,
                       (0.0, np.pi / 4, -np.pi / 4, np.pi / 2, -np.pi / 2))

    def step(self, q_target: np.ndarray, gripper_target: float | np.ndarray) -> None:
        p, c = self.p, self.client
        drive(p, c, self.robot, q_target, gripper_target)
        v = self._variation
        if v is None or (v.platform is None and v.person is None):
            for _ in range(self.substeps):
                p.stepSimulation(physicsClientId=c)
        else:
            for k in range(self.substeps):
                if self._platform is not None:
                    at = v.platform.position((self._steps + (k + 1) / self.substeps) / self.fps)
                    p.changeConstraint(self._platform[1], jointChildPivot=[*at.tolist(), v.platform.size[2] / 2],
                                       maxForce=5000, physicsClientId=c)
                p.stepSimulation(physicsClientId=c)
        self._steps += 1
        self._move_person()

    def _move_person(self) -> None:
        """The person proxy where it walks at the current frame (it touches nothing: put, not simulated)."""
        if self._person is not None:
            person = self._variation.person
            xy = person.position(self._steps / self.fps)
            self.p.resetBasePositionAndOrientation(self._person, [*xy.tolist(), person.height / 2], [0, 0, 0, 1],
                                                   physicsClientId=self.client)

    def set_rendering(self, on: bool) -> None:
        """Nothing to switch: PyBullet draws only when render() is called."""

    # ------------------------------------------------------------------ restore and perturb (bottleneck runs)
    def restore(self, q: np.ndarray, fingers: np.ndarray, object_pose: np.ndarray, grasped: bool) -> None:
        """Put the robot at joints ``q`` [7] and fingers [2], the object at ``object_pose`` [7] (xyz + wxyz),
        everything at rest, and attach the object when ``grasped`` (after :meth:`reset` of the scene)."""
        p, c = self.p, self.client
        self.detach()
        for j, v in zip(_ARM, q):
            p.resetJointState(self.robot, j, float(v), 0.0, physicsClientId=c)
        for j, v in zip(_FINGERS, fingers):
            p.resetJointState(self.robot, j, float(v), 0.0, physicsClientId=c)
        x, y, z, qw, qx, qy, qz = (float(v) for v in object_pose)
        p.resetBasePositionAndOrientation(self.obj, [x, y, z], [qx, qy, qz, qw], physicsClientId=c)
        p.resetBaseVelocity(self.obj, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        self._hold(q, fingers)
        if grasped:
            self.attach()

    def teleport(self, q: np.ndarray) -> None:
        """Move the arm to joints ``q`` at once; a held object moves with the hand."""
        p, c = self.p, self.client
        rel = None
        if self._constraint is not None:
            rel = np.linalg.inv(self._link_pose(_HAND)) @ self._object_matrix()
        for j, v in zip(_ARM, q):
            p.resetJointState(self.robot, j, float(v), 0.0, physicsClientId=c)
        if rel is not None:
            m = self._link_pose(_HAND) @ rel
            from raygen.actors.tasks.pick_place import quat_wxyz

            w, x, y, z = quat_wxyz(m[:3, :3])
            p.resetBasePositionAndOrientation(self.obj, m[:3, 3].tolist(), [x, y, z, w], physicsClientId=c)
            p.resetBaseVelocity(self.obj, [0, 0, 0], [0, 0, 0], physicsClientId=c)
            p.changeConstraint(self._constraint, maxForce=200, physicsClientId=c)
        self._hold(q, self.joint_state()[2])

    def _hold(self, q: np.ndarray, fingers: np.ndarray) -> None:
        """Motor targets at the current joints, so the next step does not pull towards older ones."""
        drive(self.p, self.client, self.robot, q, fingers)

    def _object_matrix(self) -> np.ndarray:
        pos, orn = self.p.getBasePositionAndOrientation(self.obj, physicsClientId=self.client)
        t = np.eye(4)
        t[:3, :3] = np.asarray(self.p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        t[:3, 3] = pos
        return t

    def perturbed_joints(self, q: np.ndarray, offset: np.ndarray, rotation: np.ndarray) -> np.ndarray | None:
        """Joints that move the TCP of joints ``q`` by ``offset`` [3] (world, m) and turn it by ``rotation``
        [3,3] (world axes, about the TCP), or None when PyBullet's IK misses that pose by more than 1 cm or
        5 degrees (checked by forward kinematics). The arm is left where it was."""
        p, c = self.p, self.client
        saved = [p.getJointState(self.robot, j, physicsClientId=c)[:2] for j in _ARM]
        try:
            for j, v in zip(_ARM, q):
                p.resetJointState(self.robot, j, float(v), physicsClientId=c)
            start = self._link_pose(_TCP)
            xyz = start[:3, 3] + np.asarray(offset, np.float64)
            want = np.asarray(rotation, np.float64) @ start[:3, :3]
            from raygen.actors.tasks.pick_place import quat_wxyz

            w, x, y, z = quat_wxyz(want)
            sol = p.calculateInverseKinematics(self.robot, _TCP, xyz.tolist(), [x, y, z, w],
                                               maxNumIterations=300, residualThreshold=1e-5, physicsClientId=c)
            out = np.asarray(sol[:7], dtype=np.float64)
            for j, v in zip(_ARM, out):
                p.resetJointState(self.robot, j, float(v), physicsClientId=c)
            got = self._link_pose(_TCP)
            angle = np.degrees(np.arccos(np.clip((np.trace(got[:3, :3].T @ want) - 1) / 2, -1.0, 1.0)))
            ok = np.linalg.norm(got[:3, 3] - xyz) < 0.01 and angle < 5.0
        finally:
            for j, (v, vd) in zip(_ARM, saved):
                p.resetJointState(self.robot, j, v, vd, physicsClientId=c)
        return out if ok else None

    def camera_pose(self, camera: str) -> np.ndarray:
        if camera == "cam_high":
            return _look_at(np.array([1.15, 0.0, 0.85]), np.array([0.45, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]))
        return self.hand_pose() @ WRIST_CAMERA_IN_HAND

    def render(self) -> dict[str, CameraImage]:
        out = {}
        v = self._variation
        light = v.lighting.at(self._steps / self.fps) if v is not None and v.lighting is not None else None
        for cam in self.camera_names:
            pose = self.camera_pose(cam)
            rgb, zbuf = self._raw_image(pose, self._proj, light)
            depth_m = FAR * NEAR / (FAR - (FAR - NEAR) * zbuf)
            mm = np.where(zbuf >= 0.99999, 0, np.round(depth_m * 1000.0)).clip(0, 65535).astype(np.uint16)
            out[cam] = CameraImage(rgb=np.ascontiguousarray(rgb), depth_mm=mm, pose=pose)
        return out

    def intrinsics(self, camera: str) -> np.ndarray:
        return self._k.copy()

    def capabilities(self) -> dict[str, Any]:
        return {"resolution": [self.height, self.width], "renderer": self.renderer_name,
                "render_probe_s": self.render_probe, "scene_variation": ["lighting", "distractors", "platform",
                                                                         "person"]}

    def camera_is_moving(self, camera: str) -> bool:
        return camera == "cam_wrist"

    def gripper_geometry(self) -> dict[str, Any]:
        return {
            "gripper": "franka_hand", "model": "pybullet_data franka_panda/panda.urdf",
            "flange_link": "panda_link8", "tcp_link": "panda_grasptarget",
            "pad_offset_in_finger_frame_m": PAD_OFFSET.tolist(), "finger_links": ["panda_leftfinger",
                                                                                  "panda_rightfinger"],
            "tracks": ["centroid", "left_pad", "right_pad"],
        }

    def close(self) -> None:
        try:
            self.p.disconnect(physicsClientId=self.client)
        except Exception:  # already gone
            pass
