"""The flow stage: gripper contact tracks in 3D, their 2D projections in every camera, normalized flow.

- ``tracks3d`` [T,N,3], N = (centroid, left pad, right pad), in the robot base frame. From the
  episode's ``contact.pads`` when the simulator measured them, else from the flange pose, the
  opening and the documented gripper geometry (``gripper_geometry``: ``centroid_in_flange_m`` and
  ``finger_axis_in_flange``).
- ``tracks2d.<cam>`` [T,N,2] pixels (OpenCV: pixel centres at integers) through the camera's pose,
  intrinsics and distortion (k1, k2, p1, p2, k3), and ``tracks2d.<cam>.visible`` [T,N]: in front of
  the camera, inside the image, and, where depth is valid at that pixel, not behind a surface.
- ``flow`` [M,N,3]: every track resampled at equal steps (default 1 mm) of the centroid's path
  length, so trajectories of different speeds compare point by point.

Several grippers (G > 1: ``contact.pads`` [T,2G,3] holds each gripper's left and right pad, grippers in
order, e.g. the two-arm task's arm 0 then arm 1):

- ``tracks3d`` [T,3G,3] and ``tracks2d.<cam>`` [T,3G,2] / ``.visible`` [T,3G]: (centroid, left pad,
  right pad) of gripper 0, then of gripper 1, ...; their names (``<gripper>.<track>``, the gripper names
  from ``gripper_geometry["grippers"]``, else ``gripper<g>``) go to ``gripper_geometry["tracks"]``, and the
  per-dimension names to ``names["tracks3d"]`` and ``names["tracks2d.<cam>"]`` (``arm0_centroid_x``, ...).
- ``flow`` [M,3G,3]: each gripper's three tracks resampled at steps of *its own* centroid's path length;
  gripper g has M_g steps (``gripper_geometry["flow_steps"]``), M = max M_g, and rows from M_g on repeat
  its last point (it has arrived).

With one gripper every output is exactly what it was before grippers were counted.
"""

from __future__ import annotations

import numpy as np

from raygen.datasets.episode import Episode

__all__ = ["TRACK_NAMES", "add_flow", "contact_tracks", "gripper_count", "gripper_names", "normalized_flow",
           "project_points"]

TRACK_NAMES = ("centroid", "left_pad", "right_pad")
OCCLUSION_TOL_M = 0.02
OCCLUSION_TOL_REL = 0.02


def gripper_count(episode: Episode) -> int:
    """How many grippers the episode's tracks follow: half the points of ``contact.pads``, else 1."""
    pads = episode.frame_features.get("contact.pads")
    if pads is None:
        return 1
    shape = np.shape(pads)
    if len(shape) != 3 or shape[2] != 3 or shape[1] < 2 or shape[1] % 2:
        raise ValueError(f"episode {episode.episode_key!r}: contact.pads has shape {list(shape)}; the flow stage "
                         "needs [T,2G,3], the left and right pad of each of G grippers")
    return shape[1] // 2


def gripper_names(episode: Episode) -> list[str]:
    """One name per gripper: ``gripper_geometry["grippers"]`` when it names them all, else gripper0, ..."""
    g = gripper_count(episode)
    names = episode.gripper_geometry.get("grippers") if isinstance(episode.gripper_geometry, dict) else None
    if isinstance(names, list | tuple) and len(names) == g and all(isinstance(n, str) and n for n in names):
        return list(names)
    return [f"gripper{i}" for i in range(g)]


def contact_tracks(episode: Episode) -> np.ndarray:
    """[T,3,3] centroid, left and right pad positions in the base frame; [T,3G,3] for G grippers (the three
    tracks of each, grippers in order)."""
    pads = episode.frame_features.get("contact.pads")
    if pads is not None:
        g = gripper_count(episode)
        pads = np.asarray(pads, dtype=np.float64)
        if g == 1:
            return np.stack([pads.mean(axis=1), pads[:, 0], pads[:, 1]], axis=1)
        per = [pads[:, 2 * i:2 * i + 2] for i in range(g)]
        return np.concatenate([np.stack([p.mean(axis=1), p[:, 0], p[:, 1]], axis=1) for p in per], axis=1)
    geo = episode.gripper_geometry
    try:
        centre = np.asarray(geo["centroid_in_flange_m"], dtype=np.float64)
        axis = np.asarray(geo["finger_axis_in_flange"], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(
            f"episode {episode.episode_key!r}: no contact.pads and gripper_geometry lacks {exc.args[0]!r}; "
            "the flow stage needs measured pads or centroid_in_flange_m and finger_axis_in_flange"
        ) from None
    axis = axis / np.linalg.norm(axis)
    flange = np.asarray(episode.gripper_pose, dtype=np.float64)
    half = np.asarray(episode.gripper_opening, dtype=np.float64)[:, None] / 2
    rot, trans = flange[:, :3, :3], flange[:, :3, 3]
    c = trans + rot @ centre
    side = rot @ axis
    return np.stack([c, c + half * side, c - half * side], axis=1)


def project_points(points: np.ndarray, cam_to_base: np.ndarray, k: np.ndarray, dist: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Project [T,N,3] base-frame points: returns pixels [T,N,2] and camera-frame depth z [T,N].

    ``cam_to_base`` is [4,4] or [T,4,4] (OpenCV axes); the model is OpenCV's (projectPoints).
    """
    pose = np.asarray(cam_to_base, dtype=np.float64)
    if pose.ndim == 2:
        pose = np.broadcast_to(pose, (points.shape[0], 4, 4))
    rot, trans = pose[:, :3, :3], pose[:, :3, 3]
    cam = np.einsum("tji,tnj->tni", rot, points - trans[:, None, :])  # R^T (p - t)
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = cam[..., 0] / z, cam[..., 1] / z
    k1, k2, p1, p2, k3 = (float(v) for v in np.asarray(dist, dtype=np.float64).reshape(-1)[:5])
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    u = k[0, 0] * xd + k[0, 1] * yd + k[0, 2]
    v = k[1, 1] * yd + k[1, 2]
    return np.stack([u, v], axis=-1), z


def _visible(uv: np.ndarray, z: np.ndarray, depth: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    u, v = uv[..., 0], uv[..., 1]
    inside = (z > 0) & (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)
    if depth is None:
        return inside
    t_idx = np.broadcast_to(np.arange(z.shape[0])[:, None], z.shape)
    ui = np.clip(np.round(np.nan_to_num(u)).astype(np.int64), 0, w - 1)
    vi = np.clip(np.round(np.nan_to_num(v)).astype(np.int64), 0, h - 1)
    d = depth[t_idx, vi, ui].astype(np.float64) / 1000.0
    hidden = (d > 0) & (z > d + OCCLUSION_TOL_M + OCCLUSION_TOL_REL * d)
    return inside & ~hidden


def normalized_flow(tracks: np.ndarray, step_m: float = 0.001) -> np.ndarray:
    """Resample [T,N,3] tracks at ``step_m`` steps of the centroid's (track 0) path length: [M,N,3].

    Frames where the centroid does not move add no length; the track positions there are those
    of the first frame at that path length.
    """
    c = tracks[:, 0]
    seg = np.linalg.norm(np.diff(c, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    keep = np.concatenate([[True], seg > 0])
    s_k, tr_k = s[keep], tracks[keep]
    targets = np.arange(int(np.floor(s_k[-1] / step_m + 1e-9)) + 1) * step_m
    if len(s_k) == 1:
        return tr_k[:1].astype(np.float32)
    idx = np.clip(np.searchsorted(s_k, targets, side="right") - 1, 0, len(s_k) - 2)
    frac = ((targets - s_k[idx]) / (s_k[idx + 1] - s_k[idx]))[:, None, None]
    out = tr_k[idx] + frac * (tr_k[idx + 1] - tr_k[idx])
    return out.astype(np.float32)


def _flow_per_gripper(tracks: np.ndarray, grippers: int, step_m: float) -> tuple[np.ndarray, list[int]]:
    """[M,3G,3]: each gripper's tracks resampled by its own centroid's path, padded with its last point to
    the longest; and the number of steps of each."""
    flows = [normalized_flow(tracks[:, 3 * g:3 * g + 3], step_m) for g in range(grippers)]
    steps = [len(f) for f in flows]
    m = max(steps)
    padded = [np.concatenate([f, np.repeat(f[-1:], m - len(f), axis=0)]) for f in flows]
    return np.concatenate(padded, axis=1), steps


def add_flow(episode: Episode, step_m: float = 0.001) -> Episode:
    """Add tracks3d, tracks2d.<cam>, tracks2d.<cam>.visible and the normalized flow to ``episode``
    (for every gripper: see the module's docstring)."""
    tracks = contact_tracks(episode)
    g = gripper_count(episode)
    episode.frame_features["tracks3d"] = tracks.astype(np.float32)
    track_names = list(TRACK_NAMES) if g == 1 else [f"{n}.{t}" for n in gripper_names(episode) for t in TRACK_NAMES]
    if g > 1:
        stems = [n.replace(".", "_") for n in track_names]
        episode.names["tracks3d"] = [f"{s}_{ax}" for s in stems for ax in "xyz"]
    for name, cam in episode.cameras.items():
        uv, z = project_points(tracks, cam.pose, np.asarray(cam.intrinsics), np.asarray(cam.distortion))
        visible = _visible(uv, z, cam.depth, cam.resolution)
        episode.frame_features[f"tracks2d.{name}"] = np.nan_to_num(uv, nan=-1.0).astype(np.float32)
        episode.frame_features[f"tracks2d.{name}.visible"] = visible
        if g > 1:
            episode.names[f"tracks2d.{name}"] = [f"{s}_{ax}" for s in stems for ax in "uv"]
            episode.names[f"tracks2d.{name}.visible"] = list(stems)
    extra: dict = {}
    if g == 1:
        episode.flow = normalized_flow(tracks, step_m)
    else:
        episode.flow, steps = _flow_per_gripper(tracks, g, step_m)
        extra = {"grippers": gripper_names(episode), "flow_steps": steps}
    episode.gripper_geometry = {**episode.gripper_geometry, "tracks": track_names, "flow_step_m": step_m, **extra}
    return episode
