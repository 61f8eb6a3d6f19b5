"""A RabbitMQ virtual host of a test run's own on the local server, removed afterwards.

The server is shared, so a run never uses the default `/` vhost: it adds one with a random
name through `rabbitmqctl` (which talks to the local node, as root or the rabbitmq user) and
gives the test user every permission on it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

RABBITMQ_HOST = os.environ.get("TEST_RABBITMQ_HOST", "127.0.0.1")
RABBITMQ_PORT = int(os.environ.get("TEST_RABBITMQ_PORT", "5672"))
RABBITMQ_USER = os.environ.get("TEST_RABBITMQ_USER", "guest")
RABBITMQ_PASSWORD = os.environ.get("TEST_RABBITMQ_PASSWORD", "guest")


class RabbitmqMissing(Exception):
    """The local RabbitMQ cannot be reached or administered."""


def _ctl(*args: str) -> None:
    found = subprocess.run(
        ["rabbitmqctl", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if found.returncode != 0:
        raise RabbitmqMissing(f"rabbitmqctl {' '.join(args)}: {found.stderr.strip()}")


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """An amqp:// URL on a fresh vhost; RabbitmqMissing when the server is absent."""
    if shutil.which("rabbitmqctl") is None:
        raise RabbitmqMissing("rabbitmqctl is not installed")
    try:
        socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=2).close()
    except OSError as exc:
        raise RabbitmqMissing(f"nothing listens on {RABBITMQ_HOST}:{RABBITMQ_PORT}: {exc}") from exc
    vhost = f"walletpipe-test-{uuid.uuid4().hex[:10]}"
    _ctl("add_vhost", vhost)
    try:
        _ctl("set_permissions", "-p", vhost, RABBITMQ_USER, ".*", ".*", ".*")
        yield (
            f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
        )
    finally:
        _ctl("delete_vhost", vhost)
