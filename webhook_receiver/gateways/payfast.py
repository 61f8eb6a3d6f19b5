"""PayFast ITN: a form post signed with MD5 over its fields in received order, plus a source check.

The signature is the MD5 hex of `key=urlencode(value.strip())` for every posted field except
`signature`, in the order received, blank values kept, joined by `&`, followed by
`&passphrase=urlencode(passphrase)`. `urlencode` is PHP's (space as `+`, `~` escaped). The
passphrase is the only secret; without one the signature is a checksum anyone can compute, so
PayFast is configured only when a passphrase is set. The request must also come from one of
PayFast's networks (the client address is the socket peer, or the X-Forwarded-For entry
written by the outermost of TRUSTED_PROXY_COUNT proxies).

Amounts are major-unit ZAR decimals. COMPLETE is a payment, FAILED a failed payment; CANCELLED
(the buyer walked away, or a subscription ended) and PENDING move no money and are ignored.
PayFast's server-side "validate" postback is not used: the signature, the passphrase and the
source check already prove origin. ITNs carry no timestamp, so none is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import urllib.parse
from typing import Self

from ledger.money import Money
from webhook_receiver.errors import (
    MalformedPayload,
    SignatureInvalid,
    SourceNotAllowed,
)
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.gateways import common
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample
from webhook_receiver.settings import PAYFAST_NETWORKS_DEFAULT, IPNetwork, ReceiverSettings

# An ITN has about 25 fields; bound what a stranger can make us parse.
FIELDS_MAX = 100
_KINDS = {"COMPLETE": EventKind.PAYMENT_SUCCEEDED, "FAILED": EventKind.PAYMENT_FAILED}
_SAMPLE_STATUS = {
    EventKind.PAYMENT_SUCCEEDED: "COMPLETE",
    EventKind.PAYMENT_FAILED: "FAILED",
    EventKind.OTHER: "CANCELLED",
}


def urlencode(value: str) -> str:
    """PHP's urlencode, which PayFast's signature uses: like quote_plus, but `~` is escaped."""
    return urllib.parse.quote_plus(value, safe="").replace("~", "%7E")


def param_string(fields: list[tuple[str, str]], passphrase: str) -> str:
    """The text PayFast signs: fields but `signature` in order, then the passphrase if any."""
    pairs = [f"{key}={urlencode(value.strip())}" for key, value in fields if key != "signature"]
    if passphrase:
        pairs.append(f"passphrase={urlencode(passphrase.strip())}")
    return "&".join(pairs)


def signature(fields: list[tuple[str, str]], passphrase: str) -> str:
    """The MD5 hex signature of `fields` under `passphrase`."""
    text = param_string(fields, passphrase).encode("utf-8")
    return hashlib.md5(text).hexdigest()  # noqa: S324 - PayFast's scheme, not our choice


class PayfastAdapter(GatewayAdapter):
    """PayFast ITNs; the secret is the passphrase set in PayFast's merchant settings."""

    name = "payfast"
    env_var = "PAYFAST_PASSPHRASE"
    secrets_setting = "payfast_passphrases"

    def __init__(
        self,
        passphrases: tuple[str, ...],
        *,
        allowed_networks: tuple[IPNetwork, ...] = PAYFAST_NETWORKS_DEFAULT,
        trusted_proxy_count: int = 0,
    ) -> None:
        if not passphrases:
            raise ValueError("at least one passphrase is required (it may be '' in tests)")
        self._passphrases = passphrases
        self._networks = allowed_networks
        self._proxies = trusted_proxy_count

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> Self:
        secrets = cls.configured_secrets(settings)
        return cls(
            secrets,
            allowed_networks=settings.payfast_allowed_networks,
            trusted_proxy_count=settings.trusted_proxy_count,
        )

    def _parse(self, request: RawRequest) -> list[GatewayEvent]:
        self._check_source(request)
        fields = _form_fields(request.body)
        data = {name: value.strip() for name, value in fields}  # what the signature covers
        received = data.get("signature", "").lower().encode("ascii", "replace")
        if not received:
            raise SignatureInvalid("ITN carries no signature")
        expected = [signature(fields, p).encode("ascii") for p in self._passphrases]
        if not any(hmac.compare_digest(e, received) for e in expected):
            raise SignatureInvalid("PayFast signature matches no configured passphrase")

        payment_id = common.identifier(data.get("pf_payment_id"), "pf_payment_id")
        status = data.get("payment_status", "")
        # PayFast sends one ITN per status change of a payment (PENDING, then COMPLETE): the
        # status belongs in the dedupe key, or a COMPLETE after a PENDING would look like a
        # changed repeat of the same event and never be applied.
        event_id = f"{payment_id}:{status[:32] or 'UNKNOWN'}"
        kind = _KINDS.get(status, EventKind.OTHER)
        if kind is EventKind.OTHER:
            return [common.ignored(self.name, event_id, None, data)]
        return [
            GatewayEvent(
                gateway=self.name,
                event_id=event_id,
                kind=kind,
                payment_id=payment_id,
                amount_minor=common.amount_from_major(data.get("amount_gross"), "ZAR"),
                currency="ZAR",
                reference=common.optional_identifier(data.get("m_payment_id")),
                payment_method=None,
                occurred_at=None,
                payload=data,
            )
        ]

    def _check_source(self, request: RawRequest) -> None:
        candidate = request.remote_addr
        if self._proxies:
            hops = [
                hop.strip()
                for value in request.headers.get("x-forwarded-for", ())
                for hop in value.split(",")
            ]
            # Each trusted proxy appends the address it saw; earlier entries can be forged.
            candidate = hops[-self._proxies] if len(hops) >= self._proxies else None
        try:
            address = ipaddress.ip_address(candidate or "")
        except ValueError:
            raise SourceNotAllowed("client address missing or unreadable") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not any(address in network for network in self._networks):
            raise SourceNotAllowed("ITN did not come from PayFast's networks")

    @classmethod
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
        """A signed ITN; the receiver accepts it only from an allowed network.

        For a local demo, add 127.0.0.1/32 to PAYFAST_ALLOWED_NETWORKS. Raises ValueError for
        a currency other than ZAR and for refunds, which PayFast does not report by ITN.
        """
        if currency != "ZAR":
            raise ValueError("PayFast ITNs are in ZAR only")
        if kind not in _SAMPLE_STATUS:
            raise ValueError(f"PayFast sends no ITN for {kind}")
        fee = amount_minor * 23 // 1000
        # PayFast's payment id is also the ITN's dedupe key.
        pf_payment_id = payment_id or event_id or str(random.randint(10**6, 10**8))  # noqa: S311
        fields = [
            ("m_payment_id", reference),
            ("pf_payment_id", pf_payment_id),
            ("payment_status", _SAMPLE_STATUS[kind]),
            ("item_name", "Wallet top-up"),
            ("item_description", ""),
            ("amount_gross", Money(amount_minor, "ZAR").format_major()),
            ("amount_fee", f"-{Money(fee, 'ZAR').format_major()}"),
            ("amount_net", Money(amount_minor - fee, "ZAR").format_major()),
            *((f"custom_str{i}", "") for i in range(1, 6)),
            *((f"custom_int{i}", "") for i in range(1, 6)),
            ("name_first", "Test"),
            ("name_last", "Buyer"),
            ("email_address", "buyer+test@example.com"),
            ("merchant_id", "10000100"),
        ]
        fields.append(("signature", signature(fields, secret)))
        body = "&".join(f"{key}={urlencode(value)}" for key, value in fields).encode("ascii")
        return SignedSample(
            body=body,
            headers={},
            content_type="application/x-www-form-urlencoded",
            payment_id=pf_payment_id,
        )


def _form_fields(body: bytes) -> list[tuple[str, str]]:
    """The posted fields in received order; MalformedPayload when unreadable or ambiguous."""
    try:
        fields = urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=FIELDS_MAX,
        )
    except ValueError:  # UnicodeDecodeError included
        raise MalformedPayload("ITN is not a UTF-8 form") from None
    names = [name for name, _ in fields]
    if len(set(names)) != len(names):
        # Signed either way, but which value would count? Refuse rather than guess.
        raise MalformedPayload("ITN repeats a field")
    return fields
