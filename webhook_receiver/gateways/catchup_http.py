"""GET a gateway's JSON API with a secret key, bounded in time and size."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from webhook_receiver.errors import CatchupFailed
from webhook_receiver.event import GatewayEvent

logger = logging.getLogger(__name__)

ANSWER_BYTES_MAX = 16 * 1024 * 1024
# A catch-up reads at most this many pages of one list, so a gateway that always answers
# "more" cannot keep it running forever.
PAGES_MAX = 1000

# A normalised event and the gateway object it was read from (kept as the inbox payload).
Found = tuple[GatewayEvent, dict[str, Any]]


def get_json(
    url: str, params: list[tuple[str, str]], headers: dict[str, str], *, timeout_s: float
) -> dict[str, Any]:
    """The JSON object at `url?params`; raises CatchupFailed saying what went wrong."""
    target = f"{url}?{urllib.parse.urlencode(params)}" if params else url
    request = urllib.request.Request(  # noqa: S310 (a configured http(s) base URL)
        target, headers={**headers, "Accept": "application/json"}, method="GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            raw = answer.read(ANSWER_BYTES_MAX + 1)
    except urllib.error.HTTPError as exc:
        raise CatchupFailed(
            f"{url} answered {exc.code}"
            + (": check the secret API key" if exc.code in (401, 403) else "")
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CatchupFailed(f"cannot reach {url}: {exc}") from None
    if len(raw) > ANSWER_BYTES_MAX:
        raise CatchupFailed(f"{url} answered more than {ANSWER_BYTES_MAX} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise CatchupFailed(f"{url} did not answer JSON") from None
    if not isinstance(document, dict):
        raise CatchupFailed(f"{url} did not answer a JSON object")
    return document
