import pytest

from raygen.cluster.plan import ClusterResources, episode_specs, make_plan
from raygen.config import ConfigError, load_config


def test_cpu_backend_on_two_cpus_leaves_room_for_the_stages():
    plan = make_plan(load_config(None, ["resources.cpu_workers=2"]), ClusterResources(cpus=2, gpus=0))
    assert plan.workers == 2 and plan.num_gpus == 0 and plan.workers * plan.num_cpus <= 2 - plan.stage_cpus
    assert plan.actor_options() == {"num_cpus": plan.num_cpus}


def test_workers_per_gpu_and_rtx_for_isaac():
    cfg = load_config(None, ["source.backend=isaac", "resources.workers_per_gpu=2"])
    plan = make_plan(cfg, ClusterResources(cpus=16, gpus=4, custom={"rtx": 4}))
    assert plan.workers == 8 and plan.num_gpus == 0.5 and plan.resources == {"rtx": 0.5}
    assert plan.actor_options() == {"num_cpus": 0.5, "num_gpus": 0.5, "resources": {"rtx": 0.5}}


@pytest.mark.parametrize("cluster,match", [
    (ClusterResources(cpus=8, gpus=0), "needs GPUs, but the Ray cluster has 0"),
    (ClusterResources(cpus=8, gpus=2), "no node advertises the 'rtx' resource"),
])
def test_isaac_where_it_cannot_run(cluster, match):
    with pytest.raises(ConfigError, match=match):
        make_plan(load_config(None, ["source.backend=isaac"]), cluster)


def test_bullet_on_gpus_and_a_pool_that_grows_as_gpus_join():
    cfg = load_config(None, ["resources.num_gpus=1", "resources.max_gpus=3", "resources.workers_per_gpu=2"])
    plan = make_plan(cfg, ClusterResources(cpus=8, gpus=1))
    assert (plan.workers, plan.pool_max, plan.num_gpus, plan.resources) == (2, 6, 0.5, {})
    assert "growing to 6 as GPUs join" in plan.describe()
    cpu = make_plan(load_config(None, ["resources.cpu_workers=3"]), ClusterResources(cpus=8, gpus=4))
    assert cpu.num_gpus == 0 and cpu.pool_max == cpu.workers == 3  # bullet stays on CPU unless asked
    with pytest.raises(ConfigError, match="resources.max_gpus: 2 needs GPU hosts"):
        make_plan(load_config(None, ["resources.max_gpus=2"]), ClusterResources(cpus=8, gpus=4))
    with pytest.raises(ConfigError, match="resources.num_gpus: 2 asked, the cluster has 0"):
        make_plan(load_config(None, ["resources.num_gpus=2"]), ClusterResources(cpus=8, gpus=0))
    with pytest.raises(ConfigError, match="resources.num_gpus"):
        load_config(None, ["resources.num_gpus=0"])
    with pytest.raises(ConfigError, match="below the 2 GPUs"):
        make_plan(load_config(None, ["resources.num_gpus=2", "resources.max_gpus=1"]), ClusterResources(8, 2))


def test_specs_are_deterministic_and_skip_committed():
    cfg = load_config(None, ["source.episodes=4", "source.seed=9"])
    specs = episode_specs(cfg, skip={"bullet-pick_place-s9-000001"})
    assert [s.episode_key for s in specs] == [f"bullet-pick_place-s9-00000{i}" for i in (0, 2, 3)]


@pytest.mark.ray
def test_eight_hosts_spread_over_four_gpu_ids():
    """ray.init(num_gpus=4) declares fake GPUs here; Ray packs two 0.5-GPU actors per GPU id."""
    ray = pytest.importorskip("ray")
    cfg = load_config(None, ["source.backend=isaac", "resources.workers_per_gpu=2"])
    ray.init(address="local", num_cpus=2, num_gpus=4, resources={"rtx": 4}, include_dashboard=False,
             log_to_driver=False)
    try:
        from raygen.cluster.plan import discover

        plan = make_plan(cfg, discover())
        assert plan.workers == 8

        @ray.remote
        class Probe:
            def gpu(self):
                import os

                return os.environ.get("CUDA_VISIBLE_DEVICES")

        actors = [Probe.options(**plan.actor_options()).remote() for _ in range(plan.workers)]
        ids = ray.get([a.gpu.remote() for a in actors], timeout=60)
    finally:
        ray.shutdown()
    assert sorted(ids) == ["0", "0", "1", "1", "2", "2", "3", "3"]


def test_stage_memory_asks_stay_within_the_cluster():
    """An episode bigger than a node must not leave a stage unscheduled (the run would wait forever)."""
    plan = make_plan(load_config(None, []), ClusterResources(cpus=2, gpus=0, memory=16e9))
    assert plan.stage_memory(1e9) == 1e9 and plan.stage_memory(50e9) == 2e9
    assert make_plan(load_config(None, []), ClusterResources(cpus=2, gpus=0)).stage_memory(50e9) == 50e9
