"""Isaac Sim 5.x adapter for soft pick-and-place: a PhysX deformable block or a particle cloth.

The task (materials and their draws, waypoints, the pose from the nodes, the episode) is
:mod:`raygen.actors.tasks.soft`, shared with PyBullet (:class:`raygen.actors.bullet.soft.BulletSoftPickPlace`);
this file maps :class:`~raygen.actors.tasks.soft.SoftPickPlaceSim` onto Isaac Sim, reusing
:class:`~raygen.actors.isaac.sim.IsaacPickPlace` for the robot, cameras, rendering, lighting and distractors:

- PhysX simulates deformables only on its GPU pipeline (GPU dynamics and the GPU broadphase), which
  ``World(device="cuda", backend="torch")`` turns on; the World's arrays are then torch tensors on the GPU,
  converted at the adapter's edges (``_np`` in, ``_dev`` out);
- Kit starts with the Fabric scene delegate off, as Isaac Sim's own deformable and cloth examples do;
- a block is a cube ``UsdGeom.Mesh`` made a PhysX deformable body (``SingleDeformablePrim``: a tetrahedral
  simulation mesh of ``block_resolution`` hexahedra along an edge, cooked from the surface) with a
  ``DeformableMaterial`` (the drawn Young's modulus, the material's Poisson ratio, damping and friction)
  whose ``physxDeformableBodyMaterial:density`` gives the drawn mass;
- a cloth is a square grid ``UsdGeom.Mesh`` made a particle cloth (``SingleClothPrim``: springs of the drawn
  stiffness and the material's bending and damping, the drawn mass spread over its particles) in its own
  ``SingleParticleSystem`` (offsets from the grid spacing) with a ``ParticleMaterial`` (friction);
- the nodes are read through a ``DeformablePrim`` view (simulation-mesh nodal positions) or a ``ClothPrim``
  view (particle world positions), world frame; the rest shape is the cooked simulation mesh's rest points
  (block) or the grid as built (cloth);
- the grasp attaches the nodes between the fingers (:func:`~raygen.actors.tasks.soft.grip_nodes`, PyBullet's
  choice) to the finger holding each with one ``PhysxPhysicsAttachment`` per finger: ``actor0`` the soft
  body, ``actor1`` the finger link, ``points0`` the nodes' rest positions in the body's frame (a block's moved
  0.5 mm inwards, so PhysX finds them inside a rest tetrahedron), ``points1`` where they are now in the
  finger's frame (its pose from physics); explicit points rather than ``PhysxAutoAttachmentAPI``, whose automatic
  points are computed from USD poses that the GPU pipeline does not write back. Letting go removes them.

These are the legacy (``PhysxDeformableBodyAPI``, particle cloth) schemas: present and working in Isaac Sim 5.0
and 5.1, deprecated there in favour of the "deformable beta" (surface and volume deformables, off by default).
Written against the Isaac Sim 5.0/5.1 and omni.physx 107.3 sources; not run (it needs an RTX GPU and Isaac
Sim): attaching and removing attachments while the simulation runs is the least certain part.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raygen.actors.isaac.arm import _np, _pose_matrix
from raygen.actors.isaac.sim import ROBOT_PATH, IsaacPickPlace
from raygen.actors.tasks.pick_place import Scene
from raygen.actors.tasks.soft import SoftScene, grip_nodes, node_pose

__all__ = ["IsaacSoftPickPlace", "cloth_mesh", "cube_mesh"]

SOFT_PATH = "/World/SoftObject"
SYSTEM_PATH = "/World/SoftParticles"
FINGER_PATHS = (f"{ROBOT_PATH}/panda_leftfinger", f"{ROBOT_PATH}/panda_rightfinger")


def cube_mesh(edge: float) -> tuple[np.ndarray, np.ndarray]:
    """(points [8,3], triangle vertex indices [12,3]) of a cube of ``edge`` centred at the origin, outward
    counter-clockwise faces."""
    h = edge / 2
    pts = np.array([[x, y, z] for z in (-h, h) for y in (-h, h) for x in (-h, h)])
    quads = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    tris = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return pts, np.array(tris)


def cloth_mesh(side: float, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(points [(cells+1)^2,3], triangles [2 cells^2,3]) of a square of ``side`` in the xy plane centred at the
    origin, facing +z."""
    n = cells + 1
    g = np.linspace(-side / 2, side / 2, n)
    pts = np.array([[x, y, 0.0] for y in g for x in g])
    tris = []
    for j in range(cells):
        for i in range(cells):
            a, b, c, d = i + n * j, i + 1 + n * j, i + 1 + n * (j + 1), i + n * (j + 1)
            tris += [(a, b, c), (a, c, d)]
    return pts, np.array(tris)


class IsaacSoftPickPlace(IsaacPickPlace):
    """One Isaac Sim process running soft pick-and-place episodes (GPU physics pipeline).

    Options are IsaacPickPlace's plus ``block_resolution`` (hexahedra along a block's edge in its simulation
    mesh), ``cloth_cells`` (quads along the cloth's side), ``anchor_depth`` (how far from a finger's inner face
    a node is still held, m) and ``solver_iterations`` (the soft body's position iterations)."""

    object_kinds = ("block", "cloth")
    restorable = False  # a soft object's state is its nodes: no bottleneck episodes
    KIT_SETTINGS = ("--/app/useFabricSceneDelegate=0",)
    """As Isaac Sim's own deformable and cloth examples start Kit: the RTX frames show the soft body's motion."""

    def __init__(self, *, block_resolution: int = 6, cloth_cells: int = 12, anchor_depth: float = 0.012,
                 solver_iterations: int = 20, **kw: Any):
        if not 2 <= int(block_resolution) <= 20:
            raise ValueError(f"block_resolution: an integer in [2, 20], got {block_resolution!r}")
        if not 2 <= int(cloth_cells) <= 40:
            raise ValueError(f"cloth_cells: an integer in [2, 40], got {cloth_cells!r}")
        if not 0 < float(anchor_depth) < 0.05:
            raise ValueError(f"anchor_depth: metres in (0, 0.05), got {anchor_depth!r}")
        if not 1 <= int(solver_iterations) <= 255:
            raise ValueError(f"solver_iterations: an integer in [1, 255], got {solver_iterations!r}")
        self.block_resolution, self.cloth_cells = int(block_resolution), int(cloth_cells)
        self.anchor_depth, self.solver_iterations = float(anchor_depth), int(solver_iterations)
        self.scene: SoftScene | None = None
        self._soft_prims: list[str] = []  # material, particle system: removed with the object
        self._attachments: dict[int, list[int]] = {}  # finger -> nodes held
        self._view: Any = None
        self._rest: np.ndarray | None = None
        self._origin = np.zeros(3)
        self._rest_local: np.ndarray | None = None
        super().__init__(**kw)
        self.version = f"{self.version} deformable"

    def _launch(self, **kw: Any) -> None:
        super()._launch(**kw)
        import torch  # Isaac Sim's own: its GPU pipeline hands out and takes torch tensors
        from isaacsim.core.api.materials import DeformableMaterial, ParticleMaterial
        from isaacsim.core.prims import (
            ClothPrim,
            DeformablePrim,
            SingleClothPrim,
            SingleDeformablePrim,
            SingleParticleSystem,
        )
        from pxr import PhysxSchema, Sdf, Vt

        self._api.update({
            "DeformableMaterial": DeformableMaterial, "ParticleMaterial": ParticleMaterial, "ClothPrim": ClothPrim,
            "DeformablePrim": DeformablePrim, "SingleClothPrim": SingleClothPrim,
            "SingleDeformablePrim": SingleDeformablePrim, "SingleParticleSystem": SingleParticleSystem,
            "PhysxSchema": PhysxSchema, "Sdf": Sdf, "Vt": Vt,
            "to_device": lambda x: torch.as_tensor(np.asarray(x, np.float32), device=self._device),
        })

    @property
    def _device(self) -> str:
        return f"cuda:{self._active_gpu}"  # the GPU SimulationApp runs physics on

    def _world_options(self) -> dict[str, Any]:
        return {"device": self._device, "backend": "torch"}  # deformables need PhysX's GPU pipeline

    def _dev(self, x: np.ndarray) -> Any:
        return self._api["to_device"](x)

    # ------------------------------------------------------------------ world
    def _begin_reset(self) -> Any:
        stage = super()._begin_reset()  # let go (removes the attachments) and clear the last episode
        for path in (SOFT_PATH, *self._soft_prims):
            if stage.GetPrimAtPath(path).IsValid():
                stage.RemovePrim(path)
        self._soft_prims, self._view, self._rest = [], None, None
        return stage

    def reset(self, scene: Scene) -> None:
        if not isinstance(scene, SoftScene) or scene.object_kind not in self.object_kinds:
            raise ValueError(f"IsaacSoftPickPlace.reset: needs a SoftScene of kind {self.object_kinds} "
                             f"(raygen.actors.tasks.soft.sample_soft_scene), got {type(scene).__name__} "
                             f"{getattr(scene, 'object_kind', None)!r}")
        self.scene = scene
        stage = self._begin_reset()
        if scene.object_kind == "cloth":
            self._build_cloth(stage, scene)
        else:
            self._build_block(stage, scene)
        name = f"marker_{self._object_index}"
        self._marker("/World/PlaceMarker", name, scene.place_xy)
        self._episode_objects.append((name, "/World/PlaceMarker"))
        self._finish_reset(stage)
        view_type = "ClothPrim" if scene.object_kind == "cloth" else "DeformablePrim"
        self._view = self._api[view_type](prim_paths_expr=SOFT_PATH, name=f"soft_view_{self._object_index}")
        self._view.initialize(self.world.physics_sim_view)
        if scene.object_kind == "cloth":  # one particle per mesh point (a grid has none to weld)
            self._rest_local = cloth_mesh(scene.object_size, self.cloth_cells)[0]
        else:  # the cooked simulation mesh's rest points, in the mesh's frame
            self._rest_local = _np(self._view.get_simulation_mesh_rest_points())[0]
        self._rest = self._rest_local + self._origin  # the shape as built, before any step (as on PyBullet)

    def _mesh(self, stage: Any, points: np.ndarray, tris: np.ndarray, at: np.ndarray, rgba: tuple[float, ...]) -> Any:
        api = self._api
        gf, vt = api["Gf"], api["Vt"]
        mesh = api["UsdGeom"].Mesh.Define(stage, SOFT_PATH)
        mesh.CreatePointsAttr(vt.Vec3fArray([gf.Vec3f(*map(float, p)) for p in points]))
        mesh.CreateFaceVertexCountsAttr(vt.IntArray([3] * len(tris)))
        mesh.CreateFaceVertexIndicesAttr(vt.IntArray([int(i) for i in tris.reshape(-1)]))
        mesh.CreateDisplayColorAttr([gf.Vec3f(*map(float, rgba[:3]))])
        mesh.CreateDoubleSidedAttr(True)
        xf = api["UsdGeom"].Xformable(mesh.GetPrim())
        xf.ClearXformOpOrder()
        xf.AddTranslateOp().Set(gf.Vec3d(*map(float, at)))
        self._origin = np.asarray(at, np.float64)
        return mesh

    def _build_block(self, stage: Any, scene: SoftScene) -> None:
        api = self._api
        s = scene.object_size
        points, tris = cube_mesh(s)
        self._mesh(stage, points, tris, np.array([*scene.object_xy, s / 2 + 1e-3]), scene.rgba)
        material_path = f"{SOFT_PATH}Material"
        material = api["DeformableMaterial"](prim_path=material_path, name=f"soft_material_{self._object_index}",
                                             youngs_modulus=float(scene.stiffness), poissons_ratio=float(scene.poisson),
                                             dynamic_friction=float(scene.friction),
                                             elasticity_damping=float(scene.damping))
        density = stage.GetPrimAtPath(material_path).CreateAttribute("physxDeformableBodyMaterial:density",
                                                                      api["Sdf"].ValueTypeNames.Float)
        density.Set(float(scene.mass_kg / s**3))
        self._soft_prims.append(material_path)
        api["SingleDeformablePrim"](prim_path=SOFT_PATH, name=f"soft_{self._object_index}",
                                    deformable_material=material, self_collision=False,
                                    simulation_hexahedral_resolution=self.block_resolution,
                                    solver_position_iteration_count=self.solver_iterations)

    def _build_cloth(self, stage: Any, scene: SoftScene) -> None:
        api = self._api
        spacing = scene.object_size / self.cloth_cells
        r = 0.5 * spacing  # particle radius: neighbours touch at rest
        points, tris = cloth_mesh(scene.object_size, self.cloth_cells)
        self._mesh(stage, points, tris, np.array([*scene.object_xy, r + 1e-3]), scene.rgba)
        system = api["SingleParticleSystem"](prim_path=SYSTEM_PATH, name=f"soft_particles_{self._object_index}",
                                             simulation_owner=self.world.get_physics_context().prim_path,
                                             rest_offset=r, contact_offset=1.5 * r, solid_rest_offset=r,
                                             fluid_rest_offset=r, particle_contact_offset=1.5 * r,
                                             solver_position_iteration_count=self.solver_iterations)
        material_path = f"{SOFT_PATH}ParticleMaterial"
        material = api["ParticleMaterial"](prim_path=material_path, name=f"soft_material_{self._object_index}",
                                           friction=float(scene.friction))
        self._soft_prims += [SYSTEM_PATH, material_path]
        api["SingleClothPrim"](prim_path=SOFT_PATH, name=f"soft_{self._object_index}", particle_system=system,
                               particle_material=material, particle_mass=float(scene.mass_kg / len(points)),
                               self_collision=False, stretch_stiffness=float(scene.stiffness),
                               shear_stiffness=float(scene.stiffness), bend_stiffness=float(scene.bending),
                               spring_damping=float(scene.damping))

    # ------------------------------------------------------------------ SoftPickPlaceSim
    def object_nodes(self) -> np.ndarray:
        """[N,3] the simulation mesh's nodes (block) or the cloth's particles, world frame."""
        if self.scene is not None and self.scene.object_kind == "cloth":
            return _np(self._view.get_world_positions())[0]
        return _np(self._view.get_simulation_mesh_nodal_positions())[0]

    def rest_nodes(self) -> np.ndarray:
        return self._rest.copy()

    def anchored_nodes(self) -> list[int]:
        return sorted(i for nodes in self._attachments.values() for i in nodes)

    def object_position(self) -> np.ndarray:
        return self.object_nodes().mean(axis=0)

    def object_pose(self) -> np.ndarray:
        return node_pose(self._rest, self.object_nodes())

    def attach(self) -> None:
        """One PhysxPhysicsAttachment per finger holding the nodes between the fingers (see the module doc)."""
        self.detach()
        api = self._api
        stage = api["get_current_stage"]()
        nodes = self.object_nodes()
        finger_poses = [_pose_matrix(*f.get_world_pose()) for f in self._fingers]
        held = grip_nodes(nodes, self.finger_pads(), self.hand_pose()[:3, 2],
                          finger_poses[0][:3, 1], self.anchor_depth, skip_bottom=self.scene.object_kind == "block")
        gf, vt = api["Gf"], api["Vt"]
        for finger in (0, 1):
            idx = [i for i, f in held if f == finger]
            if not idx:
                continue
            att = api["PhysxSchema"].PhysxPhysicsAttachment.Define(stage, f"{SOFT_PATH}/Attachment{finger}")
            att.GetActor0Rel().SetTargets([SOFT_PATH])
            att.GetActor1Rel().SetTargets([FINGER_PATHS[finger]])
            in_body = self._rest_local[idx]
            if self.scene.object_kind == "block":  # a surface node, 0.5 mm inwards: inside a rest tetrahedron
                centre = self._rest_local.mean(axis=0)
                inward = centre - in_body
                in_body = in_body + 0.0005 * inward / np.maximum(np.linalg.norm(inward, axis=1, keepdims=True), 1e-9)
            to_finger = np.linalg.inv(finger_poses[finger])
            in_finger = (to_finger[:3, :3] @ nodes[idx].T).T + to_finger[:3, 3]
            att.CreatePoints0Attr().Set(vt.Vec3fArray([gf.Vec3f(*map(float, p)) for p in in_body]))
            att.CreatePoints1Attr().Set(vt.Vec3fArray([gf.Vec3f(*map(float, p)) for p in in_finger]))
            self._attachments[finger] = idx

    def detach(self) -> None:
        stage = self._api["get_current_stage"]()
        for finger in list(getattr(self, "_attachments", {})):
            path = f"{SOFT_PATH}/Attachment{finger}"
            if stage.GetPrimAtPath(path).IsValid():
                stage.RemovePrim(path)
        self._attachments = {}

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "scene_variation": ["lighting", "distractors", "person"]}
