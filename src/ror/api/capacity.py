"""Bed availability as JSON (documented in docs/capacity.md): summaries, stale places, history.

Answers obey the caller's access profile like every FHIR read; errors are OperationOutcomes.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ror.capacity import history
from ror.capacity.summary import GROUPINGS, stale_places, summary
from ror.errors import Forbidden, InvalidRequest, RorError
from ror.fhirdates import parse_range
from ror.settings import Settings


def _json(data) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _hours(request: Request, default: float) -> float:
    raw = request.query_params.get("stale-after-hours")
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        raise InvalidRequest(f"stale-after-hours must be a number, not '{raw}'",
                             expression="stale-after-hours") from None


def _stamp(request: Request, name: str, high: bool) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    rng = parse_range(raw)
    if rng is None:
        raise InvalidRequest(f"{name} must be a FHIR date or dateTime, not '{raw}'", expression=name)
    return rng[1] if high else rng[0]


def capacity_routes(engine: Engine, settings: Settings, caller_of, error_response) -> list[Route]:
    def profile(request: Request) -> int:
        return caller_of(request).profile

    async def summary_route(request: Request) -> Response:
        by = request.query_params.get("by", "region")
        try:
            if by not in GROUPINGS:
                raise InvalidRequest(f"by must be one of {', '.join(GROUPINGS)}", expression="by")
            hours = _hours(request, settings.capacity_stale_after_h)
            status = request.query_params.get("status", "02")
            temporality = request.query_params.get("temporality", "01")

            def run():
                with engine.connect() as conn:
                    return summary(conn, by, profile=profile(request), status=status, temporality=temporality,
                                   stale_after_h=hours)
            return _json(await run_in_threadpool(run))
        except RorError as e:
            return error_response(e)

    async def stale_route(request: Request) -> Response:
        try:
            hours = _hours(request, settings.capacity_stale_after_h)

            def run():
                with engine.connect() as conn:
                    return stale_places(conn, profile=profile(request), stale_after_h=hours)
            return _json({"staleAfterHours": hours, "locations": await run_in_threadpool(run)})
        except RorError as e:
            return error_response(e)

    async def history_route(request: Request) -> Response:
        try:
            location = request.query_params.get("location")
            establishment = request.query_params.get("establishment")
            if not location and not establishment:
                raise InvalidRequest("history needs location=<Location id> or establishment=<FINESS or idNatStruct>",
                                     expression="location")
            if profile(request) not in (1, 4):
                # The history shows every record of every place, sensitive ones included.
                raise Forbidden("The capacity history is open to access profiles 1 and 4 only")
            since, until = _stamp(request, "since", False), _stamp(request, "until", True)

            def run():
                with engine.connect() as conn:
                    return [e.to_json() for e in history.query(conn, location_id=location, establishment=establishment,
                                                                since=since, until=until)]
            return _json({"events": await run_in_threadpool(run)})
        except RorError as e:
            return error_response(e)

    return [Route("/api/capacity/summary", summary_route, methods=["GET"]),
            Route("/api/capacity/stale", stale_route, methods=["GET"]),
            Route("/api/capacity/history", history_route, methods=["GET"])]
