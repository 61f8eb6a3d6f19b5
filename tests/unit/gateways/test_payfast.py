"""PayFast ITN: MD5 over the fields in received order, a passphrase, and a source check."""

from __future__ import annotations

import hashlib
import ipaddress
import urllib.parse

import pytest

from webhook_receiver.errors import MalformedPayload, SignatureInvalid, SourceNotAllowed
from webhook_receiver.event import EventKind, RawRequest
from webhook_receiver.gateways.payfast import PayfastAdapter, param_string, signature

from .support import PAYFAST_ADDRESS, load_vector, request

PASSPHRASE = "jt7NOE43FZPn"


def vector_fields() -> list[tuple[str, str]]:
    vector = load_vector("payfast_itn_vector.json")
    return [(name, value) for name, value in vector["itn_fields_in_order"]]


def form(fields: list[tuple[str, str]]) -> bytes:
    """The body PayFast posts: fields in order, form-encoded."""
    return "&".join(f"{k}={urllib.parse.quote_plus(v)}" for k, v in fields).encode()


def signed(fields: list[tuple[str, str]], passphrase: str = PASSPHRASE) -> bytes:
    unsigned = [(k, v) for k, v in fields if k != "signature"]
    return form([*unsigned, ("signature", signature(unsigned, passphrase))])


def itn(body: bytes, remote_addr: str | None = PAYFAST_ADDRESS, **headers: str) -> RawRequest:
    return request(body, headers, remote_addr=remote_addr)


def adapter(*passphrases: str, proxies: int = 0) -> PayfastAdapter:
    return PayfastAdapter(passphrases or (PASSPHRASE,), trusted_proxy_count=proxies)


def test_the_vector_signs_blank_fields_in_received_order() -> None:
    vector = load_vector("payfast_itn_vector.json")
    fields = vector_fields()

    assert param_string(fields, vector["passphrase"]) == vector["param_string"]
    assert signature(fields, vector["passphrase"]) == vector["expected_md5"]


def test_the_vector_itn_is_accepted_and_normalised() -> None:
    [event] = adapter("").parse(itn(form(vector_fields())))

    assert event.gateway == "payfast"
    assert event.payment_id == "1579137"
    assert event.event_id == "1579137:COMPLETE"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert (event.amount_minor, event.currency) == (1500, "ZAR")
    assert event.reference == "000000020"
    assert (event.payment_method, event.occurred_at) == (None, None)
    assert event.payload["email_address"] == "lindley+user1@appinlet.com"


def test_the_passphrase_is_appended_php_urlencoded() -> None:
    fields = [("m_payment_id", "t-1"), ("amount_gross", "1.00")]
    signed_text = b"m_payment_id=t-1&amount_gross=1.00&passphrase=a+b%7Ec"
    expected = hashlib.md5(signed_text).hexdigest()  # noqa: S324 - PayFast's scheme

    assert signature(fields, "a b~c") == expected


def test_an_itn_signed_with_a_passphrase_is_accepted_only_with_it() -> None:
    body = signed(vector_fields())

    [event] = adapter().parse(itn(body))

    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    with pytest.raises(SignatureInvalid):
        adapter("").parse(itn(body))


def test_signing_without_the_blank_fields_does_not_match() -> None:
    fields = vector_fields()
    without_blanks = [(k, v) for k, v in fields if v and k != "signature"]
    body = form([*fields[:-1], ("signature", signature(without_blanks, PASSPHRASE))])

    with pytest.raises(SignatureInvalid):
        adapter().parse(itn(body))


def test_a_field_appended_after_the_signature_is_not_trusted() -> None:
    body = signed(vector_fields()) + b"&amount_gross=9999.00"

    with pytest.raises((SignatureInvalid, MalformedPayload)):
        adapter().parse(itn(body))


def test_a_field_posted_twice_is_malformed_even_when_signed() -> None:
    fields = vector_fields()[:-1]
    body = signed([*fields, ("amount_gross", "15.00")])

    with pytest.raises(MalformedPayload):
        adapter().parse(itn(body))


def test_a_signature_posted_twice_with_different_values_is_malformed() -> None:
    body = signed(vector_fields()) + b"&signature=" + b"0" * 32

    with pytest.raises(MalformedPayload):
        adapter().parse(itn(body))


def test_an_itn_without_a_signature_is_refused() -> None:
    with pytest.raises(SignatureInvalid):
        adapter().parse(itn(form(vector_fields()[:-1])))


@pytest.mark.parametrize("body", [b"amount_gross=%ff", b"\xff=1"])
def test_an_itn_that_is_not_utf8_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        adapter().parse(itn(body))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("COMPLETE", EventKind.PAYMENT_SUCCEEDED),
        ("FAILED", EventKind.PAYMENT_FAILED),
        ("CANCELLED", EventKind.OTHER),
        ("PENDING", EventKind.OTHER),
    ],
)
def test_the_payment_status_decides_the_kind(status: str, kind: EventKind) -> None:
    fields = [(k, status if k == "payment_status" else v) for k, v in vector_fields()]

    [event] = adapter().parse(itn(signed(fields)))

    assert event.kind is kind


@pytest.mark.parametrize("amount", ["15.001", "-15.00", "", "1e3", "0.00"])
def test_a_signed_itn_with_an_unusable_amount_is_malformed(amount: str) -> None:
    fields = [(k, amount if k == "amount_gross" else v) for k, v in vector_fields()]

    with pytest.raises(MalformedPayload):
        adapter().parse(itn(signed(fields)))


@pytest.mark.parametrize("remote_addr", ["8.8.8.8", "10.0.0.1", None, "not-an-ip"])
def test_an_itn_from_outside_payfasts_networks_is_refused(remote_addr: str | None) -> None:
    with pytest.raises(SourceNotAllowed):
        adapter().parse(itn(signed(vector_fields()), remote_addr=remote_addr))


def test_an_ipv4_mapped_ipv6_peer_is_read_as_ipv4() -> None:
    [event] = adapter().parse(itn(signed(vector_fields()), remote_addr=f"::ffff:{PAYFAST_ADDRESS}"))

    assert event.kind is EventKind.PAYMENT_SUCCEEDED


def test_x_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    body = signed(vector_fields())

    with pytest.raises(SourceNotAllowed):
        adapter().parse(itn(body, "10.0.0.1", **{"X-Forwarded-For": PAYFAST_ADDRESS}))


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "accepted"),
    [
        (1, f"203.0.113.9, {PAYFAST_ADDRESS}", True),
        (1, f"{PAYFAST_ADDRESS}, 203.0.113.9", False),  # the left entry is the client's to forge
        (2, f"{PAYFAST_ADDRESS}, 10.0.0.2", True),
        (2, PAYFAST_ADDRESS, False),  # fewer hops than proxies: the chain is not ours
        (1, "", False),
    ],
)
def test_behind_trusted_proxies_the_client_is_counted_from_the_right(
    proxies: int, forwarded_for: str, accepted: bool
) -> None:
    request = itn(signed(vector_fields()), "10.0.0.1", **{"X-Forwarded-For": forwarded_for})

    if accepted:
        [event] = adapter(proxies=proxies).parse(request)
        assert event.kind is EventKind.PAYMENT_SUCCEEDED
    else:
        with pytest.raises(SourceNotAllowed):
            adapter(proxies=proxies).parse(request)


def test_a_local_network_can_be_allowed_for_demos() -> None:
    sample = PayfastAdapter.sample(PASSPHRASE, amount_minor=2500, currency="ZAR", reference="t-9")
    local = PayfastAdapter((PASSPHRASE,), allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))

    [event] = local.parse(sample.to_request("127.0.0.1"))

    assert (event.amount_minor, event.reference) == (2500, "t-9")
    with pytest.raises(SourceNotAllowed):
        adapter().parse(sample.to_request("127.0.0.1"))


def test_each_status_of_one_payment_is_an_event_of_its_own() -> None:
    def with_status(status: str) -> list[tuple[str, str]]:
        return [(k, status if k == "payment_status" else v) for k, v in vector_fields()]

    [pending] = adapter().parse(itn(signed(with_status("PENDING"))))
    [complete] = adapter().parse(itn(signed(with_status("COMPLETE"))))

    assert pending.payload["pf_payment_id"] == complete.payment_id == "1579137"
    assert pending.event_id != complete.event_id
    assert complete.kind is EventKind.PAYMENT_SUCCEEDED
