"""Rate limiting of the service API: one budget per token subject, shared by every /api/ route.

Design. Flask-Limiter checks limits in a `before_request` hook, before any view runs, so the key
function cannot wait for `requires` to authenticate. It asks `auth.principal_or_none()`, which
verifies the bearer token (one HMAC or signature check) and keeps the outcome for the request,
so `requires` then reuses it instead of verifying again. A valid token is keyed by its `sub`
(all of one service's processes share its budget); an absent or bad token by the client address
(honouring TRUSTED_PROXY_COUNT), so floods of 401s are bounded too. Counting before the view
means a refused request (401, 403, 4xx) spends budget as well: a client that loops on errors is
throttled like any other.

Which requests are limited is decided by path, not by blueprint registration: a request whose
path starts with `/api/` is limited, everything else is exempt without touching the storage:
webhooks (a throttled gateway retries harder), /healthz, /readyz, /metrics (Prometheus must
never be refused a scrape) and /openapi.json. So the API blueprint needs no registration with
the limiter: mount it under `url_prefix="/api/v1"` and call, in create_app, after registering
blueprints:

    auth.init_auth(app, settings)
    ratelimit.init_rate_limiting(app, settings)

The limit is one application-wide `API_RATE_LIMIT` (default "600/minute") per key across all
/api/ routes, counted in a moving window (exact; no double burst at a window boundary). A
breach answers 429 as a problem document with `Retry-After` in seconds, from this module's
error handler (more specific than the app's HTTPException handler).

Storage is `RATE_LIMIT_STORAGE_URL`, else the `BROKER_URL` Redis, else (an AMQP broker)
per-process memory, with a warning at start. Fail open: when the storage does not answer (1 s
timeouts), Flask-Limiter logs a warning once, keeps counting in per-process memory (the same
limit, per process instead of shared) and retries the storage with exponential backoff; any
other limiter error is logged and swallowed. A limiter fault never fails a request.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import time
import urllib.parse

from flask import Flask, Response, request
from flask_limiter import Limiter, RateLimitExceeded

from webhook_receiver import auth
from webhook_receiver.problem import problem
from webhook_receiver.settings import ReceiverSettings

logger = logging.getLogger(__name__)

API_PATH_PREFIX = "/api/"
KEY_PREFIX = "walletpipe"
STRATEGY = "moving-window"
STORAGE_TIMEOUT_S = 1
_REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel")


def init_rate_limiting(
    app: Flask, settings: ReceiverSettings, *, key_prefix: str = KEY_PREFIX
) -> Limiter:
    """Limit every /api/ request of `app` per token subject; returns the Limiter.

    Call after `auth.init_auth(app, settings)` (RuntimeError otherwise). `key_prefix` separates
    the counters of several apps sharing one Redis (tests use a unique one).
    """
    auth.app_verifier(app)  # the key function authenticates with it
    storage = storage_url(settings)
    limiter = Limiter(
        key_func=functools.partial(_key, settings.trusted_proxy_count),
        application_limits=[settings.api_rate_limit],
        storage_uri=storage,
        storage_options=_storage_options(storage),
        strategy=STRATEGY,
        key_prefix=key_prefix,
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,
    )
    limiter.request_filter(is_exempt)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, functools.partial(_too_many_requests, limiter))
    logger.info(
        "API rate limit %s per token subject, stored in %s.",
        settings.api_rate_limit,
        _where(storage),
    )
    return limiter


def storage_url(settings: ReceiverSettings) -> str:
    """Where the counters live: RATE_LIMIT_STORAGE_URL, the Redis broker, or process memory."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    if urllib.parse.urlsplit(settings.broker_url).scheme in _REDIS_SCHEMES:
        return settings.broker_url
    logger.warning(
        "The broker is not Redis and RATE_LIMIT_STORAGE_URL is not set: "
        "API rate limits are counted per process."
    )
    return "memory://"


def is_exempt() -> bool:
    """Whether the current request is outside the API's rate limit (anything not /api/)."""
    return not request.path.startswith(API_PATH_PREFIX)


def _key(trusted_proxy_count: int) -> str:
    principal = auth.principal_or_none()
    if principal is not None:
        return f"sub:{principal.subject}"
    return f"addr:{_client_address(trusted_proxy_count)}"


def _client_address(trusted_proxy_count: int) -> str:
    candidate = request.remote_addr
    if trusted_proxy_count:
        hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
        # Each trusted proxy appends the address it saw; earlier entries can be forged.
        candidate = hops[-trusted_proxy_count] if len(hops) >= trusted_proxy_count else None
    try:
        return str(ipaddress.ip_address(candidate or ""))
    except ValueError:
        return "unknown"


def _too_many_requests(limiter: Limiter, error: RateLimitExceeded) -> Response:
    retry_after_s = _retry_after_s(limiter, error)
    principal = auth.principal_or_none()
    logger.info(
        "API rate limit %s exceeded by %s.",
        error.limit.limit,
        principal.subject if principal else "an unauthenticated client",
    )
    response = problem(
        429,
        "Too many requests",
        f"more than {error.limit.limit} requests for this token; retry in {retry_after_s} s",
    )
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def _retry_after_s(limiter: Limiter, error: RateLimitExceeded) -> int:
    window_s = int(error.limit.limit.get_expiry())
    breached = limiter.current_limit
    if breached is None:
        return window_s
    try:
        reset_at = breached.reset_at
    except Exception:  # the storage failed between the check and now: the window is the bound
        logger.warning("Cannot read the rate limit window; answering its length.", exc_info=True)
        return window_s
    return max(1, min(window_s, math.ceil(reset_at - time.time())))


def _storage_options(storage: str) -> dict[str, str | int]:
    if urllib.parse.urlsplit(storage).scheme in _REDIS_SCHEMES:
        return {"socket_connect_timeout": STORAGE_TIMEOUT_S, "socket_timeout": STORAGE_TIMEOUT_S}
    return {}


def _where(storage: str) -> str:
    parts = urllib.parse.urlsplit(storage)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
