"""Scene variation for pick-and-place: light, distractors, a moving platform, a moving person proxy.

Configured under ``task_params.scene`` (see :class:`SceneVariationParams`); every part is off by default,
and with every part off an episode is exactly what it was without the section (same seed, same bytes).
What a part draws comes from its own random stream, ``default_rng([seed, index, SCENE_STREAM, part])``,
never from the task's stream: turning a part on changes neither the object, the place spot and the joint
noise nor what the other parts draw.

- **lighting**: one directional light (azimuth, elevation, colour temperature, intensity) plus ambient and
  specular terms per episode; with ``change_every_s`` a new light is drawn every so many seconds and the
  light moves to it (``smooth``) or jumps (``step``) during the episode. The simulator applies it at each
  render, so lighting changes the images and nothing else.
- **distractors**: K extra objects resting on the table, clear of the object, the place marker, the
  platform's path and each other by ``clearance_m``; never part of success. With ``distinct_from_target``
  none has both the object's colour and kind, so the instruction still names one object.
- **platform**: a thin kinematic slab sliding along a straight path at a set speed (it stops at the end).
  With ``carries_object`` the object starts on it and rides it; the pick position is predicted: the
  object reaches ``scene.object_x/y`` (the pick spot) at the grasp frame, and from the approach to the grasp
  the hand follows it (the joint targets are shifted by the platform's motion through the arm's Jacobian).
  Otherwise the platform runs clear of the object, the place spot and the distractors.
- **person**: a vertical capsule standing for a person, walking a straight line through a point near the
  workspace at a set speed (it ignores the table: it stands for a person walking or reaching in, and
  touches nothing in the physics). The task predicts, frame by frame, the distance between the capsule
  and the arm's links (the kinematic chain of the planned joint targets, links as capsules of
  ``arm_radius_m``) and **waits**: it holds the arm at a waypoint, where it is at rest, until the planned
  path is ``clearance_m`` clear, up to ``max_wait_s`` in all. When no such schedule exists the episode
  fails at once with the reason (:class:`~raygen.actors.spec.EpisodeFailed`). After the episode the same
  distance is measured on the recorded joint states; an episode whose arm came within the capsule is
  not successful (``task.person_gap_m`` < 0).

What one episode drew (light keyframes, distractors, the platform's and the person's paths) is a
:class:`raygen.actors.tasks.scene_plan.SceneVariation`; every drawn value is in the episode's metrics
(``scene.light_*``, ``scene.distractor*``, ``scene.platform_*``, ``scene.person_*``; JSON scalars, lists as
JSON text) and, in full, in ``provenance["scene_variation"]``. The episode itself runs in
:mod:`raygen.actors.tasks.varied`. Imports the standard library and pick_place only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from raygen.actors.tasks.pick_place import COLOURS

__all__ = [
    "DISTRACTOR_COLOURS",
    "DistractorParams",
    "LightingParams",
    "PersonParams",
    "PlatformParams",
    "SCENE_STREAM",
    "SceneVariationParams",
]

SCENE_STREAM = 0x5CE7E
"""Mixed into the episode's seed for the scene-variation streams (one more word per part)."""
_PARTS = {"lighting": 1, "distractors": 2, "platform": 3, "person": 4}
TABLE_X = (0.0, 0.9)
TABLE_Y = (-0.6, 0.6)
"""The table top (z = 0) both simulators build, metres."""
BASE_KEEPOUT_M = 0.15
"""Nothing is placed closer than this (xy) to the robot's base axis."""
MARKER_RADIUS_M = 0.035
"""The place marker's radius."""
DISTRACTOR_COLOURS = {**COLOURS, "grey": (0.5, 0.5, 0.52, 1.0), "white": (0.92, 0.92, 0.9, 1.0),
                      "brown": (0.45, 0.3, 0.18, 1.0)}
DISTRACTOR_KINDS = ("cube", "cylinder", "box")
PYBULLET_LIGHT = {"intensity": 0.35, "ambient": 0.6, "specular": 0.05}
"""PyBullet's tiny renderer's own light terms (what an episode without lighting variation is drawn with)."""


@dataclass(frozen=True)
class LightingParams:
    """One directional light plus ambient light, drawn per episode (and during it when dynamic)."""

    enabled: bool = False
    """Vary the light. Off: the simulator's own light, as without this section."""
    azimuth_deg: tuple[float, float] = (0.0, 360.0)
    """Where the light comes from, degrees about +z from +x (the robot faces +x), drawn uniform."""
    elevation_deg: tuple[float, float] = (25.0, 85.0)
    """The light's height above the table plane, degrees (90: straight above), drawn uniform."""
    colour_temperature_k: tuple[float, float] = (3500.0, 7500.0)
    """The light's colour as a black-body temperature, kelvin (6500: white; lower is warmer), drawn uniform."""
    intensity: tuple[float, float] = (0.2, 0.7)
    """Strength of the directional (diffuse) light; PyBullet's own scene uses 0.35."""
    ambient: tuple[float, float] = (0.3, 0.8)
    """Strength of the ambient (direction-less) light; PyBullet's own scene uses 0.6."""
    specular: tuple[float, float] = (0.0, 0.2)
    """Strength of highlights; PyBullet's own scene uses 0.05."""
    shadows: bool = False
    """Cast shadows (PyBullet's tiny renderer takes about twice as long per image; its EGL renderer and
    this option: no shadows)."""
    change_every_s: float = 0.0
    """Dynamic lighting: > 0 draws a new light within the ranges every this many seconds of the episode;
    0 keeps one light for the whole episode."""
    transition: str = "smooth"
    """How a dynamic light goes from one draw to the next: "smooth" (interpolated across the interval) or
    "step" (at once)."""


@dataclass(frozen=True)
class DistractorParams:
    """Extra objects on the table that the task ignores."""

    enabled: bool = False
    """Place distractors."""
    count: tuple[int, int] = (2, 5)
    """How many, drawn uniform (both ends included); fewer when the table has no room left (the number
    placed is recorded)."""
    kinds: tuple[str, ...] = DISTRACTOR_KINDS
    """Drawn uniform from: cube (equal edges), cylinder (diameter and height drawn apart), box (three edges
    drawn apart)."""
    size_m: tuple[float, float] = (0.03, 0.06)
    """Edge, diameter and height range, metres."""
    colours: tuple[str, ...] = tuple(DISTRACTOR_COLOURS)
    """Colour names drawn uniform from (the task's colours plus grey, white, brown)."""
    distinct_from_target: bool = True
    """No distractor has both the object's colour and its kind (the instruction names one object)."""
    clearance_m: float = 0.06
    """Free gap between a distractor's footprint and the object's, the place marker, every other
    distractor and the platform's path, metres."""
    x_range: tuple[float, float] = (0.25, 0.8)
    """Where distractors may stand (their centres), x in metres (the table spans 0 to 0.9)."""
    y_range: tuple[float, float] = (-0.45, 0.45)
    """Where distractors may stand, y in metres (the table spans -0.6 to 0.6)."""
    mass_kg: float = 0.1
    """Each distractor's mass (they are dynamic bodies: a hand that brushes one moves it)."""


@dataclass(frozen=True)
class PlatformParams:
    """A thin slab moving along a straight path on the table (a conveyor's moving tray)."""

    enabled: bool = False
    """Add the platform."""
    carries_object: bool = True
    """The object starts on the platform (within the task's x_range and y_range) and rides it until it is
    grasped; the pick position is predicted from the platform's motion and the hand follows the object
    down. False: the platform's whole path stays clear of the object, the place spot and the distractors."""
    speed_mps: tuple[float, float] = (0.02, 0.05)
    """Platform speed, m/s, drawn uniform."""
    heading_deg: tuple[float, float] = (0.0, 360.0)
    """Direction of travel, degrees about +z from +x, drawn uniform."""
    travel_m: tuple[float, float] = (0.2, 0.35)
    """Length of the path, metres, drawn uniform; the platform stops at its end."""
    ride_m: tuple[float, float] = (0.04, 0.1)
    """carries_object: how far the object rides before it is grasped, metres, drawn uniform (at most what
    the platform covers before the grasp)."""
    start_s: tuple[float, float] = (0.0, 2.0)
    """Without carries_object: when the platform starts moving, seconds, drawn uniform. (With it, the
    platform starts so that the object reaches the pick spot at the grasp.)"""
    size_m: tuple[float, float] = (0.12, 0.12)
    """Length (along the path) and width of the slab, metres."""
    height_m: float = 0.01
    """Thickness of the slab, metres (a carried object stands this much higher)."""
    clearance_m: float = 0.03
    """Free gap between the platform's swept strip and the place marker (and the object when not carried)."""


@dataclass(frozen=True)
class PersonParams:
    """A capsule standing for a person walking a straight line past or through the workspace."""

    enabled: bool = False
    """Add the person proxy."""
    speed_mps: tuple[float, float] = (0.5, 1.2)
    """Walking speed, m/s, drawn uniform."""
    through_x: tuple[float, float] = (0.75, 1.2)
    """The path passes through a point drawn in this x range, metres (the table's far edge is at 0.9)."""
    through_y: tuple[float, float] = (-0.3, 0.3)
    """The y range of that point, metres."""
    heading_deg: tuple[float, float] = (60.0, 120.0)
    """Walking direction, degrees about +z from +x, drawn uniform (90: across the table, along +y)."""
    both_ways: bool = True
    """Reverse the drawn direction half the time (people come from both sides)."""
    path_m: float = 3.0
    """Length of the walk, centred on the drawn point, metres; the proxy stands at its ends before and after."""
    start_s: tuple[float, float] = (0.0, 6.0)
    """When the walk starts, seconds, drawn uniform."""
    radius_m: float = 0.2
    """The capsule's radius (half a person's shoulder width), metres."""
    height_m: float = 1.7
    """The capsule's height, metres (taller than the arm reaches, so the check is in the table plane)."""
    arm_radius_m: float = 0.1
    """The arm's links, hand and held object are modelled as capsules of this radius around the kinematic
    chain when the distance to the person is predicted and measured."""
    clearance_m: float = 0.05
    """The planned path keeps at least this gap to the person (the measured one must stay above 0)."""
    max_wait_s: float = 6.0
    """The most the arm may wait for the person in one episode, seconds; beyond it the episode fails."""
    wait_step_s: float = 0.25
    """Waits are whole multiples of this, seconds."""


_PART_TYPES = {"lighting": LightingParams, "distractors": DistractorParams, "platform": PlatformParams,
               "person": PersonParams}


@dataclass(frozen=True)
class SceneVariationParams:
    """``task_params.scene``: which parts of the scene vary and within which ranges."""

    lighting: LightingParams = field(default_factory=LightingParams)
    """The light: direction, colour, strength, ambient; per episode or changing during it."""
    distractors: DistractorParams = field(default_factory=DistractorParams)
    """Extra objects on the table, not part of the task."""
    platform: PlatformParams = field(default_factory=PlatformParams)
    """A moving platform that may carry the object to the pick spot."""
    person: PersonParams = field(default_factory=PersonParams)
    """A person proxy walking past; the arm waits for it."""

    @property
    def active(self) -> bool:
        return any(getattr(self, name).enabled for name in _PART_TYPES)

    @classmethod
    def from_options(cls, options: dict[str, Any] | None, *, where: str = "task.scene") -> SceneVariationParams:
        """Parse and check the section; every problem is reported at once, each naming its field."""
        options = dict(options or {})
        problems: list[str] = []
        unknown = sorted(set(options) - set(_PART_TYPES))
        if unknown:
            problems.append(f"{where}: unknown part(s) {unknown}; known: {sorted(_PART_TYPES)}")
        parts: dict[str, Any] = {}
        for name, typ in _PART_TYPES.items():
            sub = options.get(name) or {}
            if not isinstance(sub, dict):
                problems.append(f"{where}.{name}: must be a mapping of {typ.__name__} fields, got {sub!r}")
                continue
            known = {f.name: f for f in fields(typ)}
            bad = sorted(set(sub) - set(known))
            if bad:
                problems.append(f"{where}.{name}: unknown field(s) {bad}; known: {sorted(known)}")
                continue
            kw = {}
            for k, v in sub.items():
                default = getattr(typ(), k)
                if isinstance(default, tuple):
                    pair = k not in ("kinds", "colours")
                    if not isinstance(v, (list, tuple)) or (pair and len(v) != 2):
                        problems.append(f"{where}.{name}.{k}: must be a list like {list(default)}, got {v!r}")
                        continue
                    v = tuple(v)
                elif isinstance(default, bool) and not isinstance(v, bool):
                    problems.append(f"{where}.{name}.{k}: must be true or false, got {v!r}")
                    continue
                elif (isinstance(default, (int, float)) and not isinstance(default, bool)
                      and (isinstance(v, bool) or not isinstance(v, (int, float)))):
                    problems.append(f"{where}.{name}.{k}: must be a number, got {v!r}")
                    continue
                kw[k] = v
            parts[name] = typ(**kw)
        out = cls(**parts)  # a part that did not parse is checked as its defaults
        problems += out._check(where)
        if problems:
            raise ValueError("; ".join(problems))
        return out

    def _check(self, where: str) -> list[str]:
        problems: list[str] = []

        def rng_ok(part: str, name: str, lo: float | None = None, hi: float | None = None, pos: bool = False):
            a, b = getattr(getattr(self, part), name)
            ok = a <= b and (lo is None or a >= lo) and (hi is None or b <= hi) and (not pos or a > 0)
            if not ok:
                bounds = f" within [{lo}, {hi}]" if lo is not None or hi is not None else ""
                problems.append(f"{where}.{part}.{name}: [lo, hi] with lo <= hi{bounds}"
                                f"{' and lo > 0' if pos else ''}, got {[a, b]}")

        lt, d, pf, pr = self.lighting, self.distractors, self.platform, self.person
        rng_ok("lighting", "azimuth_deg", -360.0, 720.0)
        rng_ok("lighting", "elevation_deg", 1.0, 90.0)
        rng_ok("lighting", "colour_temperature_k", 1000.0, 15000.0)
        for name in ("intensity", "ambient", "specular"):
            rng_ok("lighting", name, 0.0, 2.0)
        if lt.change_every_s < 0:
            problems.append(f"{where}.lighting.change_every_s: seconds >= 0 (0: static), got {lt.change_every_s}")
        if lt.transition not in ("smooth", "step"):
            problems.append(f"{where}.lighting.transition: {lt.transition!r} is not one of smooth, step")
        a, b = d.count
        if not (isinstance(a, int) and isinstance(b, int) and 0 <= a <= b <= 20):
            problems.append(f"{where}.distractors.count: [lo, hi] integers with 0 <= lo <= hi <= 20, got {[a, b]}")
        bad = [k for k in d.kinds if k not in DISTRACTOR_KINDS]
        if bad or not d.kinds:
            problems.append(f"{where}.distractors.kinds: a non-empty list of {list(DISTRACTOR_KINDS)}, got "
                            f"{list(d.kinds)}")
        bad = [c for c in d.colours if c not in DISTRACTOR_COLOURS]
        if bad or not d.colours:
            problems.append(f"{where}.distractors.colours: a non-empty list of {sorted(DISTRACTOR_COLOURS)}, "
                            f"got {list(d.colours)}")
        rng_ok("distractors", "size_m", 0.01, 0.15)
        rng_ok("distractors", "x_range", TABLE_X[0], TABLE_X[1])
        rng_ok("distractors", "y_range", TABLE_Y[0], TABLE_Y[1])
        if not d.clearance_m >= 0:
            problems.append(f"{where}.distractors.clearance_m: metres >= 0, got {d.clearance_m}")
        if not d.mass_kg > 0:
            problems.append(f"{where}.distractors.mass_kg: > 0, got {d.mass_kg}")
        rng_ok("platform", "speed_mps", 0.0, 0.3, pos=True)
        rng_ok("platform", "heading_deg", -360.0, 720.0)
        rng_ok("platform", "travel_m", 0.0, 1.0, pos=True)
        rng_ok("platform", "ride_m", 0.0, 1.0)
        rng_ok("platform", "start_s", 0.0, 60.0)
        if not (0.04 <= pf.size_m[0] <= 0.4 and 0.04 <= pf.size_m[1] <= 0.4):
            problems.append(f"{where}.platform.size_m: [length, width] each in [0.04, 0.4] metres, got "
                            f"{list(pf.size_m)}")
        if not 0.002 <= pf.height_m <= 0.05:
            problems.append(f"{where}.platform.height_m: metres in [0.002, 0.05], got {pf.height_m}")
        if pf.carries_object and pf.ride_m[1] > pf.travel_m[0]:
            problems.append(f"{where}.platform.ride_m: the ride (up to {pf.ride_m[1]}) must fit in the shortest "
                            f"path (travel_m from {pf.travel_m[0]})")
        if not pf.clearance_m >= 0:
            problems.append(f"{where}.platform.clearance_m: metres >= 0, got {pf.clearance_m}")
        rng_ok("person", "speed_mps", 0.0, 3.0, pos=True)
        rng_ok("person", "through_x", -3.0, 3.0)
        rng_ok("person", "through_y", -3.0, 3.0)
        rng_ok("person", "heading_deg", -360.0, 720.0)
        rng_ok("person", "start_s", 0.0, 60.0)
        for name, lo in (("path_m", 0.0), ("radius_m", 0.0), ("height_m", 0.0), ("wait_step_s", 0.0)):
            if not getattr(pr, name) > lo:
                problems.append(f"{where}.person.{name}: must be > {lo}, got {getattr(pr, name)}")
        for name in ("arm_radius_m", "clearance_m", "max_wait_s"):
            if not getattr(pr, name) >= 0:
                problems.append(f"{where}.person.{name}: must be >= 0, got {getattr(pr, name)}")
        return problems
