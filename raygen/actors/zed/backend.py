"""The ``zed`` backend (a CUDA GPU): DROID episodes from their SVO files through the ZED SDK.

Per camera: open the SVO (not in real time) with the configured depth mode (the SDK 5 default, NEURAL,
unless set), read rectified left frames and ``DEPTH_U16_MM`` depth, optionally downscaled by the SDK, and
the rectified calibration from the SDK; frame i is matched to step i and checked against trajectory.h5's
``<serial>_frame_received``. Everything else (metadata, trajectory, gripper, the Episode) is the reader the
CPU backend uses (raygen.actors.droid.episode).
"""

from __future__ import annotations

import time
from typing import Any

from raygen.actors.droid.episode import CameraData, Recording, RecordingBackend
from raygen.actors.droid.frames import match_frames
from raygen.actors.droid.raw import require
from raygen.actors.zed.svo import SvoReader, check_depth_mode, sdk

__all__ = ["ZedBackend"]


class ZedBackend(RecordingBackend):
    name = "zed"

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        if self.opts.mode == "full" and self.opts.depth:
            check_depth_mode(self.opts.zed_depth_mode)  # a typo stops the backend at start, not every episode

    def describe_version(self) -> str:
        sl = sdk()
        version = sl.Camera.get_sdk_version() if hasattr(sl.Camera, "get_sdk_version") else "unknown"
        return f"{super().describe_version()} (ZED SDK {version})"

    def depth_method(self) -> str | None:
        return f"zed_sdk:{self.opts.zed_depth_mode}" if self.opts.depth and self.opts.mode == "full" else None

    def needs_recording_intrinsics(self) -> bool:
        return False  # the SDK reads them from the SVO

    def _open(self, rec: Recording, camera: str, depth: bool) -> SvoReader:
        parts = ("recordings", "SVO", f"{rec.serials[camera]}.svo")
        path = require(rec.files, *parts, what="the camera's SVO recording")
        return SvoReader(path, rec.files.rel(*parts), depth_mode=self.opts.zed_depth_mode if depth else None)

    def calibration_only(self, rec: Recording, camera: str) -> CameraData:
        t0 = time.perf_counter()
        with self._open(rec, camera, depth=False) as svo:
            calib = svo.calibration()
        rec.timing["timing.calibration_s"] = rec.timing.get("timing.calibration_s", 0.0) + time.perf_counter() - t0
        return CameraData(size=self.opts.size, intrinsics=calib.intrinsics, info={"zed_sdk": calib.sdk_version})

    def camera_data(self, rec: Recording, camera: str) -> CameraData:
        serial = rec.serials[camera]
        t0 = time.perf_counter()
        with self._open(rec, camera, depth=self.opts.depth) as svo:
            calib = svo.calibration()
            rgb, depth, stamps = svo.frames(self.opts.size, depth=self.opts.depth)
        where = rec.files.rel("recordings", "SVO", f"{serial}.svo")
        match = match_frames(len(rgb), rec.traj.length, where, frame_received=rec.traj.frame_received.get(serial),
                             frame_times=stamps if serial in rec.traj.frame_received else None,
                             tolerance_ms=self.opts.timestamp_tolerance_ms)
        rec.timing["timing.decode_s"] = rec.timing.get("timing.decode_s", 0.0) + time.perf_counter() - t0
        info = {"zed_sdk": calib.sdk_version, "recorded_size": [calib.intrinsics.width, calib.intrinsics.height],
                **match.info()}
        if depth is not None:
            info["depth_method"] = self.depth_method()
            depth = depth[match.index]
        size = (int(rgb.shape[2]), int(rgb.shape[1]))
        return CameraData(rgb=rgb[match.index], depth=depth, size=size, intrinsics=calib.intrinsics, info=info)
