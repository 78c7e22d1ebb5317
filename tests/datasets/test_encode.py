"""The encode stage's output travels as a row and commits like a locally encoded episode."""

import numpy as np
import pytest

from raygen.datasets import Committer, EncodedEpisode, ShardWriter, VideoSettings, encode_episode
from raygen.datasets.episode import episode_from_row, episode_to_row
from raygen.datasets.reader import DatasetReader
from raygen.datasets.verify import verify_dataset
from tests.conftest import small_episodes


def _same_encoded(a: EncodedEpisode, b: EncodedEpisode) -> None:
    assert (a.episode_key, a.task, a.fps, a.success, a.robot_type) == (b.episode_key, b.task, b.fps, b.success,
                                                                       b.robot_type)
    assert a.features == b.features and a.record == b.record and a.resolution == b.resolution
    assert a.videos == b.videos and a.depth == b.depth
    assert a.columns.keys() == b.columns.keys()
    for k in a.columns:
        np.testing.assert_array_equal(a.columns[k], b.columns[k])
    for k in a.histograms:
        np.testing.assert_array_equal(a.histograms[k], b.histograms[k])
    np.testing.assert_array_equal(a.flow, b.flow)


def test_encoded_row_round_trip():
    enc = encode_episode(small_episodes(1)[0])
    assert set(enc.videos) == {"cam_high", "cam_wrist"} and all(v[4:8] == b"ftyp" for v in enc.videos.values())
    assert all(v[:4] == b"\x1a\x45\xdf\xa3" for v in enc.depth.values())  # Matroska/EBML magic
    _same_encoded(enc, EncodedEpisode.from_row(enc.to_row()))


@pytest.mark.ray
def test_encode_in_ray_data_then_commit_on_the_driver(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        eps = small_episodes(4, frames=10, height=32, width=32)
        video = VideoSettings(codec="libx264", preset="ultrafast")

        def encode(row):
            return encode_episode(episode_from_row(row), video).to_row()

        ds = ray.data.from_items([episode_to_row(e) for e in eps]).map(encode, num_cpus=0.5)
        committer = Committer(tmp_path / "ds")
        shard = ShardWriter(committer.staging_dir, video)
        for row in sorted(ds.iter_rows(), key=lambda r: r["episode_key"]):
            shard.add(EncodedEpisode.from_row(row))
        committer.commit(shard.finalize())
    finally:
        ray.shutdown()
    assert verify_dataset(tmp_path / "ds").ok
    reader = DatasetReader(tmp_path / "ds")
    for i, e in enumerate(eps):
        back = reader.episode(i)
        np.testing.assert_array_equal(back.state, e.state)
        np.testing.assert_array_equal(back.cameras["cam_wrist"].depth, e.cameras["cam_wrist"].depth)
