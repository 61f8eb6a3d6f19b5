"""Helpers for tests against the real ledger database."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable

import dramatiq
import pytest
from sqlalchemy.orm import Session, sessionmaker

from ledger.account import WalletBalance, get_wallet, open_wallet, wallet_balance
from ledger.adjustment import Direction, adjust
from ledger.topup import create_topup

MakeWallet = Callable[..., uuid.UUID]


@pytest.fixture
def make_wallet(sessions: sessionmaker[Session]) -> MakeWallet:
    """Open a wallet for a new owner, funded by an adjustment when `funded_minor` > 0."""

    def make(funded_minor: int = 0, currency: str = "ZAR", overdraft_limit_minor: int = 0):
        with sessions.begin() as session:
            wallet = open_wallet(
                session,
                f"owner-{uuid.uuid4()}",
                currency,
                overdraft_limit_minor=overdraft_limit_minor,
            )
            session.flush()
            if funded_minor:
                adjust(
                    session,
                    wallet_id=wallet.id,
                    direction=Direction.CREDIT,
                    amount_minor=funded_minor,
                    reason="test funding",
                    actor="tests",
                )
            return wallet.id

    return make


@pytest.fixture
def topup(sessions, make_wallet):
    """A pending top-up of a new wallet: (top-up id, wallet id)."""

    def make(amount_minor=5000, gateway="stripe", currency="ZAR"):
        wallet = make_wallet(currency=currency)
        with sessions.begin() as session:
            row = create_topup(
                session, wallet_id=wallet, amount_minor=amount_minor, gateway=gateway
            )
            return row.id, wallet

    return make


@pytest.fixture
def balance_of(sessions: sessionmaker[Session]) -> Callable[[uuid.UUID], WalletBalance]:
    def read(wallet_id: uuid.UUID) -> WalletBalance:
        with sessions() as session:
            return wallet_balance(get_wallet(session, wallet_id))

    return read


@pytest.fixture
def worker(database_url, broker_url, redis_client, monkeypatch):
    """The workers' actors bound to the test Redis, consumed by an in-process worker."""
    monkeypatch.setenv("BROKER_URL", broker_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    importlib.import_module("workers.actors")
    broker = importlib.import_module("workers.broker").broker
    importlib.import_module("workers.process").reset()
    running = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    running.start()
    yield broker
    running.stop()
