"""The private servers tests restart: they come back on the same port with what they keep, and
leave nothing behind (no process, no directory) even when the test using them fails."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis

from tests.conftest import require_service
from tests.servers import PrivatePostgres, PrivateRedis, ServerMissing


class Boom(Exception):
    """The failure of a test using the server."""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _private(server):
    try:
        return server()
    except ServerMissing as exc:
        require_service(server.__name__, exc)


def _restart_postgres_then_fail(database, seen):
    with database:
        url = database.create_database("kept")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE t (n int)")
            connection.execute("INSERT INTO t VALUES (42)")
        database.stop()
        seen["accepted_while_stopped"] = database.accepts()
        database.start()
        with psycopg.connect(url) as connection:
            seen["kept"] = connection.execute("SELECT n FROM t").fetchone()
            seen["fsync"] = connection.execute("SHOW fsync").fetchone()
        seen["postmaster"] = int(
            (database.directory / "data/postmaster.pid").read_text().split()[0]
        )
        raise Boom


@pytest.mark.slow
def test_a_private_postgres_restarts_with_its_data_and_vanishes_when_its_test_fails():
    database = _private(PrivatePostgres)
    seen = {}
    with pytest.raises(Boom):
        _restart_postgres_then_fail(database, seen)
    assert seen["accepted_while_stopped"] is False
    assert seen["kept"] == (42,)
    assert seen["fsync"] == ("on",)
    assert not _running(seen["postmaster"])
    assert not database.directory.exists()


def _restart_redis_then_fail(server, seen):
    with server:
        client = redis.Redis.from_url(server.url())
        client.set("queued", "1")
        server.restart()
        seen["queued"] = client.get("queued")
        seen["pid"] = server.pid
        raise Boom


@pytest.mark.slow
def test_a_private_redis_restarts_empty_on_its_port_and_vanishes_when_its_test_fails():
    server = _private(PrivateRedis)
    seen = {}
    with pytest.raises(Boom):
        _restart_redis_then_fail(server, seen)
    assert seen["queued"] is None  # nothing kept on disk: a restart loses what was queued
    assert not _running(seen["pid"])
    assert not server.directory.exists()
