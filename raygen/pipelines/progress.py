"""The driver's one progress display: episodes done, accepted and rejected, the rate and the ETA.

On a terminal it is a bar redrawn in place (twice a second); otherwise (a log file, a Ray job's driver
log, CI) it is one log line every ``interval_s`` seconds while something changes and a heartbeat every
``heartbeat_s`` while nothing does, so the output grows with the minutes of a run, not with its shards or
Ray Data's operators. A background thread draws it, so it keeps time while the driver waits on the stream.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

logger = logging.getLogger("raygen.progress")

__all__ = ["ProgressDisplay", "format_duration"]


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressDisplay:
    """Counts come in through :meth:`update` (and ``pending_rejects``, polled); a thread draws them."""

    BAR = 24

    def __init__(self, total: int, *, stream: IO[str] | None = None, tty: bool | None = None,
                 interval_s: float = 5.0, heartbeat_s: float = 30.0,
                 pending_rejects: Callable[[], int] | None = None):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else getattr(self.stream, "isatty", lambda: False)())
        self.interval_s, self.heartbeat_s = interval_s, heartbeat_s
        self.pending_rejects = pending_rejects or (lambda: 0)
        self.accepted = self.rejected = self.shards = 0
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last_counts: tuple[int, int, int, int] | None = None
        self._last_line = 0.0
        self._thread = threading.Thread(target=self._loop, name="raygen-progress", daemon=True)
        self._thread.start()

    def update(self, *, accepted: int, rejected: int, shards: int) -> None:
        with self._lock:
            self.accepted, self.rejected, self.shards = accepted, rejected, shards

    def _counts(self) -> tuple[int, int, int, int]:
        with self._lock:
            rejected = self.rejected + self.pending_rejects()
            return self.accepted + rejected, self.accepted, rejected, self.shards

    def text(self) -> str:
        done, accepted, rejected, shards = self._counts()
        elapsed = time.monotonic() - self.t0
        rate = 60.0 * done / elapsed if elapsed > 0 and done else 0.0
        eta = (self.total - done) / rate * 60.0 if rate else float("nan")
        return (f"{done}/{self.total} episodes ({accepted} accepted, {rejected} rejected), {shards} shards, "
                f"{rate:.1f}/min, elapsed {format_duration(elapsed)}, ETA {format_duration(eta)}")

    def _draw(self, final: bool = False) -> None:
        text, counts = self.text(), self._counts()
        now = time.monotonic()
        if self.tty:
            done = min(self.total, counts[0])
            filled = int(self.BAR * done / self.total) if self.total else self.BAR
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.BAR - filled)}] {text}\033[K" + ("\n" if final else ""))
            self.stream.flush()
        elif final or (counts != self._last_counts and now - self._last_line >= self.interval_s) or (
                now - self._last_line >= self.heartbeat_s):
            logger.info("progress: %s", text)
            self._last_line, self._last_counts = now, counts

    def _loop(self) -> None:
        step = 0.5 if self.tty else min(1.0, self.interval_s)
        while not self._stop.wait(step):
            try:
                self._draw()
            except Exception:  # a display must never take the run down
                logger.debug("progress display failed", exc_info=True)

    def close(self) -> None:
        """Stop the thread and draw the final state once; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._draw(final=True)
