"""Lost webhooks found and repaired: gunicorn and a Dramatiq worker as the Procfile starts
them, some of Stripe's webhooks never sent, the month's balance change report reconciled with
`walletctl reconcile --apply`, a late webhook arriving after it; every wallet ends right and
`walletctl verify` finds nothing wrong."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import psycopg
import pytest

from .conftest import (
    BIN,
    Web,
    api_call,
    process_env,
    start,
    start_web,
    stop,
    worker_command,
)

HEADER = (
    "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,source_id,"
    "charge_id,payment_intent_id,payment_metadata[topup_id]"
)


@pytest.fixture
def pipeline(fresh_database_url, broker_url, tmp_path):
    env = process_env(fresh_database_url, broker_url, WEB_CONCURRENCY="1")
    subprocess.run([str(BIN / "walletctl"), "db", "upgrade"], env=env, check=True, timeout=120)
    web, url = start_web(env, tmp_path / "gunicorn.log")
    worker = start(worker_command(), env, tmp_path / "worker.log")
    yield url, env
    assert [stop(worker), stop(web)] == [0, 0]


def walletctl(env, *args):
    return subprocess.run(
        [str(BIN / "walletctl"), *args], env=env, capture_output=True, text=True, timeout=120
    )


def call(url, env, method, path, body=None):
    status, answer = api_call(Web(url, env), method, path, body)
    assert status < 300, answer
    return answer


def send(url, env, *, kind, topup, amount_minor, payment_id):
    sent = walletctl(
        env,
        "--json",
        "webhook",
        "send",
        "stripe",
        "--kind",
        kind,
        "--amount-minor",
        str(amount_minor),
        "--currency",
        "ZAR",
        "--reference",
        topup,
        "--payment-id",
        payment_id,
        "--url",
        f"{url}/webhooks/stripe",
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["status"] == 200


def settled_rows(database_url, payment_id, timeout_s=60):
    """The statuses of the payment's inbox rows (the report's and the late webhook's), once
    the worker has applied both."""
    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(database_url) as connection:
            statuses = sorted(
                status
                for (status,) in connection.execute(
                    "SELECT status FROM inbox_events WHERE payment_id = %s", (payment_id,)
                )
            )
        if statuses == ["applied", "applied"] or time.monotonic() > deadline:
            return statuses
        time.sleep(0.2)


def balances_become(url, env, expected, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while True:
        seen = {w: call(url, env, "GET", f"/wallets/{w}")["balance_minor"] for w in expected}
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


@pytest.mark.slow
def test_lost_webhooks_are_repaired_by_reconciliation_once(pipeline, tmp_path):
    url, env = pipeline
    amounts = [1500, 2500, 3500, 4500]
    wallets, topups, payments = [], [], []
    for amount in amounts:
        wallet = call(
            url, env, "POST", "/wallets", {"owner_id": f"recon-{uuid.uuid4()}", "currency": "ZAR"}
        )["id"]
        topup = call(
            url,
            env,
            "POST",
            "/topups",
            {"wallet_id": wallet, "amount_minor": amount, "gateway": "stripe"},
        )["id"]
        wallets.append(wallet)
        topups.append(topup)
        payments.append(f"pi_{uuid.uuid4().hex[:24]}")
    # Two captures arrive; two are lost, and so is the refund of the first.
    for index in (0, 1):
        send(
            url,
            env,
            kind="payment_succeeded",
            topup=topups[index],
            amount_minor=amounts[index],
            payment_id=payments[index],
        )
    assert balances_become(url, env, {wallets[0]: 1500, wallets[1]: 2500}) == {
        wallets[0]: 1500,
        wallets[1]: 2500,
    }
    rows = [HEADER]
    for index, amount in enumerate(amounts):
        rows.append(
            f"txn_{index},2026-11-23 10:00:0{index},zar,{amount / 100:.2f},0.50,"
            f"{amount / 100 - 0.5:.2f},charge,ch_{index},ch_{index},{payments[index]},"
            f"{topups[index]}"
        )
    rows.append(
        f"txn_r,2026-11-23 11:00:00,zar,-5.00,0.00,-5.00,refund,re_{uuid.uuid4().hex[:20]},"
        f"ch_0,{payments[0]},{topups[0]}"
    )
    report = tmp_path / "balance_change_from_activity.itemized.csv"
    report.write_text("\n".join(rows) + "\n")

    compared = walletctl(env, "reconcile", "stripe", str(report), "--json")
    applied = walletctl(env, "reconcile", "stripe", str(report), "--apply", "--json")
    again = walletctl(env, "reconcile", "stripe", str(report), "--apply", "--json")
    # The lost webhook of the third capture comes after all.
    send(
        url,
        env,
        kind="payment_succeeded",
        topup=topups[2],
        amount_minor=amounts[2],
        payment_id=payments[2],
    )

    assert compared.returncode == 0, compared.stderr
    found = json.loads(compared.stdout)
    assert sorted(
        e["payment_id"] for e in found["missing_in_ledger"] if e["kind"] == "capture"
    ) == sorted(payments[2:])
    assert found["fees"] == {"ZAR": 200}
    assert sorted(r["outcome"] for r in json.loads(applied.stdout)["repairs"]) == ["applied"] * 3
    assert json.loads(again.stdout)["repairs"] == []
    expected = {wallets[0]: 1000, wallets[1]: 2500, wallets[2]: 3500, wallets[3]: 4500}
    assert settled_rows(env["DATABASE_URL"], payments[2]) == ["applied", "applied"]
    assert balances_become(url, env, expected) == expected
    verified = walletctl(env, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
