"""The index rows a capacity PATCH supersedes, on a store where many places share their values (a bulk load's
``_lastUpdated``, the same capacity dates and codes): only the patched place's changed rows are closed and
replaced, and on SQLite the closing statement goes through the place's own rows, not through every place
sharing a value."""

from __future__ import annotations

import copy
import json
from collections import Counter

import orjson
from sqlalchemy import text

from ror.fhir.files import read_resources
from ror.profiles.access import ALL
from ror.store import bulk, repository
from ror.store.indexer import index_rows
from ror.store.schema import INDEX_TABLES, LIVE_TX
from tests.capacity.test_protocol import FHIR, capacity, op, path
from tests.conftest import FIXTURES
from tests.integration.test_store import location

TWINS = 30


def _load_twins(service) -> list[int]:
    """The hand-built dataset and ``TWINS`` copies of its palliative-care place (as benchmarks/capacity.py
    loads them: one bulk load, so they share every date); their pks."""
    base = list(read_resources(FIXTURES / "small" / "bundle.json"))
    place = next(r for r in base if r["id"] == "loc-usp-nord")
    for i in range(TWINS):
        twin = copy.deepcopy(place)
        twin["id"] = f"twin-{i}"
        twin["identifier"] = [{**twin["identifier"][0], "value": f"1440990034/TWIN-{i}"}]
        base.append(twin)
    bulk.upsert(service.engine, base, keep_last_updated=True)
    with service.engine.connect() as conn:
        current = repository.fetch_current(conn, [("Location", f"twin-{i}") for i in range(TWINS)])
    return [current[("Location", f"twin-{i}")].pk for i in range(TWINS)]


def _live(service, pks: list[int]) -> dict[int, dict]:
    with service.engine.connect() as conn:
        return {pk: {k: c for k, c in rows.items() if c} for pk, rows in repository.live_index_rows(conn, pks).items()}


def test_a_capacity_patch_supersedes_only_the_patched_places_changed_rows(service):
    pks = _load_twins(service)
    before = _live(service, pks)
    assert before[pks[0]]["date"] == before[pks[1]]["date"]  # the rows the closing statement looks up
    for nb in (7, 8):
        r = service.conditional_patch("Location", [("identifier", "1440990034/TWIN-3")],
                                      json.dumps(op("replace", path(), capacity(nb=nb))).encode(), FHIR, "http://x")
        assert r.status == 200
    after = _live(service, pks)
    assert {pk: rows for pk, rows in after.items() if pk != pks[3]} == \
        {pk: rows for pk, rows in before.items() if pk != pks[3]}
    expected = {kind: sorted(rows) for kind, rows in index_rows(orjson.loads(r.body)).items() if rows}
    assert {kind: sorted(c.elements()) for kind, c in after[pks[3]].items()} == expected
    changed = {kind for kind in INDEX_TABLES if after[pks[3]].get(kind) != before[pks[3]].get(kind)}
    assert changed == {"date", "number"}  # the record's update date, the place's _lastUpdated, the bed count
    with service.engine.connect() as conn:
        closed = conn.execute(text("SELECT count(*) FROM idx_date WHERE until_tx < :live"),
                              {"live": LIVE_TX}).scalar()
    assert closed == 4  # two rows, twice


def test_on_sqlite_closing_rows_goes_through_the_resources_own_rows(service):
    if service.engine.dialect.name != "sqlite":
        return  # PostgreSQL cannot use an index for IS NOT DISTINCT FROM: pk and until_tx choose it
    _load_twins(service)
    with service.engine.connect() as conn:
        for kind, table in INDEX_TABLES.items():
            sql = repository._close_sql(conn.dialect, kind).replace("{p}", "?")
            marks = sql.count("?")
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}",
                                                                         (None,) * marks))
            assert f"ix_{table.name}_pk (pk=? AND until_tx=?" in plan, (kind, plan)  # idx_ref's has more after


def test_the_live_rows_read_back_are_the_rows_indexed(service):
    """``live_index_rows`` (SQLite: each table's values from the third column; PostgreSQL: each in its own columns)
    gives back every table's rows as the indexer made them, for every resource of the dataset, several chunks."""
    _load_twins(service)
    with service.engine.connect() as conn:
        stored = {pk: bytes(body) for pk, body in conn.execute(text("SELECT pk, body FROM resource"))}
        live = repository.live_index_rows(conn, sorted(stored))
    assert len(stored) > repository._CHUNK // len(INDEX_TABLES)
    kinds = set()
    for pk, body in stored.items():
        expected = {kind: Counter(rows) for kind, rows in index_rows(orjson.loads(body)).items() if rows}
        assert {kind: c for kind, c in live[pk].items() if c} == expected, pk
        kinds |= set(expected)
    assert kinds == set(INDEX_TABLES)  # every table's layout is checked


def test_live_rows_come_packed_on_sqlite_and_reals_stay_exact(service, monkeypatch):
    """On SQLite the live rows of the tables without a REAL column nor long text come packed in one row (the sqlite3
    module releases the GIL for each row fetched); those with a REAL column come as rows, exact to the last digit
    (SQLite's JSON prints 15 digits: 0.1 + 0.2 would come back as 0.3)."""
    res = {**location(), "position": {"latitude": 0.1 + 0.2, "longitude": 1 / 3}}
    with service.engine.begin() as conn:
        written = repository.write_batch(conn, [repository.prepare(res)])[0]
    fetched: list[int] = []
    real = repository.dbapi_rows

    def counted(conn, sql, params=()):
        rows = real(conn, sql, params)
        fetched.append(len(rows))
        return rows

    monkeypatch.setattr(repository, "dbapi_rows", counted)
    with service.engine.connect() as conn:
        live = repository.live_index_rows(conn, [written.pk])[written.pk]
    expected = {kind: Counter(rows) for kind, rows in index_rows(orjson.loads(written.body)).items() if rows}
    assert {kind: c for kind, c in live.items() if c} == expected
    assert expected["geo"] == Counter([("Location.near", 0.1 + 0.2, 1 / 3, 0, ALL)])
    if service.engine.dialect.name == "sqlite":
        unpacked = sum(len(rows) for kind, rows in expected.items() if kind not in repository._PACKED_KINDS)
        assert len(expected["token"]) > 1 and fetched == [1 + unpacked]
