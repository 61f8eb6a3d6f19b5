"""nginx with the repository's proxy configuration, and clients that send their headers slowly.

The configuration is the file compose mounts (deploy/nginx/walletpipe.conf); only its two
addresses change: the upstream (`web:8000` in compose) and the listening port.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

PROXY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "walletpipe.conf"
UPSTREAM_LINE = "server web:8000;"
LISTEN_LINE = "listen 8080;"


class NginxMissing(Exception):
    """nginx is not installed."""


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise NginxMissing("nginx is not installed: apt-get install -y nginx-light")
    return found


def write_config(directory: Path, upstream: str, listen: str) -> Path:
    """A main nginx.conf in `directory` that includes the proxy file with these addresses."""
    site = PROXY_CONF.read_text()
    for line, replacement in (
        (UPSTREAM_LINE, f"server {upstream};"),
        (LISTEN_LINE, f"listen {listen};"),
    ):
        if site.count(line) != 1:
            raise AssertionError(f"{PROXY_CONF.name} must hold {line!r} exactly once")
        site = site.replace(line, replacement)
    (directory / "walletpipe.conf").write_text(site)
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    # As root, nginx's workers would switch to nobody, who cannot enter the test's directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = directory / "nginx.conf"
    main.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log notice;\n"
        "events { worker_connections 1024; }\n"
        "http {\n  access_log off;\n"
        f"  client_body_temp_path {temp['body']};\n  proxy_temp_path {temp['proxy']};\n"
        f"  fastcgi_temp_path {temp['fastcgi']};\n  uwsgi_temp_path {temp['uwsgi']};\n"
        f"  scgi_temp_path {temp['scgi']};\n"
        f"  include {directory}/walletpipe.conf;\n}}\n"
    )
    return main


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the configuration: its exit code and what it said."""
    return subprocess.run(
        [nginx_binary(), "-t", "-c", str(config), "-p", str(config.parent)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def healthz(url: str, timeout_s: float) -> int:
    """The status of GET /healthz, or 0 when it does not answer within `timeout_s`."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout_s) as answer:  # noqa: S310
            return int(answer.status)
    except OSError:
        return 0


@contextmanager
def running_nginx(config: Path, url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground with `config`, once `url` answers through it; stopped after."""
    with log.open("w") as output:
        process = subprocess.Popen(
            [nginx_binary(), "-c", str(config), "-p", str(config.parent)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while healthz(url, 1) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()  # nginx's fast shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class SlowClients:
    """Connections that each sent a request line and then trickle one header byte a second."""

    sockets: list[socket.socket]

    def still_open(self) -> int:
        """How many the server has neither closed nor answered (nothing readable on them)."""
        readable, _, _ = select.select(self.sockets, [], [], 0)
        return len(self.sockets) - len(readable)


@contextmanager
def slow_clients(host: str, port: int, count: int, duration_s: float) -> Iterator[SlowClients]:
    """`count` slow-header connections to host:port, trickling for up to `duration_s`."""
    sockets = []
    stop = threading.Event()
    try:
        for _ in range(count):
            connection = socket.create_connection((host, port), timeout=5)
            connection.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: walletpipe\r\nX-Slow: ")
            sockets.append(connection)

        def trickle() -> None:
            deadline = time.monotonic() + duration_s
            while not stop.wait(1.0) and time.monotonic() < deadline:
                for connection in sockets:
                    with suppress(OSError):
                        connection.send(b"a")

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        yield SlowClients(sockets)
    finally:
        stop.set()
        for connection in sockets:
            connection.close()
