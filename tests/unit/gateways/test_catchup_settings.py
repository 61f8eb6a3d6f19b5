"""Catch-up reads each gateway's API base from `<GATEWAY>_API_BASE`, the one name the rest of
walletpipe uses: the Stripe base that catch-up reads events at is the one automatic top-ups
are charged at."""

from __future__ import annotations

import pytest

from webhook_receiver.gateways.catchup_settings import CatchupSettings
from workers.stripe_charges import StripeSettings


def test_one_stripe_base_and_key_serve_catch_up_and_automatic_charges():
    environ = {"STRIPE_API_BASE": "http://127.0.0.1:8999/", "STRIPE_API_KEY": "sk_test_one"}
    catchup = CatchupSettings.from_env(environ)
    charges = StripeSettings.from_env(environ)
    assert catchup.stripe_api_base == charges.api_base == "http://127.0.0.1:8999"
    assert catchup.stripe_api_key == charges.api_key == "sk_test_one"


def test_each_gateway_base_is_read_and_an_empty_one_means_the_gateways_own():
    found = CatchupSettings.from_env(
        {
            "STRIPE_API_BASE": "",
            "RAZORPAY_API_BASE": "http://127.0.0.1:8998",
            "PAYSTACK_API_BASE": "https://paystack.proxy.internal/",
        }
    )
    assert found.stripe_api_base == "https://api.stripe.com"
    assert found.razorpay_api_base == "http://127.0.0.1:8998"
    assert found.paystack_api_base == "https://paystack.proxy.internal"


@pytest.mark.parametrize("name", ["STRIPE_API_BASE", "RAZORPAY_API_BASE", "PAYSTACK_API_BASE"])
def test_a_base_that_is_not_an_http_url_is_named(name):
    with pytest.raises(ValueError, match=name):
        CatchupSettings.from_env({name: "ftp://gateway.example"})
