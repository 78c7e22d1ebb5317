"""TEST DOUBLE: a tiny backend that fails on purpose (crash, hang, error) to exercise WorkerHost.

Run as ``python -m tests.actors.faulty_worker`` by WorkerHost(worker_module=...). Its episodes are
raygen's synthetic ones; spec.params["fault"] picks the misbehaviour:
  crash_once / hang_once   the first attempt (per marker file) dies by SIGKILL / sleeps forever
  crash_always / error_always   every attempt
  slow                     sleeps params["sleep_s"] first (so a test can kill it mid-episode)
params["burn_s"] burns that much CPU first, whatever the fault.
"""

import logging
import os
import signal
import sys
import time
from pathlib import Path

from raygen.actors._child import serve
from raygen.datasets.synthetic import synthetic_episode

log = logging.getLogger("faulty")


class FaultyBackend:
    name = "faulty"
    version = "0"

    def __init__(self, options):
        if options.get("fail_start"):
            raise RuntimeError("this backend was told not to start")
        self.options = options

    def capabilities(self):
        return {"env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                                                       "RAYGEN_CACHE_DIR", "TMPDIR")}}

    def run_episode(self, spec):
        fault = spec.params.get("fault")
        marker = Path(spec.params.get("marker", "/nonexistent"))
        first = fault in ("crash_once", "hang_once") and not marker.exists()
        if first:
            marker.write_text("x")
        log.info("working on %s (fault=%s)", spec.episode_key, fault)
        print(f"stdout noise from the simulator for {spec.episode_key}", flush=True)
        burn_until = time.process_time() + float(spec.params.get("burn_s", 0))
        while time.process_time() < burn_until:  # CPU work the host must bill, even if this try dies
            pass
        if fault == "slow":
            time.sleep(float(spec.params.get("sleep_s", 5)))
        if fault == "crash_always" or (fault == "crash_once" and first):
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "hang_once" and first:
            time.sleep(3600)
        if fault == "garbage":
            os.write(int(os.environ["RAYGEN_PROTO_FDS"].split(",")[1]), b"this is not json\n")
            time.sleep(3600)
        if fault == "error_always":
            raise ValueError(f"poison spec {spec.episode_key}")
        ep = synthetic_episode(spec.index, seed=spec.seed, frames=6, height=16, width=16)
        ep.episode_key = spec.episode_key
        return ep

    def close(self):
        pass


if __name__ == "__main__":
    sys.exit(serve(FaultyBackend))
