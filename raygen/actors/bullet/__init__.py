"""The embedded CPU backend: pick-and-place on PyBullet (imported only inside its worker)."""
