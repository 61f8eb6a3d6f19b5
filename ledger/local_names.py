"""Default names of the local databases and Redis indexes, distinct for each source tree.

Two checkouts of walletpipe on one machine share its PostgreSQL and Redis. With one fixed
database name and Redis index they would migrate, flush and feed each other's data, so when
DATABASE_URL, TEST_DATABASE_URL, BROKER_URL or TEST_BROKER_URL is not set, the names are
derived from a short hash of the directory that holds this source tree. An explicit variable
always wins; production sets all of them.

Redis has 16 databases (0-15) unless configured otherwise. Index 0 is every client's default,
so it is left to others; each tree takes one of seven pairs (1, 2), (3, 4) ... (13, 14), the
first for `make run`, the second for the tests, which flush theirs. Seven pairs means two
trees share a pair one time in seven, so scripts/services.py marks a default pair with the
tree that uses it and stops, naming the variables to set, when another tree's mark is there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REDIS_PAIRS = 7


def source_root() -> Path:
    """The directory that holds the `ledger` package: the checkout, for an editable install."""
    return Path(__file__).resolve().parent.parent


def tree_hash(root: Path | None = None) -> str:
    """Eight hex digits that tell one source tree from another on the same machine."""
    path = str(root or source_root())
    return hashlib.sha256(path.encode()).hexdigest()[:8]


def database_name(root: Path | None = None) -> str:
    return f"walletpipe_{tree_hash(root)[:6]}"


def redis_index(root: Path | None = None) -> int:
    """The Redis index of `make run`; the tests use the next one."""
    return 1 + 2 * (int(tree_hash(root), 16) % REDIS_PAIRS)


def default_database_url() -> str:
    return f"postgresql://localhost/{database_name()}"


def default_test_database_url() -> str:
    return f"postgresql://localhost/{database_name()}_test"


def default_broker_url() -> str:
    return f"redis://localhost:6379/{redis_index()}"


def default_test_broker_url() -> str:
    return f"redis://localhost:6379/{redis_index() + 1}"
