"""raygen.actors (filled in by later issues)."""
