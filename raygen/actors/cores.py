"""Cores of their own for the simulators, and the rest of the node for raygen's CPU stages (Linux).

A busy neighbour on a simulator's core costs it far more than its CPU share: measured on 2 cores, an
SVT-AV1 encoder loop beside a PyBullet child made the child use 40% more CPU per episode and preempted it
~1000 times a second (its episode took 2.6 s instead of 1.7 s), whatever the encoder's nice value or
scheduling class. The same encoder pinned to the other core cost the child ~15% (what any busy sibling
costs here). So each WorkerHost claims whole cores on its node for its child, and the stage actors and
the hosts' own threads keep to the cores nobody claimed.

Claims are files in a node-local folder: ``core-<n>`` for a claimed core, ``floating-<pid>-<id>`` for a
simulator that found no cores to claim. The owner holds an exclusive ``flock`` on its file (the kernel
drops it when the owner dies, however it dies) and writes its pid into it; readers ignore dead pids.

The rule, per node: a host claims only while at least one core stays unclaimed for the stages. When a
simulator could not claim (more simulators than spare cores), pinning would crowd that simulator and
every stage onto the unclaimed cores, so while one floats nobody is pinned: the stages use every core
and the claimed hosts let their children use every core too, until it is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["CoreClaim", "NodeCores", "StageCores", "claim_cores", "node_cores", "supported"]

CLAIMS_DIR_ENV = "RAYGEN_CORE_CLAIMS_DIR"
"""Overrides the claims folder (tests use a folder of their own)."""


def supported() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


@functools.cache
def started_with() -> frozenset[int]:
    """The cores this process could use before raygen pinned any of its threads (read once)."""
    return frozenset(os.sched_getaffinity(0)) if supported() else frozenset()


def claims_dir() -> Path:
    return Path(os.environ.get(CLAIMS_DIR_ENV) or Path(tempfile.gettempdir()) / "raygen-cores")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this node (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _owner(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class NodeCores:
    """What the live hosts of this node hold."""

    claimed: frozenset[int]
    floating: int
    """Simulators running without cores of their own."""

    @property
    def pinning(self) -> bool:
        return self.floating == 0


def node_cores() -> NodeCores:
    claimed, floating = set(), 0
    try:
        entries = list(claims_dir().iterdir())
    except OSError:
        return NodeCores(frozenset(), 0)
    for f in entries:
        kind, _, suffix = f.name.partition("-")
        if not (kind == "core" and suffix.isdigit() or kind == "floating"):
            continue
        pid = _owner(f)
        if pid is None or not pid_alive(pid):
            continue
        if kind == "core":
            claimed.add(int(suffix))
        else:
            floating += 1
    return NodeCores(frozenset(claimed), floating)


def _hold(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path`` with our pid written in it; None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


class CoreClaim:
    """Cores held by this process for its simulator until ``release()`` (or its death). An empty claim
    registers the simulator as floating (see the module doc)."""

    def __init__(self, cores: list[int], fds: list[int], allowed: frozenset[int], floating: Path | None = None):
        self.cores = cores
        self.allowed = allowed
        self.floating = floating
        """This simulator's floating-<pid> file (an empty claim that registers it)."""
        self._fds = fds

    def __bool__(self) -> bool:
        return bool(self.cores)

    def place(self, pid: int) -> frozenset[int] | None:
        """Keep process ``pid`` (the child) on the claimed cores while the node pins, else on every core;
        returns the cores it is on now (None: unpinned by us). Threads and processes it starts later
        inherit them, unless a library sets its threads' cores itself (Mesa's llvmpipe threads do), so
        call this right after starting it and before each episode: it sets every thread each time."""
        if not self.cores:
            return None
        target = frozenset(self.cores) if node_cores().pinning else self.allowed
        _pin_threads(pid, target)
        return target

    def release(self) -> None:
        if self.floating is not None:
            with contextlib.suppress(OSError):
                self.floating.unlink()
            self.floating = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            with contextlib.suppress(OSError):
                os.close(fd)  # drops the flock
        self.cores, self._fds = [], []


def claim_cores(n: int) -> CoreClaim:
    """Claim ``n`` whole cores of this node for this process's simulator, highest-numbered first (core 0
    takes most interrupts), leaving at least one allowed core unclaimed. When that is not possible the
    claim is empty and the simulator is registered as floating; ``n`` = 0 claims and registers nothing."""
    allowed = started_with()
    if n < 1 or not supported():
        return CoreClaim([], [], allowed)
    folder = claims_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        guard = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        logger.warning("cannot claim cores (folder %s: %s); the simulator runs unpinned", folder, exc)
        return CoreClaim([], [], allowed)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one claimant at a time on this node
        for f in folder.glob("floating-*"):  # of hosts killed without a chance to release
            pid = _owner(f)
            if pid is not None and not pid_alive(pid):
                with contextlib.suppress(OSError):
                    f.unlink()
        taken = node_cores().claimed
        free = [c for c in sorted(allowed, reverse=True) if c not in taken]
        cores: list[int] = []
        fds: list[int] = []
        if len(free) - n >= 1:
            for core in free:
                fd = _hold(folder / f"core-{core}") if len(cores) < n else None
                if fd is not None:
                    cores.append(core)
                    fds.append(fd)
        if len(cores) < n:
            CoreClaim([], fds, allowed).release()
            path = folder / f"floating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            fd = _hold(path)
            logger.info("no %d free core(s) of %d for this simulator: it floats, and while it does no simulator "
                        "of this node is pinned", n, len(allowed))
            return CoreClaim([], [fd] if fd is not None else [], allowed, floating=path if fd is not None else None)
        return CoreClaim(cores, fds, allowed)
    finally:
        os.close(guard)


class StageCores:
    """Keeps a stage process's threads off the simulators' cores; call ``apply()`` before each piece of work.

    Threads a pinned thread starts (encoder pools, FFmpeg's threads) inherit its cores. The set follows
    hosts that come and go; with nothing claimed, or a simulator floating, it is every core the process
    was started with.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and supported()
        self.allowed = started_with() if self.enabled else frozenset()
        self._pinned = False

    def cores(self) -> frozenset[int]:
        node = node_cores()
        free = self.allowed - node.claimed if node.pinning else self.allowed
        return free or self.allowed

    def apply(self) -> frozenset[int] | None:
        """Pin every thread of this process to the cores left to the stages; returns them (None: disabled)."""
        if not self.enabled:
            return None
        cores = self.cores()
        _pin_threads(os.getpid(), cores)  # all of them each time: libraries start threads of their own
        self._pinned = True
        return cores

    def restore(self) -> None:
        """Give every thread of this process back the cores it was started with (a driver after its run)."""
        if self._pinned:
            _pin_threads(os.getpid(), self.allowed)
            self._pinned = False


def _pin_threads(pid: int, cores: frozenset[int]) -> None:
    """Put every thread of process ``pid`` on ``cores``."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(tid, cores)
