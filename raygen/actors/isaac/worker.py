"""Child entry point: ``<isaac python> -m raygen.actors.isaac.worker`` (started by WorkerHost).

Importing this module needs neither Isaac Sim nor a GPU; starting the backend does, and without
isaacsim it fails with MissingDependencyError naming what to install (sent to the host as "fatal").
"""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._child import serve
from raygen.actors.spec import EpisodeSpec
from raygen.actors.tasks.pick_place import PickPlaceParams, run_pick_place
from raygen.datasets.episode import Episode

SIM_OPTIONS = ("width", "height", "physics_hz", "warmup_frames", "assets_root", "franka_usd", "active_gpu")


def make_sim(**kw: Any) -> Any:
    from raygen.actors.isaac.sim import IsaacPickPlace

    return IsaacPickPlace(**kw)


class IsaacBackend:
    name = "isaac"

    def __init__(self, options: dict[str, Any], sim_factory: Any = None):
        opts = dict(options)
        cpu_threads = int(opts.pop("cpu_threads", 2))
        self.task_options = opts.pop("task", {})
        sim_kw = {k: opts.pop(k) for k in SIM_OPTIONS if k in opts}
        if opts:
            raise ValueError(f"isaac backend: unknown option(s) {sorted(opts)}; known: {[*SIM_OPTIONS, 'task']}")
        fps = PickPlaceParams.from_options(self.task_options).fps
        self.sim = (sim_factory or make_sim)(fps=fps, cpu_threads=cpu_threads, **sim_kw)
        self.version = self.sim.version

    def capabilities(self) -> dict[str, Any]:
        return {"tasks": ["pick_place"], "cameras": list(self.sim.camera_names), "depth": True,
                "resolution": [self.sim.height, self.sim.width], "object_kinds": list(self.sim.object_kinds),
                "gpu": True, "simulator": self.sim.name}

    def run_episode(self, spec: EpisodeSpec) -> Episode:
        params = PickPlaceParams.from_options({**self.task_options, **spec.params.get("task", {})},
                                              where=f"spec {spec.episode_key} params.task")
        return run_pick_place(self.sim, spec, params)

    def close(self) -> None:
        self.sim.close()


if __name__ == "__main__":
    sys.exit(serve(IsaacBackend))
