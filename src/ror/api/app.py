"""The HTTP face of the FHIR API (Starlette: the FHIR hot path stays at the ASGI level, DESIGN.md §7).

Every ``RorError`` becomes an OperationOutcome with its status; anything unexpected is logged and
answered with a 500 OperationOutcome that carries no internal detail.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from ror.access.audit import parse_audit_header
from ror.access.trust import TrustSpace
from ror.api.admin import admin_routes
from ror.api.capacity import capacity_routes
from ror.api.export import export_routes
from ror.api.http import read_body
from ror.api.quality import quality_routes
from ror.api.security import Answer, SecureApp, secure
from ror.api.terminology import terminology_routes
from ror.errors import (
    InvalidRequest,
    Issue,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    RorError,
    UnsupportedMediaType,
)
from ror.export.jobs import ExportJobs
from ror.fhir.bundles import operation_outcome
from ror.fhir.capability import capability_statement
from ror.fhir.rights import FULL_ACCESS, Caller
from ror.fhir.service import AUDIT_HEADER, FHIR_JSON, JSON_PATCH, FhirService
from ror.fhir.service import Response as FhirResponse
from ror.profiles.searchparams import RESOURCE_TYPES
from ror.settings import Settings

log = logging.getLogger("ror.api")
_JSON_TYPES = (FHIR_JSON, "application/json", "application/json+fhir")


def fhir_response(r: FhirResponse) -> Response:
    return Response(r.body, status_code=r.status, headers=r.headers, media_type=FHIR_JSON)


def error_response(e: RorError) -> Response:
    return Response(orjson.dumps(operation_outcome(e.issues)), status_code=e.status, headers=e.headers,
                    media_type=FHIR_JSON)


def _check_accept(accept: str) -> None:
    """406 unless the ``Accept`` header admits JSON."""
    if accept and not any(t in accept for t in ("json", "*/*", "application/*")):
        raise NotAcceptable(f"This server answers in {FHIR_JSON}; Accept: {accept} cannot be served")


class FhirApi:
    def __init__(self, service: FhirService, settings: Settings):
        self.service = service
        self.settings = settings

    def base(self, request: Request) -> str:
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/")
        return str(request.base_url).rstrip("/") + "/fhir"

    async def body(self, request: Request, allowed: tuple[str, ...] = _JSON_TYPES) -> bytes:
        mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if mime not in allowed:
            raise UnsupportedMediaType(f"Content-Type '{mime or '(none)'}' is not accepted here; send {allowed[0]}")
        return await read_body(request, self.settings.request_body_max_bytes)

    @staticmethod
    def caller(request: Request) -> Caller:
        """The authenticated application (set by the trust space, ror.api.security), else full access."""
        return getattr(request.state, "principal", None) or FULL_ACCESS

    @staticmethod
    def lenient(request: Request) -> bool:
        return "handling=lenient" in request.headers.get("prefer", "").replace(" ", "")

    async def run(self, request: Request, fn: Callable[[], FhirResponse]) -> Response:
        return await self.answer(request, lambda: run_in_threadpool(fn))

    async def answer(self, request: Request, call: Callable[[], Awaitable[FhirResponse]]) -> Response:
        """The response of ``await call()``; single PATCHes come this way, without a thread each (the write lane
        of ``ror.store.group_commit``), the rest through ``run``, in the threadpool."""
        try:
            _check_accept(request.headers.get("accept", ""))
            r = await call()
        except RorError as e:
            return error_response(e)
        if request.headers.get("prefer", "").replace(" ", "").find("return=minimal") >= 0 and r.status in (200, 201) \
                and request.method in ("POST", "PUT", "PATCH"):
            r.body = b""
        return fhir_response(r)

    # -- routes -----------------------------------------------------------------------------------
    async def metadata(self, request: Request) -> Response:
        return Response(orjson.dumps(capability_statement(self.base(request))), media_type=FHIR_JSON)

    async def type_level(self, request: Request) -> Response:
        rtype = request.path_params["rtype"]
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        base = self.base(request)
        caller = self.caller(request)
        try:
            if request.method == "GET":
                return await self.run(request, lambda: self.service.search(rtype, pairs, base, self.lenient(request),
                                                                           caller))
            if request.method == "POST":
                raw = await self.body(request)
                return await self.run(request, lambda: self.service.create(rtype, raw, base, caller))
            if request.method == "PATCH":
                raw = await self.body(request, (*_JSON_TYPES, JSON_PATCH))
                ctype = request.headers.get("content-type", "")
                return await self.answer(request, lambda: self.service.conditional_patch_soon(
                    rtype, pairs, raw, ctype, base, request.headers.get("if-match"), caller))
            raise MethodNotAllowed(f"{request.method} is not supported on [base]/{rtype}")
        except RorError as e:
            return error_response(e)

    async def search_post(self, request: Request) -> Response:
        rtype = request.path_params["rtype"]
        try:
            raw = await self.body(request, ("application/x-www-form-urlencoded",))
            pairs = parse_qsl(request.url.query, keep_blank_values=True) + \
                parse_qsl(raw.decode("utf-8", "strict"), keep_blank_values=True)
        except UnicodeDecodeError:
            return error_response(InvalidRequest("The _search form body is not UTF-8"))
        except RorError as e:
            return error_response(e)
        base = self.base(request)
        caller = self.caller(request)
        return await self.run(request, lambda: self.service.search(rtype, pairs, base, self.lenient(request), caller))

    async def instance(self, request: Request) -> Response:
        rtype, rid = request.path_params["rtype"], request.path_params["rid"]
        base = self.base(request)
        caller = self.caller(request)
        if_match = request.headers.get("if-match")
        try:
            if request.method == "GET":
                return await self.run(request, lambda: self.service.read(rtype, rid, caller=caller))
            if request.method == "PUT":
                raw = await self.body(request)
                return await self.run(request, lambda: self.service.update(rtype, rid, raw, base, if_match, caller))
            if request.method == "PATCH":
                raw = await self.body(request, (*_JSON_TYPES, JSON_PATCH))
                ctype = request.headers.get("content-type", "")
                return await self.answer(request, lambda: self.service.patch_soon(rtype, rid, raw, ctype, base,
                                                                                  if_match, caller))
            raise MethodNotAllowed(f"{request.method} is not supported on [base]/{rtype}/[id]: the ROR IG "
                                   "has no delete interaction (close the entity with its status or dates)",
                                   headers={"Allow": "GET, PUT, PATCH"})
        except RorError as e:
            return error_response(e)

    async def history(self, request: Request) -> Response:
        rtype, rid = request.path_params["rtype"], request.path_params["rid"]
        base = self.base(request)
        return await self.run(request, lambda: self.service.history(rtype, rid, base, self.caller(request)))

    async def vread(self, request: Request) -> Response:
        rtype, rid, vid = (request.path_params[k] for k in ("rtype", "rid", "vid"))
        if not vid.isdigit():
            return error_response(InvalidRequest(f"Version id '{vid}' is not a number", expression="versionId"))
        return await self.run(request, lambda: self.service.read(rtype, rid, int(vid), self.caller(request)))

    async def system(self, request: Request) -> Response:
        base = self.base(request)
        try:
            raw = await self.body(request)
        except RorError as e:
            return error_response(e)
        return await self.run(request, lambda: self.service.bundle(raw, base, self.caller(request)))


_INTERNAL_ERROR = orjson.dumps(operation_outcome([Issue(
    "fatal", "exception", "Internal error; it has been logged. Please report the time of the request.")]))
_FHIR_JSON = FHIR_JSON.encode()
_READ_PATH = re.compile(r"/fhir/([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")


class FastReads:
    """``GET [base]/{type}/{id}`` of the store's resources, answered straight by the trust space (``secure``'s
    ``direct``): the read is the most frequent call, and Starlette's routing (~40 route patterns tried), its
    threadpool hop cost more than the read itself (profiled: 0.64 ms per read, of which the primary-key lookup
    ~0.1 ms, before this path). As an ASGI layer behind the trust space, the trust space then watched its messages for
    the status and read the audit header back: 75.8 → 68.4 µs a read in process without that (medians of six
    alternated runs, 20,797 resources, RESULTS.md session 21). On SQLite the read
    runs inline on the event loop (a local primary-key lookup, shorter than a threadpool round trip); on PostgreSQL,
    which may wait on the network, its round trip is awaited on the loop (profile 1, one statement) or it runs in the
    threadpool (the other profiles' reads, which redact). Anything else is left to the app. Reads are authorised and
    audited exactly as the other requests: the trust space admits the request first and records the answer."""

    def __init__(self, api: FhirApi):
        self.api = api
        self.inline = api.service.engine.dialect.name == "sqlite"

    async def __call__(self, scope: Scope, headers: dict[str, str], caller: Caller) -> Answer | None:
        m = _READ_PATH.fullmatch(scope["path"]) if scope["method"] == "GET" and not scope.get("query_string") \
            else None
        if m is None or m[1] not in RESOURCE_TYPES:
            return None
        rtype, rid = m[1], m[2]
        try:
            _check_accept(headers.get("accept", ""))
            if self.inline:
                r = self.api.service.read(rtype, rid, caller=caller)
            elif caller.profile == 1:
                r = await self.api.service.read_now_async(rtype, rid)
            else:
                r = await run_in_threadpool(self.api.service.read, rtype, rid, None, caller)
            status, body, headers_out = r.status, r.body, r.headers
            returned, outcome = parse_audit_header(headers_out.pop(AUDIT_HEADER)), "ok"
        except RorError as e:
            status, body, headers_out = e.status, orjson.dumps(operation_outcome(e.issues)), e.headers or {}
            returned, outcome = None, e.issues[0].code
        except Exception:  # what Starlette's error handler does for the other routes (``_server_error``)
            log.exception("unexpected error on GET %s", scope["path"])
            status, body, headers_out, returned, outcome = 500, _INTERNAL_ERROR, {}, None, "exception"
        raw = [(b"content-type", _FHIR_JSON), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers_out.items()]
        return Answer(status, body, raw, returned, outcome)


_PATCH_PATH = re.compile(r"/fhir/([A-Za-z]+)(?:/([A-Za-z0-9\-.]{1,64}))?")


class FastPatches:
    """``PATCH [base]/{type}?…`` and ``PATCH [base]/{type}/{id}`` of the store's resources (the capacity updates)
    straight to their handlers: Starlette's router tried every route pattern before the generic FHIR ones (~40)
    and ran its two middlewares around them. Same handlers, same answers; an unexpected error is answered by
    ``_server_error``, as Starlette would. The trust space wraps this, so PATCHes are authorised and audited
    exactly as before."""

    def __init__(self, app, api: FhirApi):
        self.app = app
        self.api = api

    async def __call__(self, scope, receive, send) -> None:
        m = _PATCH_PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "PATCH" else None
        if m is None or m[1] not in RESOURCE_TYPES:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = {"rtype": m[1]} if m[2] is None else {"rtype": m[1], "rid": m[2]}
        request = Request(scope, receive, send)
        try:
            response = await (self.api.type_level if m[2] is None else self.api.instance)(request)
        except Exception as e:
            response = await _server_error(request, e)
        await response(scope, receive, send)


async def _not_found(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"))
    return error_response(NotFound(f"No FHIR endpoint at {request.url.path}"))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return Response(_INTERNAL_ERROR, status_code=500, media_type=FHIR_JSON)


def create_app(service: FhirService, settings: Settings) -> SecureApp:
    """The FHIR API, the terminology and capacity APIs and the admin API, behind the trust space
    (ror.api.security: tokens, certificates, Ror-* headers, rate limits, audit)."""
    api = FhirApi(service, settings)
    trust = TrustSpace(service.engine, settings)
    jobs = ExportJobs(service.engine, settings)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(jobs.close)  # stop the export workers and their heartbeat with the server
    routes = [
        *admin_routes(trust),
        Route("/", lambda request: RedirectResponse("/fhir/metadata")),
        Route("/fhir/metadata", api.metadata, methods=["GET"]),
        # Before the generic /fhir/{rtype}/… routes, which would catch /fhir/CodeSystem/$lookup.
        *terminology_routes(service.engine, service.validator, settings.request_body_max_bytes,
                            settings.public_base_url),
        *capacity_routes(service.engine, settings, FhirApi.caller, error_response),
        *quality_routes(service.engine, FhirApi.caller, error_response),
        *export_routes(jobs, api.base, FhirApi.caller, error_response),  # $export, before /fhir/{rtype}
        Route("/fhir", api.system, methods=["POST"]),
        Route("/fhir/", api.system, methods=["POST"]),
        Route("/fhir/{rtype}/_search", api.search_post, methods=["POST"]),
        Route("/fhir/{rtype}/{rid}/_history/{vid}", api.vread, methods=["GET"]),
        Route("/fhir/{rtype}/{rid}/_history", api.history, methods=["GET"]),
        Route("/fhir/{rtype}/{rid}", api.instance, methods=["GET", "PUT", "PATCH", "DELETE", "POST"]),
        Route("/fhir/{rtype}", api.type_level, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
    ]
    inner = Starlette(routes=routes, lifespan=lifespan,
                      exception_handlers={HTTPException: _not_found, Exception: _server_error})
    return secure(FastPatches(inner, api), trust, direct=FastReads(api))
