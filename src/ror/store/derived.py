"""Index rows an offer copies from the places it lists, kept at write time.

The IG's orientation search chains its criteria through the offer's places (``specialty=…&location.near-insee-code=
COG|15|km&location.capacity-status=02&location.nb-capacity=gt0``, and the capacity type, temporality and gender of
its "with capacity data" variant). Tested through the chain, each offer of the specialty cost three B-tree descents
and two correlated subqueries per criterion, 7–10 µs, for up to 51,000 national offers: 0.2–0.5 s (docs/search.md,
"Chained criteria at national scale"). So an offer holds a copy of its live places' rows of these parameters, under
``HealthcareService.location.<code>`` (``COPIES``), and the compiler tests those instead of the chain where the
result is the same (``search.compile``): one descent of the offer's own index per criterion.

The points are also copied once per specialty code of the offer (``HealthcareService.location@<code>.near``), so
that the lookup index reads the offers of one specialty in a circle: the orientation search's driving set.

A copy is one row per distinct value over the offer's places, ``grp`` 0 (it belongs to no record: same-record
criteria keep the chain), its ``vis`` the reference row's and the place row's masks together (a profile sees the copy
exactly when it sees both rows). Every write keeps the copies (``repository.write_batch`` applies ``differences``):
of the offers written, and of the offers listing a place written (``offers_listing``: a capacity PATCH refreshes the
1–3 offers of its place), by the difference between the rows their places give and the live copies, at the write's
transaction like every index row. A first load, whose lookup indexes are built at its end, copies every offer's rows
there instead (``copy_all``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from ror.store.engine import dbapi_rows, is_sqlite
from ror.store.schema import INDEX_TABLES, LIVE_TX

SOURCE, TARGET = "HealthcareService", "Location"
REFERENCE = f"{SOURCE}.location"  # the reference parameter followed
# The place's index rows copied, by parameter key, with their index table.
COPIED = {"Location.near": "geo", "Location.capacity-status": "token", "Location.nb-capacity": "number",
          "Location.capacity-type": "token", "Location.temporality-capacity": "token",
          "Location.gender-capacity-available": "token"}
_CHUNK = 400  # offers per statement
READS = INDEX_TABLES["reference"].name  # the index table read by its lookup index to find an offer's places


def copy_key(target_key: str) -> str | None:
    """The key of an offer's copies of its places' rows keyed ``target_key`` (the chain as a client writes it:
    ``HealthcareService.location.nb-capacity``); None if they are not copied."""
    return f"{REFERENCE}.{target_key.removeprefix(TARGET + '.')}" if target_key in COPIED else None


COPIES = frozenset(copy_key(k) for k in COPIED)
_KINDS = sorted(set(COPIED.values()))

# The points per specialty code: the offers of one code in a circle are read from the lookup index, where the
# specialty's offers, up to 51,000 nationally, were each tested against the circle.
SPECIALTY = f"{SOURCE}.specialty"
_KEYED = f"{REFERENCE}@"
_KEYED_CODE_MAX = 40  # longer codes (none in TRE-R211) are not keyed: the column holds 80 characters


def keyed_base(code: str) -> str | None:
    """The base of the key of an offer's copies of its places' points for its specialty ``code`` (the key is
    ``<base>.near``); None if there are none for such a code."""
    return f"{_KEYED}{code}" if 0 < len(code) <= _KEYED_CODE_MAX else None


def is_copy(param: str) -> bool:
    """Whether index rows keyed ``param`` are an offer's copies of its places' rows."""
    return param in COPIES or param.startswith(_KEYED)


def _quoted(keys: Iterable[str]) -> str:
    return ", ".join(f"'{k}'" for k in sorted(keys))


def _values(kind: str) -> list[str]:
    """The value columns of table ``kind``: between pk, param and grp, vis, since_tx, until_tx."""
    return [c.name for c in INDEX_TABLES[kind].columns][2:-4]


def _keyed(kind: str) -> bool:
    """Whether table ``kind`` also holds the points per specialty code: its statement of wanted copies has a second
    branch, which binds the offers' pks again."""
    return kind == "geo"


def _wanted_sql(kind: str, n: int | None) -> str:
    """The copies that ``n`` offers (pks bound), or all offers, should have in table ``kind``: (pk, param, values…,
    grp, vis), each once."""
    values = ", ".join(f"t.{c}" for c in _values(kind))
    offers = f"ir.pk IN ({', '.join(['{p}'] * n)}) AND " if n is not None else ""
    places = (f"FROM idx_ref ir JOIN resource r ON r.rtype = '{TARGET}' AND r.rid = ir.target_id "
              f"JOIN {INDEX_TABLES[kind].name} t ON t.pk = r.pk AND t.until_tx = {LIVE_TX} "
              f"AND t.param IN ({_quoted(k for k, v in COPIED.items() if v == kind)})")
    where = f"WHERE {offers}ir.param = '{REFERENCE}' AND ir.target_type = '{TARGET}' AND ir.until_tx = {LIVE_TX}"
    sql = (f"SELECT DISTINCT ir.pk, '{REFERENCE}.' || substr(t.param, {len(TARGET) + 2}), {values}, 0, "
           f"ir.vis & t.vis {places} {where}")
    if not _keyed(kind):
        return sql
    return (f"{sql} UNION ALL SELECT DISTINCT ir.pk, '{_KEYED}' || s.code || '.near', {values}, 0, "
            f"ir.vis & t.vis & s.vis {places} JOIN idx_token s ON s.pk = ir.pk AND s.until_tx = {LIVE_TX} "
            f"AND s.param = '{SPECIALTY}' AND length(s.code) <= {_KEYED_CODE_MAX} {where}")


def _live_sql(kind: str, n: int, sqlite: bool) -> str:
    """The live copies of ``n`` offers in table ``kind``, read through the offers' own rows (on SQLite ``+param``:
    not through the lookup index, which would walk every copy of the parameter)."""
    param = f"{'+' if sqlite else ''}param"
    return (f"SELECT pk, param, {', '.join(_values(kind))}, grp, vis FROM {INDEX_TABLES[kind].name} "
            f"WHERE pk IN ({', '.join(['{p}'] * n)}) AND until_tx = {LIVE_TX} AND {_copies_of(kind, param)}")


def _copies_of(kind: str, param: str) -> str:
    """SQL: the rows of table ``kind`` whose ``param`` is a copy's."""
    keys = _quoted(copy_key(k) for k, v in COPIED.items() if v == kind)
    keyed = f" OR substr({param}, 1, {len(_KEYED)}) = '{_KEYED}'" if _keyed(kind) else ""
    return f"({param} IN ({keys}){keyed})"


def drop_all(conn: Connection) -> None:
    """Delete every copy, live or not (a migration copies them again)."""
    for kind in _KINDS:
        dbapi_rows(conn, f"DELETE FROM {INDEX_TABLES[kind].name} WHERE {_copies_of(kind, 'param')}")


def offers_listing(conn: Connection, place_ids: Iterable[str]) -> set[int]:
    """The live offers whose ``location`` lists one of the places ``place_ids``."""
    ids = list(place_ids)
    out: set[int] = set()
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        out.update(pk for (pk,) in dbapi_rows(
            conn, f"SELECT pk FROM idx_ref WHERE param = '{REFERENCE}' AND target_type = '{TARGET}' "
                  f"AND target_id IN ({', '.join(['{p}'] * len(chunk))}) AND until_tx = {LIVE_TX}", chunk))
    return out


def differences(conn: Connection, offers: Iterable[int]) -> dict[str, tuple[list[tuple], list[tuple]]]:
    """Per index table, the live copies of ``offers`` (pks) that their live places no longer give, and the rows
    they give that are not copied yet: (pk, param, values…, grp, vis) each."""
    pks = sorted(offers)
    sqlite = is_sqlite(conn)
    out: dict[str, tuple[list[tuple], list[tuple]]] = {}
    for kind in _KINDS:
        gone: list[tuple] = []
        new: list[tuple] = []
        for i in range(0, len(pks), _CHUNK):
            chunk = pks[i:i + _CHUNK]
            wanted = {tuple(r) for r in dbapi_rows(conn, _wanted_sql(kind, len(chunk)),
                                                   chunk * (2 if _keyed(kind) else 1))}
            live = {tuple(r) for r in dbapi_rows(conn, _live_sql(kind, len(chunk), sqlite), chunk)}
            gone += live - wanted
            new += wanted - live
        out[kind] = gone, new
    return out


def copy_all(conn: Connection, tx: int) -> None:
    """Copy every offer's rows at transaction ``tx``, into a store that holds none (a first load, once its lookup
    indexes are built; the migration that brought the copies)."""
    for kind in _KINDS:
        table = INDEX_TABLES[kind]
        names = ", ".join(c.name for c in table.columns)
        dbapi_rows(conn, f"INSERT INTO {table.name} ({names}) SELECT w.*, {int(tx)}, {LIVE_TX} "
                         f"FROM ({_wanted_sql(kind, None)}) w")


def copy_again(conn: Connection) -> None:
    """Every copy dropped, then made again at the store's latest transaction (the migrations that bring copies)."""
    drop_all(conn)
    copy_all(conn, dbapi_rows(conn, "SELECT coalesce(max(tx), 0) FROM resource")[0][0])
