"""Where a run's episodes come from: deterministic specs with stable keys, made on the driver.

A source pairs with backends (ARCHITECTURE.md "Sources and backends"): it says which episodes exist, as
specs whose key is stable across runs (so resume and rejects work), and what the backend processes are
told; the backend turns one spec into one Episode. Everything downstream is the same for every source.

- :class:`SeededSource`: simulated pick-and-place, episode ``i`` of seed ``s`` (bullet, isaac).
- :class:`BottleneckSource`: simulated episodes around the critical states of an annotated dataset, episode
  ``i`` of seed ``s`` (bullet, isaac; see raygen.critical.sampler).
- :class:`DroidSource`: the episode folders of a DROID raw tree, keyed by their uuid (droid, zed).

Building a source checks what it can before anything starts (task parameters, backend options, a DROID
tree that can be listed and holds episodes) and raises ConfigError naming the field, path and value.
"""

from __future__ import annotations

import abc
import importlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raygen.actors.spec import EpisodeSpec
from raygen.config import ConfigError, RunConfig

__all__ = ["BottleneckSource", "DroidSource", "SeededSource", "Source", "Todo", "make_source"]

TYPICAL_DROID_STEPS = 400
"""For memory requests only: DROID episodes run ~100-600 steps at 15 Hz."""
MAX_BLOCKS = 10_000
"""Ray Data input blocks at most: one episode per block up to this many episodes (hosts pick up episodes one
by one), then a few episodes per block, so a million-episode run does not make a million blocks."""


@dataclass
class Todo:
    """The episodes a run still has to make, held compactly: seeded runs as an index array (8 bytes an
    episode), recordings as their specs. ``dataset()`` builds the Ray Data input, specs made lazily."""

    count: int
    source: str = ""
    seed: int = 0
    indices: np.ndarray | None = None
    specs: list[EpisodeSpec] = field(default_factory=list)
    row_fn: Any = None
    """Index block -> spec rows (default: plain seeded specs); called as row_fn(batch, source, seed, **row_kwargs)."""
    row_kwargs: dict[str, Any] = field(default_factory=dict)
    put: tuple[str, ...] = ()
    """row_kwargs put in Ray's object store once (large tables), fetched once per worker."""

    def __len__(self) -> int:
        return self.count

    def dataset(self) -> Any:
        import ray

        blocks = max(1, min(self.count, MAX_BLOCKS))
        if self.indices is not None:
            parts = [p for p in np.array_split(self.indices, blocks) if len(p)]
            kwargs = {k: ray.put(v) if k in self.put else v for k, v in self.row_kwargs.items()}
            return ray.data.from_numpy(parts).map_batches(
                self.row_fn or _seeded_rows, fn_kwargs={"source": self.source, "seed": self.seed, **kwargs},
                batch_format="numpy", batch_size=None, num_cpus=0.01)
        items = [{**s.to_dict(), "params": json.dumps(s.params)} for s in self.specs]
        return ray.data.from_items(items, override_num_blocks=blocks)


def _seeded_rows(batch: dict[str, np.ndarray], source: str, seed: int) -> dict[str, np.ndarray]:
    """Index blocks -> spec rows (the columns WorkerHost reads)."""
    idx = np.asarray(batch["data"], dtype=np.int64).reshape(-1)
    n = len(idx)
    return {"source": np.full(n, source, dtype=object), "seed": np.full(n, seed, dtype=np.int64), "index": idx,
            "params": np.full(n, "{}", dtype=object), "key": np.full(n, "", dtype=object)}


class Source(abc.ABC):
    def __init__(self, config: RunConfig):
        self.config = config

    @property
    @abc.abstractmethod
    def total(self) -> int:
        """Episodes the source holds (before resume skips the done ones)."""

    @abc.abstractmethod
    def specs(self, skip: set[str] | frozenset[str] = frozenset()) -> list[EpisodeSpec]:
        """Every episode's spec, minus those whose key is in ``skip`` (committed or rejected)."""

    def todo(self, skip: set[str] | frozenset[str] = frozenset()) -> Todo:
        """What is left to make, compactly (a run's input)."""
        specs = self.specs(skip)
        return Todo(count=len(specs), specs=specs)

    @abc.abstractmethod
    def host_options(self) -> dict[str, Any]:
        """The options each backend process starts with."""

    @abc.abstractmethod
    def raw_bytes(self) -> int:
        """About how many bytes one episode's raw frames take (stage actors ask Ray for memory by it)."""

    def _check_backend_options(self, known: set[str]) -> None:
        src = self.config.source
        module = importlib.import_module(_worker(src.backend))
        allowed = set(getattr(module, "SIM_OPTIONS", ())) | known
        unknown = sorted(set(src.backend_options) - allowed)
        if unknown:
            raise ConfigError(f"source.backend_options: unknown option(s) {unknown} for backend {src.backend!r}; "
                              f"known: {sorted(allowed - known)}")


def _worker(backend: str) -> str:
    from raygen.actors.registry import worker_module

    return worker_module(backend)


class SeededSource(Source):
    """Simulated episodes: (source, seed, index) for index 0..episodes-1."""

    def __init__(self, config: RunConfig):
        from raygen.actors._backend import TASKS

        super().__init__(config)
        try:
            params_type, _ = TASKS[config.source.task]
            self.params = params_type.from_options(dict(config.source.task_params), where="source.task_params")
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from None
        self._check_backend_options({"width", "height"})

    @property
    def total(self) -> int:
        return self.config.source.episodes

    def specs(self, skip: set[str] | frozenset[str] = frozenset()) -> list[EpisodeSpec]:
        src = self.config.source
        return [EpisodeSpec(src.name, src.seed, int(i)) for i in self._remaining(skip)]

    def todo(self, skip: set[str] | frozenset[str] = frozenset()) -> Todo:
        src = self.config.source
        remaining = self._remaining(skip)
        return Todo(count=len(remaining), source=src.name, seed=src.seed, indices=remaining)

    def _remaining(self, skip: set[str] | frozenset[str]) -> np.ndarray:
        """Indices 0..episodes-1 whose key is not in ``skip``, without making a key per episode."""
        src = self.config.source
        prefix = f"{src.name}-s{src.seed}-"
        done = np.fromiter((int(k[len(prefix):]) for k in skip if k.startswith(prefix) and k[len(prefix):].isdigit()),
                           dtype=np.int64)
        return np.setdiff1d(np.arange(src.episodes, dtype=np.int64), done, assume_unique=False)

    def host_options(self) -> dict[str, Any]:
        src = self.config.source
        width, height = src.size or (0, 0)
        return {"width": width, "height": height, "task": dict(src.task_params), "task_name": src.task,
                "render_only_kept": src.renders_only_kept, **src.backend_options}

    def raw_bytes(self) -> int:
        """Two cameras (three for two_arms) of RGB + uint16 depth, over the longest episode."""
        src = self.config.source
        width, height = src.size or (0, 0)
        frames = getattr(self.params, "max_frames", self.params.frames)
        return frames * (3 if src.task == "two_arms" else 2) * width * height * (3 + 2)


class DroidSource(Source):
    """The episodes of a DROID raw tree that the filters keep; key = the DROID uuid."""

    def __init__(self, config: RunConfig):
        from raygen.actors.droid.calibration import CalibrationSources
        from raygen.actors.droid.raw import DroidFilter, DroidTreeError, list_episodes, read_id_file

        super().__init__(config)
        src, d = config.source, config.source.droid
        self._check_backend_options(set())
        try:
            ids = read_id_file(d.episode_ids_file) if d.episode_ids_file else None
            filt = DroidFilter(outcome=d.outcome, labs=tuple(d.labs) if d.labs is not None else None,
                               date_from=d.date_from, date_to=d.date_to, ids=ids, limit=d.limit)
            self.refs, self.in_tree = list_episodes(str(src.root), filt)
        except DroidTreeError as exc:
            raise ConfigError(str(exc)) from None
        try:  # unreadable calibration files fail here, not in every worker
            CalibrationSources.load(d.calibration_cache, d.intrinsics_file, d.missing_intrinsics)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def total(self) -> int:
        return len(self.refs)

    def specs(self, skip: set[str] | frozenset[str] = frozenset()) -> list[EpisodeSpec]:
        return [EpisodeSpec(self.config.source.name, 0, i, params={"droid": ref.to_params()}, key=ref.uuid)
                for i, ref in enumerate(self.refs) if ref.uuid not in skip]

    def host_options(self) -> dict[str, Any]:
        """Local paths made absolute: the backend processes work in folders of their own."""
        src = self.config.source
        droid = src.droid.model_dump(mode="json")
        for name in ("calibration_cache", "intrinsics_file", "episode_ids_file"):
            droid[name] = _absolute(droid[name])
        return {"root": _absolute(str(src.root)), "width": src.width, "height": src.height, "droid": droid,
                **src.backend_options}

    def raw_bytes(self) -> int:
        """Three cameras of RGB + uint16 depth at the stored size (DROID records 1280x720)."""
        if self.config.source.droid.mode == "metadata":
            return 0
        width, height = self.config.source.size or (1280, 720)
        return TYPICAL_DROID_STEPS * 3 * width * height * (3 + 2)


class BottleneckSource(SeededSource):
    """Episode ``i`` of seed ``s`` starts near a critical state of ``source.bottleneck.dataset``: the state
    comes from the inverse-usage plan persisted in the output, the perturbation from (seed, i). Each spec
    carries everything its worker needs (raygen.actors.tasks.bottleneck).

    Held compactly like a seeded run: the remaining indices, the plan (one state number per index) and the
    table of critical states (each state's spec part as JSON, once), put in Ray's object store once; the
    specs are made inside the stream, block by block."""

    def __init__(self, config: RunConfig):
        from raygen.critical.sampler import SourceDatasetError, load_critical_states

        super().__init__(config)
        bn = config.source.bottleneck
        assert bn is not None
        try:
            self.states = load_critical_states(bn.dataset)
        except SourceDatasetError as exc:
            raise ConfigError(str(exc)) from None
        self.by_key = {s.key: s for s in self.states}

    def _plan(self) -> tuple[np.ndarray, dict[str, Any]]:
        """(state number per index 0..episodes-1, the row function's arguments); plans and persists first."""
        from raygen.critical.sampler import SourceDatasetError, UsagePlan

        src, bn = self.config.source, self.config.source.bottleneck
        assert bn is not None
        root = self.config.output.path
        try:
            usage = UsagePlan.load(root) or UsagePlan([], dataset=str(bn.dataset))
            plan = usage.plan(self.states, src.seed, src.episodes, dataset=str(bn.dataset))
        except SourceDatasetError as exc:
            raise ConfigError(str(exc)) from None
        usage.save(root)
        table = [self.by_key.get(tuple(k)) for k in usage.states]  # None: a state the source no longer has
        states = [None if st is None else json.dumps({**st.params, "recovery_steps": bn.recovery_steps})
                  for st in table]
        tasks = [None if st is None else json.dumps({**st.task_params, **src.task_params}) for st in table]
        ranges = {"radius_m": list(bn.radius_m), "elevation_deg": list(bn.elevation_deg),
                  "azimuth_deg": list(bn.azimuth_deg), "rotation_deg": list(bn.rotation_deg)}
        return np.asarray(plan, dtype=np.int64), {"states": states, "tasks": tasks, "ranges": ranges}

    def todo(self, skip: set[str] | frozenset[str] = frozenset()) -> Todo:
        src = self.config.source
        plan, table = self._plan()
        remaining = self._remaining(skip)
        return Todo(count=len(remaining), source=src.name, seed=src.seed, indices=remaining,
                    row_fn=_bottleneck_rows, row_kwargs={"plan": plan, **table}, put=("plan", "states", "tasks"))

    def specs(self, skip: set[str] | frozenset[str] = frozenset()) -> list[EpisodeSpec]:
        """Every remaining spec at once (tests, small runs); a run streams them through :meth:`todo`."""
        src = self.config.source
        plan, table = self._plan()
        rows = _bottleneck_rows({"data": self._remaining(skip)}, src.name, src.seed, plan=plan, **table)
        return [EpisodeSpec.from_dict({k: rows[k][i] for k in rows}) for i in range(len(rows["index"]))]


_TABLES: dict[str, Any] = {}
"""The state tables a Ray worker already fetched from the object store, by object id."""


def _resolve(value: Any) -> Any:
    """A value passed to a stream function, or the ObjectRef it was put behind (fetched once per worker)."""
    hexid = getattr(value, "hex", None)
    if not callable(hexid) or not type(value).__name__.endswith("ObjectRef"):
        return value
    key = value.hex()
    if key not in _TABLES:
        import ray

        _TABLES.clear()  # one run's tables at a time
        _TABLES[key] = ray.get(value)
    return _TABLES[key]


def _bottleneck_rows(batch: dict[str, np.ndarray], source: str, seed: int, *, plan: Any, states: Any, tasks: Any,
                     ranges: dict[str, list[float]]) -> dict[str, np.ndarray]:
    """Index blocks -> bottleneck spec rows: the planned state's JSON plus the (seed, index) perturbation."""
    from raygen.critical.sampler import perturbation_rng, sample_perturbation

    plan, states, tasks = _resolve(plan), _resolve(states), _resolve(tasks)
    idx = np.asarray(batch["data"], dtype=np.int64).reshape(-1)
    params = []
    for i in idx.tolist():
        k = int(plan[i])
        pert = json.dumps(sample_perturbation(perturbation_rng(seed, i), **{n: tuple(v) for n, v in ranges.items()}))
        params.append(f'{{"task": {tasks[k]}, "bottleneck": {states[k][:-1]}, "perturbation": {pert}}}}}')
    n = len(idx)
    return {"source": np.full(n, source, dtype=object), "seed": np.full(n, seed, dtype=np.int64), "index": idx,
            "params": np.asarray(params, dtype=object), "key": np.full(n, "", dtype=object)}


def _absolute(path: str | None) -> str | None:
    if path is None or "://" in path:
        return path
    from pathlib import Path

    return str(Path(path).expanduser().resolve())


def make_source(config: RunConfig) -> Source:
    """The source for ``config.source.backend``, checked; the backend's SDK is checked here too."""
    from raygen.actors.registry import check_backend

    check_backend(config.source.backend, python=config.source.python)
    if config.source.recording:
        return DroidSource(config)
    return BottleneckSource(config) if config.source.bottleneck is not None else SeededSource(config)
