"""Load NOS tables into the store, keeping every version, and say what changed.

A load takes every table found under a path, orders the versions of each table by publication date
and applies the newer ones: a code whose label, dates or status changed gets a new temporal row (the
old one is closed), a code that appears is added, a value-set entry that disappears is closed. The
report lists, per table that already had a version, the codes added, retired, reactivated, relabelled
and removed. Loading the same files twice changes nothing; an older version than the loaded one is
reported and ignored (history is replayed in publication order, never rewritten).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select, update

from ror.fhirdates import now_stamp
from ror.terminology.nos import Concept, ParsedTable, Skipped, read_path
from ror.terminology.schema import nos_concept, nos_load, nos_member, nos_state, nos_table, nos_version


@dataclass
class TableChange:
    table: str
    kind: str
    url: str
    from_version: str | None
    to_version: str
    added: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    relabelled: list[dict] = field(default_factory=list)  # {"code", "from", "to"}
    removed: list[str] = field(default_factory=list)
    redated: list[str] = field(default_factory=list)  # validity or update dates changed, nothing else

    def empty(self) -> bool:
        return not (self.added or self.retired or self.reactivated or self.relabelled or self.removed
                    or self.redated)


@dataclass
class LoadReport:
    source: str
    new_tables: list[dict] = field(default_factory=list)  # {"table", "kind", "version", "codes"}
    changed: list[TableChange] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # "name version" already loaded
    older: list[str] = field(default_factory=list)  # "name version (loaded: v)"
    skipped: list[dict] = field(default_factory=list)  # {"source", "reason"}
    unresolved: list[str] = field(default_factory=list)  # value-set rows whose code system is not loaded

    def totals(self) -> dict:
        t = {k: sum(len(getattr(c, k)) for c in self.changed)
             for k in ("added", "retired", "reactivated", "relabelled", "removed", "redated")}
        return {"new_tables": len(self.new_tables), "new_codes": sum(n["codes"] for n in self.new_tables),
                "changed_tables": len(self.changed), **t, "unchanged_versions": len(self.unchanged),
                "older_versions": len(self.older), "skipped_files": len(self.skipped),
                "unresolved_value_set_rows": len(self.unresolved)}

    def to_dict(self) -> dict:
        return {"source": self.source, "totals": self.totals(), "new_tables": self.new_tables,
                "changed": [asdict(c) for c in self.changed], "unchanged": self.unchanged, "older": self.older,
                "skipped": self.skipped, "unresolved": self.unresolved}


def load_path(conn: Connection, path: Path) -> LoadReport:
    """Read every table under ``path`` (zip, folder, .tabs or .json) and apply it."""
    items = list(read_path(path))
    return apply(conn, [i for i in items if isinstance(i, ParsedTable)],
                 [i for i in items if isinstance(i, Skipped)], str(path))


def apply(conn: Connection, tables: list[ParsedTable], skipped: list[Skipped], source: str) -> LoadReport:
    report = LoadReport(source, skipped=[{"source": s.source, "reason": s.reason} for s in skipped])
    load_pk = conn.execute(nos_load.insert().values(loaded_at=now_stamp(), source=source[:300], report="{}")
                           .returning(nos_load.c.pk)).scalar_one()
    by_url: dict[str, list[ParsedTable]] = defaultdict(list)
    for t in tables:
        by_url[t.url].append(t)
    # Code systems first: value-set rows of tabs files name their code system by OID.
    order = sorted(by_url, key=lambda u: (by_url[u][0].kind != "CodeSystem", by_url[u][0].name))
    for url in order:
        versions = sorted(by_url[url], key=lambda t: (t.version_date, t.version))
        for t in versions:
            _apply_one(conn, t, load_pk, report)
    conn.execute(nos_load.update().where(nos_load.c.pk == load_pk).values(report=json.dumps(report.to_dict())))
    conn.execute(update(nos_state).where(nos_state.c.id == 1).values(generation=nos_state.c.generation + 1))
    return report


def _apply_one(conn: Connection, t: ParsedTable, load_pk: int, report: LoadReport) -> None:
    row = conn.execute(select(nos_table).where(nos_table.c.url == t.url)).first()
    if row is None:
        table_pk = conn.execute(nos_table.insert().values(kind=t.kind, url=t.url, name=t.name, oid=t.oid,
                                                          title=t.title).returning(nos_table.c.pk)).scalar_one()
        current = None
    else:
        table_pk = row.pk
        current = conn.execute(select(nos_version).where(nos_version.c.pk == row.current_version)).first() \
            if row.current_version else None
        exists = conn.execute(select(nos_version.c.pk).where(nos_version.c.table_pk == table_pk,
                                                             nos_version.c.version == t.version)).first()
        if exists:
            report.unchanged.append(f"{t.name} {t.version}")
            return
        if current is not None and current.version_date > t.version_date:
            report.older.append(f"{t.name} {t.version} (loaded: {current.version})")
            return
    version_pk = conn.execute(nos_version.insert().values(
        table_pk=table_pk, version=t.version, version_date=t.version_date, valid_from=t.valid_from,
        valid_to=t.valid_to, source=t.source[-300:], load_pk=load_pk).returning(nos_version.c.pk)).scalar_one()
    change = TableChange(t.name, t.kind, t.url, current.version if current else None, t.version)
    if t.kind == "CodeSystem":
        _apply_concepts(conn, table_pk, version_pk, t, change)
    else:
        _apply_members(conn, table_pk, version_pk, t, change, report)
    conn.execute(nos_table.update().where(nos_table.c.pk == table_pk).values(
        current_version=version_pk, name=t.name, oid=t.oid or (row.oid if row else None),
        title=t.title or (row.title if row else None)))
    if current is None:
        report.new_tables.append({"table": t.name, "kind": t.kind, "version": t.version,
                                  "codes": len(t.concepts) + len(t.members)})
    elif not change.empty():
        report.changed.append(change)


def _state(c: Concept) -> tuple:
    return (c.display, c.short_label, c.long_label, c.date_valid, c.date_end, "retired" if c.retired else "active")


def concept_changes(current: dict, t: ParsedTable, change: TableChange) -> tuple[list[str], list[dict]]:
    """What version ``t`` of a code system does to the open states ``current`` (code -> row with the
    ``nos_concept`` columns as attributes): the codes whose state it ends, and the states it opens (one
    ``nos_concept`` row each, without table and version). Shared with the in-memory replay of
    ``ror.terminology.bundled``, so both hold the same history."""
    seen: set[str] = set()
    ended: list[str] = []
    opened: list[dict] = []
    for c in t.concepts:
        if c.code in seen:
            continue
        seen.add(c.code)
        old = current.get(c.code)
        new = _state(c)
        if old is not None:
            before = (old.display, old.short_label, old.long_label, old.date_valid, old.date_end, old.status)
            if before == new:
                continue
            ended.append(c.code)
            if old.status == "active" and new[5] == "retired":
                change.retired.append(c.code)
            elif old.status == "retired" and new[5] == "active":
                change.reactivated.append(c.code)
            if old.display != c.display:
                change.relabelled.append({"code": c.code, "from": old.display, "to": c.display})
            elif (old.status == new[5]) and before[:3] == new[:3]:
                change.redated.append(c.code)
        else:
            change.added.append(c.code)
        opened.append({"code": c.code, "display": c.display, "short_label": c.short_label,
                       "long_label": c.long_label, "date_valid": c.date_valid, "date_end": c.date_end,
                       "date_updated": c.date_updated, "status": new[5]})
    for code, old in current.items():
        if code not in seen and old.status == "active":
            # NOS never deletes codes; a code missing from a newer export is treated as ended then.
            ended.append(code)
            change.removed.append(code)
            opened.append({"code": code, "display": old.display, "short_label": old.short_label,
                           "long_label": old.long_label, "date_valid": old.date_valid, "date_end": t.version_date,
                           "date_updated": t.version_date, "status": "retired"})
    return ended, opened


def _apply_concepts(conn: Connection, table_pk: int, version_pk: int, t: ParsedTable, change: TableChange) -> None:
    cur = {r.code: r for r in conn.execute(select(nos_concept).where(
        nos_concept.c.table_pk == table_pk, nos_concept.c.until_version.is_(None)))}
    ended, opened = concept_changes(cur, t, change)
    _close(conn, nos_concept, [cur[code].pk for code in ended], version_pk)
    if opened:
        conn.execute(nos_concept.insert(), [{**row, "table_pk": table_pk, "since_version": version_pk,
                                             "until_version": None} for row in opened])


def _close(conn: Connection, table, pks: list[int], version_pk: int) -> None:
    for i in range(0, len(pks), 500):
        conn.execute(table.update().where(table.c.pk.in_(pks[i:i + 500])).values(until_version=version_pk))


def _resolve_systems(conn: Connection, t: ParsedTable, report: LoadReport) -> list[tuple[str, str, str]]:
    oids = {m.source_oid for m in t.members if m.system is None and m.source_oid}
    by_oid: dict[str, str] = {}
    if oids:
        for r in conn.execute(select(nos_table.c.oid, nos_table.c.url).where(
                nos_table.c.kind == "CodeSystem", nos_table.c.oid.in_(oids))):
            by_oid[r.oid] = r.url
    codes_of: dict[str, set[str]] = {}
    for url in set(by_oid.values()):
        codes_of[url] = set(conn.execute(select(nos_concept.c.code).join(
            nos_table, nos_table.c.pk == nos_concept.c.table_pk).where(nos_table.c.url == url)).scalars())
    return resolve_members(t, by_oid, codes_of, report)


def resolve_members(t: ParsedTable, by_oid: dict[str, str], codes_of: dict[str, set[str]],
                    report: LoadReport) -> list[tuple[str, str, str]]:
    """(system, code, display) of each value-set row; tabs rows name their code system by OID (``by_oid``:
    OID -> URL of the loaded code systems the rows name, ``codes_of``: URL -> every code it ever held).

    Some ANS exports carry a wrong OID on a few rows (e.g. TRE_R244 codes 93-112): when the named code
    system does not hold the code but another code system of the same value set does, that one is used.
    """
    out = []
    candidates = sorted(set(by_oid.values()))
    for m in t.members:
        system = m.system
        if system is None:
            named = by_oid.get(m.source_oid or "")
            if named and m.code in codes_of.get(named, ()):
                system = named
            else:
                system = next((u for u in candidates if m.code in codes_of[u]), named)
        if system is None:
            if not m.source_oid:
                report.unresolved.append(f"{t.name} code {m.code}: no code system")
                continue
            # Kept under its OID: a coding of a code system that is not loaded can still match it.
            system = f"urn:oid:{m.source_oid}"
            report.unresolved.append(f"{t.name} code {m.code}: code system {system} not loaded, kept by OID")
        out.append((system, m.code, m.display))
    return out


def member_changes(current: dict, rows: list[tuple[str, str, str]],
                   change: TableChange) -> tuple[list[tuple[str, str]], list[dict]]:
    """What a value-set version (its resolved ``rows``) does to the open members ``current`` ((system, code)
    -> row with a ``display``): the members it ends and the ``nos_member`` rows it opens (as
    ``concept_changes`` for code systems)."""
    seen: set[tuple[str, str]] = set()
    ended: list[tuple[str, str]] = []
    opened: list[dict] = []
    for system, code, display in rows:
        key = (system, code)
        if key in seen:
            continue
        seen.add(key)
        old = current.get(key)
        if old is not None:
            if old.display == display:
                continue
            ended.append(key)
            change.relabelled.append({"code": code, "from": old.display, "to": display})
        else:
            change.added.append(code)
        opened.append({"system": system, "code": code, "display": display})
    for key in current:
        if key not in seen:
            ended.append(key)
            change.removed.append(key[1])
    return ended, opened


def _apply_members(conn: Connection, vs_pk: int, version_pk: int, t: ParsedTable, change: TableChange,
                   report: LoadReport) -> None:
    cur = {(r.system, r.code): r for r in conn.execute(select(nos_member).where(
        nos_member.c.vs_pk == vs_pk, nos_member.c.until_version.is_(None)))}
    ended, opened = member_changes(cur, _resolve_systems(conn, t, report), change)
    _close(conn, nos_member, [cur[key].pk for key in ended], version_pk)
    if opened:
        conn.execute(nos_member.insert(), [{**row, "vs_pk": vs_pk, "since_version": version_pk,
                                            "until_version": None} for row in opened])
