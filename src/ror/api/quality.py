"""Data-quality indicators as JSON (documented in docs/quality.md).

``GET /api/quality/indicators?by=region|department|sector[&region=R][&run=ID]``: the indicators of the
latest ``ror quality run`` (or of run ID), summed per group, with the rates recomputed from the sums.
``GET /api/quality/runs``: the runs, newest first (to follow the indicators over time).
Like every /api route they sit behind the trust space; the anomalies themselves are FHIR ``Task``
resources, searched through /fhir with the caller's access profile.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ror.errors import InvalidRequest, RorError
from ror.quality.indicators import GROUPINGS, indicators, runs


def _json(data) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def quality_routes(engine: Engine, caller_of, error_response) -> list[Route]:
    async def indicators_route(request: Request) -> Response:
        try:
            caller_of(request)
            by = request.query_params.get("by", "region")
            if by not in GROUPINGS:
                raise InvalidRequest(f"by must be one of {', '.join(GROUPINGS)}", expression="by")
            region = request.query_params.get("region") or None
            raw = request.query_params.get("run")
            if raw is not None and not raw.isdigit():
                raise InvalidRequest(f"run must be a run number, not '{raw}'", expression="run")

            def work():
                with engine.connect() as conn:
                    return indicators(conn, by, region, int(raw) if raw else None)
            return _json(await run_in_threadpool(work))
        except RorError as e:
            return error_response(e)

    async def runs_route(request: Request) -> Response:
        try:
            caller_of(request)

            def work():
                with engine.connect() as conn:
                    return runs(conn)
            return _json({"runs": await run_in_threadpool(work)})
        except RorError as e:
            return error_response(e)

    return [Route("/api/quality/indicators", indicators_route, methods=["GET"]),
            Route("/api/quality/runs", runs_route, methods=["GET"])]
