"""Soft pick-and-place, simulator-agnostic: materials, their draws, the object's pose from its nodes, the episode.

A deformable object, a soft block (volumetric, finite elements) or a cloth (a sheet of springs), is picked
and placed by the pick-and-place task of :mod:`raygen.actors.tasks.pick_place`, reused unchanged: its
waypoints, schedule, execution (attach at the grasp frame, detach at release) and episode. This module adds
what a soft object needs on top:

- a material (:data:`MATERIALS`: foam, rubber, cloth) whose stiffness and mass are drawn from its ranges for
  each episode (:func:`sample_material`), recorded in the episode's metrics (``scene.material``,
  ``scene.stiffness``, ``scene.mass_kg``, ...) and provenance (``soft``), so any episode can be regenerated
  and filtered by them;
- the grasp height of a cloth (pinched just above the table) instead of half the object's height;
- the object's pose from its nodes (:func:`node_pose`): the centroid and the rotation that best maps the rest
  shape onto the current one, and how far the nodes are from that rigid motion (:func:`node_deformation`,
  the per-frame ``object.deformation`` track).

A simulator adapts it by implementing :class:`SoftPickPlaceSim`: PyBullet's is
:class:`raygen.actors.bullet.soft.BulletSoftPickPlace`. numpy and the standard library only.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from raygen.actors.spec import EpisodeSpec
from raygen.actors.tasks.pick_place import (
    PickPlaceParams,
    PickPlaceSim,
    Scene,
    _cartesian_plan,
    quat_wxyz,
    run_pick_place,
    sample_scene,
)
from raygen.datasets.episode import Episode

logger = logging.getLogger(__name__)

__all__ = [
    "MATERIALS",
    "SOFT_KINDS",
    "Material",
    "SoftParams",
    "SoftPickPlaceSim",
    "SoftScene",
    "grip_nodes",
    "node_deformation",
    "node_pose",
    "run_soft_pick_place",
    "sample_material",
    "sample_soft_scene",
    "soft_plan",
]

SOFT_KINDS = ("block", "cloth")
"""block: a volumetric cube of tetrahedra (finite elements, neo-Hookean); cloth: a square sheet (springs)."""


@dataclass(frozen=True)
class Material:
    """A soft material: what it is made into, the ranges its stiffness and mass are drawn from, its constants."""

    name: str
    kind: str
    """One of :data:`SOFT_KINDS`."""
    stiffness: tuple[float, float]
    """[lo, hi] drawn log-uniform: Young's modulus in Pa (block) or the springs' elastic stiffness in N/m
    (cloth)."""
    mass_kg: tuple[float, float]
    """[lo, hi] total mass, drawn uniform."""
    poisson: float = 0.3
    """Poisson's ratio (block): with the Young's modulus it gives the neo-Hookean mu and lambda."""
    damping: float = 0.01
    """Neo-Hookean damping (block) or spring damping stiffness (cloth)."""
    friction: float = 1.0
    """Friction coefficient of the object's nodes."""
    bending: float = 0.0
    """Bending springs' stiffness, N/m (cloth; 0 = limp)."""

    @property
    def stiffness_unit(self) -> str:
        return "Pa" if self.kind == "block" else "N/m"


MATERIALS: dict[str, Material] = {
    "foam": Material("foam", "block", stiffness=(6.0e3, 1.5e4), mass_kg=(0.03, 0.06), poisson=0.25, damping=0.02),
    "rubber": Material("rubber", "block", stiffness=(1.5e4, 4.0e4), mass_kg=(0.08, 0.15), poisson=0.4,
                       damping=0.02),
    "cloth": Material("cloth", "cloth", stiffness=(20.0, 60.0), mass_kg=(0.02, 0.05), damping=0.05, friction=1.0,
                      bending=0.2),
}
"""The materials a scene can be made of, by name (SoftParams.materials picks among them)."""


@dataclass(frozen=True)
class SoftScene(Scene):
    """A pick-and-place scene whose object is soft: the rigid scene's fields plus the material's draws.

    ``object_size`` is the block's edge or the cloth's side, metres; ``object_kind`` is the material's kind."""

    material: str
    stiffness: float
    """Young's modulus in Pa (block) or spring stiffness in N/m (cloth), drawn from the material's range."""
    mass_kg: float
    poisson: float
    damping: float
    friction: float
    bending: float

    @property
    def task(self) -> str:
        noun = "cloth" if self.object_kind == "cloth" else f"{self.material} block"
        return f"pick the {self.colour_name} {noun} and place it on the target"


@dataclass(frozen=True)
class SoftParams(PickPlaceParams):
    """Task parameters of soft pick-and-place: every :class:`PickPlaceParams` field (``object_size`` is the
    block's edge) plus the soft ones below (spec params override them by name)."""

    materials: tuple[str, ...] = ("foam", "rubber", "cloth")
    """Materials drawn from, uniformly, per episode (keys of MATERIALS: foam, rubber, cloth)."""
    cloth_size: tuple[float, float] = (0.12, 0.16)
    """Side of the square cloth, metres, drawn uniform."""
    cloth_grasp_height: float = 0.013
    """TCP height above the table when pinching a cloth (the fingertips reach ~11 mm below the TCP: they close
    just above the table, over the cloth)."""

    @classmethod
    def from_options(cls, options: dict[str, Any], *, where: str = "task") -> SoftParams:
        params = super().from_options(options, where=where)
        problems = []
        unknown = [m for m in params.materials if m not in MATERIALS]
        if unknown or not params.materials:
            problems.append(f"{where}.materials: {list(params.materials)} must be a non-empty list of "
                            f"{sorted(MATERIALS)}" + (f" (unknown: {unknown})" if unknown else ""))
        for name in ("cloth_size", "object_size"):
            lo, hi = getattr(params, name)
            if not 0 < lo <= hi:
                problems.append(f"{where}.{name}: [lo, hi] with 0 < lo <= hi, got {[lo, hi]}")
        if params.scene and params.variation.platform.enabled:
            problems.append(f"{where}.scene: the platform is not combined with a soft object (lighting, "
                            "distractors and the person are); turn it off")
        if not 0 < params.cloth_grasp_height < 0.1:
            problems.append(f"{where}.cloth_grasp_height: metres in (0, 0.1), got {params.cloth_grasp_height}")
        if problems:
            raise ValueError("; ".join(problems))
        return params


def sample_material(rng: np.random.Generator, materials: tuple[str, ...]) -> tuple[Material, float, float]:
    """(material, stiffness, mass in kg): a material of ``materials`` drawn uniformly, its stiffness
    log-uniform and its mass uniform within the material's ranges."""
    mat = MATERIALS[materials[int(rng.integers(len(materials)))]]
    lo, hi = np.log(mat.stiffness[0]), np.log(mat.stiffness[1])
    stiffness = float(np.exp(rng.uniform(lo, hi)))
    mass = float(rng.uniform(*mat.mass_kg))
    return mat, stiffness, mass


def sample_soft_scene(rng: np.random.Generator, params: SoftParams) -> SoftScene:
    """The rigid scene's draws (object and place spot, colour, block edge), then the material and, for a
    cloth, its side."""
    base = sample_scene(rng, params, ("block",))
    mat, stiffness, mass = sample_material(rng, params.materials)
    size = float(rng.uniform(*params.cloth_size)) if mat.kind == "cloth" else base.object_size
    return SoftScene(base.object_xy, base.place_xy, size, mat.kind, base.colour_name, base.rgba, material=mat.name,
                     stiffness=stiffness, mass_kg=mass, poisson=mat.poisson, damping=mat.damping,
                     friction=mat.friction, bending=mat.bending)


def soft_plan(scene: SoftScene, params: SoftParams) -> list[tuple[str, np.ndarray | None, float]]:
    """The pick-and-place waypoints; a cloth is pinched at ``cloth_grasp_height`` instead of half its side.

    The rest follows from ``object_size`` being a cloth's side: it is carried at least its side above the table
    (so it hangs clear) and let go with the TCP half its side up (its lower part already on the table)."""
    plan = _cartesian_plan(scene, params)
    if scene.object_kind != "cloth":
        return plan
    out = []
    for phase, target, grip in plan:
        if phase in ("DOWN_PICK", "CLOSE_GRIPPER"):
            target = np.array([target[0], target[1], params.cloth_grasp_height])
        out.append((phase, target, grip))
    return out


# ----------------------------------------------------------------------------- pose from nodes


def _fit(rest: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroid [3], rotation [3,3], centred rest nodes rotated and moved onto the current centroid [N,3]):
    the rigid motion that best maps ``rest`` onto ``nodes`` (Kabsch, least squares)."""
    rest = np.asarray(rest, np.float64)
    nodes = np.asarray(nodes, np.float64)
    c0, c = rest.mean(axis=0), nodes.mean(axis=0)
    a, b = rest - c0, nodes - c
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    r = u @ np.diag([1.0, 1.0, d]) @ vt
    return c, r, a @ r.T + c


def node_pose(rest: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """[7] the soft object's pose from its nodes ``nodes`` [N,3] and their rest positions ``rest`` [N,3]: the
    centroid (unweighted mean of the nodes) and, as (w, x, y, z), the rotation that best maps the rest shape
    onto the current one (Kabsch). Identity at rest; it follows the nodes continuously, also for a flat
    cloth (a planar point set still fixes the rotation) and for a cube (where principal axes would not)."""
    c, r, _ = _fit(rest, nodes)
    return np.concatenate([c, quat_wxyz(r)])


def node_deformation(rest: np.ndarray, nodes: np.ndarray) -> float:
    """RMS distance (m) of the nodes from the best rigid motion of the rest shape: 0 for a rigid move."""
    _, _, fitted = _fit(rest, nodes)
    return float(np.sqrt(np.mean(np.sum((np.asarray(nodes, np.float64) - fitted) ** 2, axis=1))))


# ----------------------------------------------------------------------------- the grasp

PAD_HALF_WIDTH = 0.0105
"""Half a Franka finger's width across the closing direction, m."""
PAD_SPAN = (-0.022, 0.013)
"""Where a finger's pad is along the finger, from the TCP (towards the tips positive), m."""
BOTTOM_LAYER = 0.004
"""A block's nodes this close to its lowest node are never held (they would drag on the table), m."""


def grip_nodes(nodes: np.ndarray, pads: np.ndarray, hand_z: np.ndarray, finger_y: np.ndarray, anchor_depth: float, *,
               skip_bottom: bool) -> list[tuple[int, int]]:
    """The nodes a closed Franka hand holds and the finger holding each, (node index, 0 left / 1 right): the
    nodes between the pads (``pads`` [2,3], world) within a pad's width and span, at most ``anchor_depth``
    from a finger's inner face (nodes deeper inside a wide object are held by their neighbours); with
    ``skip_bottom``, not a block's bottom layer. ``hand_z`` is the hand's z axis (along the fingers),
    ``finger_y`` the closing direction when the pads touch."""
    across = pads[1] - pads[0]
    gap = float(np.linalg.norm(across))
    u = across / gap if gap > 1e-6 else np.asarray(finger_y, np.float64)
    w = np.asarray(hand_z, np.float64)
    v = np.cross(w, u)
    rel = nodes - (pads[0] + pads[1]) / 2
    s = rel @ u + gap / 2  # 0 at the left pad, gap at the right one
    inside = (np.abs(rel @ v) <= PAD_HALF_WIDTH) & (rel @ w >= PAD_SPAN[0]) & (rel @ w <= PAD_SPAN[1])
    inside &= (s >= -anchor_depth) & (s <= gap + anchor_depth)
    if skip_bottom:
        inside &= nodes[:, 2] > nodes[:, 2].min() + BOTTOM_LAYER
    out = []
    for i in np.flatnonzero(inside):
        if s[i] <= min(anchor_depth, gap / 2):
            out.append((int(i), 0))
        elif s[i] >= gap - min(anchor_depth, gap / 2):
            out.append((int(i), 1))
    return out


# ----------------------------------------------------------------------------- the simulator adapter


class SoftPickPlaceSim(PickPlaceSim, Protocol):
    """What a simulator adds for soft pick-and-place. ``reset`` takes a :class:`SoftScene`; ``attach`` anchors
    the nodes between the fingers to them and ``detach`` removes every anchor; ``object_pose`` is
    :func:`node_pose` of the nodes."""

    def object_nodes(self) -> np.ndarray: ...  # [N,3] the simulation mesh's nodes, world frame
    def rest_nodes(self) -> np.ndarray: ...  # [N,3] the same nodes as built by reset(), before any step
    def anchored_nodes(self) -> list[int]: ...  # indices of the nodes anchored now (empty when not held)


class _Observed:
    """``sim`` with the object's deformation recorded each time the task observes its pose (once a frame)."""

    def __init__(self, sim: SoftPickPlaceSim):
        self._sim = sim
        self._rest = sim.rest_nodes()
        self.deformation: list[float] = []
        self.anchored_max = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sim, name)

    def object_pose(self) -> np.ndarray:
        nodes = self._sim.object_nodes()
        self.deformation.append(node_deformation(self._rest, nodes))
        return node_pose(self._rest, nodes)

    def attach(self) -> None:
        self._sim.attach()
        self.anchored_max = max(self.anchored_max, len(self._sim.anchored_nodes()))


def run_soft_pick_place(sim: SoftPickPlaceSim, spec: EpisodeSpec, params: SoftParams, *, render: bool = True
                        ) -> Episode:
    """Run one soft pick-and-place episode on ``sim``; the same spec always gives the same episode.

    The waypoints, schedule, execution and episode are pick-and-place's (see
    :func:`raygen.actors.tasks.pick_place.run_pick_place`); the scene adds a material
    (:func:`sample_soft_scene`), the episode adds the material's values to its metrics and provenance, the
    per-frame ``object.deformation`` [T] (m, :func:`node_deformation`) and ``task.anchored_nodes``. With
    ``params.scene`` on (lighting, distractors, the person proxy; not the platform), the episode is
    :func:`raygen.actors.tasks.varied.run_varied`'s with this task's scene draw, waypoints and observation: the
    variation has its own random streams (the task's draws do not change), the arm waits for the person, and
    every drawn value is in ``scene.*`` metrics and ``provenance.scene_variation``."""
    observed: list[_Observed] = []
    drawn: list[SoftScene] = []

    def observe(s: SoftPickPlaceSim) -> _Observed:
        observed.append(_Observed(s))
        return observed[-1]

    def sample(rng: np.random.Generator) -> SoftScene:
        drawn.append(sample_soft_scene(rng, params))
        return drawn[-1]

    episode = run_pick_place(sim, spec, params, render=render, sample=sample, waypoints=soft_plan, observe=observe,
                             task="soft_pick_place")
    return _soft_record(episode, drawn[-1], observed[-1])


def _soft_record(episode: Episode, scene: SoftScene, observed: _Observed) -> Episode:
    """The material's values in the episode's metrics and provenance, and its deformation track."""
    mat = MATERIALS[scene.material]
    episode.provenance["soft"] = {"material": scene.material, "kind": scene.object_kind, "stiffness": scene.stiffness,
                                  "stiffness_unit": mat.stiffness_unit, "mass_kg": scene.mass_kg,
                                  "size_m": scene.object_size, "material_constants": asdict(mat)}
    deformation = np.asarray(observed.deformation, np.float32)
    episode.metrics.update({
        "task.anchored_nodes": observed.anchored_max,
        "task.max_deformation_m": float(deformation.max()) if deformation.size else 0.0,
        "scene.material": scene.material, "scene.stiffness": scene.stiffness,
        "scene.stiffness_unit": mat.stiffness_unit, "scene.mass_kg": scene.mass_kg,
        "scene.poisson": scene.poisson, "scene.friction": scene.friction,
    })
    if len(deformation) == episode.length:
        episode.frame_features["object.deformation"] = deformation
    else:  # execute observes the pose once a frame; anything else is a change there, not a soft object's
        logger.warning("object.deformation not recorded: %d observations for %d frames", len(deformation),
                       episode.length)
    return episode
