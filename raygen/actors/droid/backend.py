"""The ``droid`` backend (CPU): DROID episodes from their left MP4s, with depth estimated from the
side-by-side stereo MP4s by OpenCV's semi-global matcher. No GPU, no ZED SDK.

The stereo estimate is stored as the same uint16-millimetre FFV1 depth as a sensor's, with its method in
the camera's info (``depth_method``) so nobody mistakes it for the ZED SDK's depth.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from raygen.actors.droid.episode import CameraData, Recording, RecordingBackend
from raygen.actors.droid.frames import FrameMatch, StereoDepth, camera_frames, decode_mp4, match_frames
from raygen.actors.droid.raw import require
from raygen.actors.spec import EpisodeInputError

__all__ = ["DroidBackend", "STEREO_METHOD"]

STEREO_METHOD = "stereo_sgbm: estimated from the rectified side-by-side MP4 (OpenCV StereoSGBM 3-way), not sensor depth"


class DroidBackend(RecordingBackend):
    name = "droid"

    def __init__(self, options: dict[str, Any]):
        import cv2

        super().__init__(options)
        cv2.setNumThreads(self.opts.cpu_threads)  # OpenCV's pool ignores OMP_NUM_THREADS; the host sets the cap

    def describe_version(self) -> str:
        import av
        import cv2
        import h5py

        return (f"{super().describe_version()} (h5py {h5py.__version__}, PyAV {av.__version__}, "
                f"OpenCV {cv2.__version__})")

    def depth_method(self) -> str | None:
        return STEREO_METHOD if self.opts.depth and self.opts.mode == "full" else None

    def camera_data(self, rec: Recording, camera: str) -> CameraData:
        serial, steps = rec.serials[camera], rec.traj.length
        t0 = time.perf_counter()
        rgb, match, native = camera_frames(rec.files, serial, steps, self.opts.size,
                                           rec.traj.frame_received.get(serial), self.opts.timestamp_tolerance_ms,
                                           threads=self.opts.cpu_threads)
        _add(rec.timing, "timing.decode_s", time.perf_counter() - t0)
        size = (int(rgb.shape[2]), int(rgb.shape[1]))
        info: dict[str, Any] = {"recorded_size": list(native), **match.info()}
        depth = None
        if self.opts.depth:
            depth, stereo_info = self._stereo(rec, camera, size, match)
            info.update(stereo_info)
        return CameraData(rgb=rgb, depth=depth, size=size, info=info)

    def _stereo(self, rec: Recording, camera: str, size: tuple[int, int], match: FrameMatch
                ) -> tuple[np.ndarray, dict[str, Any]]:
        """Depth [T,H,W] at ``size`` from the camera's side-by-side MP4 (rectified pairs), its frames placed at
        the steps the left MP4's frames were placed at when the two hold as many frames, else in order."""
        serial = rec.serials[camera]
        baseline = rec.baseline_m(camera)
        if baseline is None or not baseline > 0:
            raise EpisodeInputError(f"{rec.files.rel('trajectory.h5')}: observation/camera_extrinsics/{serial}_right "
                                    f"is missing or coincides with _left, so there is no stereo baseline for "
                                    f"camera {camera}")
        parts = ("recordings", "MP4", f"{serial}-stereo.mp4")
        where = rec.files.rel(*parts)
        t0 = time.perf_counter()
        left, right, _ = decode_mp4(require(rec.files, *parts, what="the camera's side-by-side stereo MP4"), where,
                                    size, split=True, threads=self.opts.cpu_threads)
        if len(left) != match.frames:  # the two were cut differently: place the stereo frames on their own
            match = match_frames(len(left), rec.traj.length, where)
        t1 = time.perf_counter()
        fx = float(rec.intrinsics[camera].k(*size)[0, 0])
        near = self.opts.stereo_min_depth_wrist_m if camera.startswith("wrist") else self.opts.stereo_min_depth_m
        stereo = StereoDepth(fx=fx, baseline_m=baseline, min_depth_m=near)
        unique, inverse = np.unique(match.index, return_inverse=True)
        depth = stereo.compute(left[unique], right[unique])[inverse]
        _add(rec.timing, "timing.decode_s", t1 - t0)
        _add(rec.timing, "timing.stereo_s", time.perf_counter() - t1)
        return depth, {"depth_method": STEREO_METHOD, "stereo_baseline_m": baseline,
                       "stereo_num_disparities": stereo.num_disparities}


def _add(timing: dict[str, float], key: str, value: float) -> None:
    timing[key] = timing.get(key, 0.0) + value
