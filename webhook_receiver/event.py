"""Gateway-neutral shapes: the raw request an adapter verifies and the event it yields."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webhook_receiver.errors import MalformedPayload


class EventKind(enum.StrEnum):
    """What a gateway event means for the ledger."""

    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    REFUND_SUCCEEDED = "refund_succeeded"
    REFUND_FAILED = "refund_failed"
    OTHER = "other"


@dataclass(frozen=True)
class RawRequest:
    """The exact bytes and headers a gateway sent, independent of the web framework.

    `headers` maps lower-cased names to every value received under that name, so that a
    repeated header is visible instead of silently merged.
    """

    body: bytes
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    remote_addr: str | None = None
    content_type: str | None = None

    def header(self, name: str) -> str | None:
        """Return the single value of header `name`, or None when absent.

        Raises MalformedPayload when the header was sent more than once with different values.
        """
        values = self.headers.get(name.lower(), ())
        if not values:
            return None
        if len(set(values)) > 1:
            raise MalformedPayload(f"header {name} was sent more than once")
        return values[0]


@dataclass(frozen=True)
class GatewayEvent:
    """One verified gateway event, normalised.

    `event_id` is the gateway's own deduplication key (see docs/gateways.md);
    `reference` is our top-up id as it travelled through the gateway. Amounts are integer
    minor units of `currency`; both are None when the event carries no amount.
    """

    gateway: str
    event_id: str
    kind: EventKind
    payment_id: str | None
    amount_minor: int | None
    currency: str | None
    reference: str | None
    payment_method: str | None
    occurred_at: datetime | None
    payload: Any
    #: The gateway's own id of the refund a refund event reports (None for other kinds).
    refund_id: str | None = None
