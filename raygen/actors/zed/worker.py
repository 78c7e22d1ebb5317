"""Child entry point: ``python -m raygen.actors.zed.worker`` (started by WorkerHost on a GPU)."""

from __future__ import annotations

import sys
from typing import Any

from raygen.actors._child import serve

SIM_OPTIONS: tuple[str, ...] = ()
"""No extra backend options: everything is in ``source.droid``."""


def make_backend(options: dict[str, Any]) -> Any:
    from raygen.actors.zed.backend import ZedBackend

    return ZedBackend(options)


if __name__ == "__main__":
    sys.exit(serve(make_backend))
