"""The receiver's settings: one frozen object, read from the environment once per process.

Secrets have no defaults. Every secret setting is a comma-separated list so that a secret can be
rotated: adapters accept a request signed with any of them. `repr()` never shows a secret, and
passwords inside URLs are masked.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, TypeVar, cast

import limits

from ledger.local_names import default_broker_url, default_database_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PaypalVerifyMode = Literal["offline", "postback"]

# PayFast's published ITN source ranges (developers.payfast.co.za, "ITN security checks").
PAYFAST_NETWORKS_DEFAULT: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "197.97.145.144/28",
        "41.74.179.192/27",
        "102.216.36.0/28",
        "102.216.36.128/28",
        "144.126.193.139/32",
    )
)

# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output, 256 bits.
JWT_SECRET_CHARS_MIN = 32
JWT_LEEWAY_S_DEFAULT = 30
API_RATE_LIMIT_DEFAULT = "600/minute"
RATE_LIMIT_STORAGE_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "memory")
_PEM_FILE_BYTES_MAX = 65_536
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)

_T = TypeVar("_T")


def _secret() -> tuple[str, ...]:
    # A secret field: absent from the dataclass repr; __repr__ below says only how many are set.
    return field(default=(), repr=False, metadata={"secret": True})


@dataclass(frozen=True)
class ReceiverSettings:
    """Everything the webhook receiver reads from its environment, validated.

    Build it with `from_env()`; tests may construct it directly with keyword arguments.
    """

    database_url: str = field(default_factory=default_database_url)
    database_pool_size: int = 5
    broker_url: str = field(default_factory=default_broker_url)
    razorpay_webhook_secrets: tuple[str, ...] = _secret()
    stripe_webhook_secrets: tuple[str, ...] = _secret()
    yoco_webhook_secrets: tuple[str, ...] = _secret()
    paystack_webhook_secrets: tuple[str, ...] = _secret()
    adyen_hmac_keys: tuple[str, ...] = _secret()
    payfast_passphrases: tuple[str, ...] = _secret()
    paypal_webhook_ids: tuple[str, ...] = _secret()
    payfast_allowed_networks: tuple[IPNetwork, ...] = PAYFAST_NETWORKS_DEFAULT
    trusted_proxy_count: int = 0
    webhook_tolerance_s: int = 300
    paypal_verify_mode: PaypalVerifyMode = "offline"
    paypal_client_id: str | None = None
    paypal_client_secret: str | None = field(default=None, repr=False, metadata={"secret": True})
    paypal_api_base: str = "https://api-m.paypal.com"
    max_content_length: int = 262_144
    # Group commit of the inbox: one writer a process stores the events of concurrent requests
    # together, at most this many rows a commit, waiting at most this long for more to join
    # after the first; the workers' doorbell rings at most once this often a process.
    inbox_commit_rows_max: int = 64
    inbox_commit_wait_ms: int = 2
    doorbell_interval_ms: int = 10
    # The service API's bearer tokens: HS256 secrets (newest rotation last, the one walletctl
    # signs with) and/or PEM public keys for RS256/ES256, each a PEM block.
    jwt_secrets: tuple[str, ...] = _secret()
    jwt_public_keys: tuple[str, ...] = field(default=(), repr=False, metadata={"count": True})
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_s: int = JWT_LEEWAY_S_DEFAULT
    # Per token subject, across every /api/ route; `limits` notation ("600/minute;20/second").
    api_rate_limit: str = API_RATE_LIMIT_DEFAULT
    # None: the BROKER_URL's Redis (or per-process memory when the broker is not Redis).
    rate_limit_storage_url: str | None = None

    def __post_init__(self) -> None:
        if self.paypal_verify_mode == "postback" and not (
            self.paypal_client_id and self.paypal_client_secret
        ):
            raise ValueError(
                "PAYPAL_VERIFY_MODE=postback needs PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ReceiverSettings:
        """Read and validate the settings.

        Raises ValueError naming the variable when a value is invalid.
        """

        def text(name: str, default: str) -> str:
            return environ.get(name, "").strip() or default

        def parsed(name: str, default: str, parse: Callable[[str], _T]) -> _T:
            raw = text(name, default)
            try:
                return parse(raw)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None

        return cls(
            database_url=text("DATABASE_URL", default_database_url()),
            database_pool_size=parsed("DATABASE_POOL_SIZE", "5", _bounded_int(1, 200)),
            broker_url=text("BROKER_URL", default_broker_url()),
            razorpay_webhook_secrets=_split(environ.get("RAZORPAY_WEBHOOK_SECRET", "")),
            stripe_webhook_secrets=_split(environ.get("STRIPE_WEBHOOK_SECRET", "")),
            yoco_webhook_secrets=parsed("YOCO_WEBHOOK_SECRET", "", _standard_webhooks_secrets),
            paystack_webhook_secrets=_split(environ.get("PAYSTACK_WEBHOOK_SECRET", "")),
            adyen_hmac_keys=parsed("ADYEN_HMAC_KEY", "", _hex_keys),
            payfast_passphrases=_split(environ.get("PAYFAST_PASSPHRASE", "")),
            paypal_webhook_ids=_split(environ.get("PAYPAL_WEBHOOK_ID", "")),
            payfast_allowed_networks=parsed(
                "PAYFAST_ALLOWED_NETWORKS", ",".join(map(str, PAYFAST_NETWORKS_DEFAULT)), _networks
            ),
            trusted_proxy_count=parsed("TRUSTED_PROXY_COUNT", "0", _bounded_int(0, 10)),
            webhook_tolerance_s=parsed("WEBHOOK_TOLERANCE_S", "300", _bounded_int(1, 3600)),
            paypal_verify_mode=parsed("PAYPAL_VERIFY_MODE", "offline", _verify_mode),
            paypal_client_id=environ.get("PAYPAL_CLIENT_ID", "").strip() or None,
            paypal_client_secret=environ.get("PAYPAL_CLIENT_SECRET", "").strip() or None,
            paypal_api_base=parsed("PAYPAL_API_BASE", cls.paypal_api_base, _http_base),
            max_content_length=parsed("MAX_CONTENT_LENGTH", "262144", _bounded_int(1024, 2**24)),
            inbox_commit_rows_max=parsed("INBOX_COMMIT_ROWS_MAX", "64", _bounded_int(1, 1000)),
            inbox_commit_wait_ms=parsed("INBOX_COMMIT_WAIT_MS", "2", _bounded_int(0, 100)),
            doorbell_interval_ms=parsed("DOORBELL_INTERVAL_MS", "10", _bounded_int(0, 1000)),
            jwt_secrets=parsed("WALLETPIPE_JWT_SECRET", "", _jwt_secrets),
            jwt_public_keys=parsed("WALLETPIPE_JWT_PUBLIC_KEY", "", _pem_blocks),
            jwt_audience=environ.get("WALLETPIPE_JWT_AUDIENCE", "").strip() or None,
            jwt_issuer=environ.get("WALLETPIPE_JWT_ISSUER", "").strip() or None,
            jwt_leeway_s=parsed(
                "WALLETPIPE_JWT_LEEWAY_S", str(JWT_LEEWAY_S_DEFAULT), _bounded_int(0, 300)
            ),
            api_rate_limit=parsed("API_RATE_LIMIT", API_RATE_LIMIT_DEFAULT, _rate_limit),
            rate_limit_storage_url=parsed("RATE_LIMIT_STORAGE_URL", "", _storage_url) or None,
        )

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") or f.metadata.get("count"):
                count = len(value) if isinstance(value, tuple) else int(value is not None)
                shown = f"<{count} set>"
            elif f.name.endswith("_url"):
                shown = repr(_mask_password(value))
            elif f.name == "payfast_allowed_networks":
                shown = repr(tuple(str(n) for n in value))
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"ReceiverSettings({', '.join(parts)})"

    __str__ = __repr__


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _standard_webhooks_secrets(raw: str) -> tuple[str, ...]:
    secrets = _split(raw)
    for secret in secrets:
        body = secret.removeprefix("whsec_")
        try:
            decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except binascii.Error:
            raise ValueError("each secret must be base64, optionally prefixed whsec_") from None
        if not decoded:
            raise ValueError("a secret decodes to no bytes")
    return secrets


def _hex_keys(raw: str) -> tuple[str, ...]:
    keys = _split(raw)
    for key in keys:
        try:
            decoded = bytes.fromhex(key)
        except ValueError:
            raise ValueError("each key must be hexadecimal, as Adyen shows it") from None
        if len(decoded) < 16:
            raise ValueError("a key is shorter than 16 bytes; Adyen keys are 32")
    return keys


def _jwt_secrets(raw: str) -> tuple[str, ...]:
    secrets = _split(raw)
    if any(len(secret.encode()) < JWT_SECRET_CHARS_MIN for secret in secrets):
        raise ValueError(
            f"each secret must be at least {JWT_SECRET_CHARS_MIN} bytes long "
            "(HS256 needs 256 bits); `openssl rand -hex 32` makes one"
        )
    return secrets


def _pem_blocks(raw: str) -> tuple[str, ...]:
    """PEM blocks from inline text (literal `\\n` allowed) or from the file the value names."""
    if not raw:
        return ()
    if raw.startswith("-----BEGIN"):
        text = raw.replace("\\n", "\n")
    else:
        path = Path(raw)
        try:
            if path.stat().st_size > _PEM_FILE_BYTES_MAX:
                raise ValueError(f"{raw} is larger than {_PEM_FILE_BYTES_MAX} bytes")
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not ASCII text"
            raise ValueError(
                f"neither PEM text (-----BEGIN ...) nor a readable PEM file: {raw}: {reason}"
            ) from None
    blocks = tuple(match.group(0) for match in _PEM_BLOCK.finditer(text))
    if not blocks:
        raise ValueError("no PEM block (-----BEGIN PUBLIC KEY----- ...) found")
    return blocks


def _rate_limit(raw: str) -> str:
    try:
        limits.parse_many(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a rate limit such as '600/minute'") from None
    return raw


def _storage_url(raw: str) -> str:
    if raw and urllib.parse.urlsplit(raw).scheme not in RATE_LIMIT_STORAGE_SCHEMES:
        raise ValueError(f"the scheme must be one of {', '.join(RATE_LIMIT_STORAGE_SCHEMES)}")
    return raw


def _networks(raw: str) -> tuple[IPNetwork, ...]:
    networks = tuple(ipaddress.ip_network(part) for part in _split(raw))
    if not networks:
        raise ValueError("at least one network is required")
    return networks


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not raw.isascii() or not raw.isdigit():
            raise ValueError(f"{raw!r} is not a whole number")
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _verify_mode(raw: str) -> PaypalVerifyMode:
    if raw not in ("offline", "postback"):
        raise ValueError(f"{raw!r} is neither 'offline' nor 'postback'")
    return cast(PaypalVerifyMode, raw)


def _http_base(raw: str) -> str:
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{raw!r} is not an http(s) URL")
    return raw.rstrip("/")


def _mask_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
