"""The admin JSON API: access by administrator certificate, registration life cycle, tokens, keys, audit."""

from __future__ import annotations

import threading
import time

import pytest
from starlette.applications import Starlette

from ror.access import audit
from ror.api.admin import admin_routes
from ror.api.security import secure
from tests.access.test_security import call, cert_headers, make_trust

FINESS = "750000010"


@pytest.fixture
def admin(tmp_path, pki):
    trust = make_trust(tmp_path, auth_required=True,
                       admin_cert_thumbprints=pki.clients["admin"].info.thumbprint.upper())
    app = secure(Starlette(routes=admin_routes(trust)), trust)
    headers = cert_headers(pki, "admin")

    def request(method: str, path: str, **kw):
        return call(app, method, path, **{**kw, "headers": {**headers, **kw.get("headers", {})}})

    yield request, app
    trust.audit.close()


def test_access_needs_an_administrator_certificate(admin, pki):
    _, app = admin
    r = call(app, "GET", "/admin/apps")
    assert r.status_code == 401 and r.json()["issue"][0]["code"] == "login"
    r = call(app, "GET", "/admin/apps", headers=cert_headers(pki, "alpha"))
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"
    r = call(app, "GET", "/admin/apps", peer="192.0.2.7", headers=cert_headers(pki, "admin"))
    assert r.status_code == 401  # certificate headers from elsewhere than the proxy are not believed
    rows = app.trust.audit.query()
    assert [(row["operation"], row["status"]) for row in rows] == [("admin", 401), ("admin", 403), ("admin", 401)]


def test_application_life_cycle(admin, pki):
    request, _ = admin
    r = request("POST", "/admin/apps", json={
        "app_id": "alpha", "name": "Alpha", "contact": "ops@alpha.test", "profile": 2, "user_profile_code": "CU22",
        "role_code": "AUTOMATE", "certificates": [{"pem": pki.clients["alpha"].pem.decode()}],
        "write_establishments": [FINESS]})
    assert r.status_code == 201, r.text
    app = r.json()["application"]
    assert r.json()["client_secret"] is None and app["certificates"][0]["subject"].startswith("CN=alpha.test.ror")
    assert app["certificates"][0]["not_after"] and app["write_establishments"] == [FINESS]
    r = request("POST", "/admin/apps", json={"app_id": "open", "name": "Open", "contact": "x@y.test", "profile": 0,
                                             "user_profile_code": "CU22", "role_code": "AUTOMATE"})
    assert r.status_code == 201 and len(r.json()["client_secret"]) >= 40
    assert [a["app_id"] for a in request("GET", "/admin/apps").json()["applications"]] == ["alpha", "open"]

    r = request("PATCH", "/admin/apps/alpha", json={"name": "Alpha 2", "add_writes": ["1" + FINESS]})
    assert r.status_code == 200 and r.json()["application"]["write_establishments"] == ["1" + FINESS, FINESS]
    beta = pki.clients["beta"].info
    r = request("POST", "/admin/apps/alpha/certificates", json={"thumbprint": beta.thumbprint, "subject": beta.subject})
    assert r.status_code == 201 and len(r.json()["application"]["certificates"]) == 2
    r = request("DELETE", f"/admin/apps/alpha/certificates/{pki.clients['alpha'].info.thumbprint}")
    assert r.status_code == 200 and [c["thumbprint"] for c in r.json()["application"]["certificates"]] == \
        [beta.thumbprint]
    r = request("POST", "/admin/apps/alpha/status", json={"status": "suspended", "reason": "audit"})
    assert r.json()["application"]["status"] == "suspended"
    assert request("POST", "/admin/apps/open/secret").json()["client_secret"]
    assert request("GET", "/admin/apps/alpha").json()["application"]["name"] == "Alpha 2"


@pytest.mark.parametrize(("method", "path", "body", "status", "text"), [
    ("POST", "/admin/apps", {"app_id": "x1"}, 400, "Missing field(s) name"),
    ("POST", "/admin/apps", {"app_id": "x1", "colour": "red"}, 400, "Unknown field(s) colour"),
    ("POST", "/admin/apps", [1], 400, "JSON object"),
    ("POST", "/admin/apps", {"app_id": "x1", "name": "X", "contact": "c", "profile": 1, "user_profile_code": "A",
                             "role_code": "B", "certificates": [{"pem": "nope"}]}, 400, "PEM"),
    ("POST", "/admin/apps", {"app_id": "x1", "name": "X", "contact": "c", "profile": 1, "user_profile_code": "A",
                             "role_code": "B", "certificates": ["aa"]}, 400, "thumbprint"),
    ("GET", "/admin/apps/ghost", None, 404, "No application 'ghost'"),
    ("PATCH", "/admin/apps/ghost", {"name": "x"}, 404, "ghost"),
    ("PATCH", "/admin/apps/ghost", {"write_establishments": "750000010"}, 400, "list of strings"),
    ("POST", "/admin/tokens/nope/revoke", None, 404, "No token"),
    ("GET", "/admin/audit?limit=0", None, 400, "limit"),
    ("GET", "/admin/audit?status=abc", None, 400, "status"),
])
def test_errors_are_operation_outcomes(admin, method, path, body, status, text):
    request, _ = admin
    r = request(method, path, **({"json": body} if body is not None else {}))
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and text in r.json()["issue"][0]["diagnostics"]


def test_non_json_body_is_refused(admin):
    request, _ = admin
    r = request("POST", "/admin/apps", content=b"app_id=x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = request("POST", "/admin/apps", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.text


def test_tokens_keys_and_audit(admin, pki):
    request, app = admin
    request("POST", "/admin/apps", json={"app_id": "open", "name": "Open", "contact": "x@y.test", "profile": 0,
                                         "user_profile_code": "CU22", "role_code": "AUTOMATE"})
    secret = request("POST", "/admin/apps/open/secret").json()["client_secret"]
    r = call(app, "POST", "/oauth/token", data={"grant_type": "client_credentials"}, auth=("open", secret))
    assert r.status_code == 200
    tokens = request("GET", "/admin/tokens", params={"app_id": "open"}).json()["tokens"]
    assert len(tokens) == 1 and tokens[0]["revoked_at"] is None and "access_token" not in tokens[0]
    assert request("POST", f"/admin/tokens/{tokens[0]['jti']}/revoke").status_code == 200
    assert request("GET", "/admin/tokens").json()["tokens"][0]["revoked_at"]
    kid = request("POST", "/admin/keys/rotate").json()["kid"]
    keys = request("GET", "/admin/keys").json()["keys"]
    assert [k["kid"] for k in keys][-1] == kid and all("private_pem" not in k for k in keys)
    page = request("GET", "/admin/audit", params={"operation": "token"}).json()
    assert [(r["app_id"], r["status"]) for r in page["records"]] == [("open", 200)]
    everything = request("GET", "/admin/audit", params={"limit": "2"}).json()
    older = request("GET", "/admin/audit", params={"before": str(everything["next_before"])}).json()["records"]
    assert older and all(r["id"] < everything["next_before"] for r in older)
    assert all(r["app_id"] == "admin" for r in everything["records"])
    assert secret not in str(request("GET", "/admin/audit", params={"limit": "1000"}).json())


def test_a_query_sees_the_rows_the_writer_thread_is_still_writing(tmp_path, monkeypatch):
    """The writer thread took the queued rows and has not committed them yet: a query's flush waits for it rather than
    finding the queue empty and reading without them (this test's admin audit query failed so under load)."""
    trust = make_trust(tmp_path)
    writing_started, original = threading.Event(), audit.dbapi_many

    def slow_insert(conn, sql, rows):
        writing_started.set()
        time.sleep(0.3)
        original(conn, sql, rows)
    monkeypatch.setattr(audit, "dbapi_many", slow_insert)
    trust.audit.record(("2026-11-26T10:00:00.000Z", "open", 1, "127.0.0.1", None, "GET", "/fhir/Location", "",
                        "search-type", "Location", None, None, 200, "ok", 1, 0.5))
    writer = threading.Thread(target=trust.audit.flush)
    writer.start()
    assert writing_started.wait(5)
    assert [(r["app_id"], r["status"]) for r in trust.audit.query()] == [("open", 200)]
    writer.join()
    trust.audit.close()
