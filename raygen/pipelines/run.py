"""One run: plan -> Ray Data stream (hosts -> quality -> flow -> diversity -> encode) -> shards committed
on the driver -> summary.

    summary = raygen.run(load_config("configs/pick_place_local.yaml"))   # blocks
    handle = raygen.start(config); handle.progress; handle.stop(); handle.wait()

Resume is the default: specs whose key is committed (the ledger) or rejected (meta/raygen/rejects/) are not
generated again. Stopping (Ctrl-C, handle.stop()) commits nothing half-done; the next run goes on.
Shards are cut and committed on the driver (stream copy of already-encoded segments, ~40 ms an
episode), which keeps exactly-once in one process.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raygen import __version__
from raygen.actors._backend import NOT_RENDERED
from raygen.config import RunConfig
from raygen.datasets import _layout as L
from raygen.datasets._video import VideoSettings
from raygen.datasets.encode import EncodedEpisode
from raygen.datasets.writer import DatasetWriter
from raygen.pipelines.diversity import DiversityReport
from raygen.pipelines.feeds import HttpFeed, check_feeds
from raygen.pipelines.progress import ProgressDisplay
from raygen.pipelines.rejects import fold_rejects, rejected_keys
from raygen.pipelines.sources import BottleneckSource, Source, Todo, make_source

logger = logging.getLogger(__name__)

__all__ = ["RunHandle", "RunSummary", "run", "start"]


@dataclass
class RunSummary:
    path: str
    planned: int = 0
    skipped_done: int = 0
    accepted: int = 0
    rejected: int = 0
    shards: int = 0
    seconds: float = 0.0
    episodes_per_minute: float = 0.0
    plan: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    worker_retries: int = 0
    gpu_seconds: float = 0.0
    """GPU shares held by simulator hosts x seconds, over every episode made (rejects too)."""
    cpu_seconds: float = 0.0
    """CPU time measured in the simulators, the stages and the driver, over every episode made."""
    cost: float = 0.0
    """Estimated cost: gpu_seconds and cpu_seconds at the config's cost.gpu_hour / cost.cpu_hour."""
    cost_per_episode: float = 0.0
    """cost / accepted episodes (what one usable episode cost, rejects included)."""
    currency: str = "USD"
    stopped: bool = False
    verify_ok: bool | None = None
    upload: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per upload target: commits, files, bytes, reconciled and pending shards, last error."""
    upload_error: str | None = None
    feeds: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per live feed: queued, sent, filtered, pending, batches, bytes, retries, lag median/p95 (s)."""
    renders_saved: int = 0
    """Episodes that failed on the physics-only pass (source.render_only_kept) and so were never rendered."""
    bottleneck: dict[str, Any] = field(default_factory=dict)
    """Bottleneck runs: success rate and critical-state neighbourhood coverage of this dataset, its source
    demos and source.bottleneck.compare_with (raygen.critical.compare)."""

    def format(self) -> str:
        lines = [
            f"dataset: {self.path}",
            f"episodes: {self.accepted} accepted, {self.rejected} rejected, {self.skipped_done} already done "
            f"(of {self.planned + self.skipped_done}); {self.shards} shards committed",
            f"time: {self.seconds:.1f} s, {self.episodes_per_minute:.1f} episodes/min; worker retries: "
            f"{self.worker_retries}",
            f"cost: {self.gpu_seconds:.1f} GPU-s, {self.cpu_seconds:.1f} CPU-s, estimated {self.cost:.4f} "
            f"{self.currency} ({self.cost_per_episode:.5f} {self.currency} per accepted episode)",
            f"plan: {self.plan}",
            "seconds per episode by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in self.stage_seconds.items()),
        ]
        for name, rep in self.upload.items():
            lines.append(f"upload {name}: {rep['commits']} commits, {rep['files']} files, "
                         f"{rep['bytes'] / 1e6:.1f} MB, {rep['pending_shards']} shards pending"
                         + (" (metadata only)" if rep["metadata_only"] else ""))
        for name, f in self.feeds.items():
            lag = (f"; commit-to-delivery {f['lag_median_s']:.1f} s median, {f['lag_p95_s']:.1f} s p95"
                   if f.get("lag_median_s") is not None else "")
            lines.append(f"feed {name}: {f['sent']} sent, {f['filtered']} filtered, {f['pending']} pending, "
                         f"{f['batches']} batches, {f['bytes'] / 1e6:.1f} MB{lag}")
        if self.renders_saved:
            lines.append(f"render only kept: {self.renders_saved} failed episodes were never rendered")
        if self.bottleneck.get("error"):
            lines.append(f"bottleneck comparison: {self.bottleneck['error']}")
        elif self.bottleneck:
            n = self.bottleneck.get("at_n", 0)
            parts = [f"{name} {rec['success_rate']:.0%} success, coverage {rec['coverage']:.1%} "
                     f"({rec.get('coverage_at_n', 0.0):.1%} over its first {n})"
                     for name, rec in self.bottleneck.items() if isinstance(rec, dict) and "coverage" in rec]
            lines.append(f"bottleneck ({self.bottleneck['critical_states']} critical states, "
                         f"{self.bottleneck['radius_m']:g} m neighbourhoods): " + "; ".join(parts))
        if self.upload_error:
            lines.append(f"upload failed: {self.upload_error}")
        if self.stopped:
            lines.append("stopped before the end: run again to resume")
        if self.verify_ok is not None:
            lines.append(f"verify: {'VALID' if self.verify_ok else 'INVALID (run raygen verify for details)'}")
        return "\n".join(lines)


@dataclass
class _Account:
    """GPU- and CPU-seconds of everything made in this run, accepted or rejected."""

    gpus_per_host: float = 0.0
    gpu_s: float = 0.0
    cpu_s: float = 0.0

    def episode(self, m: dict[str, Any]) -> tuple[float, float]:
        from raygen.pipelines.stages import spent

        s = spent(m)
        return self.add(s["host_s"] * self.gpus_per_host, s["cpu_s"])

    def reject(self, r: dict[str, Any]) -> tuple[float, float]:
        return self.add(float(r.get("host_s") or 0.0) * self.gpus_per_host, float(r.get("cpu_s") or 0.0))

    def add(self, gpu_s: float, cpu_s: float) -> tuple[float, float]:
        self.gpu_s += gpu_s
        self.cpu_s += cpu_s
        return gpu_s, cpu_s


class _Metrics:
    """raygen's counters on the Ray dashboard (ray.util.metrics); no-ops when unavailable."""

    def __init__(self) -> None:
        try:
            from ray.util.metrics import Counter, Histogram

            self.generated = Counter("raygen_episodes_generated", "episodes out of the simulators")
            self.accepted = Counter("raygen_episodes_accepted", "episodes committed")
            self.rejected = Counter("raygen_episodes_rejected", "episodes rejected (errors, quality, diversity)")
            self.retries = Counter("raygen_worker_retries", "episode attempts beyond the first")
            self.gpu_seconds = Counter("raygen_gpu_seconds", "GPU-seconds held by simulator hosts")
            self.cpu_seconds = Counter("raygen_cpu_seconds", "CPU-seconds used by simulators, stages and driver")
            self.cost = Counter("raygen_cost", "estimated cost at the config's prices (cost.currency)")
            self.stage = Histogram("raygen_stage_seconds", "seconds per episode per stage",
                                   boundaries=[0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300], tag_keys=("stage",))
            self.feed_sent = Counter("raygen_feed_sent", "episodes a live feed delivered", tag_keys=("feed",))
            self.feed_filtered = Counter("raygen_feed_filtered", "episodes below a feed's bar", tag_keys=("feed",))
            self.feed_bytes = Counter("raygen_feed_bytes", "bytes a live feed delivered", tag_keys=("feed",))
            self.feed_lag = Histogram("raygen_feed_lag_seconds", "commit-to-delivery seconds per episode",
                                      boundaries=[0.5, 1, 2, 5, 10, 30, 60, 300, 1800], tag_keys=("feed",))
        except Exception:  # metrics are best effort
            logger.debug("ray.util.metrics unavailable", exc_info=True)
            self.generated = None

    def spend(self, gpu_s: float, cpu_s: float, prices: Any) -> None:
        if self.generated is None:
            return
        cost = prices.price(gpu_s, cpu_s)
        for counter, v in ((self.gpu_seconds, gpu_s), (self.cpu_seconds, cpu_s), (self.cost, cost)):
            if v > 0:  # ray.util.metrics rejects inc(0)
                counter.inc(v)

    def episode(self, metrics: dict[str, Any]) -> None:
        if self.generated is None:
            return
        self.generated.inc()
        self.accepted.inc()
        retries = int(metrics.get("host.attempts", 1)) - 1
        if retries > 0:  # ray.util.metrics rejects inc(0)
            self.retries.inc(retries)
        for k, v in metrics.items():
            if k.startswith("timing.") and k.endswith("_s") and isinstance(v, int | float):
                self.stage.observe(float(v), tags={"stage": k[7:-2]})

    def rejects(self, n: int) -> None:
        if self.generated is not None and n:
            self.generated.inc(n)
            self.rejected.inc(n)

    def feed(self, name: str, *, sent: int = 0, filtered: int = 0, bytes: int = 0, lags: list[float] = ()) -> None:
        """A live feed's deliveries (called from the feeds' threads; the metrics exist from __init__)."""
        if self.generated is None:
            return
        tags = {"feed": name}
        for counter, v in ((self.feed_sent, sent), (self.feed_filtered, filtered), (self.feed_bytes, bytes)):
            if v > 0:
                counter.inc(v, tags=tags)
        for lag in lags:
            self.feed_lag.observe(max(0.0, float(lag)), tags=tags)


def _build_stream(config: RunConfig, plan: Any, todo: Todo, rejects_dir: str, video: VideoSettings,
                  generate_only: bool = False, stop_file: str | None = None, source: Source | None = None,
                  diversity: DiversityReport | None = None) -> Any:
    from ray.data import ActorPoolStrategy

    from raygen.actors.host import HostConfig, WorkerHost
    from raygen.pipelines.quality import QualitySettings
    from raygen.pipelines.stages import DiversityStage, EncodeStage, QualityFlowStage

    source = source or make_source(config)
    src, res, st = config.source, config.resources, config.stages
    host = HostConfig(
        backend=src.backend, python=src.python, attempts=res.attempts, episode_timeout_s=res.episode_timeout_s,
        startup_timeout_s=res.startup_timeout_s, cpu_threads=res.cpu_threads, stop_file=stop_file,
        cores=(res.cores_per_worker or math.ceil(res.cpus_per_worker)) if res.pin_cores else 0,
        options=source.host_options(),
    )
    stage_cpu = max(0.1, round(plan.stage_cpus / 4, 3))
    ds = todo.dataset()
    # two calls per host: while one reads its episode back, the other already has the simulator busy
    hosts = ActorPoolStrategy(min_size=1, max_size=plan.pool_max, max_concurrent_calls_per_actor=2,
                              enable_true_multi_threading=True)
    ds = ds.map_batches(WorkerHost, fn_constructor_kwargs={"config": host}, batch_size=1, compute=hosts,
                        **plan.actor_options())
    if generate_only:  # the baseline of `raygen bench pipeline`
        return ds
    raw = source.raw_bytes()

    capped: list[str] = []

    def stage(cls: type, kwargs: dict[str, Any], compute: Any, base_mib: int, copies: int) -> dict[str, Any]:
        """One stage actor pool: ``base_mib`` (the Ray worker, Ray Data, the stage's libraries) plus ``copies``
        of the raw episode is the memory it asks Ray for. Measured peak USS per actor at 64x64 / 128x128:
        encode 296 / 326 MiB, quality+flow 129 / 160, diversity 129 / 179; without a request Ray Data warns
        once an actor passes ~300 MiB (its default per 1/8 CPU)."""
        wanted = base_mib * 2**20 + copies * raw
        memory = plan.stage_memory(wanted)
        if memory < wanted and not capped:
            capped.append(cls.__name__)
            logger.warning("an episode's frames (~%.1f GB raw) would make the stage actors ask for up to %.1f GB; "
                           "each asks Ray for %.1f GB (an eighth of the cluster's memory) instead. Smaller "
                           "source.width/height make episodes lighter.", raw / 1e9, wanted / 1e9, memory / 1e9)
        return ds.map_batches(cls, fn_constructor_kwargs={**kwargs, "pin": res.pin_cores}, batch_size=1,
                              compute=compute, num_cpus=stage_cpu, memory=memory)

    quality = QualitySettings(min_score=st.quality.min_score, require_success=st.quality.require_success)
    ds = stage(QualityFlowStage, {"settings": quality, "rejects_dir": rejects_dir, "step_m": st.flow.step_m},
               ActorPoolStrategy(min_size=1, max_size=2), 256, 2)
    seed = {"reference": diversity.sample, "committed": diversity.n} if diversity is not None else {}
    ds = stage(DiversityStage, {"reject_duplicates": st.diversity.reject_duplicates,
                                "threshold": st.diversity.duplicate_threshold, "rejects_dir": rejects_dir, **seed},
               ActorPoolStrategy(size=1), 256, 2)
    return stage(EncodeStage, {"video": video, "threads": max(1, math.ceil(stage_cpu)),
                               "lerobot_depth": config.output.lerobot_depth},
                 ActorPoolStrategy(min_size=1, max_size=2), 384, 3)


def run(config: RunConfig, *, stop: threading.Event | None = None, progress: dict[str, Any] | None = None,
        verify: bool = True, show_progress: bool = True, verbose: bool = False) -> RunSummary:
    """Run ``config`` to the end (or until ``stop`` is set); returns the summary.

    ``show_progress``: the driver's progress display (raygen.pipelines.progress); ``verbose``: Ray Data's
    own per-operator progress tables and execution logs too (off: they print ~13 lines every 10 s).
    """
    import ray

    from raygen.actors.cores import StageCores
    from raygen.actors.host import sweep_stale_scratch
    from raygen.cluster.plan import discover, make_plan

    source = make_source(config)  # checks the backend, its options and (for DROID) lists the tree
    check_feeds(config.feeds)  # a missing API key fails here, before the dataset is opened
    root = Path(config.output.path)
    video = VideoSettings(codec=config.output.video_codec, crf=config.output.crf, g=config.output.gop)
    summary = RunSummary(path=str(root))
    progress = progress if progress is not None else {}
    t0 = time.perf_counter()
    writer = DatasetWriter(root, video=video, shard_size=config.output.shard_size,
                           lerobot_depth=config.output.lerobot_depth)
    rejects_dir = writer.committer.staging_dir / "rejects"
    rejects_dir.mkdir(parents=True, exist_ok=True)
    done = set(writer.committed_keys) | rejected_keys(root)
    todo = source.todo(done)
    summary.planned, summary.skipped_done = len(todo), source.total - len(todo)
    diversity, stage_totals = DiversityReport.load(root), {}
    metrics: _Metrics | None = None
    display: ProgressDisplay | None = None
    account = _Account()
    uploader = None
    feeds: list[HttpFeed] = []
    clean = True
    finished = threading.Event()
    driver_cores = StageCores(config.resources.pin_cores)  # the driver too keeps off the simulators' cores

    def fold() -> None:  # reject records from the stages -> meta/raygen/rejects/, counts, costs, metrics
        recs = fold_rejects(root, rejects_dir)
        summary.rejected += len(recs)
        summary.renders_saved += sum(r.get("stage") == "generate" and str(r.get("reason", "")).startswith(NOT_RENDERED)
                                     for r in recs)
        for r in recs:
            spend = account.reject(r)
            if metrics is not None:
                metrics.spend(*spend, config.cost)
        if recs and metrics is not None:
            metrics.rejects(len(recs))

    try:
        if config.upload.repo or config.upload.metadata_repo:
            from raygen.datasets.hub import Uploader

            uploader = Uploader(root, config.upload, commit_lock=writer.committer.commit_lock).start()
        feeds = [HttpFeed(root, f) for f in config.feeds]  # all built (keys read) before any starts
        for f in feeds:  # they also resend what a crash left unsent
            f.start()
        if not len(todo):
            logger.info("nothing to do: all %d episodes are committed or rejected", source.total)
            return summary
        if not ray.is_initialized():
            ray.init(log_to_driver=False)
        _quiet_ray_data(verbose)
        plan = make_plan(config, discover())
        account.gpus_per_host = plan.num_gpus
        summary.plan = plan.describe()
        logger.info("plan: %s; %d episodes to make (%d already done)", summary.plan, len(todo),
                    summary.skipped_done)
        metrics = _Metrics()
        for f in feeds:
            f.metrics = metrics
        if show_progress:  # rejects show as soon as a stage records them, before the driver folds them
            display = ProgressDisplay(len(todo), pending_rejects=lambda: sum(1 for _ in rejects_dir.glob("*.json")))
        sweep_stale_scratch()  # scratch of hosts killed with an earlier run (Ray runs no finalizers)
        L.atomic_write_json(root / L.RUN, _run_record(config, plan, summary))
        stop_file = writer.committer.staging_dir / "STOP"
        stop_file.unlink(missing_ok=True)  # one a late stop() of an earlier run left
        if stop is not None:  # the hosts see the file and skip the remaining specs
            threading.Thread(target=_watch_stop, args=(stop, finished, stop_file), daemon=True).start()
        stream = _build_stream(config, plan, todo, str(rejects_dir), video, stop_file=str(stop_file), source=source,
                               diversity=diversity)
        for row in stream.iter_rows():
            t_row, c_row = time.perf_counter(), time.thread_time()
            driver_cores.apply()
            progress.setdefault("first_row_s", t_row - t0)  # start-up ends here (steady-state rate for bench)
            progress["last_row_s"] = t_row - t0
            enc = EncodedEpisode.from_row(row)
            m = enc.record["metrics"]
            metrics.episode(m)
            metrics.spend(*account.episode(m), config.cost)
            summary.worker_retries += max(0, int(m.get("host.attempts", 1)) - 1)
            for k, v in m.items():
                if k.startswith("timing.") and isinstance(v, int | float):
                    stage_totals[k[7:-2]] = stage_totals.get(k[7:-2], 0.0) + float(v)
            stage_totals["simulator"] = stage_totals.get("simulator", 0.0) + float(m.get("host.episode_s", 0.0))
            entry = writer.add_encoded(enc)
            summary.accepted += 1
            if entry is not None:
                fold()
                summary.shards += 1
                diversity.add_shard(root, entry)  # committed episodes only; a crash before the save loses
                diversity.save(root)  # nothing: the next open replays shards after the saved seq
                if uploader is not None:
                    uploader.notify()
                for f in feeds:
                    f.notify()
                _progress(summary, progress, t0, len(todo))
            if display is not None:
                display.update(accepted=summary.accepted, rejected=summary.rejected, shards=summary.shards)
            stage_totals["driver"] = stage_totals.get("driver", 0.0) + time.perf_counter() - t_row
            metrics.spend(*account.add(0.0, time.thread_time() - c_row), config.cost)
            if stop is not None and stop.is_set():
                summary.stopped = True
                break
    except KeyboardInterrupt:
        summary.stopped, clean = True, False
        logger.warning("interrupted: committed shards stay, the open shard is dropped; run again to resume")
    except BaseException:
        clean = False
        raise
    finally:
        finished.set()
        driver_cores.restore()
        if display is not None:
            display.update(accepted=summary.accepted, rejected=summary.rejected, shards=summary.shards)
            display.close()
        fold()  # while the dataset is still ours
        shutil.rmtree(rejects_dir, ignore_errors=True)
        if stop is not None and stop.is_set():
            summary.stopped = True
        (writer.committer.staging_dir / "STOP").unlink(missing_ok=True)
        try:  # the last, partial shard; the dataset stays locked (ours) until the upload is done
            if clean:
                writer.flush()
            else:
                writer.abort(release=False)
        except BaseException:
            writer.abort(release=False)
            writer.close()
            raise
        for f in feeds:  # the last shard too, within each feed's drain_timeout_s; the rest waits for the next run
            f.notify()
            summary.feeds[f.cfg.name] = (f.finish() if clean else (f.stop() or f.stats)).to_dict()
        summary.shards = len(writer.entries)
        summary.accepted = sum(len(e["episodes"]) for e in writer.entries)  # an aborted open shard is not
        summary.seconds = time.perf_counter() - t0
        _costs(summary, account, config)
        done_now = summary.accepted + summary.rejected
        summary.episodes_per_minute = 60.0 * done_now / summary.seconds if summary.seconds else 0.0
        if summary.accepted:
            summary.stage_seconds = {k: v / summary.accepted for k, v in stage_totals.items()}
        if diversity.catch_up(root):
            diversity.save(root)
        if clean and isinstance(source, BottleneckSource) and (root / L.INFO).exists():
            summary.bottleneck = _compare_bottleneck(source, root)
        if (root / L.INFO).exists() or (root / L.RUN).exists():
            L.atomic_write_json(root / L.RUN, _run_record(config, None, summary))
        try:
            if uploader is not None:
                _finish_upload(uploader, summary, flush=clean)
        finally:
            for f in feeds:
                f.stop()
            writer.close()
    if verify and (root / L.INFO).exists():
        from raygen.datasets.verify import verify_dataset

        summary.verify_ok = verify_dataset(root).ok
    return summary


def _compare_bottleneck(source: BottleneckSource, root: Path) -> dict[str, Any]:
    from raygen.critical.compare import compare

    bn = source.config.source.bottleneck
    assert bn is not None
    centres = np.array(sorted({s.tcp for s in source.states}))
    try:
        return compare(root, centres, bn.radius_m[0], source=bn.dataset, compare_with=bn.compare_with)
    except (OSError, ValueError) as exc:  # a report, not the run: say why and go on
        logger.warning("bottleneck comparison skipped: %s", exc)
        return {"error": str(exc)}


def _watch_stop(stop: threading.Event, finished: threading.Event, stop_file: Path) -> None:
    """Touch ``stop_file`` when ``stop`` is set while the run is on; end with the run either way."""
    while not finished.is_set():
        if stop.wait(0.5):
            if not finished.is_set():
                stop_file.touch()
            return


def _quiet_ray_data(verbose: bool) -> None:
    """Ray Data's operator tables and execution logs only when asked for; its warnings and errors always."""
    from ray.data import DataContext
    from ray.util.debug import log_once

    ctx = DataContext.get_current()
    if not verbose:  # the display replaces them; Ray Data would warn once that they are off
        log_once("ray_data_progress_manager_disabled")
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    logging.getLogger("ray.data").setLevel(logging.NOTSET if verbose else logging.WARNING)


def _costs(summary: RunSummary, account: _Account, config: RunConfig) -> None:
    prices = config.cost
    summary.gpu_seconds, summary.cpu_seconds, summary.currency = account.gpu_s, account.cpu_s, prices.currency
    summary.cost = prices.price(account.gpu_s, account.cpu_s)
    summary.cost_per_episode = summary.cost / summary.accepted if summary.accepted else 0.0


def _finish_upload(uploader: Any, summary: RunSummary, *, flush: bool) -> None:
    """Final flush + card + tag after a clean end; after an interruption only stop (the next run sends the rest)."""
    from raygen.datasets.hub import UploadError

    try:
        if flush:
            uploader.finish()
        else:
            uploader.stop()
            logger.warning("upload stopped with the run; the next run or `raygen upload %s` sends what is pending",
                           summary.path)
    except UploadError as exc:
        summary.upload_error = str(exc)
        logger.error("%s", exc)
    summary.upload = {k: asdict(r) for k, r in uploader.reports.items()}


def _progress(summary: RunSummary, progress: dict[str, Any], t0: float, total: int) -> None:
    elapsed = time.perf_counter() - t0
    done = summary.accepted + summary.rejected
    rate = 60.0 * done / elapsed if elapsed else 0.0
    eta = (total - done) / rate * 60 if rate else float("nan")
    progress.update({"done": done, "accepted": summary.accepted, "rejected": summary.rejected, "total": total,
                     "episodes_per_minute": rate, "eta_s": eta, "shards": summary.shards})
    logger.debug("committed shard %d: %d/%d episodes (%d accepted, %d rejected), %.1f episodes/min, ETA %.0f s",
                summary.shards, done, total, summary.accepted, summary.rejected, rate, eta)


def _run_record(config: RunConfig, plan: Any, summary: RunSummary) -> dict[str, Any]:
    return {"raygen_version": __version__, "config": config.model_dump(mode="json"),
            "plan": summary.plan or (plan.describe() if plan else ""), "summary": asdict(summary),
            "written_at": time.time()}


@dataclass
class RunHandle:
    """A run in a background thread (for notebooks): progress, stop(), wait()."""

    config: RunConfig
    progress: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _result: list[Any] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def stop(self) -> None:
        """Finish the episode in hand, commit what is complete, and end (resumable)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> RunSummary:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the run is still going after {timeout} s")
        result = self._result[0]
        if isinstance(result, BaseException):
            raise result
        return result

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def start(config: RunConfig) -> RunHandle:
    handle = RunHandle(config)

    def target() -> None:
        try:
            handle._result.append(run(config, stop=handle._stop, progress=handle.progress, show_progress=False))
        except BaseException as exc:  # handed to wait()
            handle._result.append(exc)

    handle._thread = threading.Thread(target=target, name="raygen-run", daemon=True)
    handle._thread.start()
    return handle
