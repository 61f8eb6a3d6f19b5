"""walletctl for credits: grant, show the split, a statement and a balance at a time."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from walletctl.cli import cli


@pytest.fixture
def walletctl(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, [*args], catch_exceptions=False)

    return run


def test_grant_then_show_a_statement_and_a_balance(walletctl, make_wallet):
    wallet = str(make_wallet(funded_minor=1000))

    granted = walletctl(
        "--json",
        "grant",
        "--wallet",
        wallet,
        "--amount-minor",
        "250",
        "--reason",
        "support ticket 42",
        "--expires-at",
        "2099-12-31T23:59:59+00:00",
        "--priority",
        "10",
    )
    assert granted.exit_code == 0, granted.output
    assert json.loads(granted.output)["granted_minor"] == 250

    shown = json.loads(walletctl("--json", "wallet", "show", wallet).output)
    assert (shown["paid_minor"], shown["granted_minor"]) == (1000, 250)
    assert shown["grants"][0]["priority"] == 10

    exported = walletctl(
        "wallet",
        "statement",
        wallet,
        "--from",
        f"{datetime.now(UTC).date() - timedelta(days=1)}",
        "--to",
        f"{datetime.now(UTC).date() + timedelta(days=2)}",
        "--format",
        "csv",
    )
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert [(r["type"], r["balance_minor"]) for r in rows] == [
        ("opening", "0"),
        ("adjustment", "1000"),
        ("grant", "1250"),
        ("closing", "1250"),
    ]
    at = json.loads(walletctl("--json", "wallet", "balance", wallet, "--at", "2000-01-01").output)
    assert at["balance_minor"] == 0


def test_grant_errors_say_what_to_do(walletctl, make_wallet):
    wallet = str(make_wallet())
    past = walletctl(
        "grant",
        "--wallet",
        wallet,
        "--amount-minor",
        "1",
        "--reason",
        "x",
        "--expires-at",
        "2001-01-01T00:00:00+00:00",
    )
    assert past.exit_code == 2
    assert "must be in the future" in past.output
    poor = str(make_wallet())
    refused = walletctl(
        "grant", "--wallet", wallet, "--amount-minor", "5", "--reason", "x", "--from-wallet", poor
    )
    assert refused.exit_code == 1
    assert "cannot fund a grant" in refused.output


def test_monitors_and_auto_topup_from_the_command_line(walletctl, make_wallet):
    wallet = str(make_wallet(funded_minor=1000))
    added = json.loads(walletctl("--json", "monitor", "add", wallet, "--below", "500").output)
    assert added["crossed"] is False
    assert walletctl("monitor", "add", wallet, "--below", "5", "--above", "9").exit_code == 2
    listed = json.loads(walletctl("--json", "monitor", "list", wallet).output)
    assert [m["id"] for m in listed["items"]] == [added["id"]]
    assert walletctl("monitor", "remove", wallet, added["id"]).exit_code == 0
    missing = walletctl("monitor", "remove", wallet, added["id"])
    assert missing.exit_code == 1
    assert "has no monitor" in missing.output

    rule = walletctl(
        "--json", "autotopup", "set", wallet, "--below", "500", "--to", "2000", "--per-day", "2"
    )
    assert rule.exit_code == 0, rule.output
    assert json.loads(rule.output)["armed"] is True
    shown = json.loads(walletctl("--json", "autotopup", "show", wallet).output)
    assert (shown["target_minor"], shown["per_day_max"]) == (2000, 2)
    bad = walletctl("autotopup", "set", wallet, "--below", "500", "--to", "100")
    assert bad.exit_code == 2
    assert "above threshold" in bad.output
    assert walletctl("autotopup", "remove", wallet).exit_code == 0
