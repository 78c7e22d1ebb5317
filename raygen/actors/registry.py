"""Backends by name. Each backend is a package raygen.actors.<name> with a ``worker`` module (the
child's entry point) and its SDK imported only inside it."""

from __future__ import annotations

from dataclasses import dataclass

from raygen._deps import check

__all__ = ["BACKENDS", "BackendInfo", "check_backend", "worker_module"]


@dataclass(frozen=True)
class BackendInfo:
    name: str
    module: str
    """Module run as the child: ``python -m <module>``."""
    sdk: str
    """The Python module the backend cannot run without (checked on the driver before scheduling)."""
    needs_gpu: bool
    can_use_gpu: bool = False
    """Runs on CPU by default but can take GPU shares when resources.num_gpus is given (bullet: EGL on the GPU)."""
    custom_resource: str | None = None
    """A Ray custom resource its actors ask for (Isaac Sim renders only on RTX GPUs)."""
    description: str = ""


BACKENDS: dict[str, BackendInfo] = {
    "bullet": BackendInfo("bullet", "raygen.actors.bullet.worker", "pybullet", needs_gpu=False,
                          can_use_gpu=True, description="embedded CPU pick-and-place on PyBullet"),
    "isaac": BackendInfo("isaac", "raygen.actors.isaac.worker", "isaacsim", needs_gpu=True, custom_resource="rtx",
                         description="Isaac Sim 5.x pick-and-place (RTX GPU)"),
    "droid": BackendInfo("droid", "raygen.actors.droid.worker", "h5py", needs_gpu=False,
                         description="DROID recordings on CPU (MP4s, stereo depth estimate)"),
    "zed": BackendInfo("zed", "raygen.actors.zed.worker", "pyzed.sl", needs_gpu=True,
                       description="DROID recordings through the ZED SDK (CUDA GPU; no RT cores needed)"),
}


def _get(name: str) -> BackendInfo:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {sorted(BACKENDS)}") from None


def worker_module(name: str) -> str:
    return _get(name).module


def check_backend(name: str, python: str | None = None) -> BackendInfo:
    """On the driver, before any actor exists: the backend is known and its SDK importable here.

    With a separate interpreter (``python``) the SDK is checked by that interpreter at start-up instead.
    """
    info = _get(name)
    if python is None:
        check(info.sdk, f"the {name!r} backend ({info.description})")
    return info
