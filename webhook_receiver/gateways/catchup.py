"""The gateways whose read APIs catch-up asks, by name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from webhook_receiver.gateways import paystack_catchup, razorpay_catchup, stripe_catchup
from webhook_receiver.gateways.catchup_http import Found
from webhook_receiver.gateways.catchup_settings import CatchupSettings

Fetcher = Callable[[CatchupSettings, datetime], list[Found]]

FETCHERS: dict[str, Fetcher] = {
    "paystack": paystack_catchup.fetch,
    "razorpay": razorpay_catchup.fetch,
    "stripe": stripe_catchup.fetch,
}
