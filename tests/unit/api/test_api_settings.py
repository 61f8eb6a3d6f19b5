"""The settings the service API reads: JWT keys and rate limits, validated at start."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.api.support import OLD_SECRET, SECRET
from webhook_receiver.settings import ReceiverSettings


@pytest.fixture(scope="module")
def pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_defaults():
    settings = ReceiverSettings.from_env({})
    assert settings.jwt_secrets == ()
    assert settings.jwt_public_keys == ()
    assert settings.jwt_audience is None
    assert settings.jwt_issuer is None
    assert settings.jwt_leeway_s == 30
    assert settings.api_rate_limit == "600/minute"
    assert settings.rate_limit_storage_url is None


def test_everything_set():
    settings = ReceiverSettings.from_env(
        {
            "WALLETPIPE_JWT_SECRET": f"{OLD_SECRET}, {SECRET}",
            "WALLETPIPE_JWT_AUDIENCE": "walletpipe",
            "WALLETPIPE_JWT_ISSUER": "https://idp.example",
            "WALLETPIPE_JWT_LEEWAY_S": "5",
            "API_RATE_LIMIT": "100/minute;10/second",
            "RATE_LIMIT_STORAGE_URL": "redis://:pw@cache:6379/3",
        }
    )
    assert settings.jwt_secrets == (OLD_SECRET, SECRET)
    assert settings.jwt_audience == "walletpipe"
    assert settings.jwt_issuer == "https://idp.example"
    assert settings.jwt_leeway_s == 5
    assert settings.api_rate_limit == "100/minute;10/second"
    assert settings.rate_limit_storage_url == "redis://:pw@cache:6379/3"


def test_repr_shows_neither_secrets_nor_passwords():
    settings = ReceiverSettings.from_env(
        {"WALLETPIPE_JWT_SECRET": SECRET, "RATE_LIMIT_STORAGE_URL": "redis://:pw@cache:6379/3"}
    )
    shown = repr(settings)
    assert SECRET not in shown
    assert ":pw@" not in shown
    assert "jwt_secrets=<1 set>" in shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WALLETPIPE_JWT_SECRET", "too-short"),
        ("WALLETPIPE_JWT_LEEWAY_S", "301"),
        ("API_RATE_LIMIT", "lots"),
        ("RATE_LIMIT_STORAGE_URL", "memcached://cache:11211"),
        ("WALLETPIPE_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----"),
        ("WALLETPIPE_JWT_PUBLIC_KEY", "/nonexistent/key.pem"),
    ],
)
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(ValueError, match=name):
        ReceiverSettings.from_env({name: value})


def test_a_public_key_inline(pem):
    settings = ReceiverSettings.from_env({"WALLETPIPE_JWT_PUBLIC_KEY": pem})
    assert settings.jwt_public_keys == (pem.strip(),)


def test_a_public_key_inline_with_escaped_newlines(pem):
    escaped = pem.strip().replace("\n", "\\n")
    settings = ReceiverSettings.from_env({"WALLETPIPE_JWT_PUBLIC_KEY": escaped})
    assert settings.jwt_public_keys == (pem.strip(),)


def test_public_keys_from_a_file(tmp_path, pem):
    path = tmp_path / "keys.pem"
    path.write_text(pem + pem)  # two keys in one file: rotation
    settings = ReceiverSettings.from_env({"WALLETPIPE_JWT_PUBLIC_KEY": str(path)})
    assert settings.jwt_public_keys == (pem.strip(), pem.strip())
