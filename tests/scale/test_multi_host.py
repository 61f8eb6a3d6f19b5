"""Many hosts, one of them lost: the web, two worker hosts and the scheduler each in a network
namespace of their own, reaching a private PostgreSQL and a private Redis over a virtual
network. One worker host is cut off (its link set down) while it holds a wallet's rows mid-
transaction and webhooks keep arriving. Every accepted event is applied, once, within two
minutes of the cut; the server itself ends the lost transaction after the connection's
`idle_in_transaction_session_timeout`, and the relay re-sends what the lost host had taken."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from ledger.account import open_wallet
from ledger.connection import ConnectionTimeouts
from ledger.db import make_engine, make_session_factory
from ledger.migrate import upgrade
from ledger.topup import create_topup
from tests.conftest import require_service
from tests.e2e.conftest import BIN, SECRETS, process_env, scheduler_command, worker_command
from webhook_receiver.gateways import ADAPTERS
from workers.scheduler import INTERVAL_S_DEFAULT, RESEND_AFTER_S_DEFAULT

from .hosts import HostsUnavailable, Network, network, private_postgres, private_redis

logger = logging.getLogger(__name__)

HOSTS = ["web", "worker-a", "worker-b", "scheduler"]
WORKERS = ("worker-a", "worker-b")
WEB_PORT = 8000
EVENTS = 30
# The bound: every accepted event applied within two minutes of the cut.
RECOVERY_S_MAX = 120


@dataclass
class Cluster:
    network: Network
    database_url: str
    database_log: Path
    web_url: str
    env: dict[str, str]


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 (test host)
            return True
    except OSError:
        return False


@pytest.fixture
def cluster(tmp_path):
    with contextlib.ExitStack() as stack:
        try:
            hosts = stack.enter_context(network(HOSTS))
            subnet = f"{hosts.server_address}/24"
            server = stack.enter_context(private_postgres(hosts.server_address, 5432, subnet))
            broker_url = stack.enter_context(private_redis(hosts.server_address, 6379))
        except HostsUnavailable as exc:
            require_service("network namespaces and private servers", exc)
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE walletpipe")
        database_url = server.url.rsplit("/", 1)[0] + "/walletpipe"
        engine = make_engine(database_url, pool_size=1)
        try:
            upgrade(engine)
        finally:
            engine.dispose()

        env = process_env(database_url, broker_url, WEB_CONCURRENCY="2")

        def launch(host: str, argv: list[str], **extra: str) -> subprocess.Popen[bytes]:
            with (tmp_path / f"{host}.log").open("w") as log:
                process = subprocess.Popen(
                    hosts.hosts[host].command(argv),
                    env={**env, **extra},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            stack.callback(_stop_group, process)
            return process

        web = launch(
            "web",
            [
                str(BIN / "gunicorn"),
                "--config",
                "python:webhook_receiver.gunicorn_conf",
                "webhook_receiver:create_app()",
            ],
            HOST="0.0.0.0",  # noqa: S104 (the namespace's one interface)
            PORT=str(WEB_PORT),
        )
        web_url = f"http://{hosts.hosts['web'].address}:{WEB_PORT}"
        deadline = time.monotonic() + 30
        while not _answers(web_url):
            if web.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the web host did not start:\n{(tmp_path / 'web.log').read_text()}")
            time.sleep(0.2)
        for host in WORKERS:
            launch(host, worker_command(processes=1, threads=2))
        # At its default settings: the relay's re-send is part of the bound under test.
        launch("scheduler", scheduler_command())
        # Links up again before the processes stop (this runs first), so that their sockets
        # close instead of lingering, and with them the namespaces.
        for host in hosts.hosts.values():
            stack.callback(host.reconnect)
        yield Cluster(hosts, database_url, server.log, web_url, env)
        for host in HOSTS:
            logger.info("%s log:\n%s", host, (tmp_path / f"{host}.log").read_text()[-3000:])


def new_topups(database_url, count):
    engine = make_engine(database_url, pool_size=1)
    sessions = make_session_factory(engine)
    made = []
    try:
        for index in range(count):
            with sessions.begin() as session:
                wallet = open_wallet(session, f"scale-{uuid.uuid4()}", "ZAR")
                session.flush()
                amount = 1000 + index
                topup = create_topup(
                    session, wallet_id=wallet.id, amount_minor=amount, gateway="stripe"
                )
                made.append((wallet.id, topup.id, amount))
    finally:
        engine.dispose()
    return made


def post_capture(web_url, topup_id, amount_minor, event_id):
    sample = ADAPTERS["stripe"].sample(
        SECRETS["STRIPE_WEBHOOK_SECRET"],
        amount_minor=amount_minor,
        currency="ZAR",
        reference=str(topup_id),
        event_id=event_id,
    )
    request = urllib.request.Request(  # noqa: S310 (the test's web host)
        f"{web_url}/webhooks/stripe",
        data=sample.body,
        headers={**sample.headers, "Content-Type": sample.content_type},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return answer.status


def deliver(web_url, topups):
    """Each capture sent twice, as gateways deliver at least once; every answer must be 200."""
    for _, topup_id, amount in topups:
        event_id = f"evt_{uuid.uuid4().hex}"
        for _ in range(2):
            assert post_capture(web_url, topup_id, amount, event_id) == 200


def balances(database_url, wallets):
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT id, credits_posted - debits_posted FROM accounts WHERE id = ANY(%s)",
            (list(wallets),),
        ).fetchall()
    return dict(rows)


def credits(database_url, wallets):
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT credit_account_id, count(*) FROM transfers"
            " WHERE credit_account_id = ANY(%s) GROUP BY credit_account_id",
            (list(wallets),),
        ).fetchall()
    return dict(rows)


def host_waiting_on_a_lock(cluster, timeout_s):
    """The address of the worker whose transaction waits on a lock the test holds."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(cluster.database_url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT host(client_addr) FROM pg_stat_activity"
                " WHERE application_name = 'walletpipe' AND wait_event_type = 'Lock'"
                " AND datname = current_database() LIMIT 1"
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.2)
    pytest.fail(f"no worker reached the held lock within {timeout_s} s")


def ended_for_idling(log: Path, address: str) -> datetime | None:
    """When the server ended a transaction of `address` for idling, from its log, whose lines
    begin with `%m [%p] %h ` (time, process, client address)."""
    for line in log.read_text().splitlines():
        if f"] {address} " in line and "idle-in-transaction timeout" in line:
            stamp = line.partition(" [")[0]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f %Z").replace(tzinfo=UTC)
    return None


@pytest.mark.scale
def test_a_worker_host_cut_off_mid_transaction_loses_and_doubles_nothing(cluster):
    topups = new_topups(cluster.database_url, EVENTS)
    expected = {wallet: amount for wallet, _, amount in topups}
    trap_wallet = topups[0][0]
    hosts_by_address = {cluster.network.hosts[name].address: name for name in WORKERS}

    # Given a worker mid-transaction on the first wallet: it took the event's rows and waits
    # on the wallet's account row, which the test holds.
    blocker = psycopg.connect(cluster.database_url)
    try:
        blocker.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (trap_wallet,))
        deliver(cluster.web_url, topups[:1])
        lost = cluster.network.hosts[hosts_by_address[host_waiting_on_a_lock(cluster, 30)]]
        deliver(cluster.web_url, topups[1 : EVENTS // 2])
        # When its host is cut off, and the lock it waited on is given to it.
        lost.cut_off()
        cut_at = time.monotonic()
        cut_wall = datetime.now(UTC)
        blocker.rollback()
    finally:
        blocker.close()
    logger.info("Cut off %s (%s).", lost.name, lost.address)
    deliver(cluster.web_url, topups[EVENTS // 2 :])

    # Then every accepted event is applied by the other host within the bound.
    found = {}
    trap_applied_s = None
    while time.monotonic() - cut_at < RECOVERY_S_MAX:
        found = balances(cluster.database_url, expected)
        if trap_applied_s is None and found.get(trap_wallet) == expected[trap_wallet]:
            trap_applied_s = time.monotonic() - cut_at
        if found == expected:
            break
        time.sleep(0.5)
    recovered_s = time.monotonic() - cut_at
    assert found == expected
    assert credits(cluster.database_url, expected) == dict.fromkeys(expected, 1)

    # The server ended the lost transaction itself, after the connection's idle bound, and
    # the wallet it held was applied once that and the relay's re-send had passed.
    timeouts = ConnectionTimeouts()
    ended_at = ended_for_idling(cluster.database_log, lost.address)
    assert ended_at is not None, "the lost worker's transaction was not ended for idling"
    held_s = (ended_at - cut_wall).total_seconds()
    logger.info(
        "Lost transaction ended %.1f s after the cut; its wallet applied after %.1f s; "
        "all %d events after %.1f s.",
        held_s,
        trap_applied_s,
        EVENTS,
        recovered_s,
    )
    assert trap_applied_s is not None
    assert trap_applied_s < timeouts.lost_peer_s + RESEND_AFTER_S_DEFAULT + INTERVAL_S_DEFAULT + 15

    # And when the lost host comes back, what it still held changes nothing.
    lost.reconnect()
    time.sleep(2 * INTERVAL_S_DEFAULT)
    assert balances(cluster.database_url, expected) == expected
    assert credits(cluster.database_url, expected) == dict.fromkeys(expected, 1)
    verified = subprocess.run(
        [str(BIN / "walletctl"), "verify"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout
