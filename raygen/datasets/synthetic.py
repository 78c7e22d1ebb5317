"""Synthetic episodes that satisfy the contract: for the demo, benchmarks and tests.

They are not simulated: a gripper moves along a smooth path over a plane, the
cameras see a shaded background with a moving square, and depth is a tilted
plane with a box on it. Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import numpy as np

from raygen.datasets.episode import CameraFrames, Episode

__all__ = ["synthetic_episode", "synthetic_key"]

TASKS = ("pick the red cube and place it on the green spot", "pick the blue cube and place it on the green spot")


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-base pose with OpenCV axes (z forward, y down) looking from eye at target."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def _frames(rng: np.random.Generator, t: int, h: int, w: int, phase: float) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.empty((h, w, 3), np.float32)
    base[..., 0] = 60 + 80 * xx / w
    base[..., 1] = 70 + 60 * yy / h
    base[..., 2] = 90 + 40 * np.sin(xx / w * np.pi + phase)
    rgb = np.repeat(base[None], t, axis=0)
    plane = (600 + 400 * yy / h + 50 * xx / w).astype(np.float32)
    depth = np.repeat(plane[None], t, axis=0)
    side = max(4, h // 8)
    colour = rng.integers(120, 255, size=3)
    for i in range(t):
        cx = int((w - side) * (0.5 + 0.4 * np.sin(2 * np.pi * i / max(t, 1) + phase)))
        cy = int((h - side) * (0.5 + 0.4 * np.cos(2 * np.pi * i / max(t, 1) + phase)))
        rgb[i, cy:cy + side, cx:cx + side] = colour
        depth[i, cy:cy + side, cx:cx + side] -= 120
    rgb += rng.normal(0, 2.0, size=rgb.shape).astype(np.float32)
    depth_mm = np.clip(np.round(depth), 0, 65535).astype(np.uint16)
    depth_mm[:, :2, :2] = 0  # a few invalid pixels, as real sensors have
    return np.clip(rgb, 0, 255).astype(np.uint8), depth_mm


def synthetic_key(index: int, seed: int = 0) -> str:
    return f"synthetic-s{seed}-{index:06d}"


def synthetic_episode(
    index: int,
    *,
    seed: int = 0,
    frames: int = 60,
    height: int = 64,
    width: int = 64,
    cameras: tuple[str, ...] = ("cam_high", "cam_wrist"),
    depth: bool = True,
    fps: float = 30.0,
    flow: bool = False,
) -> Episode:
    """A deterministic episode with state 23 / action 8 like the pick-and-place task."""
    rng = np.random.default_rng([seed, index])
    t = frames
    s = np.linspace(0.0, 1.0, t)
    joints = 0.3 * np.sin(2 * np.pi * s[:, None] + rng.uniform(0, np.pi, 7)[None]) + rng.normal(0, 0.05, 7)
    vel = np.gradient(joints, 1.0 / fps, axis=0) if t > 1 else np.zeros_like(joints)
    fingers = np.where(s[:, None] < 0.4, 0.04, 0.0) * np.ones((1, 2))
    eef = np.stack([0.5 + 0.1 * np.cos(2 * np.pi * s), 0.1 * np.sin(2 * np.pi * s), 0.3 - 0.1 * s], axis=1)
    quat = np.tile([0.0, 1.0, 0.0, 0.0], (t, 1))
    state = np.concatenate([joints, vel, fingers, eef, quat], axis=1).astype(np.float32)
    action = np.concatenate([joints + 0.01, fingers[:, :1]], axis=1).astype(np.float32)
    gripper = np.tile(np.diag([1.0, -1.0, -1.0, 1.0]), (t, 1, 1))
    gripper[:, :3, 3] = eef
    k = np.array([[0.9 * width, 0, width / 2], [0, 0.9 * width, height / 2], [0, 0, 1]], dtype=np.float64)
    cams = {}
    for ci, name in enumerate(cameras):
        rgb, dep = _frames(rng, t, height, width, phase=float(ci) + 0.3 * index)
        if name == "cam_wrist":
            pose = np.stack([_look_at(g[:3, 3] + [0, 0, 0.1], g[:3, 3] - [0, 0, 0.2]) for g in gripper])
        else:
            pose = _look_at(np.array([1.2, 0.0, 0.9 + 0.1 * ci]), np.array([0.5, 0.0, 0.0]))
        cams[name] = CameraFrames(
            rgb=rgb, depth=dep if depth else None, intrinsics=k, pose=pose,
            distortion=np.array([0.01, -0.002, 0.0, 0.0, 0.0]),
        )
    ep = Episode(
        episode_key=synthetic_key(index, seed),
        task=TASKS[index % len(TASKS)],
        fps=fps,
        state=state,
        action=action,
        cameras=cams,
        gripper_pose=gripper,
        gripper_opening=(2 * fingers[:, 0]).astype(np.float64),
        success=bool(index % 5 != 4),
        robot_type="franka",
        provenance={"backend": "synthetic", "backend_version": "1", "seed": seed, "index": index},
        gripper_geometry={"pad_offset_m": 0.046, "tool_axis_offset_m": 0.1034},
        metrics={"quality.score": float(0.5 + 0.5 * rng.random())},
    )
    if flow:
        tracks = np.stack([eef, eef + [0, 0.04, 0], eef - [0, 0.04, 0]], axis=1)
        ep.frame_features["tracks3d"] = tracks.astype(np.float32)
        ep.frame_features["tracks2d.visible"] = rng.random((t, 3)) > 0.1
        ep.flow = tracks[:: max(1, t // 20)].astype(np.float32)
    return ep
