"""The verdict of a chaos run, from what the gateways heard and what the ledger holds.

The database is the run's own, so every row in it was made by the run: the checks count all of
them. Each check returns the problems it found, as sentences; an empty list is a pass.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import psycopg

from tests.chaos.client import Delivery
from tests.chaos.plan import Event, Plan, Topup

SHOWN_MAX = 5


@dataclass(frozen=True)
class Heard:
    """What the gateways heard, per genuine event and per forgery."""

    events: dict[int, list[Delivery]]  # event number -> a delivery per copy sent
    forgeries: list[Delivery]

    def acknowledged(self, event: Event) -> bool:
        return any(d.answers and d.final.acknowledged for d in self.events.get(event.number, []))


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_MAX])
    return shown + (f" and {len(items) - SHOWN_MAX} more" if len(items) > SHOWN_MAX else "")


def answers(plan: Plan, heard: Heard) -> list[str]:
    """Every genuine request was acknowledged in the end, every forgery refused with 401, and
    no request was ever answered with a 5xx other than 503."""
    problems = []
    events = [*plan.events, *plan.probes.values()]
    unacknowledged = [
        f"{e.gateway} {e.kind} #{e.number} (last {d.final.status})"
        for e in events
        for d in heard.events.get(e.number, [])
        if not d.answers or not d.final.acknowledged
    ]
    if unacknowledged:
        problems.append(f"genuine requests never acknowledged: {_some(unacknowledged)}")
    missing = [f"#{e.number}" for e in events if e.number not in heard.events]
    if missing:
        problems.append(f"events never sent: {_some(missing)}")
    forged = Counter(d.final.status for d in heard.forgeries)
    if set(forged) != {401}:
        problems.append(f"forgeries were answered {dict(forged)}, not all 401")
    every = [a for ds in heard.events.values() for d in ds for a in d.answers]
    every += [a for d in heard.forgeries for a in d.answers]
    odd = Counter(a.status for a in every if a.status and a.status >= 500 and a.status != 503)
    if odd:
        problems.append(f"answers no input may cause: {dict(odd)}")
    return problems


def stored_despite_503(plan: Plan, heard: Heard) -> list[str]:
    """An event sent once whose only earlier answers were 503s must be new when acknowledged:
    a 503 means nothing was stored. (Adyen's answer does not say which; broken connections
    are ambiguous, so those deliveries are not judged.)"""
    found = []
    for event in [*plan.events, *plan.probes.values()]:
        deliveries = heard.events.get(event.number, [])
        if len(deliveries) != 1 or event.gateway == "adyen":
            continue
        *before, last = deliveries[0].answers or [None]
        if last is None or not before or not last.acknowledged:
            continue
        if all(a.status == 503 for a in before) and last.outcome == "duplicate":
            found.append(f"{event.gateway} #{event.number}")
    return [f"answered 503 but stored: {_some(found)}"] if found else []


def inbox(connection: psycopg.Connection, plan: Plan, heard: Heard) -> list[str]:
    """One inbox row per acknowledged event, no other row, and every one applied."""
    problems = []
    expected = {
        (e.gateway, e.signed.event_id)
        for e in [*plan.events, *plan.probes.values()]
        if e.signed is not None and heard.acknowledged(e)
    }
    rows = connection.execute("SELECT gateway, event_id, status FROM inbox_events").fetchall()
    stored = Counter((g, i) for g, i, _ in rows)
    twice = [f"{g}:{i}" for (g, i), n in stored.items() if n > 1]
    if twice:
        problems.append(f"events stored more than once: {_some(twice)}")
    lost = sorted(f"{g}:{i}" for g, i in expected - set(stored))
    if lost:
        problems.append(f"acknowledged events not in the inbox: {_some(lost)}")
    extra = sorted(f"{g}:{i}" for g, i in set(stored) - expected)
    if extra:
        problems.append(f"inbox rows for events never acknowledged: {_some(extra)}")
    statuses = Counter(status for _, _, status in rows)
    if set(statuses) - {"applied"}:
        problems.append(f"inbox rows not applied: {dict(statuses)}")
    return problems


def _expected(plan: Plan, heard: Heard) -> tuple[dict[str, Topup], dict[str, int], dict[str, int]]:
    """Top-ups captured, and per top-up id the amounts captured and refunded."""
    captured: dict[str, Topup] = {}
    credited: dict[str, int] = defaultdict(int)
    refunded: dict[str, int] = defaultdict(int)
    for event in [*plan.events, *plan.probes.values()]:
        if not heard.acknowledged(event):
            continue
        if event.kind == "capture":
            captured[event.topup.id] = event.topup
            credited[event.topup.id] += event.amount_minor
        else:
            refunded[event.topup.id] += event.amount_minor
    return captured, credited, refunded


def ledger(connection: psycopg.Connection, plan: Plan, heard: Heard) -> list[str]:
    """Each captured top-up credited once with its amount, refunds reversed once each, forged
    top-ups untouched, and every wallet's balance what its acknowledged events add up to."""
    problems = []
    captured, credited, refunded = _expected(plan, heard)
    topups = {
        str(i): (status, c, r)
        for i, status, c, r in connection.execute(
            "SELECT id, status, credited_minor, refunded_minor FROM topups"
        )
    }
    wrong = [
        f"{t.id} is {topups.get(t.id)}"
        for t in plan.topups
        if topups.get(t.id)
        != (
            ("succeeded", credited[t.id], refunded[t.id]) if t.id in captured else ("pending", 0, 0)
        )
    ]
    if wrong:
        problems.append(f"top-ups not as their events say: {_some(wrong)}")
    forged = {t.id for t in plan.forged_topups}
    named = connection.execute(
        "SELECT count(*) FROM inbox_events WHERE reference = ANY(%s)", (list(forged),)
    ).fetchone()
    if named and named[0]:
        problems.append(f"{named[0]} inbox rows name top-ups only forgeries named")

    balance: dict[str, int] = defaultdict(int)
    credits: dict[str, list[int]] = defaultdict(list)
    debits: dict[str, list[int]] = defaultdict(list)
    for topup_id, topup in captured.items():
        balance[topup.wallet.id] += credited[topup_id] - refunded[topup_id]
        credits[topup.wallet.id].append(credited[topup_id])
    for event in plan.events:
        if event.kind == "refund" and heard.acknowledged(event):
            debits[event.topup.wallet.id].append(event.amount_minor)
    actual = {
        str(i): (b, sorted(c or []), sorted(d or []))
        for i, b, c, d in connection.execute(
            "SELECT a.id, a.credits_posted - a.debits_posted,"
            " (SELECT array_agg(amount_minor) FROM transfers"
            "   WHERE credit_account_id = a.id AND category = 'topup'),"
            " (SELECT array_agg(amount_minor) FROM transfers"
            "   WHERE debit_account_id = a.id AND category = 'topup_reversal')"
            " FROM accounts a WHERE a.kind = 'wallet'"
        )
    }
    off = [
        f"{w.gateway} wallet {w.id}: {actual.get(w.id)}"
        for w in plan.wallets
        if actual.get(w.id) != (balance[w.id], sorted(credits[w.id]), sorted(debits[w.id]))
    ]
    if off:
        problems.append(f"wallets off (balance, credits, refunds): {_some(off)}")
    total = connection.execute("SELECT count(*) FROM transfers").fetchone()
    wanted = len(captured) + sum(len(d) for d in debits.values())
    if total is None or total[0] != wanted:
        problems.append(f"{total and total[0]} transfers, not the {wanted} the events make")
    return problems
