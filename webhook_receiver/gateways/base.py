"""The interface every gateway adapter implements, and the signed sample events adapters make."""

from __future__ import annotations

import abc
import logging
import traceback
from dataclasses import dataclass
from typing import ClassVar, Self

from webhook_receiver.errors import GatewayUnknown, MalformedPayload, WebhookError
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.settings import ReceiverSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedSample:
    """A realistic gateway event, signed as that gateway would sign it.

    Used by `walletctl webhook send`, benchmarks and tests; `to_request()` gives what the
    receiver would see.
    """

    body: bytes
    headers: dict[str, str]
    content_type: str
    #: The gateway's id of the payment the event is about (a refund's: the payment refunded).
    payment_id: str | None = None

    def to_request(self, remote_addr: str | None = None) -> RawRequest:
        """The RawRequest a receiver would build from this sample sent from `remote_addr`."""
        headers = {name.lower(): (value,) for name, value in self.headers.items()}
        headers["content-type"] = (self.content_type,)
        return RawRequest(
            body=self.body,
            headers=headers,
            remote_addr=remote_addr,
            content_type=self.content_type,
        )


class GatewayAdapter(abc.ABC):
    """Verify one gateway's webhook request on its raw bytes, then normalise it.

    `parse` raises only WebhookError subclasses, whatever the input: MalformedPayload for what
    cannot be read, SignatureInvalid (or its subclasses TimestampOutOfTolerance and
    SourceNotAllowed) for what is not proven to come from the gateway. No business content is
    read before the signature is verified. Adapters are stateless apart from caches and are
    safe to share between threads.
    """

    name: ClassVar[str]
    #: The environment variable holding this gateway's secret(s), named in log lines.
    env_var: ClassVar[str]
    #: The ReceiverSettings field that environment variable fills.
    secrets_setting: ClassVar[str]

    @classmethod
    def configured_secrets(cls, settings: ReceiverSettings) -> tuple[str, ...]:
        """This gateway's secrets in `settings`, newest rotation last.

        Raises GatewayUnknown naming the variable to set when there is none.
        """
        secrets: tuple[str, ...] = getattr(settings, cls.secrets_setting)
        if not secrets:
            raise GatewayUnknown(f"{cls.env_var} is not set")
        return secrets

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> Self:
        """Build the adapter from the receiver's settings; adapters with more settings override.

        Raises GatewayUnknown, saying why, when the settings lack the gateway's secret.
        """
        return cls(cls.configured_secrets(settings))  # type: ignore[call-arg]

    @classmethod
    @abc.abstractmethod
    def sample(
        cls,
        secret: str,
        *,
        amount_minor: int,
        currency: str,
        reference: str,
        event_id: str | None = None,
        kind: EventKind = EventKind.PAYMENT_SUCCEEDED,
        now: float | None = None,
        payment_id: str | None = None,
    ) -> SignedSample:
        """A realistic event of this gateway for `kind`, signed with `secret`.

        `secret` is what the gateway's secret setting holds; `now` (Unix seconds) fixes signed
        timestamps; `payment_id` names the payment (a refund's: the one it refunds), else a
        new one is made up. Raises ValueError for a kind or currency the gateway does not send.
        """

    def parse(self, request: RawRequest) -> list[GatewayEvent]:
        """Verify `request` and return the events it carries (Adyen may batch several).

        Raises a WebhookError subclass and nothing else.
        """
        try:
            return self._parse(request)
        except WebhookError:
            raise
        except Exception as exc:
            # The contract is "no input yields a 5xx": an adapter bug on odd input becomes a 400.
            # Only the exception type and where it arose are logged: messages may quote the body.
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            logger.error(
                "Gateway %s adapter raised %s at %s:%s; answering malformed.",
                self.name,
                type(exc).__name__,
                frame.filename,
                frame.lineno,
            )
            raise MalformedPayload("the webhook could not be read") from None

    @abc.abstractmethod
    def _parse(self, request: RawRequest) -> list[GatewayEvent]:
        """Verify, then normalise; may let unexpected exceptions through to `parse`."""
