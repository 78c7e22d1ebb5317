"""Camera intrinsics for DROID episodes without a GPU: four sources, first hit wins, the winner recorded.

Intrinsics are not in trajectory.h5 (except, optionally, in episodes recorded with later code) nor in the
metadata json; they live in the SVO files, which only the ZED SDK reads, and it needs CUDA. So, per
episode and camera (REFERENCE.md section 2):

  (a) ``cache``: the file ``raygen droid calibrate`` writes once on a GPU node (rectified fx, fy, cx, cy,
      distortion, baseline and resolution per episode and serial; JSON lines);
  (b) ``im128``: ``observation/camera/intrinsics/*`` of the episode's ``trajectory_im128.h5``;
  (c) ``file``: a file in the form the DROID team publishes,
      ``{episode_id: {serial: {"cameraMatrix": [fx, cx, fy, cy], "width", "height"}}}``;
  (d) ``h5``: ``observation/camera_intrinsics/<serial>_left`` of trajectory.h5.

All are for the rectified left image (the MP4s are rectified: zero distortion) at the recording's
resolution. A zero-filled entry (about 2% of the published file) counts as a miss. ``nominal`` is the
ZED model's ballpark, used only when the run says so (``missing_intrinsics: nominal``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CalibrationSources", "Intrinsics", "NOMINAL", "load_cache", "scale_k"]

logger = logging.getLogger(__name__)

NATIVE_SIZE = (1280, 720)
"""(width, height) DROID's ZED cameras recorded at (HD720)."""
NOMINAL = {  # rectified HD720 ballparks: ZED 2 (exterior), ZED Mini (wrist)
    "exterior": {"fx": 532.0, "fy": 532.0, "cx": 636.0, "cy": 344.0},
    "wrist": {"fx": 522.0, "fy": 522.0, "cx": 640.0, "cy": 360.0},
}
IM128_NAMES = {"wrist_left": "hand_camera_left", "exterior_1_left": "varied_camera_1_left",
               "exterior_2_left": "varied_camera_2_left"}
"""trajectory_im128.h5 names its cameras by role; varied cameras are numbered by sorted serial."""


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    source: str
    """cache, im128, file, h5 or nominal."""
    distortion: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    baseline_m: float | None = None

    @property
    def valid(self) -> bool:
        return all(np.isfinite([self.fx, self.fy, self.cx, self.cy])) and self.fx > 0 and self.fy > 0 and (
            self.width > 0 and self.height > 0)

    def k(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        """OpenCV K at ``width`` x ``height`` (default: the calibration's own resolution)."""
        k = np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
        if width is None or height is None:
            return k
        return scale_k(k, (self.width, self.height), (width, height))


def scale_k(k: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    """K for an image resized from ``src`` to ``dst`` (width, height), pixel centres at integers."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    out = np.array(k, dtype=np.float64)
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return out


def _from_k(k: np.ndarray, source: str, size: tuple[int, int] = NATIVE_SIZE) -> Intrinsics:
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    return Intrinsics(fx=float(k[0, 0]), fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]), width=size[0],
                      height=size[1], source=source)


def load_cache(path: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(episode id, serial) -> the cache line written by ``raygen droid calibrate``; later lines win."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"source.droid.calibration_cache: cannot read {path!r}: {exc}") from None
    lines = text.splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            _cache_entry(rec)  # every field there and a number
            out[(str(rec["episode_id"]), str(rec["serial"]))] = rec
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if i == len(lines) and not text.endswith("\n"):
                continue  # a torn last line (a crash mid-write): skipped
            raise ValueError(f"source.droid.calibration_cache: {path}: line {i} is not a calibration record "
                             f"({type(exc).__name__}: {exc})") from None
    return out


@dataclass
class CalibrationSources:
    """The run-wide sources (a), (c), loaded once per process; (b) and (d) come with each episode."""

    cache: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)
    missing: str = "reject"

    @classmethod
    def load(cls, cache_path: str | None, user_path: str | None, missing: str = "reject") -> CalibrationSources:
        user: dict[str, Any] = {}
        if user_path:
            try:
                user = json.loads(Path(user_path).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"source.droid.intrinsics_file: cannot read {user_path!r}: {exc}") from None
            if not isinstance(user, dict):
                raise ValueError(f"source.droid.intrinsics_file: {user_path}: expected "
                                 "{episode_id: {serial: {cameraMatrix: [fx, cx, fy, cy], width, height}}}")
        return cls(cache=load_cache(cache_path) if cache_path else {}, user=user, missing=missing)

    def resolve(self, uuid: str, camera: str, serial: str, im128: dict[str, np.ndarray] | None,
                h5: dict[str, np.ndarray]) -> tuple[Intrinsics | None, list[str]]:
        """The first valid intrinsics for one camera, and what each source said (for a reject's reason)."""
        tried: list[str] = []

        def take(candidate: Intrinsics | None, name: str, miss: str) -> Intrinsics | None:
            if candidate is None:
                tried.append(f"{name}: {miss}")
                return None
            if not candidate.valid:
                tried.append(f"{name}: zero or invalid ({candidate.fx}, {candidate.fy}, {candidate.cx}, "
                             f"{candidate.cy} at {candidate.width}x{candidate.height})")
                return None
            return candidate

        rec = self.cache.get((uuid, serial))
        got = take(_cache_entry(rec) if rec else None, "calibration cache", "no entry")
        if got is None:
            k = None if im128 is None else im128.get(IM128_NAMES[camera])
            got = take(None if k is None else _from_k(k, "im128"), "trajectory_im128.h5",
                       "absent" if im128 is None else f"no {IM128_NAMES[camera]}")
        if got is None:
            entry = (self.user.get(uuid) or {}).get(serial) if self.user else None
            parsed = _user_entry(entry) if entry is not None else None
            got = take(parsed, "intrinsics file", "not given" if not self.user else "no entry")
            if parsed is _MALFORMED:
                tried[-1] = "intrinsics file: malformed entry (expected cameraMatrix [fx, cx, fy, cy])"
        if got is None:
            k = h5.get(f"{serial}_left")
            got = take(None if k is None else _from_k(k, "h5"), "trajectory.h5",
                       "no observation/camera_intrinsics")
        if got is None and self.missing == "nominal":
            n = NOMINAL["wrist" if camera.startswith("wrist") else "exterior"]
            got = Intrinsics(width=NATIVE_SIZE[0], height=NATIVE_SIZE[1], source="nominal", **n)
        return got, tried


def _cache_entry(rec: dict[str, Any]) -> Intrinsics:
    return Intrinsics(fx=float(rec["fx"]), fy=float(rec["fy"]), cx=float(rec["cx"]), cy=float(rec["cy"]),
                      width=int(rec["width"]), height=int(rec["height"]), source="cache",
                      distortion=tuple(float(v) for v in (rec.get("distortion") or [0.0] * 5)[:5]),
                      baseline_m=None if rec.get("baseline_m") is None else float(rec["baseline_m"]))


def _user_entry(entry: Any) -> Intrinsics | None:
    matrix, size = entry, NATIVE_SIZE
    if isinstance(entry, dict):
        matrix = entry.get("cameraMatrix")
        size = (int(entry.get("width", NATIVE_SIZE[0])), int(entry.get("height", NATIVE_SIZE[1])))
    try:
        values = [float(v) for v in list(matrix)]
    except (TypeError, ValueError):
        return _MALFORMED
    if len(values) != 4:  # the published form is [fx, cx, fy, cy]; a flattened 3x3 K is not it
        return _MALFORMED
    fx, cx, fy, cy = values
    out = Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=size[0], height=size[1], source="file")
    return out if (0 <= cx < out.width and 0 <= cy < out.height) or not out.valid else _MALFORMED


_MALFORMED = Intrinsics(fx=float("nan"), fy=float("nan"), cx=float("nan"), cy=float("nan"), width=0, height=0,
                        source="file")
"""An entry that is there but not [fx, cx, fy, cy] with the principal point inside the image."""


def read_im128(path: Path) -> dict[str, np.ndarray]:
    """``observation/camera/intrinsics/*`` of a trajectory_im128.h5 (first row; they are constant)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        group = f.get("observation/camera/intrinsics")
        if group is not None:
            for name, ds in group.items():
                k = np.asarray(ds[()], dtype=np.float64)
                out[str(name)] = k.reshape(-1, 3, 3)[0] if k.size >= 9 else np.zeros((3, 3))
    return out
