"""Video and depth encoding with PyAV: in-memory segments, stream-copy joins, decoding.

Each episode's frames are encoded once, into an in-memory container (a
*segment*). A shard file is the concatenation of its episodes' segments by
stream copy (no re-encode), each shifted to start where the previous one
ended, which is how LeRobot v3.0 packs several episodes into one MP4.

Colour goes to MP4 with LeRobot's defaults (libsvtav1, yuv420p, g=2, crf=30).
Depth goes to Matroska with FFV1 in gray16le, which round-trips uint16
millimetres bit-exactly. Matroska stores timestamps in milliseconds, so depth
timestamps are exact to 1 ms; readers match depth frames by order within an
episode's [from, to) window, never by exact timestamp.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)

# SVT-AV1 prints a multi-line banner per encoder to stderr; keep only its errors unless the user asks.
os.environ.setdefault("SVT_LOG", "1")

__all__ = [
    "DEPTH_CODEC",
    "DEPTH_PIX_FMT",
    "VideoSettings",
    "concat_segments",
    "decode_window",
    "encode_depth",
    "encode_rgb",
    "extract_window",
    "frame_rate",
    "probe_timestamps",
    "window_problem",
]

DEPTH_CODEC = "ffv1"
DEPTH_PIX_FMT = "gray16le"
DEPTH_CONTAINER = "matroska"
RGB_CONTAINER = "mp4"

# Encoder name -> the codec name a decoder reports (what LeRobot stores as video.codec).
_CODEC_FAMILY = {
    "libsvtav1": "av1",
    "libaom-av1": "av1",
    "librav1e": "av1",
    "libx264": "h264",
    "h264": "h264",
    "libx265": "hevc",
    "hevc": "hevc",
    "libvpx-vp9": "vp9",
}


@dataclass(frozen=True)
class VideoSettings:
    """How colour video is encoded (defaults follow LeRobot: libsvtav1, yuv420p, g=2, crf=30)."""

    codec: str = "libsvtav1"
    """FFmpeg encoder name: libsvtav1, libx264, libx265, libvpx-vp9, ..."""
    pix_fmt: str = "yuv420p"
    """Pixel format of the stored video."""
    g: int | None = 2
    """GOP size (keyframe interval); 2 keeps random access cheap for training loaders."""
    crf: int | None = 30
    """Constant rate factor (quality); lower is better and larger."""
    preset: str | None = None
    """Encoder speed preset (libsvtav1: 0-13, libx264: ultrafast..placebo); None = encoder default."""
    threads: int | None = None
    """Encoder threads; None lets the encoder decide. libsvtav1 ignores it and sizes its own thread pool
    (~2 busy threads on 2 cores; capping it with ``svtav1-params: lp=1`` cost ~35% more CPU per frame here),
    so raygen keeps it off the simulators' cores by pinning instead (raygen.actors.cores)."""
    options: dict[str, str] = field(default_factory=dict)
    """Extra encoder options passed verbatim to FFmpeg."""

    def __post_init__(self) -> None:
        if self.codec not in av.codecs_available:
            raise ValueError(
                f"video.codec: encoder {self.codec!r} is not in this PyAV/FFmpeg build; "
                f"try one of {sorted(c for c in _CODEC_FAMILY if c in av.codecs_available)}"
            )

    def encoder_options(self) -> dict[str, str]:
        opts = {}
        if self.g is not None:
            opts["g"] = str(self.g)
        if self.crf is not None:
            opts["crf"] = str(self.crf)
        if self.preset is not None:
            opts["preset"] = str(self.preset)
        opts.update({str(k): str(v) for k, v in self.options.items()})
        return opts

    @property
    def codec_family(self) -> str:
        """The codec name a decoder reports, as LeRobot writes it into info.json (e.g. "av1")."""
        return _CODEC_FAMILY.get(self.codec, self.codec)

    def to_dict(self) -> dict:
        return {
            "codec": self.codec,
            "pix_fmt": self.pix_fmt,
            "g": self.g,
            "crf": self.crf,
            "preset": self.preset,
            "threads": self.threads,
            "options": dict(self.options),
        }


def frame_rate(fps: float) -> Fraction:
    """fps as an exact fraction (30 -> 30/1, 29.97 -> 2997/100)."""
    return Fraction(fps).limit_denominator(100_000)


def _encode(
    frames: np.ndarray,
    *,
    fps: float,
    codec: str,
    pix_fmt: str,
    in_format: str,
    container: str,
    options: dict[str, str],
    threads: int | None = None,
) -> bytes:
    buf = io.BytesIO()
    rate = frame_rate(fps)
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, options=options)
        stream.height, stream.width = int(frames.shape[1]), int(frames.shape[2])
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = 1 / rate
        if threads:
            stream.codec_context.thread_count = threads
        for i in range(frames.shape[0]):
            frame = av.VideoFrame.from_ndarray(frames[i], format=in_format)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def encode_rgb(frames: np.ndarray, fps: float, settings: VideoSettings) -> bytes:
    """Encode [T,H,W,3] uint8 RGB frames into an in-memory MP4 segment."""
    return _encode(
        np.ascontiguousarray(frames),
        fps=fps,
        codec=settings.codec,
        pix_fmt=settings.pix_fmt,
        in_format="rgb24",
        container=RGB_CONTAINER,
        options=settings.encoder_options(),
        threads=settings.threads,
    )


def encode_depth(frames: np.ndarray, fps: float, threads: int | None = None) -> bytes:
    """Encode [T,H,W] uint16 depth losslessly (FFV1 gray16le) into an in-memory Matroska segment
    (``threads``: the encoder's thread count; None = FFmpeg's choice)."""
    return _encode(
        np.ascontiguousarray(frames),
        fps=fps,
        codec=DEPTH_CODEC,
        pix_fmt=DEPTH_PIX_FMT,
        in_format=DEPTH_PIX_FMT,
        container=DEPTH_CONTAINER,
        options={"level": "3", "slicecrc": "1"},
        threads=threads,
    )


def concat_segments(segments: Sequence[bytes], frame_counts: Sequence[int], fps: float, path: Path) -> None:
    """Join encoded segments into one file by stream copy, back to back in time.

    Segment ``k`` starts at ``sum(frame_counts[:k]) / fps`` seconds, so an
    episode's from_timestamp is the previous episode's to_timestamp. Encoders
    with B-frames start a segment's decode timestamps (dts) before its first
    frame, by a delay that differs between a 1-frame and a 60-frame segment;
    every segment's dts are moved back to the largest delay so they keep
    increasing across joins (presentation timestamps are not touched).
    """
    if len(segments) != len(frame_counts) or not segments:
        raise ValueError("concat_segments needs one frame count per segment and at least one segment")
    fmt = RGB_CONTAINER if path.suffix == ".mp4" else DEPTH_CONTAINER
    rate = frame_rate(fps)
    inputs = [av.open(io.BytesIO(seg)) for seg in segments]
    try:
        packets, delays = [], []
        for inp in inputs:
            pk = [p for p in inp.demux(inp.streams.video[0]) if p.dts is not None]
            packets.append(pk)
            delays.append(max(0, min(p.pts for p in pk) - min(p.dts for p in pk)) if pk else 0)
        max_delay = max(delays)
        start = Fraction(0)
        with av.open(str(path), "w", format=fmt) as out:
            ostream = out.add_stream_from_template(inputs[0].streams.video[0], opaque=True)
            for inp, pk, delay, count in zip(inputs, packets, delays, frame_counts):
                shift = round(start / inp.streams.video[0].time_base)
                for packet in pk:
                    packet.pts += shift
                    packet.dts += shift - (max_delay - delay)
                    packet.stream = ostream
                    out.mux(packet)
                start += count / rate
    finally:
        for inp in inputs:
            inp.close()
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def extract_window(path: Path, start: float, n: int, fps: float) -> bytes:
    """One episode's ``n`` frames from ``start`` seconds of a shard file, by stream copy (no re-encode), as a
    standalone in-memory file of the same container whose timestamps start at 0. Each episode was encoded on
    its own, so its packets form a complete stream."""
    half = 0.5 / fps
    fmt = RGB_CONTAINER if Path(path).suffix == ".mp4" else DEPTH_CONTAINER
    buf = io.BytesIO()
    with av.open(str(path)) as inp, av.open(buf, "w", format=fmt) as out:
        src = inp.streams.video[0]
        dst = out.add_stream_from_template(src, opaque=True)
        lo = round((start - half) / src.time_base)
        hi = round((start + n / fps - half) / src.time_base)
        shift = round(start / src.time_base)
        packets = [p for p in inp.demux(src) if p.pts is not None and lo <= p.pts < hi]
        if len(packets) != n:
            raise ValueError(f"{path}: {len(packets)} packets in [{start:.4f}, {start + n / fps:.4f}) s, expected {n}")
        for packet in sorted(packets, key=lambda p: p.dts if p.dts is not None else p.pts):
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = dst
            out.mux(packet)
    return buf.getvalue()


def window_problem(ts: np.ndarray, start: float, n: int, fps: float, tol: float) -> str | None:
    """Why the sorted frame timestamps ``ts`` do not hold exactly ``n`` frames at start + i/fps, or None."""
    half = 0.5 / fps
    got = ts[(ts >= start - half) & (ts < start + n / fps - half)]
    if got.size != n:
        return f"{got.size} frames in [{start:.4f}, {start + n / fps:.4f}) s, expected {n}"
    err = np.abs(got - (start + np.arange(n) / fps))
    if err.max() > tol:
        return f"frame timestamps off by up to {err.max() * 1000:.3f} ms (tolerance {tol * 1000:.3f} ms)"
    return None


def probe_timestamps(path: Path) -> tuple[np.ndarray, dict]:
    """Presentation timestamps (seconds, sorted) of every frame, read from packets without decoding.

    Returns (timestamps, info) with info holding codec, pix_fmt, width, height.
    """
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        info = {"codec": cc.name, "pix_fmt": cc.pix_fmt, "width": cc.width, "height": cc.height}
        tb = s.time_base
        pts = [p.pts for p in c.demux(s) if p.pts is not None]
    return np.sort(np.asarray(pts, dtype=np.float64) * float(tb)), info


def _iter_window(path: Path, start: float, n: int, fps: float) -> Iterator[av.VideoFrame]:
    """Yield the ``n`` frames whose timestamps fall in [start, start + n/fps)."""
    half = 0.5 / fps
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        # No frame threading: freeing a frame-threaded decoder that stopped mid-stream (as this window
        # does) can deadlock inside avcodec_free_context (seen with h264 after 2 of ~40 runs).
        if start > 0:
            c.seek(int(max(0.0, start - half) / s.time_base), stream=s, backward=True, any_frame=False)
        got = 0
        for frame in c.decode(s):
            t = float(frame.pts * s.time_base)
            if t < start - half:
                continue
            yield frame
            got += 1
            if got == n:
                return
    if got != n:
        raise ValueError(f"{path}: expected {n} frames from t={start:.4f}s, the file has only {got}")


def decode_window(path: Path, start: float, n: int, fps: float, *, depth: bool = False,
                  pix_fmt: str | None = None) -> np.ndarray:
    """Decode ``n`` frames starting at ``start`` seconds: RGB [n,H,W,3] uint8, depth [n,H,W] uint16, or
    frames in ``pix_fmt`` (e.g. gray12le codes)."""
    fmt = pix_fmt or (DEPTH_PIX_FMT if depth else "rgb24")
    frames = [f.to_ndarray(format=fmt) for f in _iter_window(path, start, n, fps)]
    return np.stack(frames)
