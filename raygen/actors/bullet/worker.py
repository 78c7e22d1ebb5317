"""Child entry point: ``python -m raygen.actors.bullet.worker`` (started by WorkerHost)."""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._child import serve
from raygen.actors.spec import EpisodeSpec
from raygen.actors.tasks.pick_place import PickPlaceParams, run_pick_place
from raygen.datasets.episode import Episode

SIM_OPTIONS = ("width", "height", "fov_deg", "renderer", "substeps", "robot_visual")


class BulletBackend:
    name = "bullet"

    def __init__(self, options: dict[str, Any]):
        from raygen.actors.bullet.sim import BulletPickPlace

        opts = {k: v for k, v in options.items() if k != "cpu_threads"}
        self.task_options = opts.pop("task", {})
        sim_kw = {k: opts.pop(k) for k in SIM_OPTIONS if k in opts}
        if opts:
            raise ValueError(f"bullet backend: unknown option(s) {sorted(opts)}; known: {[*SIM_OPTIONS, 'task']}")
        fps = PickPlaceParams.from_options(self.task_options).fps
        self.sim = BulletPickPlace(fps=fps, **sim_kw)
        self.version = self.sim.version

    def capabilities(self) -> dict[str, Any]:
        return {"tasks": ["pick_place"], "cameras": list(self.sim.camera_names), "depth": True,
                "resolution": [self.sim.height, self.sim.width], "renderer": self.sim.renderer_name,
                "render_probe_s": self.sim.render_probe, "object_kinds": list(self.sim.object_kinds), "gpu": False}

    def run_episode(self, spec: EpisodeSpec) -> Episode:
        params = PickPlaceParams.from_options({**self.task_options, **spec.params.get("task", {})},
                                              where=f"spec {spec.episode_key} params.task")
        return run_pick_place(self.sim, spec, params)

    def close(self) -> None:
        self.sim.close()


if __name__ == "__main__":
    sys.exit(serve(BulletBackend))
