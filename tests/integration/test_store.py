"""The write path: versions, content-hash skipping, history, bulk reloads."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from ror.errors import NotFound, PreconditionFailed
from ror.store import bulk, repository
from ror.store.schema import LIVE_TX, idx_token, resource_version

EXAMPLES = Path(__file__).parents[2] / "src" / "ror" / "data" / "examples"


def location() -> dict:
    return json.loads((EXAMPLES / "Location-ror-location-exemple.json").read_text())


def test_create_sets_meta_and_reads_back(service):
    r = service.create("Location", orjson.dumps(location()), "http://x/fhir")
    assert r.status == 201
    body = orjson.loads(r.body)
    assert body["meta"]["versionId"] == "1"
    assert body["id"] != "ror-location-exemple"  # create assigns the id
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"] == f"http://x/fhir/Location/{body['id']}/_history/1"
    back = orjson.loads(service.read("Location", body["id"]).body)
    assert back == body


def test_update_versions_and_history(service):
    loc = location()
    service.update("Location", loc["id"], orjson.dumps(loc), "http://x/fhir")
    loc["name"] = "Hébergement B"
    r = service.update("Location", loc["id"], orjson.dumps(loc), "http://x/fhir", if_match='W/"1"')
    assert r.status == 200 and r.headers["ETag"] == 'W/"2"'
    assert orjson.loads(service.read("Location", loc["id"], 1).body).get("name") is None
    assert orjson.loads(service.read("Location", loc["id"], 2).body)["name"] == "Hébergement B"
    hist = orjson.loads(service.history("Location", loc["id"], "http://x/fhir").body)
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]
    with pytest.raises(PreconditionFailed):
        service.update("Location", loc["id"], orjson.dumps(loc), "http://x/fhir", if_match='W/"1"')
    with pytest.raises(NotFound):
        service.read("Location", loc["id"], 7)


def test_unchanged_update_keeps_version_and_last_updated(service):
    loc = location()
    first = orjson.loads(service.update("Location", loc["id"], orjson.dumps(loc), "http://x/fhir").body)
    again = copy.deepcopy(loc)
    again["meta"]["lastUpdated"] = "2030-01-01T00:00:00Z"  # server-managed: does not count as a change
    second = service.update("Location", loc["id"], orjson.dumps(again), "http://x/fhir")
    assert second.status == 200
    assert orjson.loads(second.body)["meta"] == first["meta"]


def test_bulk_reload_of_identical_data_writes_nothing(service):
    resources = []
    for i in range(120):
        r = location()
        r["id"] = f"loc-{i}"
        r["name"] = f"Lieu {i}"
        resources.append(r)
    assert bulk.upsert(service.engine, resources, batch_size=50) == {"created": 120}
    with service.engine.connect() as c:
        before = c.execute(select(func.count()).select_from(idx_token)).scalar_one()
        stamps = dict(c.exec_driver_sql("SELECT rid, last_updated FROM resource").all())
    assert bulk.upsert(service.engine, resources, batch_size=50) == {"unchanged": 120}
    resources[7]["name"] = "Lieu sept"
    assert bulk.upsert(service.engine, resources, batch_size=50) == {"unchanged": 119, "updated": 1}
    with service.engine.connect() as c:
        after = dict(c.exec_driver_sql("SELECT rid, last_updated FROM resource").all())
        versions = c.execute(select(func.count()).select_from(resource_version)).scalar_one()
        live = c.execute(select(func.count()).select_from(idx_token).where(idx_token.c.until_tx == LIVE_TX)
                         ).scalar_one()
    assert {k for k in after if after[k] != stamps[k]} == {"loc-7"}
    assert versions == 1
    assert live == before  # the superseded rows of loc-7 were replaced, not duplicated


def test_same_id_twice_in_one_batch_is_two_versions(service):
    a, b = location(), location()
    b["name"] = "second"
    out = bulk.upsert(service.engine, [a, b])
    assert out == {"created": 1, "updated": 1}
    assert orjson.loads(service.read("Location", a["id"]).body)["name"] == "second"


def test_content_hash_ignores_server_meta_only():
    a = location()
    b = copy.deepcopy(a)
    b["meta"]["versionId"] = "9"
    b["meta"]["lastUpdated"] = "2000-01-01T00:00:00Z"
    assert repository.content_hash(a) == repository.content_hash(b)
    b["meta"]["tag"] = [{"system": repository.REGION_SYSTEM, "code": "11"}]
    assert repository.content_hash(a) != repository.content_hash(b)
    assert repository.region_of(b) == "11"


def test_read_by_id_answers_the_latest_commit_from_any_thread_and_holds_no_snapshot(service):
    """``repository.read_now`` (the API's read by id: on SQLite one connection kept open for the process)
    sees every commit at once, serves reads from several threads, and leaves no read transaction open
    behind it (on SQLite a checkpoint can still truncate the write-ahead log)."""
    from concurrent.futures import ThreadPoolExecutor

    loc = location()
    for n in (1, 2, 3):
        loc["name"] = f"Hébergement {n}"
        service.update("Location", loc["id"], orjson.dumps(loc), "http://x/fhir")
        stored = repository.read_now(service.engine, "Location", loc["id"])
        assert (stored.version, orjson.loads(stored.body)["name"]) == (n, f"Hébergement {n}")
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda _: repository.read_now(service.engine, "Location", loc["id"]).version,
                                 range(200)))
    assert versions == [3] * 200
    with pytest.raises(NotFound):
        repository.read_now(service.engine, "Location", "no-such-place")
    if service.engine.dialect.name == "sqlite":
        with service.engine.connect() as conn:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        assert busy == 0


def test_reads_by_id_take_no_pooled_connection_and_survive_a_dropped_one(service):
    """Reads by id run on connections the process holds for them, not checked out of the pool (on PostgreSQL a
    checkout pinged the server and its return rolled back: three round trips a read); a held PostgreSQL connection
    that the server dropped meanwhile is replaced and the read answered on a new one."""
    from sqlalchemy import event

    from ror.store.engine import _READERS

    loc = location()
    service.update("Location", loc["id"], orjson.dumps(loc), "http://x/fhir")
    engine = service.engine
    repository.read_now(engine, "Location", loc["id"])
    checkouts = []

    def checkout(*_):
        checkouts.append(1)
    event.listen(engine.pool, "checkout", checkout)
    try:
        assert all(repository.read_now(engine, "Location", loc["id"]).version == 1 for _ in range(50))
        assert checkouts == []
        if engine.dialect.name == "sqlite":
            return
        held = _READERS[engine.pool]
        (conn,) = held.idle
        assert conn.autocommit
        with engine.connect() as admin:
            assert admin.exec_driver_sql(f"SELECT pg_terminate_backend({conn.info.backend_pid})").scalar_one()
        assert repository.read_now(engine, "Location", loc["id"]).version == 1
        (again,) = held.idle
        assert again is not conn and conn.closed and not again.broken
    finally:
        event.remove(engine.pool, "checkout", checkout)


def test_reads_awaited_on_the_event_loop_answer_as_the_others_and_survive_a_dropped_connection(service):
    """On PostgreSQL the API's read by id awaits its round trip on the event loop (``read_now_async``): the same stored
    version as the read in a thread, a NotFound for an unknown id, at most the held number of connections for many
    reads at once, one connection per loop (a loop's connections cannot serve another), and a connection the server
    dropped replaced."""
    import asyncio

    from ror.store.engine import _HELD_PG, _LOOP_READERS

    if service.engine.dialect.name == "sqlite":
        pytest.skip("SQLite reads inline on the loop: a local lookup, nothing to await")
    loc = location()
    service.update("Location", loc["id"], orjson.dumps(loc), "http://x/fhir")
    engine = service.engine
    expected = repository.read_now(engine, "Location", loc["id"])

    async def reads(n: int) -> list:
        return await asyncio.gather(*(repository.read_now_async(engine, "Location", loc["id"]) for _ in range(n)))

    async def first_loop():
        got = await reads(20)
        with pytest.raises(NotFound):
            await repository.read_now_async(engine, "Location", "unknown")
        held = _LOOP_READERS[engine.pool][asyncio.get_running_loop()]
        assert 1 <= len(held.idle) <= _HELD_PG
        conn = held.idle[-1]
        with engine.connect() as admin:
            assert admin.exec_driver_sql(f"SELECT pg_terminate_backend({conn.info.backend_pid})").scalar_one()
        again = await repository.read_now_async(engine, "Location", loc["id"])
        assert conn.closed and conn not in held.idle
        for c in held.idle:
            await c.close()
        return [*got, again]

    got = asyncio.run(first_loop())
    got += asyncio.run(reads(3))  # a new loop: new connections
    assert all((s.pk, s.version, s.last_updated, bytes(s.body)) == (expected.pk, expected.version,
               expected.last_updated, bytes(expected.body)) for s in got)
    service.update("Location", loc["id"], orjson.dumps({**loc, "name": "Renamed"}), "http://x/fhir")
    assert asyncio.run(reads(1))[0].version == 2  # autocommit: each read sees the latest commit


def test_api_connections_take_the_small_page_cache_and_loaders_and_the_reader_the_large_one(tmp_path, monkeypatch):
    """An API process has up to 16 pooled SQLite connections: each gets ``api_sqlite_cache_mb`` (its memory stays
    bounded at national scale); its one reader of reads by id, and other engines (the loaders' single writer),
    keep the large default."""
    from ror import bootstrap
    from ror.settings import Settings
    from ror.store.engine import _READERS, dbapi_row_now, make_engine

    url = f"sqlite:///{tmp_path / 'cache.db'}"
    engines = []
    monkeypatch.setattr(bootstrap, "make_engine", lambda *a, **kw: engines.append(make_engine(*a, **kw)) or engines[-1])
    bootstrap.build_app(Settings(database_url=url, api_sqlite_cache_mb=8))
    engines.append(make_engine(url))
    sizes = []
    for engine in engines:
        with engine.connect() as conn:
            sizes.append(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    dbapi_row_now(engines[0], "SELECT 1")  # the reader of reads by id, made at the first
    sizes.append(_READERS[engines[0].pool].conn.execute("PRAGMA cache_size").fetchone()[0])
    for engine in engines:
        engine.dispose()
    assert sizes == [-8 * 1024, -256 * 1024, -256 * 1024]
