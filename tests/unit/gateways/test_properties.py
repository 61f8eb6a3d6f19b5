"""Properties every adapter keeps for any input: only WebhookErrors escape, nothing unsigned
is ever returned, and whatever is returned is money the ledger can take."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.money import AMOUNT_MINOR_MAX, validate_currency
from webhook_receiver.errors import MalformedPayload, SignatureInvalid, WebhookError
from webhook_receiver.event import EventKind, GatewayEvent
from webhook_receiver.gateways import adyen, payfast, yoco

from .support import CASES, NOW, GatewayCase, no_adapter_bugs, paypal_signer, request

cases = pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADERS = {
    "razorpay": ["x-razorpay-signature", "x-razorpay-event-id"],
    "stripe": ["stripe-signature"],
    "paypal": [
        "paypal-transmission-id",
        "paypal-transmission-time",
        "paypal-transmission-sig",
        "paypal-cert-url",
        "paypal-auth-algo",
    ],
    "yoco": ["webhook-id", "webhook-timestamp", "webhook-signature"],
    "payfast": ["x-forwarded-for"],
    "paystack": ["x-paystack-signature"],
    "adyen": [],
}
# Values that steer generated documents into the adapters' interesting branches.
INTERESTING = [
    "payment.captured", "refund.processed", "payment_intent.succeeded", "refund.updated",
    "PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.REFUNDED", "payment.succeeded",
    "charge.success", "refund.failed", "AUTHORISATION", "REFUND", "true", "false", "succeeded",
    "COMPLETE", "USD", "usd", "ZAR", "JPY", "XXX", "10.50", "1e3", "-0", "google_pay",
    "https://api.paypal.com/v1/notifications/certs/CERT-1", "t=1750000000,v1=00", "v1,AAAA",
]  # fmt: skip
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(INTERESTING),
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.lists(st.tuples(st.text(max_size=12), st.text(max_size=20)), max_size=8).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
    ),
)
header_values = st.lists(
    st.one_of(st.text(max_size=120), st.sampled_from(INTERESTING)), min_size=1, max_size=2
).map(tuple)
DELETE = object()


def assert_ledger_ready(events: list[GatewayEvent], gateway: str) -> None:
    assert events
    for event in events:
        assert event.gateway == gateway
        assert isinstance(event.event_id, str)
        assert event.event_id
        assert isinstance(event.kind, EventKind)
        assert event.occurred_at is None or event.occurred_at.tzinfo is not None
        assert event.reference is None or isinstance(event.reference, str)
        if event.kind is EventKind.OTHER:
            assert event.amount_minor is None
            continue
        assert isinstance(event.amount_minor, int)
        assert 0 < event.amount_minor <= AMOUNT_MINOR_MAX
        assert event.currency is not None
        assert validate_currency(event.currency)
        assert isinstance(event.payment_id, str)
        assert event.payment_id


@cases
@fuzz
@given(body=bodies, values=st.data())
def test_an_unsigned_request_only_ever_raises_a_webhook_error(
    case: GatewayCase, body: bytes, values: st.DataObject
) -> None:
    headers = {name: values.draw(header_values, label=name) for name in HEADERS[case.name]}
    headers |= values.draw(st.dictionaries(st.text(max_size=20), header_values, max_size=3))

    with no_adapter_bugs(), pytest.raises(WebhookError):
        case.adapter((case.secret,), NOW).parse(request(body, headers, case.remote_addr))


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def mutate(document: Any, data: st.DataObject) -> Any:
    """`document` with up to four values replaced by arbitrary JSON, or removed."""
    for _ in range(data.draw(st.integers(0, 4), label="mutations")):
        path = data.draw(st.sampled_from(paths(document)), label="path")
        value = data.draw(json_values | st.just(DELETE), label="value")
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if value is DELETE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        if not paths(document):
            break
    return document


def signed_request(case: GatewayCase, document: Any, data: st.DataObject) -> Any:
    """A request carrying `document`, signed correctly for `case` whatever it contains."""
    secret = case.secret.encode()
    if case.name == "payfast":
        fields = [(str(k), str(v)) for k, v in document.items() if k != "signature"]
        fields.append(("signature", payfast.signature(fields, case.secret)))
        body = "&".join(f"{k}={payfast.urlencode(v)}" for k, v in fields).encode()
        return request(body, {}, case.remote_addr)
    if case.name == "adyen":
        wrappers = document.get("notificationItems")
        for wrapper in wrappers if isinstance(wrappers, list) else []:
            item = wrapper.get("NotificationRequestItem") if isinstance(wrapper, dict) else None
            if isinstance(item, dict):
                try:
                    text = adyen.signing_string(item).encode()
                except MalformedPayload:
                    continue
                digest = hmac.new(bytes.fromhex(case.secret), text, "sha256").digest()
                item["additionalData"] = {"hmacSignature": base64.b64encode(digest).decode()}
        return request(json.dumps(document).encode())
    body = data.draw(st.just(json.dumps(document).encode()) | st.binary(max_size=100))
    headers: dict[str, str]
    if case.name == "razorpay":
        headers = {"x-razorpay-signature": hmac.new(secret, body, "sha256").hexdigest()}
        headers["x-razorpay-event-id"] = "evt_fuzz"
    elif case.name == "paystack":
        headers = {"x-paystack-signature": hmac.new(secret, body, hashlib.sha512).hexdigest()}
    elif case.name == "stripe":
        signature = hmac.new(secret, f"{int(NOW)}.".encode() + body, "sha256").hexdigest()
        headers = {"stripe-signature": f"t={int(NOW)},v1={signature}"}
    elif case.name == "yoco":
        signed = f"msg_fuzz.{int(NOW)}.".encode() + body
        digest = hmac.new(yoco.secret_key(case.secret), signed, "sha256").digest()
        headers = {
            "webhook-id": "msg_fuzz",
            "webhook-timestamp": str(int(NOW)),
            "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
        }
    else:
        headers = paypal_signer().headers(body, case.secret)
    return request(body, headers, case.remote_addr)


def sample_document(case: GatewayCase, kind: EventKind) -> Any:
    body = case.sample(kind=kind).body
    if case.name == "payfast":
        return dict(payfast._form_fields(body))
    return json.loads(body)


@cases
@fuzz
@given(data=st.data())
def test_signed_but_odd_content_is_malformed_or_ledger_ready(
    case: GatewayCase, data: st.DataObject
) -> None:
    kinds = [EventKind.PAYMENT_SUCCEEDED, EventKind.PAYMENT_FAILED, EventKind.OTHER]
    if case.name != "payfast":
        kinds.append(EventKind.REFUND_SUCCEEDED)
    document = mutate(sample_document(case, data.draw(st.sampled_from(kinds))), data)
    signed = signed_request(case, document, data)

    with no_adapter_bugs():
        try:
            events = case.adapter((case.secret,), NOW).parse(signed)
        except SignatureInvalid:
            # Only Adyen can be unsigned here: an item whose signed fields cannot be read.
            assert case.name == "adyen"
            hypothesis.event("unsigned")
            return
        except MalformedPayload:
            hypothesis.event("malformed")
            return
    hypothesis.event(f"accepted as {events[0].kind}")
    assert_ledger_ready(events, case.name)


BODY_SIGNED = [case for case in CASES if case.name not in ("adyen", "payfast")]


@pytest.mark.parametrize("case", BODY_SIGNED, ids=[case.name for case in BODY_SIGNED])
@fuzz
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_of_a_signed_body_is_refused(
    case: GatewayCase, position: int, flip: int
) -> None:
    sample = case.sample()
    body = bytearray(sample.body)
    body[position % len(body)] ^= flip

    with pytest.raises(SignatureInvalid):
        case.parse(dataclasses.replace(sample, body=bytes(body)))


@fuzz
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_a_changed_byte_of_an_itn_is_refused_unless_it_means_the_same(
    position: int, flip: int
) -> None:
    case = next(case for case in CASES if case.name == "payfast")
    sample = case.sample()
    body = bytearray(sample.body)
    body[position % len(body)] ^= flip
    [original] = case.parse(sample)

    try:
        events = case.parse(dataclasses.replace(sample, body=bytes(body)))
    except WebhookError:
        return
    # Only an equivalent encoding (say %2b for %2B) can still verify.
    assert events == [original]
