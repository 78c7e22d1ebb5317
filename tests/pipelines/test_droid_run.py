"""DROID runs on a local Ray instance: bad recordings become rejects and the run goes on, reruns skip what
is done, metadata mode writes no frames, the metadata-only upload works, and the zed backend runs through
its hosts on a (declared) GPU with the labelled pyzed double."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from raygen.config import load_config
from raygen.datasets.reader import DatasetReader
from raygen.datasets.verify import verify_dataset
from raygen.pipelines.rejects import read_rejects
from tests.conftest import FAKES
from tests.droid_synth import break_episode, make_episode

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]

BROKEN = ("no_trajectory", "corrupt_trajectory", "corrupt_metadata", "missing_key", "nan_extrinsics", "ragged",
          "zero_intrinsics", "short_video", "no_mp4", "corrupt_mp4")


def _ray(**kw):
    ray = pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _metrics_export_port=port,
             **kw)
    return ray


@pytest.fixture
def ray_local():
    ray = _ray()
    yield ray
    ray.shutdown()


def _config(root, out, *extra):
    return load_config(REPO / "configs" / "droid_cpu.yaml",
                       [f"source.root={root}", "source.width=160", "source.height=90", "resources.cpu_workers=2",
                        "resources.cpus_per_worker=0.5", "output.shard_size=2", "output.video_codec=libx264",
                        *extra], output=str(out))


def test_bad_recordings_are_rejected_with_their_reason_and_the_run_goes_on(ray_local, tmp_path):
    from raygen.pipelines.run import run

    root = tmp_path / "droid_raw"
    eps = [make_episode(root, i, steps=10, render_size=(160, 90), truth=False, svo=False)
           for i in range(len(BROKEN) + 3)]
    expected = {ep.uuid: break_episode(ep, how) for ep, how in zip(eps, BROKEN)}
    break_episode(eps[len(BROKEN)], "one_frame_fewer")  # accepted, recorded
    good = {ep.uuid for ep in eps[len(BROKEN):]}
    s = run(_config(root, tmp_path / "ds"))
    assert s.accepted == len(good) and s.rejected == len(BROKEN) and s.verify_ok, s.format()
    assert s.worker_retries == 0  # bad input is not retried
    rejects = read_rejects(tmp_path / "ds").to_pylist()
    by_key = {r["episode_key"]: r for r in rejects}
    assert set(by_key) == set(expected)
    for uuid, reason in expected.items():
        assert reason in by_key[uuid]["reason"], (uuid, reason, by_key[uuid]["reason"])
        assert by_key[uuid]["stage"] == "generate" and by_key[uuid]["attempts"] == 1
    reader = DatasetReader(tmp_path / "ds")
    assert set(reader.keys) == good
    filled = reader.episode(eps[len(BROKEN)].uuid, decode_video=False)
    assert filled.cameras["wrist_left"].info["frames_filled"] == [9]
    assert filled.cameras["exterior_1_left"].depth is not None
    assert filled.cameras["wrist_left"].rgb.shape[1:3] == (90, 160)
    raygen_info = reader.raygen_info
    assert raygen_info["depth"]["wrist_left"]["method"].startswith("stereo_sgbm")
    again = run(_config(root, tmp_path / "ds"))
    assert again.planned == 0 and again.skipped_done == len(eps)  # committed and rejected uuids are skipped


def test_metadata_mode_writes_no_frames_and_uploads_to_a_metadata_repo(ray_local, droid_tree, tmp_path):
    from raygen.pipelines.run import run

    root, eps = droid_tree
    out, full, meta_repo = tmp_path / "ds", tmp_path / "full_repo", tmp_path / "meta_repo"
    s = run(_config(root, out, "source.droid.mode=metadata", "source.droid.outcome=all", "source.width=null",
                    "source.height=null", f"upload.repo={full}", f"upload.metadata_repo={meta_repo}"))
    assert s.accepted == 3 and s.verify_ok and not s.upload_error, s.format()
    assert not (out / "videos").exists() and not (out / "depth").exists()
    info = (out / "meta/info.json").read_text()
    assert '"video_path": null' in info and '"dtype": "video"' not in info
    ep = DatasetReader(out).episode(eps[0].uuid)
    assert ep.cameras["wrist_left"].rgb is None and ep.cameras["wrist_left"].resolution == (720, 1280)
    assert {"tracks3d", "tracks2d.wrist_left", "tracks2d.exterior_2_left.visible"} <= set(ep.frame_features)
    assert ep.flow is not None and ep.frame_features["tracks2d.wrist_left.visible"].any()
    for target in (full, meta_repo):
        assert verify_dataset(target).ok
        assert {p.name for p in (target / "data").rglob("*.parquet")} and (target / "flow").exists()


def test_zed_runs_through_its_hosts_on_a_gpu_with_the_double(droid_tree, tmp_path, monkeypatch):
    """Ray declares one (fake) GPU here; the hosts start the zed worker, which imports the pyzed TEST DOUBLE."""
    from raygen.pipelines.run import run

    monkeypatch.syspath_prepend(str(FAKES))  # the driver checks that pyzed.sl is importable
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAKES), os.environ.get("PYTHONPATH", "")]))
    ray = _ray(num_gpus=1)
    try:
        root, eps = droid_tree
        cfg = load_config(REPO / "configs" / "droid_zed.yaml",
                          [f"source.root={root}", "source.width=160", "source.height=90", "resources.workers_per_gpu=1",
                           "resources.cpus_per_worker=0.5", "output.video_codec=libx264", "output.shard_size=2"],
                          output=str(tmp_path / "ds"))
        s = run(cfg)
    finally:
        ray.shutdown()
    assert s.accepted == 2 and s.verify_ok and "1 GPU each" in s.plan and s.gpu_seconds > 0, s.format()
    ep = DatasetReader(tmp_path / "ds").episode(eps[0].uuid, decode_video=False)
    assert ep.cameras["exterior_1_left"].info["depth_method"] == "zed_sdk:NEURAL"
    assert ep.cameras["exterior_1_left"].info["intrinsics_source"] == "zed_sdk"
    assert "ZED SDK 5.0.0-test-double" in ep.provenance["backend_version"]
