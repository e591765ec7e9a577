"""The trust space end to end: real nginx (Debian) terminating TLS with client certificates from a test
IGC-Santé-like CA, the real app behind it on uvicorn, and a real HTTP client (httpx) presenting certificates.

Every refusal is checked for its status and its OperationOutcome (or its OAuth2 error at /oauth/token).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ror.access.trust import TrustSpace
from ror.store import bulk
from tests.access.conftest import ROR_HEADERS, Nginx, Uvicorn, secured_app, tls_client
from tests.access.pki import TestPki
from tests.conftest import FIXTURES, make_service

FHIR = "application/fhir+json"
FINESS_EG = "750000010"  # a valid FINESS (Luhn) for the write rights


@dataclass
class Stack:
    url: str  # https://127.0.0.1:<nginx port>
    app_url: str  # http://127.0.0.1:<uvicorn port>, behind nginx
    pki: TestPki
    trust: TrustSpace
    secrets: dict[str, str]

    def client(self, cert: str | None = None, **kw) -> httpx.Client:
        return tls_client(self.url, self.pki, cert, **kw)

    def token(self, client_id: str, cert: str | None = None) -> str:
        with self.client(cert) as c:
            if client_id in self.secrets:
                r = c.post("/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(client_id, self.secrets[client_id]))
            else:
                r = c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]


@pytest.fixture(scope="module")
def stack(module_db_url, pki, nginx_binary, tmp_path_factory):
    service = make_service(module_db_url, auth_required=True, trusted_proxy_ips="127.0.0.1",
                           admin_cert_thumbprints=pki.clients["admin"].info.thumbprint,
                           request_body_max_bytes=64 * 1024)
    bulk.upsert(service.engine, [e["resource"] for e in json.loads((FIXTURES / "small" / "bundle.json")
                                                                   .read_text())["entry"]])
    app = secured_app(service)
    reg = app.trust.registry
    common = {"contact": "ops@example.test", "user_profile_code": "CU22", "role_code": "AUTOMATE"}
    reg.register(app_id="alpha", name="Alpha", profile=2, certificates=[pki.clients["alpha"].info],
                 write_establishments=[FINESS_EG], **common)
    reg.register(app_id="beta", name="Beta", profile=1, certificates=[pki.clients["beta"].info], **common)
    reg.register(app_id="gamma", name="Gamma", profile=3, certificates=[pki.clients["gamma"].info], **common)
    # delta also holds the refused certificates: only nginx's verification can stop them
    reg.register(app_id="delta", name="Delta", profile=4, certificates=[
        pki.clients["delta"].info, pki.expired.info, pki.revoked.info, pki.foreign.info], **common)
    secrets = {app_id: reg.register(app_id=app_id, name=app_id, profile=0, **common)[1]
               for app_id in ("opendata", "burst")}
    with Uvicorn(app) as srv, Nginx(nginx_binary, tmp_path_factory.mktemp("nginx"), pki, srv.port, "128k") as ngx:
        yield Stack(ngx.url, srv.url, pki, app.trust, secrets)
    service.engine.dispose()


def outcome(r: httpx.Response, status: int, code: str, text: str = "") -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR), r.headers
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code, body
    assert text in body["issue"][0]["diagnostics"], body
    return body


def oauth_error(r: httpx.Response, status: int, error: str, text: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"] == error, r.text
    assert text in r.json()["error_description"], r.text
    assert r.headers["cache-control"] == "no-store"


def bearer(token: str, **extra) -> dict:
    return {"Authorization": f"Bearer {token}", "Accept": FHIR, **extra}


# -- happy paths ----------------------------------------------------------------------------------------

def test_mtls_client_gets_a_certificate_bound_token_and_reads(stack):
    with stack.client("alpha") as c:
        r = c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "alpha"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 300
        jwks = c.get("/oauth/jwks").json()
        # An independent check of the token: signature from the published JWKS, RFC 8705 confirmation.
        header = jwt.get_unverified_header(body["access_token"])
        key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
        claims = jwt.decode(body["access_token"], key, algorithms=["ES256"], audience="ror-fhir")
        der = stack.pki.clients["alpha"].cert.public_bytes(Encoding.DER)
        assert claims["cnf"]["x5t#S256"] == base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
        assert claims["sub"] == "alpha" and claims["exp"] - claims["iat"] == 300
        r = c.get("/fhir/Organization", params={"_count": "5"}, headers=bearer(body["access_token"], **ROR_HEADERS))
        assert r.status_code == 200, r.text
        assert r.json()["resourceType"] == "Bundle" and len(r.json()["entry"]) == 5
        r = c.get("/fhir/metadata", headers=bearer(body["access_token"]))  # no Ror-* headers needed there
        assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"


def test_profile0_client_uses_its_secret_without_certificate(stack):
    token = stack.token("opendata")
    assert "cnf" not in jwt.decode(token, options={"verify_signature": False})
    with stack.client() as c:
        r = c.get("/fhir/HealthcareService", headers=bearer(token, **ROR_HEADERS))
    assert r.status_code == 200 and r.json()["resourceType"] == "Bundle", r.text
    with stack.client() as c:  # client_secret_post works too; a wrong secret does not
        assert c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "opendata",
                                            "client_secret": stack.secrets["opendata"]}).status_code == 200
        oauth_error(c.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("opendata", "nope")),
                    401, "invalid_client")


# -- refusals -------------------------------------------------------------------------------------------

def test_no_certificate(stack):
    with stack.client() as c:
        oauth_error(c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "alpha"}),
                    401, "invalid_client", "mutual TLS")
        r = c.get("/fhir/Organization", headers={"Accept": FHIR, **ROR_HEADERS})
        outcome(r, 401, "login", "access token is required")
        assert r.headers["www-authenticate"] == 'Bearer realm="ror"'
        # a certificate-bound token without its certificate
        r = c.get("/fhir/Organization", headers=bearer(stack.token("alpha", "alpha"), **ROR_HEADERS))
        outcome(r, 401, "login", "bound to a client certificate")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


@pytest.mark.parametrize(("cert", "reason"), [("foreign", "unable to verify the first certificate"),
                                              ("expired", "certificate has expired"),
                                              ("revoked", "certificate revoked")])
def test_refused_certificates(stack, cert, reason):
    with stack.client(cert) as c:
        oauth_error(c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "delta"}),
                    401, "invalid_client", reason)
        r = c.get("/fhir/Organization", headers=bearer(stack.token("delta", "delta"), **ROR_HEADERS))
        outcome(r, 401, "login", reason)


def test_token_presented_with_another_certificate(stack):
    token = stack.token("alpha", "alpha")
    for other in ("beta", "delta"):
        with stack.client(other) as c:
            outcome(c.get("/fhir/Organization", headers=bearer(token, **ROR_HEADERS)), 401, "login",
                    "bound to another client certificate")
    with stack.client("beta") as c:  # a certificate registered to another application gets no token
        oauth_error(c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "alpha"}),
                    401, "invalid_client")


def test_suspended_application(stack):
    token = stack.token("gamma", "gamma")
    with stack.client("gamma") as c, stack.client("admin") as admin:
        assert c.get("/fhir/Location", headers=bearer(token, **ROR_HEADERS)).status_code == 200
        r = admin.post("/admin/apps/gamma/status", json={"status": "suspended", "reason": "e2e"})
        assert r.status_code == 200 and r.json()["application"]["status"] == "suspended", r.text
        outcome(c.get("/fhir/Location", headers=bearer(token, **ROR_HEADERS)), 403, "forbidden", "suspended")
        oauth_error(c.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "gamma"}),
                    400, "unauthorized_client", "suspended")
        assert admin.post("/admin/apps/gamma/status", json={"status": "active"}).status_code == 200
        # tokens held during the suspension stay revoked; a new one works
        outcome(c.get("/fhir/Location", headers=bearer(token, **ROR_HEADERS)), 401, "login", "revoked")
        assert c.get("/fhir/Location", headers=bearer(stack.token("gamma", "gamma"), **ROR_HEADERS)).status_code \
            == 200


def test_revoked_token(stack):
    token = stack.token("beta", "beta")
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    with stack.client("beta") as c, stack.client("admin") as admin:
        assert c.get("/fhir/Practitioner", headers=bearer(token, **ROR_HEADERS)).status_code == 200
        assert admin.post(f"/admin/tokens/{jti}/revoke").status_code == 200
        outcome(c.get("/fhir/Practitioner", headers=bearer(token, **ROR_HEADERS)), 401, "login", "revoked")


def test_ror_headers(stack):
    token = stack.token("alpha", "alpha")
    with stack.client("alpha") as c:
        partial = {k: v for k, v in ROR_HEADERS.items() if k != "Ror-Role-Metier-Code"}
        body = outcome(c.get("/fhir/PractitionerRole", headers=bearer(token, **partial)), 400, "invalid",
                       "Ror-Role-Metier-Code")
        assert body["issue"][0]["expression"] == ["Ror-Role-Metier-Code"]
        outcome(c.get("/fhir/Organization/eg-chu-nantes", headers=bearer(token)), 400, "invalid", "Missing header")
        wrong = {**ROR_HEADERS, "Ror-Profil-Utilisateur-Code": "CU23"}
        outcome(c.get("/fhir/HealthcareService", headers=bearer(token, **wrong)), 403, "forbidden",
                "Ror-Profil-Utilisateur-Code")
        patch = {"resourceType": "Parameters", "parameter": []}
        outcome(c.patch("/fhir/Location/loc-unknown", json=patch, headers=bearer(token, **ROR_HEADERS,
                                                                                  **{"Content-Type": FHIR})),
                400, "invalid", "must not carry the Ror-* headers")
        # without them the capacity PATCH passes the trust space and reaches the FHIR service
        r = c.patch("/fhir/Location/loc-unknown", json=patch, headers=bearer(token, **{"Content-Type": FHIR}))
        assert r.status_code != 401 and "Ror-" not in r.text, r.text
        # other resources and the capability statement need no Ror-* headers
        assert c.get("/fhir/Task", headers=bearer(token)).status_code == 200


def test_forged_certificate_headers_are_not_believed(stack):
    token = stack.token("alpha", "alpha")
    forged = {"X-Ror-Client-Verify": "SUCCESS", "X-Ror-Client-Cert": quote(stack.pki.clients["alpha"].pem.decode())}
    # through nginx, without a certificate: nginx replaces the headers
    with stack.client() as c:
        outcome(c.get("/fhir/Organization", headers=bearer(token, **ROR_HEADERS, **forged)), 401, "login",
                "bound to a client certificate")
    # straight to the app from an address that is not the proxy's
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=stack.app_url, transport=transport) as c:
        outcome(c.get("/fhir/Organization", headers=bearer(token, **ROR_HEADERS, **forged)), 401, "login",
                "bound to a client certificate")


def test_rate_limit(stack):
    token = stack.token("burst")
    statuses: list[int] = []
    with stack.client() as c:
        for _ in range(100):  # the capability statement: cheap enough to outpace 17 calls/s
            r = c.get("/fhir/metadata", headers=bearer(token))
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
    assert statuses[:17] == [200] * 17, statuses  # the burst
    outcome(r, 429, "throttled", "17 calls/s")
    assert int(r.headers["retry-after"]) == 1


def test_body_size_limits(stack):
    token = stack.token("beta", "beta")
    org = {"resourceType": "Organization", "name": "x" * 100_000}  # over the app's 64 KiB, under nginx's 128k
    with stack.client("beta") as c:
        outcome(c.post("/fhir/Organization", content=json.dumps(org), headers=bearer(token, **{"Content-Type": FHIR})),
                413, "too-costly", "65536-byte limit")
        org["name"] = "x" * 200_000  # over nginx's limit: refused before the app, the same way
        outcome(c.post("/fhir/Organization", content=json.dumps(org), headers=bearer(token, **{"Content-Type": FHIR})),
                413, "too-costly", "size limit")


def test_admin_api_needs_an_administrator_certificate(stack):
    with stack.client("admin") as c:
        r = c.get("/admin/apps")
        assert r.status_code == 200 and "alpha" in {a["app_id"] for a in r.json()["applications"]}
    with stack.client("alpha") as c:
        outcome(c.get("/admin/apps"), 403, "forbidden", "not an administrator")
    with stack.client() as c:
        outcome(c.get("/admin/apps"), 401, "login", "administrator's client certificate")
    with stack.client("expired") as c:
        outcome(c.get("/admin/apps"), 401, "login", "certificate has expired")


def test_every_request_is_audited_without_secrets(stack):
    token = stack.token("alpha", "alpha")
    with stack.client("alpha") as c:
        r = c.get("/fhir/Organization", params={"_count": "3", "access_token": token},
                  headers=bearer(token, **ROR_HEADERS, Prefer="handling=lenient"))
        assert r.status_code == 200, r.text
        c.get("/fhir/Organization", headers=bearer(token))  # refused: no Ror-* headers
    deadline = time.monotonic() + 5
    with stack.client("admin") as admin:
        while True:
            rows = admin.get("/admin/audit", params={"app_id": "alpha", "limit": "50"}).json()["records"]
            searches = [r for r in rows if r["operation"] == "search-type" and r["resource_type"] == "Organization"]
            if len(searches) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        ok = next(r for r in searches if r["status"] == 200 and "_count=3" in (r["query"] or ""))
        assert ok["returned"] == {"Organization": 3} and ok["profile"] == 2 and ok["outcome"] == "ok"
        assert ok["user_profile_code"] == "CU22" and ok["role_code"] == "AUTOMATE"
        assert ok["cert_thumbprint"] == stack.pki.clients["alpha"].info.thumbprint
        assert ok["client_ip"] == "127.0.0.1" and ok["duration_ms"] > 0
        assert "access_token=%2A%2A%2A" in ok["query"]
        assert any(r["status"] == 400 and r["outcome"] == "invalid" for r in searches)
        everything = admin.get("/admin/audit", params={"limit": "10000"}).text
    assert token not in everything and token.split(".")[2] not in everything
    for secret in stack.secrets.values():
        assert secret not in everything
