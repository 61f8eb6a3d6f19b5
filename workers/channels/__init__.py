"""Notification channels: where outbox events go once their transaction has committed.

Every channel is a small `Channel` subclass; `build_channels(settings)` makes the ones
NOTIFY_CHANNELS names. Delivery is at least once: a receiver deduplicates by the event id
each channel carries.
"""

from __future__ import annotations

from workers.channels.base import Channel
from workers.channels.log import LogChannel
from workers.channels.webhook import WebhookChannel
from workers.channels.whatsapp import WhatsAppChannel
from workers.settings import WorkerSettings

__all__ = ["Channel", "LogChannel", "WebhookChannel", "WhatsAppChannel", "build_channels"]


def build_channels(settings: WorkerSettings) -> list[Channel]:
    """The configured channels, in the order NOTIFY_CHANNELS names them."""
    settings.check()
    channels: list[Channel] = []
    for name in settings.notify_channels:
        if name == "log":
            channels.append(LogChannel())
        elif name == "whatsapp":
            channels.append(WhatsAppChannel.from_settings(settings))
        elif name == "webhooks":
            channels.extend(
                WebhookChannel(url, settings.webhook_secrets, timeout_s=settings.notify_timeout_s)
                for url in settings.webhook_urls
            )
    return channels
