"""One Franka in an Isaac Sim 5.x stage and the object it is given: what the tasks read (joints, flange, TCP,
finger pads, the object's pose) and its FixedJoint grasp, shared by the single-arm adapter
(:class:`raygen.actors.isaac.sim.IsaacPickPlace`) and each arm of :class:`raygen.actors.isaac.two_arms.
IsaacTwoArms`; the conversions both need (``_np``, ``_pose_matrix``) and Lula's IK (``lula_ik``).

No isaacsim, omni or pxr import here: the classes come through the adapter's ``_api`` (filled after Kit
started). Link poses are read through rigid-body views (physics, not USD, which the GPU pipeline does not
write back).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raygen.actors.tasks.pick_place import TCP_D, quat_wxyz

__all__ = ["DOWN_WXYZ", "PAD_OFFSET", "FrankaArm", "lula_ik", "robot_links"]

PAD_OFFSET = np.array([0.0, 0.0, 0.045])
DOWN_WXYZ = np.array([0.0, 1.0, 0.0, 0.0])  # TCP z axis pointing down (180 deg about x)


def _np(x: Any) -> np.ndarray:
    """A float64 numpy copy of what Isaac Sim returns: numpy, or a torch tensor on a GPU pipeline."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)




def _pose_matrix(position: np.ndarray, quat: np.ndarray) -> np.ndarray:
    w, x, y, z = (float(v) for v in _np(quat))
    r = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = r, _np(position)
    return t




def _yaw_wxyz(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])




def robot_links(api: dict[str, Any], root: str) -> tuple[Any, Any, list[Any]]:
    """(hand, flange, [left finger, right finger]) of the Franka at ``root`` as rigid-body views: their poses
    come from physics (a link's USD pose is stale on the GPU pipeline, which does not write back to USD)."""
    def link(name: str) -> Any:
        return api["SingleRigidPrim"](f"{root}/{name}", name=f"{root.strip('/').replace('/', '_')}_{name}")

    return link("panda_hand"), link("panda_link8"), [link("panda_leftfinger"), link("panda_rightfinger")]




def lula_ik(lula: Any, robot: Any, target_xyz: np.ndarray, target_wxyz: np.ndarray, seed: np.ndarray
            ) -> np.ndarray | None:
    """Joints [7] putting the TCP frame ``right_gripper`` at ``target_xyz`` (world) turned ``target_wxyz``,
    from the seed ``seed`` [7+]: Lula called directly with numpy (the articulation solver passes the robot's
    own joints as the warm start, a GPU tensor on the GPU pipeline), after giving Lula the robot's base pose."""
    position, orientation = robot.get_world_pose()
    lula.set_robot_base_pose(_np(position), _np(orientation))
    q, ok = lula.compute_inverse_kinematics("right_gripper", target_position=np.asarray(target_xyz, np.float64),
                                            target_orientation=np.asarray(target_wxyz, np.float64),
                                            warm_start=np.asarray(seed, np.float64)[:7])
    return _np(q)[:7] if ok else None




class FrankaArm:
    """The readings and grasp of one Franka: needs ``_api``, ``robot``, the link views ``_hand``, ``_flange``,
    ``_fingers`` (:func:`robot_links`), the object ``_object`` and the USD paths ``_hand_path``,
    ``_object_path`` and ``_joint_path`` (where the grasp's FixedJoint goes)."""

    _api: dict[str, Any]
    robot: Any
    _hand: Any
    _flange: Any
    _fingers: list[Any]
    _object: Any
    _hand_path: str
    _object_path: str
    _joint_path: str

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = _np(self.robot.get_joint_positions())
        qd = _np(self.robot.get_joint_velocities())
        return q[:7], qd[:7], q[7:9]

    def hand_pose(self) -> np.ndarray:
        return _pose_matrix(*self._hand.get_world_pose())

    def flange_pose(self) -> np.ndarray:
        return _pose_matrix(*self._flange.get_world_pose())

    def tcp_position(self) -> np.ndarray:
        return (self.hand_pose() @ np.array([0.0, 0.0, TCP_D, 1.0]))[:3]

    def finger_pads(self) -> np.ndarray:
        return np.stack([(_pose_matrix(*f.get_world_pose()) @ np.append(PAD_OFFSET, 1.0))[:3] for f in self._fingers])

    def object_position(self) -> np.ndarray:
        return _np(self._object.get_world_pose()[0])

    def object_pose(self) -> np.ndarray:
        position, quat = self._object.get_world_pose()  # quaternion w, x, y, z
        return np.concatenate([_np(position), _np(quat)])

    def attach(self) -> None:
        """A FixedJoint from the hand to the object, where the object is now."""
        api = self._api
        stage = api["get_current_stage"]()
        rel = np.linalg.inv(self.hand_pose()) @ _pose_matrix(*self._object.get_world_pose())
        joint = api["UsdPhysics"].FixedJoint.Define(stage, self._joint_path)
        joint.CreateBody0Rel().SetTargets([self._hand_path])
        joint.CreateBody1Rel().SetTargets([self._object_path])
        gf = api["Gf"]
        joint.CreateLocalPos0Attr().Set(gf.Vec3f(*rel[:3, 3].tolist()))
        w, x, y, z = (float(v) for v in quat_wxyz(rel[:3, :3]))
        joint.CreateLocalRot0Attr().Set(gf.Quatf(w, x, y, z))
        joint.CreateLocalPos1Attr().Set(gf.Vec3f(0.0, 0.0, 0.0))
        joint.CreateLocalRot1Attr().Set(gf.Quatf(1.0, 0.0, 0.0, 0.0))

    def detach(self) -> None:
        if self._holds():
            self._api["get_current_stage"]().RemovePrim(self._joint_path)

    def _holds(self) -> bool:
        return bool(self._api["get_current_stage"]().GetPrimAtPath(self._joint_path).IsValid())
