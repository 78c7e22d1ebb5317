"""A trainer stand-in for live feeds: a real HTTP server that records what it receives (test helper).

It parses each POST as raygen-feed/1 (a zip with batch.json, .npy arrays and video segments), keeps every
batch, counts duplicates by Idempotency-Key and by episode key, checks the API key when given one, and can be
told to fail (HTTP 500) the next N requests, take a batch but lose the answer, stall (answer late), or
refuse (HTTP 400).
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


class Trainer:
    def __init__(self, api_key: str | None = None, header: str = "Authorization", prefix: str = "Bearer "):
        self.api_key, self.header, self.prefix = api_key, header, prefix
        self.batches: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, bytes]] = {}  # episode key -> its files
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        self.seen_batches: dict[str, int] = {}
        self.received_at: dict[str, float] = {}
        self.fail_next = 0
        self.lose_answers = 0
        """Take the next N batches but answer HTTP 500 (the answer lost on its way back)."""
        self.stall_s = 0.0
        self.refuse = False
        self.accept_batches: int | None = None
        """After this many accepted batches, refuse (HTTP 400) every other."""
        self.requests = 0
        self.lock = threading.Lock()
        self.headers_seen: list[dict[str, str]] = []
        trainer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with trainer.lock:
                    trainer.requests += 1
                    trainer.headers_seen.append(dict(self.headers))
                    fail, stall = trainer.fail_next > 0, trainer.stall_s
                    refuse = trainer.refuse or (trainer.accept_batches is not None
                                                and len(trainer.batches) >= trainer.accept_batches)
                    if fail:
                        trainer.fail_next -= 1
                    lose = trainer.lose_answers > 0 and not fail
                    if lose:
                        trainer.lose_answers -= 1
                if stall:
                    time.sleep(stall)
                if trainer.api_key and self.headers.get(trainer.header) != trainer.prefix + trainer.api_key:
                    return self._answer(401)
                if refuse:
                    return self._answer(400)
                if fail:
                    return self._answer(500)
                trainer._take(self.headers.get("Idempotency-Key", ""), body)
                self._answer(500 if lose else 200)

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/episodes"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _take(self, batch_id: str, body: bytes) -> None:
        with zipfile.ZipFile(io.BytesIO(body)) as z:
            batch = json.loads(z.read("batch.json"))
            names = set(z.namelist())
            files = {n: z.read(n) for n in names if n != "batch.json"}
        with self.lock:
            self.seen_batches[batch_id] = self.seen_batches.get(batch_id, 0) + 1
            if self.seen_batches[batch_id] > 1:
                return  # a retry of a batch already taken: dropped by its idempotency key
            self.batches.append(batch)
            for ep in batch["episodes"]:
                self.received_at.setdefault(ep["key"], time.time())
                paths = [*ep["arrays"].values(), *ep["videos"].values(), *ep["depth"].values()]
                self.files[ep["key"]] = {p: files[p] for p in paths}
                self.arrays[ep["key"]] = {name: np.load(io.BytesIO(files[p]), allow_pickle=False)
                                          for name, p in ep["arrays"].items()}

    @property
    def keys(self) -> list[str]:
        with self.lock:
            return [ep["key"] for b in self.batches for ep in b["episodes"]]

    def __enter__(self) -> Trainer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
