"""Hub commits, files and bytes per N episodes for a shard size, measured against the local test Hub.

    .venv/bin/python tools/upload_figures.py --episodes 1000 --shard-size 50 --batch-shards 10

Writes N small synthetic episodes with the real writer while the real uploader runs beside it (batches
by shard count; the time trigger is left out, it only adds commits on slow runs), then prints what the
Hub received. Uses tests/hubserver.py, the local stand-in for the Hub.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from huggingface_hub import constants  # noqa: E402

from raygen.config import UploadConfig  # noqa: E402
from raygen.datasets import _layout as L  # noqa: E402
from raygen.datasets.hub import Uploader  # noqa: E402
from raygen.datasets.synthetic import synthetic_episode  # noqa: E402
from raygen.datasets.writer import DatasetWriter  # noqa: E402
from tests.hubserver import LocalHub  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--shard-size", type=int, default=50)
    ap.add_argument("--batch-shards", type=int, default=10)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args()
    constants.HF_HUB_DISABLE_XET = True
    token = "figures-token"
    with tempfile.TemporaryDirectory() as tmp, LocalHub(token=token, lfs_threshold=10_000) as hub:
        root = Path(tmp) / "ds"
        cfg = UploadConfig(repo="lab/figures", metadata_repo="lab/figures-meta", endpoint=hub.endpoint,
                           batch_shards=args.batch_shards, batch_interval_s=1e6)
        t0 = time.perf_counter()
        with DatasetWriter(root, shard_size=args.shard_size) as w:
            up = Uploader(root, cfg, commit_lock=w.committer.commit_lock, token=token).start()
            for i in range(args.episodes):
                w.add(synthetic_episode(i, frames=args.frames, height=args.size, width=args.size, flow=True))
                if (i + 1) % args.shard_size == 0:
                    up.notify()
        reports = up.finish()
        on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()
                      and not p.relative_to(root).as_posix().startswith((L.STAGING, L.UPLOADS, L.LOCK)))
        print(f"{args.episodes} episodes, shard size {args.shard_size}, batch_shards {args.batch_shards}, "
              f"{args.frames} frames at {args.size}x{args.size}, {time.perf_counter() - t0:.0f} s")
        print(f"dataset on disk: {on_disk / 1e6:.2f} MB in "
              f"{sum(1 for p in root.rglob('*') if p.is_file())} files")
        for repo in ("lab/figures", "lab/figures-meta"):
            commits = [c for c in hub.commits(repo) if c.title.startswith("raygen:")]
            files = hub.files(repo)
            rep = reports[f"hf://datasets/{repo}@main"]
            per = 1000 / args.episodes
            print(f"{repo}: {len(commits)} commits ({len(commits) * per:.1f} per 1000 episodes), "
                  f"{len(files)} files in the repo ({len(files) * per:.0f} per 1000 episodes), "
                  f"{sum(len(c.added) for c in commits)} file uploads, {rep.bytes / 1e6:.2f} MB sent, "
                  f"{sum(len(v) for v in files.values()) / 1e6:.2f} MB in the repo "
                  f"(sent/on disk {rep.bytes / on_disk:.3f})")


if __name__ == "__main__":
    main()
