"""The workers' settings: one frozen object, read from the environment once per process.

Secrets have no defaults and never show in `repr()`. A channel named in NOTIFY_CHANNELS
without what it needs is a start-up error that names the missing variable.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

CHANNELS = ("log", "whatsapp", "webhooks")
INBOX_BATCH_MAX_LIMIT = 1000
WHATSAPP_API_URL_DEFAULT = "https://graph.facebook.com/v21.0"
# The templates of the original system's "WhatsApp confirmation": top-ups, payments, refunds.
WHATSAPP_TEMPLATES_DEFAULT = {
    "topup": "topup_confirmation",
    "payment": "payment_confirmation",
    "refund": "refund_confirmation",
}


def _list(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def _http_url(name: str, value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"{name} must be an http(s) URL, not {value[:60]!r}")
    return value


@dataclass(frozen=True)
class WorkerSettings:
    """Where notifications go; build it with `from_env()`, or directly in tests."""

    notify_channels: tuple[str, ...] = ("log",)
    whatsapp_api_url: str = WHATSAPP_API_URL_DEFAULT
    whatsapp_token: str | None = field(default=None, repr=False)
    whatsapp_phone_number_id: str | None = None
    whatsapp_templates: Mapping[str, str] = field(
        default_factory=lambda: dict(WHATSAPP_TEMPLATES_DEFAULT)
    )
    whatsapp_language: str = "en"
    webhook_urls: tuple[str, ...] = ()
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    notify_timeout_s: float = 10.0
    # Inbox events one transaction of the workers claims and applies at most.
    inbox_batch_max: int = 32
    # Batches: outbox events claimed per transaction, sends in flight per process, usage
    # records billed per transaction.
    notify_batch_max: int = 32
    notify_concurrency: int = 8
    usage_batch_max: int = 500

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkerSettings:
        """Read and check the NOTIFY_* and WHATSAPP_* variables; ValueError names a bad one."""
        channels = _list(environ.get("NOTIFY_CHANNELS")) or ("log",)
        unknown = sorted(set(channels) - set(CHANNELS))
        if unknown:
            raise ValueError(
                f"NOTIFY_CHANNELS names unknown channels {unknown}; choose from {list(CHANNELS)}"
            )
        raw_timeout = environ.get("NOTIFY_TIMEOUT_S", "10")
        try:
            timeout_s = float(raw_timeout)
        except ValueError:
            raise ValueError(f"NOTIFY_TIMEOUT_S must be a number, not {raw_timeout!r}") from None
        if not 0.1 <= timeout_s <= 60:
            raise ValueError("NOTIFY_TIMEOUT_S must be between 0.1 and 60 seconds")
        raw_batch = environ.get("INBOX_BATCH_MAX", "32")
        if not raw_batch.isdigit() or not 1 <= int(raw_batch) <= INBOX_BATCH_MAX_LIMIT:
            raise ValueError(
                f"INBOX_BATCH_MAX must be a whole number from 1 to {INBOX_BATCH_MAX_LIMIT},"
                f" not {raw_batch[:20]!r}"
            )
        settings = cls(
            notify_batch_max=_int(environ, "NOTIFY_BATCH_MAX", 32, 1, 1000),
            notify_concurrency=_int(environ, "NOTIFY_CONCURRENCY", 8, 1, 64),
            usage_batch_max=_int(environ, "USAGE_BATCH_MAX", 500, 1, 5000),
            notify_channels=channels,
            whatsapp_api_url=_http_url(
                "WHATSAPP_API_URL", environ.get("WHATSAPP_API_URL") or WHATSAPP_API_URL_DEFAULT
            ),
            whatsapp_token=environ.get("WHATSAPP_TOKEN") or None,
            whatsapp_phone_number_id=environ.get("WHATSAPP_PHONE_NUMBER_ID") or None,
            whatsapp_templates={
                purpose: environ.get(f"WHATSAPP_TEMPLATE_{purpose.upper()}") or default
                for purpose, default in WHATSAPP_TEMPLATES_DEFAULT.items()
            },
            whatsapp_language=environ.get("WHATSAPP_TEMPLATE_LANGUAGE") or "en",
            webhook_urls=tuple(
                _http_url("NOTIFY_WEBHOOK_URLS", url)
                for url in _list(environ.get("NOTIFY_WEBHOOK_URLS"))
            ),
            webhook_secrets=_list(environ.get("NOTIFY_WEBHOOK_SECRET")),
            notify_timeout_s=timeout_s,
            inbox_batch_max=int(raw_batch),
        )
        settings.check()
        return settings

    def longest_delivery_s(self) -> float:
        """The longest one delivery may wait on the network: a call per webhook URL and one to
        WhatsApp, each bounded by notify_timeout_s. A delivery waits inside its transaction."""
        calls = ("whatsapp" in self.notify_channels) + (
            len(self.webhook_urls) if "webhooks" in self.notify_channels else 0
        )
        return calls * self.notify_timeout_s

    def check(self) -> None:
        """Raise ValueError when a chosen channel lacks a setting it needs."""
        if "whatsapp" in self.notify_channels:
            for name, value in (
                ("WHATSAPP_TOKEN", self.whatsapp_token),
                ("WHATSAPP_PHONE_NUMBER_ID", self.whatsapp_phone_number_id),
            ):
                if not value:
                    raise ValueError(f"the whatsapp channel needs {name}")
        if "webhooks" in self.notify_channels:
            if not self.webhook_urls:
                raise ValueError("the webhooks channel needs NOTIFY_WEBHOOK_URLS")
            if not self.webhook_secrets:
                raise ValueError("the webhooks channel needs NOTIFY_WEBHOOK_SECRET (whsec_...)")
