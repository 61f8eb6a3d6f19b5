"""`walletctl token`: mint a bearer token from the environment's secret (no service needed)."""

from __future__ import annotations

import json
import time
from datetime import datetime

import jwt
import pytest
from click.testing import CliRunner

from tests.unit.api.support import OLD_SECRET, SECRET
from walletctl.cli import cli

ENV = {
    "WALLETPIPE_JWT_SECRET": f"{OLD_SECRET},{SECRET}",
    "WALLETPIPE_JWT_PUBLIC_KEY": None,
    "WALLETPIPE_JWT_AUDIENCE": "walletpipe",
    "WALLETPIPE_JWT_ISSUER": None,
}


def run(*args: str, env: dict[str, str | None] = ENV):
    return CliRunner().invoke(cli, list(args), env=env)


def decode(token: str) -> dict:
    return jwt.decode(token, SECRET, algorithms=["HS256"], audience="walletpipe")


def test_it_prints_a_token_signed_with_the_newest_secret():
    result = run("token", "--sub", "shop", "--scope", "wallets:read orders:write")
    assert result.exit_code == 0, result.output
    claims = decode(result.stdout.strip())
    assert claims["sub"] == "shop"
    assert claims["scope"] == "wallets:read orders:write"
    assert claims["aud"] == "walletpipe"
    assert "owner_id" not in claims
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 5


def test_json_output_describes_the_token():
    result = run(
        "--json", "token", "--sub", "shop", "--scope", "admin", "--owner-id", "t-1", "--ttl-s", "60"
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    claims = decode(shown["token"])
    assert claims["owner_id"] == "t-1"
    assert shown["sub"] == "shop"
    assert shown["scope"] == "admin"
    assert shown["owner_id"] == "t-1"
    assert datetime.fromisoformat(shown["expires_at"]).timestamp() == claims["exp"]


def test_an_unknown_scope_is_a_usage_error_listing_the_scopes():
    result = run("token", "--sub", "shop", "--scope", "wallets:read wallet:write")
    assert result.exit_code == 2
    assert "wallet:write" in result.output
    assert "provisioning:write" in result.output


@pytest.mark.parametrize("ttl_s", ["0", str(31 * 86_400 + 1), "soon"])
def test_a_ttl_outside_one_second_to_31_days_is_a_usage_error(ttl_s):
    result = run("token", "--sub", "shop", "--scope", "admin", "--ttl-s", ttl_s)
    assert result.exit_code == 2


def test_without_a_secret_it_says_what_to_set():
    result = run(
        "token", "--sub", "shop", "--scope", "admin", env={**ENV, "WALLETPIPE_JWT_SECRET": None}
    )
    assert result.exit_code == 1
    assert "WALLETPIPE_JWT_SECRET is not set" in result.output


def test_an_invalid_environment_is_reported():
    result = run(
        "token", "--sub", "shop", "--scope", "admin", env={**ENV, "WALLETPIPE_JWT_SECRET": "x"}
    )
    assert result.exit_code == 1
    assert "WALLETPIPE_JWT_SECRET" in result.output
