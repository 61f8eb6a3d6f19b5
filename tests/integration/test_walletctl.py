"""walletctl on a fresh database: upgrade, create, adjust, show, verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from walletctl.cli import cli


@pytest.fixture
def walletctl(fresh_database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, ["--json", *args], catch_exceptions=False)

    return run


def output(result):
    return json.loads(result.output)


def test_the_operator_flow(walletctl):
    assert walletctl("db", "upgrade").exit_code == 0
    created = walletctl("wallet", "create", "--owner", "acme", "--currency", "ZAR")
    assert created.exit_code == 0, created.output
    wallet = output(created)["id"]

    credit = walletctl(
        "adjust",
        "--wallet",
        wallet,
        "--credit",
        "2000",
        "--reason",
        "goodwill",
        "--idempotency-key",
        "ticket-1",
    )
    assert output(credit)["balance_minor"] == 2000
    replay = walletctl(
        "adjust",
        "--wallet",
        wallet,
        "--credit",
        "2000",
        "--reason",
        "goodwill",
        "--idempotency-key",
        "ticket-1",
    )
    assert output(replay)["replayed"] is True

    debit = walletctl("adjust", "--wallet", wallet, "--debit", "300", "--reason", "correction")
    assert output(debit)["available_minor"] == 1700

    shown = output(walletctl("wallet", "show", wallet))
    assert (shown["balance_minor"], shown["available_minor"], shown["held_minor"]) == (
        1700,
        1700,
        0,
    )
    verified = walletctl("verify")
    assert verified.exit_code == 0
    assert output(verified) == {"ok": True, "breaches": []}


def test_a_debit_beyond_available_fails_clearly(walletctl):
    wallet = output(walletctl("wallet", "create", "--owner", "acme", "--currency", "ZAR"))["id"]
    walletctl("adjust", "--wallet", wallet, "--credit", "250", "--reason", "seed")
    result = walletctl("adjust", "--wallet", wallet, "--debit", "251", "--reason", "oops")
    assert result.exit_code == 1
    assert "cannot cover a debit of 251 minor units" in result.output
    assert "250 minor units of ZAR are available" in result.output
    assert output(walletctl("wallet", "show", wallet))["balance_minor"] == 250


def test_adjustments_are_audited(walletctl, fresh_database_url):
    wallet = output(walletctl("wallet", "create", "--owner", "acme", "--currency", "ZAR"))["id"]
    walletctl(
        "adjust",
        "--wallet",
        wallet,
        "--credit",
        "500",
        "--reason",
        "refund of ticket 9",
        "--actor",
        "ops:alice",
        "--idempotency-key",
        "t9",
    )
    walletctl(
        "adjust",
        "--wallet",
        wallet,
        "--credit",
        "500",
        "--reason",
        "refund of ticket 9",
        "--actor",
        "ops:alice",
        "--idempotency-key",
        "t9",
    )
    with psycopg.connect(fresh_database_url) as connection:
        rows = connection.execute(
            "SELECT actor, action, subject, details->>'reason' FROM audit_log"
        ).fetchall()
    assert rows == [("ops:alice", "wallet.adjust.credit", wallet, "refund of ticket 9")]


def test_verify_catches_a_tampered_total(walletctl, fresh_database_url):
    wallet = output(walletctl("wallet", "create", "--owner", "acme", "--currency", "ZAR"))["id"]
    walletctl("adjust", "--wallet", wallet, "--credit", "500", "--reason", "seed")
    with psycopg.connect(fresh_database_url, autocommit=True) as connection:
        # Only someone who switches the guards off can do this; verify must still see it.
        connection.execute("ALTER TABLE accounts DISABLE TRIGGER USER")
        # The paid part moves with it: a CHECK, which no trigger switch turns off, keeps the
        # split equal to the balance.
        connection.execute(
            "UPDATE accounts SET credits_posted = credits_posted + 1, paid_minor = paid_minor + 1"
            " WHERE id = %s",
            (wallet,),
        )
    result = walletctl("verify")
    assert result.exit_code == 1
    checks = {(b["check"], b["subject"]) for b in output(result)["breaches"]}
    assert ("cached_totals", f"account {wallet}") in checks
    assert ("zero_sum", "currency ZAR") in checks


def test_errors_say_what_to_do(walletctl, monkeypatch):
    missing = walletctl("wallet", "show", str(uuid.uuid4()))
    assert missing.exit_code == 1
    assert "no wallet with id" in missing.output
    both = walletctl("adjust", "--wallet", str(uuid.uuid4()), "--reason", "x")
    assert both.exit_code == 2
    assert "exactly one of --credit N or --debit N" in both.output
    bad_currency = walletctl("wallet", "create", "--owner", "acme", "--currency", "ZZZ")
    assert bad_currency.exit_code == 1
    assert "ISO 4217" in bad_currency.output
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/nowhere")
    down = walletctl("wallet", "show", str(uuid.uuid4()))
    assert down.exit_code == 1
    assert "cannot reach the database" in down.output


def test_a_missing_database_is_called_missing_with_how_to_create_it(databases, monkeypatch):
    name = f"walletpipe_absent_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", databases.admin.rsplit("/", 1)[0] + f"/{name}")
    for command in (["wallet", "show", str(uuid.uuid4())], ["db", "upgrade"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1
        assert f"the database {name} does not exist" in result.output
        assert "createdb -h " in result.output
        assert f" {name}`" in result.output
        assert "walletctl db upgrade" in result.output
        assert "cannot reach" not in result.output


def test_an_unmigrated_database_points_to_db_upgrade(databases, monkeypatch):
    name = f"walletpipe_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(databases.admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        monkeypatch.setenv("DATABASE_URL", databases.admin.rsplit("/", 1)[0] + f"/{name}")
        result = CliRunner().invoke(cli, ["wallet", "show", str(uuid.uuid4())])
        assert result.exit_code == 1
        assert "walletctl db upgrade" in result.output
    finally:
        databases.drop(name)


def test_the_installed_console_script_runs(fresh_database_url):
    script = Path(sys.executable).with_name("walletctl")
    env = {**os.environ, "DATABASE_URL": fresh_database_url}
    result = subprocess.run(
        [str(script), "--json", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_verify_finds_transfers_the_guards_would_have_refused(walletctl, fresh_database_url):
    zar = output(walletctl("wallet", "create", "--owner", "a", "--currency", "ZAR"))["id"]
    other = output(walletctl("wallet", "create", "--owner", "b", "--currency", "ZAR"))["id"]
    usd = output(walletctl("wallet", "create", "--owner", "c", "--currency", "USD"))["id"]
    with psycopg.connect(fresh_database_url, autocommit=True) as connection:
        # Only someone who switches the guards off can write these; verify must still see them.
        connection.execute("ALTER TABLE transfers DISABLE TRIGGER USER")
        for key, debit, credit, forced, category in (
            ("mixed", zar, usd, False, "transfer"),
            ("forced-into-wallet", zar, other, True, "usage"),
        ):
            connection.execute(
                "INSERT INTO transfers (idempotency_key, kind, category, debit_account_id,"
                " credit_account_id, amount_minor, currency, forced)"
                " VALUES (%s, 'posted', %s, %s, %s, 10, 'ZAR', %s)",
                (key, category, debit, credit, forced),
            )
    result = walletctl("verify")
    assert result.exit_code == 1
    details = [b["detail"] for b in output(result)["breaches"] if b["check"] == "transfer_allowed"]
    assert any("hold ZAR and USD" in d for d in details)
    assert any("forced, yet it credits a wallet" in d for d in details)


def test_contacts_are_set_shown_and_removed(walletctl):
    assert walletctl("db", "upgrade").exit_code == 0
    result = walletctl("contact", "set", "acme", "--whatsapp", "+27 82 123 4567")
    assert result.exit_code == 0, result.output
    assert output(result) == {"owner_id": "acme", "whatsapp": "+27821234567"}
    assert output(walletctl("contact", "show", "acme"))["whatsapp"] == "+27821234567"
    assert walletctl("contact", "remove", "acme").exit_code == 0
    assert output(walletctl("contact", "show", "acme"))["whatsapp"] is None


def test_a_bad_contact_says_what_to_give(walletctl):
    assert walletctl("db", "upgrade").exit_code == 0
    result = walletctl("contact", "set", "acme", "--whatsapp", "082 123 4567")
    assert result.exit_code == 1
    assert "country code" in result.output
    missing = walletctl("contact", "remove", "nobody")
    assert missing.exit_code == 1
    assert "walletctl contact set" in missing.output


def test_plans_are_listed_and_set(walletctl):
    assert walletctl("db", "upgrade").exit_code == 0
    listed = output(walletctl("plan", "list"))["plans"]
    assert [(p["id"], p["monthly_price_minor"]) for p in listed] == [
        ("small", 15000),
        ("medium", 30000),
        ("large", 60000),
        ("enterprise", 120000),
    ]
    result = walletctl(
        "plan", "set", "gpu", "--name", "GPU", "--vcpus", "16", "--memory-gb", "64",
        "--monthly-price-minor", "499999", "--currency", "ZAR",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert output(result)["monthly_price_minor"] == 499999
    old_spelling = walletctl(
        "plan", "set", "gpu", "--name", "GPU", "--vcpus", "16", "--memory-gb", "64",
        "--monthly-price", "4999.99", "--currency", "ZAR",
    )  # fmt: skip
    assert old_spelling.exit_code == 2
    assert "--monthly-price-minor" in old_spelling.output
    assert output(walletctl("plan", "list"))["plans"][-1]["monthly_price_minor"] == 499999
    fraction = walletctl(
        "plan", "set", "gpu", "--name", "GPU", "--vcpus", "16", "--memory-gb", "64",
        "--monthly-price-minor", "49.99", "--currency", "ZAR",
    )  # fmt: skip
    assert fraction.exit_code == 2


def test_resellers_and_burn_from_the_command_line(walletctl):
    assert walletctl("db", "upgrade").exit_code == 0
    linked = walletctl("owner", "set", "shop-1", "--reseller", "reseller-1")
    assert linked.exit_code == 0, linked.output
    assert output(walletctl("owner", "show", "reseller-1"))["customers"] == ["shop-1"]
    cycle = walletctl("owner", "set", "reseller-1", "--reseller", "shop-1")
    assert cycle.exit_code == 1
    assert "cycle" in cycle.output
    wallet = output(walletctl("wallet", "create", "--owner", "shop-1", "--currency", "ZAR"))["id"]
    burn = output(walletctl("wallet", "burn", wallet))
    assert (burn["burn_minor_per_month"], burn["hours_to_zero"]) == (0, None)


@pytest.mark.parametrize(
    "position",
    [
        ["--json", "wallet", "show", "{wallet}"],
        ["wallet", "--json", "show", "{wallet}"],
        ["wallet", "show", "--json", "{wallet}"],
        ["wallet", "show", "{wallet}", "--json"],
    ],
)
def test_json_works_anywhere_on_the_command_line(fresh_database_url, monkeypatch, position):
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    runner = CliRunner()
    created = runner.invoke(
        cli, ["wallet", "create", "--owner", "acme", "--currency", "ZAR", "--json"]
    )
    wallet = json.loads(created.output)["id"]
    shown = runner.invoke(cli, [arg.format(wallet=wallet) for arg in position])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["id"] == wallet


def test_every_command_takes_json(walletctl):
    def leaves(command, path):
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            yield path, command
        for name, sub in (subcommands or {}).items():
            yield from leaves(sub, [*path, name])

    found = list(leaves(cli, []))
    assert [" ".join(path) for path, _ in found] == [
        "db upgrade", "wallet create", "wallet show", "wallet burn", "wallet statement",
        "wallet balance", "adjust", "grant", "monitor add", "monitor list", "monitor remove",
        "autotopup set", "autotopup show", "autotopup remove", "verify",
        "webhook send", "token", "scheduler", "relay", "dlq list", "dlq replay",
        "contact set", "contact show", "contact remove", "plan set", "plan list",
        "owner set", "owner show", "review list", "review show", "review resolve",
        "reconcile run", "reconcile list", "reconcile show", "catch-up",
    ]  # fmt: skip
    for path, command in found:
        assert "--json" in {opt for param in command.params for opt in param.opts}, path


def test_text_output_says_the_unit_of_every_amount(fresh_database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    runner = CliRunner()
    created = runner.invoke(
        cli, ["--json", "wallet", "create", "--owner", "a", "--currency", "ZAR"]
    )
    wallet = json.loads(created.output)["id"]
    credited = runner.invoke(
        cli, ["adjust", "--wallet", wallet, "--credit", "1750", "--reason", "x"]
    )
    assert "balance now 1750 minor units, available 1750 minor units" in credited.output
    shown = runner.invoke(cli, ["wallet", "show", wallet]).output
    assert "balance   1750 minor units (17.50 ZAR)" in shown
    assert "held      0 minor units (0.00 ZAR)" in shown
    plans = runner.invoke(cli, ["plan", "list"]).output
    assert "15000 minor units of ZAR a month (150.00 ZAR" in plans
    burn = runner.invoke(cli, ["wallet", "burn", wallet]).output
    assert "burns 0 minor units (0.00 ZAR) a month" in burn
