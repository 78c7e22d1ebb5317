"""DROID recordings: the tree, the shared reader, intrinsics without a GPU, pads, stereo depth, the ZED path.

All on synthetic DROID episodes (tests/droid_synth.py) whose truth is known; the ZED SDK is the labelled
test double in tests/fakes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys

import h5py
import numpy as np
import pytest
from scipy import ndimage

from raygen.actors.droid.backend import STEREO_METHOD, DroidBackend
from raygen.actors.droid.calibration import scale_k
from raygen.actors.droid.raw import DroidFilter, DroidTreeError, list_episodes, read_id_file
from raygen.actors.spec import EpisodeInputError, EpisodeSpec
from raygen.config import ConfigError, load_config
from raygen.datasets.episode import validate_episode
from raygen.pipelines.flow import add_flow
from raygen.pipelines.sources import make_source
from tests.conftest import FAKES
from tests.droid_synth import NATIVE, break_episode


def _spec(root, uuid: str | None = None) -> EpisodeSpec:
    refs, _ = list_episodes(str(root), DroidFilter(outcome="all"))
    ref = next(r for r in refs if uuid is None or r.uuid == uuid)
    return EpisodeSpec("droid", 0, 0, params={"droid": ref.to_params()}, key=ref.uuid)


def _backend(root, mode: str = "full", **droid) -> DroidBackend:
    return DroidBackend({"root": str(root), "width": droid.pop("width", None), "height": droid.pop("height", None),
                         "droid": {"mode": mode, **droid}})


@pytest.fixture
def tree_copy(droid_tree, tmp_path):
    root, eps = droid_tree
    dst = tmp_path / "droid_raw"
    shutil.copytree(root, dst)
    return dst, [dataclasses.replace(ep, folder=dst / ep.folder.relative_to(root)) for ep in eps]


# ------------------------------------------------------------------------------------------------ the tree

def test_listing_keys_filters_and_bad_trees(droid_tree, tmp_path):
    root, eps = droid_tree
    refs, total = list_episodes(str(root), DroidFilter(outcome="all"))
    assert total == 3 and sorted(r.uuid for r in refs) == sorted(e.uuid for e in eps)
    assert [r.uuid for r in list_episodes(str(root))[0]] == [eps[0].uuid, eps[1].uuid]  # success is the default
    assert [r.uuid for r in list_episodes(str(root), DroidFilter(outcome="failure"))[0]] == [eps[2].uuid]
    assert [r.lab for r in list_episodes(str(root), DroidFilter(outcome="all", labs=("OTHERLAB",)))[0]] == ["OTHERLAB"]
    import datetime as dt

    late = list_episodes(str(root), DroidFilter(date_from=dt.date(2023, 7, 20)))[0]
    assert [r.uuid for r in late] == [eps[1].uuid] and late[0].date == "2023-08-01"
    assert len(list_episodes(str(root), DroidFilter(outcome="all", limit=2))[0]) == 2
    assert list_episodes(f"file://{root}/RAYLAB")[0][0].uuid == eps[0].uuid  # a lab folder, as a URL
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# wanted\n{eps[1].uuid}\n")
    cfg = load_config(None, ["source.backend=droid", f"source.root={root}",
                             f"source.droid.episode_ids_file={ids}"])
    specs = make_source(cfg).specs()
    assert [s.episode_key for s in specs] == [eps[1].uuid] and specs[0].params["droid"]["outcome"] == "success"
    assert make_source(cfg).specs(skip={eps[1].uuid}) == []
    with pytest.raises(ConfigError, match=r"source.root: .*nope.* is not a readable folder .*<LAB>/success\|failure"):
        make_source(load_config(None, ["source.backend=droid", f"source.root={tmp_path / 'nope'}"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no DROID episodes under .*empty.*expected folders like <LAB>/"):
        make_source(load_config(None, ["source.backend=droid", f"source.root={tmp_path / 'empty'}"]))
    with pytest.raises(ConfigError, match=r"3 DROID episodes under .*, none kept by the filters \(outcome=success, "
                                          r"labs=\['NOLAB'\]\)"):
        make_source(load_config(None, ["source.backend=droid", f"source.root={root}",
                                       "source.droid.outcome=success", "source.droid.labs=[NOLAB]"]))
    with pytest.raises(DroidTreeError, match="episode_ids_file: cannot read"):
        read_id_file(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("overrides,match", [
    (["source.backend=droid"], "set source.root to a DROID raw tree"),
    (["source.backend=droid", "source.root=/x", "source.episodes=3"], "source.episodes is for simulators"),
    (["source.root=/x"], "source.root and source.droid are for the recording backends"),
    (["source.backend=droid", "source.root=/x", "source.width=320"], "give both source.width and source.height"),
    (["source.backend=droid", "source.root=/x", "source.droid.date_from=2024-01-02",
      "source.droid.date_to=2024-01-01"], "date_from 2024-01-02 is after date_to 2024-01-01"),
    (["source.backend=droid", "source.root=/x", "source.droid.mode=video"], "source.droid.mode: Input should be"),
])
def test_droid_config_mistakes_are_named(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


# ------------------------------------------------------------------------------------------------ the reader

def test_state_action_cameras_and_provenance_read_back_exactly(droid_tree):
    root, eps = droid_tree
    for ep_truth in eps[:2]:  # released metadata (r2d2_version) and newer (droid_version)
        ep = _backend(root, "metadata").run_episode(_spec(root, ep_truth.uuid))
        validate_episode(ep)
        with h5py.File(ep_truth.folder / "trajectory.h5") as f:
            q, g = f["observation/robot_state/joint_positions"][()], f["observation/robot_state/gripper_position"][()]
            aq, ag = f["action/joint_position"][()], f["action/gripper_position"][()]
            cart = f["observation/robot_state/cartesian_position"][()]
            step = f["observation/timestamp/control/step_start"][()]
            wrist = f[f"observation/camera_extrinsics/{ep_truth.serials['wrist_left']}_left"][()]
        assert np.array_equal(ep.state, np.concatenate([q, g[:, None]], 1).astype(np.float32))
        assert np.array_equal(ep.action, np.concatenate([aq, ag[:, None]], 1).astype(np.float32))
        assert np.array_equal(ep.frame_features["observation.state.cartesian_position"], cart.astype(np.float32))
        assert np.array_equal(ep.frame_features["camera_extrinsics.wrist_left"], wrist.astype(np.float32))
        assert ep.names["observation.state"] == [*(f"joint_{i}" for i in range(7)), "gripper"]
        assert ep.fps == 15.0 and np.allclose(ep.timestamp, (step - step[0]) / 1000.0)  # never the MP4's 60 fps
        assert ep.episode_key == ep_truth.uuid and ep.robot_type == "Franka" and ep.success
        assert ep.task == "put the cube on the other side" and ep.provenance["droid_version"] == "1.3"
        assert list(ep.cameras) == ["exterior_1_left", "exterior_2_left", "wrist_left"]
        assert {c: cam.info["serial"] for c, cam in ep.cameras.items()} == ep_truth.serials
        assert all(cam.rgb is None and cam.depth is None for cam in ep.cameras.values())  # metadata mode
        assert ep.cameras["wrist_left"].pose.shape == (24, 4, 4) and ep.cameras["exterior_1_left"].pose.shape == (4, 4)
        assert np.allclose(ep.cameras["wrist_left"].pose, ep_truth.cameras["wrist_left"].poses, atol=1e-9)
        assert np.allclose(ep.gripper_pose, ep_truth.flange, atol=1e-9)
        assert ep.cameras["exterior_1_left"].resolution == (720, 1280)  # metadata mode: the calibration's size
        k_native = ep_truth.cameras["exterior_1_left"].k  # render size 320x180 -> native
        assert np.allclose(ep.cameras["exterior_1_left"].intrinsics, scale_k(k_native, (320, 180), NATIVE))
    sources = {e.uuid: _backend(root, "metadata").run_episode(_spec(root, e.uuid)).cameras["wrist_left"]
               .info["intrinsics_source"] for e in eps[:2]}
    assert sources == {eps[0].uuid: "im128", eps[1].uuid: "h5"}


def _pad_errors(ep, truth) -> dict[str, list[float]]:
    """Per camera: distance (px) from each projected pad to the pad's rendered silhouette, where the pad is seen."""
    out = {}
    for cam, t in truth.cameras.items():
        uv, vis = ep.frame_features[f"tracks2d.{cam}"], ep.frame_features[f"tracks2d.{cam}.visible"]
        errs = []
        for i in range(truth.steps):
            for pad in range(2):
                if not t.pad_masks[i, pad].any() or not vis[i, pad + 1]:
                    continue
                u, v = np.round(uv[i, pad + 1]).astype(int)
                errs.append(float(ndimage.distance_transform_edt(~t.pad_silhouettes[i, pad])[v, u]))
        out[cam] = errs
    return out


def test_projected_pads_land_on_the_rendered_fingers_and_stereo_depth_fits_the_table(droid_tree):
    root, eps = droid_tree
    truth = eps[0]
    ep = add_flow(_backend(root, "full").run_episode(_spec(root, truth.uuid)))
    validate_episode(ep)
    for cam, errs in _pad_errors(ep, truth).items():
        assert len(errs) >= 10, (cam, len(errs))  # the wrist camera sees the fingers too
        assert max(errs) <= 2.0, (cam, max(errs), errs)
    tracks = ep.frame_features["tracks3d"]
    assert tracks.shape == (24, 3, 3) and ep.flow is not None and ep.flow.shape[1:] == (3, 3)
    assert np.allclose(np.linalg.norm(tracks[:, 1] - tracks[:, 2], axis=1), ep.gripper_opening, atol=1e-5)
    for cam, t in truth.cameras.items():
        got = ep.cameras[cam].depth.astype(np.float64) / 1000.0
        pose, k = t.poses, t.k  # back-project the renderer's depth to find the table top (z = 0)
        h, w = got.shape[1:]
        vv, uu = np.mgrid[0:h, 0:w]
        rays = np.stack([(uu - k[0, 2]) / k[0, 0], (vv - k[1, 2]) / k[1, 1], np.ones_like(uu, float)], -1)
        errs, on_table = [], 0
        for i in range(0, truth.steps, 4):
            pts = rays * t.depth_m[i][..., None]
            world = pts @ pose[i][:3, :3].T + pose[i][:3, 3]
            table = (t.depth_m[i] > 0) & (np.abs(world[..., 2]) < 0.002)
            on_table += int(table.sum())
            table &= got[i] > 0
            errs.append(np.abs(got[i][table] - t.depth_m[i][table]))
        errs = np.concatenate(errs)
        assert errs.size > 0.6 * on_table, (cam, errs.size / on_table)  # depth across the table, edges included
        assert errs.size > 1000 and np.median(errs) <= 0.02, (cam, errs.size, np.median(errs))
        assert ep.cameras[cam].info["depth_method"] == STEREO_METHOD
        assert ep.cameras[cam].info["stereo_baseline_m"] == pytest.approx(0.063 if cam == "wrist_left" else 0.12)


def test_intrinsics_sources_first_hit_wins(tree_copy, tmp_path):
    root, eps = tree_copy
    ep0, ep1 = eps[0], eps[1]
    wrist0 = ep0.serials["wrist_left"]
    user = tmp_path / "intrinsics.json"  # the DROID team's form: cameraMatrix = [fx, cx, fy, cy]
    user.write_text(json.dumps({ep0.uuid: {wrist0: {"cameraMatrix": [500.0, 630.0, 501.0, 350.0], "width": 1280,
                                                    "height": 720}},
                                ep1.uuid: {s: {"cameraMatrix": [0, 0, 0, 0], "width": 1280, "height": 720}
                                           for s in ep1.serials.values()}}))
    cache = tmp_path / "cache.jsonl"
    cache.write_text(json.dumps({"episode_id": ep0.uuid, "serial": ep0.serials["exterior_2_left"], "fx": 600.0,
                                 "fy": 600.0, "cx": 640.0, "cy": 360.0, "width": 1280, "height": 720}) + "\n")
    (ep0.folder / "trajectory_im128.h5").unlink()  # episode 0 now: cache for ext2, file for wrist, nothing for ext1
    be = _backend(root, "metadata", calibration_cache=str(cache), intrinsics_file=str(user))
    with pytest.raises(EpisodeInputError, match=r"no intrinsics for camera exterior_1_left .*calibration cache: no "
                                                r"entry; trajectory_im128.h5: absent; intrinsics file: no entry; "
                                                r"trajectory.h5: no observation/camera_intrinsics"):
        be.run_episode(_spec(root, ep0.uuid))
    nominal = _backend(root, "metadata", calibration_cache=str(cache), intrinsics_file=str(user),
                       missing_intrinsics="nominal").run_episode(_spec(root, ep0.uuid))
    src = {c: cam.info["intrinsics_source"] for c, cam in nominal.cameras.items()}
    assert src == {"exterior_1_left": "nominal", "exterior_2_left": "cache", "wrist_left": "file"}
    assert nominal.cameras["wrist_left"].intrinsics[0].tolist() == [500.0, 0.0, 630.0]
    assert nominal.cameras["wrist_left"].intrinsics[1].tolist() == [0.0, 501.0, 350.0]
    # a zero-filled entry of the published file is a miss: the next source (trajectory.h5) wins
    ep = be.run_episode(_spec(root, ep1.uuid))
    assert {cam.info["intrinsics_source"] for cam in ep.cameras.values()} == {"h5"}


def test_one_frame_fewer_is_filled_and_recorded_other_mismatches_reject(tree_copy):
    root, eps = tree_copy
    ep0 = eps[0]
    assert break_episode(ep0, "one_frame_fewer") == ""
    ep = _backend(root, "full", depth=False).run_episode(_spec(root, ep0.uuid))
    info = ep.cameras["wrist_left"].info
    assert info["frames_filled"] == [23] and "neighbour" in info["frame_fill"] and info["frame_match"] == "order"
    assert np.array_equal(ep.cameras["wrist_left"].rgb[23], ep.cameras["wrist_left"].rgb[22])
    assert "frames_filled" not in ep.cameras["exterior_1_left"].info
    # with <serial>_timestamps.json the missing frame is found where it is (here: step 5)
    serial = ep0.serials["wrist_left"]
    with h5py.File(ep0.folder / "trajectory.h5") as f:
        received = f[f"observation/timestamp/cameras/{serial}_frame_received"][()].tolist()
    stamps = ep0.folder / "recordings" / "MP4" / f"{serial}_timestamps.json"
    stamps.write_text(json.dumps(received[:5] + received[6:]))
    ep = _backend(root, "full", depth=False).run_episode(_spec(root, ep0.uuid))
    info = ep.cameras["wrist_left"].info
    assert info["frame_match"] == "timestamps" and info["frames_filled"] == [5]
    stamps.write_text(json.dumps([r + 40 for r in received[:23]]))  # frames that belong to no step
    with pytest.raises(EpisodeInputError, match=r"step\(s\) without a frame within 5 ms of frame_received"):
        _backend(root, "full", depth=False).run_episode(_spec(root, ep0.uuid))
    stamps.unlink()
    expect = break_episode(ep0, "short_video")
    with pytest.raises(EpisodeInputError, match=re.escape(expect)):
        _backend(root, "full", depth=False).run_episode(_spec(root, ep0.uuid))


def test_a_remote_root_is_read_through_fsspec(droid_tree, tmp_path, monkeypatch):
    import fsspec

    root, eps = droid_tree
    fs = fsspec.filesystem("memory")
    for p in root.rglob("*"):
        if p.is_file():
            fs.pipe(f"/droid_raw/{p.relative_to(root).as_posix()}", p.read_bytes())
    monkeypatch.setenv("RAYGEN_CACHE_DIR", str(tmp_path / "cache"))
    remote = "memory://droid_raw"
    refs, total = list_episodes(remote, DroidFilter(outcome="all"))
    assert total == 3
    spec = EpisodeSpec("droid", 0, 0, params={"droid": next(r for r in refs if r.uuid == eps[0].uuid).to_params()},
                       key=eps[0].uuid)
    got = _backend(remote, "full", depth=False).run_episode(spec)
    local = _backend(root, "full", depth=False).run_episode(_spec(root, eps[0].uuid))
    assert np.array_equal(got.state, local.state)
    assert np.array_equal(got.cameras["wrist_left"].rgb, local.cameras["wrist_left"].rgb)
    assert not any((tmp_path / "cache").rglob("*.h5"))  # the copies are removed after the episode


# ------------------------------------------------------------------------------------------------ ZED (double)

@pytest.fixture
def fake_pyzed(monkeypatch):
    """The labelled pyzed TEST DOUBLE (tests/fakes/pyzed) on sys.path, its call log cleared."""
    monkeypatch.syspath_prepend(str(FAKES))
    for name in [m for m in sys.modules if m == "pyzed" or m.startswith("pyzed.")]:
        monkeypatch.delitem(sys.modules, name)
    import pyzed.sl as sl

    assert sl.TEST_DOUBLE
    sl.CALLS.clear()
    return sl


def test_zed_backend_control_flow_on_the_double(droid_tree, fake_pyzed):
    from raygen.actors.zed.backend import ZedBackend

    root, eps = droid_tree
    truth = eps[0]
    be = ZedBackend({"root": str(root), "width": None, "height": None, "droid": {"mode": "full"}})
    ep = add_flow(be.run_episode(_spec(root, truth.uuid)))
    validate_episode(ep)
    opens = [c for c in fake_pyzed.CALLS if c[0] == "open"]
    assert len(opens) == 3 and all(c[2] is False and c[3].name == "NEURAL" and c[4].name == "MILLIMETER"
                                   for c in opens)
    assert len([c for c in fake_pyzed.CALLS if c[0] == "close"]) == 3
    cam = ep.cameras["exterior_2_left"]
    t = truth.cameras["exterior_2_left"]
    assert cam.info["intrinsics_source"] == "zed_sdk" and cam.info["depth_method"] == "zed_sdk:NEURAL"
    assert cam.info["frame_match"] == "timestamps" and np.allclose(cam.intrinsics, t.k)
    assert cam.depth.dtype == np.uint16 and np.array_equal(cam.depth, np.round(t.depth_m * 1000).astype(np.uint16))
    assert cam.rgb.shape == (24, 180, 320, 3) and np.abs(cam.rgb.astype(int).mean() - 0) > 10
    for c, errs in _pad_errors(ep, truth).items():
        assert errs and max(errs) <= 2.0, (c, max(errs))
    # metadata mode: calibration only, opened without depth, no frame grabbed
    fake_pyzed.CALLS.clear()
    meta = ZedBackend({"root": str(root), "droid": {"mode": "metadata"}}).run_episode(_spec(root, truth.uuid))
    assert all(c[3].name == "NONE" for c in fake_pyzed.CALLS if c[0] == "open")
    assert meta.cameras["wrist_left"].rgb is None and meta.cameras["wrist_left"].info["intrinsics_source"] == "zed_sdk"


def test_zed_backend_rejects_missing_and_corrupt_svos(tree_copy, fake_pyzed):
    from raygen.actors.zed.backend import ZedBackend

    root, eps = tree_copy
    be = ZedBackend({"root": str(root), "droid": {"mode": "full"}})
    for ep, how in ((eps[0], "no_svo"), (eps[1], "corrupt_svo")):
        expect = break_episode(ep, how)
        with pytest.raises(EpisodeInputError, match=re.escape(expect)):
            be.run_episode(_spec(root, ep.uuid))


def test_droid_calibrate_writes_a_resumable_cache_that_cpu_runs_use(tree_copy, fake_pyzed, tmp_path, capsys):
    from raygen.cli import main

    root, eps = tree_copy
    out = tmp_path / "calibration.jsonl"
    assert main(["droid", "calibrate", str(root), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 9 and {x["episode_id"] for x in lines} == {e.uuid for e in eps}
    wrist = next(x for x in lines if x["episode_id"] == eps[0].uuid and x["serial"] == eps[0].serials["wrist_left"])
    assert wrist["baseline_m"] == pytest.approx(0.063) and wrist["sdk_version"] == "5.0.0-test-double"
    with open(out, "a") as f:
        f.write('{"episode_id": "torn')  # a crash mid-line
    assert main(["droid", "calibrate", str(root), "--out", str(out)]) == 0
    assert "0 calibrations written, 9 already there" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 9
    ep = _backend(root, "metadata", calibration_cache=str(out)).run_episode(_spec(root, eps[0].uuid))
    assert {cam.info["intrinsics_source"] for cam in ep.cameras.values()} == {"cache"}


def test_zed_without_the_sdk_says_where_it_comes_from(droid_tree, monkeypatch):
    from raygen._deps import MissingDependencyError

    for name in [m for m in sys.modules if m == "pyzed" or m.startswith("pyzed.")]:
        monkeypatch.delitem(sys.modules, name)
    root, _ = droid_tree
    with pytest.raises(MissingDependencyError, match=r"Stereolabs ZED SDK .*PyPI package named 'pyzed' is unrelated"):
        make_source(load_config(None, ["source.backend=zed", f"source.root={root}"]))
