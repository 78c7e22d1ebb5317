"""``raygen droid calibrate ROOT --out FILE``: every SVO's rectified calibration into a cache, once, on a GPU.

The ZED SDK needs CUDA even to read an SVO's calibration; run this once on a GPU node and every later run,
on CPUs or GPUs, takes its intrinsics from the file (``source.droid.calibration_cache``). One JSON line per
(episode, camera serial): fx, fy, cx, cy, distortion, baseline, resolution. Resumable: pairs already in the
file are skipped, each new line is flushed and fsynced as it is written, and a torn last line (a crash
mid-write) is cut before appending. An SVO the SDK cannot open is reported and left out (a later run tries
it again).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from raygen.actors.droid.calibration import load_cache
from raygen.actors.droid.raw import DroidFilter, EpisodeFiles, list_episodes
from raygen.actors.spec import EpisodeInputError
from raygen.actors.zed.svo import SvoReader, sdk
from raygen.datasets._layout import cut_torn_tail

logger = logging.getLogger(__name__)

__all__ = ["CalibrateReport", "calibrate"]


@dataclass
class CalibrateReport:
    episodes: int = 0
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"{self.episodes} episodes: {self.written} calibrations written, {self.skipped} already there, "
                 f"{len(self.failed)} failed"]
        lines += [f"  - {f}" for f in self.failed[:20]]
        return "\n".join(lines)


def calibrate(root: str, out: str | Path, filt: DroidFilter | None = None, cache_dir: Path | None = None
              ) -> CalibrateReport:
    """Write the calibration of every SVO under ``root`` (episodes ``filt`` keeps) to ``out``."""
    import tempfile

    sdk()  # fail at once, with what to install, before listing a large tree
    out = Path(out)
    refs, _ = list_episodes(root, filt or DroidFilter(outcome="all"))
    done: set[tuple[str, str]] = set()
    if out.exists():
        cut_torn_tail(out)
        done = set(load_cache(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    report = CalibrateReport(episodes=len(refs))
    cache = cache_dir or Path(tempfile.gettempdir())
    with open(out, "a", encoding="utf-8") as f:
        for ref in refs:
            files = EpisodeFiles(root, ref, cache)
            try:
                for serial in _svo_serials(files):
                    if (ref.uuid, serial) in done:
                        report.skipped += 1
                        continue
                    parts = ("recordings", "SVO", f"{serial}.svo")
                    try:
                        with SvoReader(files.path(*parts), files.rel(*parts)) as svo:
                            line = svo.calibration().record(ref.uuid, serial)
                    except (EpisodeInputError, OSError) as exc:
                        report.failed.append(str(exc))
                        logger.warning("%s", exc)
                        continue
                    f.write(json.dumps(line) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                    report.written += 1
            finally:
                files.cleanup()
    return report


def _svo_serials(files: EpisodeFiles) -> list[str]:
    """Serials of the SVOs in an episode's recordings/SVO folder."""
    return [name[:-4] for name in files.listdir("recordings", "SVO") if name.endswith(".svo")]
