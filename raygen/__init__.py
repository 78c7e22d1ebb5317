"""raygen: a Ray data factory for robot-learning datasets."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "feed", "load_config", "run", "start"]


def run(config: Any, **kwargs: Any) -> Any:
    """Run a config (a RunConfig or a path to YAML) to the end; returns the RunSummary."""
    from raygen.pipelines.run import run as _run

    return _run(_config(config), **kwargs)


def start(config: Any) -> Any:
    """Start a run in the background; returns a RunHandle (progress, stop(), wait())."""
    from raygen.pipelines.run import start as _start

    return _start(_config(config))


def feed(source: Any, **kwargs: Any) -> Any:
    """Committed episodes of a run (a RunHandle) or a dataset folder, batch by batch, as they are committed
    (raygen.pipelines.feeds.feed: min_quality_score, batch_size, start, follow, ...)."""
    from raygen.pipelines.feeds import feed as _feed

    return _feed(source, **kwargs)


def load_config(path: Any = None, overrides: list[str] | None = None, output: str | None = None) -> Any:
    from raygen.config import load_config as _load

    return _load(path, overrides, output)


def _config(config: Any) -> Any:
    from raygen.config import RunConfig

    return config if isinstance(config, RunConfig) else load_config(config)
