"""`raygen bench ...`: speed figures as ratios against a baseline measured in the same run."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import av

from raygen.datasets._video import VideoSettings, encode_depth, encode_rgb
from raygen.datasets.episode import Episode
from raygen.datasets.synthetic import synthetic_episode
from raygen.datasets.writer import DatasetWriter

logger = logging.getLogger(__name__)

__all__ = ["WriterBench", "bench_pipeline", "bench_worker", "bench_writer", "format_worker_bench"]


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




@dataclass
class WorkerBenchRow:
    size: int
    episodes: int
    hosted_s: float
    inprocess_s: float
    physics_s: float
    render_s: float
    transfer_s: float
    renderer: str

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 / self.hosted_s


def bench_worker(*, sizes: tuple[int, ...] = (128, 256), episodes: int = 3, steps_per_segment: int = 30,
                 renderer: str = "auto", task: dict[str, Any] | None = None,
                 task_name: str = "pick_place") -> list[WorkerBenchRow]:
    """One hosted PyBullet worker per size: episodes/minute and where an episode's time goes, for
    ``task_name`` (pick_place, soft_pick_place or two_arms) with task parameters ``task``.

    Baseline in the same run: the same specs on the same backend in this process (no child, no transfer).
    """
    from raygen.actors.bullet.worker import BulletBackend
    from raygen.actors.host import HostConfig, WorkerHost
    from raygen.actors.spec import EpisodeSpec

    rows = []
    for size in sizes:
        opts = {"width": size, "height": size, "renderer": renderer, "task_name": task_name,
                "task": {"steps_per_segment": steps_per_segment, **(task or {})}}
        specs = [EpisodeSpec(f"bench-{task_name}", 0, i) for i in range(episodes + 1)]
        host = WorkerHost(HostConfig(backend="bullet", options=opts))
        try:
            host.run(specs[0])  # start-up and warm-up, untimed
            t0 = time.perf_counter()
            results = [host.run(s) for s in specs[1:]]
            hosted = (time.perf_counter() - t0) / episodes
            renderer_used = host.backend_info["capabilities"]["renderer"]
        finally:
            host.close()
        failed = [r.error for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"bench worker: {len(failed)} episodes failed: {failed[0]}")
        backend = BulletBackend({k: v for k, v in opts.items()})
        try:
            backend.run_episode(specs[0])
            t0 = time.perf_counter()
            for s in specs[1:]:
                backend.run_episode(s)
            inproc = (time.perf_counter() - t0) / episodes
        finally:
            backend.close()
        eps = [r.episode for r in results]
        rows.append(WorkerBenchRow(
            size=size, episodes=episodes, hosted_s=hosted, inprocess_s=inproc,
            physics_s=sum(e.metrics["timing.physics_s"] for e in eps) / episodes,
            render_s=sum(e.metrics["timing.render_s"] for e in eps) / episodes,
            transfer_s=sum(r.timing["write_s"] + r.timing["read_s"] for r in results) / episodes,
            renderer=renderer_used,
        ))
    return rows


def format_worker_bench(rows: list[WorkerBenchRow]) -> str:
    lines = ["one PyBullet worker, RGB + depth per camera per frame"]
    lines.append(f"{'size':>9} {'renderer':>8} {'ep/min':>7} {'s/ep':>6} {'physics':>8} {'render':>7} "
                 f"{'transfer':>8} {'other':>6} {'hosted/in-process throughput':>29}")
    for r in rows:
        other = r.hosted_s - r.physics_s - r.render_s - r.transfer_s
        lines.append(f"{r.size:>4}x{r.size:<4} {r.renderer:>8} {r.episodes_per_minute:7.1f} {r.hosted_s:6.2f} "
                     f"{r.physics_s:8.2f} {r.render_s:7.2f} {r.transfer_s:8.3f} {other:6.2f} "
                     f"{r.inprocess_s / r.hosted_s:29.2f}")
    return "\n".join(lines)


class PipelineRound(NamedTuple):
    """One bare generation pass and one full run, back to back (episodes/min; seconds to the first episode)."""

    bare: float
    bare_steady: float
    full: float
    full_steady: float
    bare_first_s: float
    full_first_s: float


def bench_pipeline(config_path: str, *, episodes: int = 16, size: int = 64, workers: int = 1,
                   overrides: list[str] | None = None, repeats: int = 1) -> str:
    """Full run vs. the same hosts generating without the downstream stages (same plan, same specs).

    Two ratios: over the whole run (start-up included) and in steady state, from the first episode out of
    the stream to the last (what a long run sees; start-up is a fixed cost of a few actor processes).
    ``repeats`` rounds of (bare, full) back to back; with more than one the medians are reported too, since
    a shared machine's speed drifts between minutes.
    """
    import statistics

    import ray

    from raygen.cluster.plan import discover, make_plan
    from raygen.config import load_config
    from raygen.datasets.reader import DatasetReader
    from raygen.pipelines.run import _build_stream, run
    from raygen.pipelines.sources import make_source

    overrides = [f"source.episodes={episodes}", f"source.width={size}", f"source.height={size}",
                 f"resources.cpu_workers={workers}", *(overrides or [])]
    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    rounds: list[PipelineRound] = []
    per_frame, bare_sim = float("nan"), float("nan")
    for _ in range(max(1, repeats)):
        tmp = Path(tempfile.mkdtemp(prefix="raygen-bench-pipeline-"))
        try:
            bare_cfg = load_config(config_path, overrides, output=str(tmp / "bare"))
            plan = make_plan(bare_cfg, discover())
            t0 = time.perf_counter()
            times, bare_host_s = [], []
            for row in _build_stream(bare_cfg, plan, make_source(bare_cfg).todo(), str(tmp), VideoSettings(),
                                     generate_only=True).iter_rows():
                times.append(time.perf_counter() - t0)
                bare_host_s.append(json.loads(row["host_timing"]).get("host_total_s", 0.0))
            progress: dict = {}
            full = run(load_config(config_path, overrides, output=str(tmp / "full")), verify=False,
                       progress=progress)
            done = full.accepted + full.rejected
            rounds.append(PipelineRound(
                bare=60.0 * len(times) / times[-1], bare_steady=60.0 * (len(times) - 1) / (times[-1] - times[0]),
                full=full.episodes_per_minute,
                full_steady=60.0 * (done - 1) / (progress["last_row_s"] - progress["first_row_s"]),
                bare_first_s=times[0], full_first_s=progress["first_row_s"]))
            bare_sim = sum(bare_host_s) / len(bare_host_s)
            if full.accepted:  # frames x cameras of an episode, from the dataset itself
                reader = DatasetReader(tmp / "full")
                per_frame = reader.info["total_frames"] / len(reader) * len(reader.cameras)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"{episodes} episodes at {size}x{size}, {plan.describe()}; simulator cores "
        f"{'pinned' if bare_cfg.resources.pin_cores else 'not pinned'} (resources.pin_cores)",
    ]
    for i, r in enumerate(rounds, 1):
        lines += [
            *([f"round {i}:"] if len(rounds) > 1 else []),
            f"whole run:    full pipeline {r.full:.1f} episodes/min, bare generation {r.bare:.1f} "
            f"(first episode out after {r.full_first_s:.1f} s vs {r.bare_first_s:.1f} s)",
            f"steady state: full pipeline {r.full_steady:.1f} episodes/min, bare generation {r.bare_steady:.1f}",
            f"pipeline/bare generation: {r.full / r.bare:.2f} (whole run), "
            f"{r.full_steady / r.bare_steady:.2f} (steady state)",
        ]
    if len(rounds) > 1:
        lines.append(f"median of {len(rounds)} rounds: pipeline/bare generation "
                     f"{statistics.median(r.full / r.bare for r in rounds):.2f} (whole run), "
                     f"{statistics.median(r.full_steady / r.bare_steady for r in rounds):.2f} (steady state)")
    lines += [
        f"flow stage: {1000.0 * full.stage_seconds.get('flow', 0.0) / per_frame:.3f} ms per frame per camera; "
        f"driver: {1000.0 * full.stage_seconds.get('driver', 0.0):.1f} ms per episode (shard + commit)",
        "seconds per episode by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in full.stage_seconds.items()),
        f"simulator seconds per episode: {full.stage_seconds.get('simulator', float('nan')):.2f} in the full run, "
        f"{bare_sim:.2f} bare (more = the simulator was slowed, not starved)",
    ]
    return "\n".join(lines)
