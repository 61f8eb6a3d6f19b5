"""The chaos run's script, drawn from a seed: which top-ups exist, which events the gateways
send for them, how often, in which order, and which requests are forgeries.

Each gateway's wallets get their top-ups unevenly (a third on one hot wallet). An event is a
capture of a top-up's full amount, or a refund (full or partial) of an earlier capture. About
30% of events go out two or three times: half of those copies right behind the first (so they
race it), half later. Forgeries target top-ups of their own that no genuine event names, so
"they changed nothing" can be checked.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from tests.chaos.signing import CURRENCIES, REFUNDING, TIMED, Signed

AMOUNT_MINOR_MIN = 100
AMOUNT_MINOR_MAX = 99_999
HOT_SHARE = 1 / 3
CAPTURES_PER_WALLET = 10
FORGERY_KINDS = ("wrong-secret", "tampered", "stale")


@dataclass(frozen=True)
class ChaosSize:
    """How big a run is; every share is of the genuine events."""

    events: int
    duplicate_share: float = 0.3
    refund_share: float = 0.1
    forged_share: float = 0.05
    seed: int = 1


@dataclass
class Wallet:
    gateway: str
    currency: str
    id: str = ""


@dataclass
class Topup:
    wallet: Wallet
    amount_minor: int
    id: str = ""

    @property
    def gateway(self) -> str:
        return self.wallet.gateway


@dataclass
class Event:
    """One genuine gateway event, signed when first sent (its copies repeat those bytes)."""

    number: int
    kind: str  # "capture" or "refund"
    topup: Topup
    amount_minor: int
    copies: int
    signed: Signed | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def gateway(self) -> str:
        return self.topup.gateway

    def event_id(self) -> str:
        """An id unique in the run, of the form the gateway uses for its event ids."""
        base = {"paystack": 10**9, "adyen": 10**15, "payfast": 10**7}.get(self.gateway)
        return str(base + self.number) if base else f"evt_chaos_{self.number:08d}"


@dataclass(frozen=True)
class Forgery:
    """A request the receiver must refuse: `how` for `target`, tampered toward `other`."""

    how: str
    target: Topup
    other: Topup

    @property
    def gateway(self) -> str:
        return self.target.gateway


@dataclass(frozen=True)
class Send:
    """One request in the run's order: copy `copy` of an event, or a forgery."""

    item: Event | Forgery
    copy: int = 0


@dataclass
class Plan:
    wallets: list[Wallet]
    topups: list[Topup]  # every top-up made through the API, forged targets included
    events: list[Event]
    forgeries: list[Forgery]
    forged_topups: list[Topup]  # named by forgeries only
    sends: list[Send]
    # Captures the faults send themselves: one each, on wallets of the plan.
    probes: dict[str, Event]


def draw(size: ChaosSize) -> Plan:
    """The run's script for `size`, the same for the same seed."""
    rng = random.Random(size.seed)
    gateways = list(CURRENCIES)
    refunds = round(size.events * size.refund_share)
    captures = size.events - refunds
    per_gateway = max(2, captures // (len(gateways) * CAPTURES_PER_WALLET))
    wallets = [Wallet(g, CURRENCIES[g]) for g in gateways for _ in range(per_gateway)]
    by_gateway = {g: [w for w in wallets if w.gateway == g] for g in gateways}

    def new_topup(gateway: str) -> Topup:
        choices = by_gateway[gateway]
        wallet = choices[0] if rng.random() < HOT_SHARE else rng.choice(choices)
        return Topup(wallet, rng.randint(AMOUNT_MINOR_MIN, AMOUNT_MINOR_MAX))

    def copies() -> int:
        return rng.choice((2, 3)) if rng.random() < size.duplicate_share else 1

    topups: list[Topup] = []
    events: list[Event] = []
    for number in range(captures):
        topup = new_topup(gateways[number % len(gateways)])
        topups.append(topup)
        events.append(Event(number, "capture", topup, topup.amount_minor, copies()))
    # Refunds reverse captures of the first half, and go out in the second half of the run.
    refundable = [e for e in events[: max(1, captures // 2)] if e.gateway in REFUNDING]
    for number, capture in enumerate(rng.sample(refundable, min(refunds, len(refundable)))):
        full = rng.random() < 0.5
        amount = capture.amount_minor if full else rng.randint(1, capture.amount_minor - 1)
        events.append(Event(captures + number, "refund", capture.topup, amount, copies()))

    forgeries = []
    forged_topups: list[Topup] = []
    # At least one forgery of every kind for every gateway.
    least = len(gateways) * len(FORGERY_KINDS)
    for n in range(max(least, round(size.events * size.forged_share))):
        gateway, turn = gateways[n % len(gateways)], n // len(gateways)
        kinds = [k for k in FORGERY_KINDS if k != "stale" or gateway in TIMED]
        # The tampered body names `other` instead: a second top-up that nothing pays either.
        target, other = new_topup(gateway), new_topup(gateway)
        forged_topups += [target, other]
        forgeries.append(Forgery(kinds[turn % len(kinds)], target, other))
    topups.extend(forged_topups)

    probes = {}
    for number, fault in enumerate(("worker", "broker", "database"), start=len(events)):
        topup = Topup(by_gateway["stripe"][-1], rng.randint(AMOUNT_MINOR_MIN, AMOUNT_MINOR_MAX))
        topups.append(topup)
        probes[fault] = Event(number, "capture", topup, topup.amount_minor, 1)

    keyed: list[tuple[float, Send]] = []
    span = len(events)
    for event in events:
        first = event.number if event.kind == "capture" else rng.uniform(span / 2, span)
        keyed.append((first, Send(event)))
        racing = rng.random() < 0.5
        for copy in range(1, event.copies):
            later = 0.001 * copy if racing else rng.uniform(1, max(2, span * 0.3))
            keyed.append((first + later, Send(event, copy)))
    keyed.extend((rng.uniform(0, span), Send(forgery)) for forgery in forgeries)
    keyed.sort(key=lambda pair: pair[0])
    sends = [send for _, send in keyed]
    return Plan(wallets, topups, events, forgeries, forged_topups, sends, probes)
