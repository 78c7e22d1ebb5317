"""Child entry point: ``python -m raygen.actors.bullet.worker`` (started by WorkerHost)."""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._backend import PickPlaceBackend, task_simulator
from raygen.actors._child import serve

SOFT_OPTIONS = ("block_cells", "cloth_cells", "collision_margin", "anchor_depth", "grip_force", "cfl", "max_substeps")
"""BulletSoftPickPlace's own options (task soft_pick_place)."""
SIM_OPTIONS = ("width", "height", "fov_deg", "renderer", "substeps", "robot_visual", *SOFT_OPTIONS)


SIMULATORS = {"pick_place": "raygen.actors.bullet.sim:BulletPickPlace",
              "soft_pick_place": "raygen.actors.bullet.soft:BulletSoftPickPlace",
              "two_arms": "raygen.actors.bullet.two_arms:BulletTwoArms"}


def make_sim(*, cpu_threads: int = 1, task_name: str = "pick_place", **kw: Any) -> Any:
    # PyBullet steps on one thread; cpu_threads only caps numeric libraries
    return task_simulator("bullet", SIMULATORS, SOFT_OPTIONS, task_name, kw)


def BulletBackend(options: dict[str, Any]) -> PickPlaceBackend:  # noqa: N802 (a backend factory)
    return PickPlaceBackend("bullet", options, SIM_OPTIONS, make_sim, gpu=False, tasks=tuple(SIMULATORS))


if __name__ == "__main__":
    sys.exit(serve(BulletBackend))
