"""The cluster files: ray_cluster.yaml against Ray's own schema, the KubeRay manifests against it, the
RayJob's entrypoint against configs/, and the Grafana dashboard against the metric names Ray exports.

No Ray instance is started; everything here is parsing.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from raygen.cluster.plan import ClusterResources, make_plan
from raygen.config import load_config, parse_overrides

ROOT = Path(__file__).resolve().parents[2]
RAY_CLUSTER = ROOT / "ray_cluster.yaml"
KUBERAY = ROOT / "cluster" / "kuberay"
DASHBOARD = ROOT / "cluster" / "grafana" / "raygen_dashboard.json"

# What Ray 2.60 exports for raygen's ray.util.metrics (raygen/pipelines/run.py), read off a node's
# /metrics endpoint: a "ray_" prefix, "_total" on counters, _bucket/_sum/_count on the histogram.
EXPORTED_METRICS = {
    "ray_raygen_episodes_generated_total",
    "ray_raygen_episodes_accepted_total",
    "ray_raygen_episodes_rejected_total",
    "ray_raygen_worker_retries_total",
    "ray_raygen_gpu_seconds_total",
    "ray_raygen_cpu_seconds_total",
    "ray_raygen_cost_total",
    "ray_raygen_stage_seconds_bucket",
    "ray_raygen_stage_seconds_sum",
    "ray_raygen_stage_seconds_count",
    "ray_raygen_feed_sent_total",
    "ray_raygen_feed_filtered_total",
    "ray_raygen_feed_bytes_total",
    "ray_raygen_feed_lag_seconds_bucket",
    "ray_raygen_feed_lag_seconds_sum",
    "ray_raygen_feed_lag_seconds_count",
}
NOT_CUSTOM = {"CPU", "GPU", "memory", "object_store_memory"}


def load_docs(path: Path) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), f"{path.name}: one document per kind"
    return by_kind


@pytest.fixture(scope="module")
def cluster_yaml() -> dict[str, Any]:
    return yaml.safe_load(RAY_CLUSTER.read_text())


@pytest.fixture(scope="module")
def raycluster() -> dict[str, dict[str, Any]]:
    return load_docs(KUBERAY / "raycluster.yaml")


@pytest.fixture(scope="module")
def rayjob() -> dict[str, dict[str, Any]]:
    return load_docs(KUBERAY / "rayjob.yaml")


def validate_cluster_config(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before it talks to the cloud: fill in the provider's defaults, then validate
    against ray/autoscaler/ray-schema.json plus the launcher's own checks."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# ray_cluster.yaml ---------------------------------------------------------------------------------


def test_ray_cluster_yaml_passes_rays_schema(cluster_yaml):
    prepared = validate_cluster_config(cluster_yaml)
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and set(types) == {"head", "isaac-rtx", "zed-cuda", "cpu-encode"}
    assert sum(t.get("min_workers", 0) for t in types.values()) <= prepared["max_workers"]
    assert sum(t["max_workers"] for n, t in types.items() if n != "head") <= prepared["max_workers"]


def _unknown_top_level_key(c):
    c["max_wrokers"] = 3


def _fractional_rtx(c):
    c["available_node_types"]["isaac-rtx"]["resources"]["rtx"] = 0.5


def _unknown_head_type(c):
    c["head_node_type"] = "gpu-head"


def _node_type_without_resources(c):
    del c["available_node_types"]["zed-cuda"]["resources"]


def _min_workers_above_global_max(c):
    c["available_node_types"]["cpu-encode"]["min_workers"] = 100


@pytest.mark.parametrize("break_it", [_unknown_top_level_key, _fractional_rtx, _unknown_head_type,
                                      _node_type_without_resources, _min_workers_above_global_max])
def test_a_broken_copy_fails_validation(cluster_yaml, break_it):
    broken = copy.deepcopy(cluster_yaml)
    break_it(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_cluster_config(broken)


def test_gpu_node_types_and_the_rtx_resource(cluster_yaml):
    types = cluster_yaml["available_node_types"]
    head = types["head"]["resources"]
    assert head.get("GPU", 0) == 0 and "rtx" not in head, "the head is the CPU driver node"
    rtx = types["isaac-rtx"]["resources"]
    assert rtx["GPU"] >= 1 and rtx["rtx"] == rtx["GPU"], "Isaac nodes advertise rtx = their GPU count"
    assert types["zed-cuda"]["resources"]["GPU"] >= 1 and "rtx" not in types["zed-cuda"]["resources"]
    assert types["cpu-encode"]["resources"].get("GPU", 0) == 0
    assert types["isaac-rtx"]["min_workers"] >= 1, "raygen sizes its pool from the GPUs present at start"


def test_auth_token_and_a_dashboard_on_localhost(cluster_yaml):
    assert "--env RAY_AUTH_MODE=token" in cluster_yaml["docker"]["run_options"]
    assert "~/.ray/auth_token" in cluster_yaml["file_mounts"]
    head_start = " ".join(cluster_yaml["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in RAY_CLUSTER.read_text()
    assert "RAY_AUTH_TOKEN=" not in RAY_CLUSTER.read_text(), "never an inline token"


def test_staging_disk_on_the_head(cluster_yaml):
    head = cluster_yaml["available_node_types"]["head"]
    assert head["node_config"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] >= 1000
    assert "--volume /staging:/staging" in cluster_yaml["docker"]["head_run_options"]


def test_the_isaac_config_plans_on_the_smallest_cluster(cluster_yaml):
    """configs/pick_place_isaac.yaml on the head plus min_workers of each node type (what `ray up`
    starts) makes a pool that fits on the RTX nodes."""
    types = cluster_yaml["available_node_types"]
    counts = {n: (1 if n == "head" else t.get("min_workers", 0)) for n, t in types.items()}
    total: dict[str, float] = {}
    for name, count in counts.items():
        for k, v in types[name]["resources"].items():
            total[k] = total.get(k, 0) + v * count
    cluster = ClusterResources(cpus=total["CPU"], gpus=total.get("GPU", 0),
                               custom={k: v for k, v in total.items() if k not in NOT_CUSTOM})
    plan = make_plan(load_config(ROOT / "configs" / "pick_place_isaac.yaml"), cluster)
    node = types["isaac-rtx"]["resources"]
    per_node = plan.workers / counts["isaac-rtx"]
    assert plan.backend == "isaac" and plan.resources == {"rtx": plan.num_gpus}
    assert per_node * plan.num_gpus <= node["GPU"] and per_node * plan.num_cpus <= node["CPU"]


# KubeRay ------------------------------------------------------------------------------------------


def ray_start_resources(group: dict[str, Any]) -> dict[str, float]:
    """KubeRay's rayStartParams.resources: a YAML string holding a JSON string holding the dict."""
    raw = group.get("rayStartParams", {}).get("resources")
    if raw is None:
        return {}
    inner = json.loads(raw)
    return json.loads(inner) if isinstance(inner, str) else inner


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    containers = group["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"].startswith("ray-"))


def test_raycluster_kinds(raycluster):
    rc = raycluster["RayCluster"]
    assert rc["apiVersion"] == "ray.io/v1"
    assert raycluster["PersistentVolumeClaim"]["apiVersion"] == "v1"
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    assert rc["spec"]["authOptions"] == {"mode": "token"}


def test_worker_groups_match_the_node_types(cluster_yaml, raycluster):
    spec = raycluster["RayCluster"]["spec"]
    types = cluster_yaml["available_node_types"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == set(types) - {cluster_yaml["head_node_type"]}
    for name, group in groups.items():
        node = types[name]
        res = node["resources"]
        limits = ray_container(group)["resources"]["limits"]
        requests = ray_container(group)["resources"]["requests"]
        assert int(limits.get("nvidia.com/gpu", 0)) == res.get("GPU", 0), name
        assert requests.get("nvidia.com/gpu") == limits.get("nvidia.com/gpu"), name
        custom = ray_start_resources(group)
        assert custom == {k: v for k, v in res.items() if k not in NOT_CUSTOM}, name
        assert custom.get("rtx", 0) == res.get("rtx", 0), name
        assert (group["minReplicas"], group["maxReplicas"]) == (node["min_workers"], node["max_workers"]), name
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        if res.get("GPU", 0):
            assert group["template"]["spec"].get("nodeSelector"), f"{name}: GPU groups pick their GPU type"
    head_params = spec["headGroupSpec"]["rayStartParams"]
    assert float(head_params["num-cpus"]) == types["head"]["resources"]["CPU"]
    assert "nvidia.com/gpu" not in ray_container(spec["headGroupSpec"])["resources"]["limits"]


def test_ray_versions_agree(cluster_yaml, raycluster):
    setup = " ".join(cluster_yaml["setup_commands"])
    assert f"'{raycluster['RayCluster']['spec']['rayVersion']}'" in setup


def test_staging_volume_on_the_head(raycluster):
    head = raycluster["RayCluster"]["spec"]["headGroupSpec"]
    mounts = {m["name"]: m["mountPath"] for m in ray_container(head)["volumeMounts"]}
    volumes = {v["name"]: v for v in head["template"]["spec"]["volumes"]}
    assert mounts["staging"] == "/staging"
    claim = volumes["staging"]["persistentVolumeClaim"]["claimName"]
    assert claim == raycluster["PersistentVolumeClaim"]["metadata"]["name"]


def test_rayjob_embeds_the_same_cluster(raycluster, rayjob):
    job = rayjob["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["rayClusterSpec"] == raycluster["RayCluster"]["spec"]
    assert rayjob["PersistentVolumeClaim"] == raycluster["PersistentVolumeClaim"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_rayjob_entrypoint_runs_a_config_from_the_repo(rayjob):
    argv = shlex.split(rayjob["RayJob"]["spec"]["entrypoint"])
    assert "&&" not in argv and ";" not in " ".join(argv), "the submitter's shell would split it"
    i = next(i for i in range(len(argv) - 1) if argv[i:i + 2] == ["raygen", "run"])
    config_arg = argv[i + 2]
    assert "configs/" in config_arg, config_arg
    config = ROOT / config_arg[config_arg.index("configs/"):]
    assert config.is_file(), f"{config_arg} names {config.relative_to(ROOT)}, which is not in the repo"
    rest = argv[i + 3:]
    output = rest[rest.index("--output") + 1]
    assert output.startswith("/staging/")
    sets = [rest[j + 1] for j, a in enumerate(rest) if a == "--set"]
    parse_overrides(sets)
    cfg = load_config(config, sets, output=output)
    assert cfg.source.backend == "isaac" and cfg.output.path == output


def _env_entries(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                yield from value
            else:
                yield from _env_entries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _env_entries(item)


def test_no_secret_is_inlined(raycluster, rayjob):
    for docs in (raycluster, rayjob):
        entries = list(_env_entries(docs))
        hf = [e for e in entries if e["name"] == "HF_TOKEN"]
        assert hf, "the head needs HF_TOKEN for the Hub uploader"
        for e in hf:
            assert "value" not in e and e["valueFrom"]["secretKeyRef"]["key"]
        for e in entries:
            if re.search(r"TOKEN|SECRET|PASSWORD|KEY", e["name"]):
                assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), e["name"]
    job_spec = rayjob["RayJob"]["spec"]
    assert "TOKEN" not in job_spec.get("runtimeEnvYAML", "") and "TOKEN" not in job_spec["entrypoint"]
    for path in [RAY_CLUSTER, *sorted((ROOT / "cluster").rglob("*"))]:
        if path.is_file():
            assert not re.search(r"\bhf_[A-Za-z0-9]{20,}", path.read_text()), f"{path}: a Hub token"


# Grafana ------------------------------------------------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names (in {...} or by (...)), strings, ranges or Grafana variables."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def test_promql_metric_names_helper():
    expr = ('histogram_quantile(0.95, sum by (le, stage) (rate(ray_raygen_stage_seconds_bucket'
            '{SessionName=~"$SessionName"}[$__rate_interval]))) * 60 / 1e3 + raygen_episodes_accepted')
    assert promql_metric_names(expr) == {"ray_raygen_stage_seconds_bucket", "raygen_episodes_accepted"}


def _panels(panels):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_allow_list_follows_the_metrics_raygen_defines():
    """Ray 2.60's naming applied to every ray.util.metrics Counter / Histogram in raygen's source."""
    src = "\n".join(p.read_text() for p in sorted((ROOT / "raygen").rglob("*.py")))
    counters = set(re.findall(r'\bCounter\(\s*"(\w+)"', src))
    histograms = set(re.findall(r'\bHistogram\(\s*"(\w+)"', src))
    assert counters and histograms
    expected = {f"ray_{c}_total" for c in counters}
    expected |= {f"ray_{h}_{suffix}" for h in histograms for suffix in ("bucket", "sum", "count")}
    assert expected == EXPORTED_METRICS


def test_dashboard_uses_a_prometheus_datasource_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in _panels(dashboard["panels"]):
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
    for v in variables.values():
        if v["type"] == "query":
            metric = re.match(r"label_values\((\w+),", v["definition"]).group(1)
            assert metric in EXPORTED_METRICS, v["name"]


def test_dashboard_queries_only_exported_metric_names(dashboard):
    used: set[str] = set()
    queried = [p for p in _panels(dashboard["panels"]) if p["type"] != "row"]
    assert queried
    for p in queried:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            names = promql_metric_names(t["expr"])
            assert names, f"{p['title']}: no metric in {t['expr']!r}"
            assert names <= EXPORTED_METRICS, f"{p['title']}: {sorted(names - EXPORTED_METRICS)} not exported by Ray"
            used |= names
    assert used == EXPORTED_METRICS, f"no panel for {sorted(EXPORTED_METRICS - used)}"


def test_dashboard_has_the_key_panels(dashboard):
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    assert any("rate(ray_raygen_episodes_accepted_total" in e and "* 60" in e for e in exprs), "episodes/min"
    for q in ("0.5", "0.95"):
        assert any(e.startswith(f"histogram_quantile({q},") and "stage" in e for e in exprs), f"p{q} by stage"
    assert len({p["id"] for p in _panels(dashboard["panels"])}) == len(list(_panels(dashboard["panels"])))
