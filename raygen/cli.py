"""The `raygen` command line: run, verify, view, report, upload, submit, export, import, annotate, droid, bench,
demo."""

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


def _cmd_run(args: argparse.Namespace) -> int:
    from raygen.config import load_config
    from raygen.pipelines.run import run

    if args.from_env:
        from raygen.cluster.submit import CONFIG_ENV, config_from_env

        if args.config or args.set or args.output:
            print("raygen run --from-env: the config comes from the job; give no CONFIG, --set or --output",
                  file=sys.stderr)
            return 2
        config = config_from_env()
        if config is None:
            print(f"raygen run --from-env: ${CONFIG_ENV} is not set (it is set by `raygen submit`)", file=sys.stderr)
            return 2
    elif not args.config:
        print("raygen run: give a CONFIG (e.g. configs/pick_place_local.yaml)", file=sys.stderr)
        return 2
    else:
        config = load_config(args.config, args.set, args.output)
    summary = run(config, verbose=args.verbose or args.run_verbose)
    print(summary.format())
    return 0 if summary.verify_ok in (True, None) and not summary.stopped and not summary.upload_error else 1


def _cmd_submit(args: argparse.Namespace) -> int:
    from raygen.cluster.submit import submit

    job_id, status = submit(args.config, address=args.address, overrides=args.set, output=args.output,
                            working_dir=args.working_dir, pass_hf_token=args.pass_hf_token,
                            ray_token_file=args.ray_token_file, wait=args.wait, timeout_s=args.timeout)
    print(f"{job_id}: {status}")
    return 0 if status in ("SUCCEEDED", "PENDING", "RUNNING") else 1


def _cmd_upload(args: argparse.Namespace) -> int:
    from raygen.config import ConfigError, UploadConfig
    from raygen.datasets.hub import Uploader, UploadError

    try:
        cfg = UploadConfig(repo=args.repo, metadata_repo=args.metadata_repo, private=not args.public,
                           revision=args.revision, batch_shards=args.batch_shards, skip_hub_check=args.skip_hub_check,
                           env_file=args.env_file, endpoint=args.endpoint, card=not args.no_card)
    except ValueError as exc:
        raise ConfigError(f"raygen upload: {exc}") from None
    if not (Path(args.path) / "meta" / "raygen" / "ledger.jsonl").exists():
        print(f"raygen upload: {args.path} is not a raygen dataset (no meta/raygen/ledger.jsonl)", file=sys.stderr)
        return 2
    uploader = Uploader(args.path, cfg)
    try:
        reports = uploader.finish()
    except UploadError as exc:
        print(f"raygen upload: {exc}", file=sys.stderr)
        return 1
    for rep in reports.values():
        print(f"{rep.target}: {rep.commits} commits, {rep.files} files, {rep.bytes / 1e6:.1f} MB sent, "
              f"{rep.reconciled_shards} shards found already there, {rep.pending_shards} pending"
              + (" (metadata only)" if rep.metadata_only else ""))
    return 0


def _cmd_droid_calibrate(args: argparse.Namespace) -> int:
    from raygen.actors.droid.raw import DroidFilter, DroidTreeError
    from raygen.actors.zed.calibrate import calibrate

    try:
        report = calibrate(args.root, args.out, DroidFilter(outcome=args.outcome, limit=args.limit,
                                                            labs=tuple(args.labs) if args.labs else None))
    except DroidTreeError as exc:
        print(f"raygen droid calibrate: {exc}", file=sys.stderr)
        return 2
    print(report.format())
    print(f"calibration cache: {args.out} (use it with source.droid.calibration_cache)")
    return 1 if report.failed else 0


def _cmd_view(args: argparse.Namespace) -> int:
    from raygen.viz.view import view_episode

    rec = view_episode(args.path, args.episode, save=args.save)
    print(f"episode {rec} " + (f"saved to {args.save} (open it with: rerun {args.save})" if args.save
                               else "sent to the rerun viewer"))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from raygen.viz.report import write_report

    print(f"report: {write_report(args.path, args.out)}")
    return 0


def _cmd_bench_worker(args: argparse.Namespace) -> int:
    from raygen.bench import bench_worker, format_worker_bench

    rows = bench_worker(sizes=tuple(args.sizes), episodes=args.episodes, steps_per_segment=args.steps_per_segment,
                        renderer=args.renderer, task=_task_overrides(args.set), task_name=args.task)
    print(format_worker_bench(rows))
    return 0


def _task_overrides(items: list[str]) -> dict:
    """--set scene.lighting.enabled=true ... -> nested task parameters (values read as YAML)."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: {item!r} is not KEY=VALUE (e.g. scene.lighting.enabled=true)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from raygen.bench import bench_pipeline

    print(bench_pipeline(args.config, episodes=args.episodes, size=args.size, workers=args.workers,
                         overrides=args.set, repeats=args.repeats))
    return 0


def _cmd_bench_droid(args: argparse.Namespace) -> int:
    from raygen.bench_droid import bench_droid

    results = bench_droid(args.tree, episodes=args.episodes, steps=args.steps, full_size=tuple(args.full_size),
                          codec=args.codec)
    where = args.tree or f"a synthetic DROID episode ({args.steps} steps, 3 cameras, 1280x720 MP4s)"
    print(f"DROID on the CPU path, {results[0].episodes} episode(s) of {where}; reference: seed 004's GPU "
          "pipelines, ~30 s (metadata) and 2-3 min (with depth) per episode")
    for r in results:
        print(r.format())
    return 0


def _cmd_bench_scale(args: argparse.Namespace) -> int:
    from raygen.bench_scale import bench_scale, verdict

    print(f"committing synthetic shards of {args.shard_size} episodes x {args.frames} frames (~100 numeric "
          f"dimensions a frame) up to {args.episodes:,d} episodes", flush=True)
    points = bench_scale(args.episodes, tuple(args.milestones), shard_size=args.shard_size, frames=args.frames,
                         root=args.dir, keep=args.keep, log=lambda line: print(line, flush=True))
    for line in verdict(points):
        print(line)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from raygen.datasets.verify import verify_dataset
    from raygen.datasets.writer import DatasetWriter

    out = Path(args.output)
    print("NOTE: writer-only demo: PyBullet WorkerHosts on threads write through the real writer, committer "
          "and verifier, without Ray Data or the quality/flow/diversity stages (the main job is `raygen run`)."
          if args.source == "bullet" else
          "NOTE: --source synthetic writes SYNTHETIC episodes (no simulator) through the real writer.")
    with DatasetWriter(out, shard_size=args.shard_size) as w:
        written, failed = (_demo_bullet if args.source == "bullet" else _demo_synthetic)(args, w)
    print(f"wrote {written} new episodes ({w.committer.total_episodes} in total) to {out}"
          + (f"; {failed} failed" if failed else ""))
    report = verify_dataset(out)
    print(report.format())
    return 0 if report.ok and not failed else 1


def _demo_synthetic(args: argparse.Namespace, w) -> tuple[int, int]:
    from raygen.datasets.synthetic import synthetic_episode, synthetic_key

    todo = [i for i in range(args.episodes) if synthetic_key(i) not in w.committed_keys]
    for i in todo:
        w.add(synthetic_episode(i, frames=args.frames, height=args.size, width=args.size, flow=True))
    return len(todo), 0


def _demo_bullet(args: argparse.Namespace, w) -> tuple[int, int]:
    from concurrent.futures import ThreadPoolExecutor

    from raygen.actors.host import HostConfig, WorkerHost
    from raygen.actors.spec import EpisodeSpec

    specs = [EpisodeSpec("bullet-pick_place", args.seed, i) for i in range(args.episodes)]
    todo = [s for s in specs if s.episode_key not in w.committed_keys]
    config = HostConfig(backend="bullet", options={"width": args.size, "height": args.size})
    hosts = [WorkerHost(config) for _ in range(max(1, min(args.workers, len(todo))))]
    written = failed = 0
    try:
        with ThreadPoolExecutor(len(hosts)) as pool:
            futures = [pool.submit(hosts[i % len(hosts)].run, s) for i, s in enumerate(todo)]
            for fut in futures:  # commits stay on this thread, in spec order
                res = fut.result()
                if res.ok:
                    w.add(res.episode)
                    written += 1
                else:
                    failed += 1
                    print(f"episode {res.episode_key} failed after {res.attempts} attempts: {res.error}")
    finally:
        for h in hosts:
            h.close()
    return written, failed


def _size(text: str | None) -> tuple[int, int] | None:
    """--size HxW (or one number for a square) -> (height, width)."""
    if not text:
        return None
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise ValueError(f"--size: {text!r} is not HEIGHTxWIDTH (e.g. 84x84) or one number") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"--size: {text!r} is not HEIGHTxWIDTH with positive numbers")
    return parts[0], parts[1]


def _cmd_export(args: argparse.Namespace) -> int:
    common = {"episodes": args.episodes, "size": _size(args.size),
              "compression": None if args.compression == "none" else args.compression, "workers": args.workers}
    if args.images is not None:
        common["images"] = args.images
    if args.compression_level is not None:
        common["compression_level"] = args.compression_level
    if args.format == "robomimic":
        from raygen.hdf5.robomimic import export_robomimic

        result = export_robomimic(args.path, args.output, next_obs=args.next_obs, valid_fraction=args.valid_fraction,
                                  overwrite=args.overwrite, **common)
    else:
        from raygen.hdf5.vpl import export_vpl

        result = export_vpl(args.path, args.output, states_only=args.states_only,
                            point_cloud_only=args.point_cloud_only, point_cloud_stride=args.point_cloud_stride,
                            point_cloud_max_points=args.point_cloud_max_points, overwrite=args.overwrite, **common)
    print(_summary_line(f"exported {args.path} as {args.format} to {args.output}", result))
    return 0


def _summary_line(head: str, result: dict) -> str:
    """``head: key value, ...`` of a summary dict; a list shows as its length, a dict not at all."""
    shown = {k: len(v) if isinstance(v, list) else v for k, v in result.items() if not isinstance(v, dict)}
    return head + (": " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in shown.items()) if shown else "")


def _cmd_import_hdf5(args: argparse.Namespace) -> int:
    from raygen.hdf5.importer import import_hdf5

    kw = {k: v for k, v in {"fps": args.fps, "task": args.task, "video_codec": args.video_codec,
                            "shard_size": args.shard_size}.items() if v is not None}
    result = import_hdf5(args.file, args.output, **kw)
    print(_summary_line(f"imported {args.file} into {args.output}", result))
    for err in result.get("errors", []):
        print(f"  not imported: {err}", file=sys.stderr)
    return 1 if result.get("errors") else 0


def _cmd_annotate(args: argparse.Namespace) -> int:
    import json

    from raygen.critical.annotate import annotate_dataset

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param: {item!r} is not NAME=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    result = annotate_dataset(args.path, args.output, method=args.method, params=params or None,
                              overwrite=args.overwrite)
    print(_summary_line(f"annotated {args.path} ({args.method}) into {args.output}", result))
    return 0


def _cmd_bench_bottleneck(args: argparse.Namespace) -> int:
    from raygen.bench_bottleneck import bench_bottleneck

    bench_bottleneck(args.config, episodes=args.episodes, demos=args.demos, size=args.size, method=args.method,
                     overrides=args.set, work=args.dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raygen", description="A Ray data factory for robot-learning datasets.")
    p.add_argument("--version", action="version", version=f"raygen {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level; `run` also shows Ray Data's "
                   "per-operator progress tables")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a config: simulate, filter, add flow, encode, commit (resumes)")
    r.add_argument("config", nargs="?", help="run config (YAML), e.g. configs/pick_place_local.yaml")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set stages.quality.min_score=0.8 (repeatable)")
    r.add_argument("--output", default=None, help="dataset folder (overrides output.path)")
    r.add_argument("-v", "--verbose", dest="run_verbose", action="store_true",
                   help="also Ray Data's per-operator progress tables and execution logs, and DEBUG logging")
    r.add_argument("--from-env", action="store_true", help="take the resolved config from $RAYGEN_CONFIG_YAML "
                   "(set by `raygen submit` in the job's runtime_env)")
    r.set_defaults(func=_cmd_run)

    sb = sub.add_parser("submit", help="submit a run as a Ray job (config checked here; no secrets shipped)")
    sb.add_argument("config", help="run config (YAML)")
    sb.add_argument("--address", required=True, help="the cluster's dashboard URL, e.g. http://127.0.0.1:8265")
    sb.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    sb.add_argument("--output", default=None, help="dataset folder on the cluster (overrides output.path)")
    sb.add_argument("--working-dir", default=".", help="code shipped with the job (secrets always excluded)")
    sb.add_argument("--pass-hf-token", action="store_true",
                    help="give the job HF_TOKEN (from here: HF_TOKEN, upload.env_file or the stored login)")
    sb.add_argument("--ray-token-file", default=None,
                    help="Ray auth token file (default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)")
    sb.add_argument("--wait", action="store_true", help="follow the job's logs until it ends")
    sb.add_argument("--timeout", type=float, default=None, help="with --wait: stop the job after this many s")
    sb.set_defaults(func=_cmd_submit)

    v = sub.add_parser("verify", help="check a LeRobot v3.0 / raygen dataset and print a per-check report")
    v.add_argument("path", help="dataset root (the folder holding meta/info.json)")
    v.add_argument("--decode", action="store_true", help="also decode every RGB frame (depth is always decoded)")
    v.set_defaults(func=_cmd_verify)

    vw = sub.add_parser("view", help="look at one episode in rerun: frames with their 2D tracks, depth, 3D tracks, "
                        "gripper and camera poses over time")
    vw.add_argument("path", help="dataset root")
    vw.add_argument("--episode", default="0", help="episode index or key (default 0)")
    vw.add_argument("--save", default=None, metavar="FILE.rrd",
                    help="write a rerun recording instead of opening the viewer (machines without a display)")
    vw.set_defaults(func=_cmd_view)

    rp = sub.add_parser("report", help="one HTML page with plots: coverage, viewpoints, quality, rejects, stage "
                        "seconds, cost, diversity recommendations")
    rp.add_argument("path", help="dataset root")
    rp.add_argument("--out", default=None, help="the page to write (default: DATASET/report.html)")
    rp.set_defaults(func=_cmd_report)

    u = sub.add_parser("upload", help="upload (or finish uploading) a dataset in batches, exactly once")
    u.add_argument("path", help="dataset root")
    u.add_argument("--repo", default=None, help="everything: 'org/name', 'hf://datasets/org/name', a folder or a URL")
    u.add_argument("--metadata-repo", default=None, help="data, flow and meta only (no videos, no depth)")
    u.add_argument("--public", action="store_true", help="create missing Hub repos public (default: private)")
    u.add_argument("--revision", default="main", help="Hub branch to commit to")
    u.add_argument("--batch-shards", type=int, default=10, help="most shards in one commit")
    u.add_argument("--skip-hub-check", action="store_true", help="trust the local upload ledger")
    u.add_argument("--env-file", default=None, help=".env file holding HF_TOKEN")
    u.add_argument("--endpoint", default=None, help="Hub endpoint URL (default: huggingface_hub's)")
    u.add_argument("--no-card", action="store_true", help="no dataset card, no v3.0 tag")
    u.set_defaults(func=_cmd_upload)

    ex = sub.add_parser("export", help="write a dataset as HDF5: robomimic / Isaac Lab Mimic, or GenSim2's VPL layout")
    ex.add_argument("path", help="dataset root")
    ex.add_argument("--format", required=True, choices=["robomimic", "vpl"])
    ex.add_argument("--output", required=True, help="robomimic: the .hdf5 file; vpl: a folder")
    ex.add_argument("--episodes", default=None, help="which episodes: 0-9,15,20- or @keys.txt (default all)")
    ex.add_argument("--images", choices=["none", "rgb", "rgbd"], default=None,
                    help="camera frames to include (default: robomimic none, vpl rgb)")
    ex.add_argument("--size", default=None, help="resize frames to HEIGHTxWIDTH (intrinsics scaled to match)")
    ex.add_argument("--compression", choices=["gzip", "lzf", "none"], default="gzip")
    ex.add_argument("--compression-level", type=int, default=None, help="gzip level (robomimic 4, vpl 9)")
    ex.add_argument("--workers", type=int, default=1, help="parallel writers on Ray (one file each)")
    ex.add_argument("--next-obs", action="store_true", help="robomimic: also next_obs/ (obs shifted by one)")
    ex.add_argument("--valid-fraction", type=float, default=0.0, help="robomimic: share of demos in mask/valid")
    ex.add_argument("--states-only", action="store_true", help="vpl: no images and no point clouds")
    ex.add_argument("--point-cloud-only", action="store_true", help="vpl: point clouds but no images")
    ex.add_argument("--point-cloud-stride", type=int, default=1, help="vpl: a point cloud every N steps")
    ex.add_argument("--point-cloud-max-points", type=int, default=None, help="vpl: at most this many points each")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing output (file or folder)")
    ex.set_defaults(func=_cmd_export)

    im = sub.add_parser("import", help="bring episodes from elsewhere into a raygen LeRobot v3.0 dataset")
    imsub = im.add_subparsers(dest="import_format", required=True)
    ih = imsub.add_parser("hdf5", help="robomimic / Isaac Lab Mimic / MimicGen HDF5 demos")
    ih.add_argument("file", help="the .hdf5 file")
    ih.add_argument("--output", required=True, help="dataset folder (created; an existing one is appended to)")
    ih.add_argument("--fps", type=float, default=None, help="frame rate when the file does not say")
    ih.add_argument("--task", default=None, help="task text when the file does not say")
    ih.add_argument("--video-codec", default=None, help="RGB encoder for the imported images")
    ih.add_argument("--shard-size", type=int, default=None, help="episodes per committed shard")
    ih.set_defaults(func=_cmd_import_hdf5)

    an = sub.add_parser("annotate", help="mark critical states (augment_states) in a copy of a dataset (seed 002)")
    an.add_argument("path", help="dataset root (left untouched)")
    an.add_argument("--method", required=True, choices=["reward_threshold", "action_variance", "gripper_changes",
                                                        "pose_changes", "subtask_signals", "combined"])
    an.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a method parameter (JSON value), e.g. --param margin=3 (repeatable)")
    an.add_argument("--output", required=True, help="the annotated dataset (videos hard-linked)")
    an.add_argument("--overwrite", action="store_true", help="replace an existing output")
    an.set_defaults(func=_cmd_annotate)

    dr = sub.add_parser("droid", help="DROID raw recordings: tools around `raygen run` with backend droid or zed")
    drsub = dr.add_subparsers(dest="droid", required=True)
    dc = drsub.add_parser("calibrate", help="read every SVO's rectified calibration once (ZED SDK, GPU) into a "
                          "cache that CPU runs take intrinsics from (resumable)")
    dc.add_argument("root", help="DROID raw tree (a folder or an fsspec URL)")
    dc.add_argument("--out", required=True, help="calibration cache (JSON lines; appended to, resumable)")
    dc.add_argument("--outcome", choices=["success", "failure", "all"], default="all")
    dc.add_argument("--labs", nargs="+", default=None, help="only these labs")
    dc.add_argument("--limit", type=int, default=None, help="at most this many episodes")
    dc.set_defaults(func=_cmd_droid_calibrate)

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
    bk.add_argument("--task", default="pick_place", choices=["pick_place", "soft_pick_place", "two_arms"],
                    help="the task to run (two_arms: three cameras)")
    bk.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a task parameter, dotted for nested ones, e.g. --set scene.lighting.enabled=true")
    bk.set_defaults(func=_cmd_bench_worker)

    bp = bsub.add_parser("pipeline", help="full run vs. the same hosts generating without downstream stages")
    bp.add_argument("--config", default="configs/pick_place_local.yaml")
    bp.add_argument("--episodes", type=int, default=16)
    bp.add_argument("--size", type=int, default=64)
    bp.add_argument("--workers", type=int, default=1, help="simulator hosts; 1 on a 2-core machine leaves a core "
                    "for the downstream stages, as a GPU node leaves its CPUs while the simulator keeps the GPU busy")
    bp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field in both runs (e.g. resources.pin_cores=false)")
    bp.add_argument("--repeats", type=int, default=1, help="rounds of (bare, full) back to back; the medians "
                    "are printed too (a shared machine's speed drifts from minute to minute)")
    bp.set_defaults(func=_cmd_bench_pipeline)

    bd = bsub.add_parser("droid", help="seconds per DROID episode on the CPU path: metadata and full mode, split")
    bd.add_argument("--tree", default=None, help="a DROID raw tree (default: a synthetic episode, made once, cached)")
    bd.add_argument("--episodes", type=int, default=1, help="episodes timed in each mode")
    bd.add_argument("--steps", type=int, default=300, help="steps of the synthetic episode (DROID: ~100-600)")
    bd.add_argument("--full-size", type=int, nargs=2, default=[640, 360], metavar=("W", "H"),
                    help="stored frame and stereo size in full mode")
    bd.add_argument("--codec", default="libsvtav1", help="RGB encoder")
    bd.set_defaults(func=_cmd_bench_droid)

    bs = bsub.add_parser("scale", help="driver seconds per commit, RSS, reopen time and stats rank error from "
                         "1k to 100k episodes of synthetic shards")
    bs.add_argument("--episodes", type=int, default=100_000)
    bs.add_argument("--milestones", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    bs.add_argument("--shard-size", type=int, default=50)
    bs.add_argument("--frames", type=int, default=270, help="frames per episode")
    bs.add_argument("--dir", default=None, help="where to write the dataset (default: a temporary folder)")
    bs.add_argument("--keep", action="store_true", help="keep the dataset afterwards")
    bs.set_defaults(func=_cmd_bench_scale)

    bn = bsub.add_parser("bottleneck", help="a bottleneck run vs. a regular run of the same size, with and without "
                         "rendering only the kept episodes")
    bn.add_argument("--config", default="configs/pick_place_local.yaml")
    bn.add_argument("--episodes", type=int, default=24, help="episodes in each of the three compared runs")
    bn.add_argument("--demos", type=int, default=3, help="source demos (annotated, then used as critical states)")
    bn.add_argument("--size", type=int, default=64)
    bn.add_argument("--method", default="gripper_changes", help="annotation method for the demos")
    bn.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override in every run")
    bn.add_argument("--dir", default=None, help="where to write the datasets (default: a temporary folder)")
    bn.set_defaults(func=_cmd_bench_bottleneck)

    d = sub.add_parser("demo", help="writer-only: simulate a few episodes on PyBullet, write and verify "
                       "them without Ray Data (the main job is `run`)")
    d.add_argument("--output", default="out/demo", help="dataset folder (resumed if it exists)")
    d.add_argument("--source", choices=["bullet", "synthetic"], default="bullet",
                   help="bullet: simulated pick-and-place; synthetic: no simulator")
    d.add_argument("--episodes", type=int, default=8)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=2, help="PyBullet worker processes")
    d.add_argument("--frames", type=int, default=90, help="synthetic episodes only")
    d.add_argument("--size", type=int, default=128, help="image height and width")
    d.add_argument("--shard-size", type=int, default=4)
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.verbose = args.verbose or getattr(args, "run_verbose", False)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from raygen._deps import MissingDependencyError

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, MissingDependencyError) as exc:
        print(f"raygen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
