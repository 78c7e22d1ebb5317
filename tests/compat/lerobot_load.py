"""Load a raygen dataset with lerobot's own LeRobotDataset and check every frame.

Runs under an interpreter that has lerobot installed (see tools/lerobot_venv.sh), NOT raygen's venv:

    python tests/compat/lerobot_load.py DATASET EXPECTED.npz

EXPECTED.npz holds, per camera, the RGB frames raygen was given ([N,H,W,3] uint8, in global frame
order) and the state/action arrays. Every item of the dataset is loaded (which decodes every video
frame), compared with what was written, and checked against its neighbours so that an off-by-one
frame would show. Prints one JSON line; exit code 0 when everything matches.
"""

import json
import os
import sys
import tempfile
import time


def compare_items(ds, exp, result: dict) -> None:
    """Load every item of ``ds`` (decoding every video frame) and compare it with EXPECTED; errors go to result."""
    import numpy as np

    worst = {k: 0.0 for k in ds.meta.camera_keys}
    neighbour_better = 0
    for i in range(len(ds)):
        item = ds[i]
        if int(item["index"]) != i or int(item["episode_index"]) != int(exp["episode_index"][i]):
            result["errors"].append(f"item {i}: index {int(item['index'])}, episode {int(item['episode_index'])}")
        for name in ("observation.state", "action"):
            if not np.array_equal(item[name].numpy(), exp[name][i]):
                result["errors"].append(f"frame {i}: {name} differs")
        for key in ds.meta.camera_keys:
            img = (item[key].numpy().transpose(1, 2, 0) * 255.0).astype(np.float32)
            ref = exp[key].astype(np.float32)
            err = float(np.abs(img - ref[i]).mean())
            worst[key] = max(worst[key], err)
            for j in (i - 1, i + 1):
                same_ep = 0 <= j < len(ds) and exp["episode_index"][j] == exp["episode_index"][i]
                # a neighbour that barely differs from the frame itself (a still scene) cannot tell them apart
                distinct = same_ep and float(np.abs(ref[j] - ref[i]).mean()) > 2 * err
                if distinct and float(np.abs(img - ref[j]).mean()) < err:
                    neighbour_better += 1
    result["items_read"] = len(ds)
    result["worst_mean_abs_error"] = worst
    result["frames_closer_to_a_neighbour"] = neighbour_better
    if neighbour_better:
        result["errors"].append(f"{neighbour_better} decoded frames match a neighbouring frame better")
    for key, err in worst.items():
        if err > float(exp["rgb_tolerance"]):
            result["errors"].append(f"{key}: mean abs error {err:.2f} > {float(exp['rgb_tolerance'])}")


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hf_home_"))
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, expected_path = sys.argv[1], sys.argv[2]
    backend = sys.argv[3] if len(sys.argv) > 3 else None
    exp = np.load(expected_path)
    t0 = time.time()
    kw = {"video_backend": backend} if backend else {}
    ds = LeRobotDataset(repo_id="local/raygen-check", root=root, **kw)
    result = {"episodes": ds.num_episodes, "frames": ds.num_frames, "video_backend": ds.video_backend,
              "camera_keys": ds.meta.camera_keys, "errors": []}
    compare_items(ds, exp, result)
    result["ok"] = not result["errors"]
    result["seconds"] = round(time.time() - t0, 2)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
