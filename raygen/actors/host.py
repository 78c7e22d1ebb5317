"""WorkerHost: a Ray Data callable class that hosts ONE simulator in a supervised child process.

    ds.map_batches(WorkerHost, fn_constructor_kwargs={"config": HostConfig(backend="bullet")},
                   batch_size=1, compute=ActorPoolStrategy(...), num_cpus=..., num_gpus=...)

The host starts ``<python> -m raygen.actors.<backend>.worker``, waits for its
ready handshake, sends it one episode spec at a time and reads the episode
back from a per-host scratch folder. It restarts a child that died, kills one
that hangs (separate start-up and episode timeouts), retries up to
``attempts`` times, and then returns an error row instead of raising, so one
poison episode never stops a run.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import raygen
from raygen._rows import batch_to_row, rows_to_batch
from raygen.actors._child import OPTIONS_ENV, PROTO_ENV
from raygen.actors._episode_io import read_episode
from raygen.actors.cores import CoreClaim, StageCores, claim_cores, pid_alive
from raygen.actors.registry import worker_module
from raygen.actors.spec import EpisodeFailed, EpisodeSpec
from raygen.datasets.episode import Episode, EpisodeValidationError, episode_to_row, validate_episode

logger = logging.getLogger(__name__)

__all__ = ["HostConfig", "HostResult", "WorkerHost"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS")
_TAIL_LINES = 40


@dataclass(frozen=True)
class HostConfig:
    """How a WorkerHost runs its child."""

    backend: str = "bullet"
    """Registered backend name (bullet, isaac, ...)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Backend options passed to the child (resolution, renderer, task parameters, ...)."""
    python: str | None = None
    """Interpreter for the child, e.g. Isaac Sim's python.sh; None = the host's own."""
    worker_module: str | None = None
    """Override the module run with ``-m`` (tests use this for a fault-injecting backend)."""
    attempts: int = 3
    """Tries per episode (a crash, hang or error counts as one) before an error row is returned."""
    episode_timeout_s: float = 600.0
    """A child that takes longer for one episode is killed (and the episode retried)."""
    startup_timeout_s: float = 180.0
    """A child that is not ready after this long is killed (Isaac Sim needs 40-90 s)."""
    cpu_threads: int = 1
    """Thread cap for the child's numeric libraries (OMP/MKL/OpenBLAS)."""
    scratch_dir: str | None = None
    """Parent folder for this host's scratch; None = the system temp folder."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment variables for the child."""
    stop_file: str | None = None
    """When this file exists, remaining specs are answered with a "stopped" row without simulating."""
    cores: int = 0
    """Whole cores of the node to claim for the child (raygen.actors.cores); 0 = leave it unpinned. The host's
    own threads then stay off them too."""

    def __post_init__(self) -> None:
        problems = []
        if self.attempts < 1:
            problems.append(f"attempts: must be >= 1, got {self.attempts}")
        if self.episode_timeout_s <= 0 or self.startup_timeout_s <= 0:
            problems.append("episode_timeout_s and startup_timeout_s must be > 0")
        if self.cpu_threads < 1:
            problems.append(f"cpu_threads: must be >= 1, got {self.cpu_threads}")
        if self.cores < 0:
            problems.append(f"cores: must be >= 0, got {self.cores}")
        if problems:
            raise ValueError("HostConfig: " + "; ".join(problems))


@dataclass
class HostResult:
    """One spec's outcome: an episode, or why there is none."""

    episode_key: str
    episode: Episode | None = None
    error: str = ""
    fatal: bool = False
    """The simulator cannot start at all (every episode would fail the same way)."""
    stopped: bool = False
    """The run was stopping: not attempted, not a reject."""
    permanent: bool = False
    """The backend found the episode's input bad (EpisodeInputError): not retried."""
    attempts: int = 0
    stderr_tail: str = ""
    timing: dict[str, float] = field(default_factory=dict)
    cores: str = ""
    """The cores the child was pinned to for this episode ("3,4"); empty when unpinned."""

    @property
    def ok(self) -> bool:
        return self.episode is not None

    def to_row(self) -> dict[str, Any]:
        meta = {"error": self.error, "attempts": self.attempts, "host_timing": json.dumps(self.timing),
                "fatal": self.fatal, "stopped": self.stopped}
        if self.episode is not None:
            self.episode.metrics["host.attempts"] = self.attempts
            self.episode.metrics["host.episode_s"] = float(self.timing.get("host_total_s", 0.0))
            self.episode.metrics["host.cpu_s"] = float(self.timing.get("cpu_s", 0.0))
            self.episode.metrics["host.cores"] = self.cores
            return {**episode_to_row(self.episode), **meta, "stderr_tail": ""}
        return {"episode_key": self.episode_key, **meta, "stderr_tail": self.stderr_tail}


class _StartupError(RuntimeError):
    pass


class _ChildDied(RuntimeError):
    pass


class _FatalStartup(_StartupError):
    """The backend itself refused to start (missing SDK, bad options): retrying cannot help."""


class _Child:
    """One running worker process and its two protocol pipes."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, tag: list[str]):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {**env, PROTO_ENV: f"{to_child_r},{from_child_w}"}
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._out = os.fdopen(to_child_w, "w", encoding="utf-8", buffering=1)
        self._in = from_child_r
        self._buf = b""
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._tag = tag  # shared, mutable: the episode the host is working on
        self.cpu_total = 0.0
        """CPU-seconds the child reported in its last message."""
        self.cpu_billed = 0.0
        """The part of it already billed to episodes."""
        self._log_thread = threading.Thread(target=self._forward_logs, daemon=True)
        self._log_thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _forward_logs(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            logger.info("[%s pid %d] %s", self._tag[0], self.proc.pid, line)

    def send(self, msg: dict[str, Any]) -> None:
        try:
            self._out.write(json.dumps(msg) + "\n")
            self._out.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _ChildDied(f"child pid {self.pid} is gone ({exc})") from exc

    def recv(self, timeout: float) -> dict[str, Any] | None:
        """Next message, or None after ``timeout`` seconds; raises _ChildDied on EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._in], [], [], min(left, 1.0))
            if not ready:
                if self.proc.poll() is not None:  # dead, even if a grandchild still holds the pipe open
                    raise _ChildDied(f"child pid {self.pid} exited with {_describe_exit(self.proc.returncode)}")
                continue
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                try:
                    code = self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    code = None
                raise _ChildDied(f"child pid {self.pid} closed its protocol pipe; exited with "
                                 f"{_describe_exit(code)}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            raise _ChildDied(f"child pid {self.pid} broke the protocol: {line[:200]!r}") from None
        if isinstance(msg, dict) and isinstance(msg.get("cpu_total_s"), int | float):
            self.cpu_total = float(msg["cpu_total_s"])
        return msg

    def stderr_tail(self) -> str:
        if self.proc.poll() is not None:
            self._log_thread.join(timeout=1.0)  # let the last lines of a dead child arrive
        return "\n".join(self.tail)

    def kill(self) -> None:
        _kill_group(self.proc)
        self._close_pipes()

    def stop(self, grace_s: float = 10.0) -> None:
        try:
            self.send({"type": "shutdown"})
            self.proc.wait(timeout=grace_s)
        except (_ChildDied, subprocess.TimeoutExpired):
            pass
        _kill_group(self.proc)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for close in (self._out.close, lambda: os.close(self._in)):
            try:
                close()
            except OSError:
                pass


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (its helpers too, even after the child itself died)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if proc.poll() is None:
            proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        logger.error("child pid %d did not die after SIGKILL", proc.pid)


def _reaped_cpu() -> float:
    """CPU-seconds of this process's children that have ended and been waited for."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _cleanup(child_ref: list[_Child | None], scratch: Path, claim: CoreClaim, stage_cores: StageCores) -> None:
    child = child_ref[0]
    if child is not None:
        child.stop(grace_s=5.0)
        child_ref[0] = None
    claim.release()
    stage_cores.restore()  # a host used in-process (bench, tests) gives its process its cores back
    shutil.rmtree(scratch, ignore_errors=True)


_SCRATCH_PREFIX = "raygen-host-"


def sweep_stale_scratch(base: str | Path | None = None) -> list[Path]:
    """Delete scratch folders whose host process is gone; returns what was removed.

    Ray kills actors without running finalizers (Ctrl-C, ``ray stop``, a node shutdown), so a host's
    scratch can outlive it. Every host sweeps its scratch parent when it starts and the driver sweeps at
    the end of a run; a folder whose owning pid is still alive is never touched.
    """
    base = Path(base) if base else Path(tempfile.gettempdir())
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(_SCRATCH_PREFIX) or not entry.is_dir():
            continue
        pid_text = entry.name[len(_SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        logger.info("removed %d stale host scratch folder(s) under %s", len(removed), base)
    return removed


class WorkerHost:
    """Hosts one backend process; ``run(spec)`` returns a HostResult, ``__call__`` serves Ray Data."""

    def __init__(self, config: HostConfig | None = None, **overrides: Any):
        if config is None:
            config = HostConfig(**overrides)
        elif overrides:
            raise TypeError("pass either config or keyword overrides, not both")
        self.config = config
        self.module = config.worker_module or worker_module(config.backend)
        base = Path(config.scratch_dir) if config.scratch_dir else None
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        sweep_stale_scratch(base)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=base))
        self._child_ref: list[_Child | None] = [None]
        self._tag = ["-"]
        self._starts = 0
        self._lock = threading.Lock()
        """Held while the child works on an episode: a second call (Ray Data runs two per host) hands the
        child its next spec as soon as it is free, while the first reads its episode back."""
        self._unbilled_cpu = 0.0  # CPU of children that died starting up, for the next episode
        self.backend_info: dict[str, Any] = {}
        self.claim = claim_cores(config.cores)
        """The child's cores (empty: unpinned, e.g. when no core would be left for the stages)."""
        self._stage_cores = StageCores(enabled=bool(config.cores))
        self._finalizer = weakref.finalize(self, _cleanup, self._child_ref, self.scratch, self.claim,
                                           self._stage_cores)

    # ------------------------------------------------------------------ child lifecycle
    def _child_env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.env)
        threads = str(self.config.cpu_threads)
        for var in _THREAD_VARS:
            env[var] = threads
        for sub in ("cache", "tmp"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env["XDG_CACHE_HOME"] = str(home / "cache")
        env["RAYGEN_CACHE_DIR"] = str(home / "cache")
        env["TMPDIR"] = str(home / "tmp")
        env[OPTIONS_ENV] = json.dumps({**self.config.options, "cpu_threads": self.config.cpu_threads})
        # the child must import raygen even from another interpreter (Isaac Sim's python.sh)
        root = str(Path(raygen.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        # Ray sets CUDA_VISIBLE_DEVICES in the actor; the child inherits exactly that GPU
        return env

    def _start_child(self) -> _Child:
        self._starts += 1
        home = self.scratch / f"child-{self._starts}"
        home.mkdir(parents=True, exist_ok=True)
        argv = [self.config.python or sys.executable, "-m", self.module]
        reaped0 = _reaped_cpu()  # a child that fails to start is billed to the next episode
        child = _Child(argv, self._child_env(home), home, self._tag)
        placed = self._place(child)  # before it starts threads or helpers: they inherit its cores
        logger.info("started %s worker pid %d (%s)%s", self.config.backend, child.pid, " ".join(argv),
                    f" on cores {sorted(placed)}" if placed else "")
        try:
            msg = child.recv(self.config.startup_timeout_s)
        except _ChildDied as exc:
            tail = child.stderr_tail()
            child.kill()
            self._unbilled_cpu += max(0.0, _reaped_cpu() - reaped0)
            raise _StartupError(f"{exc} during start-up:\n{tail}") from None
        if msg is None:
            tail = child.stderr_tail()
            child.kill()
            self._unbilled_cpu += max(0.0, _reaped_cpu() - reaped0)
            raise _StartupError(f"not ready after {self.config.startup_timeout_s:.0f} s (start-up timeout); "
                                f"killed pid {child.pid}\n{tail}")
        if msg.get("type") == "fatal":
            child.stop(grace_s=2.0)
            self._unbilled_cpu += max(0.0, _reaped_cpu() - reaped0)
            raise _FatalStartup(f"backend failed to start: {msg.get('error')}")
        if msg.get("type") != "ready":
            child.kill()
            self._unbilled_cpu += max(0.0, _reaped_cpu() - reaped0)
            raise _StartupError(f"expected a ready handshake, got {msg!r}")
        self.backend_info = {k: msg.get(k) for k in ("backend", "version", "capabilities", "pid")}
        return child

    def _place(self, child: _Child) -> frozenset[int] | None:
        try:
            return self.claim.place(child.pid)
        except OSError as exc:
            logger.warning("could not pin worker pid %d to cores %s: %s", child.pid, self.claim.cores, exc)
            return None

    @property
    def child_pid(self) -> int | None:
        child = self._child_ref[0]
        return child.pid if child is not None else None

    def close(self) -> None:
        """Shut the child down cleanly and delete scratch; safe to call twice."""
        self._finalizer()

    def __del__(self) -> None:
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()

    # ------------------------------------------------------------------ episodes
    def run(self, spec: EpisodeSpec) -> HostResult:
        """Generate one episode, retrying crashes, hangs and errors; never raises for a bad episode."""
        key = spec.episode_key
        result = HostResult(episode_key=key)
        self._stage_cores.apply()  # reading episodes back stays off the simulators' cores
        if self.config.stop_file and os.path.exists(self.config.stop_file):
            result.error, result.stopped = "stopped before it started", True
            return result
        result.timing.update(host_total_s=0.0, cpu_s=0.0)
        for attempt in range(1, self.config.attempts + 1):
            result.attempts = attempt
            try:
                error = self._attempt(spec, attempt, result)
            except _FatalStartup as exc:
                result.error, result.fatal = f"start-up failed: {exc}", True
                logger.error("episode %s: %s", key, result.error)
                return result
            except Exception as exc:  # never let one episode take the run down
                logger.exception("episode %s: unexpected host error", key)
                error = f"host error: {type(exc).__name__}: {exc}"
            if error is None:
                result.error = ""
                return result
            result.error = error
            if result.permanent:
                if error.startswith(EpisodeFailed.PREFIX):  # expected in generation that can fail: no warning
                    logger.info("episode %s: %s", key, error)
                else:
                    logger.warning("episode %s: bad input, recorded as a reject without retrying: %s", key, error)
                return result
            if attempt < self.config.attempts:
                logger.warning("episode %s failed (attempt %d/%d), retrying: %s", key, attempt,
                               self.config.attempts, error.splitlines()[0])
        logger.error("episode %s failed %d times; returning an error row: %s", key, result.attempts,
                     result.error.splitlines()[0])
        return result

    def _bill(self, child: _Child, result: HostResult) -> None:
        """Bill the CPU the live child reported since the last bill (its every message carries it)."""
        result.timing["cpu_s"] += child.cpu_total - child.cpu_billed
        child.cpu_billed = child.cpu_total

    def _discard(self, child: _Child, result: HostResult, reaped0: float) -> None:
        """Kill a broken child and bill the CPU it used since its last bill: the kernel counts a child once it
        is reaped (here, or already while reading its exit), i.e. since ``reaped0``."""
        child.kill()
        result.timing["cpu_s"] += max(0.0, _reaped_cpu() - reaped0 - child.cpu_billed)
        self._child_ref[0] = None

    def _generate(self, spec: EpisodeSpec, out_dir: Path,
                  result: HostResult) -> tuple[str | None, dict[str, Any]]:
        """Under the lock: the child makes the episode into ``out_dir``; (error or None, its message)."""
        child = self._child_ref[0]
        if child is None:
            try:
                child = self._child_ref[0] = self._start_child()
            except _StartupError as exc:
                if isinstance(exc, _FatalStartup):
                    raise
                return f"start-up failed: {exc}", {}
            finally:
                result.timing["cpu_s"] += self._unbilled_cpu
                self._unbilled_cpu = 0.0
        placed = self._place(child)  # the node may have gained or lost a floating simulator since
        result.cores = ",".join(str(c) for c in sorted(placed)) if placed and placed != self.claim.allowed else ""
        self._tag[0] = spec.episode_key
        shutil.rmtree(out_dir, ignore_errors=True)
        reaped0 = _reaped_cpu()
        try:
            child.send({"type": "episode", "spec": spec.to_dict(), "out_dir": str(out_dir)})
            msg = child.recv(self.config.episode_timeout_s)
        except _ChildDied as exc:
            result.stderr_tail = child.stderr_tail()
            self._discard(child, result, reaped0)  # its helpers and our pipe ends go with it
            shutil.rmtree(out_dir, ignore_errors=True)
            return f"{exc} during episode {spec.episode_key}", {}
        if msg is None:
            result.stderr_tail = child.stderr_tail()
            self._discard(child, result, reaped0)
            shutil.rmtree(out_dir, ignore_errors=True)
            return (f"episode timeout: no result after {self.config.episode_timeout_s:.0f} s; "
                    f"killed pid {child.pid}"), {}
        self._bill(child, result)
        if msg.get("type") == "error":
            result.stderr_tail = child.stderr_tail()
            result.permanent = bool(msg.get("permanent"))
            shutil.rmtree(out_dir, ignore_errors=True)
            return f"{msg.get('error')}\n{msg.get('traceback', '')}".strip(), {}
        return None, msg

    def _attempt(self, spec: EpisodeSpec, attempt: int, result: HostResult) -> str | None:
        """One try; returns None on success (result filled in) or the error text."""
        out_dir = self.scratch / "episodes" / f"{spec.episode_key}-a{attempt}"
        with self._lock:  # the child is ours until it has written this episode
            t_held = time.perf_counter()
            try:
                error, msg = self._generate(spec, out_dir, result)
            finally:
                result.timing["host_total_s"] += time.perf_counter() - t_held
                self._tag[0] = "-"
        if error is not None:
            return error
        result.timing.update(msg.get("timing", {}))
        t0 = time.perf_counter()
        try:
            episode = read_episode(out_dir)
        except Exception as exc:
            return f"could not read the episode the child wrote: {type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
            result.timing["read_s"] = time.perf_counter() - t0
            result.timing["host_total_s"] += result.timing["read_s"]
        if episode.episode_key != spec.episode_key:
            return f"the backend returned episode {episode.episode_key!r} for spec {spec.episode_key!r}"
        try:
            validate_episode(episode)
        except EpisodeValidationError as exc:
            return str(exc)
        result.episode = episode
        return None

    # ------------------------------------------------------------------ Ray Data
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """One batch of specs (columns source, seed, index, params) -> one batch of episode/error rows."""
        rows = [self.run(EpisodeSpec.from_dict(batch_to_row(batch, i))).to_row() for i in range(len(batch["index"]))]
        return rows_to_batch(rows)
