"""The runbook's backup and restore (docs/operations.md): a pg_dump of a live ledger, restored
whole into an empty database, gives the same balances and a ledger that verifies; restoring
the data alone into a migrated database is refused rather than applying transfers twice."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url

from ledger.account import get_wallet, open_wallet, system_account_id, wallet_balance
from ledger.adjustment import Direction, adjust
from ledger.db import make_engine, make_session_factory
from ledger.models import Category, SystemAccount
from ledger.transfer import TransferRequest, transfer
from ledger.verify import verify
from tests.conftest import require_service


@pytest.fixture
def tools():
    found = {name: shutil.which(name) for name in ("pg_dump", "pg_restore")}
    if not all(found.values()):
        require_service("pg_dump and pg_restore", FileNotFoundError("not on PATH"))
    return found


def fill(url: str) -> dict[uuid.UUID, tuple[int, int, int]]:
    """Two wallets with credits, a debit and an open hold; their (balance, available, held)."""
    engine = make_engine(url)
    try:
        with make_session_factory(engine).begin() as session:
            wallets = [open_wallet(session, f"owner-{n}", "ZAR") for n in range(2)]
            session.flush()
            for n, wallet in enumerate(wallets):
                for direction, amount in ((Direction.CREDIT, 5000 + n), (Direction.DEBIT, 120)):
                    adjust(
                        session,
                        wallet_id=wallet.id,
                        direction=direction,
                        amount_minor=amount,
                        reason="backup scenario",
                        actor="tests",
                    )
            transfer(
                session,
                TransferRequest(
                    idempotency_key=f"hold-{uuid.uuid4()}",
                    debit_account_id=wallets[0].id,
                    credit_account_id=system_account_id(session, SystemAccount.HOLDS, "ZAR"),
                    amount_minor=700,
                    currency="ZAR",
                    category=Category.HOLD,
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                ),
            )
        return balances(url, [wallet.id for wallet in wallets])
    finally:
        engine.dispose()


def balances(url: str, wallet_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int, int]]:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            assert verify(session) == []
            found = {}
            for wallet_id in wallet_ids:
                shown = wallet_balance(get_wallet(session, wallet_id))
                found[wallet_id] = (shown.balance_minor, shown.available_minor, shown.held_minor)
            return found
    finally:
        engine.dispose()


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_a_dump_restored_whole_gives_the_same_verified_ledger(
    tools, databases, fresh_database_url, tmp_path
):
    before = fill(fresh_database_url)
    assert sorted(before.values()) == [(4880, 4180, 700), (4881, 4881, 0)]
    dump = tmp_path / "walletpipe.dump"
    dumped = run(tools["pg_dump"], "--format=custom", f"--file={dump}", fresh_database_url)
    assert dumped.returncode == 0, dumped.stderr

    name = f"{make_url(fresh_database_url).database}_restored"
    databases.drop(name)
    admin_url = make_url(databases.admin)
    restored_url = admin_url.set(database=name).render_as_string(hide_password=False)
    created = run("createdb", *_connection_flags(admin_url), name)
    assert created.returncode == 0, created.stderr
    try:
        restored = run(
            tools["pg_restore"],
            f"--dbname={restored_url}",
            "--no-owner",
            "--exit-on-error",
            str(dump),
        )
        assert restored.returncode == 0, restored.stderr
        assert balances(restored_url, list(before)) == before
    finally:
        databases.drop(name)


def test_restoring_the_data_alone_into_a_migrated_database_is_refused(
    tools, databases, fresh_database_url, tmp_path
):
    fill(fresh_database_url)
    dump = tmp_path / "data.dump"
    dumped = run(
        tools["pg_dump"], "--format=custom", "--data-only", f"--file={dump}", fresh_database_url
    )
    assert dumped.returncode == 0, dumped.stderr
    name = f"{make_url(fresh_database_url).database}_dataonly"
    target = databases.create(name)  # migrated, empty
    try:
        restored = run(tools["pg_restore"], f"--dbname={target}", "--exit-on-error", str(dump))
        assert restored.returncode != 0
        assert 'COPY failed for table "accounts"' in restored.stderr
        assert "an account's owner, currency, overdraft limit and total" in restored.stderr
    finally:
        databases.drop(name)


def _connection_flags(url) -> list[str]:
    flags = []
    for flag, value in (("-h", url.host), ("-p", url.port), ("-U", url.username)):
        if value:
            flags += [flag, str(value)]
    return flags
