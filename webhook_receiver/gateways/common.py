"""Helpers every adapter shares: signature checks, JSON and field reading, money, timestamps.

Each helper turns bad input into the WebhookError the contract names, so adapters never need
to catch ValueError, KeyError and friends themselves.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ledger.errors import MoneyError
from ledger.money import Money, validate_amount_minor, validate_currency
from webhook_receiver.errors import MalformedPayload, SignatureInvalid, TimestampOutOfTolerance
from webhook_receiver.event import EventKind, GatewayEvent

# Ids are dedupe keys in a UNIQUE column: bound them like everything else.
ID_LENGTH_MAX = 200
_GOOGLE_PAY_NAMES = frozenset({"google_pay", "googlepay", "paywithgoogle", "gpay"})


def hmac_matches(
    keys: Iterable[bytes], message: bytes, candidates: Iterable[bytes], digest: str
) -> bool:
    """Whether any candidate equals the HMAC of `message` under any key (constant time)."""
    expected = [hmac.new(key, message, digest).digest() for key in keys]
    return any(hmac.compare_digest(e, c) for c in candidates for e in expected)


def hex_signature(value: str | None, digest: str) -> bytes:
    """Decode a hex signature header of the digest's length; raise SignatureInvalid otherwise."""
    if value is None:
        raise SignatureInvalid("signature header missing")
    size = hashlib.new(digest).digest_size
    try:
        decoded = bytes.fromhex(value.strip())
    except ValueError:
        raise SignatureInvalid("signature is not hexadecimal") from None
    if len(decoded) != size:
        raise SignatureInvalid("signature has the wrong length")
    return decoded


def b64_signature(value: str) -> bytes:
    """Decode one base64 signature strictly; raise SignatureInvalid otherwise."""
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SignatureInvalid("signature is not base64") from None


def check_tolerance(signed_at_s: float, now_s: float, tolerance_s: int) -> None:
    """Raise TimestampOutOfTolerance unless the signed time is within tolerance of now."""
    if signed_at_s < now_s - tolerance_s:
        raise TimestampOutOfTolerance("signed timestamp is too old")
    if signed_at_s > now_s + tolerance_s:
        raise TimestampOutOfTolerance("signed timestamp is in the future")


def unix_seconds(value: str | None) -> int:
    """Parse a signed Unix-seconds header value; raise SignatureInvalid when it is not one."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 12:
        raise SignatureInvalid("signature timestamp missing or malformed")
    return int(value)


def load_json_object(body: bytes) -> dict[str, Any]:
    """Parse a UTF-8 JSON object; raise MalformedPayload for anything else."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayload("body is not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise MalformedPayload("body is not a JSON object")
    return data


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def dig(data: Any, *path: str | int) -> Any:
    """The value at `path` inside nested dicts and lists, or None where any step is missing."""
    for step in path:
        if isinstance(step, str) and isinstance(data, dict):
            data = data.get(step)
        elif isinstance(step, int) and isinstance(data, list) and -len(data) <= step < len(data):
            data = data[step]
        else:
            return None
    return data


def identifier(value: object, what: str) -> str:
    """A gateway id (string or integer) as text; raise MalformedPayload when absent or absurd."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**30:
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= ID_LENGTH_MAX and value.isprintable():
        return value
    raise MalformedPayload(f"{what} missing or malformed")


def optional_identifier(value: object) -> str | None:
    """Like `identifier`, but None for an absent, empty or unusable value."""
    try:
        return identifier(value, "id")
    except MalformedPayload:
        return None


def text(value: object, what: str) -> str:
    """A required non-empty string; raise MalformedPayload otherwise."""
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{what} missing or not text")
    return value


def currency_code(value: object) -> str:
    """An ISO 4217 code (gateways that send lower case are accepted); else MalformedPayload."""
    if not isinstance(value, str) or len(value) != 3:
        raise MalformedPayload("currency missing or malformed")
    try:
        return validate_currency(value.upper())
    except MoneyError:
        raise MalformedPayload("currency is not an ISO 4217 code") from None


def amount_minor(value: object) -> int:
    """A positive integer of minor units within the ledger's bounds; else MalformedPayload."""
    try:
        return validate_amount_minor(value)
    except MoneyError:
        raise MalformedPayload("amount is not a positive integer of minor units") from None


def amount_from_major(value: object, currency: str) -> int:
    """Minor units from a plain major-unit decimal string ("10.50"); else MalformedPayload."""
    if not isinstance(value, str) or value != value.strip():
        raise MalformedPayload("amount missing or not a plain decimal")
    try:
        return amount_minor(Money.parse(value, currency).amount_minor)
    except MoneyError:
        raise MalformedPayload("amount is not a plain decimal of this currency") from None


def payment_method(value: object) -> str | None:
    """The method name lower-cased, "google_pay" for any of Google Pay's names, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    name = value.strip().lower().replace(" ", "_").replace("-", "_")[:64]
    if name in _GOOGLE_PAY_NAMES or name.startswith(("googlepay_", "paywithgoogle_")):
        return "google_pay"
    return name


def epoch_time(value: object) -> datetime | None:
    """An aware UTC datetime from Unix seconds, or None when absent or implausible."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**33:
        return datetime.fromtimestamp(value, UTC)
    return None


def iso_time(value: object) -> datetime | None:
    """An aware datetime from ISO 8601 text, or None when absent, naive or unreadable.

    Event times are informative, so an odd format does not reject an otherwise valid event.
    """
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def ignored(
    gateway: str, event_id: str, occurred_at: datetime | None, payload: Any
) -> GatewayEvent:
    """An event the product does not act on: only its id, time and payload are kept."""
    return GatewayEvent(
        gateway=gateway,
        event_id=event_id,
        kind=EventKind.OTHER,
        payment_id=None,
        amount_minor=None,
        currency=None,
        reference=None,
        payment_method=None,
        occurred_at=occurred_at,
        payload=payload,
    )
