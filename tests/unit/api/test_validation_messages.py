"""Validation messages speak JSON, the client's language: `null`, `true`, `"text"`, never the
Python reprs (`None`, `True`, `'text'`) that jsonschema's own messages quote."""

from __future__ import annotations

import re

import pytest

from webhook_receiver.api import orders, provisioning, topups, transfers, usage, wallets
from webhook_receiver.api.validation import check
from webhook_receiver.errors import Invalid

PYTHON_REPR = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|'")
ORDER = {"wallet_id": "123e4567-e89b-12d3-a456-426614174000", "amount_minor": 10, "reference": "r"}


def detail(value, schema):
    with pytest.raises(Invalid) as refused:
        check(value, schema, "body")
    return str(refused.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "body: must be an object, not null"),
        ([], "body: must be an object, not an array"),
        ({**ORDER, "amount_minor": None}, "body.amount_minor: must be an integer, not null"),
        ({**ORDER, "amount_minor": True}, "body.amount_minor: must be an integer, not true"),
        ({**ORDER, "amount_minor": "10"}, 'body.amount_minor: must be an integer, not "10"'),
        ({**ORDER, "amount_minor": 0}, "body.amount_minor: must be at least 1, not 0"),
        ({**ORDER, "reference": False}, "body.reference: must be a string, not false"),
        ({**ORDER, "reference": ""}, "body.reference: must be at least 1 characters long"),
        (
            {**ORDER, "reference": "two words"},
            'body.reference: must be printable ASCII without spaces, not "two words"',
        ),
        ({**ORDER, "wallet_id": "nope"}, 'body.wallet_id: must be a UUID, not "nope"'),
        ({"amount_minor": 10, "reference": "r"}, 'body: "wallet_id" is required'),
        (
            {**ORDER, "extra": None},
            'body: "extra" is not a known field (known: amount_minor, reference, wallet_id)',
        ),
    ],
)
def test_an_order_body_is_refused_in_json_terms(value, expected):
    assert detail(value, orders.CREATE_ORDER) == expected


def test_a_currency_and_a_plan_say_what_they_must_be():
    currency = detail({"owner_id": "acme", "currency": None}, wallets.CREATE_WALLET)
    assert currency == "body.currency: null is not a valid ISO 4217 code"
    plan = {"wallet_id": ORDER["wallet_id"], "resource_id": "vm-1", "plan": "Small"}
    assert detail(plan, provisioning.CREATE) == (
        'body.plan: must be a plan id: 1 to 64 of a-z, 0-9, _ and -, not "Small"'
    )


def test_a_time_and_a_long_value_are_shown_short():
    record = {
        "usage_id": "u-1",
        "wallet_id": ORDER["wallet_id"],
        "resource_id": "vm-1",
        "description": "x",
        "amount_minor": 1,
        "occurred_at": "yesterday " * 10,
    }
    message = detail(record, usage.CREATE)
    assert message.startswith('body.occurred_at: must be an RFC 3339 date-time, not "yesterday')
    assert message.endswith("...")


def test_control_characters_in_a_key_name_the_key_in_json():
    message = detail({**ORDER, "ref\x00": "x"}, orders.CREATE_ORDER)
    assert message.startswith('body."ref\\u0000": control characters')


WALLET = ORDER["wallet_id"]
VALID = [
    (orders.CREATE_ORDER, ORDER),
    (orders.REFUND, {"amount_minor": 5}),
    (provisioning.CREATE, {"wallet_id": WALLET, "resource_id": "vm-1", "plan": "small"}),
    (topups.CREATE_TOPUP, {"wallet_id": WALLET, "amount_minor": 5, "gateway": "stripe"}),
    (transfers.CREATE, {"from_wallet_id": WALLET, "to_wallet_id": WALLET, "amount_minor": 5}),
    (
        usage.CREATE,
        {
            "usage_id": "u-1",
            "wallet_id": WALLET,
            "resource_id": "vm-1",
            "description": "an hour",
            "amount_minor": 5,
            "occurred_at": "2026-01-01T00:00:00Z",
        },
    ),
    (wallets.CREATE_WALLET, {"owner_id": "acme", "currency": "ZAR"}),
]
ODD_VALUES = [None, True, False, "", "x" * 600, "two words", 1.5, -1, 10**20, {}, [None]]


@pytest.mark.parametrize(("schema", "valid"), VALID)
def test_no_field_of_any_call_is_refused_with_a_python_repr(schema, valid):
    check(valid, schema, "body")  # the starting point passes
    refusals = 0
    for name in schema["properties"]:
        for value in ODD_VALUES:
            try:
                check({**valid, name: value}, schema, "body")
            except Invalid as refused:
                refusals += 1
                message = str(refused)
                assert message.startswith(f"body.{name}: "), message
                assert not PYTHON_REPR.search(message), message
    assert refusals >= len(schema["properties"]) * 6
