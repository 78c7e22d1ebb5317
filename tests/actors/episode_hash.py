"""One digest of an episode's arrays for the determinism tests: every per-frame array and the given camera
fields of every camera, then ``extra`` (metrics or metadata a test also wants to compare)."""

import hashlib

import numpy as np

CAMERA_FIELDS = ("rgb", "depth", "pose", "intrinsics")


def episode_hash(ep, camera_fields: tuple[str, ...] = CAMERA_FIELDS, extra: bytes = b"") -> str:
    h = hashlib.sha256()
    for a in (ep.state, ep.action, ep.gripper_pose, ep.gripper_opening, *ep.frame_features.values()):
        h.update(np.ascontiguousarray(a).tobytes())
    for cam in ep.cameras.values():
        for name in camera_fields:
            h.update(np.ascontiguousarray(getattr(cam, name)).tobytes())
    h.update(extra)
    return h.hexdigest()
