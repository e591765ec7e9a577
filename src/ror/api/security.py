"""The trust-space front of the app: authentication, Ror-* headers, rate and size limits, audit.

``secure(app, trust)`` wraps the Starlette app at the ASGI level (the FHIR hot path stays cheap).
It fails closed: every path needs a Bearer token except

- ``/oauth/token`` (``client_credentials``) and ``/oauth/jwks``, served here;
- ``/admin/…``, whose routes admit only administrators' certificates (``ror.api.admin``);
- the ``public_prefixes`` given (web pages, static files), passed through untouched.

An authenticated request needs a token issued by ``/oauth/token`` (certificate-bound for profiles
1–5, RFC 8705) of an active application, the per-application rate limit, the body-size limit, and
on FHIR consultations the four ``Ror-*`` headers (none on capacity PATCH); it then carries
``request.state.principal``. Every request but the public ones is audited (``ror.access.audit``).

With ``auth_required`` off (embedded dev server) every request gets the local full-access
principal; sizes are still limited and requests still audited.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote_plus

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ror.access.audit import AUDIT_HEADER, count_resources, parse_audit_header, scrub_query
from ror.access.principal import LOCAL, Principal
from ror.access.tokens import bearer_challenge
from ror.access.trust import CLIENT_IP_HEADER, TrustSpace
from ror.errors import (
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RorError,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from ror.fhir.bundles import operation_outcome
from ror.fhir.service import FHIR_JSON
from ror.fhirdates import now_stamp

# GETs of these types are "consultations" and carry the Ror-* headers (ANS consumer doc, IG digest §6).
CONSULTED_TYPES = frozenset({"Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole"})
# header -> attribute of the registration it must equal
ROR_HEADERS = {
    "ror-profil-utilisateur-code": "user_profile_code",
    "ror-profil-utilisateur-system": "user_profile_system",
    "ror-role-metier-code": "role_code",
    "ror-role-metier-system": "role_system",
}
_DISPLAY = {h: "-".join(p.capitalize() for p in h.split("-")) for h in ROR_HEADERS}
_TOKEN_FORM_MAX_BYTES = 8192
_COUNT_BODY_MAX_BYTES = 16 * 1024 * 1024  # larger responses are not parsed to count resources
_OWN_PREFIXES = ("/fhir", "/oauth", "/admin")
_AUDIT_HEADER = AUDIT_HEADER.encode()


class _Call:
    """What the audit row of one request collects along the way."""

    __slots__ = ("app_id", "at", "body", "client_ip", "method", "operation", "outcome", "path", "peer", "profile",
                 "query", "returned", "role_code", "rtype", "status", "t0", "thumbprint", "user_profile_code")

    def __init__(self, scope: Scope, headers: dict[str, str], trust: TrustSpace):
        self.t0 = time.perf_counter()
        self.at = now_stamp()  # when the request arrived
        self.method = scope["method"]
        self.path = scope["path"]
        self.query = scope.get("query_string", b"").decode("latin-1")
        client = scope.get("client")
        self.peer = client[0] if client else None
        forwarded = headers.get(CLIENT_IP_HEADER) if trust.is_proxy(self.peer) else None
        self.client_ip = (forwarded or self.peer or "")[:45] or None
        self.operation, self.rtype = _classify(self.method, self.path)
        self.app_id: str | None = None
        self.profile: int | None = None
        self.thumbprint: str | None = None
        self.user_profile_code = headers.get("ror-profil-utilisateur-code", "")[:64] or None
        self.role_code = headers.get("ror-role-metier-code", "")[:64] or None
        self.status = 500
        self.outcome = "exception"
        self.returned: dict[str, int] | None = None
        self.body: bytearray | None = None  # the response, kept to count resources or read the error

    def row(self) -> tuple:
        """The audit row (``AUDIT_COLUMNS`` order)."""
        return (self.at, self.app_id, self.profile, self.client_ip, self.thumbprint, self.method[:10], self.path[:500],
                scrub_query(self.query), self.operation, self.rtype, self.user_profile_code, self.role_code,
                self.status, self.outcome, orjson.dumps(self.returned).decode() if self.returned is not None else None,
                round((time.perf_counter() - self.t0) * 1000, 3))


def _classify(method: str, path: str) -> tuple[str, str | None]:
    """FHIR interaction name and resource type of a request, from its method and path."""
    parts = path.rstrip("/").split("/")[1:] or [""]
    if parts[0] == "oauth":
        return ("token" if parts[1:] == ["token"] else "jwks"), None
    if parts[0] in ("admin", "api"):
        return parts[0], None
    if parts[0] != "fhir":
        return "other", None
    rest = parts[1:]
    if not rest:
        return ("transaction" if method == "POST" else "system"), None
    rtype = rest[0][:40]
    if rtype.startswith("$"):
        return "operation", None
    if rtype == "metadata":
        return "capabilities", None
    if len(rest) == 1:
        return {"GET": "search-type", "HEAD": "search-type", "POST": "create", "PATCH": "patch"}.get(
            method, method.lower()), rtype
    if rest[1] == "_search":
        return "search-type", rtype
    if len(rest) == 2:
        return {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch"}.get(method, method.lower()), rtype
    return ("vread" if len(rest) >= 4 else "history-instance"), rtype


class Answer(NamedTuple):
    """A response the trust space sends itself, and what its audit row records of it (``SecureApp``'s ``direct``)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]  # as ASGI sends them, Content-Type and Content-Length included
    returned: dict[str, int] | None  # resources returned, by type
    outcome: str  # "ok", or the code of the OperationOutcome's first issue


# Answers an admitted request itself, or returns None to leave it to the app (``secure``).
Direct = Callable[[Scope, dict[str, str], Principal], Awaitable[Answer | None]]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def error_response(e: RorError) -> Response:
    return Response(orjson.dumps(operation_outcome(e.issues)), status_code=e.status, headers=e.headers,
                    media_type=FHIR_JSON)


def _bearer(headers: dict[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("An access token is required: Authorization: Bearer <token> (from /oauth/token)",
                           headers=bearer_challenge())
    return token.strip()


def _basic(headers: dict[str, str]) -> tuple[str, str] | None:
    """HTTP Basic client credentials (RFC 6749 §2.3.1: each part form-encoded, then base64)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except ValueError:
        raise Unauthorized("Malformed HTTP Basic credentials") from None
    if not sep:
        raise Unauthorized("Malformed HTTP Basic credentials")
    return unquote_plus(user), unquote_plus(password)


def _oauth_error(e: RorError) -> Response:
    """RFC 6749 §5.2 error body: the token endpoint speaks OAuth, not FHIR."""
    if isinstance(e, Unauthorized):
        error, status = "invalid_client", 401
    elif isinstance(e, Forbidden):
        error, status = "unauthorized_client", 400
    elif isinstance(e, TooManyRequests):
        error, status = "slow_down", 429
    elif e.expression == ["grant_type"]:
        error, status = "unsupported_grant_type", 400
    else:
        error, status = "invalid_request", 400
    headers = {"Cache-Control": "no-store", **e.headers}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="ror"'
    return Response(orjson.dumps({"error": error, "error_description": e.message}), status_code=status,
                    headers=headers, media_type="application/json")


class SecureApp:
    """The ASGI wrapper returned by ``secure``; ``trust`` is the trust space it enforces."""

    def __init__(self, app: ASGIApp, trust: TrustSpace, public_prefixes: tuple[str, ...] = (),
                 direct: Direct | None = None):
        for prefix in public_prefixes:
            if not prefix.startswith("/") or prefix.rstrip("/") == "" or prefix.rstrip("/") in _OWN_PREFIXES:
                raise ValueError(f"public prefix {prefix!r} must be a path below / other than /fhir, /oauth, /admin")
        self.app = app
        self.trust = trust
        self.settings = trust.settings
        self.public = tuple(p.rstrip("/") for p in public_prefixes)
        self.direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._forwarded_scheme(scope)
        path = scope["path"]
        if path.startswith("/oauth/"):
            await self._oauth(scope, receive, send)
        elif path == "/admin" or path.startswith("/admin/"):
            headers = _headers(scope)
            call = _Call(scope, headers, self.trust)
            try:  # identify the administrator for the audit row; the admin routes check their own access
                cert = self.trust.client_certificate(headers, call.peer)
            except Unauthorized:
                cert = None
            if cert is not None:
                call.thumbprint = cert.thumbprint
                call.app_id = "admin" if cert.thumbprint in self.trust.admin_thumbprints else None
            await self._forward(call, scope, receive, send)
        elif any(path == p or path.startswith(p + "/") for p in self.public):
            await self.app(scope, receive, send)
        else:
            await self._protected(scope, receive, send)

    def _forwarded_scheme(self, scope: Scope) -> None:
        """The scheme the client used, from the TLS proxy's ``X-Forwarded-Proto`` (the links the app writes): believed
        from the peers of ``ROR_TRUSTED_PROXY_IPS`` only, the one setting that says who the proxy is (uvicorn's own
        proxy-header handling, which trusts its ``--forwarded-allow-ips`` instead, is off: ``ror serve``)."""
        client = scope.get("client")
        if client and self.trust.is_proxy(client[0]):
            for name, value in scope["headers"]:
                if name == b"x-forwarded-proto":
                    if value in (b"https", b"http"):
                        scope["scheme"] = value.decode()
                    return

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_and_flush() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await run_in_threadpool(self.trust.audit.close)
            return message

        await self.app(scope, receive_and_flush, send)

    # -- authenticated requests ---------------------------------------------------------------------
    async def _protected(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        call = _Call(scope, headers, self.trust)
        try:
            principal = await self._admit(call, headers)
        except RorError as e:
            await self._refuse(call, e, scope, receive, send)
            return
        answer = None if self.direct is None else await self.direct(scope, headers, principal)
        if answer is not None:
            await self._send(call, answer, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self._forward(call, scope, receive, send)

    async def _admit(self, call: _Call, headers: dict[str, str]) -> Principal:
        length = headers.get("content-length", "")
        limit = self.settings.request_body_max_bytes
        if length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"Request body of {length} bytes exceeds the {limit}-byte limit")
        if not self.settings.auth_required:
            call.app_id, call.profile = LOCAL.app_id, LOCAL.profile
            return LOCAL
        cert = self.trust.client_certificate(headers, call.peer)
        call.thumbprint = cert.thumbprint if cert else None
        # Not in the threadpool: the check is one primary-key join (~40 µs of CPU on SQLite, inline; awaited on the
        # loop on PostgreSQL) and a threadpool round trip costs ~150 µs; a changed registration costs more, once.
        app = await self.trust.authenticate_async(_bearer(headers), cert)
        call.app_id, call.profile = app.app_id, app.profile
        wait = self.trust.limiter.take(app.app_id)
        if wait:
            raise TooManyRequests(f"Rate limit of {self.settings.rate_limit_per_s:g} calls/s exceeded for "
                                  f"application '{app.app_id}'", headers={"Retry-After": str(math.ceil(wait))})
        self._check_ror_headers(call, headers, app)
        return app.principal()

    @staticmethod
    def _check_ror_headers(call: _Call, headers: dict[str, str], app) -> None:
        sent = [h for h in ROR_HEADERS if headers.get(h)]
        if call.rtype == "Location" and call.method == "PATCH":
            if sent:
                raise InvalidRequest(f"Capacity PATCH calls must not carry the Ror-* headers (sent: "
                                     f"{', '.join(_DISPLAY[h] for h in sent)})", expression=[_DISPLAY[h] for h in sent])
            return
        # A $export kick-off consults the whole offer (docs/export.md); polls and downloads serve its job.
        export = call.operation == "operation" and call.path.rstrip("/") == "/fhir/$export"
        if not export and (call.rtype not in CONSULTED_TYPES or call.operation not in ("search-type", "read", "vread",
                                                                                        "history-instance")):
            return
        missing = [_DISPLAY[h] for h in ROR_HEADERS if h not in sent]
        if missing:
            raise InvalidRequest(f"Missing header(s) {', '.join(missing)}: required when consulting "
                                 f"{call.rtype or 'the offer ($export)'}", expression=missing)
        wrong = [_DISPLAY[h] for h, attr in ROR_HEADERS.items() if headers[h] != getattr(app, attr)]
        if wrong:
            raise Forbidden(f"Header(s) {', '.join(wrong)} do not match the registration of application "
                            f"'{app.app_id}'", expression=wrong)

    # -- /oauth -------------------------------------------------------------------------------------
    async def _oauth(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        call = _Call(scope, headers, self.trust)
        path, method = scope["path"], scope["method"]
        if path == "/oauth/jwks" and method == "GET":
            jwks = await run_in_threadpool(self.trust.tokens.jwks)
            response = Response(orjson.dumps(jwks), media_type="application/jwk-set+json",
                                headers={"Cache-Control": "public, max-age=60"})
            call.outcome = "ok"
        elif path == "/oauth/token" and method == "POST":
            try:
                response = await self._token(call, headers, receive)
                call.outcome = "ok"
            except RorError as e:
                response = _oauth_error(e)
                call.outcome = e.issues[0].code
        else:
            e = MethodNotAllowed(f"{method} is not allowed on {path}") if path in ("/oauth/jwks", "/oauth/token") \
                else NotFound(f"No endpoint at {path}")
            response = error_response(e)
            call.outcome = e.issues[0].code
        call.status = response.status_code
        await response(scope, receive, send)
        self.trust.audit.record(call.row())

    async def _token(self, call: _Call, headers: dict[str, str], receive: Receive) -> Response:
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType("The token request must be application/x-www-form-urlencoded")
        raw = bytearray()
        more = True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
            if len(raw) > _TOKEN_FORM_MAX_BYTES:
                raise PayloadTooLarge(f"The token request exceeds {_TOKEN_FORM_MAX_BYTES} bytes")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequest("The token request body is not a valid form") from None
        form = dict(pairs)
        if len(form) != len(pairs):
            raise InvalidRequest("A token request parameter is repeated (RFC 6749 §3.2)")
        basic = _basic(headers)
        cert = self.trust.client_certificate(headers, call.peer)
        call.thumbprint = cert.thumbprint if cert else None
        body = await run_in_threadpool(self.trust.issue_token, form, basic, cert)
        call.app_id = basic[0] if basic else form["client_id"]
        return Response(orjson.dumps(body), media_type="application/json",
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # -- forwarding and audit -----------------------------------------------------------------------
    async def _refuse(self, call: _Call, e: RorError, scope: Scope, receive: Receive, send: Send) -> None:
        call.status, call.outcome = e.status, e.issues[0].code
        await error_response(e)(scope, receive, send)
        self.trust.audit.record(call.row())

    async def _send(self, call: _Call, answer: Answer, send: Send) -> None:
        """Send ``answer``: what ``_forward`` learns by watching the app's messages, the answer says."""
        call.status, call.outcome, call.returned = answer.status, answer.outcome, answer.returned
        try:
            await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
            await send({"type": "http.response.body", "body": answer.body})
        except Exception:
            call.status, call.outcome = 500, "exception"
            raise
        finally:
            self.trust.audit.record(call.row())

    async def _forward(self, call: _Call, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the inner app; learn status and returned resources from its response, drop X-Ror-Audit."""

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                call.status = message["status"]
                kept = []
                counted = False
                content_type = b""
                for name, value in message.get("headers", ()):
                    lname = name.lower()
                    if lname == _AUDIT_HEADER:
                        call.returned = parse_audit_header(value.decode("latin-1"))
                        counted = True
                        continue
                    if lname == b"content-type":
                        content_type = value
                    kept.append((name, value))
                if (not counted or call.status >= 400) and b"json" in content_type and b"ndjson" not in content_type:
                    call.body = bytearray()
                message = {**message, "headers": kept}
            elif message["type"] == "http.response.body" and call.body is not None:
                call.body += message.get("body", b"")
                if len(call.body) > _COUNT_BODY_MAX_BYTES:
                    call.body = None
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception:
            call.status, call.outcome = 500, "exception"
            raise
        else:
            self._conclude(call)
        finally:
            self.trust.audit.record(call.row())

    @staticmethod
    def _conclude(call: _Call) -> None:
        body = call.body
        if call.status < 400:
            call.outcome = "ok"
            if call.returned is None and body is not None:
                call.returned = count_resources(body)
            return
        call.outcome = "error"
        if body:
            try:
                issues = orjson.loads(body).get("issue") or []
                call.outcome = str(issues[0].get("code") or "error")[:64]
            except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
                pass


def secure(app: ASGIApp, trust: TrustSpace, public_prefixes: tuple[str, ...] = (),
           direct: Direct | None = None) -> SecureApp:
    """Wrap ``app`` (built by ``create_app``) in the trust space ``trust`` (see the module docstring);
    paths under ``public_prefixes`` (e.g. ``("/static",)``) need no token. ``direct`` answers the admitted requests
    it can (the reads by id) without the app: no ASGI layer between, no response messages to watch."""
    return SecureApp(app, trust, public_prefixes, direct)
