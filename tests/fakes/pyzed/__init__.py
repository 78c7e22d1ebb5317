"""TEST DOUBLE of the ZED SDK's Python package (see tests/fakes/README.md). Not the real pyzed."""
