"""The contract every gateway adapter keeps, checked for each with its own signed samples."""

from __future__ import annotations

import dataclasses

import pytest

from webhook_receiver.errors import MalformedPayload, SignatureInvalid, TimestampOutOfTolerance
from webhook_receiver.event import EventKind

from .support import CASE_IDS, CASES, HEADER_CASES, NOW, TIMED_CASES, GatewayCase, without

cases = pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
timed_cases = pytest.mark.parametrize("case", TIMED_CASES, ids=[c.name for c in TIMED_CASES])
header_cases = pytest.mark.parametrize("case", HEADER_CASES, ids=[c.name for c in HEADER_CASES])


@cases
def test_a_signed_payment_is_accepted_and_normalised(case: GatewayCase) -> None:
    sample = case.sample(event_id="evt-1")

    [event] = case.parse(sample)

    assert event.gateway == case.name
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.amount_minor == 1050
    assert event.currency == case.currency
    assert event.reference == "topup-1"
    assert "evt-1" in event.event_id
    assert event.payment_id
    assert event.occurred_at is None or event.occurred_at.tzinfo is not None


# PayFast reports no refunds by ITN; PayPal has no refund-failed event.
UNSENT = {("payfast", EventKind.REFUND_SUCCEEDED), ("payfast", EventKind.REFUND_FAILED)}
UNSENT |= {("paypal", EventKind.REFUND_FAILED)}
KIND_CASES = [
    pytest.param(case, kind, id=f"{case.name}-{kind.value}")
    for case in CASES
    for kind in EventKind
    if (case.name, kind) not in UNSENT
]


@pytest.mark.parametrize(("case", "kind"), KIND_CASES)
def test_every_kind_a_gateway_sends_round_trips(case: GatewayCase, kind: EventKind) -> None:
    [event] = case.parse(case.sample(kind=kind))

    assert event.kind is kind
    if kind is EventKind.OTHER:
        assert (event.amount_minor, event.currency, event.reference) == (None, None, None)
    else:
        assert (event.amount_minor, event.currency) == (1050, case.currency)
        assert event.reference == "topup-1"


@pytest.mark.parametrize(("name", "kind"), sorted(UNSENT))
def test_a_sample_of_an_event_the_gateway_never_sends_is_refused(
    name: str, kind: EventKind
) -> None:
    case = next(case for case in CASES if case.name == name)

    with pytest.raises(ValueError, match="sends no"):
        case.sample(kind=kind)


@cases
def test_a_tampered_body_is_refused(case: GatewayCase) -> None:
    sample = case.sample()
    tampered = dataclasses.replace(sample, body=sample.body.replace(b"topup-1", b"topup-9"))
    assert tampered.body != sample.body

    with pytest.raises(SignatureInvalid):
        case.parse(tampered)


@cases
def test_a_request_signed_with_another_secret_is_refused(case: GatewayCase) -> None:
    sample = case.sample(secret=case.other_secret)

    with pytest.raises(SignatureInvalid) as raised:
        case.parse(sample, case.secret)
    assert not isinstance(raised.value, TimestampOutOfTolerance)


@cases
@pytest.mark.parametrize("position", ["first", "second"])
def test_each_of_several_configured_secrets_is_accepted(case: GatewayCase, position: str) -> None:
    signed_with = case.secret if position == "first" else case.other_secret

    [event] = case.parse(case.sample(secret=signed_with), case.secret, case.other_secret)

    assert event.kind is EventKind.PAYMENT_SUCCEEDED


@cases
def test_a_redelivery_has_the_dedupe_key_of_the_first_delivery(case: GatewayCase) -> None:
    first = case.sample(event_id="evt-dup", now=NOW)
    retry = case.sample(event_id="evt-dup", now=NOW + 60)  # gateways re-sign their retries
    other = case.sample(event_id="evt-new", now=NOW)

    [first_event] = case.parse(first)
    [same_bytes_again] = case.parse(first)
    [retried] = case.parse(retry, now=NOW + 60)
    [other_event] = case.parse(other)

    assert first_event.event_id == same_bytes_again.event_id == retried.event_id
    assert other_event.event_id != first_event.event_id


@timed_cases
@pytest.mark.parametrize("skew_s", [-301, 301, -86_400, 86_400])
def test_a_timestamp_outside_the_tolerance_is_refused(case: GatewayCase, skew_s: int) -> None:
    sample = case.sample(now=NOW + skew_s)

    with pytest.raises(TimestampOutOfTolerance):
        case.parse(sample, now=NOW)


@timed_cases
@pytest.mark.parametrize("skew_s", [-299, 299])
def test_a_timestamp_within_the_tolerance_is_accepted(case: GatewayCase, skew_s: int) -> None:
    [event] = case.parse(case.sample(now=NOW + skew_s), now=NOW)

    assert event.kind is EventKind.PAYMENT_SUCCEEDED


@header_cases
def test_a_request_without_its_signature_header_is_refused(case: GatewayCase) -> None:
    assert case.signature_header
    sample = case.sample()
    unsigned = dataclasses.replace(sample, headers=without(sample.headers, case.signature_header))

    with pytest.raises(SignatureInvalid):
        case.parse(unsigned)


@header_cases
@pytest.mark.parametrize("garbage", ["", "not-a-signature", "v1,", "t=,v1=", "=" * 90, "ü"])
def test_a_malformed_signature_header_is_refused(case: GatewayCase, garbage: str) -> None:
    assert case.signature_header
    sample = case.sample()
    headers = without(sample.headers, case.signature_header) | {case.signature_header: garbage}

    with pytest.raises(SignatureInvalid):
        case.parse(dataclasses.replace(sample, headers=headers))


@header_cases
def test_a_signature_header_repeated_with_different_values_is_malformed(
    case: GatewayCase,
) -> None:
    assert case.signature_header
    sample = case.sample()
    signature = sample.headers[case.signature_header]
    request = sample.to_request(case.remote_addr)
    headers = dict(request.headers)
    headers[case.signature_header.lower()] = (signature, signature[:-4] + "AAAA")

    with pytest.raises(MalformedPayload):
        case.adapter((case.secret,), NOW).parse(dataclasses.replace(request, headers=headers))


@header_cases
def test_a_signature_header_repeated_with_the_same_value_is_accepted(case: GatewayCase) -> None:
    assert case.signature_header
    sample = case.sample()
    request = sample.to_request(case.remote_addr)
    headers = dict(request.headers)
    headers[case.signature_header.lower()] *= 2

    [event] = case.adapter((case.secret,), NOW).parse(dataclasses.replace(request, headers=headers))

    assert event.kind is EventKind.PAYMENT_SUCCEEDED


@cases
@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"[]", b"null", b"{"])
def test_an_unsigned_unreadable_body_is_refused(case: GatewayCase, body: bytes) -> None:
    sample = dataclasses.replace(case.sample(), body=body)

    with pytest.raises((SignatureInvalid, MalformedPayload)):
        case.parse(sample)
