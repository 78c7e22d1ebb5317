"""DROID's raw release on disk: listing episode folders, their metadata json, and their files.

A tree (REFERENCE.md section 2) holds one folder per episode::

    <LAB>/{success|failure}/<YYYY-MM-DD>/<Ddd_Mmm_DD_HH:MM:SS_YYYY>/
        metadata_<uuid>.json  trajectory.h5  [trajectory_im128.h5]
        recordings/MP4/<serial>.mp4  <serial>-stereo.mp4  [<serial>_timestamps.json]
        recordings/SVO/<serial>.svo

The uuid (``<LAB>+<user_id>+<YYYY-MM-DD-HHh-MMm-SSs>``) is in the metadata file's name, so listing a tree
reads no file at all. A root may be a local folder or an fsspec URL (``gs://...``, ``s3://...`` with that
protocol's fsspec package installed); a remote episode's files are copied to a local folder before
they are read. Imports numpy-free standard library and fsspec only (driver and worker side).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raygen.actors.spec import EpisodeInputError

logger = logging.getLogger(__name__)

__all__ = ["DroidEpisodeRef", "DroidFilter", "DroidTreeError", "EpisodeFiles", "list_episodes", "parse_metadata",
           "read_id_file"]

METADATA_RE = re.compile(r"^metadata_(?P<uuid>[^/]+)\.json$")
UUID_RE = re.compile(r"^(?P<lab>[^+]+)\+(?P<user>[^+]+)\+(?P<date>\d{4}-\d{2}-\d{2})-\d{2}h-\d{2}m-\d{2}s$")
EXPECTED = "<LAB>/success|failure/<YYYY-MM-DD>/<time>/metadata_<uuid>.json"
OUTCOMES = ("success", "failure")
VERSION_KEYS = ("r2d2_version", "droid_version")
"""Released metadata says r2d2_version; newer DROID code writes droid_version."""
CAMERA_KEYS = {"wrist_left": "wrist_cam_serial", "exterior_1_left": "ext1_cam_serial",
               "exterior_2_left": "ext2_cam_serial"}
"""raygen's camera names (those of LeRobot's DROID port) -> the metadata key holding the camera's serial."""


class DroidTreeError(ValueError):
    """A DROID root that cannot be listed, or holds no episode that the filters keep."""


@dataclass(frozen=True)
class DroidEpisodeRef:
    """One episode folder of a tree, as listing finds it (no file read)."""

    uuid: str
    folder: str
    """Posix path of the episode folder relative to the root."""
    metadata: str
    """File name of its metadata json."""
    lab: str
    outcome: str
    """success or failure (the folder it sits in)."""
    date: str
    """YYYY-MM-DD, from the uuid (else the date folder)."""

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DroidEpisodeRef:
        return cls(**{k: str(params[k]) for k in ("uuid", "folder", "metadata", "lab", "outcome", "date")})


@dataclass(frozen=True)
class DroidFilter:
    outcome: str = "success"
    labs: tuple[str, ...] | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    ids: frozenset[str] | None = None
    limit: int | None = None

    def keeps(self, ref: DroidEpisodeRef) -> bool:
        if self.outcome != "all" and ref.outcome != self.outcome:
            return False
        if self.labs is not None and ref.lab not in self.labs:
            return False
        if self.date_from or self.date_to:
            try:
                day = dt.date.fromisoformat(ref.date)
            except ValueError:
                return False
            if (self.date_from and day < self.date_from) or (self.date_to and day > self.date_to):
                return False
        return self.ids is None or ref.uuid in self.ids

    def describe(self) -> str:
        parts = [f"outcome={self.outcome}"]
        if self.labs is not None:
            parts.append(f"labs={list(self.labs)}")
        if self.date_from or self.date_to:
            parts.append(f"dates {self.date_from or '...'} to {self.date_to or '...'}")
        if self.ids is not None:
            parts.append(f"{len(self.ids)} listed ids")
        return ", ".join(parts)


def _fs(root: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(root)
    except (ImportError, ValueError) as exc:
        raise DroidTreeError(f"source.root: cannot open {root!r}: {exc}") from None
    return fs, path.rstrip("/") or "/"


def is_local(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


def _ref(rel_meta: str, full: str) -> DroidEpisodeRef | None:
    """An episode from its metadata file: ``rel_meta`` relative to the root (the folder kept), ``full`` its
    whole path (lab, outcome and date may sit above the root when the root is a lab or an episode)."""
    parts = rel_meta.split("/")
    m = METADATA_RE.match(parts[-1])
    if m is None:
        return None
    uuid = m.group("uuid")
    folder = "/".join(parts[:-1])
    up = full.rstrip("/").split("/")[:-1]
    outcome = up[-3] if len(up) >= 3 and up[-3] in OUTCOMES else ""
    lab = up[-4] if len(up) >= 4 and outcome else ""
    date = up[-2] if len(up) >= 2 else ""
    u = UUID_RE.match(uuid)
    if u is not None:
        lab = lab or u.group("lab")
        date = u.group("date")
    return DroidEpisodeRef(uuid=uuid, folder=folder, metadata=parts[-1], lab=lab, outcome=outcome, date=date)


def list_episodes(root: str, filt: DroidFilter | None = None) -> tuple[list[DroidEpisodeRef], int]:
    """Episodes under ``root`` that ``filt`` keeps, in path order; also how many the tree holds in all.

    The root may be the release folder, a lab, or any folder above episode folders of DROID's shape.
    Raises DroidTreeError naming the root when it cannot be read or holds no episode.
    """
    filt = filt or DroidFilter()
    fs, base = _fs(root)
    try:
        if not fs.isdir(base):
            raise DroidTreeError(f"source.root: {root!r} is not a readable folder (expected a DROID raw tree: "
                                 f"{EXPECTED})")
        found: list[str] = []
        for depth in (4, 3, 2, 1, 0):  # the release root first; a lab or a single episode folder also works
            pattern = "/".join([base.rstrip("/")] + ["*"] * depth + ["metadata_*.json"])
            found = sorted(fs.glob(pattern))
            if found:
                break
    except DroidTreeError:
        raise
    except (OSError, PermissionError) as exc:
        raise DroidTreeError(f"source.root: cannot list {root!r}: {exc}") from None
    refs, seen = [], set()
    prefix = base.rstrip("/") + "/"
    for path in found:
        ref = _ref(str(path)[len(prefix):] if str(path).startswith(prefix) else str(path).rsplit("/", 1)[-1],
                   str(path))
        if ref is None:
            continue
        if ref.uuid in seen:
            logger.warning("DROID tree %s: episode %s appears twice; keeping the first (%s)", root, ref.uuid,
                           ref.folder)
            continue
        seen.add(ref.uuid)
        refs.append(ref)
    if not refs:
        raise DroidTreeError(f"source.root: no DROID episodes under {root!r}; expected folders like {EXPECTED}")
    kept = [r for r in refs if filt.keeps(r)]
    if filt.limit is not None:
        kept = kept[: filt.limit]
    if not kept:
        raise DroidTreeError(f"source.root: {len(refs)} DROID episodes under {root!r}, none kept by the filters "
                             f"({filt.describe()})")
    return kept, len(refs)


def read_id_file(path: str) -> frozenset[str]:
    """Episode ids from a file: a JSON list, or one per line (blank lines and # comments ignored)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DroidTreeError(f"source.droid.episode_ids_file: cannot read {path!r}: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            ids = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DroidTreeError(f"source.droid.episode_ids_file: {path}: not a JSON list ({exc})") from None
        return frozenset(str(i) for i in ids)
    ids = (line.split("#", 1)[0].strip() for line in text.splitlines())  # "# ..." comments, whole or trailing
    return frozenset(i for i in ids if i)


# ----------------------------------------------------------------------------------------- one episode


def parse_metadata(raw: bytes, where: str) -> dict[str, Any]:
    """The metadata json of one episode, checked: uuid, success, task, the three camera serials, version."""
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EpisodeInputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise EpisodeInputError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    problems = [f"key {k!r} is missing" for k in ("uuid", "success", "current_task", *CAMERA_KEYS.values())
                if k not in meta]
    if not any(k in meta for k in VERSION_KEYS):
        problems.append(f"no version key (one of {list(VERSION_KEYS)})")
    if "success" in meta and not isinstance(meta["success"], bool):
        problems.append(f"success must be true or false, got {meta['success']!r}")
    if problems:
        raise EpisodeInputError(f"{where}: " + "; ".join(problems))
    meta["version"] = str(meta.get("droid_version", meta.get("r2d2_version")))
    return meta


class EpisodeFiles:
    """Local paths to one episode's files; a remote episode's files are copied into ``cache`` on demand
    and deleted by :meth:`cleanup`."""

    def __init__(self, root: str, ref: DroidEpisodeRef, cache: Path):
        self.root, self.ref = root, ref
        self.local = is_local(root)
        self._fs, base = _fs(root)
        self.remote_folder = f"{base.rstrip('/')}/{ref.folder}" if ref.folder else base
        self.cache = cache / f"droid-{ref.uuid}"

    def rel(self, *parts: str) -> str:
        """Where a file sits, relative to the root (for messages)."""
        return "/".join(p for p in (self.ref.folder, *parts) if p)

    def exists(self, *parts: str) -> bool:
        """Whether the file is there; only "not found" is False (fsspec's own exists() would also say False
        for a network or permission error, turning a hiccup into a missing file)."""
        try:
            self._fs.info(f"{self.remote_folder}/{'/'.join(parts)}")
        except FileNotFoundError:
            return False
        return True

    def listdir(self, *parts: str) -> list[str]:
        """Names of the files in a folder of the episode ([] when it does not exist)."""
        folder = f"{self.remote_folder}/{'/'.join(parts)}"
        if not self._fs.isdir(folder):
            return []
        return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in self._fs.ls(folder, detail=False))

    def path(self, *parts: str) -> Path:
        """A local path to the file (copied first when the root is remote); FileNotFoundError if absent."""
        remote = f"{self.remote_folder}/{'/'.join(parts)}"
        if self.local:
            p = Path(remote)
            if not p.is_file():
                raise FileNotFoundError(self.rel(*parts))
            return p
        dst = self.cache.joinpath(*parts)
        if not dst.exists():
            if not self.exists(*parts):
                raise FileNotFoundError(self.rel(*parts))
            dst.parent.mkdir(parents=True, exist_ok=True)
            partial = dst.with_name(dst.name + ".partial")
            self._fs.get(remote, str(partial))  # a download cut short never passes for the file
            os.replace(partial, dst)
        return dst

    def read_bytes(self, *parts: str) -> bytes:
        return self.path(*parts).read_bytes()

    def cleanup(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)


def require(files: EpisodeFiles, *parts: str, what: str) -> Path:
    """``files.path`` with a missing file as an EpisodeInputError naming it and what it is."""
    try:
        return files.path(*parts)
    except FileNotFoundError:
        raise EpisodeInputError(f"{files.rel(*parts)}: missing ({what})") from None


def serials(meta: dict[str, Any]) -> dict[str, str]:
    """Camera name -> serial, from the metadata."""
    return {cam: str(meta[key]) for cam, key in CAMERA_KEYS.items()}

