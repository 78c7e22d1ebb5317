"""An Episode on disk as the child hands it to the host: one .npy per array plus meta.json.

Built on the Ray row mapping (episode_to_row), so the files hold exactly a row.
Imports numpy and the standard library only (the child may run in Isaac Sim's python).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from raygen.datasets.episode import Episode, episode_from_row, episode_to_row

__all__ = ["read_episode", "write_episode"]

META = "meta.json"


def write_episode(episode: Episode, folder: Path) -> None:
    """Write ``episode`` into ``folder`` (created); meta.json is written last and marks it complete."""
    folder.mkdir(parents=True, exist_ok=True)
    scalars: dict[str, Any] = {}
    arrays: list[str] = []
    for key, value in episode_to_row(episode).items():
        if isinstance(value, np.ndarray):
            np.save(folder / f"{key}.npy", value, allow_pickle=False)
            arrays.append(key)
        else:
            scalars[key] = value
    tmp = folder / f".{META}.tmp"
    tmp.write_text(json.dumps({"scalars": scalars, "arrays": arrays}))
    os.replace(tmp, folder / META)


def read_episode(folder: Path) -> Episode:
    """Read what :func:`write_episode` wrote."""
    meta = json.loads((folder / META).read_text())
    row: dict[str, Any] = dict(meta["scalars"])
    for key in meta["arrays"]:
        row[key] = np.load(folder / f"{key}.npy", allow_pickle=False)
    return episode_from_row(row)
