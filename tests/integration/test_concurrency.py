"""Races: many debits on one wallet, and one idempotency key sent many times at once."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from ledger.account import system_account_id
from ledger.db import make_engine, make_session_factory
from ledger.errors import InsufficientFunds
from ledger.models import Category, SystemAccount, Transfer
from ledger.transfer import TransferRequest, transfer
from ledger.verify import verify

PRICE_MINOR = 700
ATTEMPTS = 50
AFFORDABLE = 30


def _debit(sessions, wallet_id: uuid.UUID, key: str) -> str:
    try:
        with sessions.begin() as session:
            revenue = system_account_id(session, SystemAccount.REVENUE, "ZAR")
            transfer(
                session,
                TransferRequest(
                    key, wallet_id, revenue, PRICE_MINOR, "ZAR", Category.ORDER_PAYMENT
                ),
            )
        return "paid"
    except InsufficientFunds:
        return "refused"


def _debits_in_child(
    database_url: str, wallet_id: uuid.UUID, keys: list[str], start_at: float
) -> list[str]:
    """Runs in a separate process with its own engine, as a second worker machine would."""
    engine = make_engine(database_url, pool_size=4)
    sessions = make_session_factory(engine)
    time.sleep(max(0.0, start_at - time.time()))
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda key: _debit(sessions, wallet_id, key), keys))
    engine.dispose()
    return outcomes


def assert_ledger_sound(sessions):
    with sessions() as session, session.begin():
        assert verify(session) == []


def test_racing_threads_spend_exactly_what_the_wallet_holds(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=PRICE_MINOR * AFFORDABLE)
    threads = 10
    barrier = threading.Barrier(threads)

    def spender(keys):
        barrier.wait()
        return [_debit(sessions, wallet, key) for key in keys]

    keys = [f"race:{uuid.uuid4()}" for _ in range(ATTEMPTS)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        chunks = pool.map(spender, [keys[i::threads] for i in range(threads)])
        outcomes = [outcome for chunk in chunks for outcome in chunk]
    assert outcomes.count("paid") == AFFORDABLE
    assert outcomes.count("refused") == ATTEMPTS - AFFORDABLE
    assert balance_of(wallet).balance_minor == 0
    assert_ledger_sound(sessions)


@pytest.mark.slow
def test_racing_processes_spend_exactly_what_the_wallet_holds(
    database_url, sessions, make_wallet, balance_of
):
    wallet = make_wallet(funded_minor=PRICE_MINOR * AFFORDABLE)
    processes = 5
    keys = [f"race:{uuid.uuid4()}" for _ in range(ATTEMPTS)]
    start_at = time.time() + 2.0  # every process connected and waiting before the race
    with ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        futures = [
            pool.submit(_debits_in_child, database_url, wallet, keys[i::processes], start_at)
            for i in range(processes)
        ]
        outcomes = [outcome for future in futures for outcome in future.result()]
    assert outcomes.count("paid") == AFFORDABLE
    assert outcomes.count("refused") == ATTEMPTS - AFFORDABLE
    assert balance_of(wallet).balance_minor == 0
    assert_ledger_sound(sessions)


def test_one_key_sent_concurrently_yields_one_transfer(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=10_000)
    key = f"order:{uuid.uuid4()}"
    barrier = threading.Barrier(16)

    def send(_):
        barrier.wait()
        with sessions.begin() as session:
            revenue = system_account_id(session, SystemAccount.REVENUE, "ZAR")
            applied = transfer(
                session,
                TransferRequest(key, wallet, revenue, 300, "ZAR", Category.ORDER_PAYMENT),
            )
            return applied.transfer.id, applied.replayed

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, range(16)))
    assert len({transfer_id for transfer_id, _ in results}) == 1
    assert [replayed for _, replayed in results].count(False) == 1
    with sessions() as session:
        count = session.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.idempotency_key == key)
        )
    assert count == 1
    assert balance_of(wallet).balance_minor == 9_700
