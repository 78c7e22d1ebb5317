"""One episode's drawn scene variation (:mod:`raygen.actors.tasks.scene` says what each part is): light
keyframes, distractors, the platform's and the person's motion, the metrics and provenance that record
them, and :func:`sample_variation`, which draws them. Imports numpy and the standard library only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from raygen.actors.tasks.pick_place import Scene
from raygen.actors.tasks.scene import (
    _PARTS,
    BASE_KEEPOUT_M,
    DISTRACTOR_COLOURS,
    MARKER_RADIUS_M,
    SCENE_STREAM,
    TABLE_X,
    TABLE_Y,
    DistractorParams,
    LightingParams,
    PersonParams,
    PlatformParams,
    SceneVariationParams,
)

__all__ = [
    "Distractor",
    "Light",
    "LightingPlan",
    "PersonPlan",
    "PlatformPlan",
    "SceneVariation",
    "kelvin_to_rgb",
    "restored_variation",
    "sample_variation",
    "variation_at",
]


# ----------------------------------------------------------------------------- lighting


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Black-body colour of ``kelvin`` as RGB in [0, 1], brightest channel 1 (Tanner Helland's fit)."""
    t = float(kelvin) / 100.0
    r = 1.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592 / 255
    if t <= 66:
        g = (99.4708025861 * np.log(t) - 161.1195681661) / 255
    else:
        g = 288.1221695283 * (t - 60) ** -0.0755148492 / 255
    b = 1.0 if t >= 66 else (0.0 if t <= 19 else (138.5177312231 * np.log(t - 10) - 305.0447927307) / 255)
    rgb = np.clip([r, g, b], 0.0, 1.0)
    return rgb / rgb.max()


@dataclass(frozen=True)
class Light:
    """The light at one moment: what a simulator applies at a render."""

    azimuth_deg: float
    elevation_deg: float
    colour_temperature_k: float
    intensity: float
    ambient: float
    specular: float
    shadows: bool

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from the scene towards the light (world axes)."""
        az, el = np.radians(self.azimuth_deg), np.radians(self.elevation_deg)
        return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])

    @property
    def rgb(self) -> np.ndarray:
        return kelvin_to_rgb(self.colour_temperature_k)


_LIGHT_KEYS = ("azimuth_deg", "elevation_deg", "colour_temperature_k", "intensity", "ambient", "specular")


@dataclass(frozen=True)
class LightingPlan:
    """Keyframes of the light: ``values[k]`` (the _LIGHT_KEYS) holds from ``times[k]`` seconds."""

    times: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]
    transition: str
    shadows: bool

    def at(self, t: float) -> Light:
        times = np.asarray(self.times)
        k = int(np.searchsorted(times, t, side="right") - 1)
        k = min(max(k, 0), len(times) - 1)
        v = np.asarray(self.values[k], dtype=np.float64)
        if self.transition == "smooth" and k + 1 < len(times):
            w = (t - times[k]) / (times[k + 1] - times[k])
            nxt = np.asarray(self.values[k + 1], dtype=np.float64)
            turn = (nxt[0] - v[0] + 180.0) % 360.0 - 180.0  # azimuth the short way round
            v = v + w * (nxt - v)
            v[0] = self.values[k][0] + w * turn
        return Light(*(float(x) for x in v), shadows=self.shadows)


def _sample_lighting(rng: np.random.Generator, p: LightingParams, duration_s: float) -> LightingPlan:
    n = 1 if p.change_every_s <= 0 else int(np.ceil(duration_s / p.change_every_s)) + 1
    ranges = [p.azimuth_deg, p.elevation_deg, p.colour_temperature_k, p.intensity, p.ambient, p.specular]
    values = tuple(tuple(float(rng.uniform(*r)) for r in ranges) for _ in range(n))
    times = tuple(float(k * p.change_every_s) for k in range(n))
    return LightingPlan(times=times, values=values, transition=p.transition, shadows=p.shadows)


# ----------------------------------------------------------------------------- distractors


@dataclass(frozen=True)
class Distractor:
    kind: str
    """cube, cylinder or box."""
    size: tuple[float, float, float]
    """Box edges along its own x, y, z; a cylinder's (diameter, diameter, height), metres."""
    colour_name: str
    rgba: tuple[float, float, float, float]
    xy: tuple[float, float]
    yaw: float
    """Radians about +z."""

    @property
    def radius(self) -> float:
        """Radius of its footprint's bounding circle, metres."""
        return self.size[0] / 2 if self.kind == "cylinder" else float(np.hypot(self.size[0], self.size[1]) / 2)


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Distance from point p to segment ab (2D)."""
    ab = b - a
    t = 0.0 if not ab.any() else float(np.clip(np.dot(p - a, ab) / np.dot(ab, ab), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def _sample_distractors(rng: np.random.Generator, p: DistractorParams, scene: Scene,
                        platform: PlatformPlan | None, others: tuple[Scene, ...] = (),
                        bases: tuple[tuple[float, float], ...] = ((0.0, 0.0),),
                        table_x: tuple[float, float] = TABLE_X) -> tuple[tuple[Distractor, ...], int]:
    """(distractors placed, how many were drawn). Each keeps ``clearance_m`` from the object and the place
    marker of ``scene`` and of every scene in ``others`` (another arm's), ``BASE_KEEPOUT_M`` from each base
    axis in ``bases``, and stands on the table (``table_x`` by ``TABLE_Y``)."""
    n = int(rng.integers(p.count[0], p.count[1] + 1))
    keep = [(np.asarray(s.object_xy), np.asarray(s.place_xy), s.object_size * np.sqrt(2) / 2)
            for s in (scene, *others)]
    base_xy = [np.asarray(b, np.float64) for b in bases]
    placed: list[Distractor] = []
    for _ in range(n):
        kind = p.kinds[int(rng.integers(len(p.kinds)))]
        e = rng.uniform(*p.size_m, 3)
        size = (float(e[0]),) * 3 if kind == "cube" else (
            (float(e[0]), float(e[0]), float(e[1])) if kind == "cylinder" else tuple(float(x) for x in e))
        colours = list(p.colours)
        if p.distinct_from_target and kind == scene.object_kind and scene.colour_name in colours and len(colours) > 1:
            colours.remove(scene.colour_name)
        colour = colours[int(rng.integers(len(colours)))]
        yaw = float(rng.uniform(0.0, np.pi / 2))
        d = Distractor(kind, size, colour, DISTRACTOR_COLOURS[colour], (0.0, 0.0), yaw)
        r, c = d.radius, p.clearance_m
        for _ in range(200):
            xy = rng.uniform([p.x_range[0], p.y_range[0]], [p.x_range[1], p.y_range[1]])
            ok = (all(np.linalg.norm(xy - obj) >= r + obj_r + c
                      and np.linalg.norm(xy - place) >= r + max(MARKER_RADIUS_M, obj_r) + c
                      for obj, place, obj_r in keep)
                  and all(np.linalg.norm(xy - b) >= BASE_KEEPOUT_M + r for b in base_xy)
                  and table_x[0] + r <= xy[0] <= table_x[1] - r and TABLE_Y[0] + r <= xy[1] <= TABLE_Y[1] - r
                  and all(np.linalg.norm(xy - np.asarray(o.xy)) >= r + o.radius + c for o in placed)
                  and (platform is None or _seg_dist(xy, *platform.segment) >= r + platform.radius + c))
            if ok:
                placed.append(Distractor(kind, size, colour, DISTRACTOR_COLOURS[colour],
                                         (float(xy[0]), float(xy[1])), yaw))
                break
    return tuple(placed), n


# ----------------------------------------------------------------------------- platform


@dataclass
class PlatformPlan:
    """Where the platform is when: at ``start`` until ``t_start``, then along ``heading`` at ``speed`` for
    ``travel`` metres, then still. ``t_start`` of a carrying platform is fixed once the arm's schedule is
    (the object must reach the pick spot at the grasp): the task sets it before the first step."""

    start: tuple[float, float]
    heading_rad: float
    speed: float
    travel: float
    size: tuple[float, float, float]
    """Length (along the path), width, thickness, metres."""
    carries_object: bool
    ride: float
    """How far the carried object rides before the grasp, metres (0 when not carrying)."""
    t_start: float

    @property
    def direction(self) -> np.ndarray:
        return np.array([np.cos(self.heading_rad), np.sin(self.heading_rad)])

    @property
    def segment(self) -> tuple[np.ndarray, np.ndarray]:
        a = np.asarray(self.start, dtype=np.float64)
        return a, a + self.travel * self.direction

    @property
    def radius(self) -> float:
        return float(np.hypot(self.size[0], self.size[1]) / 2)

    def position(self, t: float) -> np.ndarray:
        """The slab's centre (xy) at time ``t`` seconds."""
        s = float(np.clip((t - self.t_start) * self.speed, 0.0, self.travel))
        return np.asarray(self.start, dtype=np.float64) + s * self.direction


def _strip_ok(a: np.ndarray, b: np.ndarray, r: float) -> bool:
    """A strip of half-width r from a to b lies on the table and clear of the robot's base."""
    for q in (a, b):
        if not (TABLE_X[0] + r <= q[0] <= TABLE_X[1] - r and TABLE_Y[0] + r <= q[1] <= TABLE_Y[1] - r):
            return False
    return _seg_dist(np.zeros(2), a, b) >= BASE_KEEPOUT_M + r


def _sample_platform(rng: np.random.Generator, p: PlatformParams, scene: Scene, grasp_s: float,
                     place_box: tuple[tuple[float, float], tuple[float, float], float]
                     ) -> tuple[PlatformPlan, tuple[float, float]] | None:
    """(the platform, the place spot): the scene's place spot when some path clears it in 300 draws, else
    one drawn again (uniform in ``place_box`` = x range, y range, least distance from the object) with
    each path tried. None after 500 draws. A carried object starts within the box's x and y ranges too."""
    size = (float(p.size_m[0]), float(p.size_m[1]), float(p.height_m))
    r = float(np.hypot(size[0], size[1]) / 2)
    obj, place = np.asarray(scene.object_xy), np.asarray(scene.place_xy)
    obj_r = scene.object_size * np.sqrt(2) / 2
    (x0, x1), (y0, y1), min_dist = place_box
    for attempt in range(500):
        heading = float(np.radians(rng.uniform(*p.heading_deg)))
        speed = float(rng.uniform(*p.speed_mps))
        travel = float(rng.uniform(*p.travel_m))
        d = np.array([np.cos(heading), np.sin(heading)])
        if p.carries_object:
            ride = min(float(rng.uniform(*p.ride_m)), speed * grasp_s)
            start, t0 = obj - ride * d, 0.0
        else:
            ride = 0.0
            start = rng.uniform([TABLE_X[0], TABLE_Y[0]], [TABLE_X[1], TABLE_Y[1]])
            t0 = float(rng.uniform(*p.start_s))
        if attempt >= 300:  # the place spot leaves no room: move it
            place = rng.uniform([x0, y0], [x1, y1])
            if np.linalg.norm(place - obj) < min_dist:
                continue
        a, b = start, start + travel * d
        if not _strip_ok(a, b, r):
            continue
        if p.carries_object and not (x0 <= a[0] <= x1 and y0 <= a[1] <= y1):
            continue  # the object rides within the task's workspace, where the arm follows it
        if _seg_dist(place, a, b) < r + max(MARKER_RADIUS_M, obj_r) + p.clearance_m:
            continue
        if not p.carries_object and _seg_dist(obj, a, b) < r + obj_r + p.clearance_m:
            continue
        plan = PlatformPlan(start=(float(a[0]), float(a[1])), heading_rad=heading, speed=speed, travel=travel,
                            size=size, carries_object=p.carries_object, ride=ride, t_start=t0)
        return plan, (float(place[0]), float(place[1]))
    return None


# ----------------------------------------------------------------------------- person


@dataclass(frozen=True)
class PersonPlan:
    """A vertical capsule (feet at z = 0) walking from ``a`` to ``b`` at ``speed`` from ``t_start``."""

    a: tuple[float, float]
    b: tuple[float, float]
    speed: float
    t_start: float
    radius: float
    height: float
    through: tuple[float, float]
    heading_rad: float

    def position(self, t: np.ndarray | float) -> np.ndarray:
        """xy [..., 2] at time(s) ``t`` seconds."""
        a, b = np.asarray(self.a), np.asarray(self.b)
        length = float(np.linalg.norm(b - a))
        s = np.clip((np.asarray(t, dtype=np.float64) - self.t_start) * self.speed / length, 0.0, 1.0)
        return a + s[..., None] * (b - a)


def _sample_person(rng: np.random.Generator, p: PersonParams) -> PersonPlan:
    c = np.array([rng.uniform(*p.through_x), rng.uniform(*p.through_y)])
    heading = float(np.radians(rng.uniform(*p.heading_deg)))
    if p.both_ways and rng.uniform() < 0.5:
        heading += np.pi
    speed = float(rng.uniform(*p.speed_mps))
    t0 = float(rng.uniform(*p.start_s))
    d = np.array([np.cos(heading), np.sin(heading)])
    a, b = c - d * p.path_m / 2, c + d * p.path_m / 2
    return PersonPlan(a=(float(a[0]), float(a[1])), b=(float(b[0]), float(b[1])), speed=speed, t_start=t0,
                      radius=float(p.radius_m), height=float(p.height_m), through=(float(c[0]), float(c[1])),
                      heading_rad=float(np.arctan2(d[1], d[0])))


# ----------------------------------------------------------------------------- the episode's draw


@dataclass
class SceneVariation:
    """Everything one episode's scene variation drew (what a simulator builds and animates)."""

    params: SceneVariationParams
    scene: Scene
    """The task's scene, its place spot moved when the platform left it no room (``place_moved``)."""
    lighting: LightingPlan | None = None
    distractors: tuple[Distractor, ...] = ()
    distractors_drawn: int = 0
    platform: PlatformPlan | None = None
    person: PersonPlan | None = None
    place_moved: bool = False
    waits: list[tuple[str, float]] = field(default_factory=list)
    """(phase about to start, seconds) for every wait for the person (filled in by the task)."""

    def metrics(self) -> dict[str, Any]:
        """JSON scalars for the episode's metrics (lists as JSON text)."""
        m: dict[str, Any] = {}
        if self.lighting is not None:
            first = self.lighting.at(0.0)
            m.update({f"scene.light_{k}": round(float(getattr(first, k)), 4) for k in _LIGHT_KEYS})
            m["scene.light_shadows"] = bool(first.shadows)
            m["scene.light_dynamic"] = len(self.lighting.times) > 1
            if len(self.lighting.times) > 1:
                m["scene.light_change_every_s"] = float(self.lighting.times[1])
                m["scene.light_transition"] = self.lighting.transition
                m["scene.light_keyframes"] = json.dumps([[round(t, 3), *(round(v, 3) for v in vals)]
                                                         for t, vals in zip(self.lighting.times, self.lighting.values)])
        if self.params.distractors.enabled:
            m["scene.distractors"] = len(self.distractors)
            m["scene.distractors_drawn"] = self.distractors_drawn
            m["scene.distractor_kinds"] = json.dumps([d.kind for d in self.distractors])
            m["scene.distractor_colours"] = json.dumps([d.colour_name for d in self.distractors])
            m["scene.distractor_xy"] = json.dumps([[round(v, 4) for v in d.xy] for d in self.distractors])
        if self.platform is not None:
            pf = self.platform
            m["scene.place_moved"] = self.place_moved
            m.update({"scene.platform_speed_mps": pf.speed,
                      "scene.platform_heading_deg": float(np.degrees(pf.heading_rad)),
                      "scene.platform_travel_m": pf.travel, "scene.platform_carries_object": pf.carries_object,
                      "scene.platform_ride_m": pf.ride, "scene.platform_start_x": pf.start[0],
                      "scene.platform_start_y": pf.start[1], "scene.platform_start_s": pf.t_start})
        if self.person is not None:
            pr = self.person
            m.update({"scene.person_speed_mps": pr.speed,
                      "scene.person_heading_deg": float(np.degrees(pr.heading_rad)),
                      "scene.person_through_x": pr.through[0], "scene.person_through_y": pr.through[1],
                      "scene.person_start_s": pr.t_start, "scene.person_radius_m": pr.radius,
                      "task.person_waits": len(self.waits), "task.person_wait_s": float(sum(s for _, s in self.waits))})
        return m

    def to_dict(self) -> dict[str, Any]:
        """Everything drawn, as JSON values (provenance)."""
        def plain(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: plain(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            if isinstance(x, (np.floating, np.integer)):
                return x.item()
            return x

        return plain({
            "stream": SCENE_STREAM,
            "params": asdict(self.params),
            "lighting": None if self.lighting is None else asdict(self.lighting),
            "distractors": [asdict(d) for d in self.distractors], "distractors_drawn": self.distractors_drawn,
            "platform": None if self.platform is None else asdict(self.platform),
            "person": None if self.person is None else asdict(self.person),
            "place_moved": self.place_moved, "place_xy": list(self.scene.place_xy),
            "waits": [list(w) for w in self.waits],
        })


def sample_variation(rng_seed: list[int], p: SceneVariationParams, scene: Scene, *, duration_s: float,
                     grasp_s: float, place_box: tuple[tuple[float, float], tuple[float, float], float],
                     others: tuple[Scene, ...] = (), bases: tuple[tuple[float, float], ...] = ((0.0, 0.0),),
                     table_x: tuple[float, float] = TABLE_X) -> SceneVariation:
    """Draw one episode's variation: each part from its own stream (``[*rng_seed, SCENE_STREAM, part]``),
    and only when on. ``duration_s`` bounds a dynamic light's keyframes; ``grasp_s`` is when the object is
    grasped without waits (a carried object rides at most speed x grasp_s); ``place_box`` (x range, y
    range, least distance from the object) is where the place spot may be moved when the platform's path
    leaves it no room (``SceneVariation.scene`` is then the scene with the new spot). A platform that finds
    no path at all raises ValueError. ``others``, ``bases`` and ``table_x`` are for a scene with several arms
    (the other arms' scenes, every base's xy, the table's x extent): distractors keep clear of all of them;
    the platform is a single-arm part and must be off then."""
    if others and p.platform.enabled:
        raise ValueError("task.scene: the platform is a single-arm part; turn it off with several arms")
    def stream(part: str) -> np.random.Generator:
        return np.random.default_rng([*rng_seed, SCENE_STREAM, _PARTS[part]])

    v = SceneVariation(params=p, scene=scene)
    if p.lighting.enabled:
        v.lighting = _sample_lighting(stream("lighting"), p.lighting, duration_s)
    if p.platform.enabled:
        found = _sample_platform(stream("platform"), p.platform, scene, grasp_s, place_box)
        if found is None:
            raise ValueError("task.scene.platform: no path for the platform on the table clear of the place "
                             "spot and the robot's base in 500 draws; widen heading_deg or shorten travel_m")
        v.platform, place = found
        if place != tuple(scene.place_xy):
            v.scene = scene = replace(scene, place_xy=place)
            v.place_moved = True
    if p.distractors.enabled:
        v.distractors, v.distractors_drawn = _sample_distractors(stream("distractors"), p.distractors, scene,
                                                                 v.platform, others, bases, table_x)
    if p.person.enabled:
        v.person = _sample_person(stream("person"), p.person)
    return v


# ----------------------------------------------------------------------------- a demo's variation, restored


def variation_at(recorded: dict[str, Any], t: float) -> dict[str, Any] | None:
    """What a state restored from a demo at ``t`` seconds keeps of its ``provenance.scene_variation``
    (``recorded``), as JSON values: the light as it was at ``t`` and the distractors where they were drawn;
    the platform and the person (moving, not restored) are named in ``dropped``. None when the demo had neither
    a light nor a distractor."""
    lighting, distractors = recorded.get("lighting"), list(recorded.get("distractors") or [])
    dropped = [part for part in ("platform", "person") if recorded.get(part)]
    if lighting is None and not distractors:
        return {"dropped": dropped} if dropped else None
    out: dict[str, Any] = {"distractors": distractors, "dropped": dropped}
    if distractors:
        out["distractor_mass_kg"] = float(recorded["params"]["distractors"]["mass_kg"])
    if lighting is not None:
        plan = LightingPlan(times=tuple(lighting["times"]), values=tuple(tuple(v) for v in lighting["values"]),
                            transition=lighting["transition"], shadows=bool(lighting["shadows"]))
        light = plan.at(t)
        out["light"] = [float(getattr(light, k)) for k in _LIGHT_KEYS]
        out["shadows"] = bool(light.shadows)
    return out


def restored_variation(kept: dict[str, Any], scene: Scene) -> SceneVariation | None:
    """The SceneVariation a simulator builds for a restored state (``kept`` from :func:`variation_at`): one
    steady light and the demo's distractors, or None when nothing is kept."""
    light, distractors = kept.get("light"), kept.get("distractors") or []
    if light is None and not distractors:
        return None
    mass = float(kept.get("distractor_mass_kg", DistractorParams().mass_kg))
    params = SceneVariationParams(lighting=LightingParams(enabled=light is not None),
                                  distractors=DistractorParams(enabled=bool(distractors), mass_kg=mass))
    v = SceneVariation(params=params, scene=scene)
    if light is not None:
        v.lighting = LightingPlan(times=(0.0,), values=(tuple(float(x) for x in light),), transition="step",
                                  shadows=bool(kept.get("shadows", False)))
    v.distractors = tuple(Distractor(kind=d["kind"], size=tuple(d["size"]), colour_name=d["colour_name"],
                                     rgba=tuple(d["rgba"]), xy=tuple(d["xy"]), yaw=float(d["yaw"]))
                          for d in distractors)
    v.distractors_drawn = len(v.distractors)
    return v
