"""Synthetic DROID raw episodes: the embedded PyBullet scene rendered into DROID's raw layout (test data).

No real DROID file is available here, so this writes trees in the release's layout (REFERENCE.md section
2) from a scene whose truth is known: a Franka Panda arm (pybullet_data, its hand removed) with a gripper of
the Robotiq 2F-85's geometry on the flange, a textured table and a cube it picks and places; two exterior
ZED 2 cameras and a ZED Mini on the flange that sees the fingers, each a rectified stereo pair at a known
calibration. Per episode:

    <LAB>/{success|failure}/<YYYY-MM-DD>/<Ddd_Mmm_DD_HH:MM:SS_YYYY>/
        metadata_<uuid>.json             as released (r2d2_version; droid_version on request)
        trajectory.h5                    DROID's group tree and dtypes (float64 poses, int64 ms timestamps)
        trajectory_im128.h5              (optional) observation/camera/intrinsics/* at 1280x720
        recordings/MP4/<serial>.mp4      left eye, MPEG-4 part 2 (DROID's mp4v), one frame per step, 60 fps label
        recordings/MP4/<serial>-stereo.mp4   left|right side by side
        recordings/SVO/<serial>.svo      TEST-DOUBLE FORMAT (an .npz the labelled pyzed double in
                                         tests/fakes reads; the real ZED SDK cannot read it)

The gripper pads are placed from this module's own copy of the 2F-85 table (not raygen's), so a test
comparing projected tracks with the rendered pads checks raygen's geometry, Euler convention, intrinsics
scaling and frame matching against an independent truth. Frames may be rendered small and upscaled for
the video files (``video_size``): the decode, stereo and encode work is that of the video size.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import h5py
import numpy as np
from scipy.spatial.transform import Rotation

from raygen.actors.tasks.pick_place import HOME_Q, TCP_D, panda_fk, panda_ik

NATIVE = (1280, 720)
NEAR, FAR = 0.03, 6.0
# rectified left-eye intrinsics at 1280x720 (ZED 2 exterior, ZED Mini wrist), off-centre like real ones
K_EXT = {"fx": 532.4, "fy": 532.4, "cx": 636.3, "cy": 344.7}
K_WRIST = {"fx": 523.1, "fy": 523.1, "cx": 642.9, "cy": 357.6}
BASELINE = {"ext": 0.12, "wrist": 0.063}
WRIST_OFFSET = np.array([-0.075, 0.029, 0.023, -0.326, 0.006, -1.563])  # flange -> wrist left eye (DROID example)
EXT_EYES = {  # left-eye position and look-at point of the two exterior cameras (base frame)
    "ext1": ((0.35, 0.75, 0.55), (0.5, 0.0, 0.05)),
    "ext2": ((0.25, -0.7, 0.6), (0.5, 0.05, 0.0)),
}
# Robotiq 2F-85: width between pads (mm) -> pad-centre distance from the flange face (mm); an independent copy
PAD_TABLE = np.array([[0.0, 169.4], [17.0, 167.2], [34.0, 163.7], [42.5, 161.5], [51.0, 158.8], [68.0, 151.8],
                      [85.0, 141.8]])
PAD_HALF = np.array([0.011, 0.004, 0.01875])  # pad box half extents: x (width), y (thickness), z (length)
PAD_COLOURS = ((1.0, 0.0, 1.0, 1.0), (0.0, 1.0, 1.0, 1.0))  # left (+y) magenta, right (-y) cyan
CUBE = 0.045


def _k(native: dict[str, float], size: tuple[int, int]) -> np.ndarray:
    sx, sy = size[0] / NATIVE[0], size[1] / NATIVE[1]
    return np.array([[native["fx"] * sx, 0, (native["cx"] + 0.5) * sx - 0.5],
                     [0, native["fy"] * sy, (native["cy"] + 0.5) * sy - 0.5], [0, 0, 1.0]])


def _projection(k: np.ndarray, size: tuple[int, int]) -> list[float]:
    """OpenGL projection (column-major) that renders exactly the pinhole K (pixel centres at integers)."""
    w, h = size
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    return [2 * fx / w, 0, 0, 0, 0, 2 * fy / h, 0, 0, 1 - 2 * (cx + 0.5) / w, 2 * (cy + 0.5) / h - 1,
            -(FAR + NEAR) / (FAR - NEAR), -1, 0, 0, -2 * FAR * NEAR / (FAR - NEAR), 0]


def _look_at(eye, target) -> np.ndarray:
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, np.cross(z, x), z, eye
    return pose


def pose6(m: np.ndarray) -> np.ndarray:
    """[...,4,4] -> [...,6] [x, y, z, rx, ry, rz] with scipy "xyz" (extrinsic) Euler angles, as DROID stores."""
    flat = np.asarray(m).reshape(-1, 4, 4)
    out = np.concatenate([flat[:, :3, 3], Rotation.from_matrix(flat[:, :3, :3]).as_euler("xyz")], axis=1)
    return out.reshape(*np.asarray(m).shape[:-2], 6)


def from6(v: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", v[3:]).as_matrix()
    m[:3, 3] = v[:3]
    return m


def _shift_x(pose: np.ndarray, d: float) -> np.ndarray:
    t = np.eye(4)
    t[0, 3] = d
    return pose @ t


@dataclass
class CameraTruth:
    serial: str
    role: str
    """ext or wrist."""
    k: np.ndarray
    """Left-eye K at the render size."""
    poses: np.ndarray
    """[T,4,4] left-eye camera-to-base."""
    depth_m: np.ndarray
    """[T,H,W] renderer depth (m) along the optical axis; 0 = nothing."""
    pad_masks: np.ndarray
    """[T,2,H,W] pixels where the left and right pad are seen (others may hide parts of them)."""
    pad_silhouettes: np.ndarray
    """[T,2,H,W] pixels the pads cover with nothing else in the scene (where they project)."""


@dataclass
class SynthEpisode:
    uuid: str
    folder: Path
    lab: str
    outcome: str
    steps: int
    render_size: tuple[int, int]
    video_size: tuple[int, int]
    cameras: dict[str, CameraTruth] = field(default_factory=dict)
    """raygen camera name (exterior_1_left, exterior_2_left, wrist_left) -> truth."""
    joints: np.ndarray | None = None
    gripper: np.ndarray | None = None
    flange: np.ndarray | None = None

    @property
    def serials(self) -> dict[str, str]:
        return {cam: c.serial for cam, c in self.cameras.items()}


class _Scene:
    """PyBullet world (DIRECT, tiny renderer), driven kinematically step by step."""

    def __init__(self, seed: int, render_size: tuple[int, int], texture_dir: Path):
        import pybullet as p
        import pybullet_data

        self.p, self.size = p, render_size
        self.c = p.connect(p.DIRECT)
        c = self.c
        rng = np.random.default_rng(seed)
        noise = sum(cv2.resize(rng.random((n, n)).astype(np.float32), (512, 512), interpolation=cv2.INTER_CUBIC)
                    * (1.0 / i) for i, n in enumerate((16, 48, 128, 256), 1))
        noise = (255 * (noise - noise.min()) / (np.ptp(noise) + 1e-9)).astype(np.uint8)
        tex_path = texture_dir / f"droid_synth_texture_{seed}_{os.getpid()}.png"
        cv2.imwrite(str(tex_path), cv2.cvtColor(cv2.applyColorMap(noise, cv2.COLORMAP_BONE), cv2.COLOR_BGR2RGB))
        tex = p.loadTexture(str(tex_path), physicsClientId=c)
        box = lambda half, rgba: p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba,  # noqa: E731
                                                    physicsClientId=c)
        floor = p.createMultiBody(0, -1, box([2, 2, 0.01], [0.5, 0.52, 0.55, 1]), basePosition=[0, 0, -0.76],
                                  physicsClientId=c)
        table = p.createMultiBody(0, -1, box([0.45, 0.6, 0.375], [1, 1, 1, 1]), basePosition=[0.45, 0, -0.375],
                                  physicsClientId=c)
        for body in (floor, table):
            p.changeVisualShape(body, -1, textureUniqueId=tex, physicsClientId=c)
        self.robot = p.loadURDF(self._arm_urdf(pybullet_data.getDataPath(), texture_dir), [0, 0, 0],
                                useFixedBase=True, physicsClientId=c)
        self.base = p.createMultiBody(0, -1, box([0.02, 0.045, 0.042], [0.08, 0.08, 0.09, 1]), physicsClientId=c)
        self.fingers = [p.createMultiBody(0, -1, box([0.011, 0.005, 0.03], [0.25, 0.25, 0.27, 1]), physicsClientId=c)
                        for _ in range(2)]
        self.pads = [p.createMultiBody(0, -1, box(PAD_HALF.tolist(), rgba), physicsClientId=c)
                     for rgba in PAD_COLOURS]
        colour = [(0.85, 0.15, 0.1, 1), (0.1, 0.3, 0.9, 1), (0.95, 0.8, 0.1, 1)][int(rng.integers(3))]
        self.cube = p.createMultiBody(0, -1, box([CUBE / 2] * 3, colour), physicsClientId=c)
        self.others = [floor, table, self.robot, self.base, self.cube, *self.fingers]

    @staticmethod
    def _arm_urdf(data: str, folder: Path) -> str:
        src = Path(data) / "franka_panda" / "panda.urdf"
        text = src.read_text()
        cut = text.index('<joint name="panda_hand_joint"')
        mesh = (src.parent / "meshes" / "collision").as_posix() + "/"
        text = text[:cut].replace("package://meshes/visual/", mesh).replace("package://meshes/collision/", mesh)
        dst = folder / f"panda_arm_only_{os.getpid()}.urdf"
        dst.write_text(text + "</robot>\n")
        return str(dst)

    def _place(self, body: int, pose: np.ndarray) -> None:
        quat = Rotation.from_matrix(pose[:3, :3]).as_quat()  # x, y, z, w as PyBullet wants
        self.p.resetBasePositionAndOrientation(body, pose[:3, 3].tolist(), quat.tolist(), physicsClientId=self.c)

    def set_state(self, q: np.ndarray, g: float, flange: np.ndarray, cube: np.ndarray) -> None:
        for j, v in enumerate(q):
            self.p.resetJointState(self.robot, j, float(v), physicsClientId=self.c)
        w = 0.085 * (1 - g)
        zc = np.interp(w * 1000, PAD_TABLE[:, 0], PAD_TABLE[:, 1]) / 1000
        local = lambda x, y, z: flange @ np.array([[1, 0, 0, x], [0, 1, 0, y], [0, 0, 1, z], [0, 0, 0, 1.0]])  # noqa: E731
        self._place(self.base, local(0, 0, 0.049))
        for i, side in enumerate((1, -1)):
            self._place(self.pads[i], local(0, side * (w / 2 + PAD_HALF[1]), zc))
            self._place(self.fingers[i], local(0, side * (w / 2 + 2 * PAD_HALF[1] + 0.005), zc - 0.035))
        self._place(self.cube, cube)

    def render(self, pose: np.ndarray, k: np.ndarray, *, seg: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        p = self.p
        w, h = self.size
        view = (np.diag([1.0, -1.0, -1.0, 1.0]) @ np.linalg.inv(pose)).T.reshape(-1).tolist()
        flags = 0 if seg else p.ER_NO_SEGMENTATION_MASK
        _, _, rgba, zbuf, mask = p.getCameraImage(w, h, view, _projection(k, (w, h)), renderer=p.ER_TINY_RENDERER,
                                                  flags=flags, physicsClientId=self.c)
        rgb = np.asarray(rgba, np.uint8).reshape(h, w, 4)[..., :3]
        z = np.asarray(zbuf, np.float32).reshape(h, w)
        depth = np.where(z >= 0.99999, 0.0, FAR * NEAR / (FAR - (FAR - NEAR) * z))
        pads = None
        if seg:
            m = np.asarray(mask).reshape(h, w)
            pads = np.stack([m == self.pads[0], m == self.pads[1]])
        return np.ascontiguousarray(rgb), depth.astype(np.float32), pads

    def pad_silhouettes(self, pose: np.ndarray, k: np.ndarray) -> np.ndarray:
        """[2,H,W] where the pads project with every other body moved out of sight."""
        p, c = self.p, self.c
        saved = [p.getBasePositionAndOrientation(b, physicsClientId=c) for b in self.others]
        for b in self.others:
            p.resetBasePositionAndOrientation(b, [100.0, 100.0, 100.0], [0, 0, 0, 1], physicsClientId=c)
        try:
            return self.render(pose, k, seg=True)[2]
        finally:
            for b, (pos, orn) in zip(self.others, saved):
                p.resetBasePositionAndOrientation(b, pos, orn, physicsClientId=c)

    def close(self) -> None:
        self.p.disconnect(physicsClientId=self.c)


def _trajectory(rng: np.random.Generator, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Joint positions [T,7], gripper [T], flange [T,4,4] and cube poses [T,4,4] of a pick-and-place."""
    obj = np.array([rng.uniform(0.42, 0.6), rng.uniform(-0.15, 0.15)])
    place = obj + np.array([rng.uniform(-0.1, 0.05), rng.choice([-1, 1]) * rng.uniform(0.12, 0.2)])
    g_close = 1 - CUBE / 0.085  # the pads touch the cube's faces

    def pad_centre(g):
        return np.interp(0.085 * (1 - g) * 1000, PAD_TABLE[:, 0], PAD_TABLE[:, 1]) / 1000

    def tcp_for(xy, z_pad, g):  # the TCP of panda_ik sits TCP_D beyond the flange; the pads at pad_centre(g)
        return np.array([xy[0], xy[1], z_pad + pad_centre(g) - TCP_D])

    grasp_z = CUBE / 2
    low = grasp_z + 0.003
    ways = [("home", None, 0.0), ("above", tcp_for(obj, 0.16, 0.0), 0.0), ("down", tcp_for(obj, grasp_z, 0.0), 0.0),
            ("close", tcp_for(obj, grasp_z, g_close), g_close), ("lift", tcp_for(obj, 0.2, g_close), g_close),
            ("over", tcp_for(place, 0.2, g_close), g_close), ("lower", tcp_for(place, low, g_close), g_close),
            ("open", tcp_for(place, low, 0.0), 0.0), ("retract", tcp_for(place, 0.18, 0.0), 0.0)]
    qs, seed = [], HOME_Q.copy()
    for name, target, _ in ways:
        q = HOME_Q.copy() if target is None else panda_ik(target, seed)
        if q is None:
            q = panda_ik(target, HOME_Q)
        if q is None:
            raise RuntimeError(f"synthetic DROID: no IK for {name} at {target}")
        qs.append(q)
        seed = q
    grips = np.array([w[2] for w in ways])
    n_seg = len(ways) - 1
    per = np.diff(np.linspace(0, steps - 1, n_seg + 1).round().astype(int))
    q_t, g_t = [qs[0][None]], [np.array([grips[0]])]
    for s in range(n_seg):
        a = (1 - np.cos(np.pi * np.arange(1, per[s] + 1) / per[s])) / 2
        q_t.append(qs[s] + a[:, None] * (qs[s + 1] - qs[s]))
        g_t.append(grips[s] + a * (grips[s + 1] - grips[s]))
    q = np.concatenate(q_t)[:steps]
    g = np.concatenate(g_t)[:steps]
    flange = np.stack([panda_fk(qi, tcp=False) for qi in q])
    cube = np.tile(np.eye(4), (steps, 1, 1))
    yaw = np.arctan2(*panda_fk(qs[3], tcp=False)[[1, 0], 1])  # faces square to the closing axis at the grasp
    cube[:, :3, :3] = Rotation.from_euler("z", yaw - np.pi / 2).as_matrix()
    cube[:, :2, 3], cube[:, 2, 3] = obj, CUBE / 2
    held = g >= g_close - 1e-6
    if held.any():
        first = int(np.argmax(held))
        rel = np.linalg.inv(flange[first]) @ cube[first]
        last = first + int(np.argmin(held[first:])) if not held[first:].all() else steps
        for t in range(first, last):
            cube[t] = flange[t] @ rel
        if last < steps:  # released: it stays where it was let go, on the table
            cube[last:] = cube[last - 1]
            cube[last:, 2, 3] = CUBE / 2
    return q, g, flange, cube


def _write_mp4(path: Path, frames: list[np.ndarray], size: tuple[int, int], bit_rate: int) -> None:
    """MPEG-4 part 2 (what DROID's mp4v export writes) at the camera's 60 fps label, one frame per step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=60)
        s.width, s.height, s.pix_fmt, s.bit_rate = size[0], size[1], "yuv420p", bit_rate
        for img in frames:
            if (img.shape[1], img.shape[0]) != size:
                img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def make_episode(root: Path, index: int, *, steps: int = 30, render_size: tuple[int, int] = (320, 180),
                 video_size: tuple[int, int] | None = None, lab: str = "RAYLAB", outcome: str = "success",
                 seed: int = 0, im128: bool = True, svo: bool = True, stereo: bool = True,
                 version_key: str = "r2d2_version", h5_intrinsics: bool = False, truth: bool = True,
                 day: dt.date = dt.date(2023, 7, 7)) -> SynthEpisode:
    """Render one episode into ``root`` in DROID's layout; returns its truth."""
    rng = np.random.default_rng([seed, index])
    video_size = video_size or render_size
    start = dt.datetime.combine(day, dt.time(9, 0)) + dt.timedelta(minutes=7 * index, seconds=int(rng.integers(60)))
    user = f"{int(rng.integers(16**8)):08x}"
    uuid = f"{lab}+{user}+{start.strftime('%Y-%m-%d-%Hh-%Mm-%Ss')}"
    asctime = start.strftime("%a_%b_%e_%H:%M:%S_%Y").replace(" ", "_")  # time.asctime(): a 1-digit day gives "__"
    folder = root / lab / outcome / start.strftime("%Y-%m-%d") / asctime
    mp4 = folder / "recordings" / "MP4"
    mp4.mkdir(parents=True, exist_ok=True)
    ext_serials = sorted(str(int(rng.integers(20_000_000, 29_999_999))) for _ in range(2))
    serial = {"exterior_1_left": ext_serials[0], "exterior_2_left": ext_serials[1],
              "wrist_left": str(int(rng.integers(10_000_000, 19_999_999)))}
    q, g, flange, cube = _trajectory(rng, steps)
    wrist_off = from6(WRIST_OFFSET)
    poses = {"exterior_1_left": np.tile(_look_at(*EXT_EYES["ext1"]), (steps, 1, 1)),
             "exterior_2_left": np.tile(_look_at(*EXT_EYES["ext2"]), (steps, 1, 1)),
             "wrist_left": flange @ wrist_off}
    role = {"exterior_1_left": "ext", "exterior_2_left": "ext", "wrist_left": "wrist"}
    ep = SynthEpisode(uuid=uuid, folder=folder, lab=lab, outcome=outcome, steps=steps, render_size=render_size,
                      video_size=video_size, joints=q, gripper=g, flange=flange)
    scene = _Scene(seed * 1000 + index, render_size, Path(tempfile.gettempdir()))
    frames: dict[str, list] = {cam: [] for cam in serial}
    rights: dict[str, list] = {cam: [] for cam in serial}
    depth = {cam: np.zeros((steps, render_size[1], render_size[0]), np.float32) for cam in serial}
    masks = {cam: np.zeros((steps, 2, render_size[1], render_size[0]), bool) for cam in serial}
    silhouettes = {cam: np.zeros_like(masks[cam]) for cam in serial}
    try:
        for t in range(steps):
            scene.set_state(q[t], g[t], flange[t], cube[t])
            for cam in serial:
                k = _k(K_WRIST if role[cam] == "wrist" else K_EXT, render_size)
                rgb, d, pads = scene.render(poses[cam][t], k, seg=truth)
                frames[cam].append(rgb)
                depth[cam][t] = d
                if pads is not None:
                    masks[cam][t] = pads
                    silhouettes[cam][t] = scene.pad_silhouettes(poses[cam][t], k)
                if stereo or svo:
                    rights[cam].append(scene.render(_shift_x(poses[cam][t], BASELINE[role[cam]]), k, seg=False)[0])
    finally:
        scene.close()
    t0_ms = int(start.timestamp() * 1000)
    step_start = t0_ms + np.round(np.arange(steps) * 1000 / 15 + rng.uniform(0, 3, steps)).astype(np.int64)
    bit_rate = int(8e6 * video_size[0] * video_size[1] / (1280 * 720)) + 400_000
    for cam, s in serial.items():
        _write_mp4(mp4 / f"{s}.mp4", frames[cam], video_size, bit_rate)
        if stereo:
            pairs = [np.concatenate([cv2.resize(a, video_size, interpolation=cv2.INTER_CUBIC),
                                     cv2.resize(b, video_size, interpolation=cv2.INTER_CUBIC)], axis=1)
                     for a, b in zip(frames[cam], rights[cam])]
            _write_mp4(mp4 / f"{s}-stereo.mp4", pairs, (2 * video_size[0], video_size[1]), 2 * bit_rate)
        if svo:
            _write_fake_svo(folder / "recordings" / "SVO" / f"{s}.svo", frames[cam], rights[cam], depth[cam],
                            step_start + 20, K_WRIST if role[cam] == "wrist" else K_EXT, render_size,
                            BASELINE[role[cam]])
        ep.cameras[cam] = CameraTruth(serial=s, role=role[cam], k=_k(K_WRIST if role[cam] == "wrist" else K_EXT,
                                                                      render_size),
                                      poses=poses[cam], depth_m=depth[cam], pad_masks=masks[cam],
                                      pad_silhouettes=silhouettes[cam])
    _write_h5(folder / "trajectory.h5", ep, q, g, flange, poses, serial, role, step_start, h5_intrinsics)
    if im128:
        _write_im128(folder / "trajectory_im128.h5", serial, role, steps)
    meta = _metadata(ep, serial, poses, start, user, version_key)
    (folder / f"metadata_{uuid}.json").write_text(json.dumps(meta, indent=1))
    return ep


def _write_fake_svo(path: Path, left: list, right: list, depth_m: np.ndarray, stamps: np.ndarray,
                    native_k: dict[str, float], size: tuple[int, int], baseline: float) -> None:
    """TEST-DOUBLE FORMAT: what the labelled pyzed double (tests/fakes/pyzed) plays back as an SVO."""
    path.parent.mkdir(parents=True, exist_ok=True)
    k = _k(native_k, size)
    buf = io.BytesIO()
    np.savez_compressed(buf, left=np.stack(left), right=np.stack(right), depth_mm=(depth_m * 1000).astype(np.float32),
                        timestamps_ms=stamps.astype(np.int64),
                        calib=np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2], size[0], size[1], baseline * 1000]))
    path.write_bytes(b"FAKESVO1" + buf.getvalue())


def _write_h5(path: Path, ep: SynthEpisode, q, g, flange, poses, serial, role, step_start, h5_intrinsics) -> None:
    t = len(q)
    f64 = np.float64
    cart = pose6(flange)
    nxt = np.concatenate([np.arange(1, t), [t - 1]])
    qd = np.gradient(q, axis=0) * 15.0
    with h5py.File(path, "w") as f:
        rs = f.create_group("observation/robot_state")
        rs["cartesian_position"] = cart.astype(f64)
        rs["gripper_position"] = g.astype(f64)
        rs["joint_positions"] = q.astype(f64)
        rs["joint_velocities"] = qd.astype(f64)
        for name in ("joint_torques_computed", "prev_joint_torques_computed", "prev_joint_torques_computed_safened",
                     "motor_torques_measured"):
            rs[name] = np.zeros((t, 7), f64)
        rs["prev_controller_latency_ms"] = np.full(t, 1.5)
        rs["prev_command_successful"] = np.ones(t, bool)
        ce = f.create_group("observation/camera_extrinsics")
        ct = f.create_group("observation/camera_type")
        ts = f.create_group("observation/timestamp/cameras")
        for cam, s in serial.items():
            left = poses[cam]
            ce[f"{s}_left"] = pose6(left).astype(f64)
            ce[f"{s}_right"] = pose6(np.stack([_shift_x(p, BASELINE[role[cam]]) for p in left])).astype(f64)
            if role[cam] == "wrist":
                off = np.tile(WRIST_OFFSET, (t, 1))
                ce[f"{s}_left_gripper_offset"] = off
                right = _shift_x(from6(WRIST_OFFSET), BASELINE["wrist"])
                ce[f"{s}_right_gripper_offset"] = pose6(np.stack([right] * t))
            ct[s] = np.full(t, 0 if role[cam] == "wrist" else 1, np.int64)
            for k, dt_ms in (("read_start", 2), ("read_end", 30), ("frame_received", 20), ("estimated_capture", -21)):
                ts[f"{s}_{k}"] = (step_start + dt_ms).astype(np.int64)
            if h5_intrinsics:
                k_native = np.asarray(_k(K_WRIST if role[cam] == "wrist" else K_EXT, NATIVE))
                f[f"observation/camera_intrinsics/{s}_left"] = np.tile(k_native, (t, 1, 1))
        ctrl = f.create_group("observation/timestamp/control")
        for i, k in enumerate(("step_start", "policy_start", "sleep_start", "control_start", "step_end")):
            ctrl[k] = (step_start + 5 * i).astype(np.int64)
        rt = f.create_group("observation/timestamp/robot_state")
        rt["read_start"], rt["read_end"] = step_start + 1, step_start + 2
        rt["robot_timestamp_seconds"] = (step_start // 1000).astype(np.int64)
        rt["robot_timestamp_nanos"] = ((step_start % 1000) * 1_000_000).astype(np.int64)
        f["observation/timestamp/skip_action"] = np.zeros(t, bool)
        ci = f.create_group("observation/controller_info")
        for k in ("success", "failure"):
            ci[k] = np.zeros(t, bool)
        ci["movement_enabled"] = np.ones(t, bool)
        ci["controller_on"] = np.ones(t, bool)
        a = f.create_group("action")
        a["joint_position"] = q[nxt].astype(f64)
        a["joint_velocity"] = np.clip(qd / 2.0, -1, 1).astype(f64)
        a["gripper_position"] = g[nxt].astype(f64)
        a["gripper_velocity"] = np.clip(np.gradient(g) * 15, -1, 1).astype(f64)
        a["cartesian_position"] = cart[nxt].astype(f64)
        a["cartesian_velocity"] = np.clip(np.gradient(cart, axis=0), -1, 1).astype(f64)
        a["target_cartesian_position"] = cart[nxt].astype(f64)
        a["target_gripper_position"] = g[nxt].astype(f64)
        f["action/robot_state/cartesian_position"] = cart.astype(f64)
        f.attrs.update({"user": "Synthetic User", "building": "Synthetic Hall", "scene_id": 1,
                        "current_task": "put the cube on the other side", "time": "synthetic",
                        "robot_serial_number": "panda-000", "version_number": "1.3",
                        "success": ep.outcome == "success", "failure": ep.outcome == "failure"})


def _write_im128(path: Path, serial, role, steps: int) -> None:
    names = {"wrist_left": "hand_camera", "exterior_1_left": "varied_camera_1", "exterior_2_left": "varied_camera_2"}
    with h5py.File(path, "w") as f:
        for cam, name in names.items():
            k = _k(K_WRIST if role[cam] == "wrist" else K_EXT, NATIVE)
            for eye in ("left", "right"):
                f[f"observation/camera/intrinsics/{name}_{eye}"] = np.tile(k, (max(1, steps - 2), 1, 1))
            f[f"observation/camera/image/{name}_left_image"] = np.zeros((max(1, steps - 2), 128, 128, 3), np.uint8)


def _metadata(ep: SynthEpisode, serial, poses, start, user, version_key) -> dict[str, Any]:
    rel = ep.folder.relative_to(ep.folder.parents[3])  # relative to <LAB>/
    mp4 = lambda s: str(rel / "recordings" / "MP4" / f"{s}.mp4")  # noqa: E731
    svo = lambda s: str(rel / "recordings" / "SVO" / f"{s}.svo")  # noqa: E731
    s = serial
    return {
        "uuid": ep.uuid, "lab": ep.lab, "user": "Synthetic User", "user_id": user, "date": start.strftime("%Y-%m-%d"),
        "timestamp": start.strftime("%Y-%m-%d-%Hh-%Mm-%Ss"), "hdf5_path": str(rel / "trajectory.h5"),
        "building": "Synthetic Hall", "scene_id": 1, "success": ep.outcome == "success", "robot_serial": "panda-000",
        version_key: "1.3", "current_task": "put the cube on the other side", "trajectory_length": ep.steps,
        "wrist_cam_serial": s["wrist_left"], "ext1_cam_serial": s["exterior_1_left"],
        "ext2_cam_serial": s["exterior_2_left"],
        "wrist_cam_extrinsics": pose6(poses["wrist_left"][0]).tolist(),
        "ext1_cam_extrinsics": pose6(poses["exterior_1_left"][0]).tolist(),
        "ext2_cam_extrinsics": pose6(poses["exterior_2_left"][0]).tolist(),
        "wrist_svo_path": svo(s["wrist_left"]), "wrist_mp4_path": mp4(s["wrist_left"]),
        "ext1_svo_path": svo(s["exterior_1_left"]), "ext1_mp4_path": mp4(s["exterior_1_left"]),
        "ext2_svo_path": svo(s["exterior_2_left"]), "ext2_mp4_path": mp4(s["exterior_2_left"]),
        "left_mp4_path": mp4(s["exterior_1_left"]), "right_mp4_path": mp4(s["exterior_2_left"]),
    }


def make_tree(root: Path, n: int = 2, **kw: Any) -> list[SynthEpisode]:
    """``n`` episodes under ``root`` (indices 0..n-1; see make_episode for the options)."""
    return [make_episode(root, i, **kw) for i in range(n)]


# ------------------------------------------------------------------------------------------ broken variants

def break_episode(ep: SynthEpisode, how: str) -> str:
    """Damage one episode in place; returns a piece of the reject reason raygen must give."""
    f = ep.folder
    h5 = f / "trajectory.h5"
    meta = f / f"metadata_{ep.uuid}.json"
    wrist = ep.cameras["wrist_left"].serial
    ext1 = ep.cameras["exterior_1_left"].serial
    if how == "no_trajectory":
        h5.unlink()
        return "trajectory.h5: missing"
    if how == "corrupt_trajectory":
        h5.write_bytes(b"this is not an HDF5 file" * 10)
        return "not a readable HDF5 file"
    if how == "corrupt_metadata":
        meta.write_text(meta.read_text()[:40])
        return "not valid JSON"
    if how == "missing_key":
        with h5py.File(h5, "a") as h:
            del h["observation/robot_state/cartesian_position"]
        return "'observation/robot_state/cartesian_position' is missing"
    if how == "nan_extrinsics":
        with h5py.File(h5, "a") as h:
            d = h[f"observation/camera_extrinsics/{ext1}_left"]
            a = d[()]
            a[3, 0] = np.nan
            d[...] = a
        return f"camera_extrinsics/{ext1}_left' has 1 NaN/Inf values, first at step 3"
    if how == "ragged":
        with h5py.File(h5, "a") as h:
            a = h["action/joint_position"][()]
            del h["action/joint_position"]
            h["action/joint_position"] = a[:-2]
        return "ragged lengths"
    if how == "zero_intrinsics":
        (f / "trajectory_im128.h5").unlink(missing_ok=True)
        with h5py.File(f / "trajectory_im128.h5", "w") as h:
            for name in ("hand_camera_left", "varied_camera_1_left", "varied_camera_2_left"):
                h[f"observation/camera/intrinsics/{name}"] = np.zeros((3, 3, 3))
        return "no intrinsics for camera"
    if how == "short_video":
        _truncate_mp4(f / "recordings" / "MP4" / f"{wrist}.mp4", ep.steps - 3, ep.video_size)
        return f"{ep.steps - 3} frames for {ep.steps} trajectory steps"
    if how == "one_frame_fewer":
        _truncate_mp4(f / "recordings" / "MP4" / f"{wrist}.mp4", ep.steps - 1, ep.video_size)
        return ""  # accepted: the last step shows the frame before it, and the camera's info says so
    if how == "no_mp4":
        (f / "recordings" / "MP4" / f"{ext1}.mp4").unlink()
        return f"recordings/MP4/{ext1}.mp4: missing"
    if how == "corrupt_mp4":
        (f / "recordings" / "MP4" / f"{ext1}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
        return f"recordings/MP4/{ext1}.mp4: cannot decode"
    if how == "no_svo":
        (f / "recordings" / "SVO" / f"{wrist}.svo").unlink()
        return f"recordings/SVO/{wrist}.svo: missing"
    if how == "corrupt_svo":
        (f / "recordings" / "SVO" / f"{wrist}.svo").write_bytes(b"garbage" * 10)
        return "opening it with the ZED SDK failed (INVALID_SVO_FILE)"
    raise ValueError(f"unknown way to break an episode: {how!r}")


def _truncate_mp4(path: Path, n: int, size: tuple[int, int]) -> None:
    with av.open(str(path)) as c:
        frames = [fr.to_ndarray(format="rgb24") for _, fr in zip(range(n), c.decode(video=0))]
    _write_mp4(path, frames, size, 4_000_000)
