"""The helpers adapters share turn odd input into the contract's errors, never into others."""

from __future__ import annotations

import hmac
from typing import Any

import pytest

from webhook_receiver.errors import MalformedPayload, SignatureInvalid, TimestampOutOfTolerance
from webhook_receiver.gateways import common


@pytest.mark.parametrize(
    ("path", "found"),
    [
        (("a", "b"), 1),
        (("list", 0), "x"),
        (("list", 5), None),
        (("a", "b", "c"), None),
        (("a", 0), None),
    ],
)
def test_dig_answers_none_where_a_path_does_not_lead(path: tuple[Any, ...], found: Any) -> None:
    assert common.dig({"a": {"b": 1}, "list": ["x"]}, *path) == found


@pytest.mark.parametrize(
    "body", [b"\xff", b"[1]", b'"text"', b"NaN", b'{"a": Infinity}', b"[" * 100_000, b"1" * 5000]
)
def test_only_a_utf8_json_object_is_loaded(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        common.load_json_object(body)


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("GooglePay", "google_pay"),
        ("paywithgoogle", "google_pay"),
        ("Google Pay", "google_pay"),
        ("googlepay_visa", "google_pay"),
        ("Card", "card"),
        ("", None),
        (7, None),
    ],
)
def test_google_pay_has_one_name(name: Any, method: str | None) -> None:
    assert common.payment_method(name) == method


@pytest.mark.parametrize(("value", "minor"), [("10.50", 1050), ("10.5", 1050), ("7", 700)])
def test_a_plain_major_amount_becomes_minor_units(value: str, minor: int) -> None:
    assert common.amount_from_major(value, "USD") == minor


def test_a_zero_decimal_currency_takes_no_fraction() -> None:
    assert common.amount_from_major("500", "JPY") == 500
    with pytest.raises(MalformedPayload):
        common.amount_from_major("500.5", "JPY")


@pytest.mark.parametrize("signed_at", [999_699, 1_000_301])
def test_the_tolerance_bounds_both_sides(signed_at: int) -> None:
    with pytest.raises(TimestampOutOfTolerance):
        common.check_tolerance(signed_at, 1_000_000, 300)
    common.check_tolerance(1_000_000, 1_000_000, 300)


@pytest.mark.parametrize("value", [None, "", "12ab", "0" * 13, "١٢٣"])
def test_a_signed_unix_time_is_plain_digits(value: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        common.unix_seconds(value)


def test_hmac_matches_tries_every_key_against_every_candidate() -> None:
    good = hmac.new(b"second", b"message", "sha256").digest()

    assert common.hmac_matches([b"first", b"second"], b"message", [b"x" * 32, good], "sha256")
    assert not common.hmac_matches([b"first"], b"message", [good], "sha256")
