"""Child entry point: ``python -m raygen.actors.bullet.worker`` (started by WorkerHost)."""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._backend import PickPlaceBackend
from raygen.actors._child import serve

SIM_OPTIONS = ("width", "height", "fov_deg", "renderer", "substeps", "robot_visual")


def make_sim(*, cpu_threads: int = 1, **kw: Any) -> Any:
    from raygen.actors.bullet.sim import BulletPickPlace

    return BulletPickPlace(**kw)  # PyBullet steps on one thread; cpu_threads only caps numeric libraries


def BulletBackend(options: dict[str, Any]) -> PickPlaceBackend:  # noqa: N802 (a backend factory)
    return PickPlaceBackend("bullet", options, SIM_OPTIONS, make_sim, gpu=False)


if __name__ == "__main__":
    sys.exit(serve(BulletBackend))
