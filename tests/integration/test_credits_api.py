"""Grants, statements and balances at a time through the service API."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta

from ledger.owner import set_reseller
from tests.integration.test_api import Api, api, key

__all__ = ["api"]  # the fixture, used by name


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _grant(api: Api, wallet, body, **token):
    return api.call("POST", f"/wallets/{wallet}/grants", body, headers=key(), **token)


def test_an_admin_grants_credit_and_the_wallet_shows_paid_and_granted(api):
    wallet = api.wallet(funded_minor=1000)
    expires_at = datetime.now(UTC) + timedelta(days=30)

    granted = _grant(
        api,
        wallet,
        {"amount_minor": 500, "reason": "launch promotion", "expires_at": _iso(expires_at)},
        scope="admin",
    )

    assert granted.status_code == 201, granted.get_json()
    body = granted.get_json()
    assert (body["amount_minor"], body["remaining_minor"], body["priority"]) == (500, 500, 50)
    shown = api.call("GET", f"/wallets/{wallet}").get_json()
    assert (shown["balance_minor"], shown["paid_minor"], shown["granted_minor"]) == (
        1500,
        1000,
        500,
    )
    assert [g["id"] for g in shown["grants"]] == [body["id"]]
    order = api.order(wallet, 700)
    assert api.call("POST", f"/orders/{order}/pay").status_code == 200
    shown = api.call("GET", f"/wallets/{wallet}").get_json()
    assert (shown["paid_minor"], shown["granted_minor"], shown["grants"]) == (800, 0, [])


def test_grants_are_refused_to_tokens_that_may_not_give_them(api):
    wallet = api.wallet()
    body = {"amount_minor": 100, "reason": "why not"}
    assert _grant(api, wallet, body, scope="wallets:write").status_code == 403
    past = {**body, "expires_at": "2020-01-01T00:00:00Z"}
    assert _grant(api, wallet, past, scope="admin").status_code == 400
    assert _grant(api, wallet, {**body, "priority": 101}, scope="admin").status_code == 400
    assert _grant(api, wallet, {**body, "reason": "   "}, scope="admin").status_code == 400


def test_a_reseller_grants_from_its_own_wallet_to_its_tree_only(api, sessions):
    reseller, customer, stranger = (f"o-{uuid.uuid4()}" for _ in range(3))
    with sessions.begin() as session:
        set_reseller(session, customer, reseller)
    own = api.wallet(funded_minor=1000, owner_id=reseller)
    theirs = api.wallet(owner_id=customer)
    outside = api.wallet(owner_id=stranger)
    as_reseller = {"owner_id": reseller, "scope": "wallets:read wallets:write"}
    gift = {"amount_minor": 300, "reason": "a reseller's gift"}

    assert _grant(api, theirs, gift, **as_reseller).status_code == 201
    assert _grant(api, outside, gift, **as_reseller).status_code == 404
    assert _grant(api, own, gift, **as_reseller).status_code == 403
    too_much = _grant(api, theirs, {**gift, "amount_minor": 701}, **as_reseller)
    assert too_much.status_code == 422
    mine = api.call("GET", f"/wallets/{own}").get_json()
    customers = api.call("GET", f"/wallets/{theirs}").get_json()
    assert (mine["balance_minor"], customers["granted_minor"]) == (700, 300)


def test_a_statement_lists_the_period_with_running_balances(api):
    wallet = api.wallet(funded_minor=1000)
    time.sleep(0.01)
    start = datetime.now(UTC)
    _grant(api, wallet, {"amount_minor": 200, "reason": "goodwill"}, scope="admin")
    order = api.order(wallet, 300)
    api.call("POST", f"/orders/{order}/pay")
    time.sleep(0.01)
    end = datetime.now(UTC)
    order = api.order(wallet, 50)
    api.call("POST", f"/orders/{order}/pay")  # after the period

    found = api.call(
        "GET", f"/wallets/{wallet}/statement?from={_iso(start)}&to={_iso(end)}"
    ).get_json()

    assert found["opening"]["balance_minor"] == 1000
    assert [(e["type"], e["amount_minor"], e["balance_minor"]) for e in found["entries"]] == [
        ("grant", 200, 1200),
        ("order", -300, 900),
    ]
    assert (
        found["entries"][1]["granted_change_minor"],
        found["entries"][1]["paid_change_minor"],
    ) == (
        -200,
        -100,
    )
    assert found["closing"]["balance_minor"] == 900
    assert api.balance(wallet) == 850

    exported = api.call(
        "GET", f"/wallets/{wallet}/statement?from={_iso(start)}&to={_iso(end)}&format=csv"
    )
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [(r["type"], r["balance_minor"]) for r in rows] == [
        ("opening", "1000"),
        ("grant", "1200"),
        ("order", "900"),
        ("closing", "900"),
    ]

    at_end = api.call("GET", f"/wallets/{wallet}/balance?at={_iso(end)}").get_json()
    assert (at_end["balance_minor"], at_end["paid_minor"], at_end["granted_minor"]) == (
        900,
        900,
        0,
    )
    before = api.call("GET", f"/wallets/{wallet}/balance?at=2001-01-01T00:00:00Z").get_json()
    assert before["balance_minor"] == 0


def test_statement_parameters_are_checked(api):
    wallet = api.wallet()
    base = f"/wallets/{wallet}/statement"
    for query in (
        "",
        "?from=2026-01-01T00:00:00Z",
        "?from=yesterday&to=2026-01-02T00:00:00Z",
        "?from=2026-01-01T00:00:00&to=2026-01-02T00:00:00Z",
        "?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&format=xml",
    ):
        answer = api.call("GET", base + query)
        assert answer.status_code == 400, query
        assert answer.mimetype == "application/problem+json"
    assert (
        api.call("GET", f"/wallets/{wallet}/balance?at=0001-01-01T00:00:00+01:00").status_code
        == 400
    )


def test_monitors_and_the_auto_topup_rule_over_the_api(api):
    wallet = api.wallet(funded_minor=1000)
    added = api.call(
        "POST", f"/wallets/{wallet}/monitors", {"direction": "below", "threshold_minor": 500}
    )
    assert added.status_code == 201, added.get_json()
    again = api.call(
        "POST", f"/wallets/{wallet}/monitors", {"direction": "below", "threshold_minor": 500}
    )
    assert again.status_code == 409
    listed = api.call("GET", f"/wallets/{wallet}/monitors").get_json()["items"]
    assert [m["id"] for m in listed] == [added.get_json()["id"]]
    removed = api.call("DELETE", f"/wallets/{wallet}/monitors/{added.get_json()['id']}")
    assert removed.status_code == 200
    assert api.call("GET", f"/wallets/{wallet}/monitors").get_json()["items"] == []

    assert api.call("GET", f"/wallets/{wallet}/auto-topup").status_code == 404
    rule = {"threshold_minor": 500, "target_minor": 2000, "per_day_max": 2}
    assert api.call("PUT", f"/wallets/{wallet}/auto-topup", rule).status_code == 200
    both = {**rule, "amount_minor": 100}
    assert api.call("PUT", f"/wallets/{wallet}/auto-topup", both).status_code == 400
    shown = api.call("GET", f"/wallets/{wallet}/auto-topup").get_json()
    assert (shown["threshold_minor"], shown["armed"]) == (500, True)
    assert api.call("DELETE", f"/wallets/{wallet}/auto-topup").status_code == 200
