"""Episodes and datasets: the contract, LeRobot v3.0 writing and reading, depth, ledger, verification."""

from raygen.datasets._video import VideoSettings
from raygen.datasets.commit import Committer, DatasetLayoutError
from raygen.datasets.encode import EncodedEpisode, encode_episode
from raygen.datasets.episode import (
    CameraFrames,
    Episode,
    EpisodeValidationError,
    episode_from_row,
    episode_to_row,
    validate_episode,
)
from raygen.datasets.shard import ShardWriter, StagedShard
from raygen.datasets.writer import DatasetWriter

__all__ = [
    "CameraFrames",
    "Committer",
    "DatasetLayoutError",
    "DatasetWriter",
    "EncodedEpisode",
    "Episode",
    "EpisodeValidationError",
    "ShardWriter",
    "StagedShard",
    "VideoSettings",
    "encode_episode",
    "episode_from_row",
    "episode_to_row",
    "validate_episode",
]
