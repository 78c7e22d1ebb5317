"""Child entry point: ``<isaac python> -m raygen.actors.isaac.worker`` (started by WorkerHost).

Importing this module needs neither Isaac Sim nor a GPU; starting the backend does, and without
isaacsim it fails with MissingDependencyError naming what to install (sent to the host as "fatal").
"""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._backend import PickPlaceBackend
from raygen.actors._child import serve

SOFT_OPTIONS = ("block_resolution", "cloth_cells", "anchor_depth", "solver_iterations")
"""IsaacSoftPickPlace's own options (task soft_pick_place)."""
SIM_OPTIONS = ("width", "height", "physics_hz", "warmup_frames", "assets_root", "franka_usd", "active_gpu",
               *SOFT_OPTIONS)
TASKS = ("pick_place", "soft_pick_place", "two_arms")


def make_sim(*, task_name: str = "pick_place", **kw: Any) -> Any:
    if task_name == "soft_pick_place":
        from raygen.actors.isaac.soft import IsaacSoftPickPlace

        return IsaacSoftPickPlace(**kw)
    soft = sorted(set(kw) & set(SOFT_OPTIONS))
    if soft:
        raise ValueError(f"isaac backend: option(s) {soft} are for source.task soft_pick_place, not {task_name}")
    if task_name == "two_arms":
        from raygen.actors.isaac.two_arms import IsaacTwoArms

        return IsaacTwoArms(**kw)
    from raygen.actors.isaac.sim import IsaacPickPlace

    return IsaacPickPlace(**kw)


def IsaacBackend(options: dict[str, Any], sim_factory: Any = None) -> PickPlaceBackend:  # noqa: N802
    return PickPlaceBackend("isaac", options, SIM_OPTIONS, sim_factory or make_sim, gpu=True, tasks=TASKS)


if __name__ == "__main__":
    sys.exit(serve(IsaacBackend))
