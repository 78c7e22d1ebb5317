"""EpisodeSpec: what one episode is, before it exists. Deterministic and stable across runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpisodeFailed", "EpisodeInputError", "EpisodeSpec"]


class EpisodeInputError(ValueError):
    """The episode's input is bad (a recording that is missing, corrupt or inconsistent): the same spec
    would fail the same way every time. A backend raises it to have the episode recorded as a reject with
    this message at once, without the retries a crash or a hang gets. The message is the reject's reason:
    name the file, the field and the value at fault."""


class EpisodeFailed(EpisodeInputError):
    """The task failed on a deterministic first pass (physics only), so the episode was not rendered: the
    same spec would fail again, and there is no episode to judge. Recorded as a reject whose reason starts
    with :data:`EpisodeFailed.PREFIX`, not retried."""

    PREFIX = "task failed"


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
    key: str | None = None
    """The episode's key when the source names its episodes itself (a DROID uuid); None derives it from
    (source, seed, index)."""

    def __post_init__(self) -> None:
        if not self.source or any(c in self.source for c in "/\\ \n"):
            raise ValueError(f"EpisodeSpec.source: {self.source!r} must be non-empty without '/', '\\' or spaces")
        if self.key is not None and (not self.key or any(c in self.key for c in "/\\\n\r\t ")
                                     or self.key.startswith(".")):
            raise ValueError(f"EpisodeSpec.key: {self.key!r} must be non-empty, not start with '.', and hold no "
                             "'/', '\\' or whitespace (it names files)")
        if self.index < 0:
            raise ValueError(f"EpisodeSpec.index: must be >= 0, got {self.index}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"EpisodeSpec.seed: must be in [0, 2**32), got {self.seed}")

    @property
    def episode_key(self) -> str:
        return self.key or f"{self.source}-s{self.seed}-{self.index:06d}"

    @property
    def rng_seed(self) -> list[int]:
        """Entropy for numpy's SeedSequence: independent streams per (seed, index)."""
        return [int(self.seed), int(self.index)]

    def to_dict(self) -> dict[str, Any]:
        """JSON values; ``key`` is "" when derived (Ray Data columns keep one type)."""
        return {"source": self.source, "seed": self.seed, "index": self.index, "params": dict(self.params),
                "key": self.key or ""}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeSpec:
        params = d.get("params") or {}
        if isinstance(params, str):
            params = json.loads(params)
        return cls(source=str(d["source"]), seed=int(d["seed"]), index=int(d["index"]), params=dict(params),
                   key=str(d["key"]) if d.get("key") else None)
