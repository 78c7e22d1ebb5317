"""The quality stage: per-episode metrics combined into a score in [0, 1], and a keep/reject decision.

Hard failures (non-finite numbers; a failed task when success is required; a camera whose black
and frozen frames reach ``max_bad_frame_fraction``) give score 0. The other
checks are soft: each yields a sub-score in [0, 1] and the score is their weighted mean. An episode is
kept when ``score >= min_score``; every check that falls short adds a reason, so a reject says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raygen.datasets.episode import Episode

__all__ = ["QualityReport", "QualitySettings", "assess"]

# Franka Panda joint limits (rad); other robots pass their own.
PANDA_LIMITS = (np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
                np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]))


@dataclass(frozen=True)
class QualitySettings:
    min_score: float = 0.7
    """Keep an episode when its score is at least this."""
    require_success: bool = True
    """A failed task is a hard reject."""
    black_level: float = 8.0
    """A frame whose mean intensity (0-255) is below this is black."""
    frozen_level: float = 0.1
    """A frame is frozen when its mean absolute difference to the previous one is below this (0-255)
    although the gripper moved more than ``frozen_motion_m`` in between (a still scene is not a fault)."""
    frozen_motion_m: float = 0.005
    max_bad_frame_fraction: float = 0.5
    """Black + frozen frames above this fraction of a camera's frames score 0."""
    min_depth_valid: float = 0.5
    """Fraction of valid depth pixels that scores 1."""
    jerk_ref: float = 50.0
    """Action jerk RMS (rad/s^3) that halves the smoothness score."""
    limit_margin_ref: float = 0.05
    """Joint-limit margin (rad) that scores 1."""
    max_grasp_distance_m: float = 0.03
    """TCP-to-object distance at grasp that scores 0."""
    weights: dict[str, float] = field(default_factory=lambda: {
        "frames": 1.0, "depth": 1.0, "smoothness": 1.0, "joint_margin": 1.0, "grasp": 1.0})

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"stages.quality.min_score: must be in [0, 1], got {self.min_score}")


@dataclass
class QualityReport:
    score: float
    accepted: bool
    reasons: list[str]
    metrics: dict[str, Any]


def _arm_joint_columns(names: list[str] | None) -> list[int] | slice:
    """The columns of every arm's 7 joint positions (joint_0..6, or arm<k>_joint_0..6 for several arms), in
    order; the first 7 columns when the names do not say."""
    import re

    cols = [i for i, n in enumerate(names or []) if re.fullmatch(r"(arm\d+_)?joint_[0-6]", n)]
    return cols if cols and len(cols) % 7 == 0 else slice(0, 7)


def _camera_frames(rgb: np.ndarray, moved: np.ndarray, s: QualitySettings) -> tuple[float, float]:
    """(black fraction, frozen fraction) of a camera's frames; ``moved`` [T-1] marks gripper motion."""
    small = rgb[:, ::2, ::2].astype(np.float32)
    black = float((small.mean(axis=(1, 2, 3)) < s.black_level).mean())
    if len(small) < 2:
        return black, 0.0
    diff = np.abs(np.diff(small, axis=0)).mean(axis=(1, 2, 3))
    return black, float(((diff < s.frozen_level) & moved).sum() / len(small))


def assess(episode: Episode, settings: QualitySettings | None = None,
           joint_limits: tuple[np.ndarray, np.ndarray] | None = PANDA_LIMITS) -> QualityReport:
    s = settings or QualitySettings()
    m: dict[str, Any] = {}
    reasons: list[str] = []
    sub: dict[str, float] = {}

    arrays = [episode.state, episode.action, episode.gripper_pose, *episode.frame_features.values()]
    finite = all(np.isfinite(a).all() for a in arrays if np.asarray(a).dtype.kind == "f")
    m["quality.finite"] = finite
    if not finite:
        reasons.append("non-finite values (NaN/Inf) in the per-frame arrays")
    m["quality.success"] = bool(episode.success)
    if s.require_success and not episode.success:
        reasons.append("task failed (success is required)")

    worst = 1.0
    grippers = [episode.gripper_pose, *(v for k, v in episode.frame_features.items()
                                        if k.endswith(".gripper_pose") and np.shape(v)[1:] == (4, 4))]
    steps = [np.linalg.norm(np.diff(np.asarray(g, dtype=np.float64)[:, :3, 3], axis=0), axis=1) for g in grippers]
    moved_any = np.max(steps, axis=0) > s.frozen_motion_m  # some gripper moved: a fixed camera's view changed
    for name, cam in episode.cameras.items():
        if cam.rgb is None:
            continue  # a camera known by its calibration only has no frames to judge
        pose = np.asarray(cam.pose, dtype=np.float64)
        # a moving camera's view changes when it moves itself (a wrist camera of an arm that waits does not)
        moved = (np.linalg.norm(np.diff(pose[:, :3, 3], axis=0), axis=1) > s.frozen_motion_m
                 if pose.ndim == 3 else moved_any)
        black, frozen = _camera_frames(cam.rgb, moved, s)
        m[f"quality.{name}.black_fraction"] = black
        m[f"quality.{name}.frozen_fraction"] = frozen
        score = max(0.0, 1.0 - (black + frozen) / s.max_bad_frame_fraction)
        if score < 1.0:
            reasons.append(f"{name}: {black:.0%} black and {frozen:.0%} frozen frames"
                           + (" (unusable)" if score == 0.0 else ""))
        worst = min(worst, score)
    sub["frames"] = worst

    valid = [float((cam.depth > 0).mean()) for cam in episode.cameras.values() if cam.depth is not None]
    if valid:
        m["quality.depth_valid_fraction"] = min(valid)
        sub["depth"] = min(1.0, min(valid) / s.min_depth_valid)
        if sub["depth"] < 1.0:
            reasons.append(f"only {min(valid):.0%} valid depth pixels in the worst camera")

    arm_cols = _arm_joint_columns(episode.names.get("action"))
    joints = np.asarray(episode.action, dtype=np.float64)[:, arm_cols]
    if len(joints) >= 4:
        jerk = np.diff(joints, n=3, axis=0) * float(episode.fps) ** 3
        rms = float(np.sqrt((jerk ** 2).mean()))
        m["quality.action_jerk_rms"] = rms
        sub["smoothness"] = 1.0 / (1.0 + rms / s.jerk_ref)
        if sub["smoothness"] < 0.5:
            reasons.append(f"jerky actions (jerk RMS {rms:.0f} rad/s^3)")

    if joint_limits is not None and np.asarray(episode.state).shape[1] >= 7:
        cols = _arm_joint_columns(episode.names.get("observation.state"))
        q = np.asarray(episode.state, dtype=np.float64)[:, cols].reshape(len(episode.state), -1, 7)  # [T,arms,7]
        margin = float(np.min(np.minimum(q - joint_limits[0], joint_limits[1] - q)))
        m["quality.joint_limit_margin_rad"] = margin
        sub["joint_margin"] = float(np.clip(margin / s.limit_margin_ref, 0.0, 1.0))
        if sub["joint_margin"] < 1.0:
            reasons.append(f"joints within {margin:.3f} rad of a limit")

    grasp = episode.metrics.get("task.grasp_distance_m")
    if grasp is not None:
        m["quality.grasp_distance_m"] = float(grasp)
        sub["grasp"] = float(np.clip(1.0 - float(grasp) / s.max_grasp_distance_m, 0.0, 1.0))
        if sub["grasp"] < 0.5:
            reasons.append(f"gripper {float(grasp) * 100:.1f} cm from the object at grasp")

    weights = {k: s.weights.get(k, 1.0) for k in sub}
    score = sum(weights[k] * v for k, v in sub.items()) / max(sum(weights.values()), 1e-9)
    hard_fail = not finite or (s.require_success and not episode.success) or sub["frames"] == 0.0
    if hard_fail:
        score = 0.0
    for k, v in sub.items():
        m[f"quality.sub.{k}"] = v
    m["quality.score"] = float(score)
    accepted = not hard_fail and score >= s.min_score
    if not accepted and not reasons:
        reasons.append(f"score {score:.2f} below min_score {s.min_score}")
    return QualityReport(score=float(score), accepted=accepted, reasons=reasons, metrics=m)
