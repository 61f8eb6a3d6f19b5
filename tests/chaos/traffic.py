"""The gateways' side of the chaos run: client threads sending the plan's requests in order,
pausing at a gate until the next fault has begun, and recording every answer.

Events are signed when first sent; their copies repeat the same event. A refund goes out once
its capture is credited, as a refund follows a payment: until then it waits at the back of the
queue and its client goes on with other requests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import psycopg

from tests.chaos.client import Delivery, Gateway
from tests.chaos.plan import Event, Forgery, Plan, Send
from tests.chaos.signing import Signed, Signer

logger = logging.getLogger(__name__)

POLL_S = 0.1
REFUND_ASK_EVERY_S = 0.2
REFUND_WAIT_S = 300


class Traffic:
    def __init__(
        self, plan: Plan, gateway: Gateway, signer: Signer, database_url: str, first_gate: float
    ) -> None:
        self.plan = plan
        self.gateway = gateway
        self.signer = signer
        self._url = database_url
        #: (event number, copy) -> what that copy heard; the faults' probes record here too.
        self.deliveries: dict[tuple[int, int], Delivery] = {}
        self.forged: list[Delivery] = []
        self.failures: list[str] = []
        self.over = threading.Event()
        self.abort = threading.Event()  # the run is cut short: clients stop, waits end
        self._queue = deque(plan.sends)
        self._handed = 0
        self._gate = round(first_gate * len(plan.sends))
        self._changed = threading.Condition()
        self._deferred_in_a_row = 0
        self._payments: set[tuple[str, str]] = set()
        self._payments_lock = threading.Lock()
        self._credited: dict[int, str] = {}  # refund number -> the payment its capture credited
        self._asked: dict[int, float] = {}  # when each refund's capture was last looked up
        self._deferred_since: dict[int, float] = {}

    def open_gate(self, share: float) -> None:
        """Let the clients send up to `share` of the plan."""
        with self._changed:
            self._gate = max(self._gate, round(share * len(self.plan.sends)))
            self._changed.notify_all()

    def wait_at_gate(self) -> bool:
        """Wait until the clients have sent everything the gate lets through; False if the run
        was cut short."""
        with self._changed:
            while not self._changed.wait_for(lambda: self._handed >= self._gate, timeout=POLL_S):
                if self.abort.is_set():
                    return False
        return True

    def run(self, clients: int) -> None:
        """Send the whole plan with `clients` threads; returns when every request is answered."""
        threads = [
            threading.Thread(target=self._client, name=f"gateway-{n}", daemon=True)
            for n in range(clients)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            self.abort.set()
            raise
        finally:
            self.over.set()

    def _client(self) -> None:
        while (send := self._take()) is not None:
            try:
                if isinstance(send.item, Forgery):
                    self.forged.append(self._forge(send.item))
                    continue
                signed = self.sign(send.item)
                delivery = self.deliveries.setdefault((send.item.number, send.copy), Delivery())
                self.gateway.deliver(
                    signed.gateway, lambda s=signed: self.signer.attempt(s), delivery
                )
            except Exception as exc:  # the client goes on; the run reports it
                logger.exception("A gateway client failed.")
                self.failures.append(f"a gateway client failed: {exc}")

    def _take(self) -> Send | None:
        """The next request to make, None when there is none left."""
        while not self.abort.is_set():
            with self._changed:
                if not self._queue:
                    return None
                if self._handed >= self._gate:  # the next fault comes first
                    self._changed.wait(POLL_S)
                    continue
                send = self._queue.popleft()
                if self._ready(send):
                    self._deferred_in_a_row = 0
                    self._handed += 1
                    self._changed.notify_all()
                    return send
                if self._waited_too_long(send):
                    continue
                self._queue.append(send)
                self._deferred_in_a_row += 1
                nothing_ready = self._deferred_in_a_row > len(self._queue)
            if nothing_ready:
                time.sleep(POLL_S)
        return None

    def _ready(self, send: Send) -> bool:
        """Anything but a refund of a capture not credited yet can go out."""
        item = send.item
        if isinstance(item, Forgery) or item.kind == "capture" or item.number in self._credited:
            return True
        now = time.monotonic()
        if now < self._asked.get(item.number, 0.0) + REFUND_ASK_EVERY_S:
            return False
        self._asked[item.number] = now
        payment_id = self._credited_payment(item)
        if payment_id is None:
            return False
        self._credited[item.number] = payment_id
        return True

    def _waited_too_long(self, send: Send) -> bool:
        """Give up a refund whose capture is still not credited after REFUND_WAIT_S."""
        assert isinstance(send.item, Event)
        first = self._deferred_since.setdefault(send.item.number, time.monotonic())
        if time.monotonic() - first < REFUND_WAIT_S:
            return False
        self.failures.append(
            f"refund #{send.item.number} not sent: its capture of top-up {send.item.topup.id}"
            f" was not credited within {REFUND_WAIT_S} s"
        )
        return True

    def sign(self, event: Event) -> Signed:
        """The event's request, signed when first needed; every copy repeats it."""
        with event.lock:
            if event.signed is None:
                event.signed = (
                    self._sign_capture(event)
                    if event.kind == "capture"
                    else self._sign_refund(event)
                )
            return event.signed

    def _sign_capture(self, event: Event) -> Signed:
        # Payment ids are drawn at random by the samples: never let two top-ups share one.
        while True:
            signed = self.signer.capture(
                event.gateway,
                amount_minor=event.amount_minor,
                reference=event.topup.id,
                event_id=event.event_id(),
            )
            with self._payments_lock:
                key = (event.gateway, str(signed.payment_id))
                if key not in self._payments:
                    self._payments.add(key)
                    return signed

    def _sign_refund(self, event: Event) -> Signed:
        return self.signer.refund(
            event.gateway,
            payment_id=self._credited[event.number],
            amount_minor=event.amount_minor,
            reference=event.topup.id,
            event_id=event.event_id(),
        )

    def _forge(self, forgery: Forgery) -> Delivery:
        sample = self.signer.forged(
            forgery.gateway,
            forgery.how,
            amount_minor=forgery.target.amount_minor,
            reference=forgery.target.id,
            other_reference=forgery.other.id,
        )
        return self.gateway.deliver(forgery.gateway, lambda: sample, Delivery())

    def _credited_payment(self, event: Event) -> str | None:
        """The gateway payment that credited the event's top-up, None while it is not."""
        try:
            with psycopg.connect(self._url, connect_timeout=2) as connection:
                row = connection.execute(
                    "SELECT payment_id FROM topups WHERE id = %s AND status = 'succeeded'",
                    (event.topup.id,),
                ).fetchone()
        except psycopg.OperationalError:
            return None  # PostgreSQL is restarting; ask again
        return None if row is None else str(row[0])
