"""The write side of bulk loads on both databases: rows go in with plain inserts (``COPY`` on PostgreSQL) under
keys chosen before the insert, and a failure in the middle of a write leaves the store as it was."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select, text

from ror.fhir.files import read_items
from ror.store import bulk, repository
from ror.store import engine as engine_module
from ror.store.engine import make_engine, write_transaction
from ror.store.migrate import upgrade
from ror.store.schema import LIVE_TX, idx_geo, idx_string, load_fingerprint, resource
from tests.conftest import FIXTURES
from tests.integration.test_bulk_load import count, indexes


def _resources() -> list[dict]:
    return [e["resource"] for e in orjson.loads((FIXTURES / "small" / "bundle.json").read_bytes())["entry"]]


@pytest.fixture
def ndjson(tmp_path):
    path = tmp_path / "extract.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in _resources()) + b"\n")
    return path


def test_inserted_rows_read_back_exactly(service):
    """Text with COPY's separators and escapes, nulls, floats to the last bit, bytes."""
    strings = [(1, "p", "tab\there", "new\nline \\N \\. é ∑ \r end", 0, 1, 5, LIVE_TX),
               (2, "p", "\\", "", 3, 63, 5, LIVE_TX)]
    geo = [(1, "Location.near", 0.1 + 0.2, -179.99999999999997, 0, 1, 5, LIVE_TX),
           (2, "Location.near", 1e-300, 48.8566, 0, 1, 5, LIVE_TX)]
    prints = [(1, bytes(range(16)), b"\x00\\\t\n" * 4), (2, b"\xff" * 16, b"\x00" * 16)]
    with write_transaction(service.engine) as conn:
        for table, rows in ((idx_string, strings), (idx_geo, geo), (load_fingerprint, prints)):
            repository.insert_rows(conn, table, rows)
    with service.engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(select(idx_string).order_by(idx_string.c.pk))] == strings
        assert [tuple(r) for r in conn.execute(select(idx_geo).order_by(idx_geo.c.pk))] == geo
        assert [tuple(map(bytes, r[1:])) for r in conn.execute(
            select(load_fingerprint).order_by(load_fingerprint.c.pk))] == [r[1:] for r in prints]


def test_a_large_load_leaves_postgresql_s_pages_all_visible_and_its_statistics_gathered(service):
    """``vacuum_analyze``: searches then read the index tables' rows from their indexes alone, at once."""
    if service.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no visibility map; its planner reads no statistics gathered by ANALYZE")
    bulk.upsert(service.engine, _resources())
    state = ("SELECT c.relpages, c.relallvisible, s.last_vacuum IS NOT NULL, s.last_analyze IS NOT NULL "
             "FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname = :t")
    with service.engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        assert conn.execute(text(state), {"t": "idx_token"}).one()[1:] == (0, False, False)
    bulk.vacuum_analyze(service.engine)
    with service.engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        for table in ("resource", "idx_token", "idx_string", "idx_ref", "idx_date"):
            pages, visible, vacuumed, analyzed = conn.execute(text(state), {"t": table}).one()
            assert pages > 0 and visible == pages and vacuumed and analyzed, table


def test_new_keys_follow_the_stored_ones_and_the_database_keeps_counting(service, ndjson):
    res = _resources()
    service.create(res[0]["resourceType"], orjson.dumps({k: v for k, v in res[0].items() if k != "id"}),
                   "http://x/fhir")
    with write_transaction(service.engine) as conn:
        written = repository.write_batch(conn, [repository.prepare(r) for r in res[:10]])
    assert [w.outcome for w in written] == ["created"] * 10
    with service.engine.connect() as conn:
        stored = {rid: pk for rid, pk in conn.execute(select(resource.c.rid, resource.c.pk))}
    assert [w.pk for w in written] == [stored[r["id"]] for r in res[:10]]
    assert len(set(stored.values())) == 11 and min(w.pk for w in written) > min(stored.values())
    # Keys the database chooses itself (an insert through SQLAlchemy, as the API's create) do not collide.
    service.create(res[1]["resourceType"], orjson.dumps({k: v for k, v in res[1].items() if k != "id"}),
                   "http://x/fhir")
    assert bulk.upsert(service.engine, read_items(ndjson), batch_size=7) == {"created": 41, "unchanged": 10}
    assert count(service.engine, resource) == 53
    assert count(service.engine, load_fingerprint) == 51


@pytest.fixture
def failing_insert(monkeypatch):
    """The database write fails on the n-th call of ``insert_rows``, its rows inserted."""
    calls = []
    insert = repository.insert_rows

    def arm(n: int):
        def failing(conn, table, rows):
            insert(conn, table, rows)
            calls.append(table.name)
            if len(calls) == n:
                raise RuntimeError("disk full")
        monkeypatch.setattr(repository, "insert_rows", failing)
    return arm


def test_a_write_failing_mid_first_load_leaves_the_store_empty_and_indexed(service, ndjson, failing_insert):
    schema = indexes(service.engine)
    failing_insert(25)  # in the fourth batch of seven
    with pytest.raises(RuntimeError, match="disk full"):
        bulk.upsert(service.engine, read_items(ndjson), batch_size=7)
    assert count(service.engine, resource) == count(service.engine, load_fingerprint) == 0
    with service.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM idx_token")).scalar_one() == 0
    assert indexes(service.engine) == schema
    assert bulk.upsert(service.engine, read_items(ndjson), batch_size=7) == {"created": 51}


def test_a_write_failing_mid_reload_keeps_the_batches_before(service, ndjson, failing_insert):
    res = _resources()
    with write_transaction(service.engine) as conn:
        repository.write_batch(conn, [repository.prepare(res[0])])
    failing_insert(25)
    with pytest.raises(RuntimeError, match="disk full"):
        bulk.upsert(service.engine, read_items(ndjson), batch_size=7)
    with service.engine.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(resource)).scalar_one()
        tokens = conn.execute(text("SELECT count(DISTINCT pk) FROM idx_token")).scalar_one()
    assert 0 < kept < 51 and kept % 7 == 0  # whole batches only (the first holds the resource stored before)
    assert tokens == kept and count(service.engine, load_fingerprint) == kept
    assert bulk.upsert(service.engine, read_items(ndjson), batch_size=7) == {"created": 51 - kept, "unchanged": kept}


# -- SQLite: a first load through a rollback journal ---------------------------------------------------------------

@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list:
    """The NDJSON files of a generated dataset of ~2,000 resources: ~20 MB of pages, enough to spill a small cache."""
    from ror.generate import runner

    out = tmp_path_factory.mktemp("generated")
    runner.generate(out, "2000", seed=3, dirty=0, jobs=1)
    return sorted((out / "fhir").glob("*/*.ndjson"))


def _lines(files: list):
    return (item for f in files for item in read_items(f))


def _sqlite_store(tmp_path, cache_mb: int = 1):
    """An empty SQLite store whose connections keep a page cache of ``cache_mb``: a load's pages spill into the file
    long before its commit."""
    path = tmp_path / "ror.db"
    engine = make_engine(f"sqlite:///{path}", sqlite_cache_mb=cache_mb)
    upgrade(engine)
    return path, engine


def _journal_mode(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def test_a_sqlite_first_load_writes_through_a_rollback_journal_then_the_store_is_back_on_its_log(
        tmp_path, generated, caplog):
    """The write-ahead log of a first load held every page it wrote (24 GB nationally) and slowed every page read of
    the load; with the file to itself the load writes through a rollback journal, and leaves the store on its log."""
    path, engine = _sqlite_store(tmp_path)
    sizes = []
    with caplog.at_level("INFO", logger="ror.store.engine"):
        done = bulk.upsert(engine, _lines(generated), batch_size=200,
                           on_batch=lambda _: sizes.append(Path(f"{path}-wal").stat().st_size
                                                           if Path(f"{path}-wal").exists() else 0))
    assert "write through a rollback journal" in caplog.text
    assert done["created"] > 1000 and len(sizes) > 5
    assert max(sizes) == 0  # nothing written to a log meanwhile
    assert _journal_mode(path) == "wal"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL again, as every connection
    assert bulk.upsert(engine, _lines(generated), batch_size=200) == {"unchanged": done["created"]}
    engine.dispose()


def test_a_sqlite_first_load_sorts_on_every_cpu_then_its_connection_is_as_every_other(tmp_path, monkeypatch):
    """SQLite sorts on one thread while its temporary storage is in memory (every connection's setting): a first
    load's transaction, whose index builds sort every row, spills its sorts to files shared by one thread per CPU."""
    monkeypatch.setattr(engine_module.os, "sched_getaffinity", lambda _pid: {0, 1})
    _path, engine = _sqlite_store(tmp_path)

    def sorts(raw) -> tuple[int, int]:
        return raw.execute("PRAGMA temp_store").fetchone()[0], raw.execute("PRAGMA threads").fetchone()[0]

    with write_transaction(engine, direct=True) as conn:
        raw = conn.connection.driver_connection
        assert sorts(raw) == (1, 2)  # FILE, a thread per CPU
    assert sorts(raw) == (2, 0)  # MEMORY, no thread: back in the pool as every connection
    with write_transaction(engine) as conn:  # any other write
        assert sorts(conn.connection.driver_connection) == (2, 0)
    engine.dispose()


def test_a_sqlite_first_load_keeps_the_log_when_another_connection_has_the_file_open(tmp_path, generated, caplog):
    """The switch out of the log needs the file to itself: an API process with the store open keeps the load on it."""
    path, engine = _sqlite_store(tmp_path, cache_mb=256)
    other = sqlite3.connect(path)  # an API process reading the store, say
    other.execute("SELECT count(*) FROM resource").fetchone()
    try:
        with caplog.at_level("INFO", logger="ror.store.engine"):
            done = bulk.upsert(engine, _lines(generated), batch_size=200)
        assert "write through the write-ahead log (file shared)" in caplog.text
        assert other.execute("SELECT count(*) FROM resource").fetchone()[0] == done["created"] > 0
    finally:
        other.close()
        engine.dispose()


def test_a_sqlite_first_load_failing_or_killed_after_spilling_pages_leaves_the_store_empty(
        tmp_path, generated, failing_insert):
    """Pages spilled into the file before the failure are rolled back from the journal: by the failing load itself, or,
    killed, by the next connection to open the store (a hot journal)."""
    path, engine = _sqlite_store(tmp_path)
    schema = indexes(engine)
    failing_insert(40)
    with pytest.raises(RuntimeError, match="disk full"):
        bulk.upsert(engine, _lines(generated), batch_size=200)
    assert count(engine, resource) == 0 and indexes(engine) == schema
    assert _journal_mode(path) == "wal"
    engine.dispose()
    size = path.stat().st_size
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal
from pathlib import Path
from ror.fhir.files import read_items
from ror.store import bulk
from ror.store.engine import make_engine
batches = []
def on_batch(done):
    batches.append(done)
    if len(batches) == 4:  # pages already spilled into the file (a 1 MB cache)
        assert os.path.exists({str(path)!r} + "-journal")
        os.kill(os.getpid(), signal.SIGKILL)
files = {[str(g) for g in generated]!r}
bulk.upsert(make_engine({f"sqlite:///{path}"!r}, sqlite_cache_mb=1),
            (item for f in files for item in read_items(Path(f))), batch_size=200, on_batch=on_batch)
"""], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert Path(f"{path}-journal").exists() and path.stat().st_size > size  # a hot journal, pages in the file
    engine = make_engine(f"sqlite:///{path}")
    assert count(engine, resource) == 0 and indexes(engine) == schema
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    assert _journal_mode(path) == "wal"
    assert bulk.upsert(engine, _lines(generated), batch_size=200)["created"] > 1000
    engine.dispose()
