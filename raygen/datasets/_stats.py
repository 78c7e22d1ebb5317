"""Feature statistics in LeRobot's stats.json shape, merged across shards in bounded memory.

Every feature gets min, max, mean, std (population), count and the quantiles q01, q10, q50, q90, q99.

- Numeric features (state, action, indices, tracks), dataset-wide: count, min, max, mean and std are exact
  (mergeable moments, Chan's formula); quantiles come from one KLL sketch per dimension (Apache DataSketches,
  k = SKETCH_K), whose normalized rank error is at most RANK_ERROR (0.35%) with 99% confidence: the value
  reported as q50 is the value of some rank in [0.4965, 0.5035]. Memory and time per commit stay constant
  as the dataset grows (the sorted copy of every value kept before grew to 1 GB by 3,000 episodes), and the
  state (:meth:`StatsAccumulator.to_bytes`) is saved with each commit so reopening reads no data file.
- Per-episode statistics (the episodes metadata) stay exact: ``numeric_stats`` sorts one episode's values,
  quantiles by numpy's default "linear" definition.
- Images: per-channel 256-bin histograms of the uint8 pixels of every IMAGE_STATS_STRIDE-th frame. A
  histogram of integers is lossless, so means, stds and quantiles from summed histograms are exact too.
  Values are reported on [0, 1] with shape (C, 1, 1), and ``count`` is the number of frames, as LeRobot does.
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
SKETCH_K = 800
"""KLL sketch size per numeric dimension (~19 KB each once it holds more than a few thousand values)."""
RANK_ERROR = 0.0035
"""datasketches.kll_doubles_sketch.get_normalized_rank_error(SKETCH_K, False) = 0.00345, rounded up: the
largest error in the rank of a reported quantile, with 99% confidence."""


def numeric_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Exact statistics of one episode's [n] or [n, D] values along the first axis (each stat has shape [D],
    [1] for 1-D); quantiles by numpy's default "linear" definition."""
    x = np.asarray(values)
    x = x.reshape(x.shape[0], -1)
    if x.dtype == np.bool_:
        x = x.astype(np.int64)
    xf = x.astype(np.float64)
    out = {"min": x.min(axis=0), "max": x.max(axis=0), "mean": xf.mean(axis=0), "std": xf.std(axis=0),
           "count": np.array([x.shape[0]], dtype=np.int64)}
    qs = np.quantile(xf, list(QUANTILES.values()), axis=0)
    out.update({name: qs[i] for i, name in enumerate(QUANTILES)})
    return {k: out[k] for k in STAT_KEYS}


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


class _SketchAccumulator:
    """Dataset-wide statistics of [n, D] values in bounded memory: exact moments, minimum and maximum, and a
    KLL quantile sketch per dimension."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self.sketches: list[Any] = []

    def add(self, x: np.ndarray) -> None:
        from datasketches import kll_doubles_sketch

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
            self.sketches = [kll_doubles_sketch(SKETCH_K) for _ in range(x.shape[1])]
        else:
            n = self.n + nb
            delta = mb - self.mean
            self.mean = self.mean + delta * (nb / n)
            self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
            self.n = n
            self.min = np.minimum(self.min, x.min(axis=0))
            self.max = np.maximum(self.max, x.max(axis=0))
        for d, sketch in enumerate(self.sketches):  # the binding wants a writable, contiguous float64 array
            sketch.update(np.require(xf[:, d], dtype=np.float64, requirements=["C", "W"]))

    def stats(self) -> dict[str, np.ndarray]:
        qs = np.array([[s.get_quantile(q) for s in self.sketches] for q in QUANTILES.values()])
        out = {
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": np.sqrt(np.maximum(self.m2 / self.n, 0.0)),
            "count": np.array([self.n], dtype=np.int64),
        }
        out.update({name: qs[i] for i, name in enumerate(QUANTILES)})
        return out

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        blobs = [s.serialize() for s in self.sketches]
        return {f"{prefix}/n": np.array([self.n]), f"{prefix}/mean": self.mean, f"{prefix}/m2": self.m2,
                f"{prefix}/min": self.min, f"{prefix}/max": self.max,
                f"{prefix}/sketch_sizes": np.array([len(b) for b in blobs], dtype=np.int64),
                f"{prefix}/sketches": np.frombuffer(b"".join(blobs), dtype=np.uint8)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> _SketchAccumulator:
        from datasketches import kll_doubles_sketch

        acc = cls()
        acc.n = int(arrays[f"{prefix}/n"][0])
        acc.mean, acc.m2 = arrays[f"{prefix}/mean"], arrays[f"{prefix}/m2"]
        acc.min, acc.max = arrays[f"{prefix}/min"], arrays[f"{prefix}/max"]
        raw, offset = arrays[f"{prefix}/sketches"].tobytes(), 0
        for size in arrays[f"{prefix}/sketch_sizes"].tolist():
            acc.sketches.append(kll_doubles_sketch.deserialize(raw[offset:offset + size]))
            offset += size
        return acc


class StatsAccumulator:
    """Running dataset statistics: numeric values (sketched quantiles), image histograms and LeRobot depth,
    in memory that does not grow with the dataset; saved and restored whole with ``to_bytes``/``from_bytes``."""

    def __init__(self) -> None:
        self._numeric: dict[str, _SketchAccumulator] = {}
        self._hist: dict[str, np.ndarray] = {}
        self._frames: dict[str, int] = {}
        self._depth: dict[str, Any] = {}

    def add_values(self, name: str, values: np.ndarray) -> None:
        x = np.asarray(values)
        self._numeric.setdefault(name, _SketchAccumulator()).add(x.reshape(x.shape[0], -1))

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

    def to_bytes(self) -> bytes:
        """The whole state as one .npz (no pickles), restored exactly by ``from_bytes``."""
        import io
        import json

        arrays: dict[str, np.ndarray] = {}
        for i, acc in enumerate(self._numeric.values()):
            arrays.update(acc.to_arrays(f"n{i}"))
        for i, hist in enumerate(self._hist.values()):
            arrays[f"h{i}"] = hist
        header = {"numeric": list(self._numeric), "hist": list(self._hist), "frames": self._frames,
                  "depth": {name: d.to_json() for name, d in self._depth.items()}, "sketch_k": SKETCH_K}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> StatsAccumulator:
        import io
        import json

        from raygen.datasets.lerobot_depth import DepthStats

        acc = cls()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(arrays["header"].tobytes())
        acc._numeric = {name: _SketchAccumulator.from_arrays(arrays, f"n{i}")
                        for i, name in enumerate(header["numeric"])}
        acc._hist = {name: arrays[f"h{i}"] for i, name in enumerate(header["hist"])}
        acc._frames = {k: int(v) for k, v in header["frames"].items()}
        acc._depth = {name: DepthStats.from_json(d) for name, d in header["depth"].items()}
        return acc
