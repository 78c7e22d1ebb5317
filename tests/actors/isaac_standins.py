"""TEST DOUBLES for the isaacsim classes (Isaac Sim cannot be installed here: no RTX GPU, and its wheels come
from pypi.nvidia.com), on a REAL USD stage (usd-core's pxr). The raygen Isaac adapters run unchanged against
them; what the stand-ins do is only what the USD stage needs to answer (prims at paths, poses as xform ops)
and a record of every call, so the adapters' USD authoring and their frame maths can be checked. Physics,
rendering and the articulation's dynamics are not modelled: a robot's links sit at fixed offsets from its
root (``Fake.physics`` holds the link poses physics reports; a test may move them, USD keeps the old ones, as on
the GPU pipeline), joints are whatever was last set; a World made with a CUDA device hands out
``DeviceArray`` (a stand-in for CUDA tensors).

``install(sim)`` gives an adapter made with ``object.__new__`` the attributes IsaacPickPlace._launch would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pxr import Gf, Sdf, Usd, UsdGeom, UsdLux, UsdPhysics, UsdShade, Vt

# A robot's links relative to its root (standing in for franka.usd): the hand 0.5 m ahead and 0.3 m up,
# pointing down (180 degrees about x), the fingers 4 cm either side of it along the hand's y.
HAND_IN_ROOT = np.array([[1.0, 0, 0, 0.5], [0, -1.0, 0, 0.0], [0, 0, -1.0, 0.3], [0, 0, 0, 1]])
LINKS = {
    "panda_link8": HAND_IN_ROOT @ np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -0.107], [0, 0, 0, 1]]),
    "panda_hand": HAND_IN_ROOT,
    "panda_leftfinger": HAND_IN_ROOT @ np.array([[1.0, 0, 0, 0], [0, 1, 0, 0.04], [0, 0, 1, 0.0584], [0, 0, 0, 1]]),
    "panda_rightfinger": HAND_IN_ROOT @ np.array([[-1.0, 0, 0, 0], [0, -1, 0, -0.04], [0, 0, 1, 0.0584],
                                                  [0, 0, 0, 1]]),
}


def wxyz_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = (float(v) for v in q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_wxyz(r: np.ndarray) -> np.ndarray:
    q = Gf.Matrix3d(*np.asarray(r, np.float64).T.reshape(-1).tolist()).ExtractRotation().GetQuat()
    return np.array([q.GetReal(), *q.GetImaginary()])


def set_pose(stage: Usd.Stage, path: str, m: np.ndarray, local: bool = False) -> None:
    """Write ``m`` [4,4] as the prim's transform (world, or relative to its parent with ``local``)."""
    prim = stage.GetPrimAtPath(path)
    if not local:
        parent = UsdGeom.Xformable(prim.GetParent())
        if prim.GetParent().IsA(UsdGeom.Xformable):
            to_parent = np.array(parent.ComputeLocalToWorldTransform(Usd.TimeCode.Default())).T
            m = np.linalg.inv(to_parent) @ m
    xf = UsdGeom.Xformable(prim)
    xf.ClearXformOpOrder()
    xf.AddTransformOp().Set(Gf.Matrix4d(*np.asarray(m, np.float64).T.reshape(-1).tolist()))


def world_matrix(stage: Usd.Stage, path: str) -> np.ndarray:
    return np.array(UsdGeom.Xformable(stage.GetPrimAtPath(path)).ComputeLocalToWorldTransform(
        Usd.TimeCode.Default())).T


class DeviceArray:
    """What the GPU pipeline returns (a CUDA torch tensor): only ``.detach().cpu().numpy()`` gives numpy;
    numpy conversion of the tensor itself fails, as it does for a CUDA tensor."""

    def __init__(self, a):
        self._a = np.asarray(a, np.float32)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self._a.copy()

    def __array__(self, *args, **kw):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                        "to host memory first.")


def plain(x):
    """numpy of what an adapter handed a stand-in (a DeviceArray on the GPU pipeline)."""
    return x.numpy() if isinstance(x, DeviceArray) else np.asarray(x, np.float64)


class Log:
    """Every stand-in call, in order: (what, path or name, kwargs)."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, what: str, key: str, **kw: Any) -> None:
        self.calls.append((what, key, kw))

    def of(self, what: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, kw) for w, k, kw in self.calls if w == what]


class Fake:
    """Builds the stand-in classes bound to one stage and one log."""

    def __init__(self):
        self.stage = Usd.Stage.CreateInMemory()
        self.log = Log()
        self.nodes: np.ndarray | None = None  # what soft-body views return, [N,3]
        self.rest_local: np.ndarray | None = None  # a deformable body's cooked rest points, [N,3]
        self.gpu = False  # a World(device="cuda..."): getters hand out DeviceArrays
        self.physics: dict[str, np.ndarray] = {}  # link path -> its pose as physics has it (USD is not updated)
        stage, log, fake = self.stage, self.log, self

        def out(x):
            return DeviceArray(x) if fake.gpu else np.asarray(x, np.float64)

        class Prim:  # DynamicCuboid, DynamicCylinder, FixedCuboid, VisualCylinder, SingleXFormPrim
            def __init__(self, prim_path, name=None, position=None, orientation=None, **kw):
                if not stage.GetPrimAtPath(prim_path).IsValid():
                    UsdGeom.Xform.Define(stage, prim_path)
                self.prim_path, self.name, self.kw = prim_path, name, kw
                log("prim", prim_path, name=name, position=position, orientation=orientation, **kw)
                if kw.get("color") is not None:  # as isaacsim's objects: a new material for each coloured one
                    n = 0
                    while stage.GetPrimAtPath(f"/World/Looks/visual_material_{n}").IsValid():
                        n += 1
                    UsdShade.Material.Define(stage, f"/World/Looks/visual_material_{n}")
                if position is not None:
                    self.set_world_pose(position, np.array([1.0, 0, 0, 0]) if orientation is None else orientation)

            def set_world_pose(self, position=None, orientation=None):
                m = np.eye(4)
                m[:3, :3], m[:3, 3] = wxyz_matrix(orientation), np.asarray(position, np.float64)
                set_pose(stage, self.prim_path, m)

            def get_world_pose(self):
                m = world_matrix(stage, self.prim_path)
                return m[:3, 3].copy(), matrix_wxyz(m[:3, :3])

        class Articulation(Prim):  # SingleArticulation: the root prim; its links are fixed children
            def __init__(self, prim_path, name, position=None, orientation=None):
                super().__init__(prim_path, name, position, orientation)
                self.q, self.qd, self.actions = np.zeros(9), np.zeros(9), []

            def set_default_state(self, position=None, orientation=None):
                log("default_state", self.prim_path, position=position, orientation=orientation)

            def set_joint_positions(self, q):
                self.q = plain(q).astype(np.float64)

            def get_joint_positions(self):
                return out(self.q)

            def get_joint_velocities(self):
                return out(self.qd)

            def get_world_pose(self):
                position, quat = super().get_world_pose()
                return out(position), out(quat)

            def apply_action(self, action):
                self.actions.append(plain(action.joint_positions).copy())

        def add_reference_to_stage(usd_path, prim_path):
            log("reference", prim_path, usd_path=usd_path)
            UsdGeom.Xform.Define(stage, prim_path)
            for link, m in LINKS.items():
                UsdGeom.Xform.Define(stage, f"{prim_path}/{link}")
                set_pose(stage, f"{prim_path}/{link}", m, local=True)

        class Link(Prim):  # SingleRigidPrim on an articulation link: its pose from physics, not from USD
            def __init__(self, prim_path, name):
                super().__init__(prim_path, name)
                self.ready = False

            def initialize(self, physics_sim_view=None):
                self.ready = True  # physics has the link again; its pose is what USD had at the reset
                fake.physics[self.prim_path] = world_matrix(stage, self.prim_path)

            def get_world_pose(self):
                assert self.ready, f"{self.prim_path}: read before initialize() after a reset"
                m = fake.physics[self.prim_path]
                return out(m[:3, 3]), out(matrix_wxyz(m[:3, :3]))

        class Camera(Prim):
            def __init__(self, prim_path, resolution, frequency, position=None, translation=None):
                UsdGeom.Camera.Define(stage, prim_path)
                super().__init__(prim_path, prim_path)

            def initialize(self):
                log("camera_init", self.prim_path)

            def add_distance_to_image_plane_to_frame(self):
                pass

            def set_world_pose(self, position=None, orientation=None, camera_axes="world"):
                log("camera_world_pose", self.prim_path, position=np.asarray(position), orientation=orientation,
                    camera_axes=camera_axes)

            def set_local_pose(self, translation=None, orientation=None, camera_axes="world"):
                log("camera_local_pose", self.prim_path, translation=np.asarray(translation),
                    orientation=orientation, camera_axes=camera_axes)

        class Scene:
            def __init__(self):
                self.objects: dict[str, Any] = {}

            def add(self, obj):
                if obj.name in self.objects:  # as isaacsim's Scene.add
                    raise Exception(f"Cannot add the object {obj.name} to the scene since its name is not unique")
                self.objects[obj.name] = obj
                return obj

            def remove_object(self, name):
                self.objects.pop(name)

        class PhysicsContext:
            prim_path = "/physicsScene"

        class World:
            def __init__(self, **kw):
                log("world", "/World", **kw)
                fake.gpu = str(kw.get("device", "cpu")).startswith("cuda")
                self.scene, self.physics_sim_view = Scene(), self
                self.resets = self.steps = self.renders = 0

            def reset(self):
                self.resets += 1

            def step(self, render):
                self.steps += 1
                self.renders += bool(render)

            def render(self):
                self.renders += 1

            def get_physics_context(self):
                return PhysicsContext()

            def create_rigid_body_view(self, path):
                assert stage.GetPrimAtPath(path).IsValid()
                self.targets = []
                return self

            def set_kinematic_targets(self, data, idx):  # omni.physics.tensors: float32 xyz + xyzw, int32 indices
                assert data.dtype == np.float32 and data.shape == (1, 7) and idx.dtype == np.int32
                self.targets.append(data[0].copy())

        class Lula:  # LulaKinematicsSolver: records the world-frame targets it is given
            def __init__(self, **cfg):
                self.base = None

            def set_robot_base_pose(self, position, orientation):
                assert type(position) is np.ndarray and type(orientation) is np.ndarray  # Lula indexes them
                self.base = (position.copy(), orientation.copy())

            def compute_inverse_kinematics(self, frame_name, target_position, target_orientation=None,
                                           warm_start=None):
                for a in (target_position, target_orientation, warm_start):  # pybind/Eigen takes numpy only
                    assert type(a) is np.ndarray and a.dtype == np.float64, type(a)
                log("ik", frame_name, target_position=target_position, target_orientation=target_orientation,
                    warm_start=warm_start, base=self.base)
                return np.arange(7, dtype=np.float64) * 0.1, True

        class Action:
            def __init__(self, joint_positions):
                self.joint_positions = joint_positions

        class Recorded:  # materials, particle system, deformable and cloth wrappers: their arguments
            kind = "recorded"

            def __init__(self, prim_path, **kw):
                self.prim_path, self.name, self.kw = prim_path, kw.get("name"), kw
                log(self.kind, prim_path, **kw)

        class DeformableMaterial(Recorded):
            kind = "deformable_material"

            def __init__(self, prim_path, **kw):
                UsdShade.Material.Define(stage, prim_path)
                super().__init__(prim_path, **kw)

        class ParticleMaterial(DeformableMaterial):
            kind = "particle_material"

        class SingleParticleSystem(Recorded):
            kind = "particle_system"

            def __init__(self, prim_path, **kw):
                stage.DefinePrim(prim_path, "PhysxParticleSystem")
                super().__init__(prim_path, **kw)

        class SingleDeformablePrim(Recorded):
            kind = "deformable"

            def __init__(self, prim_path, **kw):
                assert stage.GetPrimAtPath(prim_path).IsA(UsdGeom.Mesh)  # add_physx_deformable_body needs a Mesh
                super().__init__(prim_path, **kw)

        class SingleClothPrim(SingleDeformablePrim):
            kind = "cloth"

        class View:  # DeformablePrim / ClothPrim views: [1, N, 3] node positions
            def __init__(self, prim_paths_expr, name):
                self.path = prim_paths_expr
                log("view", prim_paths_expr, name=name)

            def initialize(self, physics_sim_view):
                log("view_init", self.path)

            def get_simulation_mesh_nodal_positions(self):
                return out(fake.nodes[None])

            get_world_positions = get_simulation_mesh_nodal_positions

            def get_simulation_mesh_rest_points(self):
                return out(fake.rest_local[None])

        class Attachment:  # pxr.PhysxSchema.PhysxPhysicsAttachment, authored with plain USD calls
            def __init__(self, prim):
                self.prim = prim

            @staticmethod
            def Define(stage_, path):  # noqa: N802 (the schema's name)
                return Attachment(stage_.DefinePrim(path, "PhysxPhysicsAttachment"))

            def GetActor0Rel(self):  # noqa: N802
                return self.prim.CreateRelationship("actor0")

            def GetActor1Rel(self):  # noqa: N802
                return self.prim.CreateRelationship("actor1")

            def CreatePoints0Attr(self):  # noqa: N802
                return self.prim.CreateAttribute("points0", Sdf.ValueTypeNames.Point3fArray)

            def CreatePoints1Attr(self):  # noqa: N802
                return self.prim.CreateAttribute("points1", Sdf.ValueTypeNames.Point3fArray)

        class PhysxSchema:
            PhysxPhysicsAttachment = Attachment

        self.World, self.Articulation = World, Articulation
        self.api = {
            "World": World, "DynamicCuboid": Prim, "DynamicCylinder": Prim, "FixedCuboid": Prim,
            "VisualCylinder": Prim, "PhysicsMaterial": lambda **kw: kw, "SingleArticulation": Articulation,
            "SingleXFormPrim": Prim, "SingleRigidPrim": Link, "ArticulationAction": Action,
            "add_reference_to_stage": add_reference_to_stage,
            "get_current_stage": lambda: stage, "Camera": Camera, "get_assets_root_path": lambda: "/assets",
            "LulaKinematicsSolver": Lula, "lula_config": dict,
            "Gf": Gf, "UsdPhysics": UsdPhysics, "UsdLux": UsdLux, "UsdGeom": UsdGeom, "Sdf": Sdf, "Vt": Vt,
            "DeformableMaterial": DeformableMaterial, "ParticleMaterial": ParticleMaterial,
            "SingleParticleSystem": SingleParticleSystem, "SingleDeformablePrim": SingleDeformablePrim,
            "SingleClothPrim": SingleClothPrim, "DeformablePrim": View, "ClothPrim": View, "PhysxSchema": PhysxSchema,
            "to_device": DeviceArray,  # the GPU pipeline's torch tensors
        }


def build(cls: type, fake: Fake, **options: Any) -> Any:
    """An adapter of ``cls`` made by its own __init__ on the stand-ins, every ``_launch`` in its classes
    replaced by what IsaacPickPlace._launch sets (no Kit to start, no isaacsim to import)."""

    def launch(self, *, width, height, fps, cpu_threads, active_gpu):
        self._api, self._rendering, self._active_gpu = fake.api, True, active_gpu
        self._variation = self._pending = self._platform_view = self._person = self._object = None
        self._steps, self._var_objects, self._hidden_lights, self._object_index = 0, [], [], 0
        self.version, self.width, self.height, self.fps = "isaacsim stand-in", width, height, fps

    patched = {k: vars(k)["_launch"] for k in cls.__mro__ if "_launch" in vars(k)}
    for klass in patched:
        klass._launch = launch
    try:
        return cls(**{"width": 32, "height": 32, "warmup_frames": 2, "assets_root": "/assets", **options})
    finally:
        for klass, original in patched.items():
            klass._launch = original
