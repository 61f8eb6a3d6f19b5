"""Bearer-token authentication of /api/v1: which tokens pass, and what each refusal says."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask

from tests.unit.api.support import (
    OLD_SECRET,
    SECRET,
    bearer,
    claims,
    forged,
    hs256,
    make_app,
)
from webhook_receiver.auth import (
    NOT_CONFIGURED,
    SCOPES,
    Principal,
    authenticate,
    current_principal,
    describe_configuration,
    init_auth,
    mint_token,
    principal_or_none,
    requires,
    sees_owner,
)
from webhook_receiver.errors import Unauthorized
from webhook_receiver.settings import ReceiverSettings

HS256 = ReceiverSettings(jwt_secrets=(SECRET,))


def _pem(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ping(app: Flask, headers: dict[str, str] | None = None):
    return app.test_client().get("/api/v1/ping", headers=headers or {})


def refused(app: Flask, token: str | None = None, headers: dict[str, str] | None = None) -> str:
    """Call with `token` (or raw `headers`); assert a 401 problem and return its detail."""
    response = ping(app, headers if token is None else bearer(token))
    assert response.status_code == 401, response.get_json()
    body = response.get_json()
    assert body["title"] == "Unauthorized"
    assert token is None or token not in body["detail"]
    return body["detail"]


class TestHs256:
    def test_a_valid_token_names_its_principal(self):
        response = ping(make_app(HS256), bearer(hs256(owner_id="tenant-1")))
        assert response.status_code == 200
        assert response.get_json() == {
            "sub": "shop",
            "scopes": ["wallets:read"],
            "owner_id": "tenant-1",
        }

    def test_the_scheme_is_case_insensitive(self):
        response = ping(make_app(HS256), {"Authorization": f"bEaReR {hs256()}"})
        assert response.status_code == 200

    def test_an_expired_token_is_refused(self):
        detail = refused(make_app(HS256), hs256(exp=int(time.time()) - 120))
        assert "expired" in detail

    def test_expiry_within_the_leeway_is_tolerated(self):
        token = hs256(exp=int(time.time()) - 5)
        assert ping(make_app(HS256), bearer(token)).status_code == 200
        strict = ReceiverSettings(jwt_secrets=(SECRET,), jwt_leeway_s=0)
        assert "expired" in refused(make_app(strict), token)

    def test_a_token_not_yet_valid_is_refused(self):
        detail = refused(make_app(HS256), hs256(nbf=int(time.time()) + 600))
        assert "not valid yet" in detail

    def test_a_wrong_signature_is_refused(self):
        detail = refused(make_app(HS256), hs256(secret="another-secret-of-thirty-two-bytes!!"))
        assert "signature" in detail

    def test_any_rotated_secret_verifies(self):
        app = make_app(ReceiverSettings(jwt_secrets=(SECRET, OLD_SECRET)))
        assert ping(app, bearer(hs256(secret=OLD_SECRET))).status_code == 200
        assert ping(app, bearer(hs256(secret=SECRET))).status_code == 200

    def test_an_unsigned_token_is_refused(self):
        token = forged({"alg": "none", "typ": "JWT"}, claims(), None)
        assert "algorithm" in refused(make_app(HS256), token)

    @pytest.mark.parametrize("missing", ["exp", "sub"])
    def test_exp_and_sub_are_required(self, missing):
        detail = refused(make_app(HS256), hs256(**{missing: None}))
        assert f"the token has no {missing} claim" in detail

    @pytest.mark.parametrize(
        ("claim", "value"),
        [("sub", ""), ("sub", "x" * 256), ("owner_id", ""), ("owner_id", 7), ("scope", ["a"])],
    )
    def test_claims_of_the_wrong_shape_are_refused(self, claim, value):
        refused(make_app(HS256), hs256(**{claim: value}))

    def test_unknown_scope_words_are_ignored(self):
        token = hs256(scope="wallets:read reports:read")
        response = ping(make_app(HS256), bearer(token))
        assert response.status_code == 200
        assert response.get_json()["scopes"] == ["wallets:read"]


class TestAudienceAndIssuer:
    SETTINGS = ReceiverSettings(
        jwt_secrets=(SECRET,), jwt_audience="walletpipe", jwt_issuer="https://idp.example"
    )

    def test_matching_aud_and_iss_pass(self):
        token = hs256(aud="walletpipe", iss="https://idp.example")
        assert ping(make_app(self.SETTINGS), bearer(token)).status_code == 200

    @pytest.mark.parametrize(
        ("overrides", "said"),
        [
            ({"aud": "another-service", "iss": "https://idp.example"}, "audience"),
            ({"iss": "https://idp.example"}, "no aud claim"),
            ({"aud": "walletpipe", "iss": "https://evil.example"}, "issuer"),
            ({"aud": "walletpipe"}, "no iss claim"),
        ],
    )
    def test_a_mismatch_or_absence_is_refused(self, overrides, said):
        assert said in refused(make_app(self.SETTINGS), hs256(**overrides))

    def test_without_configuration_aud_is_not_checked(self):
        assert ping(make_app(HS256), bearer(hs256(aud="anything"))).status_code == 200


class TestPublicKeys:
    def test_rs256_with_the_configured_key_passes(self, rsa_key):
        app = make_app(ReceiverSettings(jwt_public_keys=(_pem(rsa_key),)))
        token = jwt.encode(claims(), rsa_key, algorithm="RS256")
        assert ping(app, bearer(token)).status_code == 200

    def test_es256_with_the_configured_key_passes(self, ec_key):
        app = make_app(ReceiverSettings(jwt_public_keys=(_pem(ec_key),)))
        token = jwt.encode(claims(), ec_key, algorithm="ES256")
        assert ping(app, bearer(token)).status_code == 200

    def test_any_of_several_keys_verifies(self, rsa_key, ec_key):
        app = make_app(ReceiverSettings(jwt_public_keys=(_pem(rsa_key), _pem(ec_key))))
        for key, algorithm in ((rsa_key, "RS256"), (ec_key, "ES256")):
            token = jwt.encode(claims(), key, algorithm=algorithm)
            assert ping(app, bearer(token)).status_code == 200

    def test_another_rsa_key_is_refused(self, rsa_key):
        app = make_app(ReceiverSettings(jwt_public_keys=(_pem(rsa_key),)))
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert "signature" in refused(app, jwt.encode(claims(), stranger, algorithm="RS256"))

    def test_hs256_signed_with_the_public_key_text_is_refused(self, rsa_key):
        # Algorithm confusion: a verifier that fed the PEM to HMAC would accept this token.
        pem = _pem(rsa_key)
        app = make_app(ReceiverSettings(jwt_public_keys=(pem,)))
        token = forged({"alg": "HS256", "typ": "JWT"}, claims(scope="admin"), pem.encode())
        assert "algorithm" in refused(app, token)

    def test_hs256_with_the_public_key_text_fails_even_beside_secrets(self, rsa_key):
        pem = _pem(rsa_key)
        app = make_app(ReceiverSettings(jwt_secrets=(SECRET,), jwt_public_keys=(pem,)))
        token = forged({"alg": "HS256", "typ": "JWT"}, claims(scope="admin"), pem.encode())
        assert "signature" in refused(app, token)

    def test_an_ec_key_does_not_verify_rs256(self, ec_key, rsa_key):
        app = make_app(ReceiverSettings(jwt_public_keys=(_pem(ec_key),)))
        assert "algorithm" in refused(app, jwt.encode(claims(), rsa_key, algorithm="RS256"))

    def test_a_short_rsa_key_stops_the_start(self):
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (on purpose)
        with pytest.raises(ValueError, match="WALLETPIPE_JWT_PUBLIC_KEY"):
            init_auth(Flask(__name__), ReceiverSettings(jwt_public_keys=(_pem(weak),)))

    def test_an_ec_key_on_another_curve_stops_the_start(self):
        p384 = ec.generate_private_key(ec.SECP384R1())
        with pytest.raises(ValueError, match="P-256"):
            init_auth(Flask(__name__), ReceiverSettings(jwt_public_keys=(_pem(p384),)))


class TestMalformedHeaders:
    @pytest.mark.parametrize(
        ("authorization", "said"),
        [
            ("Bearer", "exactly one token"),
            ("Basic dXNlcjpwYXNz", "scheme must be Bearer"),
            ("Bearer a b", "exactly one token"),
            ("Bearer not-a-jwt", "well-formed"),
            ("Bearer a.b.c", "well-formed"),
            ("Bearer " + "a" * 10_240, "longer than 8192"),
        ],
    )
    def test_each_is_refused_saying_why(self, authorization, said):
        assert said in refused(make_app(HS256), headers={"Authorization": authorization})

    def test_no_header_is_refused(self):
        assert "no Authorization header" in refused(make_app(HS256), headers={})


class TestScopes:
    def test_a_missing_scope_is_forbidden_and_named(self):
        app = make_app(HS256, scope="orders:write")
        response = ping(app, bearer(hs256(scope="wallets:read wallets:write")))
        assert response.status_code == 403
        assert "lacks the orders:write scope" in response.get_json()["detail"]

    @pytest.mark.parametrize("scope", sorted(SCOPES))
    def test_admin_implies_every_scope(self, scope):
        assert ping(make_app(HS256, scope=scope), bearer(hs256(scope="admin"))).status_code == 200

    def test_an_unknown_scope_in_code_fails_at_import(self):
        with pytest.raises(ValueError, match="wallet:read"):
            requires("wallet:read")

    def test_principal_has(self):
        principal = Principal("svc", frozenset({"wallets:read"}))
        assert principal.has("wallets:read")
        assert not principal.has("wallets:write")


class TestOwners:
    def test_an_unbound_token_sees_every_owner(self):
        assert sees_owner(Principal("svc", frozenset()), "tenant-1")

    def test_a_bound_token_sees_its_owner_only(self):
        principal = Principal("svc", frozenset(), owner_id="tenant-1")
        assert sees_owner(principal, "tenant-1")
        assert not sees_owner(principal, "tenant-2")
        assert not sees_owner(principal, None)


class TestUnconfigured:
    def test_every_call_is_refused_saying_what_to_set(self):
        assert refused(make_app(ReceiverSettings()), hs256()) == NOT_CONFIGURED

    def test_the_start_warns_once(self, caplog):
        with caplog.at_level(logging.WARNING, logger="webhook_receiver.auth"):
            make_app(ReceiverSettings())
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert "WALLETPIPE_JWT_SECRET" in caplog.records[0].getMessage()

    def test_the_description_never_shows_a_key(self):
        described = describe_configuration(HS256)
        assert "HS256" in described
        assert SECRET not in described


class TestRequestHelpers:
    def test_current_principal_outside_requires_is_a_programming_error(self):
        app = make_app(HS256)
        with app.test_request_context("/api/v1/ping"), pytest.raises(RuntimeError):
            current_principal()

    def test_principal_or_none_never_raises(self):
        app = make_app(HS256)
        with app.test_request_context("/api/v1/ping", headers=bearer("junk")):
            assert principal_or_none() is None
        with app.test_request_context("/api/v1/ping", headers=bearer(hs256())):
            principal = principal_or_none()
            assert principal is not None
            assert principal.subject == "shop"

    def test_authenticate_verifies_with_the_given_settings(self):
        with Flask(__name__).test_request_context("/", headers=bearer(hs256(sub="svc"))):
            assert authenticate(HS256).subject == "svc"
            with pytest.raises(Unauthorized, match="signature"):
                authenticate(ReceiverSettings(jwt_secrets=(OLD_SECRET,)))


class TestMintToken:
    SETTINGS = ReceiverSettings(
        jwt_secrets=(OLD_SECRET, SECRET), jwt_audience="walletpipe", jwt_issuer="ops"
    )

    def test_a_minted_token_carries_the_claims_and_is_accepted(self):
        now = datetime(2030, 1, 1, tzinfo=UTC)
        token = mint_token(
            self.SETTINGS,
            subject="billing-service",
            scopes=["billing:write", "wallets:read"],
            owner_id="tenant-1",
            ttl_s=120,
            now=now,
        )
        decoded = jwt.decode(
            token,
            SECRET,  # the newest (last) secret signs
            algorithms=["HS256"],
            audience="walletpipe",
            options={"verify_exp": False, "verify_iat": False},
        )
        assert decoded["sub"] == "billing-service"
        assert decoded["scope"] == "billing:write wallets:read"
        assert decoded["owner_id"] == "tenant-1"
        assert decoded["exp"] - decoded["iat"] == 120
        assert decoded["iat"] == int(now.timestamp())
        assert decoded["iss"] == "ops"
        assert len(decoded["jti"]) == 32

        live = mint_token(self.SETTINGS, subject="svc", scopes="wallets:read")
        assert ping(make_app(self.SETTINGS), bearer(live)).status_code == 200

    def test_an_unknown_scope_names_the_allowed_ones(self):
        with pytest.raises(ValueError, match="wallets:read") as caught:
            mint_token(HS256, subject="svc", scopes="wallets:raed")
        assert "wallets:raed" in str(caught.value)

    def test_without_a_secret_it_says_what_to_set(self):
        with pytest.raises(ValueError, match="WALLETPIPE_JWT_SECRET"):
            mint_token(ReceiverSettings(), subject="svc", scopes="admin")

    @pytest.mark.parametrize(
        ("kwargs", "said"),
        [
            ({"ttl_s": 0}, "ttl_s"),
            ({"ttl_s": 31 * 86_400 + 1}, "ttl_s"),
            ({"subject": ""}, "sub"),
            ({"owner_id": ""}, "owner_id"),
        ],
    )
    def test_out_of_bounds_values_are_refused(self, kwargs, said):
        with pytest.raises(ValueError, match=said):
            mint_token(HS256, **{"subject": "svc", "scopes": "admin", **kwargs})
