"""TEST DOUBLE of ``pyzed.sl`` (the ZED SDK's Python module); see tests/fakes/README.md.

It implements the subset of the API raygen calls, with the real names and semantics (BGRA left images,
DEPTH_U16_MM as uint16 mm with 0 = invalid and a trailing channel axis as some SDK versions give it,
END_OF_SVOFILE_REACHED, INVALID_SVO_FILE, rectified calibration with a 12-value distortion as in SDK 5),
playing back the ``FAKESVO1`` files tests/droid_synth.py writes. It records every call in ``CALLS`` so
tests can check the control flow.
"""

from __future__ import annotations

import enum
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np

CALLS: list[tuple] = []
TEST_DOUBLE = True


class ERROR_CODE(enum.Enum):  # noqa: N801 (the SDK's names)
    SUCCESS = 0
    FAILURE = 1
    END_OF_SVOFILE_REACHED = 2
    INVALID_SVO_FILE = 3
    CAMERA_NOT_DETECTED = 4

    def __str__(self) -> str:
        return self.name


class DEPTH_MODE(enum.Enum):  # noqa: N801
    NONE = 0
    NEURAL_LIGHT = 1
    NEURAL = 2
    NEURAL_PLUS = 3


class UNIT(enum.Enum):  # noqa: N801
    MILLIMETER = 0
    METER = 1


class VIEW(enum.Enum):  # noqa: N801
    LEFT = 0
    RIGHT = 1
    SIDE_BY_SIDE = 2


class MEASURE(enum.Enum):  # noqa: N801
    DEPTH = 0
    DEPTH_U16_MM = 1


class MEM(enum.Enum):  # noqa: N801
    CPU = 0


class TIME_REFERENCE(enum.Enum):  # noqa: N801
    IMAGE = 0
    CURRENT = 1


class Resolution:
    def __init__(self, width: int = 0, height: int = 0):
        self.width, self.height = int(width), int(height)


class InitParameters:
    def __init__(self) -> None:
        self.svo_path: str | None = None
        self.svo_real_time_mode = True
        self.depth_mode = DEPTH_MODE.NEURAL
        self.coordinate_units = UNIT.MILLIMETER
        self.depth_minimum_distance = -1.0

    def set_from_svo_file(self, path: str) -> None:
        self.svo_path = str(path)


class RuntimeParameters:
    pass


class Mat:
    def __init__(self) -> None:
        self._data: np.ndarray | None = None

    def get_data(self) -> np.ndarray:
        assert self._data is not None, "retrieve into the Mat first"
        return self._data


class Timestamp:
    def __init__(self, ms: int):
        self._ms = int(ms)

    def get_milliseconds(self) -> int:
        return self._ms


def _resize(a: np.ndarray, res: Resolution, nearest: bool) -> np.ndarray:
    import cv2

    if res.width == 0 or (res.width, res.height) == (a.shape[1], a.shape[0]):
        return a
    return cv2.resize(a, (res.width, res.height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


class Camera:
    @staticmethod
    def get_sdk_version() -> str:
        return "5.0.0-test-double"

    def __init__(self) -> None:
        self._svo: dict[str, np.ndarray] | None = None
        self._pos = -1
        self._init: InitParameters | None = None

    def open(self, init: InitParameters) -> ERROR_CODE:
        CALLS.append(("open", init.svo_path, init.svo_real_time_mode, init.depth_mode, init.coordinate_units))
        try:
            raw = Path(init.svo_path).read_bytes()
        except OSError:
            return ERROR_CODE.INVALID_SVO_FILE
        if not raw.startswith(b"FAKESVO1"):
            return ERROR_CODE.INVALID_SVO_FILE
        with np.load(io.BytesIO(raw[8:])) as z:
            self._svo = {k: z[k] for k in z.files}
        self._init, self._pos = init, -1
        return ERROR_CODE.SUCCESS

    def close(self) -> None:
        CALLS.append(("close",))
        self._svo = None

    def get_svo_number_of_frames(self) -> int:
        return int(len(self._svo["left"]))

    def get_svo_position(self) -> int:
        return self._pos

    def set_svo_position(self, i: int) -> None:
        self._pos = int(i) - 1

    def grab(self, runtime: RuntimeParameters) -> ERROR_CODE:
        if self._pos + 1 >= len(self._svo["left"]):
            return ERROR_CODE.END_OF_SVOFILE_REACHED
        self._pos += 1
        return ERROR_CODE.SUCCESS

    def retrieve_image(self, mat: Mat, view: VIEW = VIEW.LEFT, mem: MEM = MEM.CPU,
                       resolution: Resolution | None = None) -> ERROR_CODE:
        rgb = self._svo["left" if view == VIEW.LEFT else "right"][self._pos]
        rgb = _resize(rgb, resolution or Resolution(), nearest=False)
        bgra = np.concatenate([rgb[..., ::-1], np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
        mat._data = bgra
        return ERROR_CODE.SUCCESS

    def retrieve_measure(self, mat: Mat, measure: MEASURE = MEASURE.DEPTH, mem: MEM = MEM.CPU,
                         resolution: Resolution | None = None) -> ERROR_CODE:
        if self._init.depth_mode == DEPTH_MODE.NONE:
            return ERROR_CODE.FAILURE
        mm = _resize(self._svo["depth_mm"][self._pos], resolution or Resolution(), nearest=True)
        if measure == MEASURE.DEPTH_U16_MM:
            mat._data = np.where(mm > 0, np.clip(np.round(mm), 0, 65000), 0).astype(np.uint16)[..., None]
        else:
            mat._data = np.where(mm > 0, mm, np.nan).astype(np.float32)
        return ERROR_CODE.SUCCESS

    def get_timestamp(self, ref: TIME_REFERENCE) -> Timestamp:
        return Timestamp(int(self._svo["timestamps_ms"][self._pos]))

    def get_camera_information(self) -> SimpleNamespace:
        fx, fy, cx, cy, w, h, baseline_mm = (float(v) for v in self._svo["calib"])
        left = SimpleNamespace(fx=fx, fy=fy, cx=cx, cy=cy, disto=np.zeros(12))
        right = SimpleNamespace(fx=fx, fy=fy, cx=cx, cy=cy, disto=np.zeros(12))
        params = SimpleNamespace(left_cam=left, right_cam=right, get_camera_baseline=lambda: baseline_mm)
        conf = SimpleNamespace(calibration_parameters=params, resolution=Resolution(int(w), int(h)), fps=60)
        return SimpleNamespace(camera_configuration=conf, serial_number=0)
