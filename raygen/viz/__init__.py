"""Looking at what raygen made: `raygen view` (an episode in rerun) and `raygen report` (one HTML page)."""
