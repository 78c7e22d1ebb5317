"""PyBullet adapter for soft pick-and-place: BulletPickPlace's world, made deformable, with a soft object.

The table, robot, cameras, IK, arm control and rendering are :class:`raygen.actors.bullet.sim.BulletPickPlace`'s;
the world is PyBullet's deformable one (``resetSimulation(RESET_USE_DEFORMABLE_WORLD)``, coupled two ways with
the multibody robot), and the object is a soft body built from the scene's material
(:class:`raygen.actors.tasks.soft.SoftScene`):

- block: a cube of ``block_cells``^3 cells, 6 tetrahedra each (a .vtk written once into the cache folder,
  ``$RAYGEN_CACHE_DIR`` or the temp folder), neo-Hookean, mu and lambda from the drawn Young's modulus and the
  material's Poisson ratio;
- cloth: a square sheet of ``cloth_cells``^2 cells (an .obj written once), mass-spring with bending springs.

What a soft object changes, and why:

- Grasping goes through PyBullet's own soft-body attachment: :meth:`BulletSoftPickPlace.attach` anchors
  (``createSoftBodyAnchor``) each node between the fingers, within ``anchor_depth`` of a finger's inner face,
  to that finger's link; :meth:`~BulletSoftPickPlace.detach` removes the anchors (``removeConstraint``).
- The fingers also squeeze the object by contact: they push with at most ``grip_force`` (BulletPickPlace's
  40 N crushes a soft block) and are coupled by a gear constraint, as the Franka hand's are, so they close
  symmetrically; the object deforms as much as its stiffness allows.
- PyBullet integrates a soft body's elastic forces explicitly (only damping is implicit), which is stable only
  while a wave crosses less than about one element per physics step; each scene therefore gets as many physics
  steps a frame as its drawn stiffness and mass need (:meth:`BulletSoftPickPlace.substeps_for`), and the
  materials' ranges (:data:`raygen.actors.tasks.soft.MATERIALS`) keep that near 10-20.
- PyBullet never clears a node's "attached" flag when its anchor is removed, and an attached node no longer
  collides with rigid bodies; so nodes in a block's bottom layer are never anchored (they keep it on the table
  after the release). A cloth's pinched nodes end on top of the fallen cloth.

The object's pose is :func:`raygen.actors.tasks.soft.node_pose` of the simulation mesh's nodes (their centroid
and the rest shape's best-fit rotation). Bottleneck episodes (restore/teleport a rigid pose) are not supported.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from raygen.actors.bullet.sim import _FINGERS, _HAND, BulletPickPlace, drive
from raygen.actors.tasks.pick_place import GRIPPER_OPEN, HOME_Q, Scene
from raygen.actors.tasks.soft import SoftParams, SoftScene, grip_nodes, node_pose, sample_soft_scene

logger = logging.getLogger(__name__)

__all__ = ["BulletSoftPickPlace", "block_vtk", "cloth_obj"]



def _cache_dir() -> Path:
    d = Path(os.environ.get("RAYGEN_CACHE_DIR") or tempfile.gettempdir()) / "raygen_soft"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_once(path: Path, text: str) -> str:
    """Write ``text`` to ``path`` unless it holds it already; atomic, so workers sharing the cache never read
    half a file."""
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return str(path)


def block_vtk(cells: int) -> str:
    """A unit cube centred at the origin as a legacy-VTK tetrahedral mesh (``cells``^3 cubes, 6 tetrahedra each,
    all positively oriented), the text of the file."""
    n = cells + 1
    g = np.linspace(-0.5, 0.5, n)
    pts = np.array([[x, y, z] for z in g for y in g for x in g])

    def idx(i: int, j: int, k: int) -> int:
        return i + n * (j + n * k)

    tets = []
    for k in range(cells):
        for j in range(cells):
            for i in range(cells):
                for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):  # Kuhn split
                    c = [i, j, k]
                    tet = [idx(*c)]
                    for ax in perm:
                        c[ax] += 1
                        tet.append(idx(*c))
                    a, b, cc, d = pts[tet]
                    if np.dot(np.cross(b - a, cc - a), d - a) < 0:
                        tet[1], tet[2] = tet[2], tet[1]
                    tets.append(tet)
    lines = ["# vtk DataFile Version 2.0", "raygen soft block", "ASCII", "DATASET UNSTRUCTURED_GRID",
             f"POINTS {len(pts)} double", *(f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in pts), "",
             f"CELLS {len(tets)} {5 * len(tets)}", *(f"4 {a} {b} {c} {d}" for a, b, c, d in tets), "",
             f"CELL_TYPES {len(tets)}", *(["10"] * len(tets)), ""]
    return "\n".join(lines)


def cloth_obj(cells: int) -> str:
    """A unit square in the xy plane centred at the origin, ``cells``^2 quads split in two triangles, as the
    text of a Wavefront .obj (with texture coordinates and an up normal)."""
    n = cells + 1
    g = np.linspace(-0.5, 0.5, n)
    lines = ["# raygen soft cloth"]
    lines += [f"v {x:.6f} {y:.6f} 0.000000" for y in g for x in g]
    lines += [f"vt {u:.6f} {v:.6f}" for v in np.linspace(0, 1, n) for u in np.linspace(0, 1, n)]
    lines.append("vn 0 0 1")
    for j in range(cells):
        for i in range(cells):
            a, b, c, d = (1 + i + n * j, 2 + i + n * j, 2 + i + n * (j + 1), 1 + i + n * (j + 1))
            lines.append(f"f {a}/{a}/1 {b}/{b}/1 {c}/{c}/1")
            lines.append(f"f {a}/{a}/1 {c}/{c}/1 {d}/{d}/1")
    return "\n".join(lines) + "\n"


class _DeformableWorld:
    """The pybullet module, except that ``resetSimulation`` always makes a deformable world (so
    BulletPickPlace's world building runs unchanged in one)."""

    def __init__(self, p: Any):
        self._p = p

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._p, name)
        setattr(self, name, value)  # found here directly from now on
        return value

    def resetSimulation(self, flags: int = 0, physicsClientId: int = 0) -> None:  # noqa: N802, N803 (pybullet's)
        self._p.resetSimulation(flags | self._p.RESET_USE_DEFORMABLE_WORLD, physicsClientId=physicsClientId)


class BulletSoftPickPlace(BulletPickPlace):
    """One PyBullet deformable world (DIRECT mode) that runs soft pick-and-place episodes.

    Options are BulletPickPlace's (``substeps`` is the least number of physics steps a frame) plus:

    - ``block_cells``: cells along a block's edge ((cells + 1)^3 nodes); ``cloth_cells``: along the cloth's side;
    - ``collision_margin``: the soft body's collision margin, m;
    - ``anchor_depth``: how far from a finger's inner face a node is still anchored to it at the grasp, m;
    - ``grip_force``: the most force each finger pushes with, N (BulletPickPlace: 40 N, which crushes a soft
      object): the fingers close until the object's elastic force balances it, so the object is squeezed by
      contact as much as its stiffness allows;
    - ``cfl``, ``max_substeps``: PyBullet integrates a soft body's elastic forces explicitly, which is stable
      only while a wave crosses less than about one element per physics step; each scene gets
      ``ceil(wave speed / (cfl x element size x fps))`` steps a frame (at least ``substeps``, at most
      ``max_substeps``), from the drawn stiffness and mass.
    """

    object_kinds = ("block", "cloth")
    restorable = False  # a soft object's state is its nodes: no bottleneck episodes

    def __init__(self, *, block_cells: int = 3, cloth_cells: int = 12, collision_margin: float = 0.002,
                 anchor_depth: float = 0.012, grip_force: float = 2.0, cfl: float = 1.0, max_substeps: int = 64,
                 **kw: Any):
        if not 1 <= int(block_cells) <= 8:
            raise ValueError(f"block_cells: an integer in [1, 8], got {block_cells!r}")
        if not 2 <= int(cloth_cells) <= 40:
            raise ValueError(f"cloth_cells: an integer in [2, 40], got {cloth_cells!r}")
        if not 0 < float(collision_margin) < 0.02:
            raise ValueError(f"collision_margin: metres in (0, 0.02), got {collision_margin!r}")
        if not 0 < float(anchor_depth) < 0.05:
            raise ValueError(f"anchor_depth: metres in (0, 0.05), got {anchor_depth!r}")
        if not 0 < float(grip_force) <= 70:
            raise ValueError(f"grip_force: newtons in (0, 70] (the Franka hand's continuous force), got {grip_force!r}")
        if not 0 < float(cfl) <= 2 or int(max_substeps) < 1:
            raise ValueError(f"cfl: in (0, 2], got {cfl!r}; max_substeps: >= 1, got {max_substeps!r}")
        self.grip_force, self.cfl, self.max_substeps = float(grip_force), float(cfl), int(max_substeps)
        self.block_cells, self.cloth_cells = int(block_cells), int(cloth_cells)
        self.collision_margin, self.anchor_depth = float(collision_margin), float(anchor_depth)
        cache = _cache_dir()
        self._block_file = _write_once(cache / f"soft_block_{self.block_cells}.vtk", block_vtk(self.block_cells))
        self._cloth_file = _write_once(cache / f"soft_cloth_{self.cloth_cells}.obj", cloth_obj(self.cloth_cells))
        self._anchors: dict[int, int] = {}  # node -> anchor (user constraint) id
        self._rest: np.ndarray | None = None
        self.scene: SoftScene | None = None
        super().__init__(**kw)
        self.frame_substeps = self.substeps
        """Physics steps a frame for the current scene (see the class doc)."""
        self.version = f"{self.version} deformable"
        self._warm_up()

    def _new_client(self) -> None:
        self._warm_up()  # a new client is a new deformable world

    def _warm_up(self) -> None:
        """Step a block and a cloth once each. PyBullet's deformable world runs the first soft body it ever
        steps differently from every later one (the same spec gave another trajectory on a fresh world than
        on one that had run an episode), so every episode, the first included, must find it warmed."""
        for material in ("foam", "cloth"):
            scene = sample_soft_scene(np.random.default_rng(0), SoftParams(materials=(material,)))
            self.reset(scene)
            self.step(np.asarray(HOME_Q), GRIPPER_OPEN)
        self._build(None)

    @property
    def p(self) -> Any:
        """pybullet, whose resetSimulation makes a deformable world (BulletPickPlace sets it)."""
        return self._pybullet

    @p.setter
    def p(self, module: Any) -> None:
        self._pybullet = _DeformableWorld(module)

    # ------------------------------------------------------------------ world
    def _build(self, scene: Scene | None) -> None:
        super()._build(None)
        p, c = self.p, self.client
        # the Franka hand's fingers are coupled (one motor, a rack): they close symmetrically about the TCP, so
        # neither pushes the object sideways before the other meets it (pybullet_data's panda example does this)
        gear = p.createConstraint(self.robot, _FINGERS[0], self.robot, _FINGERS[1], p.JOINT_GEAR, [1, 0, 0],
                                  [0, 0, 0], [0, 0, 0], physicsClientId=c)
        p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=c)
        self.obj = None
        self._anchors = {}
        self._rest = None
        if scene is None:
            return
        s = scene.object_size
        self.frame_substeps = self.substeps_for(scene)
        p.setTimeStep(1.0 / (self.fps * self.frame_substeps), physicsClientId=c)
        if scene.object_kind == "cloth":
            self.obj = p.loadSoftBody(
                self._cloth_file, basePosition=[*scene.object_xy, self.collision_margin], scale=s,
                mass=scene.mass_kg, useNeoHookean=0, useMassSpring=1, useBendingSprings=1,
                springElasticStiffness=scene.stiffness, springDampingStiffness=scene.damping,
                springBendingStiffness=scene.bending, springDampingAllDirections=1, useSelfCollision=0,
                frictionCoeff=scene.friction, useFaceContact=1, collisionMargin=self.collision_margin,
                physicsClientId=c)
            p.changeVisualShape(self.obj, -1, flags=p.VISUAL_SHAPE_DOUBLE_SIDED, physicsClientId=c)
        else:
            e, nu = scene.stiffness, scene.poisson
            mu, lam = e / (2 * (1 + nu)), e * nu / ((1 + nu) * (1 - 2 * nu))
            self.obj = p.loadSoftBody(
                self._block_file, basePosition=[*scene.object_xy, s / 2 + self.collision_margin], scale=s,
                mass=scene.mass_kg, useNeoHookean=1, NeoHookeanMu=mu, NeoHookeanLambda=lam,
                NeoHookeanDamping=scene.damping, useSelfCollision=0, frictionCoeff=scene.friction,
                useFaceContact=1, collisionMargin=self.collision_margin, physicsClientId=c)
        if self.obj < 0:
            raise RuntimeError(f"PyBullet could not load the soft {scene.object_kind} "
                               f"({self._cloth_file if scene.object_kind == 'cloth' else self._block_file})")
        p.changeVisualShape(self.obj, -1, rgbaColor=list(scene.rgba), physicsClientId=c)
        marker = p.createVisualShape(p.GEOM_CYLINDER, radius=0.035, length=0.001, rgbaColor=[0.1, 0.8, 0.3, 1],
                                     physicsClientId=c)
        p.createMultiBody(0, -1, marker, basePosition=[*scene.place_xy, 0.0006], physicsClientId=c)
        self._rest = self.object_nodes()

    def substeps_for(self, scene: SoftScene) -> int:
        """Physics steps a frame that keep the scene's soft body stable (see the class doc)."""
        if scene.object_kind == "cloth":  # mass-spring: a node on its springs, omega = sqrt(k / m)
            nodes = (self.cloth_cells + 1) ** 2
            omega = np.sqrt(4 * (scene.stiffness + scene.bending) * nodes / scene.mass_kg)
            need = omega / (2 * self.cfl * self.fps)
        else:  # neo-Hookean: dilatational wave speed sqrt((lambda + 2 mu) / rho) over an element
            e, nu = scene.stiffness, scene.poisson
            modulus = e * (1 - nu) / ((1 + nu) * (1 - 2 * nu))
            speed = np.sqrt(modulus / (scene.mass_kg / scene.object_size**3))
            need = speed / (self.cfl * (scene.object_size / self.block_cells) * self.fps)
        n = max(self.substeps, int(np.ceil(need)))
        if n > self.max_substeps:
            logger.warning("the soft %s (stiffness %.3g, mass %.3g kg) needs %d physics steps a frame for "
                           "stability; capped at max_substeps=%d", scene.material, scene.stiffness, scene.mass_kg,
                           n, self.max_substeps)
        return min(n, self.max_substeps)

    # ------------------------------------------------------------------ PickPlaceSim
    def step(self, q_target: np.ndarray, gripper_target: float | np.ndarray) -> None:
        """BulletPickPlace.step, with the fingers pushing at most ``grip_force`` and ``frame_substeps`` steps."""
        p, c = self.p, self.client
        drive(p, c, self.robot, q_target, gripper_target, finger_force=self.grip_force)
        for _ in range(self.frame_substeps):
            p.stepSimulation(physicsClientId=c)
        self._steps += 1  # the light of a changing scene variation and the person follow the frames
        self._move_person()

    def reset(self, scene: Scene) -> None:
        """BulletPickPlace.reset (its bookkeeping, then :meth:`_build`), for a :class:`SoftScene` only."""
        if not isinstance(scene, SoftScene) or scene.object_kind not in self.object_kinds:
            raise ValueError(f"BulletSoftPickPlace.reset: needs a SoftScene of kind {self.object_kinds} "
                             f"(raygen.actors.tasks.soft.sample_soft_scene), got {type(scene).__name__} "
                             f"{getattr(scene, 'object_kind', None)!r}")
        super().reset(scene)  # (a fresh client's warm-up resets other scenes on the way)
        self.scene = scene

    def object_nodes(self) -> np.ndarray:
        """[N,3] the simulation mesh's node positions, world frame."""
        _, pos = self.p.getMeshData(self.obj, -1, flags=self.p.MESH_DATA_SIMULATION_MESH,
                                    physicsClientId=self.client)
        return np.asarray(pos, dtype=np.float64)

    def rest_nodes(self) -> np.ndarray:
        """[N,3] the nodes as :meth:`reset` built them (the shape :meth:`object_pose` is measured against)."""
        return self._rest.copy()

    def anchored_nodes(self) -> list[int]:
        return sorted(self._anchors)

    def object_position(self) -> np.ndarray:
        """The centroid of the nodes."""
        return self.object_nodes().mean(axis=0)

    def object_pose(self) -> np.ndarray:
        """The centroid and the rest shape's best-fit rotation (w, x, y, z): tasks.soft.node_pose."""
        return node_pose(self._rest, self.object_nodes())

    def attach(self) -> None:
        """Anchor each node between the fingers (within ``anchor_depth`` of a finger's inner face, within its
        pad, not in the bottom layer) to that finger's link."""
        p, c = self.p, self.client
        self.detach()
        pads = self.finger_pads()
        finger_y = self._link_pose(_FINGERS[0])[:3, 1]
        hand_z = self._link_pose(_HAND)[:3, 2]  # panda_hand z: along the fingers, towards the tips
        gripped = grip_nodes(self.object_nodes(), pads, hand_z, finger_y, self.anchor_depth,
                             skip_bottom=self.scene.object_kind == "block")
        for i, finger in gripped:
            self._anchors[i] = p.createSoftBodyAnchor(self.obj, i, self.robot, _FINGERS[finger], physicsClientId=c)
        gap = float(np.linalg.norm(pads[1] - pads[0]))
        if not self._anchors:
            logger.info("attach: no node between the fingers (gap %.3f m); nothing anchored", gap)

    def detach(self) -> None:
        for anchor in self._anchors.values():
            self.p.removeConstraint(anchor, physicsClientId=self.client)
        self._anchors = {}

    def capabilities(self) -> dict[str, Any]:
        return {**super().capabilities(), "scene_variation": ["lighting", "distractors", "person"]}

    def gripper_geometry(self) -> dict[str, Any]:
        return {**super().gripper_geometry(), "soft_attachment": "pybullet createSoftBodyAnchor to the finger links",
                "anchor_depth_m": self.anchor_depth}
