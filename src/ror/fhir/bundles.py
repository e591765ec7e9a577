"""OperationOutcome and Bundle bodies. Searchsets are assembled from the stored JSON bytes of each
resource, without parsing and re-serialising them (DESIGN.md §7)."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson

from ror.errors import Issue
from ror.fhirdates import now_stamp, stamp_to_instant
from ror.search.execute import SearchResult

DISTANCE_EXT = "http://hl7.org/fhir/StructureDefinition/location-distance"


def operation_outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def _search(mode: str, distance: float | None) -> bytes:
    search: dict = {"mode": mode}
    if distance is not None:
        search["extension"] = [{"url": DISTANCE_EXT,
                                "valueDistance": {"value": distance, "unit": "km",
                                                  "system": "http://unitsofmeasure.org", "code": "km"}}]
    return orjson.dumps(search)


def searchset(base: str, rtype: str, pairs: list[tuple[str, str]], result: SearchResult,
              warnings: list[Issue]) -> bytes:
    own = [(k, v) for k, v in pairs if k != "_cursor"]
    links = [{"relation": "self", "url": f"{base}/{rtype}?{urlencode(pairs)}" if pairs else f"{base}/{rtype}"}]
    if result.next_cursor:
        next_query = urlencode([*own, ("_cursor", result.next_cursor)])
        links.append({"relation": "next", "url": f"{base}/{rtype}?{next_query}"})
    head: dict = {"resourceType": "Bundle", "type": "searchset", "timestamp": stamp_to_instant(now_stamp())}
    if result.total is not None:
        head["total"] = result.total
    head["link"] = links
    # One join of every piece: a page with its includes is megabytes of stored bodies, copied once.
    parts = [orjson.dumps(head)[:-1], b',"entry":[']
    for mode, entries in (("match", result.matches), ("include", result.included)):
        for e in entries:
            parts += (b'{"fullUrl":', orjson.dumps(f"{base}/{e.rtype}/{e.rid}"), b',"resource":', e.body,
                      b',"search":', _search(mode, e.distance_km), b"},")
    if warnings:
        parts.append(b'{"resource":' + orjson.dumps(operation_outcome(warnings)) + b',"search":{"mode":"outcome"}},')
    if parts[-1].endswith(b","):
        parts[-1] = parts[-1][:-1]
    parts.append(b"]}")
    return b"".join(parts)


def history_bundle(base: str, rtype: str, rid: str, versions) -> bytes:
    entries = []
    for v in versions:
        method = "POST" if v.version == 1 else "PUT"
        entries.append(b"".join((b'{"fullUrl":', orjson.dumps(f"{base}/{rtype}/{rid}"), b',"resource":', v.body,
                                 b',"request":', orjson.dumps({"method": method, "url": f"{rtype}/{rid}"}),
                                 b',"response":', orjson.dumps({"status": "200", "etag": f'W/"{v.version}"',
                                                                "lastModified": stamp_to_instant(v.last_updated)}),
                                 b"}")))
    head = {"resourceType": "Bundle", "type": "history", "total": len(versions)}
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
