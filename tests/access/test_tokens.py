"""Tokens: signature, expiry, certificate binding (RFC 8705), key rotation and revocation."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
import pytest

from ror.access.certs import CertInfo
from ror.access.registry import Registry
from ror.access.tokens import AUDIENCE, TokenService
from ror.access.trust import TrustSpace
from ror.errors import Forbidden, Unauthorized
from ror.settings import Settings
from ror.store.engine import make_engine
from ror.store.migrate import upgrade

CERT_A = CertInfo(hashlib.sha256(b"cert-a").hexdigest(), "CN=alpha", "")
CERT_B = CertInfo(hashlib.sha256(b"cert-b").hexdigest(), "CN=beta", "")
COMMON = {"contact": "ops@example.test", "user_profile_code": "CU22", "role_code": "AUTOMATE"}


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def trust(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    settings = Settings(database_url=db_url, auth_required=True, token_ttl_s=300, token_key_max_age_s=3600)
    trust = TrustSpace(engine, settings)
    trust.clock = Clock()
    trust.tokens = TokenService(engine, settings, clock=trust.clock)
    yield trust
    engine.dispose()


def register(registry: Registry, app_id: str, profile: int, *certs: CertInfo):
    return registry.register(app_id=app_id, name=app_id, profile=profile, certificates=certs, **COMMON)


def test_token_is_a_certificate_bound_es256_jwt(trust):
    app, _ = register(trust.registry, "alpha", 2, CERT_A)
    body = trust.tokens.issue(app, CERT_A.thumbprint)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    header = jwt.get_unverified_header(body["access_token"])
    jwk = next(k for k in trust.tokens.jwks()["keys"] if k["kid"] == header["kid"])
    assert header["alg"] == "ES256" and jwk["kty"] == "EC" and "d" not in jwk  # no private part published
    claims = jwt.decode(body["access_token"], jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=AUDIENCE,
                        options={"verify_exp": False, "verify_iat": False})
    x5t = base64.urlsafe_b64encode(bytes.fromhex(CERT_A.thumbprint)).rstrip(b"=").decode()
    assert claims["cnf"] == {"x5t#S256": x5t} and claims["sub"] == "alpha" and claims["ror_profile"] == 2
    assert trust.authenticate(body["access_token"], CERT_A).app_id == "alpha"


def test_binding_is_enforced(trust):
    app, _ = register(trust.registry, "alpha", 2, CERT_A, CERT_B)
    token = trust.tokens.issue(app, CERT_A.thumbprint)["access_token"]
    with pytest.raises(Unauthorized, match="present it"):
        trust.authenticate(token, None)
    with pytest.raises(Unauthorized, match="bound to another client certificate"):
        trust.authenticate(token, CERT_B)
    trust.registry.remove_certificate("alpha", CERT_A.thumbprint)
    with pytest.raises(Unauthorized, match="revoked"):  # removing a certificate revokes its tokens
        trust.authenticate(token, CERT_A)


def test_an_unbound_token_is_refused_once_the_application_needs_a_certificate(trust):
    app, _ = register(trust.registry, "app1", 0)
    token = trust.tokens.issue(app, None)["access_token"]
    assert trust.authenticate(token, None).profile == 0
    trust.registry.add_certificate("app1", CERT_A)
    trust.registry.update("app1", profile=1)
    with pytest.raises(Unauthorized, match="certificate-bound token"):
        trust.authenticate(token, CERT_A)


def test_expiry(trust):
    app, _ = register(trust.registry, "app1", 0)
    token = trust.tokens.issue(app, None)["access_token"]
    trust.clock.t += 300 + 29  # within the clock-skew leeway
    trust.authenticate(token, None)
    trust.clock.t += 2
    with pytest.raises(Unauthorized, match="expired") as e:
        trust.authenticate(token, None)
    assert e.value.issues[0].code == "expired"
    assert 'error="invalid_token"' in e.value.headers["WWW-Authenticate"]


def test_forged_tokens_are_refused(trust):
    app, _ = register(trust.registry, "app1", 0)
    token = trust.tokens.issue(app, None)["access_token"]
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["ror_profile"] = 1
    forged = head + "." + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + sig
    with pytest.raises(Unauthorized, match="invalid"):
        trust.authenticate(forged, None)
    kid = jwt.get_unverified_header(token)["kid"]
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    with pytest.raises(Unauthorized, match="invalid"):
        trust.authenticate(unsigned, None)
    other_key = jwt.encode(claims, "secret-of-someone-else-at-least-32-bytes!", algorithm="HS256",
                           headers={"kid": kid})
    with pytest.raises(Unauthorized, match="invalid"):
        trust.authenticate(other_key, None)
    with pytest.raises(Unauthorized, match="unknown key id"):
        trust.authenticate(jwt.encode(claims, "k" * 32, algorithm="HS256", headers={"kid": "nope"}), None)
    with pytest.raises(Unauthorized):
        trust.authenticate("not-a-jwt", None)


def test_a_validly_signed_token_not_issued_here_is_refused(trust):
    """Even with the signing key, a token must have been recorded at issuance."""
    app, _ = register(trust.registry, "app1", 0)
    token = trust.tokens.issue(app, None)["access_token"]
    kid, key = trust.tokens._signing_key()
    claims = jwt.decode(token, options={"verify_signature": False})
    minted = jwt.encode({**claims, "jti": "f" * 32}, key, algorithm="ES256", headers={"kid": kid})
    with pytest.raises(Unauthorized, match="not issued by this server"):
        trust.authenticate(minted, None)


def test_revocation_and_suspension_take_effect_immediately(trust):
    app, _ = register(trust.registry, "app1", 0)
    token = trust.tokens.issue(app, None)["access_token"]
    trust.authenticate(token, None)  # now cached as verified: revocation must still apply
    trust.tokens.revoke(jwt.decode(token, options={"verify_signature": False})["jti"])
    with pytest.raises(Unauthorized, match="revoked"):
        trust.authenticate(token, None)
    token = trust.tokens.issue(app, None)["access_token"]
    trust.registry.set_status("app1", "suspended")
    with pytest.raises(Forbidden, match="suspended"):
        trust.authenticate(token, None)


def test_the_check_the_api_awaits_decides_as_the_other(trust):
    """``authenticate_async`` (what the trust space's front awaits: on PostgreSQL the token's state read on the event
    loop's own connections) admits and refuses exactly as ``authenticate``, revocation and suspension at once."""
    import asyncio

    from ror.store.engine import _LOOP_READERS

    app, _ = register(trust.registry, "app1", 0)
    token = trust.tokens.issue(app, None)["access_token"]

    def both(tok: str):
        async def awaited():
            return await trust.authenticate_async(tok, None)
        outcomes = []
        for check in (lambda: trust.authenticate(tok, None), lambda: asyncio.run(awaited())):
            try:
                outcomes.append(check().app_id)
            except (Unauthorized, Forbidden) as e:
                outcomes.append((type(e).__name__, e.issues[0].code, e.message))
        assert outcomes[0] == outcomes[1]
        return outcomes[0]

    assert both(token) == "app1"
    assert (trust.registry.engine.pool in _LOOP_READERS) == (trust.registry.engine.dialect.name == "postgresql")
    trust.tokens.revoke(jwt.decode(token, options={"verify_signature": False})["jti"])
    assert both(token)[0] == "Unauthorized" and "revoked" in both(token)[2]
    token = trust.tokens.issue(app, None)["access_token"]
    trust.registry.set_status("app1", "suspended")
    assert both(token)[0] == "Forbidden"
    assert both("not.a.token")[0] == "Unauthorized"


def test_key_rotation(trust):
    app, _ = register(trust.registry, "app1", 0)
    old = trust.tokens.issue(app, None)["access_token"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    new_kid = trust.tokens.rotate()
    new = trust.tokens.issue(app, None)["access_token"]
    assert jwt.get_unverified_header(new)["kid"] == new_kid != old_kid
    assert {k["kid"] for k in trust.tokens.jwks()["keys"]} == {old_kid, new_kid}
    other_worker = TokenService(trust.tokens.engine, trust.settings, clock=trust.clock)
    assert other_worker.verify(old)["jti"] != other_worker.verify(new)["jti"]  # both verify, on any worker
    # by age: the key in use is replaced once older than token_key_max_age_s ...
    trust.clock.t += 3601
    auto = trust.tokens.issue(app, None)["access_token"]
    assert jwt.get_unverified_header(auto)["kid"] not in (old_kid, new_kid)
    # ... and a retired key is dropped once every token it signed has expired
    trust.tokens.rotate()
    assert old_kid not in {k["kid"] for k in trust.tokens.signing_keys()}


def test_token_endpoint_client_authentication(trust):
    _, secret = register(trust.registry, "open", 0)
    register(trust.registry, "alpha", 2, CERT_A)
    grant = {"grant_type": "client_credentials"}
    assert trust.issue_token({**grant, "client_id": "open", "client_secret": secret}, None, None)["access_token"]
    assert trust.issue_token(grant, ("open", secret), CERT_B)["access_token"]  # a certificate is not needed
    bound = trust.issue_token({**grant, "client_id": "alpha"}, None, CERT_A)["access_token"]
    assert "cnf" in jwt.decode(bound, options={"verify_signature": False})
    for form, basic, cert in [({**grant, "client_id": "open", "client_secret": "wrong"}, None, None),
                              ({**grant, "client_id": "alpha", "client_secret": ""}, None, CERT_A),
                              ({**grant, "client_id": "alpha"}, None, CERT_B),
                              ({**grant, "client_id": "ghost"}, None, CERT_A)]:
        with pytest.raises(Unauthorized, match="Client authentication failed"):
            trust.issue_token(form, basic, cert)
    with pytest.raises(Unauthorized, match="mutual TLS"):
        trust.issue_token({**grant, "client_id": "alpha"}, None, None)
    with pytest.raises(Exception, match="grant_type") as e:
        trust.issue_token({"grant_type": "password", "client_id": "open"}, None, None)
    assert e.value.expression == ["grant_type"]
    trust.registry.set_status("alpha", "suspended")
    with pytest.raises(Forbidden, match="suspended"):
        trust.issue_token({**grant, "client_id": "alpha"}, None, CERT_A)
