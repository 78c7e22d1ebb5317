"""Scene variation on Isaac Sim 5.x (:mod:`raygen.actors.tasks.scene`, set by ``vary`` before a reset),
written against the Isaac Sim 5 API and not yet run on an RTX machine; mixed into
:class:`raygen.actors.isaac.sim.IsaacPickPlace`:

- lighting: a UsdLux DistantLight (its -z along the light's travel, intensity ``KEY_PER_UNIT`` x
  intensity, colour temperature enabled, specular as a multiple of PyBullet's 0.05, shadows through
  UsdLux.ShadowAPI) and a DomeLight (``DOME_PER_UNIT`` x ambient), set before each frame is rendered; any
  other light on the stage is made invisible while they are used;
- distractors: DynamicCuboid / DynamicCylinder with the grip material;
- platform: a DynamicCuboid made kinematic (physics:kinematicEnabled) and driven by kinematic targets
  (``RigidBodyView.set_kinematic_targets`` of omni.physics.tensors, so contacts see its velocity) every
  physics step; with a platform the frame's physics steps are taken one by one and the frame is then
  rendered with ``world.render()``;
- person: a UsdGeom.Capsule without physics (it touches nothing), moved before each frame is rendered.

No isaacsim, omni or pxr import here: the classes come through the adapter's ``_api``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from raygen.actors.isaac.arm import _yaw_wxyz
from raygen.actors.tasks.pick_place import quat_wxyz

if TYPE_CHECKING:
    from raygen.actors.tasks.scene_plan import Light, SceneVariation

__all__ = ["IsaacVariation"]

VARIATION_PATH = "/World/Variation"
KEY_LIGHT_PATH = f"{VARIATION_PATH}/KeyLight"
DOME_LIGHT_PATH = f"{VARIATION_PATH}/AmbientLight"
PLATFORM_PATH = f"{VARIATION_PATH}/Platform"
PERSON_PATH = f"{VARIATION_PATH}/Person"
KEY_PER_UNIT = 3000.0 / 0.35
"""DistantLight intensity per unit of the task's light intensity (0.35, PyBullet's own, gives 3000)."""
DOME_PER_UNIT = 1000.0 / 0.6
"""DomeLight intensity per unit of ambient (0.6, PyBullet's own, gives 1000)."""
SPECULAR_UNIT = 0.05
PERSON_RGB = (0.3, 0.38, 0.62)
PLATFORM_RGB = (0.18, 0.18, 0.2)


def _z_to(direction: np.ndarray) -> np.ndarray:
    """A rotation [3,3] whose z axis is ``direction`` (unit)."""
    z = np.asarray(direction, dtype=np.float64)
    z = z / np.linalg.norm(z)
    helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)




class IsaacVariation:
    """Builds, animates and clears an episode's scene variation on the adapter's stage (see the module doc)."""

    _api: dict[str, Any]
    world: Any
    fps: float
    _material: Any
    _object_index: int
    _variation: SceneVariation | None
    _pending: SceneVariation | None
    _var_objects: list[str]
    _platform_view: Any
    _person: Any
    _hidden_lights: list[str]

    def vary(self, variation: SceneVariation) -> None:
        """The next :meth:`reset` builds ``variation`` too (distractors, platform, person, lights)."""
        self._pending = variation

    def _clear_variation(self, stage: Any) -> None:
        for name in self._var_objects:
            self.world.scene.remove_object(name)
        self._var_objects, self._platform_view, self._person = [], None, None
        for path in (PLATFORM_PATH, PERSON_PATH):
            if stage.GetPrimAtPath(path).IsValid():
                stage.RemovePrim(path)
        prim = stage.GetPrimAtPath(VARIATION_PATH)
        if prim.IsValid():
            for child in list(prim.GetChildren()):
                if child.GetPath().pathString.startswith(f"{VARIATION_PATH}/Distractor"):
                    stage.RemovePrim(child.GetPath())
        self._lights(stage, None)

    def _build_variation(self, stage: Any, v: SceneVariation) -> None:
        api = self._api
        for i, d in enumerate(v.distractors):
            name = f"distractor{self._object_index}_{i}"
            common = dict(prim_path=f"{VARIATION_PATH}/Distractor{i}", name=name, mass=v.params.distractors.mass_kg,
                          position=np.array([*d.xy, d.size[2] / 2 + 1e-3]), orientation=_yaw_wxyz(d.yaw),
                          color=np.array(d.rgba[:3]), physics_material=self._material)
            if d.kind == "cylinder":
                body = api["DynamicCylinder"](radius=d.size[0] / 2, height=d.size[2], **common)
            else:
                body = api["DynamicCuboid"](scale=np.array(d.size), **common)
            self.world.scene.add(body)
            self._var_objects.append(name)
        if v.platform is not None:
            pf = v.platform
            name = f"platform{self._object_index}"
            body = api["DynamicCuboid"](prim_path=PLATFORM_PATH, name=name, mass=5.0,
                                        position=np.array([*pf.position(0.0), pf.size[2] / 2]),
                                        orientation=_yaw_wxyz(pf.heading_rad), scale=np.array(pf.size),
                                        color=np.array(PLATFORM_RGB), physics_material=self._material)
            self.world.scene.add(body)
            self._var_objects.append(name)
            api["UsdPhysics"].RigidBodyAPI(stage.GetPrimAtPath(PLATFORM_PATH)).CreateKinematicEnabledAttr(True)
        if v.person is not None:
            pr = v.person
            cap = api["UsdGeom"].Capsule.Define(stage, PERSON_PATH)
            cap.CreateRadiusAttr(pr.radius)
            cap.CreateHeightAttr(max(pr.height - 2 * pr.radius, 0.0))  # the cylinder between the caps
            cap.CreateAxisAttr("Z")
            cap.CreateDisplayColorAttr([api["Gf"].Vec3f(*PERSON_RGB)])
            self._person = api["SingleXFormPrim"](PERSON_PATH)

    def _drive_platform(self, t: float) -> None:
        """Kinematic target of the platform at time ``t`` (reached at the end of the next physics step)."""
        pf = self._variation.platform
        w, x, y, z = _yaw_wxyz(pf.heading_rad)
        target = np.array([[*pf.position(t), pf.size[2] / 2, x, y, z, w]], dtype=np.float32)  # xyz + xyzw
        self._platform_view.set_kinematic_targets(target, np.array([0], dtype=np.int32))

    def _pose_for(self, t: float) -> None:
        """The person and the light as they are at time ``t`` (before that frame is rendered)."""
        v = self._variation
        stage = self._api["get_current_stage"]()
        if v is not None and v.person is not None:
            self._person.set_world_pose(position=np.array([*v.person.position(t), v.person.height / 2]),
                                        orientation=np.array([1.0, 0.0, 0.0, 0.0]))
        self._lights(stage, v.lighting.at(t) if v is not None and v.lighting is not None else None)

    def _lights(self, stage: Any, light: Light | None) -> None:
        """Our distant + dome light set to ``light`` (other lights hidden), or none of ours (others shown)."""
        api = self._api
        lux, geom, gf = api["UsdLux"], api["UsdGeom"], api["Gf"]
        if light is None:
            for path in (KEY_LIGHT_PATH, DOME_LIGHT_PATH):
                if stage.GetPrimAtPath(path).IsValid():
                    geom.Imageable(stage.GetPrimAtPath(path)).MakeInvisible()
            for path in self._hidden_lights:
                if stage.GetPrimAtPath(path).IsValid():
                    geom.Imageable(stage.GetPrimAtPath(path)).MakeVisible()
            self._hidden_lights = []
            return
        if not self._hidden_lights:
            for prim in stage.Traverse():
                path = prim.GetPath().pathString
                if prim.HasAPI(lux.LightAPI) and not path.startswith(VARIATION_PATH):
                    geom.Imageable(prim).MakeInvisible()
                    self._hidden_lights.append(path)
        key = lux.DistantLight.Define(stage, KEY_LIGHT_PATH)
        key.CreateIntensityAttr().Set(float(KEY_PER_UNIT * light.intensity))
        key.CreateEnableColorTemperatureAttr().Set(True)
        key.CreateColorTemperatureAttr().Set(float(light.colour_temperature_k))
        key.CreateSpecularAttr().Set(float(light.specular / SPECULAR_UNIT))
        key.CreateAngleAttr().Set(0.53)
        lux.ShadowAPI.Apply(key.GetPrim()).CreateShadowEnableAttr().Set(bool(light.shadows))
        xf = geom.Xformable(key.GetPrim())
        xf.ClearXformOpOrder()
        w, x, y, z = (float(c) for c in quat_wxyz(_z_to(light.direction)))  # it shines along its -z
        xf.AddOrientOp().Set(gf.Quatf(w, x, y, z))
        geom.Imageable(key.GetPrim()).MakeVisible()
        dome = lux.DomeLight.Define(stage, DOME_LIGHT_PATH)
        dome.CreateIntensityAttr().Set(float(DOME_PER_UNIT * light.ambient))
        dome.CreateEnableColorTemperatureAttr().Set(True)
        dome.CreateColorTemperatureAttr().Set(float(light.colour_temperature_k))
        geom.Imageable(dome.GetPrim()).MakeVisible()
