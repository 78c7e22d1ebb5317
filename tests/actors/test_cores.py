"""Simulator cores: claims between real processes, release on death, floating simulators, stage pinning."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from raygen.actors import cores as C
from raygen.actors.host import HostConfig, WorkerHost
from raygen.actors.spec import EpisodeSpec

ALLOWED = frozenset(os.sched_getaffinity(0)) if C.supported() else frozenset()
pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs Linux and at least 2 cores")
TOP = max(ALLOWED) if ALLOWED else 0


@pytest.fixture(autouse=True)
def claims(tmp_path, monkeypatch):
    folder = tmp_path / "claims"
    monkeypatch.setenv(C.CLAIMS_DIR_ENV, str(folder))
    return folder


def _claimant(n: int) -> tuple[subprocess.Popen, list[int]]:
    """Another process that claims ``n`` cores and holds them until killed."""
    code = (f"import json, time; from raygen.actors.cores import claim_cores; c = claim_cores({n}); "
            "print(json.dumps(c.cores), flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def test_claim_takes_the_top_core_and_leaves_one_for_the_stages(claims):
    proc, got = _claimant(1)
    try:
        assert got == [TOP]
        assert (claims / f"core-{TOP}").read_text() == str(proc.pid)
        node = C.node_cores()
        assert node.claimed == {TOP} and node.pinning
        assert C.StageCores().cores() == ALLOWED - {TOP}
        # asking for every core would leave none for the stages: this simulator floats instead
        mine = C.claim_cores(len(ALLOWED))
        assert not mine and mine.floating is not None and mine.floating.exists()
        node = C.node_cores()
        assert node.floating == 1 and not node.pinning
        assert C.StageCores().cores() == ALLOWED  # nobody is pinned while a simulator floats
        mine.release()
        assert not mine.floating and C.node_cores().pinning and not list(claims.glob("floating-*"))
    finally:
        _kill(proc)


def test_a_dead_claimant_frees_its_cores_however_it_died(claims):
    proc, got = _claimant(1)
    assert got == [TOP]
    _kill(proc)  # SIGKILL: no chance to release
    assert C.node_cores().claimed == frozenset()  # its pid is dead
    claim = C.claim_cores(1)  # and the kernel dropped its flock
    try:
        assert claim.cores == [TOP]
        assert (claims / f"core-{TOP}").read_text() == str(os.getpid())
    finally:
        claim.release()
    assert (claims / f"core-{TOP}").read_text() == "" and C.node_cores().claimed == frozenset()


def test_floating_files_of_killed_hosts_are_swept(claims):
    claims.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (claims / "floating-1-deadbeef").write_text(dead.stdout.strip())
    assert C.node_cores().floating == 0  # a dead owner does not count
    claim = C.claim_cores(1)
    claim.release()
    assert not (claims / "floating-1-deadbeef").exists()


def _thread_affinities(pid: int) -> set[frozenset[int]]:
    out = set()
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out.add(frozenset(os.sched_getaffinity(int(t))))
        except ProcessLookupError:  # a thread that ended meanwhile
            pass
    return out


def test_place_pins_the_child_and_unpins_it_while_another_simulator_floats(claims, tmp_path):
    claim = C.claim_cores(1)
    # a child with a thread that sets its own cores (as Mesa's llvmpipe threads do) once told to
    widen = tmp_path / "widen"
    code = ("import os, threading, time\n"
            "def w():\n"
            f"    while not os.path.exists({str(widen)!r}): time.sleep(0.02)\n"
            f"    os.sched_setaffinity(0, {set(ALLOWED)!r})\n"
            f"    open({str(widen)!r} + '.done', 'w').close(); time.sleep(60)\n"
            "threading.Thread(target=w, daemon=True).start(); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert claim.place(child.pid) == {TOP}
        assert os.sched_getaffinity(child.pid) == {TOP}
        while len(os.listdir(f"/proc/{child.pid}/task")) < 2:
            time.sleep(0.02)
        assert claim.place(child.pid) == {TOP} and _thread_affinities(child.pid) == {frozenset({TOP})}
        widen.touch()
        while not (tmp_path / "widen.done").exists():
            time.sleep(0.02)
        assert ALLOWED in _thread_affinities(child.pid)
        assert claim.place(child.pid) == {TOP} and _thread_affinities(child.pid) == {frozenset({TOP})}
        proc, got = _claimant(len(ALLOWED))  # finds no room: floats
        try:
            assert got == [] and C.node_cores().floating == 1
            assert claim.place(child.pid) == ALLOWED and os.sched_getaffinity(child.pid) == ALLOWED
        finally:
            _kill(proc)
        assert claim.place(child.pid) == {TOP} and os.sched_getaffinity(child.pid) == {TOP}
    finally:
        child.kill()
        child.wait()
        claim.release()


def test_stage_cores_pin_every_thread_and_restore_them(claims):
    import threading

    started = threading.Event()
    stop = threading.Event()

    def worker():
        started.set()
        stop.wait(30)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    started.wait()
    proc, got = _claimant(1)
    stage = C.StageCores()
    try:
        assert stage.apply() == ALLOWED - {TOP}
        assert _thread_affinities(os.getpid()) == {ALLOWED - {TOP}}  # the other thread too
    finally:
        stage.restore()
        _kill(proc)
        stop.set()
    assert _thread_affinities(os.getpid()) == {ALLOWED}
    assert C.StageCores(enabled=False).apply() is None


def test_worker_host_pins_its_child_and_reports_the_cores(tmp_path, claims):
    host = WorkerHost(HostConfig(backend="faulty", worker_module="tests.actors.faulty_worker", cores=1,
                                 scratch_dir=str(tmp_path / "scratch")))
    try:
        res = host.run(EpisodeSpec("test", 7, 0))
        assert res.ok and res.cores == str(TOP) and res.to_row()  # to_row puts it into the metrics
        assert res.episode.metrics["host.cores"] == str(TOP)
        assert os.sched_getaffinity(host.child_pid) == {TOP}
        # the host's own threads (reading episodes back) keep off the child's core
        assert os.sched_getaffinity(0) == ALLOWED - {TOP}
        # a second host on this node finds no room: it floats, and the first stops pinning its child
        other = WorkerHost(HostConfig(backend="faulty", worker_module="tests.actors.faulty_worker", cores=1,
                                      scratch_dir=str(tmp_path / "scratch")))
        try:
            assert not other.claim and other.run(EpisodeSpec("test", 7, 1)).cores == ""
            res = host.run(EpisodeSpec("test", 7, 2))
            assert res.ok and res.cores == "" and os.sched_getaffinity(host.child_pid) == ALLOWED
        finally:
            other.close()
        assert host.run(EpisodeSpec("test", 7, 3)).cores == str(TOP)
    finally:
        host.close()
    assert C.node_cores().claimed == frozenset()  # released on close
    assert os.sched_getaffinity(0) == ALLOWED  # and this process has its cores back
