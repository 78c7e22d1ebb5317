"""The `raygen` command line: verify, bench, demo (run, submit, upload arrive with their issues)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from raygen import __version__


def _cmd_verify(args: argparse.Namespace) -> int:
    from raygen.datasets.verify import verify_dataset

    report = verify_dataset(args.path, decode=args.decode)
    print(report.format())
    return 0 if report.ok else 1


def _cmd_bench_writer(args: argparse.Namespace) -> int:
    from raygen.bench import bench_writer
    from raygen.datasets._video import VideoSettings

    video = VideoSettings(codec=args.codec, preset=args.preset)
    result = bench_writer(
        episodes=args.episodes, frames=args.frames, size=args.size, video=video,
        encode_workers=args.encode_workers, repeats=args.repeats,
    )
    print(result.format())
    return 0


def _cmd_bench_worker(args: argparse.Namespace) -> int:
    from raygen.bench import bench_worker, format_worker_bench

    rows = bench_worker(sizes=tuple(args.sizes), episodes=args.episodes, steps_per_segment=args.steps_per_segment,
                        renderer=args.renderer)
    print(format_worker_bench(rows))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from raygen.datasets.synthetic import synthetic_episode
    from raygen.datasets.verify import verify_dataset
    from raygen.datasets.writer import DatasetWriter

    print(
        "NOTE: the simulation pipeline is not built yet (issues 3-4); this demo writes SYNTHETIC episodes "
        "through the real writer, committer and verifier."
    )
    out = Path(args.output)
    with DatasetWriter(out, shard_size=args.shard_size) as w:
        todo = [i for i in range(args.episodes) if synthetic_episode(i, frames=2).episode_key not in w.committed_keys]
        for i in todo:
            w.add(synthetic_episode(i, frames=args.frames, height=args.size, width=args.size, flow=True))
    print(f"wrote {len(todo)} new episodes ({w.committer.total_episodes} in total) to {out}")
    report = verify_dataset(out)
    print(report.format())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raygen", description="A Ray data factory for robot-learning datasets.")
    p.add_argument("--version", action="version", version=f"raygen {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="check a LeRobot v3.0 / raygen dataset and print a per-check report")
    v.add_argument("path", help="dataset root (the folder holding meta/info.json)")
    v.add_argument("--decode", action="store_true", help="also decode every RGB frame (depth is always decoded)")
    v.set_defaults(func=_cmd_verify)

    b = sub.add_parser("bench", help="speed figures as ratios against a baseline measured in the same run")
    bsub = b.add_subparsers(dest="bench", required=True)
    bw = bsub.add_parser("writer", help="dataset writer vs. a bare PyAV encode loop")
    bw.add_argument("--episodes", type=int, default=3, help="episodes per timed run")
    bw.add_argument("--frames", type=int, default=270, help="frames per episode")
    bw.add_argument("--size", type=int, default=256, help="image height and width")
    bw.add_argument("--codec", default="libsvtav1", help="RGB encoder (libsvtav1, libx264, ...)")
    bw.add_argument("--preset", default=None, help="encoder preset (default: the encoder's own)")
    bw.add_argument("--encode-workers", type=int, default=4, help="writer threads encoding one episode's streams")
    bw.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best is reported")
    bw.set_defaults(func=_cmd_bench_writer)

    bk = bsub.add_parser("worker", help="episodes per minute of one hosted PyBullet worker, and the time split")
    bk.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="square image sizes to measure")
    bk.add_argument("--episodes", type=int, default=3, help="timed episodes per size (after one warm-up)")
    bk.add_argument("--steps-per-segment", type=int, default=30, help="frames per phase (9 phases)")
    bk.add_argument("--renderer", default="auto", choices=["auto", "tiny", "egl"])
    bk.set_defaults(func=_cmd_bench_worker)

    d = sub.add_parser("demo", help="write a small synthetic dataset through the real writer and verify it")
    d.add_argument("--output", default="out/demo", help="dataset folder (resumed if it exists)")
    d.add_argument("--episodes", type=int, default=12)
    d.add_argument("--frames", type=int, default=90)
    d.add_argument("--size", type=int, default=128)
    d.add_argument("--shard-size", type=int, default=4)
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"raygen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
