"""A local HTTP server that answers GETs as a gateway's read API would: the far side of
catch-up. Each route is a function of the query string; every request is kept."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[dict[str, list[str]]], tuple[int, Any]]


@dataclass(frozen=True)
class Asked:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class FakeApi:
    def __init__(self, server: ThreadingHTTPServer, routes: dict[str, Route]) -> None:
        self._server = server
        self.routes = routes
        self.asked: list[Asked] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def keep(self, asked: Asked) -> None:
        with self._lock:
            self.asked.append(asked)

    def on(self, path: str) -> list[Asked]:
        with self._lock:
            return [asked for asked in self.asked if asked.path == path]


@contextmanager
def fake_api(routes: dict[str, Route]) -> Iterator[FakeApi]:
    api: FakeApi

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parsed.query)
            api.keep(Asked(parsed.path, query, {k.lower(): v for k, v in self.headers.items()}))
            route = api.routes.get(parsed.path)
            status, document = (404, {"error": "no such route"}) if route is None else route(query)
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api = FakeApi(server, routes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
