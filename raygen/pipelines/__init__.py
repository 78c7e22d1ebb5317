"""raygen.pipelines (filled in by later issues)."""
