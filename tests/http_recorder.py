"""A local HTTP server that records what it receives: the far side of a notification channel."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    """Answers every POST with `status` (200 unless set), after `delay_s` (0 unless set), and
    keeps each request in order, as soon as it has arrived."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.status = 200
        self.delay_s = 0.0

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def keep(self, request: Received) -> int:
        with self._lock:
            self.received.append(request)
            return self.status

    def on(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self.received if request.path == path]


@contextmanager
def recording_server() -> Iterator[Recorder]:
    """A Recorder on a free loopback port, for the duration of the block."""
    recorder: Recorder

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status = recorder.keep(
                Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            time.sleep(recorder.delay_s)
            body = b'{"ok": true}' if status < 400 else b'{"error": "refused by the test"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder = Recorder(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
