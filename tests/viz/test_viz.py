"""Looking at a dataset: `raygen view` writes a rerun recording holding the episode's entities, read back with
rerun's own API; `raygen report` writes one page with every plot, checked in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from raygen.cli import main
from raygen.viz.report import PLOTS, write_report

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bullet_dataset(tmp_path_factory):
    """Three simulated pick-and-place episodes through the quality and flow stages, written, and one reject."""
    from raygen.actors.bullet.worker import BulletBackend
    from raygen.actors.spec import EpisodeSpec
    from raygen.datasets.writer import DatasetWriter
    from raygen.pipelines.quality import assess
    from raygen.pipelines.rejects import fold_rejects
    from raygen.pipelines.stages import FlowStage, record_reject

    root = tmp_path_factory.mktemp("viz") / "ds"
    backend = BulletBackend({"width": 32, "height": 32, "task": {"steps_per_segment": 6}})
    try:
        with DatasetWriter(root, shard_size=2) as w:
            for i in range(3):
                ep = backend.run_episode(EpisodeSpec("bullet-pick_place", 0, i))
                ep.metrics.update(assess(ep).metrics)
                ep.metrics["host.episode_s"] = 1.0 + i
                w.add(FlowStage().flow(ep))
            rejects = w.committer.staging_dir / "rejects"
            record_reject(rejects, "bullet-pick_place-s0-000009", "quality", "task failed (success is required)",
                          score=0.0)
            fold_rejects(root, rejects)
    finally:
        backend.close()
    return root


def test_view_saves_a_recording_that_rerun_reads_back_with_the_entities(bullet_dataset, tmp_path, capsys):
    from rerun.chunk import RrdReader

    rrd = tmp_path / "episode.rrd"
    assert main(["view", str(bullet_dataset), "--episode", "1", "--save", str(rrd)]) == 0
    assert f"saved to {rrd}" in capsys.readouterr().out
    reader = RrdReader(str(rrd))
    assert [r.application_id for r in reader.recordings()] == ["raygen"]
    schema = reader.store().schema()
    paths = set(schema.entity_paths())
    for cam in ("cam_high", "cam_wrist"):
        for sub in ("", "/image", "/image/rgb", "/image/depth", "/image/tracks"):
            assert f"/world/cameras/{cam}{sub}" in paths, (cam, sub, sorted(paths))
    assert {"/world/gripper", "/world/tracks3d", "/world/tracks3d/paths", "/plots/gripper_opening"} <= paths
    assert {"frame", "time"} <= {c.name for c in schema.index_columns()}
    archetypes = set(schema.archetypes())
    assert {"rerun.archetypes.Image", "rerun.archetypes.DepthImage", "rerun.archetypes.Points2D",
            "rerun.archetypes.Points3D", "rerun.archetypes.Transform3D", "rerun.archetypes.Pinhole"} <= archetypes
    frames = sum(ch.num_rows for ch in reader.stream() if ch.entity_path == "/world/cameras/cam_high/image/rgb")
    assert frames == 6 * 9  # every frame of the episode


def test_report_has_every_plot_with_marks(bullet_dataset, tmp_path):
    page = write_report(bullet_dataset, tmp_path / "report.html").read_text()
    for name in PLOTS:
        figure = re.search(rf'<figure class="plot" id="figure-{name}">(.*?)</figure>', page, re.S)
        assert figure, name
        assert figure.group(1).count('class="mark"') > 0, name
    assert "quality: task failed (success is required)" in page
    assert "No diversity report" in page  # this dataset was written without a run


@pytest.mark.slow
@pytest.mark.ray
def test_report_of_a_run_renders_in_a_headless_browser(tmp_path):
    """A real run (with a reject, its diversity report and costs), then Chromium from the OS packages."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (apt-get install chromium)")
    import ray

    from raygen.config import load_config
    from raygen.pipelines.run import run

    cfg = load_config(REPO / "configs" / "pick_place_local.yaml",
                      ["source.episodes=4", "source.width=32", "source.height=32",
                       "source.task_params={steps_per_segment: 10}",  # episode 3 misses the place spot
                       "output.video_codec=libx264", "output.shard_size=2"], output=str(tmp_path / "ds"))
    try:
        summary = run(cfg)
    finally:
        ray.shutdown()
    assert summary.accepted >= 1 and summary.rejected >= 1, summary.format()
    page = write_report(tmp_path / "ds")
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    check = re.search(r'<pre id="render-check"[^>]*>(.*?)</pre>', out.stdout, re.S)
    assert check, out.stdout[-2000:] + out.stderr[-2000:]
    laid_out = json.loads(check.group(1))
    assert set(laid_out) == set(PLOTS)
    for name, box in laid_out.items():
        assert box["width"] > 200 and box["height"] > 50 and box["marks"] > 0, (name, box)
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    import cv2

    img = cv2.imread(str(shot))
    assert img is not None and img.shape[1] == 1280 and np.std(img) > 10  # not a blank page
