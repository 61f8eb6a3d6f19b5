"""Where the gateways' read APIs are and the secret keys that read them, for catch-up.

Secrets have no defaults and never show in `repr()`; base URLs are settings so that tests
(and a proxy) can stand in for the gateway.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

STRIPE_API_BASE_DEFAULT = "https://api.stripe.com"
RAZORPAY_API_BASE_DEFAULT = "https://api.razorpay.com"
PAYSTACK_API_BASE_DEFAULT = "https://api.paystack.co"


def _url(name: str, value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{name} must be an http(s) URL, not {value[:60]!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class CatchupSettings:
    stripe_api_base: str = STRIPE_API_BASE_DEFAULT
    stripe_api_key: str | None = field(default=None, repr=False)
    razorpay_api_base: str = RAZORPAY_API_BASE_DEFAULT
    razorpay_key_id: str | None = None
    razorpay_key_secret: str | None = field(default=None, repr=False)
    paystack_api_base: str = PAYSTACK_API_BASE_DEFAULT
    paystack_secret_key: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CatchupSettings:
        """Read STRIPE_API_*, RAZORPAY_KEY_*, PAYSTACK_SECRET_KEY and the *_API_BASE variables
        (unset or empty: the gateway's own); ValueError names a bad one. STRIPE_API_BASE and
        STRIPE_API_KEY are the ones workers.stripe_charges reads too."""
        timeout = environ.get("CATCHUP_TIMEOUT_S", "10")
        try:
            timeout_s = float(timeout)
        except ValueError:
            raise ValueError(
                f"CATCHUP_TIMEOUT_S must be a number of seconds, not {timeout!r}"
            ) from None
        if not 0 < timeout_s <= 120:
            raise ValueError("CATCHUP_TIMEOUT_S must be above 0 and at most 120")
        return cls(
            stripe_api_base=_url(
                "STRIPE_API_BASE", environ.get("STRIPE_API_BASE") or STRIPE_API_BASE_DEFAULT
            ),
            stripe_api_key=environ.get("STRIPE_API_KEY") or None,
            razorpay_api_base=_url(
                "RAZORPAY_API_BASE", environ.get("RAZORPAY_API_BASE") or RAZORPAY_API_BASE_DEFAULT
            ),
            razorpay_key_id=environ.get("RAZORPAY_KEY_ID") or None,
            razorpay_key_secret=environ.get("RAZORPAY_KEY_SECRET") or None,
            paystack_api_base=_url(
                "PAYSTACK_API_BASE", environ.get("PAYSTACK_API_BASE") or PAYSTACK_API_BASE_DEFAULT
            ),
            paystack_secret_key=environ.get("PAYSTACK_SECRET_KEY") or None,
            timeout_s=timeout_s,
        )
