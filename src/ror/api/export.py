"""Bulk Data ``$export`` over HTTP (docs/export.md): kick-off, status polling, cancel, file download.

- ``GET|POST [base]/$export`` -> 202, ``Content-Location: [base]/$export-poll-status?_jobId=<uuid>``
- ``GET [base]/$export-poll-status?_jobId=`` -> 202 (``X-Progress``, ``Retry-After``) while running,
  200 with the manifest when done, the failure's OperationOutcome (500) when it failed
- ``DELETE [base]/$export-poll-status?_jobId=`` -> 202, job and files deleted
- ``GET [base]/$export-file/<job>/<file>`` -> the NDJSON file (``application/fhir+ndjson``)

Routes are mounted before the generic ``/fhir/{rtype}`` ones, which would take ``$export`` for a type.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ror.access.audit import AUDIT_HEADER, audit_header
from ror.api.http import read_body
from ror.errors import InvalidRequest, Issue, NotAcceptable, RorError, UnsupportedMediaType
from ror.export.jobs import ExportJobs
from ror.export.request import NDJSON, parse_export
from ror.fhir.bundles import operation_outcome
from ror.fhir.rights import Caller
from ror.fhir.service import FHIR_JSON
from ror.fhirdates import stamp_to_instant


def parameters_pairs(raw: bytes) -> list[tuple[str, str]]:
    """A kick-off ``Parameters`` body -> (name, value) pairs (every value[x] read as its string form)."""
    try:
        body = orjson.loads(raw) if raw.strip() else {"resourceType": "Parameters"}
    except orjson.JSONDecodeError:
        raise InvalidRequest("The $export body is not JSON (send a Parameters resource)") from None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequest("The $export body must be a Parameters resource")
    pairs = []
    for p in body.get("parameter") or []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise InvalidRequest("Each Parameters.parameter needs a name")
        values = [v for k, v in p.items() if k.startswith("value")]
        if len(values) != 1 or not isinstance(values[0], str | int | bool):
            raise InvalidRequest(f"Parameter '{p['name']}' needs one primitive value[x]", expression=p["name"])
        pairs.append((p["name"], str(values[0]).lower() if isinstance(values[0], bool) else str(values[0])))
    return pairs


def export_routes(jobs: ExportJobs, base_of: Callable[[Request], str], caller_of: Callable[[Request], Caller],
                  error_response: Callable[[RorError], Response]) -> list[Route]:
    """The Bulk Data routes over ``jobs`` (created by ``create_app``, which stops them with the server)."""
    settings = jobs.settings

    def status_url(request: Request, job_id: str) -> str:
        return f"{base_of(request)}/$export-poll-status?_jobId={job_id}"

    async def kick_off(request: Request) -> Response:
        try:
            accept = request.headers.get("accept", "")
            if accept and not any(t in accept for t in ("json", "*/*", "application/*")):
                raise NotAcceptable(f"The $export kick-off answers in {FHIR_JSON}; Accept: {accept} cannot be served")
            pairs = parse_qsl(request.url.query, keep_blank_values=True)
            if request.method == "POST":
                mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
                raw = await read_body(request, settings.request_body_max_bytes)
                if raw.strip() and mime not in (FHIR_JSON, "application/json", "application/json+fhir"):
                    raise UnsupportedMediaType(f"Content-Type '{mime or '(none)'}' is not accepted here; send a "
                                               f"Parameters resource as {FHIR_JSON}")
                pairs += parameters_pairs(raw)
            caller = caller_of(request)
            req = await run_in_threadpool(parse_export, pairs, settings, caller.profile)
            query = request.url.query
            request_url = f"{base_of(request)}/$export" + (f"?{query}" if query else "")
            job_id = await run_in_threadpool(jobs.submit, caller, req, request_url)
        except RorError as e:
            return error_response(e)
        issue = Issue("information", "informational", f"Export {job_id} accepted; poll the Content-Location URL")
        return Response(orjson.dumps(operation_outcome([issue])), status_code=202, media_type=FHIR_JSON,
                        headers={"Content-Location": status_url(request, job_id)})

    async def poll(request: Request) -> Response:
        job_id = request.query_params.get("_jobId", "")
        caller = caller_of(request)
        try:
            if not job_id:
                raise InvalidRequest("_jobId is required (use the Content-Location of the kick-off)",
                                     expression="_jobId")
            if request.method == "DELETE":
                await run_in_threadpool(jobs.delete, job_id, caller)
                issue = Issue("information", "informational", f"Export {job_id} cancelled and its files deleted")
                return Response(orjson.dumps(operation_outcome([issue])), status_code=202, media_type=FHIR_JSON)
            job = await run_in_threadpool(jobs.get, job_id, caller)
        except RorError as e:
            return error_response(e)
        if job.status in ("queued", "running"):
            return Response(status_code=202, headers={"X-Progress": (job.progress or job.status)[:200],
                                                      "Retry-After": str(settings.export_retry_after_s)})
        if job.status == "failed":
            issue = Issue("error", "exception", job.error or "The export failed")
            return Response(orjson.dumps(operation_outcome([issue])), status_code=500, media_type=FHIR_JSON)
        base = base_of(request)
        manifest = job.manifest or {"output": [], "error": []}
        body = {
            "transactionTime": stamp_to_instant(job.transaction_time or job.created),
            "request": job.request,
            "requiresAccessToken": settings.auth_required,
            "output": [{"type": o["type"], "url": f"{base}/$export-file/{job.id}/{o['file']}", "count": o["count"]}
                       for o in manifest["output"]],
            "error": manifest.get("error", []),
        }
        headers = {AUDIT_HEADER: audit_header({})}
        if job.expires:
            headers["Expires"] = _http_date(job.expires)
        return Response(orjson.dumps(body), media_type="application/json", headers=headers)

    async def download(request: Request) -> Response:
        job_id, name = request.path_params["job"], request.path_params["name"]
        try:
            path, rtype, count = await run_in_threadpool(jobs.file, job_id, name, caller_of(request))
        except RorError as e:
            return error_response(e)
        return FileResponse(path, media_type=NDJSON, headers={AUDIT_HEADER: audit_header({rtype: count})})

    routes = [
        Route("/fhir/$export", kick_off, methods=["GET", "POST"]),
        Route("/fhir/$export-poll-status", poll, methods=["GET", "DELETE"]),
        Route("/fhir/$export-file/{job}/{name}", download, methods=["GET"]),
    ]
    return routes


def _http_date(s: str) -> str:
    return format_datetime(datetime.fromisoformat(s.replace("Z", "+00:00")), usegmt=True)
