"""The ledger's settings, read from the environment once per process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ledger.connection import ConnectionTimeouts
from ledger.local_names import default_database_url


@dataclass(frozen=True)
class LedgerSettings:
    """Where the ledger's PostgreSQL lives, how many connections a process may hold, and how
    long a connection may hang on a lost peer (the DATABASE_*_S variables)."""

    database_url: str = field(default_factory=default_database_url)
    pool_size: int = 5
    timeouts: ConnectionTimeouts = field(default_factory=ConnectionTimeouts)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LedgerSettings:
        """Read DATABASE_URL, DATABASE_POOL_SIZE and the timeouts; ValueError names a bad one."""
        raw_pool = environ.get("DATABASE_POOL_SIZE", "5")
        try:
            pool_size = int(raw_pool)
        except ValueError:
            raise ValueError(f"DATABASE_POOL_SIZE must be an integer, not {raw_pool!r}") from None
        if not 1 <= pool_size <= 200:
            raise ValueError("DATABASE_POOL_SIZE must be between 1 and 200")
        default = ConnectionTimeouts()
        timeouts = ConnectionTimeouts(
            connect_s=_int(environ, "DATABASE_CONNECT_TIMEOUT_S", default.connect_s, 1, 600),
            idle_in_transaction_s=_int(
                environ,
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S",
                default.idle_in_transaction_s,
                1,
                3600,
            ),
            client_check_s=_int(
                environ, "DATABASE_CLIENT_CHECK_INTERVAL_S", default.client_check_s, 1, 600
            ),
            keepalives_idle_s=_int(
                environ, "DATABASE_KEEPALIVES_IDLE_S", default.keepalives_idle_s, 1, 3600
            ),
            keepalives_interval_s=_int(
                environ, "DATABASE_KEEPALIVES_INTERVAL_S", default.keepalives_interval_s, 1, 600
            ),
            keepalives_count=_int(
                environ, "DATABASE_KEEPALIVES_COUNT", default.keepalives_count, 1, 100
            ),
            user_timeout_s=_int(
                environ, "DATABASE_TCP_USER_TIMEOUT_S", default.user_timeout_s, 1, 3600
            ),
        )
        return cls(
            database_url=environ.get("DATABASE_URL") or default_database_url(),
            pool_size=pool_size,
            timeouts=timeouts,
        )


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


# A month of a plan (ledger.plan.HOURS_PER_MONTH).
RESERVE_HOURS_DEFAULT = 730


@dataclass(frozen=True)
class BillingSettings:
    """How provisioning decides and how running resources are billed; from the environment.

    reserve_hours: hours of a plan's price an approval holds (PROVISIONING_RESERVE_HOURS);
        by default a month (730 hours): a wallet is admitted only when it covers the plan's
        monthly price, as the original system's examples have it.
    confirm_timeout_s: how long a hold waits for the platform's confirm before it expires.
    grace_s: how long a resource may run on debt before its suspension is requested.
    resume_balance_minor: the balance a top-up must restore before resuming is allowed.
    low_balance_hours: time-to-zero thresholds that send `wallet.low_balance`, once per crossing.
    """

    reserve_hours: int = RESERVE_HOURS_DEFAULT
    confirm_timeout_s: int = 1800
    grace_s: int = 6 * 3600
    resume_balance_minor: int = 0
    low_balance_hours: tuple[int, ...] = (72, 24)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> BillingSettings:
        """Read the PROVISIONING_* and BILLING_* variables; ValueError names a bad one."""
        raw_thresholds = environ.get("BILLING_LOW_BALANCE_HOURS", "72,24")
        try:
            thresholds = tuple(
                sorted(
                    {int(part) for part in raw_thresholds.split(",") if part.strip()}, reverse=True
                )
            )
        except ValueError:
            raise ValueError(
                f"BILLING_LOW_BALANCE_HOURS must be whole hours like 72,24, not {raw_thresholds!r}"
            ) from None
        if any(not 0 < hours <= 24 * 365 for hours in thresholds):
            raise ValueError("BILLING_LOW_BALANCE_HOURS must be between 1 and 8760 hours each")
        return cls(
            reserve_hours=_int(
                environ, "PROVISIONING_RESERVE_HOURS", RESERVE_HOURS_DEFAULT, 1, 24 * 366
            ),
            confirm_timeout_s=_int(environ, "PROVISIONING_CONFIRM_TIMEOUT_S", 1800, 10, 7 * 86400),
            grace_s=_int(environ, "BILLING_GRACE_S", 6 * 3600, 0, 30 * 86400),
            resume_balance_minor=_int(environ, "BILLING_RESUME_BALANCE_MINOR", 0, 0, 10**15),
            low_balance_hours=thresholds,
        )
