"""The terminology API: NOS tables as read-only FHIR CodeSystem / ValueSet resources and operations.

Search by ``url``, ``name`` (prefix, case-insensitive) or ``_id``; read by id (the NOS FHIR id,
``TRE-R213-ModePriseEnCharge``); ``$lookup`` (code system, code, optional ``date``); ``$validate-code``
on a value set or a code system (``date`` defaults to now: a retired code is invalid); ``$expand``
with ``filter`` (case- and accent-insensitive, on code and display), ``offset`` and ``count``.
Everything is served from the current version of each table; ``version`` selects an older one for
``$lookup`` and ``$expand`` is always the current membership.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select
from unidecode import unidecode

from ror.errors import InvalidRequest, NotFound
from ror.terminology.cache import Terminology, validity
from ror.terminology.schema import nos_concept, nos_table, nos_version

EXPAND_COUNT_MAX = 1000


def fhir_id(name: str) -> str:
    return name.replace("_", "-", 1) if name[:4] in ("TRE_", "JDV_") else name


def _now(tz: str = "Europe/Paris") -> str:
    return datetime.now(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M:%S")


def _iso_date(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) == 10:
        return value + "T00:00:00"
    return value[:19]


def _row_by_id(conn: Connection, kind: str, rid: str):
    rows = conn.execute(select(nos_table, nos_version.c.version, nos_version.c.version_date)
                        .join(nos_version, nos_version.c.pk == nos_table.c.current_version)
                        .where(nos_table.c.kind == kind)).all()
    for r in rows:
        if fhir_id(r.name) == rid or r.name == rid:
            return r
    raise NotFound(f"{kind}/{rid} is not loaded", expression=kind)


def _shell(r, kind: str) -> dict:
    res = {"resourceType": kind, "id": fhir_id(r.name), "url": r.url, "version": r.version, "name": r.name,
           "status": "active", "date": r.version_date, "publisher": "Agence du Numérique en Santé (ANS)"}
    if r.title:
        res["description"] = r.title
    if r.oid:
        res["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{r.oid}"}]
    return res


def search(conn: Connection, kind: str, params: list[tuple[str, str]], base: str) -> dict:
    q = select(nos_table, nos_version.c.version, nos_version.c.version_date) \
        .join(nos_version, nos_version.c.pk == nos_table.c.current_version).where(nos_table.c.kind == kind)
    for k, v in params:
        if k == "url":
            q = q.where(nos_table.c.url == v.split("|")[0])
        elif k == "name":
            q = q.where(func.lower(nos_table.c.name).startswith(v.lower()))
        elif k not in ("_count", "_format", "_id"):
            raise InvalidRequest(f"{kind} search supports url, name and _id, not '{k}'", expression=k)
    rows = [r for r in conn.execute(q.order_by(nos_table.c.name))
            if all(fhir_id(r.name) == v for k, v in params if k == "_id")]
    entries = []
    for r in rows:
        res = _shell(r, kind)
        if kind == "CodeSystem":
            res["content"] = "not-present"  # concepts: read the resource or use $lookup / $expand
        entries.append({"fullUrl": f"{base}/{kind}/{res['id']}", "resource": res, "search": {"mode": "match"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def read(conn: Connection, term: Terminology, kind: str, rid: str) -> dict:
    r = _row_by_id(conn, kind, rid)
    res = _shell(r, kind)
    if kind == "CodeSystem":
        cs = term.code_system(conn, r.url)
        res["content"] = "complete"
        res["count"] = len(cs.codes)
        res["property"] = [{"code": "status", "type": "code"}, {"code": "dateValid", "type": "dateTime"},
                           {"code": "dateFin", "type": "dateTime"}]
        res["concept"] = [_concept(code, info) for code, info in sorted(cs.codes.items())]
    else:
        vs = term.value_set(conn, r.url)
        include: dict[str, list] = {}
        for (system, code), display in sorted(vs.members.items()):
            include.setdefault(system, []).append({"code": code, "display": display})
        res["compose"] = {"include": [{"system": s, "concept": c} for s, c in include.items()]}
    return res


def _concept(code: str, info) -> dict:
    props = [{"code": "status", "valueCode": info.status}]
    if info.periods and info.periods[0][0]:
        props.append({"code": "dateValid", "valueDateTime": info.periods[0][0]})
    if info.status == "retired" and info.periods and info.periods[-1][1]:
        props.append({"code": "dateFin", "valueDateTime": info.periods[-1][1]})
    return {"code": code, "display": info.display, "property": props}


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    for k, v in params:
        if k == name and v != "":
            return v
    return None


def lookup(conn: Connection, term: Terminology, params: list[tuple[str, str]]) -> dict:
    system, code = _param(params, "system"), _param(params, "code")
    if not system or not code:
        raise InvalidRequest("$lookup needs system and code", expression="system")
    version = _param(params, "version")
    cs = term.code_system(conn, system)
    if cs is None:
        raise NotFound(f"Code system {system} is not loaded", expression="system")
    if version and version != cs.version:
        return _lookup_version(conn, system, code, version)
    info = cs.codes.get(code)
    if info is None:
        raise NotFound(f"Code '{code}' is not in {cs.name} (version {cs.version})", expression="code")
    out = [{"name": "name", "valueString": cs.name}, {"name": "version", "valueString": cs.version},
           {"name": "display", "valueString": info.display},
           {"name": "property", "part": [{"name": "code", "valueCode": "status"},
                                         {"name": "value", "valueCode": info.status}]}]
    for start, end in info.periods:
        part = [{"name": "code", "valueCode": "validityPeriod"}]
        period = {k: v for k, v in (("start", start), ("end", end)) if v}
        part.append({"name": "value", "valuePeriod": period})
        out.append({"name": "property", "part": part})
    at = _iso_date(_param(params, "date"))
    if at:
        v = validity(info, at)
        out.append({"name": "property", "part": [{"name": "code", "valueCode": "validAtDate"},
                                                 {"name": "value", "valueBoolean": v.state == "valid"}]})
    return {"resourceType": "Parameters", "parameter": out}


def _lookup_version(conn: Connection, system: str, code: str, version: str) -> dict:
    v = conn.execute(select(nos_version.c.pk, nos_table.c.pk.label("tpk"), nos_table.c.name)
                     .join(nos_table, nos_table.c.pk == nos_version.c.table_pk)
                     .where(nos_table.c.url == system, nos_version.c.version == version)).first()
    if v is None:
        raise NotFound(f"Version {version} of {system} is not loaded", expression="version")
    row = conn.execute(select(nos_concept).where(
        nos_concept.c.table_pk == v.tpk, nos_concept.c.code == code, nos_concept.c.since_version <= v.pk,
        (nos_concept.c.until_version.is_(None)) | (nos_concept.c.until_version > v.pk))).first()
    if row is None:
        raise NotFound(f"Code '{code}' is not in {v.name} version {version}", expression="code")
    return {"resourceType": "Parameters", "parameter": [
        {"name": "name", "valueString": v.name}, {"name": "version", "valueString": version},
        {"name": "display", "valueString": row.display},
        {"name": "property", "part": [{"name": "code", "valueCode": "status"},
                                      {"name": "value", "valueCode": row.status}]}]}


def validate_code(conn: Connection, term: Terminology, kind: str, params: list[tuple[str, str]],
                  rid: str | None = None) -> dict:
    url = _param(params, "url")
    if rid is not None:
        url = _row_by_id(conn, kind, rid).url
    code, system = _param(params, "code"), _param(params, "system")
    if not url or not code:
        raise InvalidRequest(f"$validate-code needs the {kind} url (or id) and a code", expression="code")
    at = _iso_date(_param(params, "date")) or _now()
    display = None
    if kind == "ValueSet":
        vs = term.value_set(conn, url)
        if vs is None:
            raise NotFound(f"Value set {url} is not loaded", expression="url")
        keys = [(system, code)] if system else [k for k in vs.members if k[1] == code]
        hit = next((k for k in keys if k in vs.members), None)
        if hit is None:
            return _result(False, f"Code '{code}'{' of ' + system if system else ''} is not in {vs.name} "
                                  f"(version {vs.version})")
        display, system = vs.members[hit], hit[0]
    cs = term.code_system(conn, system if kind == "ValueSet" else url)
    if cs is None:
        if kind == "CodeSystem":
            raise NotFound(f"Code system {url} is not loaded", expression="url")
        return _result(True, None, display)
    info = cs.codes.get(code)
    if info is None:
        return _result(False, f"Code '{code}' is not in {cs.name} (version {cs.version})")
    v = validity(info, at)
    if v.state != "valid":
        why = "retired on" if v.state == "retired" else "valid only from"
        return _result(False, f"Code '{code}' of {cs.name} is {why} {(v.date or '')[:10]} (date {at[:10]})",
                       display or info.display)
    return _result(True, None, display or info.display)


def _result(ok: bool, message: str | None, display: str | None = None) -> dict:
    out = [{"name": "result", "valueBoolean": ok}]
    if message:
        out.append({"name": "message", "valueString": message})
    if display:
        out.append({"name": "display", "valueString": display})
    return {"resourceType": "Parameters", "parameter": out}


def _fold(text: str) -> str:
    return unidecode(text).lower()


def expand(conn: Connection, term: Terminology, params: list[tuple[str, str]], rid: str | None = None) -> dict:
    url = _param(params, "url")
    if rid is not None:
        url = _row_by_id(conn, "ValueSet", rid).url
    if not url:
        raise InvalidRequest("$expand needs the value set url or id", expression="url")
    vs = term.value_set(conn, url)
    if vs is None:
        raise NotFound(f"Value set {url} is not loaded", expression="url")
    try:
        offset = int(_param(params, "offset") or 0)
        count = int(_param(params, "count") or EXPAND_COUNT_MAX)
    except ValueError:
        raise InvalidRequest("offset and count must be integers", expression="count") from None
    if offset < 0 or count < 0:
        raise InvalidRequest("offset and count must not be negative", expression="count")
    count = min(count, EXPAND_COUNT_MAX)
    words = _fold(_param(params, "filter") or "").split()
    members = dict(vs.members)
    for system in vs.whole:  # intensional include: the code system's current codes
        cs = term.code_system(conn, system)
        members.update({(system, code): info.display for code, info in (cs.codes.items() if cs else ())
                        if info.status == "active"})
    rows = [(s, c, d) for (s, c), d in sorted(members.items(), key=lambda kv: (kv[0][0], kv[0][1]))
            if all(w in _fold(f"{c} {d}") for w in words)]
    page = rows[offset:offset + count]
    expansion = {"identifier": f"{vs.url}|{vs.version}", "timestamp": _now() + "+00:00", "total": len(rows),
                 "offset": offset, "contains": [{"system": s, "code": c, "display": d} for s, c, d in page]}
    if words:
        expansion["parameter"] = [{"name": "filter", "valueString": _param(params, "filter")}]
    return {"resourceType": "ValueSet", "id": fhir_id(vs.name), "url": vs.url, "version": vs.version,
            "name": vs.name, "status": "active", "expansion": expansion}
