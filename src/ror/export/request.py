"""The kick-off parameters of ``$export`` -> a validated ``ExportRequest`` (400 on anything wrong).

Parameters (FHIR Bulk Data 2.0.0, system level, as the ROR IG §3.6 uses them):

- ``_outputFormat``: ``application/fhir+ndjson`` (default), ``application/ndjson``, ``ndjson``; and,
  for clients written against the national deviation, ``application/fhir+json`` / ``application/json``.
  The files are NDJSON in every case (each line is one ``application/fhir+json`` resource).
- ``_type``: comma-separated resource types (repeatable); default every exported type, or
  ``HealthcareService`` with ``includeAssociatedData=_myCompleteExtract``.
- ``_since``: a FHIR instant with its time zone; only resources whose ``meta.lastUpdated`` is later.
- ``_typeFilter``: ``Type?search`` queries (comma-separated, repeatable), run by the search engine;
  several queries of one type are ORed.
- ``includeAssociatedData``: ``_myCompleteExtract`` (the IG's code) adds, for the exported offers,
  their organisation and its ``partOf`` chain up to the EJ, their places, the roles on them and the
  roles' professionals.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qsl

from ror.errors import InvalidRequest, RorError
from ror.fhirdates import parse_range
from ror.profiles.searchparams import RESOURCE_TYPES, registry
from ror.search.plan import build_plan
from ror.settings import Settings

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = {NDJSON: NDJSON, "application/ndjson": NDJSON, "ndjson": NDJSON,
                  # ROR national deviation (IG §3.6): accepted, served as NDJSON all the same
                  "application/fhir+json": NDJSON, "application/json": NDJSON}
COMPLETE_EXTRACT = "_myCompleteExtract"
ASSOCIATED_TYPES = ("HealthcareService", "Organization", "Location", "PractitionerRole", "Practitioner")
KNOWN = {"_outputFormat", "_type", "_since", "_typeFilter", "includeAssociatedData"}
# Bulk Data parameters of other levels or versions that this server does not implement.
_NOT_SUPPORTED = {"_elements": "_elements is not supported (the ROR IG removed it)",
                  "patient": "patient applies to Patient-level exports, which the ROR has none of",
                  "_until": "_until is not supported", "organizeOutputBy": "organizeOutputBy is not supported",
                  "allowPartialManifests": "allowPartialManifests is not supported"}
# Search result parameters that mean nothing inside a _typeFilter query.
_FILTER_FORBIDDEN = {"_include", "_revinclude", "_sort", "_count", "_total", "_summary", "_cursor", "_elements",
                     "_format", "_pretty", "_same-record"}
_QUERY_START = re.compile(r",(?=[A-Z][A-Za-z]*\?)")


@dataclass
class ExportRequest:
    types: list[str]  # exported types, in output order
    own: list[str] = field(default_factory=list)  # exported in their own right (the others: associated data)
    output_format: str = NDJSON
    since: str | None = None  # stamp (UTC, ms) — resources with lastUpdated strictly later
    since_raw: str | None = None
    type_filters: dict[str, list[list[tuple[str, str]]]] = field(default_factory=dict)
    associated: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ExportRequest:
        filters = {t: [[(k, v) for k, v in q] for q in qs] for t, qs in data.get("type_filters", {}).items()}
        return cls(types=list(data["types"]), own=list(data.get("own", data["types"])),
                   output_format=data.get("output_format", NDJSON),
                   since=data.get("since"), since_raw=data.get("since_raw"), type_filters=filters,
                   associated=bool(data.get("associated")))


def _split(values: list[str]) -> list[str]:
    return [v.strip() for raw in values for v in raw.split(",") if v.strip()]


def parse_export(pairs: list[tuple[str, str]], settings: Settings, profile: int = 1) -> ExportRequest:
    """Validate the kick-off parameters; every filter is planned once here, so that a bad query is
    a 400 at kick-off rather than a failed job."""
    by_name: dict[str, list[str]] = {}
    for name, value in pairs:
        if name in _NOT_SUPPORTED:
            raise InvalidRequest(_NOT_SUPPORTED[name], expression=name)
        if name not in KNOWN:
            raise InvalidRequest(f"Unknown $export parameter '{name}' (known: {', '.join(sorted(KNOWN))})",
                                 expression=name)
        by_name.setdefault(name, []).append(value)

    fmt = (by_name.get("_outputFormat") or [NDJSON])
    if len(fmt) > 1:
        raise InvalidRequest("_outputFormat given more than once", expression="_outputFormat")
    if fmt[0].strip() not in OUTPUT_FORMATS:
        raise InvalidRequest(f"_outputFormat '{fmt[0]}' is not supported; use {NDJSON} (also accepted: "
                             f"{', '.join(k for k in OUTPUT_FORMATS if k != NDJSON)})", expression="_outputFormat")

    associated = False
    for code in _split(by_name.get("includeAssociatedData", [])):
        if code != COMPLETE_EXTRACT:
            raise InvalidRequest(f"includeAssociatedData '{code}' is not supported; the ROR supports "
                                 f"{COMPLETE_EXTRACT} (the offers with all their linked resources)",
                                 expression="includeAssociatedData")
        associated = True

    asked = _split(by_name.get("_type", []))
    for t in asked:
        if t not in RESOURCE_TYPES:
            raise InvalidRequest(f"_type '{t}' is not a resource type this server exports "
                                 f"({', '.join(RESOURCE_TYPES)})", expression="_type")
    if associated and asked and "HealthcareService" not in asked:
        raise InvalidRequest(f"includeAssociatedData={COMPLETE_EXTRACT} exports offers with their linked "
                             "resources: _type must include HealthcareService", expression="_type")
    own = list(dict.fromkeys(asked)) or (["HealthcareService"] if associated else list(RESOURCE_TYPES))

    since = since_raw = None
    if by_name.get("_since"):
        if len(by_name["_since"]) > 1:
            raise InvalidRequest("_since given more than once", expression="_since")
        since_raw = by_name["_since"][0].strip()
        rng = parse_range(since_raw, settings.local_timezone) if "T" in since_raw else None
        if rng is None or not re.search(r"(Z|[+-]\d{2}:\d{2})$", since_raw):
            raise InvalidRequest(f"_since '{since_raw}' is not a FHIR instant (YYYY-MM-DDThh:mm:ss[.fff] with "
                                 "Z or ±hh:mm)", expression="_since")
        since = rng[0]

    filters: dict[str, list[list[tuple[str, str]]]] = {}
    for query in (q.strip() for raw in by_name.get("_typeFilter", []) for q in _QUERY_START.split(raw)):
        if not query:
            continue
        rtype, sep, qs = query.partition("?")
        if not sep or rtype not in RESOURCE_TYPES:
            raise InvalidRequest(f"_typeFilter '{query}' is not a search query 'Type?parameters' on a type "
                                 f"this server exports", expression="_typeFilter")
        if rtype not in own:
            raise InvalidRequest(f"_typeFilter '{query}' filters {rtype}, which is not among the exported types "
                                 f"({', '.join(own)})", expression="_typeFilter")
        q_pairs = parse_qsl(qs, keep_blank_values=True)
        for name, _ in q_pairs:
            if name.split(":", 1)[0] in _FILTER_FORBIDDEN:
                raise InvalidRequest(f"_typeFilter '{query}': {name} is a result parameter, not allowed in a "
                                     "_typeFilter query", expression="_typeFilter")
        try:
            build_plan(rtype, q_pairs, registry(), settings, False, profile)
        except RorError as e:
            raise InvalidRequest(f"_typeFilter '{query}': {e.message}", expression="_typeFilter") from None
        filters.setdefault(rtype, []).append(q_pairs)

    types = list(own)
    if associated:
        types += [t for t in ASSOCIATED_TYPES if t not in types]
    types = [t for t in RESOURCE_TYPES if t in types]  # stable output order
    return ExportRequest(types=types, own=own, output_format=OUTPUT_FORMATS[fmt[0].strip()], since=since,
                         since_raw=since_raw, type_filters=filters, associated=associated)

