"""Generation throughput without a feed, with a feed to a healthy trainer, and with a stalled trainer; and the
commit-to-delivery latency (median, p95). The trainer is tests/feedserver.py (a real local HTTP server).

    .venv/bin/python tools/feed_figures.py [--episodes 12] [--size 64] [--repeats 2]

Run from the repository. Each round runs the same config three times into fresh folders, back to back.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import ray

    from raygen.config import load_config
    from raygen.pipelines.run import run
    from tests.feedserver import Trainer

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    base = [f"source.episodes={args.episodes}", f"source.width={args.size}", f"source.height={args.size}",
            "source.task_params={steps_per_segment: 20}", "output.shard_size=2"]
    ray.init(log_to_driver=False)
    rates: dict[str, list[float]] = {"no feed": [], "feed": [], "stalled trainer": []}
    lags: list[tuple[float, float]] = []
    with Trainer() as trainer:
        for _ in range(args.repeats):
            for mode in rates:
                trainer.stall_s = 600.0 if mode == "stalled trainer" else 0.0
                feeds = [] if mode == "no feed" else [
                    f"feeds=[{{name: t, url: '{trainer.url}', batch_size: 2, max_wait_s: 1, timeout_s: 2, "
                    "attempts: 2, drain_timeout_s: 0}]"]
                out = tempfile.mkdtemp(prefix="raygen-feed-figures-")
                s = run(load_config(REPO / "configs" / "pick_place_local.yaml", [*base, *feeds], output=out),
                        verify=False, show_progress=False)
                steady = s.episodes_per_minute
                rates[mode].append(steady)
                if mode == "feed" and s.feeds["t"]["lag_median_s"] is not None:
                    lags.append((s.feeds["t"]["lag_median_s"], s.feeds["t"]["lag_p95_s"]))
                print(f"{mode:16s}: {steady:.1f} episodes/min" + (
                    f"; feed sent {s.feeds['t']['sent']}, pending {s.feeds['t']['pending']}" if s.feeds else ""),
                    flush=True)
    ray.shutdown()
    base_rate = statistics.median(rates["no feed"])
    for mode, values in rates.items():
        print(f"median {mode:16s}: {statistics.median(values):.1f} episodes/min "
              f"({statistics.median(values) / base_rate:.2f} of no feed)")
    if lags:
        print(f"commit-to-delivery: median {statistics.median(m for m, _ in lags):.2f} s, "
              f"p95 {statistics.median(p for _, p in lags):.2f} s (medians over rounds)")


if __name__ == "__main__":
    main()
