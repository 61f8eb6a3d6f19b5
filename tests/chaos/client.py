"""HTTP clients of the chaos run: a gateway delivering webhooks, and a service calling /api/v1.

A gateway retries what was not acknowledged (503, another 5xx, a broken connection, a
timeout) with exponential backoff, for a bounded time, as the real ones do for hours; it stops
at any other answer. Every attempt is recorded, so the run can say what each one heard.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from webhook_receiver.gateways.base import SignedSample

REQUEST_TIMEOUT_S = 10
BACKOFF_S_MIN = 0.05
BACKOFF_S_MAX = 1.0
_ANSWER_BYTES_MAX = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """One attempt: the HTTP status (None for a broken connection) and the answer's status."""

    status: int | None
    outcome: str | None
    at_s: float

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retried(self) -> bool:
        """Whether a gateway tries again after this answer."""
        return self.status is None or self.status >= 500


@dataclass
class Delivery:
    """Every attempt at delivering one request, in order."""

    answers: list[Answer] = field(default_factory=list)

    @property
    def final(self) -> Answer:
        return self.answers[-1]


class Gateway:
    """Posts signed webhooks to the receiver at `url` until acknowledged or `retry_for_s` ends."""

    def __init__(self, url: str, *, retry_for_s: float, seed: int) -> None:
        self._url = url
        self._retry_for_s = retry_for_s
        self._jitter = random.Random(seed)
        self._lock = threading.Lock()
        #: How many answers of each status (None: a broken connection) every client heard.
        self.heard: Counter[int | None] = Counter()

    def post_once(self, gateway: str, sample: SignedSample) -> Answer:
        answer = self._post(gateway, sample)
        with self._lock:
            self.heard[answer.status] += 1
        return answer

    def count(self, *statuses: int | None) -> int:
        with self._lock:
            return sum(self.heard[status] for status in statuses)

    def _post(self, gateway: str, sample: SignedSample) -> Answer:
        request = urllib.request.Request(  # noqa: S310 (the local receiver)
            f"{self._url}/webhooks/{gateway}",
            data=sample.body,
            headers={**sample.headers, "Content-Type": sample.content_type},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:  # noqa: S310
                return Answer(answer.status, _outcome(answer.read(_ANSWER_BYTES_MAX)), _now())
        except urllib.error.HTTPError as answer:
            return Answer(answer.code, _outcome(answer.read(_ANSWER_BYTES_MAX)), _now())
        except OSError:  # refused, reset, timed out
            return Answer(None, None, _now())

    def deliver(
        self, gateway: str, attempt: Callable[[], SignedSample], delivery: Delivery
    ) -> Delivery:
        """Post `attempt()` until an answer a gateway does not retry, or until the retry time
        is up."""
        deadline = time.monotonic() + self._retry_for_s
        backoff_s = BACKOFF_S_MIN
        while True:
            delivery.answers.append(self.post_once(gateway, attempt()))
            if not delivery.final.retried or time.monotonic() > deadline:
                return delivery
            time.sleep(backoff_s * (0.5 + self._jitter.random()))
            backoff_s = min(2 * backoff_s, BACKOFF_S_MAX)


def _outcome(body: bytes) -> str | None:
    if body.strip() == b"[accepted]":  # Adyen's acknowledgement
        return "[accepted]"
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("status") if isinstance(document, dict) else None


def _now() -> float:
    return time.monotonic()


class Api:
    """A service calling /api/v1 with one bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._token = token

    def post(self, path: str, body: object) -> dict[str, object]:
        """POST `body`; the answer, or RuntimeError naming the status and the problem."""
        request = urllib.request.Request(  # noqa: S310 (the local receiver)
            f"{self._url}/api/v1{path}",
            method="POST",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:  # noqa: S310
                result: dict[str, object] = json.load(answer)
                return result
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"POST {path}: {error.code} {error.read()[:500]!r}") from None
