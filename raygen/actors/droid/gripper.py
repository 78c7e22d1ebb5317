"""The Robotiq 2F-85 on the Franka flange, as DROID mounts it: pad centres from the gripper position.

DROID's ``gripper_position`` g runs from 0 (open, 85 mm between the pads) to 1 (closed); the width is
0.085 (1 - g) m. The fingers point along the flange's +z and close along its y axis; the pad on +y is the
left one (it appears on the left of the wrist image). The pads stay parallel (a parallel-linkage
approximation of the 2F-85), each contact face at +-w/2 across the closing axis, and the pad centre
moves away from the flange face as the gripper closes. Distances are from the flange mounting face,
mount pieces included, from the 2F-85 model in mujoco_menagerie (REFERENCE.md section 8). These numbers
live here and nowhere else; every episode records them in its gripper geometry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_WIDTH_M", "GEOMETRY", "opening_m", "pad_centres"]

MAX_WIDTH_M = 0.085
# width between the pads (mm), distance of the pad centre from the flange face (mm), of the pad tip (mm)
_TABLE = np.array([
    [85.0, 141.8, 160.5],
    [68.0, 151.8, 170.5],
    [51.0, 158.8, 177.5],
    [42.5, 161.5, 180.2],
    [34.0, 163.7, 182.5],
    [17.0, 167.2, 186.0],
    [0.0, 169.4, 188.1],
])
PAD_LENGTH_M = 0.0375
PAD_WIDTH_M = 0.022
CLOSING_AXIS = (0.0, 1.0, 0.0)
"""Flange-frame axis the fingers close along; the left pad sits on its + side."""

GEOMETRY: dict[str, Any] = {
    "gripper": "robotiq_2f85",
    "mount": "Franka flange (panda_link8), no tool offset (DROID)",
    "source": "mujoco_menagerie robotiq_2f85/2f85.xml, parallel-linkage approximation",
    "opening_from_gripper_position": "width_m = 0.085 * (1 - gripper_position)",
    "closing_axis_in_flange": list(CLOSING_AXIS),
    "finger_axis_in_flange": [0.0, 0.0, 1.0],
    "left_pad_side": "+closing_axis",
    "pad_table_mm": {"width": _TABLE[::-1, 0].tolist(), "pad_centre_z": _TABLE[::-1, 1].tolist(),
                     "pad_tip_z": _TABLE[::-1, 2].tolist()},
    "pad_length_m": PAD_LENGTH_M,
    "pad_width_m": PAD_WIDTH_M,
    "tracks": ["centroid", "left_pad", "right_pad"],
    "track_point": "centre of each pad's contact face",
}


def opening_m(gripper_position: np.ndarray) -> np.ndarray:
    """Width between the pads (m) from DROID's gripper_position (clipped to [0, 1])."""
    return MAX_WIDTH_M * (1.0 - np.clip(np.asarray(gripper_position, dtype=np.float64), 0.0, 1.0))


def pad_centre_z_m(width_m: np.ndarray) -> np.ndarray:
    """Distance of the pad centre from the flange face along +z (m), interpolated in the table."""
    table = _TABLE[::-1]  # increasing width for np.interp
    return np.interp(np.asarray(width_m) * 1000.0, table[:, 0], table[:, 1]) / 1000.0


def pad_centres(flange: np.ndarray, gripper_position: np.ndarray) -> np.ndarray:
    """[T,2,3] left (+y) and right (-y) pad contact-face centres in the base frame, from the flange pose
    [T,4,4] and the gripper position [T]."""
    w = opening_m(gripper_position)
    z = pad_centre_z_m(w)
    axis = np.asarray(CLOSING_AXIS)
    local = np.zeros((len(w), 2, 4))
    local[:, 0, :3] = axis * (w / 2)[:, None]
    local[:, 1, :3] = -axis * (w / 2)[:, None]
    local[:, :, 2] = z[:, None]
    local[:, :, 3] = 1.0
    return np.einsum("tij,tnj->tni", np.asarray(flange, dtype=np.float64), local)[..., :3]
