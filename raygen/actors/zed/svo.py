"""Reading one SVO with the ZED SDK (``pyzed.sl``): rectified calibration, left frames, depth, timestamps.

The SDK comes with Stereolabs' installer (its ``get_python_api.py``), needs an NVIDIA GPU with CUDA even
to read an SVO's calibration, and cannot be installed on raygen's CPU test machines: the tests drive this
code with a labelled pyzed test double (tests/fakes/pyzed), and the real path is this same code.

- Opened from the file, not in real time, depth in millimetres.
- Left image: rectified, BGRA from the SDK -> RGB.
- Depth: ``MEASURE.DEPTH_U16_MM``, uint16 millimetres with 0 = invalid (never ``svo2depth``'s x1000, which
  overflows above 65 mm); some SDK versions return [H,W,1].
- Calibration: the rectified left camera (fx, fy, cx, cy, distortion ~ 0), the baseline, the resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raygen._deps import require
from raygen.actors.droid.calibration import Intrinsics
from raygen.actors.spec import EpisodeInputError

__all__ = ["SvoCalibration", "SvoReader", "check_depth_mode", "sdk"]

FILE_ERRORS = frozenset({"INVALID_SVO_FILE", "SVO_UNSUPPORTED_COMPRESSION", "CORRUPTED_FRAME", "SVO_RECORDING_ERROR"})
"""ZED SDK errors that mean the file is bad (a reject). Any other (CUDA, no GPU, a driver) is the node's
problem: raised as RuntimeError, so the episode is retried, and never recorded as bad input."""


def _error(err: Any, where: str, doing: str) -> Exception:
    name = getattr(err, "name", str(err))
    if name in FILE_ERRORS:
        return EpisodeInputError(f"{where}: {doing} failed ({name})")
    return RuntimeError(f"{where}: {doing} failed ({name}); not a problem of the file (GPU, CUDA or the SDK?)")


def check_depth_mode(mode: str) -> None:
    """A depth mode this SDK has, or ValueError listing those it has (called when the backend starts)."""
    sl = sdk()
    if not hasattr(sl.DEPTH_MODE, mode):
        known = [m for m in dir(sl.DEPTH_MODE) if m.isupper()]
        raise ValueError(f"source.droid.zed_depth_mode: {mode!r} is not a ZED SDK depth mode; this SDK has {known}")


def sdk() -> Any:
    """The ZED SDK's Python module, or MissingDependencyError saying where it comes from."""
    return require("pyzed.sl", "the zed backend and `raygen droid calibrate` (DROID SVOs through the ZED SDK)")


@dataclass(frozen=True)
class SvoCalibration:
    intrinsics: Intrinsics
    sdk_version: str

    def record(self, episode_id: str, serial: str) -> dict[str, Any]:
        """One line of the calibration cache (raygen.actors.droid.calibration.load_cache)."""
        i = self.intrinsics
        return {"episode_id": episode_id, "serial": serial, "fx": i.fx, "fy": i.fy, "cx": i.cx, "cy": i.cy,
                "width": i.width, "height": i.height, "distortion": list(i.distortion), "baseline_m": i.baseline_m,
                "rectified": True, "source": "zed_sdk", "sdk_version": self.sdk_version}


class SvoReader:
    """One SVO opened with the ZED SDK (a context manager)."""

    def __init__(self, path: Path, where: str, *, depth_mode: str | None = None):
        self.sl = sl = sdk()
        self.where = where
        init = sl.InitParameters()
        init.set_from_svo_file(str(path))
        init.svo_real_time_mode = False
        init.coordinate_units = sl.UNIT.MILLIMETER
        if depth_mode is None:
            init.depth_mode = sl.DEPTH_MODE.NONE
        else:
            check_depth_mode(depth_mode)
            init.depth_mode = getattr(sl.DEPTH_MODE, depth_mode)
        self.depth_mode = depth_mode
        self.zed = sl.Camera()
        err = self.zed.open(init)
        if err != sl.ERROR_CODE.SUCCESS:
            self.zed.close()
            self.zed = None
            raise _error(err, where, "opening it with the ZED SDK")

    def __enter__(self) -> SvoReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.zed is not None:
            self.zed.close()
            self.zed = None

    def calibration(self) -> SvoCalibration:
        info = self.zed.get_camera_information()
        conf = info.camera_configuration
        calib = conf.calibration_parameters  # rectified
        left = calib.left_cam
        res = conf.resolution
        disto = [float(v) for v in list(np.asarray(left.disto).reshape(-1))[:5]]
        disto += [0.0] * (5 - len(disto))
        baseline_mm = float(calib.get_camera_baseline())
        version = self.sl.Camera.get_sdk_version() if hasattr(self.sl.Camera, "get_sdk_version") else "unknown"
        return SvoCalibration(Intrinsics(fx=float(left.fx), fy=float(left.fy), cx=float(left.cx), cy=float(left.cy),
                                         width=int(res.width), height=int(res.height), source="zed_sdk",
                                         distortion=tuple(disto), baseline_m=baseline_mm / 1000.0), str(version))

    def frames(self, size: tuple[int, int] | None, *, depth: bool) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
        """Every frame's left RGB [N,H,W,3], depth [N,H,W] uint16 mm (or None) and image timestamp (ms), at
        ``size`` (width, height; None = the SVO's own)."""
        sl = self.sl
        runtime = sl.RuntimeParameters()
        image, measure = sl.Mat(), sl.Mat()
        res = sl.Resolution(*size) if size else sl.Resolution(0, 0)  # 0 x 0 = the camera's own resolution
        rgbs, depths, stamps = [], [], []
        while True:
            err = self.zed.grab(runtime)
            if err == sl.ERROR_CODE.END_OF_SVOFILE_REACHED:
                break
            if err != sl.ERROR_CODE.SUCCESS:
                raise _error(err, self.where, f"grabbing frame {len(rgbs)}")
            self.zed.retrieve_image(image, sl.VIEW.LEFT, sl.MEM.CPU, res)
            bgra = np.asarray(image.get_data())
            rgbs.append(np.ascontiguousarray(bgra[..., 2::-1]))
            if depth:
                self.zed.retrieve_measure(measure, sl.MEASURE.DEPTH_U16_MM, sl.MEM.CPU, res)
                d = np.asarray(measure.get_data())
                depths.append(np.array(d[..., 0] if d.ndim == 3 else d, dtype=np.uint16))
            stamps.append(int(self.zed.get_timestamp(sl.TIME_REFERENCE.IMAGE).get_milliseconds()))
        if not rgbs:
            raise EpisodeInputError(f"{self.where}: holds no frames")
        return np.stack(rgbs), np.stack(depths) if depth else None, stamps
