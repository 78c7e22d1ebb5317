"""`raygen bench droid`: seconds per DROID episode on the CPU path, metadata mode and full mode, with the split.

Each episode goes through what a run does to it, in one process: the ``droid`` backend (read trajectory.h5
and the metadata, resolve intrinsics, decode and match the MP4s, stereo depth), the quality and flow stages,
the encode stage, and the writer (shard + commit). The reference is seed 004's GPU pipelines: ~30 s per
episode for metadata and 2-3 minutes with depth.

Without ``--tree`` it uses a synthetic DROID episode as DROID records one (tests/droid_synth.py: 300 steps,
three cameras with 1280x720 left MP4s and 2560x720 side-by-side MP4s; rendered at 320x180 and upscaled,
which costs the decoder, the matcher and the encoder what 1280x720 frames cost), made once and cached.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from raygen.actors.droid.raw import DroidFilter, list_episodes
from raygen.actors.spec import EpisodeSpec

__all__ = ["DroidBench", "bench_droid"]

SPLIT = ("read", "calibration", "decode", "stereo", "stages", "encode", "write")
TARGETS = {"metadata": 1.0, "full": 60.0}


@dataclass
class DroidBench:
    mode: str
    size: str
    episodes: int
    seconds: list[float] = field(default_factory=list)
    split: dict[str, float] = field(default_factory=dict)

    @property
    def per_episode(self) -> float:
        return sum(self.seconds) / len(self.seconds)

    def format(self) -> str:
        target = TARGETS[self.mode]
        verdict = "within" if self.per_episode <= target else "OVER"
        parts = ", ".join(f"{k} {v / self.episodes:.2f}" for k, v in self.split.items() if k in SPLIT)
        return (f"{self.mode:8s} ({self.size}): {self.per_episode:.2f} s per episode ({verdict} the {target:g} s "
                f"target)\n           split (s per episode): {parts}")


def _synthetic_tree(cache: Path, steps: int) -> Path:
    """A cached synthetic DROID tree of one episode with ``steps`` steps at DROID's sizes."""
    root = cache / f"droid-bench-{steps}"
    if (root / ".complete").exists():
        return root
    repo = Path(__file__).resolve().parents[1]
    if not (repo / "tests" / "droid_synth.py").exists():
        raise FileNotFoundError("raygen bench droid: without --tree it needs the synthetic DROID generator "
                                f"(tests/droid_synth.py of a raygen checkout), not found under {repo}; give --tree "
                                "PATH to a DROID raw tree")
    sys.path.insert(0, str(repo))
    synth = importlib.import_module("tests.droid_synth")
    shutil.rmtree(root, ignore_errors=True)
    synth.make_episode(root, 0, steps=steps, render_size=(320, 180), video_size=(1280, 720), truth=False, svo=False)
    (root / ".complete").touch()
    return root


def bench_droid(tree: str | None = None, *, episodes: int = 1, steps: int = 300,
                full_size: tuple[int, int] = (640, 360), cache: Path | None = None,
                codec: str = "libsvtav1") -> list[DroidBench]:
    """Time ``episodes`` episodes of the tree in metadata mode and in full mode (stereo depth at ``full_size``)."""
    from raygen.actors.droid.backend import DroidBackend
    from raygen.datasets._video import VideoSettings
    from raygen.datasets.encode import encode_episode
    from raygen.datasets.writer import DatasetWriter
    from raygen.pipelines.quality import QualitySettings, assess
    from raygen.pipelines.stages import FlowStage

    cache = cache or Path(tempfile.gettempdir()) / "raygen-bench-cache"
    root = tree or str(_synthetic_tree(cache, steps))
    refs, _ = list_episodes(root, DroidFilter(outcome="all", limit=episodes))
    results = []
    for mode, size in (("metadata", None), ("full", full_size)):
        backend = DroidBackend({"root": root, "width": size[0] if size else None,
                                "height": size[1] if size else None, "droid": {"mode": mode, "depth": True}})
        out = Path(tempfile.mkdtemp(prefix="raygen-bench-droid-"))
        video = VideoSettings(codec=codec)
        quality, flow = QualitySettings(min_score=0.0, require_success=False), FlowStage()
        bench = DroidBench(mode, "native 1280x720 calibration, no frames" if size is None else
                           f"{size[0]}x{size[1]}, stereo depth", len(refs))
        try:
            with DatasetWriter(out / "ds", video=video, shard_size=len(refs), encode_workers=4) as writer:
                for i, ref in enumerate(refs):
                    spec = EpisodeSpec("droid", 0, i, params={"droid": ref.to_params()}, key=ref.uuid)
                    t0 = time.perf_counter()
                    ep = backend.run_episode(spec)
                    t1 = time.perf_counter()
                    ep.metrics.update(assess(ep, quality).metrics)
                    ep = flow.flow(ep)
                    t2 = time.perf_counter()
                    enc = encode_episode(ep, video, workers=4)
                    t3 = time.perf_counter()
                    writer.add_encoded(enc)
                    if i == len(refs) - 1:
                        writer.flush()
                    t4 = time.perf_counter()
                    bench.seconds.append(t4 - t0)
                    for k in ("read", "calibration", "decode", "stereo"):
                        bench.split[k] = bench.split.get(k, 0.0) + float(ep.metrics.get(f"timing.{k}_s", 0.0))
                    other = (t1 - t0) - sum(float(ep.metrics.get(f"timing.{k}_s", 0.0))
                                            for k in ("read", "calibration", "decode", "stereo"))
                    bench.split["read"] += max(0.0, other)  # metadata, gripper, episode assembly
                    for k, v in (("stages", t2 - t1), ("encode", t3 - t2), ("write", t4 - t3)):
                        bench.split[k] = bench.split.get(k, 0.0) + v
        finally:
            shutil.rmtree(out, ignore_errors=True)
        results.append(bench)
    return results
