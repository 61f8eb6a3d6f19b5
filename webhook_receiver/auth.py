"""Bearer-token authentication for /api/v1: verify a JWT, name its principal, check its scopes.

Keys: HS256 with any of `WALLETPIPE_JWT_SECRET` (comma-separated, newest rotation last; the
newest is the one `mint_token` and `walletctl token` sign with, as `walletctl webhook send` does
for gateways), and/or RS256 or ES256 with the PEM keys of `WALLETPIPE_JWT_PUBLIC_KEY` (an RSA key
verifies RS256 only, an EC P-256 key ES256 only). The algorithm a token names selects the keys
it is tried against, and each key is passed to PyJWT with its one algorithm, so `alg: none` and
an HS256 token signed with a public key's text are refused (algorithm confusion).

Wiring: `create_app` calls `init_auth(app, settings)` once (it logs how tokens are verified, or
warns that the API answers 401 to everything); views use `@requires(scope)`, then
`current_principal()`. A token is verified at most once per request: the rate limiter's key
function (`principal_or_none`) and `requires` share the result.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Flask, current_app, g, request

from webhook_receiver.errors import Forbidden, Unauthorized
from webhook_receiver.settings import ReceiverSettings

logger = logging.getLogger(__name__)

ADMIN = "admin"
#: Every scope a token may carry (docs/api.md); `admin` implies all others.
SCOPES = frozenset(
    {
        "wallets:read",
        "wallets:write",
        "orders:write",
        "provisioning:write",
        "billing:write",
        ADMIN,
    }
)
TOKEN_CHARS_MAX = 8192
CLAIM_CHARS_MAX = 255
RSA_KEY_BITS_MIN = 2048
TTL_S_MAX = 31 * 86_400
NOT_CONFIGURED = (
    "the service API is not configured: set WALLETPIPE_JWT_SECRET or WALLETPIPE_JWT_PUBLIC_KEY"
)

_EXTENSION = "walletpipe.auth"
_OUTCOME = "_walletpipe_auth_outcome"
# JWS compact serialisation: three base64url parts; the signature is empty only for alg none.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

# PyJWT >= 2.10 checks that sub is a string itself; older versions leave it to _principal.
_INVALID_SUBJECT: Any = getattr(jwt, "InvalidSubjectError", ())

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for, and what it may do."""

    subject: str
    scopes: frozenset[str]
    #: The tenant the token is bound to; None for a token that may see every owner.
    owner_id: str | None = None

    def has(self, scope: str) -> bool:
        """Whether the token grants `scope`; `admin` grants every scope."""
        return scope in self.scopes or ADMIN in self.scopes


def sees_owner(principal: Principal, owner_id: str | None) -> bool:
    """Whether `principal` may see resources of `owner_id`: unbound tokens see every owner."""
    return principal.owner_id is None or principal.owner_id == owner_id


@dataclass(frozen=True)
class _Key:
    algorithm: str
    key: Any  # bytes for HS256, a cryptography public key otherwise


class TokenVerifier:
    """The configured keys, loaded once; turns an Authorization header into a Principal.

    Raises ValueError, naming WALLETPIPE_JWT_PUBLIC_KEY, when a configured key is unusable.
    """

    def __init__(self, settings: ReceiverSettings) -> None:
        keys = [_Key("HS256", secret.encode()) for secret in settings.jwt_secrets]
        keys += [_public_key(pem) for pem in settings.jwt_public_keys]
        self._keys = tuple(keys)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway_s = settings.jwt_leeway_s
        self.algorithms = tuple(sorted({key.algorithm for key in keys}))

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def describe(self) -> str:
        """One line for the start-up log: algorithms and key counts, never a key."""
        if not self.configured:
            return NOT_CONFIGURED
        counts = ", ".join(
            f"{algorithm} with {sum(k.algorithm == algorithm for k in self._keys)} key(s)"
            for algorithm in self.algorithms
        )
        checks = [f"aud={self._audience!r}"] if self._audience else []
        checks += [f"iss={self._issuer!r}"] if self._issuer else []
        return f"API tokens verified by {counts}; " + (", ".join(checks) or "no aud/iss check")

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer <JWT>` header value.

        Raises Unauthorized saying, in plain words, what is wrong; the detail never holds the
        token.
        """
        if not self.configured:
            raise Unauthorized(NOT_CONFIGURED)
        return self.verify(_bearer_token(authorization))

    def verify(self, token: str) -> Principal:
        """The principal of a compact JWT; raises Unauthorized."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise Unauthorized("the bearer token is not a well-formed JWT") from None
        candidates = [key for key in self._keys if key.algorithm == algorithm]
        if not candidates:
            raise Unauthorized(
                "the token's signing algorithm is not accepted here "
                f"(accepted: {', '.join(self.algorithms)})"
            )
        for candidate in candidates:
            try:
                claims = self._decode(token, candidate)
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as exc:
                raise Unauthorized(_reason(exc)) from None
            return _principal(claims)
        raise Unauthorized("the token's signature matches none of the configured keys")

    def _decode(self, token: str, candidate: _Key) -> dict[str, Any]:
        required = ["exp", "sub"]
        required += ["aud"] if self._audience else []
        required += ["iss"] if self._issuer else []
        claims: dict[str, Any] = jwt.decode(
            token,
            candidate.key,
            algorithms=[candidate.algorithm],
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway_s,
            options={"require": required, "verify_aud": self._audience is not None},
        )
        return claims


def init_auth(app: Flask, settings: ReceiverSettings) -> TokenVerifier:
    """Load the keys for `app`'s requests and log how tokens are verified (call in create_app).

    Without a secret or public key this warns once and every API call answers 401. Raises
    ValueError when a configured public key is unusable, so a bad key stops the start.
    """
    verifier = TokenVerifier(settings)
    if verifier.configured:
        logger.info("%s.", verifier.describe())
    else:
        logger.warning("%s; every /api/v1 call answers 401.", NOT_CONFIGURED)
    app.extensions[_EXTENSION] = verifier
    return verifier


def app_verifier(app: Flask) -> TokenVerifier:
    """The verifier `init_auth` installed on `app`; RuntimeError when it was not called."""
    verifier = app.extensions.get(_EXTENSION)
    if not isinstance(verifier, TokenVerifier):
        raise RuntimeError("call webhook_receiver.auth.init_auth(app, settings) in create_app")
    return verifier


def describe_configuration(settings: ReceiverSettings) -> str:
    """One line saying how API tokens are verified with `settings` (or that they cannot be)."""
    return TokenVerifier(settings).describe()


def authenticate(settings: ReceiverSettings) -> Principal:
    """The principal of the current request's bearer token, verified with `settings`' keys.

    Raises Unauthorized. Views use `requires`, which reuses the keys `init_auth` loaded.
    """
    return _verifier_for(settings).authenticate(request.headers.get("Authorization"))


def principal_or_none() -> Principal | None:
    """The current request's principal, or None when its token is absent or bad; never raises.

    The outcome is kept for the request, so `requires` does not verify the token again.
    """
    try:
        return _request_principal()
    except Unauthorized:
        return None


def requires(scope: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a view: authenticate the request, set `g.principal`, demand `scope`.

    Raises Unauthorized (401) for a missing or bad token and Forbidden (403), naming the scope,
    when the token lacks it. An unknown `scope` is a ValueError at import time.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; the scopes are {' '.join(sorted(SCOPES))}")

    def decorate(view: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(view)
        def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            principal = _request_principal()
            g.principal = principal
            if not principal.has(scope):
                raise Forbidden(f"this token lacks the {scope} scope")
            return view(*args, **kwargs)

        return guarded

    return decorate


def current_principal() -> Principal:
    """The principal `requires` authenticated for this request.

    Raises RuntimeError in a view that is not decorated with `requires` (a programming error).
    """
    principal = g.get("principal")
    if not isinstance(principal, Principal):
        raise RuntimeError("current_principal() needs a view decorated with @requires(scope)")
    return principal


def mint_token(
    settings: ReceiverSettings,
    *,
    subject: str,
    scopes: str | Iterable[str],
    owner_id: str | None = None,
    ttl_s: int = 3600,
    now: datetime | None = None,
) -> str:
    """An HS256 token signed with the newest (last) WALLETPIPE_JWT_SECRET.

    `scopes` is a space-separated string or an iterable of scope words. Raises ValueError, saying
    what to change, when no secret is configured (public-key deployments mint their tokens with
    their identity provider), a scope is unknown, or subject, owner_id or ttl_s is out of bounds.
    """
    if not settings.jwt_secrets:
        raise ValueError(
            "WALLETPIPE_JWT_SECRET is not set: set it to the secret the receiver uses "
            "(deployments that use WALLETPIPE_JWT_PUBLIC_KEY mint tokens with their own issuer)"
        )
    words = scopes.split() if isinstance(scopes, str) else list(scopes)
    unknown = sorted(set(words) - SCOPES)
    if unknown:
        raise ValueError(
            f"unknown scope(s) {' '.join(unknown)}; the scopes are {' '.join(sorted(SCOPES))}"
        )
    _check_claim("sub", subject)
    if owner_id is not None:
        _check_claim("owner_id", owner_id)
    if not 1 <= ttl_s <= TTL_S_MAX:
        raise ValueError(f"ttl_s must be between 1 and {TTL_S_MAX} seconds (31 days)")
    issued_at = int((now or datetime.now(UTC)).timestamp())
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": " ".join(dict.fromkeys(words)),
        "iat": issued_at,
        "exp": issued_at + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if owner_id is not None:
        claims["owner_id"] = owner_id
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secrets[-1], algorithm="HS256")


def _request_principal() -> Principal:
    outcome = g.get(_OUTCOME)
    if outcome is None:
        try:
            verifier = app_verifier(current_app)
            outcome = verifier.authenticate(request.headers.get("Authorization"))
        except Unauthorized as exc:
            outcome = exc
        setattr(g, _OUTCOME, outcome)
    if isinstance(outcome, Unauthorized):
        raise Unauthorized(str(outcome))
    assert isinstance(outcome, Principal)
    return outcome


@functools.lru_cache(maxsize=8)
def _verifier_for(settings: ReceiverSettings) -> TokenVerifier:
    return TokenVerifier(settings)


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("no Authorization header: send `Authorization: Bearer <token>`")
    if len(authorization) > TOKEN_CHARS_MAX + len("Bearer "):
        raise Unauthorized(f"the bearer token is longer than {TOKEN_CHARS_MAX} characters")
    parts = authorization.split()
    if not parts or parts[0].lower() != "bearer":
        raise Unauthorized("the Authorization scheme must be Bearer")
    if len(parts) != 2:
        raise Unauthorized("send exactly one token after Bearer")
    token = parts[1]
    if not _COMPACT.fullmatch(token):
        raise Unauthorized("the bearer token is not a well-formed JWT")
    return token


def _public_key(pem: str) -> _Key:
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"WALLETPIPE_JWT_PUBLIC_KEY: a PEM block is not a public key ({exc})"
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_KEY_BITS_MIN:
            raise ValueError(
                f"WALLETPIPE_JWT_PUBLIC_KEY: an RSA key has {key.key_size} bits, "
                f"fewer than {RSA_KEY_BITS_MIN}"
            )
        return _Key("RS256", key)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return _Key("ES256", key)
    raise ValueError(
        "WALLETPIPE_JWT_PUBLIC_KEY: only RSA (RS256) and EC P-256 (ES256) keys are accepted"
    )


def _principal(claims: dict[str, Any]) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= CLAIM_CHARS_MAX:
        raise Unauthorized(
            f"the token's sub must be a non-empty string of at most {CLAIM_CHARS_MAX} characters"
        )
    owner_id = claims.get("owner_id")
    if owner_id is not None and (
        not isinstance(owner_id, str) or not 0 < len(owner_id) <= CLAIM_CHARS_MAX
    ):
        raise Unauthorized(
            "the token's owner_id must be a non-empty string of at most "
            f"{CLAIM_CHARS_MAX} characters"
        )
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise Unauthorized("the token's scope must be a space-separated string")
    # Scope words this service does not know are meant for other services: ignored.
    return Principal(subject, frozenset(scope.split()) & SCOPES, owner_id)


def _check_claim(name: str, value: str) -> None:
    if not 0 < len(value) <= CLAIM_CHARS_MAX or value != value.strip():
        raise ValueError(
            f"{name} must be 1 to {CLAIM_CHARS_MAX} characters without surrounding spaces"
        )


def _reason(error: jwt.InvalidTokenError) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "the token is not valid yet (nbf or iat is in the future)"
    if isinstance(error, jwt.InvalidAudienceError):
        return "the token's audience (aud) is not this service"
    if isinstance(error, jwt.InvalidIssuerError):
        return "the token's issuer (iss) is not the configured one"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the token has no {error.claim} claim"
    if isinstance(error, _INVALID_SUBJECT):
        return "the token's sub must be a string"
    if isinstance(error, jwt.DecodeError):
        return "the bearer token is not a well-formed JWT"
    return "the token is invalid"
