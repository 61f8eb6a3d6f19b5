"""Webhook receiver throughput and latency against a hello-world Flask app, in one run.

Both run under gunicorn with the production config (webhook_receiver.gunicorn_conf); wrk on
the same machine sends validly signed Stripe events, each once. The receiver verifies each,
commits it to the inbox and enqueues its job in Redis; the baseline only answers. Then the
receiver runs again at about half its maximum rate to read its latency there.

    python bench/receiver.py [--seconds 10] [--connections 16]

Needs wrk (Debian: apt-get install wrk). Prints requests/s, p50/p99 and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from sqlalchemy.engine import make_url

from ledger.db import make_engine
from ledger.migrate import upgrade

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SECRET = "whsec_bench_receiver"
BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://localhost/walletpipe_bench_receiver"
)
BENCH_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://localhost:6379/13")
WRK_THREADS = 2


@dataclass(frozen=True)
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    ok: int
    failed: int


def prepare_database(url: str) -> None:
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        db.execute(f'CREATE DATABASE "{parsed.database}"')
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def signed_events(path: Path, count: int) -> None:
    """Write `count` Stripe payment events, each signed now, one per line."""
    now = int(time.time())
    with path.open("w") as out:
        for _ in range(count):
            body = json.dumps(
                {
                    "id": f"evt_{uuid.uuid4().hex}",
                    "object": "event",
                    "type": "payment_intent.succeeded",
                    "created": now,
                    "data": {
                        "object": {
                            "id": f"pi_{uuid.uuid4().hex[:24]}",
                            "object": "payment_intent",
                            "amount": 5000,
                            "amount_received": 5000,
                            "currency": "zar",
                            "metadata": {"topup_id": str(uuid.uuid4())},
                        }
                    },
                },
                separators=(",", ":"),
            )
            mac = hmac.new(SECRET.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
            out.write(f"t={now},v1={mac}\t{body}\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gunicorn(app: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "python:webhook_receiver.gunicorn_conf", app],
        env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 (local)
                return process, url
        except urllib.error.HTTPError:
            return process, url  # the baseline has no /healthz: it is up if it answers 404
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {log.read_text()}") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def wrk(url: str, events: Path, connections: int, seconds: float, pace_ms: int = 0) -> Load:
    done = subprocess.run(
        [
            "wrk",
            "-t",
            str(WRK_THREADS),
            "-c",
            str(connections),
            "-d",
            f"{int(seconds)}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(HERE / "receiver.lua"),
            f"{url}/webhooks/stripe",
            "--",
            str(events),
            str(WRK_THREADS),
            str(pace_ms),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout

    def millis(label: str) -> float:
        found = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert found, out
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    failed = (int(non_2xx.group(1)) if non_2xx else 0) + errors
    return Load(
        rate=(total - failed) / seconds,
        p50_ms=millis("50%"),
        p99_ms=millis("99%"),
        ok=total - failed,
        failed=failed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--events", type=int, default=120_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    prepare_database(BENCH_DATABASE_URL)
    queue = redis.Redis.from_url(BENCH_BROKER_URL)
    queue.flushdb()
    env = {
        **os.environ,
        "DATABASE_URL": BENCH_DATABASE_URL,
        "BROKER_URL": BENCH_BROKER_URL,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "PYTHONPATH": str(HERE),
    }
    workers = env.get("WEB_CONCURRENCY", os.cpu_count() or 1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()};"
        f" gunicorn {workers} workers x {env.get('WEB_THREADS', 8)}"
        f" threads; wrk {WRK_THREADS} threads, {args.connections} connections,"
        f" {args.seconds:g} s per run"
    )
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        events = work / "events.tsv"
        signed_events(events, args.events)

        receiver, url = start_gunicorn("webhook_receiver:create_app()", env, work / "web.log")
        try:
            most = wrk(url, events, args.connections, args.seconds)
            signed_events(events, args.events)  # fresh ids: the paced run must not repeat
            # Each connection waits between requests so that all of them together offer
            # about half the maximum rate.
            pace_ms = max(1, round(args.connections * 1000 / (most.rate / 2) - most.p50_ms))
            half = wrk(url, events, args.connections, args.seconds, pace_ms)
        finally:
            stop(receiver)
        with psycopg.connect(
            make_url(BENCH_DATABASE_URL).set(drivername="postgresql").render_as_string(False)
        ) as db:
            stored = db.execute("SELECT count(*) FROM inbox_events").fetchone()
        queued = queue.hlen("dramatiq:ledger.msgs")

        hello, hello_url = start_gunicorn("hello_app:create_app()", env, work / "hello.log")
        try:
            baseline = wrk(hello_url, events, args.connections, args.seconds)
        finally:
            stop(hello)
    queue.flushdb()

    for name, load in (
        ("receiver, max", most),
        ("receiver, ~half", half),
        ("hello world, max", baseline),
    ):
        print(
            f"{name:18s} {load.rate:8.0f} req/s  p50 {load.p50_ms:6.2f} ms"
            f"  p99 {load.p99_ms:6.2f} ms  ok {load.ok}  failed {load.failed}"
        )
    print(f"stored in the inbox: {stored[0] if stored else 0}, jobs queued: {queued}")
    print(f"ratio receiver/hello world: {most.rate / baseline.rate:.2f}")


if __name__ == "__main__":
    main()
