from decimal import Decimal

import pytest

from ledger.errors import MoneyError, UnknownCurrency
from ledger.money import AMOUNT_MINOR_MAX, Money, exponent, validate_amount_minor


@pytest.mark.parametrize(
    ("currency", "places"), [("ZAR", 2), ("USD", 2), ("JPY", 0), ("KWD", 3), ("INR", 2)]
)
def test_exponent_comes_from_the_currency(currency, places):
    assert exponent(currency) == places


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("10.50", "ZAR", 1050),
        ("10.5", "ZAR", 1050),
        ("0.01", "ZAR", 1),
        ("1500", "JPY", 1500),
        ("1.234", "KWD", 1234),
        (" 7 ", "USD", 700),
        (Decimal("99.99"), "USD", 9999),
    ],
)
def test_parse_major_units_exactly(text, currency, minor):
    assert Money.parse(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("10.005", "ZAR"),
        ("1.5", "JPY"),
        ("abc", "ZAR"),
        ("NaN", "ZAR"),
        ("Infinity", "USD"),
        ("-1", "ZAR"),
        ("", "ZAR"),
        ("1e3", "ZAR"),
        ("1_000", "ZAR"),
        ("+5", "ZAR"),
        ("\u0661\u0662", "ZAR"),  # Arabic-Indic digits
        (".5", "ZAR"),
        ("5.", "ZAR"),
        (Decimal("-1"), "ZAR"),
        (Decimal("NaN"), "ZAR"),
    ],
)
def test_parse_refuses_what_is_not_exact_money(text, currency):
    with pytest.raises(MoneyError):
        Money.parse(text, currency)


def test_unknown_currency_is_refused_with_a_hint():
    with pytest.raises(UnknownCurrency, match="ISO 4217"):
        Money(100, "XYZ")
    with pytest.raises(UnknownCurrency):
        Money(100, "zar")


@pytest.mark.parametrize("amount", [0, -1, AMOUNT_MINOR_MAX + 1, 1.0, True, "5"])
def test_transfer_amounts_are_positive_integers_within_bounds(amount):
    with pytest.raises(MoneyError):
        validate_amount_minor(amount)


def test_float_is_never_money():
    with pytest.raises(MoneyError):
        Money(10.5, "ZAR")  # type: ignore[arg-type]


def test_format_major_round_trips():
    for text in ("0.00", "12.34", "1000000.01"):
        assert Money.parse(text, "ZAR").format_major() == text
    assert Money(5, "JPY").format_major() == "5"
