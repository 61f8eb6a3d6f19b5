"""The gateway registry: every gateway has an adapter; only configured ones are built."""

from __future__ import annotations

import logging

import pytest

from webhook_receiver.gateways import ADAPTERS, build_adapters
from webhook_receiver.gateways.paypal import PaypalAdapter
from webhook_receiver.gateways.stripe import StripeAdapter
from webhook_receiver.settings import ReceiverSettings

ALL_SECRETS = {
    "RAZORPAY_WEBHOOK_SECRET": "rzp-s3cret-value",
    "STRIPE_WEBHOOK_SECRET": "whsec_s3cret-value",
    "YOCO_WEBHOOK_SECRET": "whsec_c2VjcmV0LXZhbHVl",
    "PAYSTACK_WEBHOOK_SECRET": "sk_live_s3cret-value",
    "ADYEN_HMAC_KEY": "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
    "PAYFAST_PASSPHRASE": "pf-s3cret-value",
    "PAYPAL_WEBHOOK_ID": "WH-s3cret-value",
}


def test_every_gateway_path_has_an_adapter_named_after_it() -> None:
    assert sorted(ADAPTERS) == sorted(
        ["razorpay", "stripe", "paypal", "yoco", "payfast", "paystack", "adyen"]
    )
    assert all(adapter.name == path for path, adapter in ADAPTERS.items())


def test_a_gateway_without_its_secret_is_left_out_and_the_log_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = ReceiverSettings.from_env({"STRIPE_WEBHOOK_SECRET": "whsec_only-stripe"})

    with caplog.at_level(logging.INFO, logger="webhook_receiver.gateways"):
        adapters = build_adapters(settings)

    assert list(adapters) == ["stripe"]
    assert isinstance(adapters["stripe"], StripeAdapter)
    missing = [r.getMessage() for r in caplog.records if "not configured" in r.getMessage()]
    assert len(missing) == 6
    assert any("PAYFAST_PASSPHRASE is not set" in line for line in missing)


def test_every_gateway_with_its_secret_is_built_and_no_secret_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = ReceiverSettings.from_env(ALL_SECRETS)

    with caplog.at_level(logging.DEBUG):
        adapters = build_adapters(settings)

    assert sorted(adapters) == sorted(ADAPTERS)
    assert caplog.records
    for value in ALL_SECRETS.values():
        assert value not in caplog.text


def test_paypal_verifies_offline_unless_postback_is_asked_for() -> None:
    offline = build_adapters(ReceiverSettings(paypal_webhook_ids=("WH-1",)))["paypal"]
    postback = build_adapters(
        ReceiverSettings(
            paypal_webhook_ids=("WH-1",),
            paypal_verify_mode="postback",
            paypal_client_id="id",
            paypal_client_secret="secret",
        )
    )["paypal"]

    assert isinstance(offline, PaypalAdapter)
    assert isinstance(postback, PaypalAdapter)
    assert (offline.verify_mode, postback.verify_mode) == ("offline", "postback")
