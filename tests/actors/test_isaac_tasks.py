"""The Isaac Sim two-arm and soft-object adapters on a real USD stage (usd-core), with TEST DOUBLES standing
in for the isaacsim classes (tests/actors/isaac_standins.py: Isaac Sim cannot be installed here).

What this checks: the prims each adapter authors (two articulations, their cameras, objects, markers, grasp
joints; the soft mesh, its material and mass, the particle system, the attachments), and the frame maths
(base-frame IK targets to world, per-arm base poses for Lula, node positions into a finger's frame). What it
cannot check: PhysX itself (contacts, deformable cooking, attachments at run time) and the RTX renderer.
"""

import numpy as np
import pytest

pytest.importorskip("pxr")

from pxr import UsdGeom, UsdPhysics  # noqa: E402

from raygen.actors.spec import EpisodeSpec  # noqa: E402
from raygen.actors.tasks.pick_place import HOME_Q, WRIST_CAMERA_IN_HAND  # noqa: E402
from raygen.actors.tasks.soft import SoftParams, sample_soft_scene  # noqa: E402
from raygen.actors.tasks.two_arms import TwoArmParams, high_camera_pose, sample_two_arm_scene  # noqa: E402
from tests.actors.isaac_standins import Fake, build, world_matrix, wxyz_matrix  # noqa: E402


def _scene(params, index=0):
    spec = EpisodeSpec("isaac-two_arms", 0, index)
    return sample_two_arm_scene(np.random.default_rng(np.random.SeedSequence(spec.rng_seed)), params,
                                ("cube", "cylinder"))


def test_two_articulations_with_their_own_cameras_objects_and_markers():
    from raygen.actors.isaac.two_arms import ROBOT_PATHS, IsaacTwoArms

    fake = Fake()
    sim = build(IsaacTwoArms, fake)
    refs = fake.log.of("reference")
    assert [p for p, _ in refs] == list(ROBOT_PATHS) and refs[0][1]["usd_path"] == refs[1][1]["usd_path"]
    assert {"franka0", "franka1"} <= set(sim.world.scene.objects)  # unique scene names
    pos, quat = sim.robots[1].get_world_pose()
    assert np.allclose(pos, [1.0, 0.0, 0.0]) and np.allclose(wxyz_matrix(quat), np.diag([-1.0, -1.0, 1.0]), atol=1e-9)
    for cam, robot in (("cam_wrist", ROBOT_PATHS[0]), ("cam_wrist_1", ROBOT_PATHS[1])):
        assert fake.stage.GetPrimAtPath(f"{robot}/panda_hand/{cam}").IsA(UsdGeom.Camera)
    high = [kw for p, kw in fake.log.of("camera_world_pose") if p == "/World/cam_high"][-1]
    assert high["camera_axes"] == "ros" and np.allclose(high["position"], high_camera_pose(0.5)[:3, 3])
    assert np.allclose(wxyz_matrix(high["orientation"]), high_camera_pose(0.5)[:3, :3], atol=1e-9)

    params = TwoArmParams()
    scene = _scene(params)
    resets = sim.world.resets
    sim.reset(scene)
    assert sim.world.resets == resets + 1
    for a, s in enumerate(scene.arms):
        obj = world_matrix(fake.stage, f"/World/Object{a}")[:3, 3]
        assert np.allclose(obj[:2], s.object_xy) and obj[2] == pytest.approx(s.object_size / 2 + 1e-3)
        assert np.allclose(world_matrix(fake.stage, f"/World/PlaceMarker{a}")[:2, 3], s.place_xy)
        assert np.allclose(sim.robots[a].get_joint_positions()[:7], HOME_Q)
    looks = len(fake.stage.GetPrimAtPath("/World/Looks").GetChildren())
    for i in (1, 2, 3):
        sim.reset(_scene(params, i))  # the next episodes replace both objects (scene names stay unique)
    assert sum(n.startswith("object") for n in sim.world.scene.objects) == 2
    assert len(fake.stage.GetPrimAtPath("/World/Looks").GetChildren()) == looks  # no material left behind


def test_each_arm_solves_in_its_own_base_frame_and_grasps_its_own_object():
    from raygen.actors.isaac.two_arms import IsaacTwoArms

    fake = Fake()
    sim = build(IsaacTwoArms, fake)
    sim.reset(_scene(TwoArmParams()))
    seed = np.linspace(-0.3, 0.3, 7)
    q = sim.arms[1].ik(np.array([0.4, 0.1, 0.2]), seed)
    assert np.allclose(q, np.arange(7) * 0.1)
    frame, call = fake.log.of("ik")[-1]
    assert frame == "right_gripper" and np.array_equal(call["warm_start"], seed)  # the task's seed, not the robot's
    assert np.allclose(call["target_position"], [0.6, -0.1, 0.2])  # arm 1's base: x = 1 m, turned 180 degrees
    r = wxyz_matrix(call["target_orientation"])
    assert np.allclose(r[:, 2], [0, 0, -1], atol=1e-9)  # the TCP points down
    assert np.allclose(r[:, 0], [-1, 0, 0], atol=1e-9)  # and the hand is turned with its base
    base_pos, base_quat = call["base"]
    assert np.allclose(base_pos, [1.0, 0, 0]) and np.allclose(wxyz_matrix(base_quat), np.diag([-1.0, -1, 1]))
    sim.arms[0].ik(np.array([0.4, 0.1, 0.2]), np.zeros(7))
    assert np.allclose(fake.log.of("ik")[-1][1]["target_position"], [0.4, 0.1, 0.2])

    sim.attach(0)
    sim.attach(1)
    joint = UsdPhysics.FixedJoint(fake.stage.GetPrimAtPath("/World/GraspJoint1"))
    assert [str(t) for t in joint.GetBody0Rel().GetTargets()] == ["/World/Franka_1/panda_hand"]
    assert [str(t) for t in joint.GetBody1Rel().GetTargets()] == ["/World/Object1"]
    hand = world_matrix(fake.stage, "/World/Franka_1/panda_hand")
    obj = world_matrix(fake.stage, "/World/Object1")
    assert np.allclose(np.array(joint.GetLocalPos0Attr().Get()), (np.linalg.inv(hand) @ obj)[:3, 3], atol=1e-6)
    sim.detach(1)
    assert not fake.stage.GetPrimAtPath("/World/GraspJoint1").IsValid()
    assert fake.stage.GetPrimAtPath("/World/GraspJoint0").IsValid()  # the other arm still holds

    # poses come from physics: move arm 1's hand there (USD keeps the old pose, as on the GPU pipeline)
    hand_path = "/World/Franka_1/panda_hand"
    moved = fake.physics[hand_path].copy()
    moved[:3, 3] += [0.0, 0.05, -0.1]
    fake.physics[hand_path] = moved
    assert np.allclose(sim.arms[1].tcp_position(), (moved @ [0, 0, 0.1034, 1.0])[:3])
    assert np.allclose(sim.camera_pose("cam_wrist_1"), moved @ WRIST_CAMERA_IN_HAND)
    assert np.allclose(sim.camera_pose("cam_wrist"), world_matrix(fake.stage, "/World/Franka/panda_hand")
                       @ WRIST_CAMERA_IN_HAND)
    steps = sim.world.steps
    sim.step([np.full(7, 0.1), np.full(7, 0.2)], [np.full(2, 0.04), np.full(2, 0.01)])
    assert sim.world.steps == steps + 1  # one rendering_dt for both arms
    assert np.allclose(sim.robots[0].actions[-1], [*[0.1] * 7, 0.04, 0.04])
    assert np.allclose(sim.robots[1].actions[-1], [*[0.2] * 7, 0.01, 0.01])


def test_a_new_arm_distance_moves_the_second_robot_the_table_and_the_camera():
    from raygen.actors.isaac.two_arms import IsaacTwoArms

    fake = Fake()
    sim = build(IsaacTwoArms, fake)
    sim.reset(_scene(TwoArmParams(arm_distance_m=1.2)))
    pos, _ = sim.robots[1].get_world_pose()
    assert np.allclose(pos, [1.2, 0, 0]) and np.allclose(sim.arms[1].base[:3, 3], [1.2, 0, 0])
    default = dict(fake.log.of("default_state"))["/World/Franka_1"]  # or a world reset would put it back
    assert np.allclose(default["position"], [1.2, 0, 0])
    assert np.allclose(wxyz_matrix(default["orientation"]), np.diag([-1.0, -1.0, 1.0]), atol=1e-9)
    assert np.allclose(sim.arms[1].tcp_position()[:2], [1.2 - 0.5, 0.0])  # its hand came along (after the reset)
    table = [kw for p, kw in fake.log.of("prim") if p == "/World/Table"][-1]
    assert np.allclose(table["position"][:2], [0.6, 0.0]) and table["scale"][0] == pytest.approx(1.2)
    high = [kw for p, kw in fake.log.of("camera_world_pose") if p == "/World/cam_high"][-1]
    assert np.allclose(high["position"], high_camera_pose(0.6)[:3, 3])


def test_two_arm_lighting_and_distractors_reach_the_stage():
    from pxr import UsdLux

    from raygen.actors.isaac import sim as isim
    from raygen.actors.isaac.two_arms import IsaacTwoArms
    from raygen.actors.tasks.two_arms import _vary

    fake = Fake()
    sim = build(IsaacTwoArms, fake)
    params = TwoArmParams.from_options({"scene": {"lighting": {"enabled": True}, "distractors": {"enabled": True}}})
    scene = _scene(params)
    v = _vary(sim, EpisodeSpec("isaac-two_arms", 0, 0), scene, params)
    sim.reset(scene)
    key = UsdLux.DistantLight(fake.stage.GetPrimAtPath(isim.KEY_LIGHT_PATH))
    assert key.GetIntensityAttr().Get() == pytest.approx(isim.KEY_PER_UNIT * v.lighting.at(0.0).intensity, rel=1e-5)
    assert sum(n.startswith("distractor") for n in sim.world.scene.objects) == len(v.distractors) > 0
    assert sim.capabilities()["scene_variation"] == ["lighting", "distractors", "person"]


def _soft(material, index=0):
    spec = EpisodeSpec("isaac-soft_pick_place", 0, index)
    return sample_soft_scene(np.random.default_rng(np.random.SeedSequence(spec.rng_seed)),
                             SoftParams(materials=(material,)))


def test_a_soft_block_is_a_deformable_mesh_with_the_drawn_material_and_mass():
    from raygen.actors.isaac.soft import SOFT_PATH, IsaacSoftPickPlace, cube_mesh

    fake = Fake()
    sim = build(IsaacSoftPickPlace, fake, block_resolution=5)
    world = fake.log.of("world")[0][1]
    assert world["device"] == "cuda:0" and world["backend"] == "torch"  # PhysX deformables: GPU pipeline only
    assert sim.KIT_SETTINGS == ("--/app/useFabricSceneDelegate=0",)
    scene = _soft("foam")
    at = np.array([*scene.object_xy, scene.object_size / 2 + 1e-3])
    fake.rest_local = cube_mesh(scene.object_size)[0] * 0.999  # the cooked simulation mesh's rest points
    fake.nodes = fake.rest_local + at + [0, 0, -0.002]  # settled 2 mm during the warm-up
    sim.reset(scene)
    mesh = UsdGeom.Mesh(fake.stage.GetPrimAtPath(SOFT_PATH))
    points = np.array(mesh.GetPointsAttr().Get())
    assert points.shape == (8, 3) and np.allclose(np.ptp(points, axis=0), scene.object_size, atol=1e-6)
    assert list(mesh.GetFaceVertexCountsAttr().Get()) == [3] * 12
    assert np.allclose(world_matrix(fake.stage, SOFT_PATH)[:3, 3], at)
    (mat_path, mat), = fake.log.of("deformable_material")
    assert mat["youngs_modulus"] == pytest.approx(scene.stiffness) and mat["poissons_ratio"] == scene.poisson
    density = fake.stage.GetPrimAtPath(mat_path).GetAttribute("physxDeformableBodyMaterial:density").Get()
    assert density * scene.object_size**3 == pytest.approx(scene.mass_kg, rel=1e-5)
    (path, body), = fake.log.of("deformable")
    assert path == SOFT_PATH and body["simulation_hexahedral_resolution"] == 5
    assert body["deformable_material"].prim_path == mat_path and body["self_collision"] is False
    assert np.allclose(sim.rest_nodes(), fake.rest_local + at)  # as built, before any step
    assert np.allclose(sim.object_pose()[:3], at + [0, 0, -0.002]) and np.allclose(sim.object_pose()[3:], [1, 0, 0, 0])
    q, qd, fingers = sim.joint_state()  # read through the GPU pipeline's tensors
    assert np.allclose(q, HOME_Q) and np.allclose(fingers, 0.04)
    assert sim.object_kinds == ("block", "cloth")


def test_the_grasp_attaches_the_nodes_between_the_fingers_to_each_finger():
    from raygen.actors.isaac.soft import FINGER_PATHS, SOFT_PATH, IsaacSoftPickPlace, cube_mesh

    fake = Fake()
    sim = build(IsaacSoftPickPlace, fake)
    scene = _soft("foam")
    at = np.array([*scene.object_xy, scene.object_size / 2 + 1e-3])
    fake.rest_local = cube_mesh(scene.object_size)[0][:6]  # six nodes at rest, as many as below
    fake.nodes = fake.rest_local + at
    sim.reset(scene)
    pads = sim.finger_pads()
    hand = world_matrix(fake.stage, "/World/Franka/panda_hand")
    along = hand[:3, 2]  # towards the finger tips
    across = (pads[1] - pads[0]) / np.linalg.norm(pads[1] - pads[0])
    held = [pads[0] + 0.004 * across, pads[0] + 0.004 * across - 0.01 * along, pads[1] - 0.003 * across]
    others = [pads[0] + 0.1 * across, (pads[0] + pads[1]) / 2 + 0.05 * along, pads[0] - 0.03 * across]
    now = np.array(held + others)
    fake.nodes = now  # the nodes as they are at the grasp (their rest shape stays the one read at reset)
    sim.attach()
    assert sim.anchored_nodes() == [0, 1, 2]
    for finger, nodes in ((0, [0, 1]), (1, [2])):
        att = fake.stage.GetPrimAtPath(f"{SOFT_PATH}/Attachment{finger}")
        assert att.GetTypeName() == "PhysxPhysicsAttachment"
        assert [str(t) for t in att.GetRelationship("actor0").GetTargets()] == [SOFT_PATH]
        assert [str(t) for t in att.GetRelationship("actor1").GetTargets()] == [FINGER_PATHS[finger]]
        in_finger = np.array(att.GetAttribute("points1").Get(), np.float64)
        to_world = world_matrix(fake.stage, FINGER_PATHS[finger])
        back = (to_world[:3, :3] @ in_finger.T).T + to_world[:3, 3]
        assert np.allclose(back, now[nodes], atol=1e-6)  # where the nodes are now, held in the finger's frame
        in_body = np.array(att.GetAttribute("points0").Get(), np.float64)
        rest = fake.rest_local[nodes]  # the same nodes at rest, body frame, half a millimetre inwards
        assert np.allclose(np.linalg.norm(in_body - rest, axis=1), 0.0005, atol=1e-6)
        assert np.all(np.linalg.norm(in_body, axis=1) < np.linalg.norm(rest, axis=1))
    sim.detach()
    assert not fake.stage.GetPrimAtPath(f"{SOFT_PATH}/Attachment0").IsValid() and sim.anchored_nodes() == []


def test_a_cloth_is_particle_cloth_in_its_own_particle_system_and_the_block_is_gone():
    from raygen.actors.isaac.soft import SOFT_PATH, SYSTEM_PATH, IsaacSoftPickPlace, cloth_mesh, cube_mesh

    fake = Fake()
    sim = build(IsaacSoftPickPlace, fake, cloth_cells=10)
    block = _soft("foam")
    fake.nodes = fake.rest_local = cube_mesh(block.object_size)[0]
    sim.reset(block)
    block_material = fake.log.of("deformable_material")[0][0]
    cloth = _soft("cloth")
    fake.nodes = cloth_mesh(cloth.object_size, 10)[0]
    sim.reset(cloth)
    assert not fake.stage.GetPrimAtPath(block_material).IsValid()  # the last episode's material went with it
    (path, system), = fake.log.of("particle_system")
    r = cloth.object_size / 10 / 2
    assert path == SYSTEM_PATH and system["rest_offset"] == pytest.approx(r)
    assert system["contact_offset"] == pytest.approx(1.5 * r) and system["simulation_owner"] == "/physicsScene"
    (_, body), = fake.log.of("cloth")
    assert body["particle_system"].prim_path == SYSTEM_PATH
    assert body["particle_mass"] * 11**2 == pytest.approx(cloth.mass_kg)
    assert body["stretch_stiffness"] == pytest.approx(cloth.stiffness) and body["bend_stiffness"] == cloth.bending
    assert len(UsdGeom.Mesh(fake.stage.GetPrimAtPath(SOFT_PATH)).GetPointsAttr().Get()) == 11**2
    with pytest.raises(ValueError, match="needs a SoftScene"):
        sim.reset(_scene(TwoArmParams()).arms[0])
