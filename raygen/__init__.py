"""raygen: a Ray data factory for robot-learning datasets."""

__version__ = "0.1.0"

__all__ = ["__version__"]
