"""Money: an integer count of minor units and an ISO 4217 currency code."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from babel.numbers import get_currency_precision, list_currencies

from ledger.errors import MoneyError, UnknownCurrency

# Larger than any real wallet movement, far below the 2**63 of a bigint total.
AMOUNT_MINOR_MAX = 10**15
# What a gateway or a person writes for an amount: ASCII digits, an optional fraction. Decimal
# alone would also take "1e3", "1_000", "+5" and non-ASCII digits.
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,18})?", re.ASCII)


@functools.cache
def iso_currencies() -> frozenset[str]:
    """Every ISO 4217 code the ledger accepts."""
    return frozenset(list_currencies())


def validate_currency(code: str) -> str:
    """Return `code` if it is a known ISO 4217 currency; raise UnknownCurrency otherwise."""
    if not isinstance(code, str) or code not in iso_currencies():
        raise UnknownCurrency(f'unknown currency code: "{code}"; use an ISO 4217 code like ZAR')
    return code


def exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (2 for ZAR, 0 for JPY)."""
    return int(get_currency_precision(validate_currency(currency)))


def validate_amount_minor(amount_minor: object) -> int:
    """Return a positive integer amount within AMOUNT_MINOR_MAX; raise MoneyError otherwise."""
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
        raise MoneyError(
            "amount must be an integer count of minor units, not "
            + json.dumps(amount_minor, default=str)
        )
    if not 0 < amount_minor <= AMOUNT_MINOR_MAX:
        raise MoneyError(f"amount must be between 1 and {AMOUNT_MINOR_MAX} minor units")
    return amount_minor


@dataclass(frozen=True, slots=True)
class Money:
    """A non-negative amount of one currency in minor units."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        validate_currency(self.currency)
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise MoneyError(
                "amount must be an integer count of minor units: "
                f"{self.amount_minor} {self.currency}"
            )
        if not 0 <= self.amount_minor <= AMOUNT_MINOR_MAX:
            raise MoneyError(f"amount out of range: {self.amount_minor} {self.currency}")

    @classmethod
    def parse(cls, major: str | Decimal, currency: str) -> Money:
        """Parse a decimal amount in major units ("10.50" ZAR -> 1050 minor).

        Text must be ASCII digits with an optional fraction. Raises MoneyError for anything
        else, a negative amount, or more decimal places than the currency has (no rounding: a
        sub-cent amount is an error).
        """
        places = exponent(currency)
        if isinstance(major, str):
            if not _PLAIN_DECIMAL.fullmatch(major.strip()):
                raise MoneyError(f'not a plain decimal amount like 10.50: "{major}"')
            major = major.strip()
        try:
            value = Decimal(major)
        except (InvalidOperation, TypeError) as exc:
            raise MoneyError(f'not a decimal amount: "{major}"') from exc
        if not value.is_finite() or value < 0:
            raise MoneyError(f'not a non-negative finite amount: "{major}"')
        scaled = value.scaleb(places)
        if scaled != scaled.to_integral_value():
            raise MoneyError(f'"{major}" has more than {places} decimal places for {currency}')
        return cls(int(scaled), currency)

    def format_major(self) -> str:
        """The amount in major units as a plain decimal string ("10.50")."""
        places = exponent(self.currency)
        return f"{Decimal(self.amount_minor).scaleb(-places):.{places}f}"


def display(amount_minor: int, currency: str) -> str:
    """An amount for people to read, sign first: "ZAR 10.50", "-ZAR 3.00"."""
    sign = "-" if amount_minor < 0 else ""
    return f"{sign}{currency} {Money(abs(amount_minor), currency).format_major()}"
