"""raygen output loads in lerobot's own LeRobotDataset, every frame decoded and compared (slow).

lerobot is not a dependency (it pulls CUDA torch); `make lerobot-venv` builds a CPU-only environment
for it (tools/lerobot_venv.sh). The test runs when RAYGEN_LEROBOT_PYTHON names that interpreter or the
default /tmp/lerobot-venv exists, and is skipped otherwise.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raygen.datasets import VideoSettings
from tests.conftest import small_episodes, write_dataset

LEROBOT_PY = os.environ.get("RAYGEN_LEROBOT_PYTHON", "/tmp/lerobot-venv/bin/python")
SCRIPT = Path(__file__).with_name("lerobot_load.py")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(LEROBOT_PY).exists(), reason=f"no lerobot interpreter at {LEROBOT_PY}"),
]


def save_expected(eps, path: Path) -> None:
    """What lerobot must read back (the EXPECTED.npz of lerobot_load.py): state, action, episode of each frame,
    and every camera's RGB frames in global frame order."""
    expected = {
        "observation.state": np.concatenate([e.state for e in eps]),
        "action": np.concatenate([e.action for e in eps]),
        "episode_index": np.repeat(np.arange(len(eps)), [len(e.state) for e in eps]),
        "rgb_tolerance": np.float64(8.0),
    }
    for cam in ("cam_high", "cam_wrist"):
        expected[f"observation.images.{cam}"] = np.concatenate([e.cameras[cam].rgb for e in eps])
    np.savez(path, **expected)


def lerobot_load(root: Path, expected: Path) -> dict:
    """Run lerobot_load.py on a dataset under the lerobot interpreter; its result, asserted ok."""
    proc = subprocess.run([LEROBOT_PY, str(SCRIPT), str(root), str(expected)], capture_output=True, text=True,
                          timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1])
    assert proc.returncode == 0 and result["ok"], result
    print(json.dumps(result), file=sys.stderr)
    return result


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264"])
def test_lerobot_loads_every_frame(tmp_path, codec):
    eps = small_episodes(5, frames=20, height=64, width=64)
    root = tmp_path / "ds"
    write_dataset(root, eps, shard_size=2, video=VideoSettings(codec=codec))
    save_expected(eps, tmp_path / "expected.npz")
    result = lerobot_load(root, tmp_path / "expected.npz")
    assert result["episodes"] == 5 and result["frames"] == 100
