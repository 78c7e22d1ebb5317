"""Child entry point: ``<isaac python> -m raygen.actors.isaac.worker`` (started by WorkerHost).

Importing this module needs neither Isaac Sim nor a GPU; starting the backend does, and without
isaacsim it fails with MissingDependencyError naming what to install (sent to the host as "fatal").
"""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._backend import PickPlaceBackend
from raygen.actors._child import serve

SIM_OPTIONS = ("width", "height", "physics_hz", "warmup_frames", "assets_root", "franka_usd", "active_gpu")


def make_sim(**kw: Any) -> Any:
    from raygen.actors.isaac.sim import IsaacPickPlace

    return IsaacPickPlace(**kw)


def IsaacBackend(options: dict[str, Any], sim_factory: Any = None) -> PickPlaceBackend:  # noqa: N802
    return PickPlaceBackend("isaac", options, SIM_OPTIONS, sim_factory or make_sim, gpu=True)


if __name__ == "__main__":
    sys.exit(serve(IsaacBackend))
