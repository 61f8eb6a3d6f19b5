"""The ledger's settings, read from the environment once per process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "postgresql://localhost/walletpipe"


@dataclass(frozen=True)
class LedgerSettings:
    """Where the ledger's PostgreSQL lives and how many connections a process may hold."""

    database_url: str = DEFAULT_DATABASE_URL
    pool_size: int = 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LedgerSettings:
        """Read DATABASE_URL and DATABASE_POOL_SIZE; raise ValueError naming a bad variable."""
        raw_pool = environ.get("DATABASE_POOL_SIZE", "5")
        try:
            pool_size = int(raw_pool)
        except ValueError:
            raise ValueError(f"DATABASE_POOL_SIZE must be an integer, not {raw_pool!r}") from None
        if not 1 <= pool_size <= 200:
            raise ValueError("DATABASE_POOL_SIZE must be between 1 and 200")
        return cls(
            database_url=environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, pool_size=pool_size
        )
