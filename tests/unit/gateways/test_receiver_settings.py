"""The receiver's settings: read once from the environment, validated, secrets kept out of logs."""

from __future__ import annotations

import ipaddress

import pytest

from ledger.local_names import default_broker_url, default_database_url
from webhook_receiver.settings import PAYFAST_NETWORKS_DEFAULT, ReceiverSettings


def test_an_empty_environment_gives_local_defaults_and_no_gateway_secrets() -> None:
    settings = ReceiverSettings.from_env({})

    assert settings.database_url == default_database_url()
    assert settings.database_pool_size == 5
    assert settings.broker_url == default_broker_url()
    assert settings.webhook_tolerance_s == 300
    assert settings.max_content_length == 262_144
    assert settings.trusted_proxy_count == 0
    assert settings.paypal_verify_mode == "offline"
    assert settings.paypal_api_base == "https://api-m.paypal.com"
    assert settings.payfast_allowed_networks == PAYFAST_NETWORKS_DEFAULT
    assert ipaddress.ip_address("144.126.193.139") in settings.payfast_allowed_networks[-1]
    assert settings.stripe_webhook_secrets == ()
    assert settings.paypal_webhook_ids == ()


def test_secret_lists_are_split_on_commas_and_blanks_dropped() -> None:
    settings = ReceiverSettings.from_env({"STRIPE_WEBHOOK_SECRET": " whsec_new , ,whsec_old,"})

    assert settings.stripe_webhook_secrets == ("whsec_new", "whsec_old")


def test_values_are_read_from_the_environment() -> None:
    settings = ReceiverSettings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://db/walletpipe",
            "WEBHOOK_TOLERANCE_S": "120",
            "TRUSTED_PROXY_COUNT": "1",
            "PAYFAST_ALLOWED_NETWORKS": "127.0.0.1/32, ::1/128",
            "MAX_CONTENT_LENGTH": "65536",
            "PAYPAL_API_BASE": "https://api-m.sandbox.paypal.com/",
        }
    )

    assert settings.database_url == "postgresql+psycopg://db/walletpipe"
    assert (settings.webhook_tolerance_s, settings.trusted_proxy_count) == (120, 1)
    assert [str(n) for n in settings.payfast_allowed_networks] == ["127.0.0.1/32", "::1/128"]
    assert settings.max_content_length == 65536
    assert settings.paypal_api_base == "https://api-m.sandbox.paypal.com"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOK_TOLERANCE_S", "5m"),
        ("WEBHOOK_TOLERANCE_S", "0"),
        ("WEBHOOK_TOLERANCE_S", "-300"),
        ("TRUSTED_PROXY_COUNT", "one"),
        ("DATABASE_POOL_SIZE", "0"),
        ("MAX_CONTENT_LENGTH", "1.5e6"),
        ("PAYFAST_ALLOWED_NETWORKS", "197.97.145.144/33"),
        ("PAYFAST_ALLOWED_NETWORKS", "197.97.145.150/28"),  # host bits set: a typo
        ("ADYEN_HMAC_KEY", "not-hex"),
        ("ADYEN_HMAC_KEY", "ABCD"),
        ("YOCO_WEBHOOK_SECRET", "whsec_!!!"),
        ("PAYPAL_VERIFY_MODE", "online"),
        ("PAYPAL_API_BASE", "ftp://paypal.example"),
    ],
)
def test_an_invalid_value_is_refused_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        ReceiverSettings.from_env({variable: value})


def test_postback_mode_needs_client_credentials() -> None:
    with pytest.raises(ValueError, match="PAYPAL_CLIENT_ID"):
        ReceiverSettings.from_env({"PAYPAL_VERIFY_MODE": "postback", "PAYPAL_CLIENT_ID": "id"})


def test_repr_shows_no_secret_and_no_url_password() -> None:
    secrets = {
        "STRIPE_WEBHOOK_SECRET": "whsec_topsecret1,whsec_topsecret2",
        "ADYEN_HMAC_KEY": "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        "PAYFAST_PASSPHRASE": "topsecret-pass",
        "PAYPAL_WEBHOOK_ID": "WH-topsecret",
        "PAYPAL_CLIENT_ID": "client",
        "PAYPAL_CLIENT_SECRET": "topsecret-client",
        "PAYPAL_VERIFY_MODE": "postback",
        "DATABASE_URL": "postgresql://app:topsecret-db@db/walletpipe",
        "BROKER_URL": "redis://:topsecret-redis@cache:6379/0",
    }

    shown = repr(ReceiverSettings.from_env(secrets))

    assert "topsecret" not in shown
    assert "44782DEF" not in shown
    assert "stripe_webhook_secrets=<2 set>" in shown
    assert "postgresql://app:***@db/walletpipe" in shown
    assert str(ReceiverSettings.from_env(secrets)) == shown


def test_settings_are_frozen() -> None:
    settings = ReceiverSettings.from_env({})

    with pytest.raises(AttributeError):
        settings.webhook_tolerance_s = 1  # type: ignore[misc]
