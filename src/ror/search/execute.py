"""Run a search plan: one page of matches (keyset paging over a pinned snapshot), the total, and
the included resources."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Connection, and_, func, literal, or_, select

from ror.errors import InvalidSearch, TooCostly
from ror.geo import haversine_km
from ror.profiles.access import redact
from ror.search.compile import Compiler, keyset_condition
from ror.search.plan import IncludeSpec, SearchPlan
from ror.search.visibility import Visibility
from ror.settings import Settings
from ror.store import repository
from ror.store.engine import current_tx, dbapi_rows, in_list, is_sqlite, list_param, one_snapshot
from ror.store.indexer import location_point
from ror.store.schema import LIVE_TX, resource

_MAX_INCLUDE_ROUNDS = 8
# Default-sorted pages of large result sets (SQLite) are found by scanning the type in pk order with
# every condition tested per resource, at most 20 resources per row wanted: from 20,000 candidates,
# matches are often dense enough in a national type (1 in 30 of 600,000) for that to succeed, and it
# reads a few thousand index rows where sorting the matches reads them all (a delta page at national
# scale: 1.5 s). Below, sorting costs a few milliseconds; a failed scan costs about as much.
_SCAN_FROM = 20_000
_SCAN_ROWS_PER_MATCH = 20

Found = tuple[str, str, int, bytes]  # an included resource: type, id, pk, stored body


@dataclass
class Entry:
    rtype: str
    rid: str
    body: bytes
    distance_km: float | None = None


@dataclass
class SearchResult:
    matches: list[Entry] = field(default_factory=list)
    included: list[Entry] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None

    def audit_summary(self) -> str:
        """Resource types and counts returned, e.g. ``HealthcareService=12,Location=3``."""
        counts: dict[str, int] = {}
        for e in (*self.matches, *self.included):
            counts[e.rtype] = counts.get(e.rtype, 0) + 1
        return ",".join(f"{t}={n}" for t, n in sorted(counts.items()))


def query_fingerprint(rtype: str, pairs: list[tuple[str, str]]) -> str:
    """Identifies a search independently of its cursor, so a cursor cannot be replayed on another."""
    norm = sorted((k, v) for k, v in pairs if k not in ("_cursor", "_format", "_pretty"))
    return hashlib.blake2b(orjson.dumps([rtype, norm]), digest_size=6).hexdigest()


def encode_cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def decode_cursor(token: str, fingerprint: str) -> dict:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not (isinstance(data, dict) and isinstance(data.get("s"), int) and isinstance(data.get("p"), int)
                and isinstance(data.get("k"), list) and data.get("f") == fingerprint):
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidSearch("_cursor is not a cursor issued for this search (follow the `next` link as given)",
                            expression="_cursor") from None
    return data


def run_search(conn: Connection, plan: SearchPlan, settings: Settings, fingerprint: str) -> SearchResult:
    cursor = decode_cursor(plan.cursor, fingerprint) if plan.cursor else None
    snapshot = cursor["s"] if cursor else current_tx(conn)
    if not is_sqlite(conn):
        # Plan each statement for its values: after five runs of a statement psycopg prepares it, and
        # PostgreSQL's generic plan (blind to which criterion is selective) scanned (≈10× slower).
        # Searches read the index tables by pk probes, from cache or SSD: at the default random page
        # cost (4, spinning disks) the planner preferred walking a parameter's whole lookup index.
        dbapi_rows(conn, "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                         "set_config('random_page_cost', '1.1', true)")  # true: for this transaction
    comp = Compiler(plan, settings, snapshot, conn.dialect.name, live=cursor is None and one_snapshot(conn))
    base, keys = comp.matches(conn)
    out = SearchResult()
    if plan.summary_count:
        out.total = _count(conn, comp, base)
        return out
    # Matches read in pk order from one lookup index (``streams_in_pk_order``) are counted apart and
    # their page is their first rows. A large result set (the driving set alone has _SCAN_FROM rows; on PostgreSQL a
    # date criterion's, as its planner estimates) has its page found by a scan of the type that stops at the page's
    # last row, then is counted apart. Otherwise, or when the scan fell short, the statement that sorts the matches
    # counts them too: it reads them all anyway. Later pages carry the first's total.
    counted = plan.total and cursor is None
    if plan.total and cursor:
        out.total = cursor.get("t")
    rows = None
    if not keys:
        streamed = comp.streams_in_pk_order(conn)
        if streamed or comp.driven_by_at_least(conn, _SCAN_FROM):
            rows = ([tuple(r) for r in conn.execute(comp.first_in_pk_order(conn, plan.count + 1))] if streamed
                    else _scanned_page(conn, comp, cursor["p"] if cursor else None, plan.count + 1))
            if rows is not None and counted:
                out.total = _count(conn, comp, base)
    if rows is None:
        rows = _sorted_page(conn, base, keys, cursor, plan.count + 1, counted=counted)
        if counted:
            out.total = rows[0][-1] if rows else 0
            rows = [r[:-1] for r in rows]
    more = len(rows) > plan.count
    rows = rows[:plan.count]
    if more:
        last = rows[-1]
        out.next_cursor = encode_cursor({"s": snapshot, "k": list(last[1:]), "p": last[0], "t": out.total,
                                         "f": fingerprint})
    pks = [r[0] for r in rows]
    bodies = _redacted_map(conn, comp.vis, repository.bodies(conn, pks, snapshot))
    ids = _ids(conn, pks)
    geo = comp.geo_query(plan.near) if plan.near is not None else None
    for pk in pks:
        rtype, rid = ids[pk]
        out.matches.append(Entry(rtype, rid, bodies[pk], _distance(rtype, bodies[pk], geo)))
    if plan.includes and pks:
        # Includes are read on current data: visibility is judged on current data too.
        now = Visibility(plan.profile, literal(current_tx(conn)))
        included = resolve_includes(conn, plan.includes, [(*ids[pk], pk, bodies[pk]) for pk in pks],
                                    settings.include_max, lambda found: visible_subset(conn, now, found))
        inc_bodies = redacted(conn, now, [(pk, body) for _, _, pk, body in included])
        out.included = [Entry(t, rid, body, _distance(t, body, geo))
                        for (t, rid, _, _), body in zip(included, inc_bodies, strict=True)]
    return out


def _count(conn: Connection, comp: Compiler, base) -> int:
    return conn.execute(comp.count(conn, base)).scalar_one()


def _sorted_page(conn: Connection, base, keys, cursor: dict | None, limit: int, counted: bool) -> list:
    """The page's rows (pk, sort keys…[, total]) read by sorting every match."""
    sub = base.subquery()
    sort_cols = [(sub.c[f"k{i}"], desc) for i, (_, desc) in enumerate(keys)]
    q = select(sub.c.pk, *[c for c, _ in sort_cols], *([func.count().over()] if counted else []))
    if cursor:
        if len(cursor["k"]) != len(sort_cols):
            raise InvalidSearch("_cursor does not match the sort of this search", expression="_cursor")
        q = q.where(keyset_condition(sort_cols, sub.c.pk, cursor["k"], cursor["p"]))
    q = q.order_by(*[c.desc() if desc else c.asc() for c, desc in sort_cols], sub.c.pk.asc()).limit(limit)
    return [tuple(r) for r in conn.execute(q)]


def _scanned_page(conn: Connection, comp: Compiler, after_pk: int | None, limit: int) -> list | None:
    """The page's rows (pk,) found by scanning the type in pk order, testing each resource; None when
    ``_SCAN_ROWS_PER_MATCH`` resources per wanted row did not yield the page (sparse matches: sorting
    them is then the cheaper way)."""
    budget = limit * _SCAN_ROWS_PER_MATCH
    rows = [tuple(r) for r in conn.execute(comp.scan(after_pk, budget).limit(limit))]
    return rows if len(rows) == limit else None


def visible_subset(conn: Connection, vis: Visibility, found: list[Found]) -> list[Found]:
    """``found`` without what ``vis`` hides (the rules checked on these resources only)."""
    hidden: set[int] = set()
    by_type: dict[str, list[int]] = {}
    for t, _, pk, _ in found:
        by_type.setdefault(t, []).append(pk)
    for t, pks in by_type.items():
        if not vis.restricts(t):
            continue
        for i in range(0, len(pks), 500):
            hidden.update(pk for (pk,) in conn.execute(select(resource.c.pk).where(
                resource.c.pk.in_(pks[i:i + 500]), vis.hidden_condition(t, resource.c.pk, probe=True))))
    return [item for item in found if item[2] not in hidden]


def redacted(conn: Connection, vis: Visibility, items: list[tuple[int, bytes]]) -> list[bytes]:
    """Bodies (with the pk of their resource) as the caller's profile may see them; profile 1 gets
    the stored bytes untouched, without parsing."""
    if vis.profile == 1 or not items:
        return [body for _, body in items]
    ms = _medico_social(conn, vis, sorted({pk for pk, _ in items})) if vis.profile == 3 else set()
    return [orjson.dumps(redact(orjson.loads(body), vis.profile, {"medico_social": pk in ms}))
            for pk, body in items]


def _medico_social(conn: Connection, vis: Visibility, pks: list[int]) -> set[int]:
    """Among ``pks``, the places and roles serving a medico-social offer: the context of their
    redaction, which only profile 3's rules depend on (``ror.profiles.access.redact``)."""
    out: set[int] = set()
    r = resource
    for i in range(0, len(pks), 500):
        out.update(pk for (pk,) in conn.execute(select(r.c.pk).where(r.c.pk.in_(pks[i:i + 500]), or_(
            and_(r.c.rtype == "Location", vis.medico_social_place(r.c.pk)),
            and_(r.c.rtype == "PractitionerRole", vis.medico_social_role(r.c.pk))))))
    return out


def _redacted_map(conn: Connection, vis: Visibility, bodies: dict[int, bytes]) -> dict[int, bytes]:
    return dict(zip(bodies, redacted(conn, vis, list(bodies.items())), strict=True))


def _ids(conn: Connection, pks: list[int]) -> dict[int, tuple[str, str]]:
    return {pk: (rtype, rid) for pk, rtype, rid in dbapi_rows(
        conn, f"SELECT pk, rtype, rid FROM resource WHERE {in_list(conn, 'pk', 'bigint')}", [list_param(conn, pks)])}


def _distance(rtype: str, body: bytes, geo) -> float | None:
    if geo is None or rtype != "Location":
        return None
    point = location_point(orjson.loads(body))
    return round(haversine_km(geo.lat, geo.lon, *point), 3) if point else None


def resolve_includes(conn: Connection, specs: list[IncludeSpec], matches: list[Found], limit: int,
                     keep=lambda found: found) -> list[Found]:
    """Resources reached by _include/_revinclude from the page's matches (current versions, with
    their stored bodies: one statement per include and round); iterate specs are applied again to
    what they bring in, until nothing new appears. ``keep`` drops what the caller may not see,
    before it can serve as a step to further includes."""
    seen = {(t, rid) for t, rid, _, _ in matches}
    frontier = matches
    found: list[Found] = []
    for round_no in range(_MAX_INCLUDE_ROUNDS):
        new: list[Found] = []
        for spec in specs:
            if round_no > 0 and not spec.iterate:
                continue
            for item in (_reverse(conn, spec, frontier) if spec.reverse else _forward(conn, spec, frontier)):
                if (item[0], item[1]) not in seen:
                    seen.add((item[0], item[1]))
                    new.append(item)
        new = keep(new)
        if len(found) + len(new) > limit:
            raise TooCostly(f"the includes bring more than {limit} resources for this page; lower _count",
                            expression="_include")
        found += new
        frontier = new
        if not new:
            break
    return found


def _forward(conn: Connection, spec: IncludeSpec, frontier) -> list[Found]:
    src = [pk for t, _, pk, _ in frontier if t == spec.source]
    if not src:
        return []
    target = " AND ir.target_type = {p}" if spec.target else ""
    param = "+ir.param" if is_sqlite(conn) else "ir.param"  # SQLite: by pk, not every row of the parameter
    return _resources(conn, f"""
        SELECT t.pk FROM idx_ref ir JOIN resource t ON t.rtype = ir.target_type AND t.rid = ir.target_id
        WHERE {in_list(conn, "ir.pk", "bigint")} AND {param} = {{p}} AND ir.until_tx = {LIVE_TX}{target}""",
                      [list_param(conn, src), spec.param.key, *([spec.target] if spec.target else [])])


def _reverse(conn: Connection, spec: IncludeSpec, frontier) -> list[Found]:
    by_type: dict[str, list[str]] = {}
    for t, rid, _, _ in frontier:
        if not spec.param.targets or t in spec.param.targets:
            by_type.setdefault(t, []).append(rid)
    out: list[Found] = []
    for t, rids in by_type.items():
        out += _resources(conn, f"""
            SELECT ir.pk FROM idx_ref ir WHERE ir.param = {{p}} AND ir.until_tx = {LIVE_TX}
              AND ir.target_type = {{p}} AND {in_list(conn, "ir.target_id", "text")}""",
                          [spec.param.key, t, list_param(conn, rids)])
    return out


def _resources(conn: Connection, pks_sql: str, params: list) -> list[Found]:
    """The current resources whose pks ``pks_sql`` selects, with their bodies, in pk order."""
    sql = f"SELECT r.rtype, r.rid, r.pk, r.body FROM resource r WHERE r.pk IN ({pks_sql})"
    return sorted(map(tuple, dbapi_rows(conn, sql, params, binary=True)), key=lambda row: row[2])
