"""What every gateway report reader shares: CSV rows by header name, and money in its units.

Readers take the file's bytes and return `ReportLine`s, or raise ReportUnreadable naming the
line and what is wrong with it. Reports are read by column name, never by position: gateways
add columns (and merchants choose them), so a position means nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from ledger.errors import MoneyError
from ledger.money import exponent, validate_currency
from webhook_receiver.errors import ReportUnreadable

REPORT_BYTES_MAX = 64 * 1024 * 1024


def text_of(data: bytes) -> str:
    """The report as text: UTF-8, with or without the byte-order mark some exports write."""
    if len(data) > REPORT_BYTES_MAX:
        raise ReportUnreadable(f"the report is larger than {REPORT_BYTES_MAX} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReportUnreadable(f"the report is not UTF-8 text (byte {exc.start})") from None


def csv_rows(data: bytes, required: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row by stripped header name) for each data row of a headed CSV file."""
    reader = csv.DictReader(io.StringIO(text_of(data)))
    header = {name.strip() for name in reader.fieldnames or ()}
    missing = sorted(required - header)
    if missing:
        raise ReportUnreadable(f"the report has no column {', '.join(missing)}")
    for row in reader:
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        yield (
            reader.line_num,
            {
                (key or "").strip(): (value or "").strip()
                for key, value in row.items()
                if isinstance(value, str)
            },
        )


def currency(value: str, line: int) -> str:
    try:
        return validate_currency(value.strip().upper())
    except MoneyError:
        raise ReportUnreadable(f"line {line}: {value!r} is not an ISO 4217 currency") from None


def major_to_minor(value: str, code: str, line: int) -> int:
    """Signed minor units from a major-unit decimal ("-10.50", "1,234.00"); exact or refused."""
    cleaned = value.strip().replace(",", "")
    try:
        amount = Decimal(cleaned or "0")
    except InvalidOperation:
        raise ReportUnreadable(f"line {line}: {value!r} is not an amount") from None
    scaled = amount.scaleb(exponent(code))
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise ReportUnreadable(f"line {line}: {value!r} has more decimals than {code} allows")
    return int(scaled)


def integer(value: object, line: int, what: str) -> int:
    """A signed integer of minor units as a report writes it (a number or digits)."""
    if isinstance(value, bool):
        raise ReportUnreadable(f"line {line}: {what} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if value is None or value == "":
        return 0
    raise ReportUnreadable(f"line {line}: {what} {value!r} is not an integer")


def epoch(value: object) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**33:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value.strip().isdigit():
        return epoch(int(value.strip()))
    return None


def timestamp(value: str, formats: tuple[str, ...]) -> datetime | None:
    """An aware time from the first format that reads `value` (naive ones are UTC)."""
    for pattern in formats:
        try:
            parsed = datetime.strptime(value.strip(), pattern)  # noqa: DTZ007 (tz set below)
        except ValueError:
            continue
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def optional(value: object) -> str | None:
    """A report's text field, None when empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None
