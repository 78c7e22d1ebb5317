"""The child side of the host <-> worker protocol. Imports numpy and the standard library only.

Messages are JSON lines on two pipes the host passes in (their fds in the
RAYGEN_PROTO_FDS environment variable), so whatever a simulator prints on
stdout cannot corrupt the protocol; stdout and stderr are the child's log.

    child -> host  {"type": "ready", "backend", "version", "capabilities", "pid"}
    host  -> child {"type": "episode", "spec": {...}, "out_dir": "..."}
    child -> host  {"type": "done", "episode_key", "path", "timing": {...}}
                   {"type": "error", "episode_key", "error", "traceback", "permanent"}
                   (permanent: the input is bad, EpisodeInputError; retrying cannot help)
    host  -> child {"type": "shutdown"}
    child -> host  {"type": "fatal", "error", "traceback"}   (the backend could not start)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from raygen.actors._episode_io import write_episode
from raygen.actors.spec import EpisodeInputError, EpisodeSpec
from raygen.datasets.episode import Episode

__all__ = ["Backend", "OPTIONS_ENV", "PROTO_ENV", "serve"]

PROTO_ENV = "RAYGEN_PROTO_FDS"
OPTIONS_ENV = "RAYGEN_WORKER_OPTIONS"
logger = logging.getLogger("raygen.worker")


class Backend(Protocol):
    """What a simulator backend implements inside the child process."""

    name: str
    version: str

    def capabilities(self) -> dict[str, Any]: ...

    def run_episode(self, spec: EpisodeSpec) -> Episode: ...

    def close(self) -> None: ...


def _watch_parent(parent: int) -> None:
    """Exit when the host dies, even if the simulator is stuck and never reads the pipe again."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(3)


def serve(make_backend: Callable[[dict[str, Any]], Backend]) -> int:
    """Run the worker loop: start the backend, say ready, then answer episode requests until shutdown."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        rfd, wfd = (int(x) for x in os.environ[PROTO_ENV].split(","))
    except (KeyError, ValueError):
        sys.stderr.write(f"this is a raygen worker; it is started by raygen's WorkerHost ({PROTO_ENV} is not set)\n")
        return 2
    inp = os.fdopen(rfd, "r", encoding="utf-8")
    out = os.fdopen(wfd, "w", encoding="utf-8", buffering=1)

    def send(msg: dict[str, Any]) -> None:
        msg["cpu_total_s"] = time.process_time()  # the host bills the child's CPU to its episodes
        out.write(json.dumps(msg) + "\n")
        out.flush()

    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    options = json.loads(os.environ.get(OPTIONS_ENV, "{}"))
    try:
        backend = make_backend(options)
    except Exception as exc:
        send({"type": "fatal", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1
    send({"type": "ready", "backend": backend.name, "version": backend.version,
          "capabilities": backend.capabilities(), "pid": os.getpid()})
    try:
        for line in inp:
            msg = json.loads(line)
            if msg["type"] == "shutdown":
                break
            if msg["type"] != "episode":
                logger.warning("ignoring unknown message type %r", msg["type"])
                continue
            spec = EpisodeSpec.from_dict(msg["spec"])
            t0 = time.perf_counter()
            try:
                episode = backend.run_episode(spec)
                t1 = time.perf_counter()
                write_episode(episode, Path(msg["out_dir"]))
                t2 = time.perf_counter()
            except EpisodeInputError as exc:
                send({"type": "error", "episode_key": spec.episode_key, "error": str(exc), "traceback": "",
                      "permanent": True})
                continue
            except Exception as exc:
                send({"type": "error", "episode_key": spec.episode_key, "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()})
                continue
            send({"type": "done", "episode_key": spec.episode_key, "path": msg["out_dir"],
                  "timing": {"episode_s": t1 - t0, "write_s": t2 - t1}})
    finally:
        backend.close()
    return 0
