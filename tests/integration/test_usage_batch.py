"""POST /api/v1/usage with a batch: up to 1,000 records stored in one statement and answered
one by one, so a duplicate, a conflict, a bad record or a wallet out of the token's reach
fails only itself."""

from __future__ import annotations

import uuid

from sqlalchemy import event, func, select

from ledger.models import UsageRecord

from .test_api import api  # noqa: F401 (the fixture)


def usage(wallet_id, usage_id, amount_minor=120, **changes):
    return {
        "usage_id": usage_id,
        "wallet_id": wallet_id,
        "resource_id": "vm-1",
        "description": "cpu hour",
        "amount_minor": amount_minor,
        "occurred_at": "2026-12-01T10:00:00Z",
        **changes,
    }


def stored(service, wallet_id):
    with service.sessions() as session:
        return session.scalar(
            select(func.count())
            .select_from(UsageRecord)
            .where(UsageRecord.wallet_id == uuid.UUID(wallet_id))
        )


def test_a_batch_of_a_thousand_is_answered_record_by_record(api):  # noqa: F811
    tenant = f"tenant-{uuid.uuid4()}"
    mine, theirs = api.wallet(owner_id=tenant), api.wallet()
    records = [usage(mine, f"u-{n}") for n in range(995)]
    records += [
        usage(mine, "u-5"),  # the same record twice in one batch: a duplicate
        usage(mine, "u-6", amount_minor=999),  # the same id with another payload: a conflict
        usage(theirs, "u-0"),  # a wallet this tenant's token cannot see
        usage(mine, "u-bad", amount_minor=0),  # no such amount
        usage(str(uuid.uuid4()), "u-1"),  # no such wallet
    ]
    answer = api.call("POST", "/usage", {"records": records}, owner_id=tenant)
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    assert body["counts"] == {"recorded": 995, "duplicate": 1, "conflict": 1, "invalid": 3}
    results = body["records"]
    assert [r["usage_id"] for r in results] == [r["usage_id"] for r in records]
    assert results[0]["status"] == "recorded"
    assert results[0]["record"] == {
        "id": "u-0",
        "wallet_id": mine,
        "resource_id": "vm-1",
        "description": "cpu hour",
        "amount_minor": 120,
        "currency": "ZAR",
        "occurred_at": "2026-12-01T10:00:00+00:00",
        "status": "pending",
    }
    duplicate, conflict, unseen, bad, unknown = results[995:]
    assert duplicate["status"] == "duplicate"
    assert duplicate["record"] == results[5]["record"]
    assert (conflict["status"], conflict["problem"]["status"]) == ("conflict", 409)
    assert (unseen["status"], unseen["problem"]["status"]) == ("invalid", 404)
    assert (unknown["status"], unknown["problem"]["status"]) == ("invalid", 404)
    # Out of reach reads as not there, so wallet ids cannot be probed.
    assert unseen["problem"]["detail"] == f"no wallet with id {theirs}"
    assert (bad["status"], bad["problem"]["status"]) == ("invalid", 400)
    assert "amount_minor" in bad["problem"]["detail"]
    assert stored(api, mine) == 995
    assert stored(api, theirs) == 0

    # Across batches: a repeat is a duplicate of the stored record, another payload a conflict.
    again = api.call(
        "POST",
        "/usage",
        {
            "records": [
                usage(mine, "u-1"),
                usage(mine, "u-2", description="other"),
                usage(mine, "u-new"),
            ]
        },
        owner_id=tenant,
    ).get_json()
    assert [r["status"] for r in again["records"]] == ["duplicate", "conflict", "recorded"]
    assert stored(api, mine) == 996


def test_the_single_form_and_a_batch_of_one_agree(api):  # noqa: F811
    wallet = api.wallet()
    single = api.call("POST", "/usage", usage(wallet, "one"))
    assert single.status_code == 202
    batch = api.call("POST", "/usage", {"records": [usage(wallet, "one")]}).get_json()
    assert batch["records"] == [
        {"usage_id": "one", "status": "duplicate", "record": single.get_json()}
    ]


def test_a_malformed_batch_is_refused_whole(api):  # noqa: F811
    wallet = api.wallet()
    too_many = {"records": [usage(wallet, f"u-{n}") for n in range(1001)]}
    for body in ({"records": []}, {"records": "no"}, {"records": [], "extra": 1}, too_many):
        answer = api.call("POST", "/usage", body)
        assert answer.status_code == 400, body
        assert answer.mimetype == "application/problem+json"
    assert stored(api, wallet) == 0


def test_a_record_that_is_not_an_object_fails_only_itself(api):  # noqa: F811
    wallet = api.wallet()
    answer = api.call("POST", "/usage", {"records": [1, usage(wallet, "fine")]}).get_json()
    assert [(r["usage_id"], r["status"]) for r in answer["records"]] == [
        (None, "invalid"),
        ("fine", "recorded"),
    ]


def statements_for(service, size):
    wallet = service.wallet()
    engine = service.client.application.extensions["walletpipe"].sessions.kw["bind"]
    seen = []

    def count_one(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count_one)
    try:
        body = {"records": [usage(wallet, f"s-{n}") for n in range(size)]}
        answer = service.call("POST", "/usage", body)
    finally:
        event.remove(engine, "before_cursor_execute", count_one)
    assert answer.get_json()["counts"]["recorded"] == size
    return len(seen)


def test_a_batch_is_stored_in_as_many_statements_whatever_its_size(api):  # noqa: F811
    assert statements_for(api, 1000) == statements_for(api, 10)
