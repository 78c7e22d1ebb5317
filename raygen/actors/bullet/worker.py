"""Child entry point: ``python -m raygen.actors.bullet.worker`` (started by WorkerHost)."""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._backend import PickPlaceBackend
from raygen.actors._child import serve

SOFT_OPTIONS = ("block_cells", "cloth_cells", "collision_margin", "anchor_depth", "grip_force", "cfl", "max_substeps")
"""BulletSoftPickPlace's own options (task soft_pick_place)."""
SIM_OPTIONS = ("width", "height", "fov_deg", "renderer", "substeps", "robot_visual", *SOFT_OPTIONS)
TASKS = ("pick_place", "soft_pick_place", "two_arms")


def make_sim(*, cpu_threads: int = 1, task_name: str = "pick_place", **kw: Any) -> Any:
    # PyBullet steps on one thread; cpu_threads only caps numeric libraries
    if task_name == "soft_pick_place":
        from raygen.actors.bullet.soft import BulletSoftPickPlace

        return BulletSoftPickPlace(**kw)
    soft = sorted(set(kw) & set(SOFT_OPTIONS))
    if soft:
        raise ValueError(f"bullet backend: option(s) {soft} are for source.task soft_pick_place, not {task_name}")
    if task_name == "two_arms":
        from raygen.actors.bullet.two_arms import BulletTwoArms

        return BulletTwoArms(**kw)
    from raygen.actors.bullet.sim import BulletPickPlace

    return BulletPickPlace(**kw)


def BulletBackend(options: dict[str, Any]) -> PickPlaceBackend:  # noqa: N802 (a backend factory)
    return PickPlaceBackend("bullet", options, SIM_OPTIONS, make_sim, gpu=False, tasks=TASKS)


if __name__ == "__main__":
    sys.exit(serve(BulletBackend))
