"""The service API, scenario by scenario, against the real PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from sqlalchemy import func, select

from ledger.adjustment import Direction, adjust
from ledger.models import AuditEntry, Order
from webhook_receiver import create_app
from webhook_receiver.settings import ReceiverSettings

SECRET = "api-test-secret-that-is-long-enough-for-hs256"
ALL_SCOPES = "wallets:read wallets:write orders:write provisioning:write billing:write"


def key():
    return {"Idempotency-Key": f"k-{uuid.uuid4()}"}


class Api:
    def __init__(self, client, sessions):
        self.client = client
        self.sessions = sessions

    def token(self, scope=ALL_SCOPES, owner_id=None, sub="shop", ttl_s=300, secret=SECRET):
        claims = {"sub": sub, "scope": scope, "exp": int(time.time()) + ttl_s}
        if owner_id is not None:
            claims["owner_id"] = owner_id
        return jwt.encode(claims, secret, algorithm="HS256")

    def call(self, method, path, body=None, token=None, headers=None, **token_args):
        auth = {"Authorization": f"Bearer {token or self.token(**token_args)}"}
        return self.client.open(
            f"/api/v1{path}", method=method, json=body, headers={**auth, **(headers or {})}
        )

    def wallet(self, funded_minor=0, owner_id=None, currency="ZAR"):
        owner_id = owner_id or f"owner-{uuid.uuid4()}"
        created = self.call("POST", "/wallets", {"owner_id": owner_id, "currency": currency})
        assert created.status_code == 201, created.get_json()
        wallet_id = created.get_json()["id"]
        if funded_minor:
            with self.sessions.begin() as session:
                adjust(
                    session,
                    wallet_id=uuid.UUID(wallet_id),
                    direction=Direction.CREDIT,
                    amount_minor=funded_minor,
                    reason="test funding",
                    actor="tests",
                )
        return wallet_id

    def balance(self, wallet_id):
        return self.call("GET", f"/wallets/{wallet_id}").get_json()["balance_minor"]

    def order(self, wallet_id, amount_minor, **kwargs):
        body = {
            "wallet_id": wallet_id,
            "amount_minor": amount_minor,
            "reference": f"order-{uuid.uuid4()}",
        }
        created = self.call("POST", "/orders", body, **kwargs)
        assert created.status_code == 201, created.get_json()
        return created.get_json()["id"]


@pytest.fixture
def api(database_url, broker_url, sessions):
    settings = ReceiverSettings.from_env(
        {
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "WALLETPIPE_JWT_SECRET": SECRET,
            "STRIPE_WEBHOOK_SECRET": "whsec_api_tests",
            "API_RATE_LIMIT": "100000/minute",
        }
    )
    return Api(create_app(settings).test_client(), sessions)


def test_the_seed_flow_pay_then_refund(api):
    wallet = api.wallet(funded_minor=2000)
    order = api.order(wallet, 300)
    paid = api.call("POST", f"/orders/{order}/pay")
    assert paid.status_code == 200
    assert paid.get_json()["status"] == "paid"
    assert api.balance(wallet) == 1700

    refunded = api.call(
        "POST", f"/orders/{order}/refunds", {"amount_minor": 300}, scope="admin", headers=key()
    )
    assert refunded.status_code == 200
    assert refunded.get_json()["status"] == "refunded"
    assert api.balance(wallet) == 2000
    assert api.call("GET", f"/orders/{order}").get_json()["refunded_minor"] == 300


def test_paying_twice_debits_once(api):
    wallet = api.wallet(funded_minor=2000)
    order = api.order(wallet, 300)
    api.call("POST", f"/orders/{order}/pay")
    again = api.call("POST", f"/orders/{order}/pay")
    assert again.get_json()["status"] == "paid"
    assert api.balance(wallet) == 1700


def test_insufficient_funds_reject_the_order_and_move_nothing(api):
    wallet = api.wallet(funded_minor=100)
    order = api.order(wallet, 300)
    rejected = api.call("POST", f"/orders/{order}/pay")
    assert rejected.status_code == 200
    assert rejected.get_json()["status"] == "rejected"
    assert rejected.get_json()["reason"] == "insufficient_funds"
    assert api.balance(wallet) == 100


def test_a_rejected_order_pays_after_a_top_up_and_only_once(api, sessions):
    wallet = api.wallet(funded_minor=100)
    order = api.order(wallet, 300)
    assert api.call("POST", f"/orders/{order}/pay").get_json()["status"] == "rejected"
    with sessions.begin() as session:
        adjust(
            session,
            wallet_id=uuid.UUID(wallet),
            direction=Direction.CREDIT,
            amount_minor=500,
            reason="a top-up",
            actor="tests",
        )

    paid = api.call("POST", f"/orders/{order}/pay")
    again = api.call("POST", f"/orders/{order}/pay")

    assert paid.status_code == 200
    assert (paid.get_json()["status"], paid.get_json()["reason"]) == ("paid", None)
    assert again.get_json()["status"] == "paid"
    assert api.balance(wallet) == 300


def test_partial_refunds_never_exceed_what_was_paid(api):
    wallet = api.wallet(funded_minor=1000)
    order = api.order(wallet, 500)
    api.call("POST", f"/orders/{order}/pay")
    first = api.call("POST", f"/orders/{order}/refunds", {"amount_minor": 200}, headers=key())
    assert first.get_json()["status"] == "partially_refunded"
    too_much = api.call("POST", f"/orders/{order}/refunds", {"amount_minor": 301}, headers=key())
    assert too_much.status_code == 422
    assert api.balance(wallet) == 700


def test_racing_refunds_refund_at_most_what_was_paid(api):
    wallet = api.wallet(funded_minor=1000)
    order = api.order(wallet, 300)
    api.call("POST", f"/orders/{order}/pay")
    barrier = threading.Barrier(10)

    def refund(_):
        barrier.wait()
        return api.call(
            "POST", f"/orders/{order}/refunds", {"amount_minor": 100}, headers=key()
        ).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(refund, range(10)))
    assert statuses.count(200) == 3
    assert statuses.count(422) == 7
    assert api.balance(wallet) == 1000
    assert api.call("GET", f"/orders/{order}").get_json()["status"] == "refunded"


def test_a_tenant_token_sees_only_its_own_wallets(api):
    mine = api.wallet(owner_id="tenant-a")
    theirs = api.wallet(funded_minor=500)
    theirs_order = api.order(theirs, 100)
    token = api.token(owner_id="tenant-a")
    assert api.call("GET", f"/wallets/{mine}", token=token).status_code == 200
    for path in (f"/wallets/{theirs}", f"/wallets/{theirs}/transfers", f"/orders/{theirs_order}"):
        hidden = api.call("GET", path, token=token)
        assert hidden.status_code == 404, path
    paying = api.call("POST", f"/orders/{theirs_order}/pay", token=token)
    assert paying.status_code == 404
    assert api.balance(theirs) == 500
    other_owner = api.call(
        "POST", "/wallets", {"owner_id": "tenant-b", "currency": "USD"}, token=token
    )
    assert other_owner.status_code == 403


def test_scopes_and_tokens_are_enforced(api):
    wallet = api.wallet(funded_minor=500)
    reader = api.token(scope="wallets:read")
    denied = api.call(
        "POST", "/orders", {"wallet_id": wallet, "amount_minor": 1, "reference": "x"}, token=reader
    )
    assert denied.status_code == 403
    assert "orders:write" in denied.get_json()["detail"]
    missing = api.client.get(f"/api/v1/wallets/{wallet}")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    expired = api.call("GET", f"/wallets/{wallet}", ttl_s=-120)
    assert expired.status_code == 401
    forged = api.call("GET", f"/wallets/{wallet}", secret="not-the-secret-but-long-enough-too")
    assert forged.status_code == 401
    assert forged.mimetype == "application/problem+json"


def test_an_idempotency_key_replays_the_first_response(api):
    wallet = api.wallet(funded_minor=500)
    body = {"wallet_id": wallet, "amount_minor": 100, "reference": "key-test"}
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = api.call("POST", "/orders", body, headers=headers)
    second = api.call("POST", "/orders", body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    other = api.call("POST", "/orders", {**body, "amount_minor": 101}, headers=headers)
    assert other.status_code == 409
    with api.sessions() as session:
        count = session.scalar(
            select(func.count()).select_from(Order).where(Order.wallet_id == uuid.UUID(wallet))
        )
    assert count == 1


def test_a_concurrent_repeat_of_a_key_has_one_effect(api):
    wallet = api.wallet(funded_minor=5000)
    order = api.order(wallet, 100)
    api.call("POST", f"/orders/{order}/pay")
    headers = {"Idempotency-Key": f"refund-{uuid.uuid4()}"}
    barrier = threading.Barrier(8)

    def refund(_):
        barrier.wait()
        response = api.call(
            "POST", f"/orders/{order}/refunds", {"amount_minor": 10}, headers=headers
        )
        return response.status_code, response.get_json()["refunded_minor"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(refund, range(8)))
    assert results == [(200, 10)] * 8
    assert api.balance(wallet) == 4910


def test_pagination_is_stable_while_transfers_arrive(api):
    wallet = api.wallet(funded_minor=10_000)
    orders = [api.order(wallet, 10) for _ in range(5)]
    for order in orders:
        api.call("POST", f"/orders/{order}/pay")
    first = api.call("GET", f"/wallets/{wallet}/transfers?limit=3").get_json()
    assert len(first["items"]) == 3
    api.call("POST", f"/orders/{api.order(wallet, 10)}/pay")  # arrives between the pages
    second = api.call("GET", f"/wallets/{wallet}/transfers?limit=3&cursor={first['next_cursor']}")
    page = second.get_json()
    seen = [item["id"] for item in first["items"] + page["items"]]
    assert len(seen) == len(set(seen)) == 6  # 5 payments and the funding, none twice
    assert page["next_cursor"] is None
    assert [item["direction"] for item in page["items"]][-1] == "credit"  # the funding
    assert api.call("GET", f"/wallets/{wallet}/transfers?cursor=nonsense").status_code == 400
    assert api.call("GET", f"/wallets/{wallet}/transfers?cursor=1e5").status_code == 400
    assert api.call("GET", f"/wallets/{wallet}/transfers?limit=0").status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"amount_minor": 1.5, "reference": "r"},
        {"amount_minor": 10.0, "reference": "r"},
        {"amount_minor": "10", "reference": "r"},
        {"amount_minor": 0, "reference": "r"},
        {"amount_minor": 10**16, "reference": "r"},
        {"amount_minor": 10, "reference": "r", "extra": True},
        {"amount_minor": 10},
        {"amount_minor": 10, "reference": ""},
    ],
)
def test_malformed_orders_are_refused_with_a_problem(api, body):
    wallet = api.wallet()
    response = api.call("POST", "/orders", {"wallet_id": wallet, **body})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"].startswith("body")


def test_broken_json_and_unknown_currency_are_400(api):
    broken = api.client.post(
        "/api/v1/orders",
        data=b"{nope",
        headers={"Authorization": f"Bearer {api.token()}"},
        content_type="application/json",
    )
    assert broken.status_code == 400
    currency = api.call("POST", "/wallets", {"owner_id": "x", "currency": "ZZZ"})
    assert currency.status_code == 400
    assert "ISO 4217" in currency.get_json()["detail"]
    bad_id = api.call(
        "POST", "/orders", {"wallet_id": "not-a-uuid", "amount_minor": 1, "reference": "r"}
    )
    assert bad_id.status_code == 400


def test_a_second_wallet_for_the_same_owner_and_currency_conflicts(api):
    owner = f"owner-{uuid.uuid4()}"
    api.wallet(owner_id=owner)
    again = api.call("POST", "/wallets", {"owner_id": owner, "currency": "ZAR"})
    assert again.status_code == 409


def test_topups_start_pending_on_a_configured_gateway(api):
    wallet = api.wallet()
    created = api.call(
        "POST", "/topups", {"wallet_id": wallet, "amount_minor": 5000, "gateway": "stripe"}
    )
    assert created.status_code == 201
    topup = created.get_json()
    assert (topup["status"], topup["currency"]) == ("pending", "ZAR")
    assert api.call("GET", f"/topups/{topup['id']}").get_json() == topup
    unconfigured = api.call(
        "POST", "/topups", {"wallet_id": wallet, "amount_minor": 5000, "gateway": "paypal"}
    )
    assert unconfigured.status_code == 422


def test_provisioning_requests_wait_for_the_workers(api):
    wallet = api.wallet(funded_minor=1000)
    accepted = api.call(
        "POST",
        "/provisioning-requests",
        {"wallet_id": wallet, "resource_id": f"vm-{uuid.uuid4()}", "plan": "small"},
    )
    assert accepted.status_code == 202
    request_id = accepted.get_json()["id"]
    shown = api.call("GET", f"/provisioning-requests/{request_id}").get_json()
    assert (shown["status"], shown["plan"]) == ("pending", "small")


def test_usage_records_are_kept_once_by_their_id(api):
    wallet = api.wallet()
    record = {
        "usage_id": f"u-{uuid.uuid4()}",
        "wallet_id": wallet,
        "resource_id": "vm-1",
        "description": "egress 10 GB",
        "amount_minor": 250,
        "occurred_at": "2026-11-23T10:00:00Z",
    }
    first = api.call("POST", "/usage", record)
    assert first.status_code == 202
    assert api.call("POST", "/usage", record).get_json() == first.get_json()
    assert api.call("POST", "/usage", {**record, "amount_minor": 251}).status_code == 409


def test_operators_move_credit_between_owners(api):
    source = api.wallet(funded_minor=1000)
    target = api.wallet()

    def move(amount_minor, **kwargs):
        body = {"from_wallet_id": source, "to_wallet_id": target, "amount_minor": amount_minor}
        kwargs.setdefault("scope", "admin")
        kwargs.setdefault("headers", key())
        return api.call("POST", "/transfers", body, **kwargs)

    retry = key()
    assert move(400, headers=retry).status_code == 201
    assert move(400, headers=retry).status_code == 201  # a retry moves nothing more
    assert (api.balance(source), api.balance(target)) == (600, 400)
    assert move(601).status_code == 422
    assert move(1, headers={}).status_code == 400  # no key: a retry could move it twice
    assert move(1, scope="wallets:write").status_code == 403
    source_owner = api.call("GET", f"/wallets/{source}").get_json()["owner_id"]
    bound = api.token(scope="admin", owner_id=source_owner)
    assert move(1, token=bound).status_code == 404  # the target is outside its tenant
    assert (api.balance(source), api.balance(target)) == (600, 400)


def test_refunds_need_an_idempotency_key_and_retry_safely(api):
    wallet = api.wallet(funded_minor=1000)
    order = api.order(wallet, 500)
    api.call("POST", f"/orders/{order}/pay")
    assert api.call("POST", f"/orders/{order}/refunds", {"amount_minor": 100}).status_code == 400
    long_key = {"Idempotency-Key": "k" * 255}
    for _ in range(2):
        answer = api.call(
            "POST", f"/orders/{order}/refunds", {"amount_minor": 100}, headers=long_key
        )
        assert answer.status_code == 200
    assert api.balance(wallet) == 600


def test_keys_are_scoped_to_the_token_subject_and_tenant(api):
    mine, theirs = api.wallet(owner_id="tenant-x"), api.wallet(owner_id="tenant-y")
    shared = key()
    for wallet, owner in ((mine, "tenant-x"), (theirs, "tenant-y")):
        body = {"wallet_id": wallet, "amount_minor": 5, "reference": "same-ref"}
        created = api.call("POST", "/orders", body, headers=shared, token=api.token(owner_id=owner))
        assert created.status_code == 201
        assert created.get_json()["wallet_id"] == wallet


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/provisioning-requests", {"resource_id": "vm-1", "plan": "small\n"}),
        ("/provisioning-requests", {"resource_id": "vm\u00001", "plan": "small"}),
        ("/orders", {"amount_minor": 1, "reference": "ref\ud800"}),
    ],
)
def test_control_characters_are_refused_not_stored(api, path, body):
    wallet = api.wallet()
    answer = api.call("POST", path, {"wallet_id": wallet, **json.loads(json.dumps(body))})
    assert answer.status_code == 400, answer.get_json()
    assert "control characters" in answer.get_json()["detail"]


def test_usage_times_outside_reason_are_refused(api):
    wallet = api.wallet()
    record = {
        "usage_id": f"u-{uuid.uuid4()}",
        "wallet_id": wallet,
        "resource_id": "vm-1",
        "description": "egress",
        "amount_minor": 5,
        "occurred_at": "0001-01-01T00:00:00+14:00",
    }
    assert api.call("POST", "/usage", record).status_code == 400


def test_with_the_database_down_the_api_answers_503(broker_url):
    settings = ReceiverSettings.from_env(
        {
            "DATABASE_URL": "postgresql://127.0.0.1:1/walletpipe",
            "BROKER_URL": broker_url,
            "WALLETPIPE_JWT_SECRET": SECRET,
            "API_RATE_LIMIT": "100000/minute",
        }
    )
    client = create_app(settings).test_client()
    token = jwt.encode(
        {"sub": "s", "scope": "admin", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    )
    answer = client.get(
        f"/api/v1/wallets/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 503
    assert answer.mimetype == "application/problem+json"


def test_every_mutation_is_audited_with_its_request_id(api):
    wallet = api.wallet(funded_minor=1000)
    order = api.order(wallet, 100, sub="shop-7")
    api.call("POST", f"/orders/{order}/pay", sub="shop-7", headers={"X-Request-ID": "req-42"})
    with api.sessions() as session:
        entries = session.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.request_id)
            .where(AuditEntry.subject == order)
            .order_by(AuditEntry.id)
        ).all()
    assert [tuple(e) for e in entries][-1] == ("api:shop-7", "order.pay", "req-42")
    assert entries[0][1] == "order.create"


def test_the_openapi_document_is_served(api):
    document = api.client.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    assert "/api/v1/orders/{order_id}/refunds" in document["paths"]


def test_a_reseller_sees_and_funds_its_tree_and_nothing_else(api, sessions):
    from ledger.owner import set_reseller

    reseller, customer, sub_customer, stranger = (f"o-{uuid.uuid4()}" for _ in range(4))
    with sessions.begin() as session:
        set_reseller(session, customer, reseller)
        set_reseller(session, sub_customer, customer)
    own = api.wallet(funded_minor=5000, owner_id=reseller)
    theirs = api.wallet(owner_id=customer)
    deeper = api.wallet(owner_id=sub_customer)
    outside = api.wallet(owner_id=stranger)
    as_reseller = {"owner_id": reseller, "scope": "wallets:read wallets:write"}

    for wallet in (own, theirs, deeper):
        assert api.call("GET", f"/wallets/{wallet}", **as_reseller).status_code == 200
    assert api.call("GET", f"/wallets/{outside}", **as_reseller).status_code == 404
    as_customer = {"owner_id": customer, "scope": "wallets:read"}
    assert api.call("GET", f"/wallets/{own}", **as_customer).status_code == 404  # not upward

    def move(source, target, amount_minor=1000, **token):
        return api.call(
            "POST",
            "/transfers",
            {"from_wallet_id": source, "to_wallet_id": target, "amount_minor": amount_minor},
            headers=key(),
            **token,
        )

    assert move(own, theirs, **as_reseller).status_code == 201
    assert move(own, deeper, **as_reseller).status_code == 201
    assert move(own, outside, **as_reseller).status_code == 404
    assert move(theirs, own, **as_reseller).status_code == 403  # never out of a customer
    assert move(own, theirs, scope="wallets:write").status_code == 403  # unbound needs admin
    assert (api.balance(own), api.balance(theirs), api.balance(deeper)) == (3000, 1000, 1000)
    created = api.call(
        "POST", "/wallets", {"owner_id": sub_customer, "currency": "USD"}, **as_reseller
    )
    assert created.status_code == 201
    refused = api.call("POST", "/wallets", {"owner_id": stranger, "currency": "USD"}, **as_reseller)
    assert refused.status_code == 403


def test_reseller_links_refuse_cycles_and_second_parents(sessions):
    from ledger.errors import OwnerTreeError
    from ledger.owner import ancestors, set_reseller

    top, middle, leaf = (f"o-{uuid.uuid4()}" for _ in range(3))
    with sessions.begin() as session:
        set_reseller(session, middle, top)
        set_reseller(session, leaf, middle)
        set_reseller(session, leaf, middle)  # the same link again: nothing changes
        assert ancestors(session, leaf) == [middle, top]
    for owner, reseller in ((top, leaf), (leaf, top), (top, top)):
        with pytest.raises(OwnerTreeError), sessions.begin() as session:
            set_reseller(session, owner, reseller)


def test_plans_and_the_burn_rate_are_shown(api):
    plans = api.call("GET", "/plans").get_json()["items"]
    assert {"small", "medium", "large", "enterprise"} <= {plan["id"] for plan in plans}
    wallet = api.wallet(funded_minor=1000)
    burn = api.call("GET", f"/wallets/{wallet}/burn-rate").get_json()
    assert burn == {
        "wallet_id": wallet,
        "currency": "ZAR",
        "available_minor": 1000,
        "burn_minor_per_month": 0,
        "hours_to_zero": None,
    }


def test_a_busy_resource_and_a_premature_confirm_conflict(api):
    wallet = api.wallet(funded_minor=100_000)
    body = {"wallet_id": wallet, "resource_id": f"vm-{uuid.uuid4()}", "plan": "small"}
    first = api.call("POST", "/provisioning-requests", body)
    assert first.status_code == 202
    assert api.call("POST", "/provisioning-requests", body).status_code == 409
    pending = first.get_json()["id"]
    confirmed = api.call("POST", f"/provisioning-requests/{pending}/confirm")
    assert confirmed.status_code == 409
    assert confirmed.get_json()["title"] == "Not allowed in this state"


def test_racing_refunds_that_read_the_order_first_refund_at_most_what_was_paid(api, sessions):
    from ledger.errors import RefundExceedsPaid
    from ledger.order import get_order, refund_order

    wallet = api.wallet(funded_minor=1000)
    order = uuid.UUID(api.order(wallet, 600))
    assert api.call("POST", f"/orders/{order}/pay").get_json()["status"] == "paid"
    with sessions.begin() as session:
        # This refund reads the order (nothing refunded yet) to check who may see it, and
        # keeps it, so the session's identity map holds that version ...
        seen = get_order(session, order)
        assert seen.refunded_minor == 0
        # ... another refund of 400 commits meanwhile ...
        with sessions.begin() as other:
            refund_order(other, order, amount_minor=400, refund_key="first")
        # ... and this one, under the lock, must see it: 400 + 300 is more than 600.
        with pytest.raises(RefundExceedsPaid):
            refund_order(session, order, amount_minor=300, refund_key="second")
        assert seen.refunded_minor == 400
    assert api.balance(wallet) == 1000 - 600 + 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/wallets/not-a-uuid"),
        ("GET", "/wallets/not-a-uuid/transfers"),
        ("GET", "/wallets/123/burn-rate"),
        ("GET", "/topups/{nope}"),
        ("GET", "/orders/12345678-1234-1234-1234-12345678901"),
        ("POST", "/orders/x/pay"),
        ("POST", "/provisioning-requests/x/confirm"),
    ],
)
def test_a_malformed_id_in_the_path_says_ids_are_uuids(api, method, path):
    answer = api.call(method, path)
    assert answer.status_code == 400
    assert answer.mimetype == "application/problem+json"
    problem = answer.get_json()
    assert problem["title"] == "Invalid request"
    assert "UUID" in problem["detail"]
    assert "spelling" not in problem["detail"]


def test_a_well_formed_unknown_id_is_not_found_and_an_unknown_path_says_so(api):
    missing = api.call("GET", f"/wallets/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "no wallet with id" in missing.get_json()["detail"]
    nowhere = api.call("GET", "/walets")
    assert nowhere.status_code == 404
    assert nowhere.mimetype == "application/problem+json"
    assert "GET /openapi.json" in nowhere.get_json()["detail"]


def test_refusals_quote_values_as_json_not_python(api):
    wallet = api.wallet()
    answers = [
        api.call("POST", "/orders", {"wallet_id": wallet, "amount_minor": None, "reference": "r"}),
        api.call("POST", "/orders", {"wallet_id": wallet, "amount_minor": True, "reference": "r"}),
        api.call("POST", "/wallets", {"owner_id": "acme", "currency": None}),
        api.call("POST", "/topups", {"wallet_id": wallet, "amount_minor": 5, "gateway": "nope"}),
        api.call("GET", f"/wallets/{wallet}", scope="orders:write"),
    ]
    details = [answer.get_json()["detail"] for answer in answers]
    assert details == [
        "body.amount_minor: must be an integer, not null",
        "body.amount_minor: must be an integer, not true",
        "body.currency: null is not a valid ISO 4217 code",
        'gateway "nope" is not configured here (configured: stripe)',
        "this token lacks the wallets:read scope",
    ]
