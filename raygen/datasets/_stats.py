"""Feature statistics in LeRobot's stats.json shape, merged exactly across shards.

Every feature gets min, max, mean, std (population), count and the quantiles
q01, q10, q50, q90, q99 (numpy's default "linear" definition).

- Numeric features (state, action, indices, tracks): the values themselves are
  the accumulator, so statistics over many shards equal statistics over the
  concatenated data, quantiles included. The committer keeps the committed
  values of these small per-frame columns in memory (4-8 bytes per value).
- Images: per-channel 256-bin histograms of the uint8 pixels of every frame.
  A histogram of integers is lossless, so means, stds and quantiles computed
  from summed histograms are exact too. Values are reported on [0, 1] with
  shape (C, 1, 1), and ``count`` is the number of frames, as LeRobot does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

__all__ = [
    "QUANTILES",
    "StatsAccumulator",
    "hist_stats",
    "image_histogram",
    "numeric_stats",
    "stats_to_json",
]

QUANTILES: dict[str, float] = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILES)


def numeric_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of [n] or [n, D] values along the first axis (each stat has shape [D], [1] for 1-D).

    The same computation as the dataset-wide accumulator, so per-episode and merged stats agree.
    """
    x = np.asarray(values)
    acc = _NumericAccumulator()
    acc.add(x.reshape(x.shape[0], -1))
    return acc.stats()


def image_histogram(frames: np.ndarray) -> np.ndarray:
    """[C,256] int64 per-channel histogram of [T,H,W,C] uint8 frames (every pixel of every frame)."""
    t, h, w, c = frames.shape
    flat = np.ascontiguousarray(frames).reshape(t * h, w, c)
    hist = np.zeros((c, 256), dtype=np.int64)
    # calcHist counts in float32, exact only up to 2**24: count in blocks below that.
    rows = max(1, (1 << 24) // max(w, 1))
    for start in range(0, flat.shape[0], rows):
        block = flat[start:start + rows]
        for ch in range(c):
            hist[ch] += cv2.calcHist([block], [ch], None, [256], [0, 256]).reshape(-1).astype(np.int64)
    return hist


def _quantiles_from_counts(counts: np.ndarray, qs: list[float]) -> np.ndarray:
    """np.quantile(..., method="linear") of the integers 0..255 given how often each occurs."""
    n = int(counts.sum())
    cum = np.cumsum(counts)
    pos = np.asarray(qs, dtype=np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    v_lo = np.searchsorted(cum, lo, side="right").astype(np.float64)
    v_hi = np.searchsorted(cum, hi, side="right").astype(np.float64)
    return v_lo + (pos - lo) * (v_hi - v_lo)


def hist_stats(hist: np.ndarray, n_frames: int) -> dict[str, np.ndarray]:
    """Image statistics on [0, 1] with shape (C,1,1) from a [C,256] histogram."""
    levels = np.arange(256, dtype=np.float64)
    c = hist.shape[0]
    out: dict[str, np.ndarray] = {k: np.zeros((c, 1, 1)) for k in ("min", "max", "mean", "std", *QUANTILES)}
    for ch in range(c):
        counts = hist[ch]
        n = counts.sum()
        nz = np.flatnonzero(counts)
        mean = float(counts @ levels) / n
        var = float(counts @ (levels - mean) ** 2) / n
        out["min"][ch] = nz[0] / 255.0
        out["max"][ch] = nz[-1] / 255.0
        out["mean"][ch] = mean / 255.0
        out["std"][ch] = np.sqrt(var) / 255.0
        for name, v in zip(QUANTILES, _quantiles_from_counts(counts, list(QUANTILES.values()))):
            out[name][ch] = v / 255.0
    out["count"] = np.array([int(n_frames)], dtype=np.int64)
    return {k: out[k] for k in STAT_KEYS}


def stats_to_json(stats: Mapping[str, np.ndarray]) -> dict:
    """One feature's numpy stats -> plain lists, as stats.json and the episodes metadata store them."""
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


def _linear_quantiles(sorted_vals: np.ndarray, qs: list[float]) -> np.ndarray:
    """np.quantile(method="linear") along axis 0 of values already sorted along axis 0."""
    n = sorted_vals.shape[0]
    out = np.empty((len(qs), sorted_vals.shape[1]))
    for i, q in enumerate(qs):
        pos = q * (n - 1)
        lo, hi = int(np.floor(pos)), int(np.ceil(pos))
        a = sorted_vals[lo].astype(np.float64)
        b = sorted_vals[hi].astype(np.float64)
        t = pos - lo
        out[i] = a + t * (b - a) if t < 0.5 else b - (b - a) * (1 - t)
    return out


class _NumericAccumulator:
    """Exact running statistics of [n, D] values: moments merged with Chan's formula, and
    every value kept sorted per column (a linear merge per add) so quantiles stay exact."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self.sorted: np.ndarray | None = None

    def add(self, x: np.ndarray) -> None:
        if x.dtype == np.bool_:
            x = x.astype(np.int64)
        if not x.shape[0]:
            return
        xf = x.astype(np.float64, copy=False)
        nb, mb = x.shape[0], xf.mean(axis=0)
        m2b = ((xf - mb) ** 2).sum(axis=0)
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mb, m2b
            self.min, self.max = x.min(axis=0), x.max(axis=0)
            self.sorted = np.sort(x, axis=0)
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n
        self.min = np.minimum(self.min, x.min(axis=0))
        self.max = np.maximum(self.max, x.max(axis=0))
        # timsort sees one long sorted run plus a short one: a linear merge, not a full sort
        self.sorted = np.sort(np.concatenate([self.sorted, x]), axis=0, kind="stable")

    def stats(self) -> dict[str, np.ndarray]:
        qs = _linear_quantiles(self.sorted, list(QUANTILES.values()))
        out = {
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": np.sqrt(np.maximum(self.m2 / self.n, 0.0)),
            "count": np.array([self.n], dtype=np.int64),
        }
        out.update({name: qs[i] for i, name in enumerate(QUANTILES)})
        return out


class StatsAccumulator:
    """Running dataset statistics: numeric values and image histograms, merged exactly."""

    def __init__(self) -> None:
        self._numeric: dict[str, _NumericAccumulator] = {}
        self._hist: dict[str, np.ndarray] = {}
        self._frames: dict[str, int] = {}
        self._depth: dict[str, Any] = {}

    def add_values(self, name: str, values: np.ndarray) -> None:
        x = np.asarray(values)
        self._numeric.setdefault(name, _NumericAccumulator()).add(x.reshape(x.shape[0], -1))

    def add_histogram(self, name: str, hist: np.ndarray, n_frames: int) -> None:
        h = np.asarray(hist, dtype=np.int64)
        if name in self._hist:
            self._hist[name] = self._hist[name] + h
        else:
            self._hist[name] = h.copy()
        self._frames[name] = self._frames.get(name, 0) + int(n_frames)

    def add_depth(self, name: str, stats: Any, n_frames: int) -> None:
        """A LeRobot depth video's raw-depth statistics (raygen.datasets.lerobot_depth.DepthStats)."""
        self._depth[name] = self._depth[name].merge(stats) if name in self._depth else stats
        self._frames[name] = self._frames.get(name, 0) + int(n_frames)

    def compute(self) -> dict[str, dict[str, np.ndarray]]:
        from raygen.datasets.lerobot_depth import DepthQuantizer

        out = {name: acc.stats() for name, acc in self._numeric.items()}
        for name, hist in self._hist.items():
            out[name] = hist_stats(hist, self._frames[name])
        for name, depth in self._depth.items():
            out[name] = depth.stats(self._frames[name], DepthQuantizer())
        return out
