"""The one place that knows raygen's optional, heavy dependencies and how to install them.

GPU-only SDKs (Isaac Sim, the ZED SDK) are imported only inside their
backends, through :func:`require`, so the rest of raygen imports and tests
without them. The driver calls :func:`check` before any actor is scheduled.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["MissingDependencyError", "check", "require", "INSTALL"]

INSTALL: dict[str, str] = {
    "isaacsim": (
        "Isaac Sim 5.x for Python 3.11 on a Linux machine with an RTX GPU (L4, L40S, A10G, RTX): "
        "pip install 'isaacsim[all,extscache]==5.1.0' --extra-index-url https://pypi.nvidia.com "
        "(or run raygen with Isaac Sim's own python.sh: backend.python = /isaac-sim/python.sh)"
    ),
    "pyzed": (
        "the Stereolabs ZED SDK (needs CUDA) from https://www.stereolabs.com/developers/release, then its "
        "get_python_api.py; the PyPI package named 'pyzed' is unrelated"
    ),
    "pybullet": "pip install pybullet",
}


class MissingDependencyError(ImportError):
    """An optional dependency is missing; the message says exactly what to install."""


def _message(module: str, purpose: str) -> str:
    how = INSTALL.get(module.split(".")[0], f"pip install {module.split('.')[0]}")
    return f"{purpose} needs the Python module {module!r}, which is not installed here. Install {how}"


def check(module: str, purpose: str) -> None:
    """Raise MissingDependencyError if ``module`` cannot be imported (without importing it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependencyError(_message(module, purpose))


def require(module: str, purpose: str) -> ModuleType:
    """Import and return ``module``, or raise MissingDependencyError naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(_message(module, purpose)) from exc
