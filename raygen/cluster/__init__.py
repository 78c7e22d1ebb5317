"""raygen.cluster (filled in by later issues)."""
