"""CPU per notification delivered and per usage record billed, before and after batching.

For each code version (`--before`, a git ref exported to a temporary tree, and this working
tree) and each path, a real Dramatiq worker (`--processes 1 --threads N`) drains a backlog
seeded in a database of its own: outbox events delivered to one local webhook subscriber, or
pending usage records billed. The old code gets one message per row, as its relay and
announce sent them; the new code one doorbell for the backlog. CPU is utime + stime from
/proc, summed per process kind: the Dramatiq processes, and the PostgreSQL backends serving
them (found by application name). Statements and transactions per row come from a second,
in-process pass that counts what SQLAlchemy sends and commits (statements a trigger runs
inside one are not counted). Also measured: the cost of a
doorbell that finds nothing due, the price of ringing once per commit when commits are small.

    python bench/batch_paths.py [--before main] [--events 2000] [--records 3000] [--threads 4]

The subscriber (a stdlib HTTP server in its own process) and Redis are not counted: the
subscriber is the world outside, and Redis is shared with other users of the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql://localhost/postgres")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://localhost:6379/10")
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "walletpipe_bench_batch")
HOOK_SECRET = "whsec_YmVuY2gtYmF0Y2gtcGF0aHMtc2VjcmV0"
WALLETS = 100
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Loaded by every Python process of a measured worker (PYTHONPATH), before anything else: the
# package installed in this virtualenv is an editable one pointing here, so the tree under
# test must come first and the editable finder must go.
SHIM = """
import sys
def ours(hook):
    return "__editable__" not in getattr(hook, "__module__", "")
sys.meta_path[:] = [f for f in sys.meta_path if ours(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if ours(h)]
sys.path_importer_cache.clear()
sys.path.insert(0, {tree!r})
"""

SINK = """
import http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops connections that a real subscriber takes
server = Server(("127.0.0.1", 0), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

# What each version calls its jobs: one per row before, a doorbell after.
OLD = {"notifications": "deliver_notification", "billing": "bill_usage"}
NEW = {"notifications": "deliver_notifications", "billing": "bill_usage_records"}


def cpu_s(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> set[int]:
    found, todo = {pid}, [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    if int(child) not in found:
                        found.add(int(child))
                        todo.append(int(child))
    return found


class Database:
    """A migrated database of the bench's own, and the bench's connection to it."""

    def __init__(self, name: str, tree: Path, env: dict[str, str]) -> None:
        self.name = name
        self.url = f"postgresql://localhost/{name}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from ledger.migrate import upgrade; from ledger.db import"
                f" make_engine; upgrade(make_engine({self.url!r}))",
            ],
            env={**env, "DATABASE_URL": self.url},
            check=True,
            cwd=tree,
        )
        self.connection = psycopg.connect(
            self.url, autocommit=True, application_name="walletpipe-bench"
        )

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def backends(self) -> set[int]:
        rows = self.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (self.name, "walletpipe"),
        )
        return {pid for (pid,) in rows}

    def drop(self) -> None:
        self.connection.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def seed_wallets(db: Database) -> list[uuid.UUID]:
    wallets = [uuid.uuid4() for _ in range(WALLETS)]
    db.execute(
        "INSERT INTO accounts (id, kind, owner_id, currency)"
        " SELECT w, 'wallet', 'bench-' || w::text, 'ZAR' FROM unnest(%s::uuid[]) AS w",
        (wallets,),
    )
    # Funded, as most wallets are: no charge of the bench takes one into debt.
    funding = uuid.uuid4()
    db.execute(
        "INSERT INTO accounts (id, kind, code, currency)"
        " VALUES (%s, 'system', 'adjustments', 'ZAR') ON CONFLICT DO NOTHING",
        (funding,),
    )
    db.execute(
        "INSERT INTO transfers (idempotency_key, kind, category, debit_account_id,"
        " credit_account_id, amount_minor, currency)"
        " SELECT 'bench-funding:' || w::text, 'posted', 'adjustment', a.id, w, 1000000000, 'ZAR'"
        " FROM unnest(%s::uuid[]) AS w,"
        " (SELECT id FROM accounts WHERE code = 'adjustments' AND currency = 'ZAR') AS a",
        (wallets,),
    )
    return wallets


def seed_events(db: Database, wallets: list[uuid.UUID], count: int) -> None:
    db.execute(
        "INSERT INTO outbox_events (event_type, key, wallet_id, payload)"
        " SELECT 'wallet.credited', 'bench:' || n || ':' || gen_random_uuid(),"
        "        (%s::uuid[])[1 + n %% %s],"
        "        jsonb_build_object('amount_minor', 5000, 'currency', 'ZAR')"
        " FROM generate_series(1, %s) AS n",
        (wallets, len(wallets), count),
    )


def seed_usage(db: Database, wallets: list[uuid.UUID], count: int) -> None:
    db.execute(
        "INSERT INTO usage_records"
        " (wallet_id, id, resource_id, description, amount_minor, currency, occurred_at)"
        " SELECT (%s::uuid[])[1 + n %% %s], 'u-' || n, 'vm-1', 'cpu hour', 7, 'ZAR', now()"
        " FROM generate_series(1, %s) AS n",
        (wallets, len(wallets), count),
    )


def waiting(db: Database, queue: str) -> int:
    if queue == "notifications":
        sql = "SELECT count(*) FROM outbox_events WHERE delivered_at IS NULL AND failed_at IS NULL"
    else:
        sql = "SELECT count(*) FROM usage_records WHERE status = 'pending'"
    [(count,)] = db.execute(sql)
    return int(count)


@dataclass(frozen=True)
class Result:
    version: str
    queue: str
    rows: int
    messages: int
    wall_s: float
    worker_cpu_s: float
    backend_cpu_s: float

    def row(self) -> str:
        per = 1000 / max(self.rows, 1)
        return (
            f"{self.version:<7} {self.queue:<13} {self.rows:>6} {self.messages:>6}"
            f" {self.wall_s:>7.1f} {self.worker_cpu_s * per:>9.3f} {self.backend_cpu_s * per:>9.3f}"
            f" {(self.worker_cpu_s + self.backend_cpu_s) * per:>9.3f}"
        )


@contextlib.contextmanager
def worker(env: dict[str, str], queue: str, threads: int, tree: Path) -> Iterator[int]:
    command = [
        str(BIN / "dramatiq"),
        "workers.actors",
        "--processes",
        "1",
        "--threads",
        str(threads),
        "--queues",
        queue,
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, cwd=tree, stdout=log, stderr=log)
        try:
            yield process.pid
        finally:
            _stop(process, log)


def _stop(process: subprocess.Popen[bytes], log: Any) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.returncode not in (0, -signal.SIGTERM):
        log.seek(0)
        sys.stderr.write(log.read()[-3000:].decode("utf-8", "replace"))


def enqueue(broker: RedisBroker, queue: str, actor: str, args_list: list[tuple[Any, ...]]) -> None:
    for args in args_list:
        broker.enqueue(
            Message(queue_name=queue, actor_name=actor, args=args, kwargs={}, options={})
        )


def queue_empty(client: redis.Redis, queue: str) -> bool:
    return not client.llen(f"dramatiq:{queue}") and not client.hlen(f"dramatiq:{queue}.msgs")


def drain(
    version: str,
    tree: Path,
    env: dict[str, str],
    queue: str,
    rows: int,
    threads: int,
    doorbells_only: int = 0,
) -> Result:
    """Seed `rows` waiting rows, hand them to a warm worker the way this version does, and
    measure until none waits. With `doorbells_only`, seed nothing and ring that many times."""
    db = Database(f"{DB_PREFIX}_{version}_{queue}", tree, env)
    broker = RedisBroker(url=BROKER_URL, middleware=[])
    client = redis.Redis.from_url(BROKER_URL)
    client.delete(f"dramatiq:{queue}", f"dramatiq:{queue}.msgs")
    names = OLD if version == "before" else NEW
    wallets = seed_wallets(db)
    worker_env = {**env, "DATABASE_URL": db.url}
    try:
        with worker(worker_env, queue, threads, tree) as pid:
            # Warm up: every thread opens its connection on a message that finds nothing.
            warm_args = [(str(uuid.uuid4()), "none")] if queue == "billing" else [(-1,)]
            enqueue(
                broker,
                queue,
                names[queue],
                [() if version == "after" else warm_args[0]] * (threads * 4),
            )
            deadline = time.monotonic() + 60
            while not queue_empty(client, queue) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            processes = descendants(pid)
            backends = db.backends()
            worker_before = sum(cpu_s(p) for p in processes)
            backend_before = {p: cpu_s(p) for p in backends}
            started = time.monotonic()
            if doorbells_only:
                enqueue(broker, queue, names[queue], [()] * doorbells_only)
                messages = doorbells_only
            elif queue == "notifications":
                seed_events(db, wallets, rows)
                if version == "before":
                    ids = [(i,) for (i,) in db.execute("SELECT id FROM outbox_events ORDER BY id")]
                    enqueue(broker, queue, names[queue], ids)
                    messages = len(ids)
                else:
                    enqueue(broker, queue, names[queue], [()])
                    messages = 1
            else:
                seed_usage(db, wallets, rows)
                if version == "before":
                    keys = [
                        (str(w), i)
                        for w, i in db.execute(
                            "SELECT wallet_id, id FROM usage_records ORDER BY created_at"
                        )
                    ]
                    enqueue(broker, queue, names[queue], keys)
                    messages = len(keys)
                else:
                    enqueue(broker, queue, names[queue], [()])
                    messages = 1
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                if (doorbells_only and queue_empty(client, queue)) or (
                    not doorbells_only and waiting(db, queue) == 0 and queue_empty(client, queue)
                ):
                    break
                time.sleep(0.2)
            wall_s = time.monotonic() - started
            processes |= descendants(pid)
            worker_cpu = sum(cpu_s(p) for p in processes) - worker_before
            backend_cpu = sum(cpu_s(p) - backend_before.get(p, 0.0) for p in db.backends())
            left = 0 if doorbells_only else waiting(db, queue)
            if left:
                raise SystemExit(f"{version} {queue}: {left} rows still waiting after 900 s")
        return Result(
            version,
            queue if not doorbells_only else "empty-bell",
            rows or doorbells_only,
            messages,
            wall_s,
            worker_cpu,
            backend_cpu,
        )
    finally:
        db.drop()
        client.close()
        broker.close()


COUNT = """
import json, os, sys, uuid
from sqlalchemy import event
from workers import actors, process
engine = process.sessions().kw["bind"]
counts = {"statements": 0, "commits": 0}
def statement(*args): counts["statements"] += 1
def commit(*args): counts["commits"] += 1
event.listen(engine, "before_cursor_execute", statement)
event.listen(engine, "commit", commit)
queue, version, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
with engine.connect() as c:
    if queue == "notifications":
        ids = [i for (i,) in c.exec_driver_sql("SELECT id FROM outbox_events ORDER BY id")]
    else:
        keys = [tuple(r) for r in c.exec_driver_sql("SELECT wallet_id, id FROM usage_records")]
counts["statements"] = counts["commits"] = 0
if version == "before" and queue == "notifications":
    for i in ids: actors.deliver_notification(i)
elif version == "before":
    for w, i in keys: actors.bill_usage(str(w), i)
elif queue == "notifications":
    actors.deliver_notifications()
else:
    actors.bill_usage_records()
print(json.dumps(counts))
"""


def count_statements(
    version: str, tree: Path, env: dict[str, str], queue: str, rows: int
) -> dict[str, int]:
    """Statements and commits the worker's session sends for `rows` rows, called in-process."""
    db = Database(f"{DB_PREFIX}_{version}_{queue}_count", tree, env)
    try:
        wallets = seed_wallets(db)
        (seed_events if queue == "notifications" else seed_usage)(db, wallets, rows)
        out = subprocess.run(
            [sys.executable, "-c", COUNT, queue, version, str(rows)],
            env={**env, "DATABASE_URL": db.url, "BROKER_URL": BROKER_URL},
            cwd=tree,
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default="main", help="git ref of the code before batching")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--empty-doorbells", type=int, default=500)
    parser.add_argument("--count-rows", type=int, default=200)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="walletpipe-bench-"))
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    try:
        port = int(sink.stdout.readline())  # type: ignore[union-attr]
        before = work / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", options.before], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        trees = {"before": before, "after": ROOT}
        shims = {}
        for version, tree in trees.items():
            shims[version] = work / f"shim-{version}"
            shims[version].mkdir()
            (shims[version] / "sitecustomize.py").write_text(SHIM.format(tree=str(tree)))
        base_env = {
            **os.environ,
            "BROKER_URL": BROKER_URL,
            "NOTIFY_CHANNELS": "webhooks",
            "NOTIFY_WEBHOOK_URLS": f"http://127.0.0.1:{port}/hook",
            "NOTIFY_WEBHOOK_SECRET": HOOK_SECRET,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            "DATABASE_POOL_SIZE": str(options.threads + 1),
        }
        print(
            f"# {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()},"
            f" before = {options.before}, {options.threads} worker threads, 1 process"
        )
        print(
            "version path            rows   msgs  wall_s worker_ms    pg_ms  total_ms"
            "  (CPU ms per row)"
        )
        results = []
        for queue, rows in (("notifications", options.events), ("billing", options.records)):
            for version in ("before", "after"):
                env = {**base_env, "PYTHONPATH": str(shims[version])}
                result = drain(version, trees[version], env, queue, rows, options.threads)
                results.append(result)
                print(result.row(), flush=True)
        env = {**base_env, "PYTHONPATH": str(shims["after"])}
        for queue in ("notifications", "billing"):
            bells = drain(
                "after",
                ROOT,
                env,
                queue,
                0,
                options.threads,
                doorbells_only=options.empty_doorbells,
            )
            print(bells.row().replace("after  ", "after  ", 1), f"({queue})", flush=True)
        print("# statements and commits per row, in-process, from SQLAlchemy's side:")
        for queue in ("notifications", "billing"):
            for version in ("before", "after"):
                env = {**base_env, "PYTHONPATH": str(shims[version])}
                counts = count_statements(version, trees[version], env, queue, options.count_rows)
                per_row = {k: v / options.count_rows for k, v in counts.items()}
                print(
                    f"{version:<7} {queue:<13} statements/row {per_row['statements']:.3f}"
                    f"  transactions/row {per_row['commits']:.3f}",
                    flush=True,
                )
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
