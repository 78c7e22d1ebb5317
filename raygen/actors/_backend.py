"""The worker-side backend for pick-and-place: options, capabilities and episodes for any simulator.

A simulator package only says which options its simulator takes and how to build it; the rest (strict
option checking, task parameters per spec, the episode itself) is shared. numpy and stdlib only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from raygen.actors.spec import EpisodeFailed, EpisodeSpec
from raygen.actors.tasks.pick_place import PickPlaceParams, PickPlaceSim, run_pick_place
from raygen.actors.tasks.soft import SoftParams, run_soft_pick_place
from raygen.actors.tasks.two_arms import TwoArmParams, run_two_arms
from raygen.datasets.episode import Episode

__all__ = ["NOT_RENDERED", "PickPlaceBackend", "TASKS", "render_if_kept", "task_simulator"]

TASKS: dict[str, tuple[type[PickPlaceParams], Callable[..., Episode]]] = {
    "pick_place": (PickPlaceParams, run_pick_place),
    "soft_pick_place": (SoftParams, run_soft_pick_place),
    "two_arms": (TwoArmParams, run_two_arms),
}
"""Task name (source.task) -> its parameters and its episode function."""

def task_simulator(backend: str, simulators: dict[str, str], soft_options: tuple[str, ...], task_name: str,
                   kw: dict[str, Any]) -> Any:
    """The simulator running ``task_name`` for ``backend``: ``simulators`` maps each task to its class as
    "module:Class" (imported only when chosen: a GPU SDK loads with it); options only the soft simulator takes
    are refused for the other tasks, naming them."""
    if task_name != "soft_pick_place":
        soft = sorted(set(kw) & set(soft_options))
        if soft:
            raise ValueError(f"{backend} backend: option(s) {soft} are for source.task soft_pick_place, not "
                             f"{task_name}")
    module, cls = simulators[task_name].split(":")
    return getattr(importlib.import_module(module), cls)(**kw)


NOT_RENDERED = f"{EpisodeFailed.PREFIX} on the physics-only pass"
"""How a reject's reason starts when render_if_kept skipped rendering a failed episode."""


class PickPlaceBackend:
    """Implements the child's Backend protocol on top of one PickPlaceSim."""

    def __init__(self, name: str, options: dict[str, Any], sim_options: tuple[str, ...],
                 make_sim: Callable[..., PickPlaceSim], *, gpu: bool, tasks: tuple[str, ...] = ("pick_place",)):
        self.name = name
        self.gpu = gpu
        opts = dict(options)
        cpu_threads = int(opts.pop("cpu_threads", 1))
        self.task_options = opts.pop("task", {})
        self.task_name = str(opts.pop("task_name", "pick_place"))
        self.render_only_kept = bool(opts.pop("render_only_kept", False))
        if self.task_name not in tasks:
            raise ValueError(f"{name} backend: task_name {self.task_name!r} is not one it runs; it runs {list(tasks)}")
        self.params_type, self.run_task = TASKS[self.task_name]
        sim_kw = {k: opts.pop(k) for k in sim_options if k in opts}
        if opts:
            raise ValueError(f"{name} backend: unknown option(s) {sorted(opts)}; known: "
                             f"{[*sim_options, 'task', 'task_name', 'render_only_kept']}")
        fps = self.params_type.from_options(self.task_options).fps
        if self.task_name != "pick_place":  # a simulator with one task is not told which
            sim_kw["task_name"] = self.task_name
        self.sim = make_sim(fps=fps, cpu_threads=cpu_threads, **sim_kw)
        self.version = self.sim.version

    def capabilities(self) -> dict[str, Any]:
        caps = {"tasks": [self.task_name], "cameras": list(self.sim.camera_names), "depth": True,
                "object_kinds": list(self.sim.object_kinds), "gpu": self.gpu, "simulator": self.sim.name}
        caps.update(getattr(self.sim, "capabilities", dict)())
        return caps

    def run_episode(self, spec: EpisodeSpec) -> Episode:
        params = self.params_type.from_options({**self.task_options, **spec.params.get("task", {})},
                                               where=f"spec {spec.episode_key} params.task")
        if "bottleneck" in spec.params:
            if self.task_name != "pick_place":
                raise ValueError(f"spec {spec.episode_key}: bottleneck episodes are pick_place only, not "
                                 f"{self.task_name}")
            from raygen.actors.tasks.bottleneck import run_bottleneck as run
        else:
            run = self.run_task
        if not self.render_only_kept:
            return run(self.sim, spec, params)
        return render_if_kept(lambda render: run(self.sim, spec, params, render=render))

    def close(self) -> None:
        self.sim.close()


def render_if_kept(run: Callable[[bool], Episode]) -> Episode:
    """Run the physics alone first; render (a deterministic replay of the same spec) only if the task succeeded.

    A failure raises :class:`EpisodeFailed` (a reject, not retried) without paying for a single camera frame
    or its encoding. The replay's state is compared with the first pass: ``render.replay_state_diff`` is the
    largest difference (0.0 when the simulator is deterministic); the rendered episode is the one kept and
    judged, so a replay that diverged is still checked for success by the quality stage."""
    first = run(False)
    if not first.success:
        m = first.metrics
        raise EpisodeFailed(f"{NOT_RENDERED}; not rendered (grasped {m.get('task.grasped')}, place error "
                            f"{float(m.get('task.place_error_m', float('nan'))):.3f} m, at home "
                            f"{m.get('task.at_home')}, object resting {m.get('task.object_resting')})")
    episode = run(True)
    diff = np.abs(np.asarray(episode.state, np.float64) - np.asarray(first.state, np.float64))
    episode.metrics["render.replay_state_diff"] = float(diff.max()) if diff.size else 0.0
    episode.metrics["render.physics_pass_s"] = float(first.metrics.get("timing.physics_s", 0.0))
    return episode
