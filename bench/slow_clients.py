"""/healthz under slow clients, straight to gunicorn and through the nginx of compose.yaml.

gunicorn runs with the production config (two processes a core, four threads each); N
clients (48 by default) each send a request line and then one header byte a second. While
they are connected, GET /healthz is tried with a bounded timeout, first on gunicorn itself,
then through nginx with deploy/nginx/walletpipe.conf. Prints how long each answer took, or
that it did not come within the timeout.

    python bench/slow_clients.py [--clients 48] [--timeout-s 5]

Needs nginx (Debian: apt-get install -y nginx-light) and DATABASE_URL's PostgreSQL (the web
opens its engine at start).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.nginx import (  # noqa: E402 (after the path it is found on)
    check_config,
    healthz,
    running_nginx,
    slow_clients,
    write_config,
)

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def timed_healthz(url: str, timeout_s: float) -> str:
    started = time.monotonic()
    status = healthz(url, timeout_s)
    elapsed_ms = (time.monotonic() - started) * 1000
    return f"{status} in {elapsed_ms:.0f} ms" if status else f"no answer within {timeout_s:g} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--timeout-s", type=float, default=5.0)
    options = parser.parse_args()
    web_port, proxy_port = free_port(), free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(web_port), "LOG_FORMAT": "text"}
    env.pop("WEB_CONCURRENCY", None)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        web = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--config",
                "python:webhook_receiver.gunicorn_conf",
                "webhook_receiver:create_app()",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        web_url = f"http://127.0.0.1:{web_port}"
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        try:
            deadline = time.monotonic() + 30
            while healthz(web_url, 1) != 200:
                if web.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not start")
                time.sleep(0.2)
            config = write_config(
                directory, upstream=f"127.0.0.1:{web_port}", listen=f"127.0.0.1:{proxy_port}"
            )
            checked = check_config(config)
            if checked.returncode:
                raise SystemExit(checked.stderr)
            print(f"cpus={os.cpu_count()} clients={options.clients} timeout={options.timeout_s:g}s")
            print(f"idle, direct:             {timed_healthz(web_url, options.timeout_s)}")
            hold_s = options.timeout_s + 3
            with slow_clients("127.0.0.1", web_port, options.clients, hold_s):
                time.sleep(0.5)
                print(f"slow clients, direct:     {timed_healthz(web_url, options.timeout_s)}")
            time.sleep(1)
            with (
                running_nginx(config, proxy_url, directory / "nginx.log"),
                slow_clients("127.0.0.1", proxy_port, options.clients, hold_s),
            ):
                time.sleep(0.5)
                print(f"slow clients, via nginx:  {timed_healthz(proxy_url, options.timeout_s)}")
        finally:
            web.terminate()
            web.wait(timeout=30)


if __name__ == "__main__":
    main()
