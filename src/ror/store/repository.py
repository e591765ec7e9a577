"""Reading and writing resources. Every write — REST create/update/patch, transaction entries, bulk
loads and feeds — goes through ``write_batch``: one transaction number per batch, prior versions
kept, index rows superseded rather than deleted, and unchanged content skipped (no new version,
``meta.lastUpdated`` untouched), so a monthly reload of identical data changes nothing.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate

import orjson
from sqlalchemy import Connection, Dialect, Engine, Table, and_, delete, func, select

from ror.errors import NotFound
from ror.fhirdates import STAMP_MIN, now_stamp, parse_range, stamp_to_instant
from ror.store import derived
from ror.store.engine import (
    dbapi_many,
    dbapi_row_now,
    dbapi_row_now_async,
    dbapi_rows,
    in_list,
    is_sqlite,
    list_param,
    next_tx,
)
from ror.store.indexer import index_rows, restamp
from ror.store.schema import INDEX_TABLES, LIVE_TX, metadata, resource, resource_version

REGION_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
_CHUNK = 500  # bound parameters per IN list


@dataclass
class Ready:
    """What a write does with a resource but choose its version and stamp, done ahead (``prepare_ahead``,
    by bulk workers), so that the writer needs neither the resource nor its serialisation: the body is
    ``meta`` as submitted, with the write's versionId and lastUpdated, then ``tail``."""

    meta: dict | None
    tail: bytes  # the body after its meta, serialised: the other members and the closing brace
    submitted: str | None  # the submitted meta.lastUpdated as a stamp, when the write keeps it


@dataclass
class Prepared:
    rtype: str
    rid: str
    resource: dict | None  # None when ``ready``
    content_hash: bytes
    region: str | None
    # Index rows computed before the write (out of the write lock), for another stamp than the write's maybe.
    rows: dict[str, list[tuple]] | None = None
    # The live index rows of the version this one replaces, when read ahead (``live_index_rows``).
    live: dict[str, Counter] | None = None
    rows_stamp: str | None = None  # the stamp ``rows`` were indexed for, when known
    ready: Ready | None = None
    stamp: str | None = None  # of the write, once it is decided (``finalise``)

    def submitted_stamp(self) -> str | None:
        """The submitted meta.lastUpdated as a stamp, if it is a valid instant."""
        if self.ready is not None:
            return self.ready.submitted
        value = (self.resource.get("meta") or {}).get("lastUpdated")
        rng = parse_range(value, "UTC") if isinstance(value, str) and "T" in value else None
        return rng[0] if rng else None

    def finalise(self, version: int, stamp: str) -> bytes:
        """The body as written: the resource with its server-managed meta set (on ``resource``, which is
        what gets indexed, unless ``ready``), serialised."""
        self.stamp = stamp
        if self.ready is None:
            return _finalise(self, version, stamp)
        meta = _meta(self.ready.meta, version, stamp)
        return orjson.dumps({"resourceType": self.rtype, "id": self.rid, "meta": meta})[:-1] + self.ready.tail

    def index(self) -> dict[str, list[tuple]]:
        """The index rows of the resource as it is written (``finalise``)."""
        if self.rows is not None and self.rows_stamp == self.stamp:
            return self.rows
        return (self.rows is not None and restamp(self.rows, self.rtype, self.stamp)) or index_rows(self.resource)


@dataclass
class Current:
    pk: int
    version: int
    content_hash: bytes
    last_updated: str


@dataclass
class Written:
    rtype: str
    rid: str
    version: int
    last_updated: str  # stamp
    body: bytes
    outcome: str  # created | updated | unchanged
    pk: int


def content_hash(res: dict) -> bytes:
    """128-bit hash of the content, ignoring the server-managed meta.versionId/lastUpdated."""
    meta = res.get("meta")
    if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
        meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        res = {**res, "meta": meta} if meta else {k: v for k, v in res.items() if k != "meta"}
    return hashlib.blake2b(orjson.dumps(res, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def region_of(res: dict) -> str | None:
    for tag in (res.get("meta") or {}).get("tag", ()):
        if isinstance(tag, dict) and tag.get("system") == REGION_SYSTEM:
            return tag.get("code")
    return None


def prepare(res: dict) -> Prepared:
    return Prepared(res["resourceType"], res["id"], res, content_hash(res), region_of(res))


def prepare_ahead(res: dict, keep_last_updated: bool) -> Prepared:
    """``prepare``, with the body and index rows the write will need (``Ready``), computed as a creation
    does: ``finalise`` then only puts the version and stamp into the body, and ``restamp`` the stamp into the
    rows if it is not the submitted one. Pure work, done out of the write lock (bulk workers; a feed batch between
    its two transactions): the resource itself is not kept."""
    p = prepare(res)
    submitted = p.submitted_stamp() if keep_last_updated else None
    body = _finalise(p, 1, submitted or STAMP_MIN)
    head = orjson.dumps({"resourceType": p.rtype, "id": p.rid, "meta": p.resource["meta"]})
    p.rows, p.rows_stamp = index_rows(p.resource), submitted or STAMP_MIN
    p.ready, p.resource = Ready(res.get("meta"), body[len(head) - 1:], submitted), None
    return p


def _chunks(seq: Sequence, n: int = _CHUNK):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def fetch_current(conn: Connection, keys: Iterable[tuple[str, str]], lock: bool = False
                  ) -> dict[tuple[str, str], Current]:
    by_type: dict[str, list[str]] = defaultdict(list)
    for rtype, rid in keys:
        by_type[rtype].append(rid)
    lock_clause = " FOR UPDATE" if lock and not is_sqlite(conn) else ""
    out: dict[tuple[str, str], Current] = {}
    for rtype, rids in by_type.items():
        for chunk in _chunks(rids):
            sql = ("SELECT rid, pk, version, content_hash, last_updated FROM resource "
                   f"WHERE rtype = {{p}} AND rid IN ({', '.join(['{p}'] * len(chunk))}){lock_clause}")
            for rid, pk, version, h, lu in dbapi_rows(conn, sql, (rtype, *chunk)):
                out[(rtype, rid)] = Current(pk, version, bytes(h), lu)
    return out


def _meta(submitted: dict | None, version: int, stamp: str) -> dict:
    meta = dict(submitted or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = stamp_to_instant(stamp)
    return meta


def _finalise(p: Prepared, version: int, stamp: str) -> bytes:
    """Set the server-managed meta on ``p.resource`` and serialise it, the members in the order served."""
    body = {"resourceType": p.rtype, "id": p.rid, "meta": _meta(p.resource.get("meta"), version, stamp)}
    body.update((k, v) for k, v in p.resource.items() if k not in body)
    p.resource = body
    return orjson.dumps(body)


def write_batch(conn: Connection, items: Sequence[Prepared], current: dict | None = None,
                tx: int | None = None, keep_last_updated: bool = False, copies: bool = True) -> list[Written]:
    """Write ``items`` in the caller's transaction. ``current`` may be passed when already fetched
    (and locked) by the caller. Items with an unchanged content hash are not written.

    ``meta.lastUpdated`` is the time of this write — what consumers' delta syncs compare with —
    unless ``keep_last_updated`` (migration of an existing directory's export, test fixtures) keeps
    the submitted one where it is a valid instant.

    ``copies``: the offers written, and those listing a place written, have their copies of their places' rows
    brought up to date (``derived``); a first load makes them all at its end instead."""
    seen: set[tuple[str, str]] = set()
    for i, p in enumerate(items):
        if (p.rtype, p.rid) in seen:  # the same resource again: it is a new version of the first
            return (write_batch(conn, items[:i], current, tx, keep_last_updated, copies)
                    + write_batch(conn, items[i:], None, None, keep_last_updated, copies))
        seen.add((p.rtype, p.rid))
    if current is None:
        current = fetch_current(conn, [(p.rtype, p.rid) for p in items])
    now = now_stamp()
    results: list[Written] = []
    creates: list[tuple[Prepared, bytes, str, Written]] = []
    updates: list[tuple[Prepared, Current, bytes, str]] = []
    for p in items:
        cur = current.get((p.rtype, p.rid))
        if cur is not None and cur.content_hash == p.content_hash:
            results.append(Written(p.rtype, p.rid, cur.version, cur.last_updated, b"", "unchanged", cur.pk))
            continue
        version = 1 if cur is None else cur.version + 1
        stamp = (keep_last_updated and p.submitted_stamp()) or now
        body = p.finalise(version, stamp)
        if cur is None:
            results.append(Written(p.rtype, p.rid, version, stamp, body, "created", 0))  # its pk: below
            creates.append((p, body, stamp, results[-1]))
        else:
            updates.append((p, cur, body, stamp))
            results.append(Written(p.rtype, p.rid, version, stamp, body, "updated", cur.pk))
    if not creates and not updates:
        return results
    if tx is None:
        tx = next_tx(conn)
    pks: list[tuple[int, Prepared]] = []
    if updates:
        keep = "INSERT INTO resource_version (pk, version, tx, last_updated, body) " \
               "SELECT pk, version, tx, last_updated, body FROM resource WHERE pk = {p}"
        dbapi_many(conn, keep, [(cur.pk,) for _, cur, _, _ in updates])
        _supersede_index_rows(conn, [(cur.pk, p) for p, cur, _, _ in updates], tx)
        dbapi_many(conn, "UPDATE resource SET version = {p}, tx = {p}, last_updated = {p}, region = {p}, "
                         "content_hash = {p}, body = {p} WHERE pk = {p}",
                   [(cur.version + 1, tx, stamp, p.region, p.content_hash, body, cur.pk)
                    for p, cur, body, stamp in updates])
    if creates:
        new = _new_pks(conn, len(creates))
        insert_rows(conn, resource, [(pk, p.rtype, p.rid, 1, tx, stamp, p.region, p.content_hash, body)
                                     for pk, (p, body, stamp, _) in zip(new, creates, strict=True)])
        for pk, (p, _, _, w) in zip(new, creates, strict=True):
            w.pk = pk
            pks.append((pk, p))
    _insert_index_rows(conn, pks, tx)
    if copies:
        written = [w for w in results if w.outcome != "unchanged"]
        offers = {w.pk for w in written if w.rtype == derived.SOURCE}
        offers |= derived.offers_listing(conn, [w.rid for w in written if w.rtype == derived.TARGET])
        if offers:
            _refresh_copies(conn, offers, tx)
    return results


def _new_pks(conn: Connection, n: int) -> list[int]:
    """Keys for ``n`` new resources, so that their rows go in with plain inserts (``insert_rows``) rather
    than one ``INSERT … RETURNING`` a row through SQLAlchemy (profiled: a fifth of a bulk load's writer). On
    SQLite what it would choose itself, the write lock being held (``write_transaction``); on PostgreSQL, from
    the column's sequence."""
    if is_sqlite(conn):
        top = dbapi_rows(conn, "SELECT coalesce(max(pk), 0) FROM resource")[0][0]
        return list(range(top + 1, top + n + 1))
    return sorted(pk for (pk,) in dbapi_rows(
        conn, "SELECT nextval(pg_get_serial_sequence('resource', 'pk')) FROM generate_series(1, {p})", (n,)))


# The columns an indexer row fills, per index table, in its order: between ``pk`` and ``since_tx``/``until_tx``.
_VALUE_COLUMNS = {kind: [c.name for c in table.columns][1:-2] for kind, table in INDEX_TABLES.items()}
# Each index table's index of a resource's own rows, led by pk then until_tx (``_close_sql``; schema._index_table names
# it).
_PK_INDEXES = {kind: f"ix_{table.name}_pk" for kind, table in INDEX_TABLES.items()}
# Where each table's values are in a row of ``_live_rows_sql`` (after the branch number and the pk):
# (kind, first, end), by branch number. On PostgreSQL each table has its own columns of a row as wide as all
# tables' together; on SQLite every table's values start at the third column.
_ENDS = list(accumulate((len(cols) for cols in _VALUE_COLUMNS.values()), initial=2))
_WIDE_SPANS = [(kind, first, end) for kind, first, end in zip(_VALUE_COLUMNS, _ENDS, _ENDS[1:], strict=False)]
_NARROW_SPANS = [(kind, 2, 2 + len(cols)) for kind, cols in _VALUE_COLUMNS.items()]
_NARROW_WIDTH = max(len(cols) for cols in _VALUE_COLUMNS.values())


# The index tables whose rows come packed on SQLite (``_live_rows_sql``): not those with a REAL column, which
# SQLite's JSON functions print to 15 digits only (0.1 + 0.2 comes back as 0.3), nor the text table (one row of up
# to 4,000 characters per resource, which JSON would escape for nothing).
_PACKED_KINDS = frozenset(kind for kind, table in INDEX_TABLES.items() if kind != "text"
                          and not any(c.type.python_type is float for c in table.columns[1:-2]))
_PACKED = -1  # branch number of the row holding the packed rows


@functools.lru_cache(maxsize=64)
def _live_rows_sql(dialect: Dialect, n: int) -> str:
    """One statement for the live rows of ``n`` resources in every index table (a PATCH reads them on each
    write: one statement per table cost 8 round trips), its values where ``_WIDE_SPANS``/``_NARROW_SPANS`` say.
    On PostgreSQL, which resolves the types of a UNION pairwise, a branch per table fills its own columns and NULL
    in the others', cast to their types (without collation, which CAST does not take): two NULLs would make a text
    column. On SQLite, whose columns take any type, every branch puts its values first and pads to the widest
    table: fetching every table's columns (39) took half the statement's time (0.19 -> 0.08 ms for a place).
    There, the rows of most tables (``_PACKED_KINDS``) come packed in one row (``_PACKED``, its third column a JSON
    array of their rows, each laid out as the others): the sqlite3 module releases the GIL for every row
    fetched, and with other threads waiting for it each row cost two thread switches (~36 rows for a place)."""
    sqlite = dialect.name == "sqlite"
    nulls = [] if sqlite else [f"CAST(NULL AS {re.sub(r' COLLATE .*', '', c.type.compile(dialect=dialect))})"
                               for table in INDEX_TABLES.values() for c in table.columns[1:-2]]
    marks = ", ".join(["{p}"] * n)
    branches, packed = [], []
    for i, (table, (kind, first, end)) in enumerate(zip(INDEX_TABLES.values(), _WIDE_SPANS, strict=True)):
        own = _VALUE_COLUMNS[kind]
        if sqlite:
            picked = [*own, *["NULL"] * (_NARROW_WIDTH - len(own))]
        else:
            picked = [*nulls[:first - 2], *own, *nulls[end - 2:]]
        values = ", ".join(f"{c} AS v{k}" for k, c in enumerate(picked))
        (packed if sqlite and kind in _PACKED_KINDS else branches).append(
            f"SELECT {i} AS b, pk, {values} FROM {table.name} WHERE until_tx = {LIVE_TX} AND pk IN ({marks})")
    if packed:
        columns = ", ".join(f"v{k}" for k in range(_NARROW_WIDTH))
        branches.append(f"SELECT {_PACKED}, NULL, json_group_array(json_array(b, pk, {columns})), "
                        f"{', '.join(['NULL'] * (_NARROW_WIDTH - 1))} FROM ({' UNION ALL '.join(packed)})")
    return " UNION ALL ".join(branches)


def live_index_rows(conn: Connection, pks: list[int]) -> dict[int, dict[str, Counter]]:
    """The live index rows of resources that their bodies give (not the copies of ``derived``), per table, as value
    tuples (without pk and transactions)."""
    live: dict[int, dict[str, Counter]] = {pk: defaultdict(Counter) for pk in pks}
    spans = _NARROW_SPANS if is_sqlite(conn) else _WIDE_SPANS
    for chunk in _chunks(pks, _CHUNK // len(INDEX_TABLES)):
        for got in dbapi_rows(conn, _live_rows_sql(conn.dialect, len(chunk)), tuple(chunk) * len(INDEX_TABLES)):
            for row in orjson.loads(got[2]) if got[0] == _PACKED else (got,):
                kind, first, end = spans[row[0]]
                if not derived.is_copy(row[first]):  # an offer's copies of its places' rows are not its own
                    live[row[1]][kind][tuple(row[first:end])] += 1
    return live


def _supersede_index_rows(conn: Connection, items: list[tuple[int, Prepared]], tx: int) -> None:
    """Supersede only the index rows of updated resources that differ from their new body's: a
    capacity PATCH changes 2 of a place's ~40 rows, and every row rewritten costs pages at commit.
    The live rows are read back (or were, ahead of the write lock: ``Prepared.live``) rather than
    recomputed from the previous body, so an index written by an older indexer version converges too."""
    new = {pk: p.index() for pk, p in items}
    live = {pk: p.live for pk, p in items if p.live is not None}
    live |= live_index_rows(conn, [pk for pk in new if pk not in live])
    for kind, table in INDEX_TABLES.items():
        close: list[tuple] = []
        inserted: list[tuple] = []
        for pk, rows in new.items():
            before, after = live[pk].get(kind) or Counter(), Counter(rows.get(kind, ()))
            if before == after:
                continue
            # A value whose count changed: close all its copies, insert as many as the new body has.
            for row in before.keys() | after.keys():
                if before[row] != after[row]:
                    if before[row]:
                        close.append((tx, pk, *row))
                    inserted += [(pk, *row, tx, LIVE_TX)] * after[row]
        _close_rows(conn, kind, close)
        insert_rows(conn, table, inserted)


def _close_rows(conn: Connection, kind: str, rows: list[tuple]) -> None:
    """Close live index rows of table ``kind``: (tx, pk, param, values…, grp, vis) each."""
    if rows:
        dbapi_many(conn, _close_sql(conn.dialect, kind), rows)


def _refresh_copies(conn: Connection, offers: set[int], tx: int) -> None:
    """The copies ``offers`` hold of their places' rows (``derived``) brought up to date at ``tx``."""
    for kind, (gone, new) in derived.differences(conn, offers).items():
        _close_rows(conn, kind, [(tx, *row) for row in gone])
        insert_rows(conn, INDEX_TABLES[kind], [(*row, tx, LIVE_TX) for row in new])


@functools.lru_cache(maxsize=32)
def _close_sql(dialect: Dialect, kind: str) -> str:
    """The statement closing live index rows of ``kind``, by resource and values. On SQLite it goes through the
    resource's own rows (``pk``, ``until_tx``): without statistics the planner prefers a lookup index that
    matches more of the values, and walked every resource sharing them (a bulk load's ``_lastUpdated``, a
    status code): 2 ms of a capacity PATCH on 2,000 places, growing with the store. On PostgreSQL
    ``IS NOT DISTINCT FROM`` cannot use an index: ``pk`` and ``until_tx`` choose it."""
    table = INDEX_TABLES[kind]
    sqlite = dialect.name == "sqlite"
    pinned = f" INDEXED BY {_PK_INDEXES[kind]}" if sqlite else ""
    same = "IS" if sqlite else "IS NOT DISTINCT FROM"
    where = " AND ".join(f"{c} {same} {{p}}" for c in _VALUE_COLUMNS[kind])
    return f"UPDATE {table.name}{pinned} SET until_tx = {{p}} WHERE pk = {{p}} AND until_tx = {LIVE_TX} AND {where}"


def _insert_index_rows(conn: Connection, pks: list[tuple[int, Prepared]], tx: int) -> None:
    per_table: dict[str, list[tuple]] = defaultdict(list)
    for pk, p in pks:
        for kind, rows in p.index().items():
            per_table[kind].extend((pk, *row, tx, LIVE_TX) for row in rows)
    for kind, rows in per_table.items():
        if rows:
            insert_rows(conn, INDEX_TABLES[kind], rows)


def insert_rows(conn: Connection, table: Table, rows: list[tuple]) -> None:
    """Insert ``rows``, tuples of all of ``table``'s columns in order, on the DBAPI connection: the per-row
    cost of SQLAlchemy's parameter handling dominated bulk loads (profiled: 1.8 s of 13 s for 5,100
    resources). On PostgreSQL with ``COPY``: psycopg's ``executemany`` cost ≈ 18 µs of client CPU a row,
    ``COPY`` ≈ 1.3 µs, and no more time for a couple of rows (measured)."""
    if not rows:
        return
    names = ", ".join(c.name for c in table.columns)
    if is_sqlite(conn):
        dbapi_many(conn, f"INSERT INTO {table.name} ({names}) VALUES ({', '.join(['?'] * len(table.columns))})", rows)
        return
    cur = conn.connection.cursor()
    try:
        with cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    finally:
        cur.close()


@dataclass
class Stored:
    pk: int
    version: int
    last_updated: str
    body: bytes


_READ_SQL = "SELECT pk, version, last_updated, body FROM resource WHERE rtype = {p} AND rid = {p}"


def read(conn: Connection, rtype: str, rid: str) -> Stored:
    # The hot path of the API: a driver-level statement skips SQLAlchemy's statement building and
    # cache-key computation, which cost more than the primary-key lookup itself (profiled).
    rows = dbapi_rows(conn, _READ_SQL, (rtype, rid))
    if not rows:
        raise NotFound(f"{rtype}/{rid} is not known", expression=rtype)
    return Stored(*rows[0])


def read_many(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
    """The current versions of ``keys`` (type, id) that exist, with one statement per type and chunk."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for rtype, rid in keys:
        by_type[rtype].append(rid)
    out: dict[tuple[str, str], Stored] = {}
    for rtype, rids in by_type.items():
        for chunk in _chunks(rids):
            sql = ("SELECT rid, pk, version, last_updated, body FROM resource "
                   f"WHERE rtype = {{p}} AND rid IN ({', '.join(['{p}'] * len(chunk))})")
            for rid, *row in dbapi_rows(conn, sql, (rtype, *chunk)):
                out[(rtype, rid)] = Stored(*row)
    return out


def read_now(engine: Engine, rtype: str, rid: str) -> Stored:
    """``read`` outside a transaction (the API's read by id, see ``dbapi_row_now``)."""
    return _stored(dbapi_row_now(engine, _READ_SQL, (rtype, rid)), rtype, rid)


async def read_now_async(engine: Engine, rtype: str, rid: str) -> Stored:
    """``read_now`` awaited on the event loop (PostgreSQL, ``dbapi_row_now_async``)."""
    return _stored(await dbapi_row_now_async(engine, _READ_SQL, (rtype, rid)), rtype, rid)


def _stored(row: tuple | None, rtype: str, rid: str) -> Stored:
    if row is None:
        raise NotFound(f"{rtype}/{rid} is not known", expression=rtype)
    return Stored(*row)


def read_version(conn: Connection, rtype: str, rid: str, version: int) -> Stored:
    cur = read(conn, rtype, rid)
    if cur.version == version:
        return cur
    row = conn.execute(select(resource_version.c.last_updated, resource_version.c.body)
                       .where(resource_version.c.pk == cur.pk, resource_version.c.version == version)).first()
    if row is None:
        raise NotFound(f"{rtype}/{rid} has no version {version}", expression=rtype)
    return Stored(cur.pk, version, row[0], row[1])


def history(conn: Connection, rtype: str, rid: str) -> list[Stored]:
    """Every version, newest first."""
    cur = read(conn, rtype, rid)
    rows = conn.execute(select(resource_version.c.version, resource_version.c.last_updated,
                               resource_version.c.body)
                        .where(resource_version.c.pk == cur.pk).order_by(resource_version.c.version.desc()))
    return [cur] + [Stored(cur.pk, v, lu, b) for v, lu, b in rows]


def bodies(conn: Connection, pks: Sequence[int], snapshot: int | None = None) -> dict[int, bytes]:
    """Bodies by pk; with ``snapshot``, the version that was current at that transaction."""
    out: dict[int, bytes] = {}
    newer: list[int] = []
    for pk, tx, body in dbapi_rows(conn, f"SELECT pk, tx, body FROM resource WHERE {in_list(conn, 'pk', 'bigint')}",
                                   [list_param(conn, list(pks))], binary=True):
        if snapshot is not None and tx > snapshot:
            newer.append(pk)
        else:
            out[pk] = body
    for chunk in _chunks(newer):
        latest = (select(resource_version.c.pk, func.max(resource_version.c.version).label("v"))
                  .where(resource_version.c.pk.in_(chunk), resource_version.c.tx <= snapshot)
                  .group_by(resource_version.c.pk).subquery())
        for pk, body in conn.execute(select(resource_version.c.pk, resource_version.c.body).join(
                latest, and_(latest.c.pk == resource_version.c.pk, latest.c.v == resource_version.c.version))):
            out[pk] = body
    return out


def prune_index_history(conn: Connection, ttl_s: int) -> int:
    """Drop index rows superseded before the oldest snapshot a live `next` link may still pin.

    The first transaction after the cut-off is the smallest ``tx`` among the versions (current or
    prior) written after it. Returns the number of rows removed."""
    cut = datetime.fromtimestamp(datetime.now(UTC).timestamp() - ttl_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    firsts = [conn.execute(select(func.min(t.c.tx)).where(t.c.last_updated >= cut)).scalar_one_or_none()
              for t in (resource, resource_version)]
    firsts = [f for f in firsts if f is not None]
    oldest = min(firsts) if firsts else (conn.execute(select(func.max(resource.c.tx))).scalar_one_or_none() or 0) + 1
    removed = 0
    for table in INDEX_TABLES.values():
        removed += conn.execute(delete(table).where(table.c.until_tx <= oldest - 1)).rowcount or 0
    return removed


def create_schema(conn: Connection) -> None:
    metadata.create_all(conn)
