"""Fixtures shared by every test: real services that skip locally but fail in CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import make_engine, make_session_factory
from ledger.local_names import default_test_broker_url, default_test_database_url
from ledger.migrate import upgrade

# This tree's own names unless the environment gives them (ledger/local_names.py).
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or default_test_database_url()
# A database index of its own, so tests never feed the workers of a running `make run`.
TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL") or default_test_broker_url()
# workers.broker binds its broker when first imported, by whichever test module imports it
# first: make that the test broker too, never BROKER_URL of the shell that runs the tests.
os.environ["BROKER_URL"] = TEST_BROKER_URL


def require_service(name: str, error: Exception) -> None:
    """Skip a test whose service is absent, unless in CI, where absence is a failure."""
    message = f"{name} is not reachable ({error}); `make services` starts the local one"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


class Databases:
    """Creates throwaway databases as copies of one migrated template."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = _libpq(url, "postgres")
        self.template = f"{make_url(url).database}_template"

    def _execute(self, sql: str) -> None:
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=3) as connection:
            connection.execute(sql)

    def prepare_template(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.template}"')
        engine = make_engine(_libpq(self.url, self.template))
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    def create(self, name: str) -> str:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return _libpq(self.url, name)

    def drop(self, name: str) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def databases() -> Databases:
    dbs = Databases(TEST_DATABASE_URL)
    try:
        with psycopg.connect(dbs.admin, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        require_service("PostgreSQL", exc)
    dbs.prepare_template()
    return dbs


@pytest.fixture(scope="session")
def database_url(databases: Databases) -> str:
    """A freshly migrated database shared by the session's tests (each makes its own wallets)."""
    name = make_url(TEST_DATABASE_URL).database
    assert name
    return databases.create(name)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def fresh_database_url(databases: Databases) -> Iterator[str]:
    """A migrated database of the test's own, for tests that tamper with or count everything."""
    name = f"{make_url(TEST_DATABASE_URL).database}_{uuid.uuid4().hex[:8]}"
    url = databases.create(name)
    yield url
    databases.drop(name)


def empty_test_redis() -> str:
    """The test Redis's URL, once it is reachable and emptied."""
    client = redis.Redis.from_url(TEST_BROKER_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        require_service("Redis", exc)
    finally:
        client.close()
    return TEST_BROKER_URL


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The test Redis (emptied at the start of the session)."""
    return empty_test_redis()


@pytest.fixture
def redis_client(broker_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    yield client
    client.close()
