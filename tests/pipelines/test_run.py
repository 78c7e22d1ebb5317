"""The whole run on a local Ray instance (2 CPUs): verify passes, rejects stick, crashes lose nothing."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from raygen.config import load_config
from raygen.datasets.reader import DatasetReader
from raygen.datasets.verify import verify_dataset
from raygen.pipelines.rejects import read_rejects

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
SMALL = ["source.width=32", "source.height=32", "source.task_params={steps_per_segment: 10}",
         "resources.cpu_workers=2", "output.shard_size=2", "output.video_codec=libx264"]


@pytest.fixture
def ray_local():
    import socket

    ray = pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _metrics_export_port=port)
    ray.metrics_port = port
    yield ray
    ray.shutdown()


class _Scraper:
    """Reads the node's Prometheus endpoint (what the dashboard and Prometheus read) every second."""

    def __init__(self, port: int):
        import threading

        self.url, self.samples, self.stop = f"http://127.0.0.1:{port}/metrics", {}, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def scrape(self) -> dict[str, float]:
        import urllib.request

        text = urllib.request.urlopen(self.url, timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("ray_raygen_"):
                name = line.split("{", 1)[0].split(" ", 1)[0]
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.samples.update(self.scrape())
            except OSError:
                pass

    def wait_for(self, name: str, value: float, timeout: float = 30.0) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.samples.get(name) != value:
            time.sleep(0.5)
        self.stop.set()
        return dict(self.samples)


def _config(tmp_path, *extra):
    return load_config(REPO / "configs" / "pick_place_local.yaml", [*SMALL, *extra], output=str(tmp_path / "ds"))


def test_end_to_end_then_resume_does_nothing(ray_local, tmp_path, local_hub, monkeypatch):
    from raygen.pipelines.run import run
    from tests.conftest import HUB_TOKEN

    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    cfg = _config(tmp_path, "source.episodes=3", "upload.repo=lab/e2e", f"upload.endpoint={local_hub.endpoint}",
                  "upload.batch_shards=1", "cost.gpu_hour=3.0", "cost.cpu_hour=0.04", "cost.currency=EUR")
    scraper = _Scraper(ray_local.metrics_port)
    s = run(cfg)
    assert s.accepted + s.rejected == 3 and s.verify_ok and s.shards == 2, s.format()
    # raygen's metrics on the node's Prometheus endpoint, with the values of this run
    seen = scraper.wait_for("ray_raygen_episodes_accepted_total", float(s.accepted))
    assert seen.get("ray_raygen_episodes_accepted_total") == s.accepted, seen
    assert seen.get("ray_raygen_episodes_generated_total") == s.accepted
    assert seen.get("ray_raygen_cpu_seconds_total", 0) > 0 and seen.get("ray_raygen_cost_total", 0) > 0
    assert seen.get("ray_raygen_stage_seconds_count", 0) >= s.accepted  # one sample per stage per episode
    # the upload: both shards, the metadata, the card and the tag, while and after the run
    target = f"hf://datasets/lab/e2e@main on {local_hub.endpoint}"
    assert s.upload[target]["pending_shards"] == 0 and not s.upload_error, s.format()
    on_hub = local_hub.files("lab/e2e")
    assert {p for p in on_hub if p.startswith("data/")} == {"data/chunk-000/file-000.parquet",
                                                             "data/chunk-000/file-001.parquet"}
    assert on_hub["meta/info.json"] == (tmp_path / "ds/meta/info.json").read_bytes()
    assert "README.md" in on_hub and local_hub.tags("lab/e2e")["v3.0"] == local_hub.head("lab/e2e")
    reader = DatasetReader(tmp_path / "ds")
    ep = reader.episode(0)
    assert {"tracks3d", "tracks2d.cam_high", "tracks2d.cam_wrist.visible"} <= set(ep.frame_features)
    assert ep.flow is not None and ep.metrics["quality.score"] >= 0.7 and "diversity.novelty" not in ep.metrics
    assert "diversity.novelty" in reader.episode(1).metrics  # the first episode has nothing to compare with
    import json

    div = json.loads((tmp_path / "ds/meta/raygen/diversity.json").read_text())
    assert div["fixed_viewpoints"] == 1 and div["moving_cameras"] == ["cam_wrist"] and div["episodes"] == 3
    assert 0 < div["workspace_coverage"] < 1 and sum(div["task_distribution"].values()) == 3
    # cost: CPU time measured in simulators, stages and driver; no GPU on the bullet CPU plan
    assert s.gpu_seconds == 0 and 0.5 < s.cpu_seconds < 3 * s.seconds * 2, s.format()
    assert s.cost == pytest.approx(s.cpu_seconds / 3600 * 0.04) and s.currency == "EUR"
    assert s.cost_per_episode == pytest.approx(s.cost / s.accepted) and "EUR per accepted episode" in s.format()
    record = json.loads((tmp_path / "ds/meta/raygen/run.json").read_text())
    assert record["summary"]["cost"] == pytest.approx(s.cost) and record["config"]["cost"]["gpu_hour"] == 3.0
    commits = len(local_hub.commits("lab/e2e"))
    again = run(cfg)
    assert again.planned == 0 and again.skipped_done == 3
    assert len(local_hub.commits("lab/e2e")) == commits + 1  # only run.json changed: one metadata commit


def test_rejects_are_recorded_and_not_regenerated(ray_local, tmp_path):
    from raygen.pipelines.run import run

    cfg = _config(tmp_path, "source.episodes=2", "stages.quality.min_score=1.0")
    s = run(cfg)
    assert s.rejected == 2 and s.accepted == 0
    rejects = read_rejects(tmp_path / "ds").to_pylist()
    assert sorted(r["episode_key"] for r in rejects) == ["bullet-pick_place-s0-000000", "bullet-pick_place-s0-000001"]
    assert all(r["stage"] == "quality" and r["score"] < 1.0 for r in rejects)
    assert s.cpu_seconds > 0.2  # rejected episodes cost too
    assert run(cfg).planned == 0


def test_killed_worker_child_loses_nothing(ray_local, tmp_path):
    """SIGKILL the simulator processes once, mid-run: their hosts restart them and retry."""
    import threading

    from raygen.pipelines.run import run

    cfg = _config(tmp_path, "source.episodes=4")
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            out = subprocess.run(["pgrep", "-f", "raygen.actors.bullet.worker"], capture_output=True, text=True)
            pids = [int(p) for p in out.stdout.split()]
            if pids:
                time.sleep(1.5)  # let it get into an episode
                for p in pids:
                    try:
                        os.kill(p, signal.SIGKILL)
                        killed.append(p)
                    except ProcessLookupError:
                        pass
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    s = run(cfg)
    t.join()
    assert killed, "no simulator process was found to kill"
    assert s.accepted + s.rejected == 4 and s.verify_ok, s.format()
    assert s.worker_retries >= 1


@pytest.mark.slow
def test_killed_driver_resumes_exactly_once(tmp_path):
    """Kill the driver process after its first commit; the next run makes every episode exactly once."""
    code = textwrap.dedent(f"""
        import ray, sys
        from raygen.config import load_config
        from raygen.pipelines.run import run
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        cfg = load_config({str(REPO / 'configs' / 'pick_place_local.yaml')!r}, {SMALL!r} + ["source.episodes=6"],
                          output={str(tmp_path / 'ds')!r})
        run(cfg)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = tmp_path / "ds/meta/raygen/ledger.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (ledger.exists() and ledger.read_text().count("\n") >= 1):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True)
    first = ledger.read_text().count("\n")
    assert first in (1, 2)
    rejected_before = read_rejects(tmp_path / "ds").num_rows
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        from raygen.pipelines.run import run

        s = run(load_config(REPO / "configs" / "pick_place_local.yaml", [*SMALL, "source.episodes=6"],
                            output=str(tmp_path / "ds")))
    finally:
        ray.shutdown()
    assert s.skipped_done == 2 * first + rejected_before  # committed (2 a shard) or recorded as rejected
    keys = DatasetReader(tmp_path / "ds").keys
    rejects = read_rejects(tmp_path / "ds").column(0).to_pylist()
    assert len(keys) == len(set(keys))
    assert sorted(keys + rejects) == [f"bullet-pick_place-s0-00000{i}" for i in range(6)]
    assert verify_dataset(tmp_path / "ds").ok


def test_start_stop_and_resume(ray_local, tmp_path):
    """raygen.start() in the background; stop() after the first commit; a second run finishes the job."""
    import raygen

    cfg = _config(tmp_path, "source.episodes=6")
    handle = raygen.start(cfg)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and handle.progress.get("shards", 0) < 1 and handle.running:
        time.sleep(0.2)
    handle.stop()
    first = handle.wait(timeout=120)
    assert first.stopped and first.accepted < 6 and verify_dataset(tmp_path / "ds").ok
    second = raygen.run(cfg)
    assert second.skipped_done == first.accepted + first.rejected
    assert second.accepted + second.rejected + second.skipped_done == 6 and second.verify_ok
    keys = DatasetReader(tmp_path / "ds").keys
    assert len(keys) == len(set(keys))


def test_option_typos_fail_before_anything_starts(tmp_path):
    from raygen.config import ConfigError
    from raygen.pipelines.run import run

    with pytest.raises(ConfigError, match=r"source.task_params: unknown parameter\(s\) \['steps_per_segmnt'\]"):
        run(_config(tmp_path, "source.task_params.steps_per_segmnt=10"))
    with pytest.raises(ConfigError, match=r"source.backend_options: unknown option\(s\) \['render'\]"):
        run(_config(tmp_path, "source.backend_options.render=egl"))
    assert read_rejects(tmp_path / "ds").num_rows == 0


def test_stop_is_seen_even_when_every_episode_is_rejected(ray_local, tmp_path):
    import threading

    from raygen.pipelines.run import run

    stop = threading.Event()
    stop.set()  # asked to stop before the first episode
    s = run(_config(tmp_path, "source.episodes=6", "stages.quality.min_score=1.0"), stop=stop)
    assert s.stopped and s.rejected + s.accepted < 6
    assert not (tmp_path / "ds/.staging/STOP").exists()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and at least 2 cores")
def test_the_simulator_gets_a_core_of_its_own_and_the_stages_keep_off_it(ray_local, tmp_path):
    """One simulator: its child runs on the top core alone; the stage actors and the driver use the others
    while the run goes, and the driver has every core back after it."""
    import threading

    from raygen.pipelines.run import run

    allowed = frozenset(os.sched_getaffinity(0))
    top = max(allowed)
    seen: dict[str, list[frozenset[int]]] = {"child": [], "stages": [], "driver": []}
    child_pids: set[str] = set()
    done = threading.Event()

    def affinities(pattern: str, main_only: set[str] | None = None) -> list[frozenset[int]]:
        out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        sets = []
        for pid in out:
            if main_only is not None and pid not in main_only:  # may be caught between its start and its pinning
                main_only.add(pid)
                continue
            try:
                tids = [pid] if main_only is not None else os.listdir(f"/proc/{pid}/task")  # the simulating thread
                sets += [frozenset(os.sched_getaffinity(int(t))) for t in tids]
            except (FileNotFoundError, ProcessLookupError):
                pass
        return sets

    def sampler():
        while not done.wait(0.1):
            seen["child"] += affinities("raygen.actors.bullet.worker", child_pids)
            seen["stages"] += affinities(r"MapBatches\((QualityFlowStage|DiversityStage|EncodeStage)\)")
            seen["driver"].append(frozenset(os.sched_getaffinity(0)))

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    try:
        s = run(_config(tmp_path, "source.episodes=5", "resources.cpu_workers=1"))
    finally:
        done.set()
        t.join()
    assert s.accepted + s.rejected == 5 and s.verify_ok, s.format()
    assert seen["child"] and set(seen["child"]) == {frozenset({top})}
    assert allowed - {top} in seen["stages"]  # once they have work; never the simulator's core alone
    assert frozenset({top}) not in seen["stages"]
    assert allowed - {top} in seen["driver"]
    reader = DatasetReader(tmp_path / "ds")
    assert {reader.episode(i).metrics["host.cores"] for i in range(s.accepted)} == {str(top)}
    assert frozenset(os.sched_getaffinity(0)) == allowed


def test_a_late_stop_never_reaches_a_run_that_has_ended(tmp_path):
    import threading

    from raygen.pipelines.run import _watch_stop

    stop, finished, flag = threading.Event(), threading.Event(), tmp_path / "STOP"
    t = threading.Thread(target=_watch_stop, args=(stop, finished, flag), daemon=True)
    t.start()
    finished.set()  # the run ended without a stop
    t.join(2)
    assert not t.is_alive()  # the watcher ends with the run
    stop.set()
    assert not flag.exists()
    stop2, finished2 = threading.Event(), threading.Event()
    t2 = threading.Thread(target=_watch_stop, args=(stop2, finished2, flag), daemon=True)
    t2.start()
    stop2.set()
    t2.join(2)
    assert flag.exists() and not t2.is_alive()
