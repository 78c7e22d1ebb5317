"""DROID output (full and metadata mode) loads in lerobot's own LeRobotDataset, every item read (slow).

Same interpreter and script as test_lerobot.py; the episodes come from the synthetic DROID tree through the
CPU backend and the flow stage, as a run makes them.
"""

from pathlib import Path

import numpy as np
import pytest

from raygen.actors.droid.backend import DroidBackend
from raygen.actors.droid.raw import DroidFilter, list_episodes
from raygen.actors.spec import EpisodeSpec
from raygen.datasets import VideoSettings
from raygen.pipelines.flow import add_flow
from tests.compat.test_lerobot import LEROBOT_PY, lerobot_load
from tests.conftest import write_dataset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(LEROBOT_PY).exists(), reason=f"no lerobot interpreter at {LEROBOT_PY}"),
]


@pytest.mark.parametrize("mode", ["full", "metadata"])
def test_lerobot_loads_droid_output(droid_tree, tmp_path, mode):
    root, _ = droid_tree
    refs, _ = list_episodes(str(root), DroidFilter(outcome="all"))
    backend = DroidBackend({"root": str(root), "width": 160, "height": 90, "droid": {"mode": mode}})
    eps = [add_flow(backend.run_episode(EpisodeSpec("droid", 0, i, params={"droid": r.to_params()}, key=r.uuid)))
           for i, r in enumerate(refs)]
    out = tmp_path / "ds"
    write_dataset(out, eps, shard_size=2, video=VideoSettings(codec="libx264"))
    expected = {"observation.state": np.concatenate([e.state for e in eps]),
                "action": np.concatenate([e.action for e in eps]),
                "episode_index": np.repeat(np.arange(len(eps)), [e.length for e in eps]),
                "rgb_tolerance": np.float64(10.0)}
    if mode == "full":
        for cam in eps[0].cameras:
            expected[f"observation.images.{cam}"] = np.concatenate([e.cameras[cam].rgb for e in eps])
    np.savez(tmp_path / "expected.npz", **expected)
    result = lerobot_load(out, tmp_path / "expected.npz")
    assert result["episodes"] == 3 and result["frames"] == 72
