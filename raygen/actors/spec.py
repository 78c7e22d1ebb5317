"""EpisodeSpec: what one episode is, before it exists. Deterministic and stable across runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpisodeSpec"]


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to generate: the same spec always yields the same episode."""

    source: str
    """What makes it, e.g. "bullet-pick_place"; part of the key."""
    seed: int
    """The run's seed."""
    index: int
    """The episode's number within the run."""
    params: dict[str, Any] = field(default_factory=dict)
    """Task and backend parameters (resolution, steps_per_segment, ...), JSON values."""

    def __post_init__(self) -> None:
        if not self.source or any(c in self.source for c in "/\\ \n"):
            raise ValueError(f"EpisodeSpec.source: {self.source!r} must be non-empty without '/', '\\' or spaces")
        if self.index < 0:
            raise ValueError(f"EpisodeSpec.index: must be >= 0, got {self.index}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"EpisodeSpec.seed: must be in [0, 2**32), got {self.seed}")

    @property
    def episode_key(self) -> str:
        return f"{self.source}-s{self.seed}-{self.index:06d}"

    @property
    def rng_seed(self) -> list[int]:
        """Entropy for numpy's SeedSequence: independent streams per (seed, index)."""
        return [int(self.seed), int(self.index)]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "seed": self.seed, "index": self.index, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeSpec:
        params = d.get("params") or {}
        if isinstance(params, str):
            params = json.loads(params)
        return cls(source=str(d["source"]), seed=int(d["seed"]), index=int(d["index"]), params=dict(params))
