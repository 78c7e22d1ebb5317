"""The worker-side backend for pick-and-place: options, capabilities and episodes for any simulator.

A simulator package only says which options its simulator takes and how to build it; the rest (strict
option checking, task parameters per spec, the episode itself) is shared. numpy and stdlib only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raygen.actors.spec import EpisodeSpec
from raygen.actors.tasks.pick_place import PickPlaceParams, PickPlaceSim, run_pick_place
from raygen.datasets.episode import Episode

__all__ = ["PickPlaceBackend"]


class PickPlaceBackend:
    """Implements the child's Backend protocol on top of one PickPlaceSim."""

    def __init__(self, name: str, options: dict[str, Any], sim_options: tuple[str, ...],
                 make_sim: Callable[..., PickPlaceSim], *, gpu: bool):
        self.name = name
        self.gpu = gpu
        opts = dict(options)
        cpu_threads = int(opts.pop("cpu_threads", 1))
        self.task_options = opts.pop("task", {})
        sim_kw = {k: opts.pop(k) for k in sim_options if k in opts}
        if opts:
            raise ValueError(f"{name} backend: unknown option(s) {sorted(opts)}; known: {[*sim_options, 'task']}")
        fps = PickPlaceParams.from_options(self.task_options).fps
        self.sim = make_sim(fps=fps, cpu_threads=cpu_threads, **sim_kw)
        self.version = self.sim.version

    def capabilities(self) -> dict[str, Any]:
        caps = {"tasks": ["pick_place"], "cameras": list(self.sim.camera_names), "depth": True,
                "object_kinds": list(self.sim.object_kinds), "gpu": self.gpu, "simulator": self.sim.name}
        caps.update(getattr(self.sim, "capabilities", dict)())
        return caps

    def run_episode(self, spec: EpisodeSpec) -> Episode:
        params = PickPlaceParams.from_options({**self.task_options, **spec.params.get("task", {})},
                                              where=f"spec {spec.episode_key} params.task")
        return run_pick_place(self.sim, spec, params)

    def close(self) -> None:
        self.sim.close()
