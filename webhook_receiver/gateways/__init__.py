"""Gateway adapters: verify a raw webhook request and normalise it to GatewayEvents.

`ADAPTERS` maps each `/webhooks/<gateway>` path name to its adapter class; `build_adapters`
builds the ones whose secrets are configured. A gateway left out answers 404.
"""

from __future__ import annotations

import logging

from webhook_receiver.errors import GatewayUnknown
from webhook_receiver.gateways.adyen import AdyenAdapter
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample
from webhook_receiver.gateways.payfast import PayfastAdapter
from webhook_receiver.gateways.paypal import PaypalAdapter
from webhook_receiver.gateways.paystack import PaystackAdapter
from webhook_receiver.gateways.razorpay import RazorpayAdapter
from webhook_receiver.gateways.stripe import StripeAdapter
from webhook_receiver.gateways.yoco import YocoAdapter
from webhook_receiver.settings import ReceiverSettings

__all__ = ["ADAPTERS", "GatewayAdapter", "SignedSample", "build_adapters"]

logger = logging.getLogger(__name__)

ADAPTERS: dict[str, type[GatewayAdapter]] = {
    adapter.name: adapter
    for adapter in (
        RazorpayAdapter,
        StripeAdapter,
        PaypalAdapter,
        YocoAdapter,
        PayfastAdapter,
        PaystackAdapter,
        AdyenAdapter,
    )
}


def build_adapters(settings: ReceiverSettings) -> dict[str, GatewayAdapter]:
    """The adapters of every configured gateway, by path name.

    Logs one line per gateway left out, saying which setting is missing (never its value), and
    a warning when none is configured.
    """
    adapters: dict[str, GatewayAdapter] = {}
    for name, adapter_class in ADAPTERS.items():
        try:
            adapters[name] = adapter_class.from_settings(settings)
        except GatewayUnknown as exc:
            logger.info("Gateway %s is not configured: %s; it will answer 404.", name, exc)
    if adapters:
        logger.info("Gateways configured: %s.", ", ".join(sorted(adapters)))
    else:
        logger.warning("No gateway is configured: every webhook will answer 404.")
    return adapters
