"""Child entry point: ``<isaac python> -m raygen.actors.isaac.worker`` (started by WorkerHost).

Importing this module needs neither Isaac Sim nor a GPU; starting the backend does, and without
isaacsim it fails with MissingDependencyError naming what to install (sent to the host as "fatal").
"""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._backend import PickPlaceBackend, task_simulator
from raygen.actors._child import serve

SOFT_OPTIONS = ("block_resolution", "cloth_cells", "anchor_depth", "solver_iterations")
"""IsaacSoftPickPlace's own options (task soft_pick_place)."""
SIM_OPTIONS = ("width", "height", "physics_hz", "warmup_frames", "assets_root", "franka_usd", "active_gpu",
               *SOFT_OPTIONS)


SIMULATORS = {"pick_place": "raygen.actors.isaac.sim:IsaacPickPlace",
              "soft_pick_place": "raygen.actors.isaac.soft:IsaacSoftPickPlace",
              "two_arms": "raygen.actors.isaac.two_arms:IsaacTwoArms"}


def make_sim(*, task_name: str = "pick_place", **kw: Any) -> Any:
    return task_simulator("isaac", SIMULATORS, SOFT_OPTIONS, task_name, kw)


def IsaacBackend(options: dict[str, Any], sim_factory: Any = None) -> PickPlaceBackend:  # noqa: N802
    return PickPlaceBackend("isaac", options, SIM_OPTIONS, sim_factory or make_sim, gpu=True, tasks=tuple(SIMULATORS))


if __name__ == "__main__":
    sys.exit(serve(IsaacBackend))
