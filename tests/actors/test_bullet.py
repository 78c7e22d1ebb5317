"""The embedded PyBullet backend: valid, successful, deterministic episodes with correct cameras."""


import numpy as np
import pytest

from raygen.actors.bullet.worker import BulletBackend
from raygen.actors.host import HostConfig, WorkerHost
from raygen.actors.spec import EpisodeSpec
from raygen.actors.tasks.pick_place import HOME_Q, PHASES, PickPlaceParams, panda_fk, panda_ik
from raygen.datasets.episode import episode_from_row, validate_episode
from tests.actors.episode_hash import episode_hash

SOURCE = "bullet-pick_place"


@pytest.fixture(scope="module")
def backend():
    b = BulletBackend({"width": 32, "height": 32})
    yield b
    b.close()


def _hash(ep) -> str:
    return episode_hash(ep)


def test_worker_process_returns_a_valid_episode(tmp_path):
    host = WorkerHost(HostConfig(backend="bullet", options={"width": 48, "height": 32}, scratch_dir=str(tmp_path),
                                 startup_timeout_s=60, episode_timeout_s=120))
    res = host.run(EpisodeSpec(SOURCE, 0, 0))
    host.close()
    assert res.ok, res.error
    ep = res.episode
    validate_episode(ep, cameras={"cam_high", "cam_wrist"}, state_dim=23, action_dim=8)
    t = (len(PHASES) - 1) * 30
    assert ep.state.shape == (t, 23) and ep.action.shape == (t, 8) and ep.fps == 30.0
    assert ep.cameras["cam_high"].rgb.shape == (t, 32, 48, 3) and ep.cameras["cam_wrist"].depth.dtype == np.uint16
    assert ep.cameras["cam_high"].pose.shape == (4, 4) and ep.cameras["cam_wrist"].pose.shape == (t, 4, 4)
    assert ep.frame_features["contact.pads"].shape == (t, 2, 3)
    assert set(np.unique(ep.action[:, 7]).tolist()) == {0.0, np.float32(0.04).item()}  # the command: open/close
    assert ep.names["observation.state"][19:23] == ["eef_qw", "eef_qx", "eef_qy", "eef_qz"]
    assert ep.provenance["backend"] == "bullet" and ep.provenance["seed"] == 0
    assert host.backend_info["capabilities"]["renderer"] in ("tiny", "egl")
    assert res.timing["episode_s"] > 0 and res.timing["read_s"] > 0


def test_success_rate_over_40_seeds(tmp_path):
    """Two hosted workers (one per core), 20 seeds each."""
    from concurrent.futures import ThreadPoolExecutor

    hosts = [WorkerHost(HostConfig(backend="bullet", options={"width": 32, "height": 32},
                                   scratch_dir=str(tmp_path))) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            chunks = pool.map(lambda h_i: [h_i[0].run(EpisodeSpec(SOURCE, 1, i)) for i in range(h_i[1], 40, 2)],
                              [(hosts[0], 0), (hosts[1], 1)])
            runs = [r for chunk in chunks for r in chunk]
    finally:
        for h in hosts:
            h.close()
    assert all(r.ok for r in runs), [r.error for r in runs if not r.ok]
    results = [r.episode for r in runs]
    rate = np.mean([ep.success for ep in results])
    failures = {ep.episode_key: {k: v for k, v in ep.metrics.items() if k.startswith("task.")}
                for ep in results if not ep.success}
    assert rate >= 0.95, failures
    # every stored quaternion continuous (validate_episode checks it too), fingers at the set speed even at
    # release, the wrist camera seeing the contact tracks (flow stage visibility: in view, not hidden)
    from raygen.pipelines.flow import add_flow

    step = PickPlaceParams().gripper_speed / results[0].fps
    visible = []
    for ep in results:
        validate_episode(ep)
        q = ep.state[:, 19:23]
        assert (np.einsum("ij,ij->i", q[1:], q[:-1]) >= 0).all() and q[0, 0] >= 0, ep.episode_key
        assert np.abs(np.diff(ep.state[:, 14:16], axis=0)).max() <= 1.25 * step, ep.episode_key
        visible.append(add_flow(ep).frame_features["tracks2d.cam_wrist.visible"][:, 1:].all(axis=1).mean())
    assert np.mean(visible[:20]) >= 0.8 and min(visible) >= 0.7, visible
    kinds = {ep.metrics["scene.object_kind"] for ep in results}
    colours = {ep.metrics["scene.colour"] for ep in results}
    assert kinds == {"cube", "cylinder"} and len(colours) >= 4
    for ep in results[:5]:
        obj = np.array([ep.metrics["scene.object_x"], ep.metrics["scene.object_y"]])
        place = np.array([ep.metrics["scene.place_x"], ep.metrics["scene.place_y"]])
        assert 0.3 <= obj[0] <= 0.7 and -0.3 <= obj[1] <= 0.3 and np.linalg.norm(obj - place) >= 0.10


def test_same_spec_same_episode(backend):
    spec = EpisodeSpec(SOURCE, 2, 5)
    a = backend.run_episode(spec)
    other = BulletBackend({"width": 32, "height": 32})
    other.run_episode(EpisodeSpec(SOURCE, 2, 6))  # history must not matter
    b = other.run_episode(spec)
    other.close()
    assert _hash(a) == _hash(b)
    assert _hash(a) != _hash(backend.run_episode(EpisodeSpec(SOURCE, 2, 6)))


def _project(k, cam_to_base, point):
    p = np.linalg.inv(cam_to_base) @ np.append(point, 1.0)
    uv = k @ (p[:3] / p[2])
    return int(round(uv[0])), int(round(uv[1])), p[2]


def test_camera_conventions_match_depth(tmp_path):
    """Project known surface points with the episode's K and pose: the depth image must agree."""
    b = BulletBackend({"width": 128, "height": 128})
    ep = b.run_episode(EpisodeSpec(SOURCE, 3, 1))
    b.close()
    size = ep.metrics["scene.object_size_m"]
    top = np.array([ep.metrics["scene.object_x"], ep.metrics["scene.object_y"], size])
    marker = np.array([ep.metrics["scene.place_x"], ep.metrics["scene.place_y"], 0.001])
    checks = [("cam_high", 0, top), ("cam_high", 0, marker), ("cam_wrist", 30, top)]  # frame 30: above the object
    for cam_name, t, point in checks:
        cam = ep.cameras[cam_name]
        pose = cam.pose[t] if cam.pose.ndim == 3 else cam.pose
        u, v, z = _project(cam.intrinsics, pose, point)
        h, w = cam.depth.shape[1:]
        assert 0 <= u < w and 0 <= v < h, (cam_name, u, v)
        assert z > 0 and pose[:3, 2] @ (point - pose[:3, 3]) > 0  # in front, along +z (OpenCV)
        got = cam.depth[t, v, u] / 1000.0
        assert abs(got - z) < 0.01, (cam_name, t, got, z)
    # the colour at the projected object top is the object's colour, not the table's
    u, v, _ = _project(ep.cameras["cam_high"].intrinsics, ep.cameras["cam_high"].pose, top)
    assert not np.allclose(ep.cameras["cam_high"].rgb[0, v, u], ep.cameras["cam_high"].rgb[0, 0, 0], atol=10)


def test_episode_survives_the_row_mapping(backend):
    from raygen.datasets.episode import episode_to_row

    ep = backend.run_episode(EpisodeSpec(SOURCE, 4, 0, {"task": {"steps_per_segment": 5}}))
    back = episode_from_row(episode_to_row(ep))
    assert _hash(ep) == _hash(back) and ep.state.shape[0] == 45


def test_fallback_ik_agrees_with_the_model():
    target = np.array([0.5, -0.2, 0.1])
    q = panda_ik(target, HOME_Q)
    assert q is not None
    t = panda_fk(q)
    np.testing.assert_allclose(t[:3, 3], target, atol=1e-3)
    assert t[2, 2] < -0.99  # pointing down


def test_unknown_task_parameter_is_named():
    with pytest.raises(ValueError, match=r"task: unknown parameter\(s\) \['steps'\]; known: "):
        PickPlaceParams.from_options({"steps": 3})
    with pytest.raises(ValueError, match=r"bullet backend: unknown option\(s\) \['colour'\]"):
        BulletBackend({"colour": "red"})


class _Turning:
    """A simulator whose flange keeps turning about the tool axis (as Isaac's may report it): the quaternions
    it yields cross the w = 0 hemisphere boundary many times."""

    def __init__(self, sim):
        self._sim, self._frame = sim, 0

    def __getattr__(self, name):
        return getattr(self._sim, name)

    def flange_pose(self):
        self._frame += 1
        a = 0.25 * self._frame
        turn = np.array([[np.cos(a), -np.sin(a), 0, 0], [np.sin(a), np.cos(a), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        return self._sim.flange_pose() @ turn


def test_stored_quaternions_are_continuous_whatever_the_simulator_reports(backend):
    from raygen.actors.tasks.pick_place import run_pick_place
    from raygen.datasets.episode import EpisodeValidationError, continuous_quaternions

    ep = run_pick_place(_Turning(backend.sim), EpisodeSpec(SOURCE, 0, 3), PickPlaceParams(steps_per_segment=6))
    from scipy.spatial.transform import Rotation

    from raygen.actors.tasks.pick_place import _FLANGE_TO_TCP_ROT, quat_wxyz

    q = ep.state[:, 19:23].astype(np.float64)
    assert q[0, 0] >= 0 and (np.einsum("ij,ij->i", q[1:], q[:-1]) >= 0).all()
    tcp = ep.gripper_pose[:, :3, :3] @ _FLANGE_TO_TCP_ROT
    assert np.allclose(Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix(), tcp, atol=1e-5)  # the same rotations
    raw = np.array([quat_wxyz(m) for m in tcp])  # w >= 0 frame by frame: the path does cross w = 0
    assert (np.einsum("ij,ij->i", raw[1:], raw[:-1]) < 0).sum() >= 2
    flipped = ep.state.copy()
    flipped[10:, 19:23] *= -1  # what a per-frame w >= 0 rule gives where the path crosses w = 0
    ep.state = flipped
    with pytest.raises(EpisodeValidationError, match=r"observation.state\[19:23\] \(eef_q\*\): the quaternion flips "
                                                     r"sign at frame\(s\) \[10\]"):
        validate_episode(ep)
    fixed = continuous_quaternions(flipped[:, 19:23])
    assert np.allclose(np.abs(fixed), np.abs(flipped[:, 19:23])) and np.allclose(fixed[:10], flipped[:10, 19:23])
