"""``secure()`` at the ASGI level, around a stand-in FHIR app that echoes what it is given.

The certificate headers are those nginx sets; the test client plays the proxy (127.0.0.1) or not.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
import orjson
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ror.access.audit import AUDIT_COLUMNS, audit_header, count_resources, parse_audit_header, scrub_query
from ror.access.principal import LOCAL
from ror.access.ratelimit import RateLimiter
from ror.access.schema import access_audit
from ror.access.trust import TrustSpace
from ror.api.security import _classify, secure
from ror.settings import Settings
from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from tests.access.conftest import ROR_HEADERS
from tests.access.pki import TestPki

FINESS = "750000010"


async def echo(request: Request) -> Response:
    """The stand-in FHIR API: returns the principal; ``?audit=`` sets X-Ror-Audit, ``?bundle=`` a Bundle."""
    p = request.state.principal
    if request.url.path == "/fhir/boom":
        raise RuntimeError("inner failure")
    if "bundle" in request.query_params:
        entries = [{"resource": {"resourceType": t}} for t in ("Organization", "Organization", "Location")]
        return Response(orjson.dumps({"resourceType": "Bundle", "entry": entries}), media_type="application/fhir+json")
    headers = {"X-Ror-Audit": request.query_params["audit"]} if "audit" in request.query_params else {}
    return Response(orjson.dumps({"app_id": p.app_id, "profile": p.profile, "status": p.status, "name": p.name,
                                  "writes": sorted(p.write_establishments), "write_all": p.write_all}),
                    headers=headers, media_type="application/json")


INNER = Starlette(routes=[Route("/fhir/{path:path}", echo, methods=["GET", "POST", "PATCH", "PUT"]),
                          Route("/api/{path:path}", echo, methods=["GET"]),
                          Route("/static/{path:path}", lambda request: Response(b"page"), methods=["GET"])])


def make_trust(tmp_path, **settings) -> TrustSpace:
    url = f"sqlite:///{tmp_path / 'ror.db'}"
    engine = make_engine(url)
    upgrade(engine)
    return TrustSpace(engine, Settings(database_url=url, **settings))


def cert_headers(pki: TestPki, name: str) -> dict[str, str]:
    return {"X-Ror-Client-Verify": "SUCCESS", "X-Ror-Client-Cert": quote(pki.clients[name].pem.decode())}


def call(app, method: str, path: str, peer: str = "127.0.0.1", **kw) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app, client=(peer, 40000), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://ror") as c:
            return await c.request(method, path, **kw)
    return asyncio.run(go())


@pytest.fixture
def secured(tmp_path, pki):
    trust = make_trust(tmp_path, auth_required=True, request_body_max_bytes=1000)
    trust.registry.register(app_id="alpha", name="Alpha", contact="c@x.test", profile=2, user_profile_code="CU22",
                            role_code="AUTOMATE", certificates=[pki.clients["alpha"].info],
                            write_establishments=[FINESS])
    app = secure(INNER, trust)
    token = call(app, "POST", "/oauth/token", data={"grant_type": "client_credentials", "client_id": "alpha"},
                 headers=cert_headers(pki, "alpha")).json()["access_token"]
    yield app, {"Authorization": f"Bearer {token}", **cert_headers(pki, "alpha")}
    trust.audit.close()
    trust.registry.engine.dispose()


def audit_rows(app) -> list[dict]:
    return app.trust.audit.query(limit=100)


def test_principal_of_an_authenticated_application(secured):
    app, auth = secured
    r = call(app, "GET", "/fhir/Task", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"app_id": "alpha", "profile": 2, "status": "active", "name": "Alpha", "writes": [FINESS],
                        "write_all": False}


def test_everything_but_public_prefixes_needs_a_token(secured):
    app, auth = secured
    for path in ("/api/capacity/summary", "/", "/elsewhere", "/static"):
        r = call(app, "GET", path)
        assert r.status_code == 401 and r.json()["issue"][0]["code"] == "login", path
    assert call(app, "GET", "/api/capacity/summary", headers=auth).json()["app_id"] == "alpha"
    public = secure(INNER, app.trust, public_prefixes=("/static/",))
    assert call(public, "GET", "/static/app.css").text == "page"
    assert call(public, "GET", "/staticky").status_code == 401
    for bad in ("/", "/fhir", "/admin/", "static"):
        with pytest.raises(ValueError):
            secure(INNER, app.trust, public_prefixes=(bad,))


def test_security_off_gives_the_local_principal(tmp_path):
    trust = make_trust(tmp_path, request_body_max_bytes=1000)
    app = secure(INNER, trust)
    r = call(app, "GET", "/fhir/Organization")  # neither token nor Ror-* headers
    assert r.status_code == 200 and r.json()["app_id"] == LOCAL.app_id and r.json()["write_all"] is True
    assert call(app, "POST", "/fhir/Organization", content=b"x" * 1001).status_code == 413
    assert [(row["app_id"], row["status"]) for row in audit_rows(app)] == [(None, 413), ("local", 200)]
    trust.audit.close()


def test_certificate_headers_count_only_from_the_proxy(secured):
    app, auth = secured
    r = call(app, "GET", "/fhir/Task", peer="192.0.2.10", headers=auth)
    assert r.status_code == 401 and "bound to a client certificate" in r.text
    r = call(app, "GET", "/fhir/Task", headers={**auth, "X-Ror-Client-Verify": "FAILED:certificate revoked"})
    assert r.status_code == 401 and "certificate revoked" in r.json()["issue"][0]["diagnostics"]
    r = call(app, "GET", "/fhir/Task", headers={**auth, "X-Ror-Client-Cert": "garbage"})
    assert r.status_code == 401 and "cannot be read" in r.text


def test_the_forwarded_scheme_is_believed_from_the_proxy_only(tmp_path):
    trust = make_trust(tmp_path, trusted_proxy_ips="127.0.0.1, 10.1.0.0/16")
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["scheme"])
        await Response(b"page")(scope, receive, send)

    app = secure(inner, trust, public_prefixes=("/static",))
    for peer, proto in (("127.0.0.1", "https"), ("10.1.2.3", "https"), ("192.0.2.10", "https"), ("127.0.0.1", "ftp"),
                        ("127.0.0.1", None)):
        assert call(app, "GET", "/static/x", peer=peer,
                    headers={"X-Forwarded-Proto": proto} if proto else {}).status_code == 200
    assert seen == ["https", "https", "http", "http", "http"]
    trust.audit.close()


def test_audit_header_is_read_and_removed(secured):
    app, auth = secured
    r = call(app, "GET", "/fhir/Organization?audit=Organization%3D2%2CLocation%3D1", headers={**auth, **ROR_HEADERS})
    assert r.status_code == 200 and "x-ror-audit" not in r.headers
    r = call(app, "GET", "/fhir/Organization?bundle=1", headers={**auth, **ROR_HEADERS})
    assert r.status_code == 200
    rows = audit_rows(app)
    assert rows[0]["returned"] == {"Organization": 2, "Location": 1}  # counted from the Bundle
    assert rows[1]["returned"] == {"Organization": 2, "Location": 1}  # from the header
    assert rows[1]["operation"] == "search-type" and rows[1]["resource_type"] == "Organization"
    assert rows[1]["app_id"] == "alpha" and rows[1]["profile"] == 2 and rows[1]["outcome"] == "ok"


def test_inner_failure_is_a_500_and_is_audited(secured):
    app, auth = secured
    r = call(app, "GET", "/fhir/boom", headers=auth)
    assert r.status_code == 500
    row = audit_rows(app)[0]
    assert (row["status"], row["outcome"], row["app_id"]) == (500, "exception", "alpha")


def test_size_limit_before_anything_else(secured):
    app, _ = secured
    r = call(app, "POST", "/fhir/Organization", content=b"x" * 1001)
    assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-costly"


def test_rate_limit(secured):
    app, auth = secured
    app.trust.limiter = RateLimiter(17.0, 5)
    statuses = [call(app, "GET", "/fhir/Task", headers=auth).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and 429 in statuses
    r = call(app, "GET", "/fhir/Task", headers=auth)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["issue"][0]["code"] == "throttled"


@pytest.mark.parametrize(("method", "path", "required"), [
    ("GET", "/fhir/Organization", True),
    ("GET", "/fhir/HealthcareService/hs-1", True),
    ("GET", "/fhir/Location/loc-1/_history/2", True),
    ("POST", "/fhir/PractitionerRole/_search", True),
    ("GET", "/fhir/Practitioner", True),
    ("GET", "/fhir/Task", False),
    ("GET", "/fhir/metadata", False),
    ("PUT", "/fhir/Organization/eg-1", False),
    ("PATCH", "/fhir/HealthcareService/hs-1", False),
])
def test_ror_headers_required_on_consultations(secured, method, path, required):
    app, auth = secured
    kw = {"data": {"_count": "1"}} if path.endswith("_search") else {}
    r = call(app, method, path, headers=auth, **kw)
    assert r.status_code == (400 if required else 200), r.text
    if required:
        assert r.json()["issue"][0]["expression"] == list(ROR_HEADERS)
        assert call(app, method, path, headers={**auth, **ROR_HEADERS}, **kw).status_code == 200


def test_ror_headers_checked_against_the_registration_and_absent_on_capacity_patch(secured):
    app, auth = secured
    for header in ROR_HEADERS:
        r = call(app, "GET", "/fhir/Organization", headers={**auth, **ROR_HEADERS, header: "X"})
        assert r.status_code == 403 and r.json()["issue"][0]["expression"] == [header]
    for path in ("/fhir/Location/loc-1", "/fhir/Location?identifier=x"):
        r = call(app, "PATCH", path, headers={**auth, "Ror-Role-Metier-Code": "AUTOMATE"})
        assert r.status_code == 400 and "must not carry" in r.text
        assert call(app, "PATCH", path, headers=auth).status_code == 200


def test_token_endpoint_errors_are_oauth_errors(secured):
    app, _ = secured
    form = {"grant_type": "client_credentials", "client_id": "alpha"}
    cases = [
        ({"data": {**form, "grant_type": "password"}}, 400, "unsupported_grant_type"),
        ({"content": "grant_type=client_credentials&client_id=a&client_id=b",
          "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400, "invalid_request"),
        ({"json": form}, 400, "invalid_request"),
        ({"data": {**form, "pad": "x" * 9000}}, 400, "invalid_request"),
        ({"data": form}, 401, "invalid_client"),  # no certificate
        ({"data": {"grant_type": "client_credentials", "client_secret": "s"}, "auth": ("alpha", "s")}, 400,
         "invalid_request"),  # two client authentication methods
        ({"data": {"grant_type": "client_credentials"}, "headers": {"Authorization": "Basic !!"}}, 401,
         "invalid_client"),
    ]
    for kw, status, error in cases:
        r = call(app, "POST", "/oauth/token", **kw)
        assert (r.status_code, r.json()["error"]) == (status, error), (kw, r.text)
        assert r.headers["cache-control"] == "no-store"
    assert call(app, "GET", "/oauth/token").status_code == 405
    assert call(app, "GET", "/oauth/elsewhere").status_code == 404
    jwks = call(app, "GET", "/oauth/jwks").json()
    assert jwks["keys"] and all(k["alg"] == "ES256" and "d" not in k for k in jwks["keys"])


def test_audit_records_no_credentials(secured):
    app, auth = secured
    call(app, "GET", "/fhir/Task?access_token=abc.def.ghi&_count=2", headers=auth)
    row = audit_rows(app)[0]
    assert row["query"] == "access_token=%2A%2A%2A&_count=2"
    token = auth["Authorization"].split()[1]
    with app.trust.registry.engine.connect() as conn:
        dump = str(conn.execute(select(access_audit)).all())
    assert token not in dump and "abc.def.ghi" not in dump


def test_shutdown_flushes_the_audit(tmp_path):
    trust = make_trust(tmp_path)
    app = secure(INNER, trust)
    row = dict(at="2026-11-25T10:00:00.000Z", app_id="app-1", profile=2, client_ip="10.0.0.1", cert_thumbprint=None,
               method="GET", path="/fhir/Task", query="_count=2", operation="search-type", resource_type="Task",
               user_profile_code="10", role_code="20", status=200, outcome="ok", returned='{"Task":2}',
               duration_ms=1.5)
    trust.audit.record(tuple(row[c] for c in AUDIT_COLUMNS))
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with trust.registry.engine.connect() as conn:
        stored = conn.execute(select(access_audit)).mappings().all()
    assert [{k: v for k, v in r.items() if k != "id"} for r in stored] == [row]


def test_audit_columns_are_the_table_columns_but_its_key():
    assert list(AUDIT_COLUMNS) == [c.name for c in access_audit.columns if c.name != "id"]


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/fhir/Organization", ("search-type", "Organization")),
    ("POST", "/fhir/Organization/_search", ("search-type", "Organization")),
    ("GET", "/fhir/Organization/x", ("read", "Organization")),
    ("GET", "/fhir/Organization/x/_history", ("history-instance", "Organization")),
    ("GET", "/fhir/Organization/x/_history/3", ("vread", "Organization")),
    ("PUT", "/fhir/Organization/x", ("update", "Organization")),
    ("PATCH", "/fhir/Location", ("patch", "Location")),
    ("POST", "/fhir/Task", ("create", "Task")),
    ("POST", "/fhir", ("transaction", None)),
    ("GET", "/fhir/metadata", ("capabilities", None)),
    ("GET", "/fhir/$export", ("operation", None)),
    ("POST", "/oauth/token", ("token", None)),
    ("GET", "/admin/apps", ("admin", None)),
    ("GET", "/api/capacity/summary", ("api", None)),
    ("GET", "/", ("other", None)),
])
def test_operations_named_in_the_audit(method, path, expected):
    assert _classify(method, path) == expected


def test_audit_helpers():
    assert parse_audit_header(audit_header({"Organization": 3, "Location": 0})) == {"Organization": 3, "Location": 0}
    assert parse_audit_header("Organization=2, junk ,Organization=1") == {"Organization": 3}
    assert count_resources(b'{"resourceType":"Location","id":"x"}') == {"Location": 1}
    assert count_resources(b'{"resourceType":"OperationOutcome"}') == {}
    assert count_resources(b"not json") == {} and count_resources(b"[1]") == {}
    assert scrub_query("") is None and scrub_query("a=1&b=2") == "a=1&b=2"
    assert scrub_query("client_secret=s3cr3t") == "client_secret=%2A%2A%2A"


def test_boolean_settings_from_the_environment(monkeypatch):
    for raw, expected in (("false", False), ("0", False), ("no", False), ("true", True), ("1", True), ("ON", True)):
        monkeypatch.setenv("ROR_AUTH_REQUIRED", raw)
        assert Settings.from_env().auth_required is expected
