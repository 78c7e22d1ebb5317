"""`raygen bench ...`: speed figures as ratios against a baseline measured in the same run."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av

from raygen.datasets._video import VideoSettings, encode_depth, encode_rgb
from raygen.datasets.episode import Episode
from raygen.datasets.synthetic import synthetic_episode
from raygen.datasets.writer import DatasetWriter

logger = logging.getLogger(__name__)

__all__ = ["WriterBench", "bench_writer"]


@dataclass
class WriterBench:
    episodes: int
    frames: int
    size: int
    codec: str
    writer_s_per_episode: float
    raw_s_per_episode: float

    @property
    def ratio(self) -> float:
        """writer throughput / raw codec throughput (1.0 = the writer costs nothing beyond encoding)."""
        return self.raw_s_per_episode / self.writer_s_per_episode

    def format(self) -> str:
        return "\n".join(
            [
                f"episode: {self.frames} frames, 2 cameras {self.size}x{self.size} RGB + uint16 depth, "
                f"codec {self.codec} + ffv1, {self.episodes} episodes",
                f"writer (stats + encode + write + commit): {self.writer_s_per_episode:.3f} s/episode",
                f"bare PyAV loop (same codecs, same frames): {self.raw_s_per_episode:.3f} s/episode",
                f"writer/raw codec throughput: {self.ratio:.2f}",
            ]
        )


def _bare_loop(episodes: list[Episode], video: VideoSettings) -> float:
    """Encode the same frames with the same settings, one stream after another, into memory."""
    t0 = time.perf_counter()
    for ep in episodes:
        for cam in ep.cameras.values():
            encode_rgb(cam.rgb, ep.fps, video)
            if cam.depth is not None:
                encode_depth(cam.depth, ep.fps)
    return time.perf_counter() - t0


def _writer(episodes: list[Episode], video: VideoSettings, root: Path, workers: int) -> float:
    t0 = time.perf_counter()
    with DatasetWriter(root, video=video, shard_size=len(episodes), encode_workers=workers) as w:
        for ep in episodes:
            w.add(ep)
    return time.perf_counter() - t0


def bench_writer(
    *,
    episodes: int = 3,
    frames: int = 270,
    size: int = 256,
    video: VideoSettings | None = None,
    encode_workers: int = 4,
    repeats: int = 3,
) -> WriterBench:
    """Time the dataset writer against a bare PyAV encode loop on the same synthetic episodes."""
    video = video or VideoSettings()
    av.logging.set_level(av.logging.ERROR)
    eps = [synthetic_episode(i, frames=frames, height=size, width=size) for i in range(episodes)]
    encode_rgb(eps[0].cameras["cam_high"].rgb[:4], eps[0].fps, video)  # load the codec once, untimed
    tmp = Path(tempfile.mkdtemp(prefix="raygen-bench-"))
    try:
        raw, wr = [], []
        for r in range(repeats):  # interleave so drift in machine load hits both alike
            raw.append(_bare_loop(eps, video))
            wr.append(_writer(eps, video, tmp / f"ds{r}", encode_workers))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return WriterBench(episodes, frames, size, video.codec, min(wr) / episodes, min(raw) / episodes)


