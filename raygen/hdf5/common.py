"""What the HDF5 exporters share: which episodes, their images at a chosen size, and parts run on Ray."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raygen.datasets.episode import CameraFrames

__all__ = ["IMAGE_MODES", "camera_images", "nearest_indices", "run_parts", "select_episodes", "split"]

logger = logging.getLogger(__name__)

IMAGE_MODES = ("none", "rgb", "rgbd")


def select_episodes(reader: Any, selection: str | None) -> list[int]:
    """Episode indices of a dataset: all (None, "" or "all"), a list of indices and ranges ("0-9,15,20-"),
    or ``@FILE`` with one episode key per line (``#`` starts a comment). Order kept, duplicates dropped;
    anything unknown is an error naming it."""
    n = len(reader)
    if not selection or selection == "all":
        return list(range(n))
    out: list[int] = []
    if selection.startswith("@"):
        path = Path(selection[1:])
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"--episodes: cannot read {path} ({exc.strerror})") from None
        for no, line in enumerate(lines, 1):
            key = line.split("#", 1)[0].strip()
            if not key:
                continue
            try:
                out.append(reader.index_of(key))
            except (KeyError, ValueError):
                raise ValueError(f"{path}: line {no}: episode key {key!r} is not in {reader.root}") from None
    else:
        for part in selection.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    lo, hi = part.split("-", 1)
                    a, b = int(lo), (int(hi) if hi else n - 1)
                    idx = list(range(a, b + 1))
                else:
                    a = b = int(part)
                    idx = [a]
            except ValueError:
                raise ValueError(f"--episodes: {part!r} is not an index or a range like 3-7") from None
            if a < 0 or b >= n or a > b:
                raise ValueError(f"--episodes: {part!r} is outside 0..{n - 1} ({reader.root} has {n} episodes)")
            out.extend(idx)
    return list(dict.fromkeys(out))


def nearest_indices(n0: int, n: int) -> np.ndarray:
    """For a resize of ``n0`` pixels to ``n`` (one axis): the source pixel whose centre is nearest to each target
    pixel centre's pre-image, (i + 0.5) * n0 / n - 0.5, the same pixel-centre convention the scaled
    intrinsics use. (cv2.INTER_NEAREST picks floor(i * n0 / n) instead: up to a source pixel off that K.)"""
    return np.minimum(np.floor((np.arange(n) + 0.5) * (n0 / n)).astype(np.int64), n0 - 1)


def camera_images(cam: CameraFrames, mode: str, size: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(rgb [T,h,w,3] uint8 or None, depth [T,h,w] uint16 mm or None, K [3,3] for that size) of one camera;
    ``mode`` none / rgb / rgbd, ``size`` (height, width) or None for the recorded size. Colour is resized
    with area averaging, depth by picking recorded pixels (:func:`nearest_indices`: an average of depths
    across an edge is no depth), so a stored depth pixel is at most half a recorded pixel from where K puts
    it (exact for odd integer downscale factors)."""
    import cv2

    if mode not in IMAGE_MODES:
        raise ValueError(f"images: {mode!r} is not one of {', '.join(IMAGE_MODES)}")
    h0, w0 = cam.resolution
    h, w = size or (h0, w0)
    k = np.array(cam.intrinsics, dtype=np.float64)
    if (h, w) != (h0, w0):
        k[0] *= w / w0
        k[1] *= h / h0
        k[0, 2] = (cam.intrinsics[0][2] + 0.5) * w / w0 - 0.5  # pixel centres, not corners, scale
        k[1, 2] = (cam.intrinsics[1][2] + 0.5) * h / h0 - 0.5
    if mode == "none" or cam.rgb is None:
        return None, None, k
    rgb = cam.rgb
    depth = cam.depth if mode == "rgbd" else None
    if (h, w) != (h0, w0):
        rgb = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in rgb])
        if depth is not None:
            depth = depth[:, nearest_indices(h0, h)][:, :, nearest_indices(w0, w)]
    return np.ascontiguousarray(rgb), None if depth is None else np.ascontiguousarray(depth), k


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in at most ``parts`` contiguous, non-empty runs of near-equal length (order kept)."""
    parts = max(1, min(int(parts), len(items)))
    return [list(p) for p in np.array_split(np.asarray(items, dtype=object), parts) if len(p)]


def run_parts(fn: Callable[..., Any], parts: list[Any], *, workers: int, **kw: Any) -> list[Any]:
    """``fn(part, **kw)`` for each part: in this process for one worker, else as Ray tasks (one CPU each,
    on a local Ray started here when none is running). Results in the order of ``parts``."""
    if workers <= 1 or len(parts) <= 1:
        return [fn(p, **kw) for p in parts]
    import ray

    if not ray.is_initialized():
        ray.init(log_to_driver=False, include_dashboard=False)
    task = ray.remote(num_cpus=1, max_retries=2)(fn)
    return ray.get([task.remote(p, **kw) for p in parts])
