"""`raygen view DATASET [--episode K] [--save FILE.rrd]`: one episode in rerun.

Entities (world = the robot base frame, z up; timelines ``frame`` and ``time``):

    world/cameras/<cam>                     camera-to-base Transform3D (per frame for a moving camera)
    world/cameras/<cam>/image               Pinhole (K, resolution; OpenCV axes)
    world/cameras/<cam>/image/rgb           the frames                     (cameras with frames)
    world/cameras/<cam>/image/depth         depth in millimetres           (cameras with depth)
    world/cameras/<cam>/image/tracks        the 2D contact tracks drawn on the image, visible ones
    world/gripper                           the flange pose (Transform3D)
    world/tracks3d                          the 3D contact tracks (centroid, left pad, right pad) now
    world/tracks3d/paths                    their whole paths (static)
    plots/gripper_opening, plots/quality    the opening over time; the episode's quality score

Without ``save`` the rerun viewer is spawned (it needs a display); with it the recording goes to an .rrd file
that ``rerun FILE.rrd`` opens anywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from raygen.datasets.reader import DatasetReader

logger = logging.getLogger(__name__)

__all__ = ["ENTITIES", "view_episode"]

TRACK_COLOURS = [(255, 255, 255), (255, 0, 255), (0, 220, 255)]
TRACK_LABELS = ["centroid", "left_pad", "right_pad"]
ENTITIES = ("world/gripper", "world/tracks3d", "world/tracks3d/paths", "plots/gripper_opening")


def view_episode(root: str | Path, episode: int | str = 0, *, save: str | Path | None = None,
                 spawn: bool | None = None) -> str:
    """Log one episode of the dataset at ``root`` to rerun (application "raygen", recording id
    "<dataset folder>:<episode key>"); returns the recording id."""
    import rerun as rr

    reader = DatasetReader(root)
    ep = reader.episode(int(episode) if str(episode).isdigit() else episode)
    app = "raygen"
    rec = rr.RecordingStream(app, recording_id=f"{Path(root).resolve().name}:{ep.episode_key}")
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        rec.save(str(save))
    elif spawn is not False:
        rec.spawn()
    rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    tracks = ep.frame_features.get("tracks3d")
    if tracks is not None:
        n = tracks.shape[1]
        rec.log("world/tracks3d/paths", rr.LineStrips3D([tracks[:, i] for i in range(n)],
                                                        colors=TRACK_COLOURS[:n], labels=TRACK_LABELS[:n]),
                static=True)
    for cam, c in ep.cameras.items():
        h, w = c.resolution
        rec.log(f"world/cameras/{cam}/image", rr.Pinhole(image_from_camera=np.asarray(c.intrinsics), resolution=[w, h],
                                                          camera_xyz=rr.ViewCoordinates.RDF), static=True)
        if not c.moving:
            rec.log(f"world/cameras/{cam}", _transform(rr, np.asarray(c.pose)), static=True)
    score = ep.metrics.get("quality.score")
    for t in range(ep.length):
        rec.set_time("frame", sequence=t)
        rec.set_time("time", duration=float(t) / ep.fps)
        rec.log("world/gripper", _transform(rr, ep.gripper_pose[t]))
        rec.log("plots/gripper_opening", rr.Scalars([float(ep.gripper_opening[t])]))
        if score is not None:
            rec.log("plots/quality", rr.Scalars([float(score)]))
        if tracks is not None:
            rec.log("world/tracks3d", rr.Points3D(tracks[t], colors=TRACK_COLOURS[: tracks.shape[1]],
                                                  labels=TRACK_LABELS[: tracks.shape[1]], radii=0.006))
        for cam, c in ep.cameras.items():
            base = f"world/cameras/{cam}"
            if c.moving:
                rec.log(base, _transform(rr, np.asarray(c.pose)[t]))
            if c.rgb is not None:
                rec.log(f"{base}/image/rgb", rr.Image(c.rgb[t]))
            if c.depth is not None:
                rec.log(f"{base}/image/depth", rr.DepthImage(c.depth[t], meter=1000.0))
            uv = ep.frame_features.get(f"tracks2d.{cam}")
            if uv is not None:
                vis = np.asarray(ep.frame_features.get(f"tracks2d.{cam}.visible", np.ones(uv.shape[:2], bool)))[t]
                idx = np.flatnonzero(vis)
                rec.log(f"{base}/image/tracks", rr.Points2D(uv[t][idx], colors=[TRACK_COLOURS[i] for i in idx],
                                                            labels=[TRACK_LABELS[i] for i in idx], radii=2.0))
    rec.flush()
    if save is not None:
        rec.disconnect()
    logger.info("episode %s (%d frames, %d cameras) logged to %s", ep.episode_key, ep.length, len(ep.cameras),
                save or "the rerun viewer")
    return f"{Path(root).resolve().name}:{ep.episode_key}"


def _transform(rr, pose: np.ndarray):
    pose = np.asarray(pose, dtype=np.float64)
    return rr.Transform3D(translation=pose[:3, 3], mat3x3=pose[:3, :3])
