"""Depth as LeRobot >= 0.6 reads it: a video feature marked as a depth map, 12-bit log-quantized codes in
lossless HEVC gray12le (REFERENCE.md section 9; lerobot 0.6.1's depth_utils and DepthEncoderConfig).

raygen's FFV1 depth (uint16 millimetres, bit-exact) stays the source of truth; this is a second copy, written
when ``output.lerobot_depth`` is on, so LeRobot users can load depth as depth. It is not bit-exact: each
millimetre value becomes one of 4096 codes, log-spaced between depth_min and depth_max (steps of 1.2 mm at
0.1 m, 1.5 mm at 1 m, 4.4 mm at 10 m with the defaults), and invalid pixels (0) read back as depth_min.

Feature key ``observation.images.<camera>_depth`` (as LeRobot's own robots name depth cameras), shape
[H, W, 1], its quantizer in the feature's ``info`` (``video.depth_min/depth_max/shift/use_log``, in metres;
the maths runs in millimetres for millimetre input) with ``is_depth_map: true`` and ``depth_unit: "mm"``.
Its statistics describe the raw uint16 millimetres before quantization, every pixel counted: invalid pixels (0)
and depths outside [depth_min, depth_max] as they are, not as the quantizer clips them. They come from a
65536-bin histogram (one bin per millimetre value), so min, max, mean, std and the quantiles q01..q99 are all
exact over the frames counted (the writer counts every IMAGE_STATS_STRIDE-th): the quantiles equal
``numpy.quantile(depth, q)`` (linear interpolation) and the mean and std numpy's, up to float64 rounding.
Shape (1,1,1) each, count (1,) = frames.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from raygen.datasets._video import frame_rate

__all__ = ["DEPTH_LEVELS", "DEPTH_QMAX", "DepthQuantizer", "DepthStats", "LEROBOT_DEPTH_CODEC", "depth_feature",
           "encode_lerobot_depth", "decode_lerobot_depth"]

DEPTH_QMAX = 4095
LEROBOT_DEPTH_CODEC = "hevc"
LEROBOT_DEPTH_PIX_FMT = "gray12le"
X265_PARAMS = "lossless=1:log-level=error"
GOP = 2


@dataclass(frozen=True)
class DepthQuantizer:
    """LeRobot's DepthEncoderConfig defaults; parameters in metres, applied to millimetre input."""

    depth_min: float = 0.01
    depth_max: float = 10.0
    shift: float = 3.5
    use_log: bool = True

    def _mm(self) -> tuple[float, float, float]:
        return self.depth_min * 1000.0, self.depth_max * 1000.0, self.shift * 1000.0

    def quantize(self, depth_mm: np.ndarray) -> np.ndarray:
        """uint16 millimetres -> uint16 codes in [0, 4095]."""
        lo, hi, s = self._mm()
        d = np.asarray(depth_mm, dtype=np.float64)
        if self.use_log:
            norm = (np.log(d + s) - np.log(lo + s)) / (np.log(hi + s) - np.log(lo + s))
        else:
            norm = (d - lo) / (hi - lo)
        return np.clip(np.rint(norm * DEPTH_QMAX), 0, DEPTH_QMAX).astype(np.uint16)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> millimetres (float64), clipped to [depth_min, depth_max], as LeRobot's reader does."""
        lo, hi, s = self._mm()
        q = np.asarray(codes, dtype=np.float64)
        if self.use_log:
            scale = (np.log(hi + s) - np.log(lo + s)) / DEPTH_QMAX
            d = np.exp(q * scale + np.log(lo + s)) - s
        else:
            d = q * (hi - lo) / DEPTH_QMAX + lo
        return np.clip(d, lo, hi)

    def step_mm(self, depth_mm: np.ndarray) -> np.ndarray:
        """The step from each depth's code c to the next one up, dequantize(c + 1) - dequantize(c) (the top
        step for c = 4095). A round trip moves a depth in [depth_min, depth_max] by at most half of it:
        quantize rounds the continuous code x(d) to the nearest integer c, so d lies between the depths of
        codes c - 1/2 and c + 1/2; dequantize is convex in the code (exp, or linear), so neither half-interval
        is wider than half the step above c, and at the ends the clip to [depth_min, depth_max] only shortens
        them. Depths outside the range (and invalid 0) read back as the nearer end; this says nothing of them."""
        codes = np.minimum(self.quantize(depth_mm).astype(np.int64), DEPTH_QMAX - 1)
        return self.dequantize(codes + 1) - self.dequantize(codes)

    def info(self) -> dict[str, Any]:
        return {"video.depth_min": self.depth_min, "video.depth_max": self.depth_max, "video.shift": self.shift,
                "video.use_log": self.use_log}


def depth_feature(height: int, width: int, fps: float, quantizer: DepthQuantizer) -> dict[str, Any]:
    """The info.json feature of one camera's LeRobot depth video."""
    fps_out: int | float = int(fps) if float(fps).is_integer() else fps
    return {
        "dtype": "video",
        "shape": [height, width, 1],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height, "video.width": width, "video.codec": LEROBOT_DEPTH_CODEC,
            "video.pix_fmt": LEROBOT_DEPTH_PIX_FMT, "video.fps": fps_out, "video.channels": 1, "has_audio": False,
            "video.g": GOP, "video.crf": 30, "video.preset": None, "video.fast_decode": 0,
            "video.video_backend": "pyav", "video.extra_options": {"x265-params": X265_PARAMS},
            **quantizer.info(),
            "is_depth_map": True, "video.is_depth_map": True, "depth_unit": "mm",
        },
    }


def encode_lerobot_depth(depth_mm: np.ndarray, fps: float, quantizer: DepthQuantizer) -> bytes:
    """[T,H,W] uint16 mm -> an in-memory MP4 segment of lossless HEVC gray12le codes."""
    codes = quantizer.quantize(depth_mm)
    buf = io.BytesIO()
    rate = frame_rate(fps)
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx265", rate=rate, options={"x265-params": X265_PARAMS, "g": str(GOP)})
        stream.height, stream.width = int(codes.shape[1]), int(codes.shape[2])
        stream.pix_fmt = LEROBOT_DEPTH_PIX_FMT
        stream.codec_context.time_base = 1 / rate
        for i in range(codes.shape[0]):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(codes[i]), format=LEROBOT_DEPTH_PIX_FMT)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def decode_lerobot_depth(frames: list[av.VideoFrame] | np.ndarray, quantizer: DepthQuantizer) -> np.ndarray:
    """Decoded gray12le frames (or their codes) -> millimetres, as LeRobot's reader returns them."""
    codes = np.stack([f.to_ndarray(format=LEROBOT_DEPTH_PIX_FMT) for f in frames]) if isinstance(frames, list) \
        else np.asarray(frames)
    return quantizer.dequantize(codes)


DEPTH_LEVELS = 1 << 16
"""Bins of the depth histogram: one per uint16 millimetre value."""


@dataclass
class DepthStats:
    """Mergeable statistics of raw depth: how many pixels hold each uint16 millimetre value (0 = invalid).

    Everything stats.json reports follows exactly from these counts (see the module docstring)."""

    counts: np.ndarray
    """[65536] int64: counts[v] = pixels at v mm."""

    @classmethod
    def of(cls, depth_mm: np.ndarray, quantizer: DepthQuantizer | None = None) -> DepthStats:
        """Count [T,H,W] uint16 millimetres. ``quantizer`` is not used: the statistics are of the raw values."""
        d = np.asarray(depth_mm)
        if d.dtype != np.uint16:
            raise ValueError(f"depth statistics need uint16 millimetres, got dtype {d.dtype}; convert with "
                             "np.rint(depth_m * 1000).astype(np.uint16), 0 for invalid pixels")
        return cls(np.bincount(d.reshape(-1), minlength=DEPTH_LEVELS).astype(np.int64))

    def merge(self, other: DepthStats) -> DepthStats:
        return DepthStats(self.counts + other.counts)

    def to_json(self) -> dict[str, Any]:
        """Sparse: only the millimetre values that occur."""
        nz = np.flatnonzero(self.counts)
        return {"mm": {str(int(v)): int(self.counts[v]) for v in nz}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DepthStats:
        if "mm" not in d:
            raise ValueError(
                "depth statistics without a 'mm' histogram (keys "
                f"{sorted(d)}): written by an earlier raygen that kept only 12-bit codes, from which exact "
                "quantiles cannot be recovered; rewrite the dataset (or its lerobot_depth copy) with this raygen")
        counts = np.zeros(DEPTH_LEVELS, np.int64)
        for k, v in d["mm"].items():
            counts[int(k)] = int(v)
        return cls(counts)

    def stats(self, n_frames: int, quantizer: DepthQuantizer | None = None) -> dict[str, np.ndarray]:
        """LeRobot's stats.json entry: (1,1,1) each, count (1,) = frames. ``quantizer`` is not used."""
        from raygen.datasets._stats import QUANTILES, STAT_KEYS, _quantiles_from_counts

        n = int(self.counts.sum())
        if n == 0:
            raise ValueError("depth statistics of no pixels: at least one frame must be counted")
        levels = np.arange(DEPTH_LEVELS, dtype=np.float64)
        weights = self.counts.astype(np.float64)
        mean = float(weights @ levels) / n
        var = float(weights @ (levels - mean) ** 2) / n
        nz = np.flatnonzero(self.counts)
        cell = lambda v: np.full((1, 1, 1), float(v))  # noqa: E731
        out = {"min": cell(nz[0]), "max": cell(nz[-1]), "mean": cell(mean), "std": cell(np.sqrt(var)),
               "count": np.array([int(n_frames)], dtype=np.int64)}
        for name, v in zip(QUANTILES, _quantiles_from_counts(self.counts, list(QUANTILES.values()))):
            out[name] = cell(v)
        return {k: out[k] for k in STAT_KEYS}
