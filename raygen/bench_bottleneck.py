"""`raygen bench bottleneck`: a bottleneck run against a regular run of the same size, and what rendering only
the kept episodes saves.

Four runs of the same config on the same machine, back to back: the source demos (annotated with
``raygen annotate``), a regular run of N episodes, and two bottleneck runs of N episodes around the demos'
critical states, with and without ``source.render_only_kept``. Printed: episodes per minute (all attempts,
accepted + rejected, over the run's wall time), accepted episodes per minute, success rate, neighbourhood
coverage of the critical states, and renders saved. The ratio of the two bottleneck runs' accepted episodes
per minute is the speed-up of item 5; it grows as the success rate falls.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bench_bottleneck"]


@dataclass
class _Row:
    name: str
    attempts: int
    accepted: int
    seconds: float
    renders_saved: int
    success_rate: float
    coverage: float
    coverage_at_n: float
    cpu_seconds: float
    """CPU time of the simulators, stages and driver over every attempt (rejects too)."""

    @property
    def cpu_per_kept(self) -> float:
        return self.cpu_seconds / self.accepted if self.accepted else float("inf")

    def format(self) -> str:
        per_min = 60.0 / self.seconds if self.seconds else 0.0
        return (f"{self.name:<34} {self.attempts:>4} attempts, {self.accepted:>4} kept in {self.seconds:6.1f} s: "
                f"{self.attempts * per_min:6.1f} episodes/min, {self.accepted * per_min:6.1f} kept/min, "
                f"{self.cpu_per_kept:5.2f} CPU-s per kept episode; success {self.success_rate:5.1%}, "
                f"coverage {self.coverage:5.1%} ({self.coverage_at_n:5.1%} over the first n), renders saved "
                f"{self.renders_saved}")


def bench_bottleneck(config_path: str, *, episodes: int, demos: int, size: int, method: str,
                     overrides: list[str] | None = None, work: str | None = None,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    import ray

    from raygen.config import BottleneckConfig, load_config
    from raygen.critical.annotate import annotate_dataset
    from raygen.critical.compare import compare, neighbourhood_coverage, tcp_positions
    from raygen.critical.sampler import load_critical_states
    from raygen.pipelines.run import run

    base = [f"source.width={size}", f"source.height={size}", "output.video_codec=libx264", *(overrides or [])]
    tmp = tempfile.TemporaryDirectory(prefix="raygen-bench-bottleneck-") if work is None else None
    root = Path(work or tmp.name)

    def go(name: str, extra: list[str]) -> Any:
        cfg = load_config(config_path, [*base, *extra], output=str(root / name))
        log(f"{name}: {cfg.source.name}, {cfg.source.episodes} episodes ...")
        return run(cfg, show_progress=False, verify=False)

    try:
        go("demos", [f"source.episodes={demos}", "source.seed=1000"])
        annotate_dataset(root / "demos", root / "annotated", method=method, overwrite=True)
        centres = [s.tcp for s in load_critical_states(root / "annotated")]
        radius = BottleneckConfig.model_fields["radius_m"].default[0]  # as a run compares: the smallest r
        regular = go("regular", [f"source.episodes={episodes}"])
        bn = f"source.bottleneck={{dataset: {root / 'annotated'}}}"
        kept = go("bottleneck_render_only_kept", [f"source.episodes={episodes}", bn, "source.render_only_kept=true"])
        every = go("bottleneck_render_all", [f"source.episodes={episodes}", bn, "source.render_only_kept=false"])
        rows = []
        n = min(kept.accepted, regular.accepted)
        for name, summary in (("regular", regular), ("bottleneck, render only kept", kept),
                              ("bottleneck, render every attempt", every)):
            folder = {"regular": "regular", "bottleneck, render only kept": "bottleneck_render_only_kept",
                      "bottleneck, render every attempt": "bottleneck_render_all"}[name]
            cmp = compare(root / folder, centres, radius)["bottleneck"]
            at_n = neighbourhood_coverage(np.asarray(centres), tcp_positions(root / folder, n), radius)
            rows.append(_Row(name, summary.accepted + summary.rejected, summary.accepted, summary.seconds,
                             summary.renders_saved, cmp["success_rate"], cmp["coverage"], at_n, summary.cpu_seconds))
        src = compare(root / "annotated", centres, radius)["bottleneck"]
        log(f"{len(centres)} critical states in {demos} demos ({method}); source demos cover {src['coverage']:.1%} "
            f"of their {radius:g} m neighbourhoods (above the table); n = {n} committed episodes")
        for r in rows:
            log(r.format())
        k, e = rows[1], rows[2]
        speedup = (k.accepted / k.seconds) / (e.accepted / e.seconds) if k.seconds and e.seconds and e.accepted else 0.0
        cpu_ratio = e.cpu_per_kept / k.cpu_per_kept if k.accepted else 0.0
        log(f"render only kept: {speedup:.2f}x the kept episodes per minute of rendering every attempt (wall clock, "
            f"start-up included); {cpu_ratio:.2f}x fewer CPU-seconds per kept episode (success rate "
            f"{e.success_rate:.0%}; {k.renders_saved} renders saved)")
        return {"rows": [r.__dict__ for r in rows], "speedup": speedup, "cpu_ratio": cpu_ratio,
                "critical_states": len(centres), "source_coverage": src["coverage"]}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if tmp is not None:
            tmp.cleanup()
