"""WhatsApp confirmations through the WhatsApp Cloud API: approved template messages.

A top-up credited, an order paid and a refund each send their template to the wallet owner's
WhatsApp number (`walletctl contact set`), with the amounts as body parameters. Owners with no
number, and events with no template, are skipped: there is nothing to send them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Self

from ledger.money import display
from ledger.outbox import Notice
from workers.channels.base import Channel, post_json
from workers.settings import WorkerSettings


def _topup(data: Mapping[str, Any]) -> list[str]:
    currency = data["currency"]
    return [display(data["amount_minor"], currency), display(data["balance_minor"], currency)]


def _payment(data: Mapping[str, Any]) -> list[str]:
    currency = data["currency"]
    return [
        display(data["amount_minor"], currency),
        str(data["reference"]),
        display(data["balance_minor"], currency),
    ]


# Which template purpose an event uses, and its body parameters in template order.
_PURPOSES: dict[str, tuple[str, Callable[[Mapping[str, Any]], list[str]]]] = {
    "wallet.credited": ("topup", _topup),
    "order.paid": ("payment", _payment),
    "order.refunded": ("refund", _topup),
    "topup.refunded": ("refund", _topup),
}


class WhatsAppChannel(Channel):
    name = "whatsapp"

    def __init__(
        self,
        *,
        api_url: str,
        token: str,
        phone_number_id: str,
        templates: Mapping[str, str],
        language: str,
        timeout_s: float,
    ) -> None:
        self._url = f"{api_url.rstrip('/')}/{phone_number_id}/messages"
        self._token = token
        self._templates = dict(templates)
        self._language = language
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> Self:
        # settings.check() has made sure of both.
        assert settings.whatsapp_token
        assert settings.whatsapp_phone_number_id
        return cls(
            api_url=settings.whatsapp_api_url,
            token=settings.whatsapp_token,
            phone_number_id=settings.whatsapp_phone_number_id,
            templates=settings.whatsapp_templates,
            language=settings.whatsapp_language,
            timeout_s=settings.notify_timeout_s,
        )

    def accepts(self, notice: Notice) -> bool:
        return notice.whatsapp_to is not None and notice.event_type in _PURPOSES

    def message(self, notice: Notice) -> dict[str, Any]:
        """The Cloud API request body for the notice's template."""
        assert notice.whatsapp_to is not None
        purpose, parameters = _PURPOSES[notice.event_type]
        return {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": notice.whatsapp_to.removeprefix("+"),
            "type": "template",
            "template": {
                "name": self._templates[purpose],
                "language": {"code": self._language},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": text} for text in parameters(notice.data)
                        ],
                    }
                ],
            },
        }

    def send(self, notice: Notice) -> None:
        post_json(
            self._url,
            self.message(notice),
            headers={"Authorization": f"Bearer {self._token}"},
            timeout_s=self._timeout_s,
        )
