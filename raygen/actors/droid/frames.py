"""DROID's MP4s on CPU: decoding with PyAV, matching frames to trajectory steps, stereo depth with OpenCV.

Frame i of a recording belongs to trajectory row i (DROID's own loader checks the image timestamp against
``<serial>_frame_received[i]``); the container's 60 fps is the camera setting, not the 15 Hz at which frames
were kept, and is never used. When ``<serial>_timestamps.json`` (frame times in ms) is there, each frame
is placed at the step whose frame_received matches it.

One frame fewer than steps is a known case of the release: the step without a frame gets its neighbour's
frame (the previous one; the next for step 0), and the camera's info records which steps were filled.
Any other difference in length rejects the episode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raygen.actors.spec import EpisodeInputError

__all__ = ["FrameMatch", "StereoDepth", "decode_mp4", "match_frames"]


def decode_mp4(path: Path, where: str, size: tuple[int, int] | None = None, *, split: bool = False,
               threads: int = 0) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Every frame of an MP4 as RGB uint8 [N,H,W,3] at ``size`` (width, height; None = as stored), None
    (or, with ``split``, the right halves of left|right side-by-side frames), and the stored (width,
    height) of one image."""
    import av
    import cv2

    frames: list[np.ndarray] = []
    rights: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EpisodeInputError(f"{where}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if threads:
                stream.thread_count = threads
            native = (stream.codec_context.width // (2 if split else 1), stream.codec_context.height)
            for frame in container.decode(stream):
                img = frame.to_ndarray(format="rgb24")
                halves = (img[:, : img.shape[1] // 2], img[:, img.shape[1] // 2:]) if split else (img,)
                out = [h if size is None or (h.shape[1], h.shape[0]) == size
                       else cv2.resize(h, size, interpolation=cv2.INTER_AREA) for h in halves]
                frames.append(np.ascontiguousarray(out[0]))
                if split:
                    rights.append(np.ascontiguousarray(out[1]))
    except EpisodeInputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise EpisodeInputError(f"{where}: cannot decode ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise EpisodeInputError(f"{where}: holds no frames")
    return np.stack(frames), np.stack(rights) if split else None, native


@dataclass
class FrameMatch:
    """Which frame each trajectory step takes."""

    index: np.ndarray
    """[T] frame index per step."""
    filled: list[int] = field(default_factory=list)
    """Steps that had no frame of their own (they show a neighbour's)."""
    method: str = "order"
    """order (frame i -> step i) or timestamps (<serial>_timestamps.json against frame_received)."""
    frames: int = 0
    """How many frames the recording held."""

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frame_match": self.method}
        if self.filled:
            out["frames_filled"] = self.filled
            out["frame_fill"] = "neighbour frame (one frame fewer than steps)"
        return out


def _timestamps(files: Any, serial: str) -> list[int] | None:
    name = f"{serial}_timestamps.json"
    if not files.exists("recordings", "MP4", name):
        return None
    where = files.rel("recordings", "MP4", name)
    try:
        raw = json.loads(files.read_bytes("recordings", "MP4", name))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EpisodeInputError(f"{where}: not valid JSON ({exc})") from None
    if isinstance(raw, dict):  # tolerate {"timestamps": [...]}
        raw = raw.get("timestamps", raw.get("frame_timestamps"))
    if not isinstance(raw, list) or not all(isinstance(v, int | float) for v in raw):
        raise EpisodeInputError(f"{where}: expected a list of frame times in milliseconds")
    return [int(round(v)) for v in raw]


def match_frames(n_frames: int, steps: int, where: str, *, frame_received: np.ndarray | None = None,
                 frame_times: list[int] | None = None, tolerance_ms: float = 5.0) -> FrameMatch:
    """Map ``n_frames`` frames onto ``steps`` trajectory steps (see the module docstring)."""
    if frame_times is not None and frame_received is not None:
        if len(frame_times) != n_frames:
            raise EpisodeInputError(f"{where}: {n_frames} frames but {len(frame_times)} frame timestamps")
        times = np.asarray(frame_times, dtype=np.int64)
        index = np.full(steps, -1, dtype=np.int64)
        nearest = np.abs(frame_received[:, None] - times[None, :])
        best = nearest.argmin(axis=1)
        ok = nearest[np.arange(steps), best] <= tolerance_ms
        index[ok] = best[ok]
        missing = [int(i) for i in np.flatnonzero(~ok)]
        if len(missing) > 1 or n_frames not in (steps, steps - 1):
            raise EpisodeInputError(
                f"{where}: {n_frames} frames for {steps} steps; {len(missing)} step(s) without a frame within "
                f"{tolerance_ms:g} ms of frame_received (first: step {missing[0] if missing else '-'})")
        if len(set(index[ok].tolist())) != int(ok.sum()):
            raise EpisodeInputError(f"{where}: two steps match the same frame (timestamps within "
                                    f"{tolerance_ms:g} ms)")
        for i in missing:
            index[i] = index[i - 1] if i > 0 else index[i + 1]
        return FrameMatch(index=index, filled=missing, method="timestamps", frames=n_frames)
    if n_frames == steps:
        return FrameMatch(index=np.arange(steps), frames=n_frames)
    if n_frames == steps - 1:  # the known case: assume the last step lost its frame
        return FrameMatch(index=np.concatenate([np.arange(n_frames), [n_frames - 1]]), filled=[steps - 1],
                          frames=n_frames)
    raise EpisodeInputError(f"{where}: {n_frames} frames for {steps} trajectory steps (only one frame fewer "
                            "than steps is tolerated)")


def camera_frames(files: Any, serial: str, steps: int, size: tuple[int, int] | None,
                  frame_received: np.ndarray | None, tolerance_ms: float, *, threads: int = 0
                  ) -> tuple[np.ndarray, FrameMatch, tuple]:
    """The left camera's RGB frames [T,H,W,3], one per step, and how they were matched."""
    from raygen.actors.droid.raw import require

    path = require(files, "recordings", "MP4", f"{serial}.mp4", what="the camera's left-eye MP4")
    where = files.rel("recordings", "MP4", f"{serial}.mp4")
    rgb, _, native = decode_mp4(path, where, size, threads=threads)
    match = match_frames(len(rgb), steps, where, frame_received=frame_received,
                         frame_times=_timestamps(files, serial), tolerance_ms=tolerance_ms)
    return rgb[match.index], match, native


@dataclass
class StereoDepth:
    """Depth from a rectified stereo pair with OpenCV's semi-global matcher (3-way): uint16 mm, 0 = invalid.

    depth = fx * baseline / disparity, with fx of the images matched and the baseline from the two eyes'
    extrinsics. The disparity range is set by the nearest depth searched for (``min_depth_m``). Both images
    are padded on the left by that range, so the matcher gives depth across the whole width (without it
    the leftmost ``num_disparities`` columns stay empty).
    """

    fx: float
    baseline_m: float
    min_depth_m: float = 0.1
    block_size: int = 5
    max_depth_m: float = 10.0

    @property
    def num_disparities(self) -> int:
        d = self.fx * self.baseline_m / self.min_depth_m
        return int(min(512, max(16, 16 * int(np.ceil(d / 16.0)))))

    def compute(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """[N,H,W,3] RGB pairs -> [N,H,W] uint16 millimetres."""
        import cv2

        bs = self.block_size
        matcher = cv2.StereoSGBM_create(minDisparity=0, numDisparities=self.num_disparities, blockSize=bs,
                                        P1=8 * bs * bs, P2=32 * bs * bs, disp12MaxDiff=1, uniquenessRatio=10,
                                        speckleWindowSize=100, speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
        out = np.zeros(left.shape[:3], np.uint16)
        pad = self.num_disparities
        for i in range(len(left)):
            gl, gr = (cv2.copyMakeBorder(cv2.cvtColor(img[i], cv2.COLOR_RGB2GRAY), 0, 0, pad, 0, cv2.BORDER_REPLICATE)
                      for img in (left, right))
            disp = matcher.compute(gl, gr)[:, pad:].astype(np.float32) / 16.0  # fixed point, 4 fractional bits
            valid = disp > 0.5
            mm = np.zeros_like(disp)
            mm[valid] = 1000.0 * self.fx * self.baseline_m / disp[valid]
            mm[(mm > self.max_depth_m * 1000.0) | ~np.isfinite(mm)] = 0
            out[i] = np.round(mm).clip(0, 65535).astype(np.uint16)
        return out
