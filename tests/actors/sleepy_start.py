"""TEST DOUBLE: a worker that never finishes starting (for the start-up timeout)."""

import time

time.sleep(3600)
