"""WorkerHost supervises its child: handshake, retries after crashes and hangs, error rows, clean exit."""

import logging
import os
import signal
import threading
import time

import numpy as np
import pytest

from raygen.actors.host import HostConfig, WorkerHost
from raygen.actors.spec import EpisodeSpec
from raygen.datasets.synthetic import synthetic_episode

FAULTY = "tests.actors.faulty_worker"


def _host(tmp_path, **kw):
    kw.setdefault("episode_timeout_s", 20)
    kw.setdefault("startup_timeout_s", 30)
    return WorkerHost(HostConfig(backend="faulty", worker_module=FAULTY, scratch_dir=str(tmp_path), **kw))


def _spec(index, **params):
    return EpisodeSpec("test", 7, index, params)


def test_handshake_env_and_clean_shutdown(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    host = _host(tmp_path, cpu_threads=2)
    with caplog.at_level(logging.INFO, logger="raygen.actors.host"):
        res = host.run(_spec(0))
    assert res.ok and res.attempts == 1 and res.episode.episode_key == "test-s7-000000"
    want = synthetic_episode(0, seed=7, frames=6, height=16, width=16)
    np.testing.assert_array_equal(res.episode.cameras["cam_high"].depth, want.cameras["cam_high"].depth)
    info = host.backend_info
    assert info["backend"] == "faulty" and info["version"] == "0"
    env = info["capabilities"]["env"]
    assert env["CUDA_VISIBLE_DEVICES"] == "3" and env["OMP_NUM_THREADS"] == "2"
    assert env["RAYGEN_CACHE_DIR"].startswith(str(host.scratch)) and env["TMPDIR"].startswith(str(host.scratch))
    time.sleep(0.2)
    assert any("[test-s7-000000 pid" in r.message and "stdout noise" in r.message for r in caplog.records)
    pid = host.child_pid
    host.close()
    host.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not host.scratch.exists()


def test_sigkill_mid_episode_is_retried(tmp_path):
    host = _host(tmp_path)
    assert host.run(_spec(1)).ok  # child up
    pid = host.child_pid
    killer = threading.Timer(1.0, os.kill, args=(pid, signal.SIGKILL))
    killer.start()
    res = host.run(_spec(2, fault="slow", sleep_s=3))
    assert res.ok and res.attempts == 2, res.error
    assert host.child_pid != pid
    assert res.episode.episode_key == "test-s7-000002"
    host.close()


def test_crash_inside_the_child_is_retried(tmp_path):
    host = _host(tmp_path)
    res = host.run(_spec(3, fault="crash_once", marker=str(tmp_path / "m3")))
    assert res.ok and res.attempts == 2
    host.close()


def test_cpu_of_failed_tries_and_killed_children_is_billed_once(tmp_path):
    host = _host(tmp_path)
    assert host.run(_spec(20)).ok  # child up; its start-up CPU goes to this episode
    res = host.run(_spec(21, fault="crash_once", burn_s=0.4, marker=str(tmp_path / "m21")))
    assert res.ok and res.attempts == 2
    assert 0.8 <= res.timing["cpu_s"] < 3.0, res.timing  # the SIGKILLed try counts too
    res = host.run(_spec(22))
    assert res.ok and res.timing["cpu_s"] < 0.4, res.timing  # nothing billed twice
    host.close()


def test_two_calls_share_one_child_one_episode_at_a_time(tmp_path):
    """Ray Data runs two calls per host: the child gets the second spec only once it is done with the first."""
    from concurrent.futures import ThreadPoolExecutor

    host = _host(tmp_path)
    assert host.run(_spec(30)).ok
    pid = host.child_pid
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(host.run, [_spec(31, fault="slow", sleep_s=1), _spec(32, fault="slow", sleep_s=1)]))
    assert time.monotonic() - t0 >= 2.0  # one simulator, one episode at a time
    assert [r.ok for r in results] == [True, True] and host.child_pid == pid
    assert [r.episode.episode_key for r in results] == ["test-s7-000031", "test-s7-000032"]
    assert all(1.0 <= r.timing["host_total_s"] < 1.9 for r in results), [r.timing for r in results]  # not the wait
    host.close()


def test_hang_is_killed_at_the_timeout_and_retried(tmp_path):
    host = _host(tmp_path, episode_timeout_s=3)
    t0 = time.monotonic()
    res = host.run(_spec(4, fault="hang_once", marker=str(tmp_path / "m4")))
    assert res.ok and res.attempts == 2
    assert 3 <= time.monotonic() - t0 < 25
    host.close()


@pytest.mark.parametrize("fault", ["error_always", "crash_always"])
def test_poison_spec_gives_an_error_row_and_the_host_goes_on(tmp_path, fault):
    host = _host(tmp_path, attempts=3)
    res = host.run(_spec(5, fault=fault))
    assert not res.ok and res.attempts == 3
    row = res.to_row()
    assert row["episode_key"] == "test-s7-000005" and row["attempts"] == 3
    if fault == "error_always":
        assert "ValueError: poison spec test-s7-000005" in row["error"]
    else:
        assert "signal SIGKILL" in row["error"]
    assert "working on test-s7-000005" in row["stderr_tail"]
    nxt = host.run(_spec(6))
    assert nxt.ok and nxt.attempts == 1
    host.close()


def test_backend_that_cannot_start(tmp_path):
    host = _host(tmp_path, attempts=2, options={"fail_start": True})
    res = host.run(_spec(8))
    assert not res.ok and res.fatal
    assert "backend failed to start: RuntimeError: this backend was told not to start" in res.error
    host.close()


def test_startup_timeout(tmp_path):
    host = WorkerHost(HostConfig(backend="faulty", worker_module="tests.actors.sleepy_start", attempts=1,
                                 startup_timeout_s=2, scratch_dir=str(tmp_path)))
    t0 = time.monotonic()
    res = host.run(_spec(9))
    assert not res.ok and "start-up timeout" in res.error and time.monotonic() - t0 < 15
    host.close()


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="attempts: must be >= 1, got 0"):
        HostConfig(attempts=0)
    with pytest.raises(ValueError, match="unknown backend 'unity'; choose one of"):
        WorkerHost(HostConfig(backend="unity"))


@pytest.mark.ray
def test_worker_host_as_a_ray_data_actor_pool(tmp_path):
    """WorkerHost as the GPU stage would use it: a callable class in map_batches over an actor pool."""
    ray = pytest.importorskip("ray")
    from ray.data import ActorPoolStrategy

    from raygen.datasets.episode import episode_from_row

    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        specs = [{"source": "test", "seed": 7, "index": i, "params": "{}"} for i in range(3)]
        specs.append({"source": "test", "seed": 7, "index": 3, "params": '{"fault": "error_always"}'})
        cfg = HostConfig(backend="faulty", worker_module=FAULTY, attempts=2, scratch_dir=str(tmp_path))
        ds = ray.data.from_items(specs).map_batches(
            WorkerHost, fn_constructor_kwargs={"config": cfg}, batch_size=1, compute=ActorPoolStrategy(size=1),
            num_cpus=0.5,
        )
        rows = {r["episode_key"]: r for r in ds.take_all()}
    finally:
        ray.shutdown()
    assert sorted(rows) == [f"test-s7-00000{i}" for i in range(4)]
    bad = rows.pop("test-s7-000003")
    assert "poison spec" in bad["error"] and bad["attempts"] == 2
    for key, row in rows.items():
        assert row["error"] == ""
        ep = episode_from_row(row)
        assert ep.episode_key == key and ep.cameras["cam_wrist"].depth.dtype == np.uint16


def test_child_exits_when_its_host_is_killed(tmp_path):
    """A Ray actor can be SIGKILLed without running finalizers: its child must not outlive it."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from raygen.actors.host import HostConfig, WorkerHost\n"
        "from raygen.actors.spec import EpisodeSpec\n"
        f"h = WorkerHost(HostConfig(backend='faulty', worker_module='{FAULTY}', scratch_dir=sys.argv[1]))\n"
        "assert h.run(EpisodeSpec('test', 7, 0)).ok\n"
        "print(h.child_pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    os.kill(child, 0)  # alive
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail(f"child {child} outlived its killed host")
    # a killed host leaves its scratch behind; the next host on the node removes it, and only it
    stale = [p for p in tmp_path.iterdir() if p.name.startswith(f"raygen-host-{proc.pid}-")]
    assert len(stale) == 1 and any(stale[0].rglob("*")), list(tmp_path.iterdir())
    alive = tmp_path / f"raygen-host-{os.getpid()}-keep"
    alive.mkdir()
    other = tmp_path / "raygen-hostile-1"
    other.mkdir()
    host = WorkerHost(HostConfig(backend="faulty", worker_module=FAULTY, scratch_dir=str(tmp_path)))
    try:
        assert not stale[0].exists()
        assert alive.exists() and other.exists() and host.scratch.exists()
    finally:
        host.close()


def test_protocol_garbage_and_fatal_start_up(tmp_path):
    """A child that writes garbage on the protocol pipe is an error row, not an exception; a backend
    that refuses to start is not retried and the row says it is fatal."""
    host = _host(tmp_path, attempts=2)
    res = host.run(_spec(10, fault="garbage"))
    assert not res.ok and "broke the protocol" in res.error and res.attempts == 2
    host.close()
    host = _host(tmp_path, attempts=3, options={"fail_start": True})
    res = host.run(_spec(11))
    assert not res.ok and res.fatal and res.attempts == 1 and res.to_row()["fatal"] is True
    host.close()
