"""The driver's progress display: a bar on a terminal, a line every few seconds elsewhere, and a run's whole
non-interactive output that grows with its minutes, not with Ray Data's operator tables."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raygen.pipelines.progress import ProgressDisplay, format_duration

REPO = Path(__file__).resolve().parents[2]


def test_terminal_bar_redraws_in_place():
    out = io.StringIO()
    d = ProgressDisplay(10, stream=out, tty=True)
    d.update(accepted=3, rejected=1, shards=1)
    time.sleep(0.7)
    d.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, redrawn with \r, ended once
    last = text.rsplit("\r", 1)[1]
    assert last.startswith("[#########" + "." * 15 + "] 4/10 episodes (3 accepted, 1 rejected), 1 shards")
    assert "ETA" in last


def test_log_lines_when_counts_change_and_a_heartbeat_when_they_do_not(caplog):
    caplog.set_level(logging.INFO, logger="raygen.progress")
    pending = [0]
    d = ProgressDisplay(5, stream=io.StringIO(), tty=False, interval_s=0.2, heartbeat_s=1.0,
                        pending_rejects=lambda: pending[0])
    time.sleep(0.5)  # the first line, then nothing changes
    d.update(accepted=1, rejected=0, shards=0)
    pending[0] = 2  # rejects a stage recorded but the driver has not folded yet count at once
    time.sleep(0.6)
    quiet = len(caplog.records)
    time.sleep(1.5)  # no change: only the heartbeat
    d.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("progress: 0/5 episodes")
    assert any("3/5 episodes (1 accepted, 2 rejected)" in x for x in lines)
    assert len(caplog.records) - quiet <= 3  # heartbeat(s) + the final line, not one per tick
    assert lines[-1].startswith("progress: 3/5 episodes")


def test_durations():
    assert [format_duration(x) for x in (5, 75, 7300, float("nan"))] == ["5s", "1m15s", "2h01m", "?"]


@pytest.mark.ray
def test_a_non_interactive_run_prints_a_few_dozen_lines(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "raygen.cli", "run", str(REPO / "configs" / "pick_place_local.yaml"), "--output",
           str(tmp_path / "ds"), "--set", "source.episodes=6", "--set", "source.width=32", "--set",
           "source.height=32", "--set", "source.task_params={steps_per_segment: 20}", "--set",
           "output.video_codec=libx264", "--set", "output.shard_size=2"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    minutes = (time.monotonic() - t0) / 60
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 0, "\n".join(lines[-30:])
    assert not any("logging_progress" in x or "Running Dataset" in x for x in lines), lines
    progress = [x for x in lines if "raygen.progress" in x]
    assert 2 <= len(progress) <= 2 + 12 * minutes + 1, progress  # a line per 5 s at most, plus start and end
    assert "6/6 episodes (6 accepted, 0 rejected), 3 shards" in progress[-1]
    assert len(lines) <= 25 + len(progress), lines
