"""HTTP routes of the terminology API and of ``$validate``, mounted before the generic FHIR routes.

- ``GET /fhir/CodeSystem``, ``/fhir/ValueSet`` (search by url, name, _id); ``GET .../{id}`` (read);
- ``GET|POST /fhir/CodeSystem/$lookup``, ``/fhir/CodeSystem/$validate-code``,
  ``/fhir/ValueSet[/{id}]/$validate-code``, ``/fhir/ValueSet[/{id}]/$expand`` (query parameters, or a
  ``Parameters`` body for POST);
- ``POST /fhir/{rtype}/$validate``: the resource (or a ``Parameters`` with a ``resource`` part) is checked
  against its ROR profile without being written; the answer is an OperationOutcome (200) listing every
  issue. ``?mode=create`` skips the reference look-up for payloads whose targets are not written yet.

The terminology resources are read-only: other methods answer 405.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ror.api.http import read_body
from ror.errors import InvalidRequest, Issue, MethodNotAllowed, RorError
from ror.fhir.bundles import operation_outcome
from ror.profiles.validation import Validator
from ror.terminology import fhir as tfhir

FHIR_JSON = "application/fhir+json"


def _json(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON)


def _error(e: RorError) -> Response:
    return Response(orjson.dumps(operation_outcome(e.issues)), status_code=e.status, headers=e.headers,
                    media_type=FHIR_JSON)


def _parameters(body: object) -> list[tuple[str, str]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest("The body of this operation is a Parameters resource", expression="Parameters")
    out = []
    for p in body.get("parameter") or []:
        if not isinstance(p, dict) or "name" not in p:
            continue
        for k, v in p.items():
            if k.startswith("value") and isinstance(v, (str, int, bool)):
                out.append((p["name"], str(v).lower() if isinstance(v, bool) else str(v)))
            elif k == "valueCoding" and isinstance(v, dict):
                out += [(n, str(v[n])) for n in ("system", "code", "display") if n in v]
    return out


def terminology_routes(engine, validator: Validator | None = None, body_max_bytes: int = 20 * 1024 * 1024,
                       public_base_url: str = "") -> list[Route]:
    """The routes; ``validator`` is shared with the write path (its terminology cache too)."""
    validator = validator or Validator()
    term = validator.terminology

    def base(request: Request) -> str:
        return public_base_url.rstrip("/") if public_base_url else str(request.base_url).rstrip("/") + "/fhir"

    async def params_of(request: Request) -> list[tuple[str, str]]:
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        if request.method == "POST":
            try:
                pairs += _parameters(orjson.loads(await read_body(request, body_max_bytes)))
            except orjson.JSONDecodeError as e:
                raise InvalidRequest(f"The body is not valid JSON: {e}") from None
        return pairs

    def reading(fn: Callable) -> Callable:
        with engine.connect() as conn, conn.begin():
            return fn(conn)

    def endpoint(make: Callable[[Request, list[tuple[str, str]]], Callable], methods=("GET", "POST")):
        async def handler(request: Request) -> Response:
            try:
                if request.method not in methods:
                    raise MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}: "
                                           "the terminology resources are read-only")
                pairs = await params_of(request)
                work = make(request, pairs)
                return _json(await run_in_threadpool(reading, work))
            except RorError as e:
                return _error(e)
        return handler

    def kind_of(request: Request) -> str:
        return "CodeSystem" if request.url.path.rstrip("/").split("/fhir/", 1)[1].startswith("CodeSystem") \
            else "ValueSet"

    search = endpoint(lambda r, p: lambda c: tfhir.search(c, kind_of(r), p, base(r)), ("GET",))
    read = endpoint(lambda r, p: lambda c: tfhir.read(c, term, kind_of(r), r.path_params["id"]), ("GET",))
    lookup = endpoint(lambda r, p: lambda c: tfhir.lookup(c, term, p))
    validate_code = endpoint(lambda r, p: lambda c: tfhir.validate_code(c, term, kind_of(r), p,
                                                                        r.path_params.get("id")))
    expand = endpoint(lambda r, p: lambda c: tfhir.expand(c, term, p, r.path_params.get("id")))

    async def validate(request: Request) -> Response:
        rtype = request.path_params["rtype"]
        try:
            if request.method != "POST":
                raise MethodNotAllowed(f"$validate takes POST with the resource as body, not {request.method}")
            body = orjson.loads(await read_body(request, body_max_bytes))
            if isinstance(body, dict) and body.get("resourceType") == "Parameters":
                body = next((p.get("resource") for p in body.get("parameter") or []
                             if isinstance(p, dict) and p.get("name") == "resource"), None)
            if not isinstance(body, dict) or body.get("resourceType") != rtype:
                raise InvalidRequest(f"$validate on {rtype} takes a {rtype} resource (or a Parameters with a "
                                     "'resource' part)", expression=rtype)
            mode = dict(parse_qsl(request.url.query)).get("mode")
            checker = validator if mode != "create" else Validator(term, check_references=False)

            def run(conn):
                return checker.validate(body, conn)
            issues = await run_in_threadpool(reading, run)
        except orjson.JSONDecodeError as e:
            return _error(InvalidRequest(f"The body is not valid JSON: {e}"))
        except RorError as e:
            return _error(e)
        if not issues:
            issues = [Issue("information", "informational", f"{rtype} conforms to its ROR profile", [rtype])]
        return _json(operation_outcome(issues))

    return [
        Route("/fhir/CodeSystem/$lookup", lookup, methods=["GET", "POST"]),
        Route("/fhir/CodeSystem/$validate-code", validate_code, methods=["GET", "POST"]),
        Route("/fhir/ValueSet/$validate-code", validate_code, methods=["GET", "POST"]),
        Route("/fhir/ValueSet/$expand", expand, methods=["GET", "POST"]),
        Route("/fhir/ValueSet/{id}/$validate-code", validate_code, methods=["GET", "POST"]),
        Route("/fhir/ValueSet/{id}/$expand", expand, methods=["GET", "POST"]),
        Route("/fhir/CodeSystem", search, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/fhir/ValueSet", search, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/fhir/CodeSystem/{id}", read, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/fhir/ValueSet/{id}", read, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/fhir/{rtype}/$validate", validate, methods=["GET", "POST"]),
    ]
