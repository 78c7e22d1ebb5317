"""Load a raygen dataset from a Hub by repo id with lerobot's own LeRobotDataset, the way users do.

Runs under an interpreter that has lerobot installed (see tools/lerobot_venv.sh), NOT raygen's venv:

    HF_ENDPOINT=... HF_TOKEN=... HF_HOME=... HF_LEROBOT_HOME=... \
        python tests/compat/lerobot_hub_load.py REPO_ID EXPECTED.npz

No local root is given: lerobot resolves the revision from the repo's codebase-version tag (``get_safe_version``
lists the repo's refs) and downloads it with ``snapshot_download`` into ``$HF_LEROBOT_HOME/REPO_ID``. EXPECTED.npz
is the same file tests/compat/lerobot_load.py takes (per camera the RGB frames raygen was given, state, action,
episode_index, rgb_tolerance). Every item is loaded and compared. The JSON line printed also says which revision
lerobot asked for and which commit(s) the downloaded files came from (huggingface_hub's local-dir metadata).
Exit code 0 when everything matches.
"""

import json
import os
import sys
import time
from pathlib import Path

from lerobot_load import compare_items  # this script's folder is on sys.path


def downloaded_commits(root: Path) -> dict[str, str]:
    """File -> commit it was downloaded from, read from huggingface_hub's ``.cache/huggingface/download`` metadata."""
    meta_dir = root / ".cache" / "huggingface" / "download"
    commits = {}
    for f in meta_dir.rglob("*.metadata"):
        lines = f.read_text().splitlines()  # commit_hash, etag, timestamp
        commits[str(f.relative_to(meta_dir))[: -len(".metadata")]] = lines[0].strip()
    return commits


def main() -> int:
    import huggingface_hub
    import numpy as np
    from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset
    from lerobot.utils.constants import HF_LEROBOT_HOME

    repo_id, expected_path = sys.argv[1], sys.argv[2]
    exp = np.load(expected_path)
    t0 = time.time()
    ds = LeRobotDataset(repo_id)  # no root: download from the hub at the codebase-version tag
    root = Path(ds.root)
    result = {
        "huggingface_hub": huggingface_hub.__version__,
        "codebase_version": CODEBASE_VERSION,
        "revision": ds.revision,
        "meta_revision": ds.meta.revision,
        "root": str(root),
        "root_under_lerobot_home": root.is_relative_to(HF_LEROBOT_HOME),
        "episodes": ds.num_episodes,
        "frames": ds.num_frames,
        "len": len(ds),
        "video_backend": ds.video_backend,
        "camera_keys": ds.meta.camera_keys,
        "local_files": sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts
        ),
        "downloaded_from": sorted(set(downloaded_commits(root).values())),
        "errors": [],
    }
    compare_items(ds, exp, result)
    result["ok"] = not result["errors"]
    result["seconds"] = round(time.time() - t0, 2)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    if os.environ.get("HF_HUB_OFFLINE"):
        sys.exit("HF_HUB_OFFLINE is set: this check must download from the hub")
    sys.exit(main())
