"""Episodes and datasets: the contract, LeRobot v3.0 writing and reading, depth, ledger, verification.

Names are loaded on first use, so a simulator's child process can import
``raygen.datasets.episode`` (numpy only) without PyAV, pyarrow or OpenCV.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CameraFrames": "raygen.datasets.episode",
    "Episode": "raygen.datasets.episode",
    "EpisodeValidationError": "raygen.datasets.episode",
    "episode_from_row": "raygen.datasets.episode",
    "episode_to_row": "raygen.datasets.episode",
    "validate_episode": "raygen.datasets.episode",
    "VideoSettings": "raygen.datasets._video",
    "Committer": "raygen.datasets.commit",
    "DatasetLayoutError": "raygen.datasets.commit",
    "EncodedEpisode": "raygen.datasets.encode",
    "encode_episode": "raygen.datasets.encode",
    "ShardWriter": "raygen.datasets.shard",
    "StagedShard": "raygen.datasets.shard",
    "DatasetWriter": "raygen.datasets.writer",
    "DatasetReader": "raygen.datasets.reader",
    "verify_dataset": "raygen.datasets.verify",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'raygen.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
