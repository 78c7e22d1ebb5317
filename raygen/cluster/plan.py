"""The plan: how many simulator hosts, with which Ray resources, and which episodes to make.

GPU backends get ``GPUs x workers_per_gpu`` hosts, each asking for ``1 / workers_per_gpu`` GPU (Ray
then packs two hosts per GPU id for workers_per_gpu = 2) and, for Isaac Sim, the same share of the
custom ``rtx`` resource that RTX nodes advertise. The CPU backend gets ``cpu_workers`` hosts. Every
actor gets an explicit fractional ``num_cpus``: on 2 CPUs, a pool that holds every CPU leaves Ray
Data's read task nowhere to run and the pipeline waits forever without an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from raygen.actors.registry import BACKENDS
from raygen.actors.spec import EpisodeSpec
from raygen.config import ConfigError, RunConfig

__all__ = ["ClusterResources", "Plan", "discover", "episode_specs", "make_plan"]

STAGE_CPU_SHARE = 0.25  # of the cluster's CPUs, kept for the quality/flow/encode/shard stages
STAGE_MEMORY_SHARE = 1 / 8  # of the cluster's memory, the most one stage actor asks for (5 of them at most)
MIN_STAGE_CPUS = 0.5


@dataclass(frozen=True)
class ClusterResources:
    cpus: float
    gpus: float
    custom: dict[str, float] = field(default_factory=dict)
    memory: float = 0.0
    """Bytes of memory Ray may hand out to tasks and actors (0 = unknown)."""

    @classmethod
    def from_ray(cls, resources: dict[str, float]) -> ClusterResources:
        custom = {k: v for k, v in resources.items()
                  if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")
                  and not k.startswith("accelerator_type:")}
        return cls(cpus=float(resources.get("CPU", 0)), gpus=float(resources.get("GPU", 0)), custom=custom,
                   memory=float(resources.get("memory", 0)))


def discover() -> ClusterResources:
    """What the connected Ray cluster has (call after ray.init)."""
    import ray

    return ClusterResources.from_ray(ray.cluster_resources())


@dataclass(frozen=True)
class Plan:
    backend: str
    workers: int
    """Simulator hosts in the actor pool."""
    num_cpus: float
    """Ray CPUs per host."""
    num_gpus: float
    """Ray GPUs per host (0 for the CPU backend)."""
    resources: dict[str, float]
    """Custom Ray resources per host (e.g. {"rtx": 0.5} for Isaac Sim)."""
    stage_cpus: float
    """CPUs left for the downstream stages."""
    gpus_used: float
    max_workers: int = 0
    """The most hosts the pool may grow to as nodes join (resources.max_gpus); 0 = workers."""
    stage_memory_cap: float = 0.0
    """The most memory (bytes) one stage actor may ask Ray for: an ask larger than a node would leave the
    stage unscheduled and the run waiting forever. 0 = no cap (memory unknown)."""

    def stage_memory(self, wanted: float) -> float:
        return min(wanted, self.stage_memory_cap) if self.stage_memory_cap else wanted

    @property
    def pool_max(self) -> int:
        return max(self.workers, self.max_workers)

    def actor_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        if self.resources:
            opts["resources"] = dict(self.resources)
        return opts

    def describe(self) -> str:
        gpu = f", {self.num_gpus:g} GPU each over {self.gpus_used:g} GPUs" if self.num_gpus else " on CPU"
        extra = f", resources {self.resources}" if self.resources else ""
        grow = f", growing to {self.pool_max} as GPUs join" if self.pool_max > self.workers else ""
        return (f"{self.workers} {self.backend} hosts{grow} ({self.num_cpus:.3g} CPU{gpu}{extra}); "
                f"{self.stage_cpus:.3g} CPUs for the stages")


def make_plan(config: RunConfig, cluster: ClusterResources) -> Plan:
    """Size the host pool for ``config`` on ``cluster``; raises ConfigError when it cannot run there."""
    backend = BACKENDS[config.source.backend]
    res = config.resources
    stage_cpus = max(MIN_STAGE_CPUS, STAGE_CPU_SHARE * cluster.cpus)
    free = cluster.cpus - stage_cpus
    if free <= 0:
        raise ConfigError(f"the cluster has {cluster.cpus:g} CPUs; raygen needs more than {MIN_STAGE_CPUS:g}")
    on_gpu = backend.needs_gpu or (backend.can_use_gpu and res.num_gpus != "auto")
    if res.max_gpus is not None and not on_gpu:
        raise ConfigError(f"resources.max_gpus: {res.max_gpus} needs GPU hosts; the {backend.name!r} backend runs on "
                          "CPU unless resources.num_gpus is a number")
    max_workers = 0
    if on_gpu:
        gpus = cluster.gpus if res.num_gpus == "auto" else float(res.num_gpus)
        if backend.needs_gpu and cluster.gpus < 1:
            raise ConfigError(
                f"source.backend: {backend.name!r} needs GPUs, but the Ray cluster has {cluster.gpus:g}; "
                "run on a GPU cluster (ray_cluster.yaml) or use source.backend=bullet")
        if gpus > cluster.gpus:
            raise ConfigError(f"resources.num_gpus: {gpus:g} asked, the cluster has {cluster.gpus:g}")
        workers = int(math.floor(gpus * res.workers_per_gpu + 1e-9))
        if workers < 1:
            raise ConfigError(f"resources.workers_per_gpu: {res.workers_per_gpu} x {gpus:g} GPUs makes no worker")
        share = 1.0 / res.workers_per_gpu
        custom = {}
        if backend.custom_resource:
            have = cluster.custom.get(backend.custom_resource, 0.0)
            if have <= 0:
                raise ConfigError(
                    f"source.backend: {backend.name!r} renders only on RTX GPUs, and no node advertises the "
                    f"{backend.custom_resource!r} resource; give RTX nodes resources: "
                    f"{{{backend.custom_resource}: <GPUs>}} in ray_cluster.yaml")
            custom = {backend.custom_resource: share}
            workers = min(workers, int(math.floor(have * res.workers_per_gpu + 1e-9)))
        num_gpus, gpus_used = min(1.0, share), gpus
        if res.max_gpus is not None:
            if res.max_gpus < gpus:
                raise ConfigError(f"resources.max_gpus: {res.max_gpus} is below the {gpus:g} GPUs used now")
            max_workers = int(math.floor(res.max_gpus * res.workers_per_gpu + 1e-9))
    else:
        workers, num_gpus, custom, gpus_used = res.cpu_workers, 0.0, {}, 0.0
    num_cpus = min(res.cpus_per_worker, free / workers)
    return Plan(backend=backend.name, workers=workers, num_cpus=round(num_cpus, 4), num_gpus=num_gpus,
                resources=custom, stage_cpus=stage_cpus, gpus_used=gpus_used, max_workers=max_workers,
                stage_memory_cap=STAGE_MEMORY_SHARE * cluster.memory)


def episode_specs(config: RunConfig, skip: set[str] | frozenset[str] = frozenset()) -> list[EpisodeSpec]:
    """The run's deterministic specs, minus those whose key is committed or rejected (resume)."""
    from raygen.pipelines.sources import make_source

    return make_source(config).specs(skip)
