"""What every notification channel is, and the one HTTP call the outbound ones share."""

from __future__ import annotations

import abc
import json
import urllib.error
import urllib.request
from typing import Any

from ledger.outbox import Notice
from workers.errors import DeliveryFailed

_ANSWER_CHARS_MAX = 300


class Channel(abc.ABC):
    """A place notifications go. `name` is stable: deliveries are recorded under it."""

    name: str
    # Whether a send waits on the network: such sends run on the process's bounded pool, so
    # a batch's requests overlap; a channel that only writes locally runs in line.
    waits_on_network: bool = True

    def accepts(self, notice: Notice) -> bool:
        """Whether this channel has anything to say about the notice (default: everything)."""
        return True

    @abc.abstractmethod
    def send(self, notice: Notice) -> None:
        """Deliver the notice; raises DeliveryFailed when the other side did not take it."""


def post_json(
    url: str, body: bytes | dict[str, Any], *, headers: dict[str, str], timeout_s: float
) -> None:
    """POST JSON and insist on a 2xx answer; raises DeliveryFailed with what came back."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (the URL is an http(s) setting)
        url, data=data, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            answer.read(_ANSWER_CHARS_MAX)
    except urllib.error.HTTPError as exc:
        excerpt = exc.read(_ANSWER_CHARS_MAX).decode("utf-8", "replace")
        raise DeliveryFailed(f"HTTP {exc.code} from {url}: {excerpt}") from exc
    except (OSError, ValueError) as exc:  # refused, timed out, unreachable, bad URL
        raise DeliveryFailed(f"could not reach {url}: {exc}") from exc
