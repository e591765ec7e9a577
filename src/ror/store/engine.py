"""Database engines: SQLite (embedded default) and PostgreSQL, with their dialect-specific bits."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection

from ror.geo import haversine_km
from ror.store.schema import LIVE_TX, tx_counter, tx_sequence

WRITE = {"ror_write": True}  # execution option: this transaction writes


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           pool_size=8, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event decide how transactions start (pysqlite's own handling
        # would start them lazily and deferred, which makes concurrent writers deadlock-prone).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000",
                       "cache_size=-262144", "mmap_size=1073741824", "temp_store=MEMORY"):
            cur.execute("PRAGMA " + pragma)
        cur.close()
        # SQLite has no trigonometry by default: the geographic search calls this.
        dbapi_conn.create_function("ror_distance_km", 4, haversine_km, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        # Writers take the write lock up front: no SQLITE_BUSY on lock upgrade mid-transaction.
        immediate = conn.get_execution_options().get("ror_write")
        # On the driver connection: through SQLAlchemy's execution path this cost as much as a read.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


_SQLITE_WRITERS: dict[int, threading.Lock] = {}


@contextmanager
def writer_slot(engine: Engine):
    """SQLite allows one writer: queue this process's writers on a lock rather than in SQLite's busy
    handler, whose growing sleeps (up to 100 ms each) collapse throughput under concurrent writes.
    A no-op on PostgreSQL, where row locks serialise only what conflicts."""
    if engine.dialect.name != "sqlite":
        yield
        return
    lock = _SQLITE_WRITERS.setdefault(id(engine.pool), threading.Lock())
    with lock:
        yield


def is_sqlite(conn_or_engine) -> bool:
    return conn_or_engine.dialect.name == "sqlite"


def next_tx(conn: Connection) -> int:
    """A new transaction number, strictly greater than every committed one."""
    if is_sqlite(conn):
        return conn.execute(
            tx_counter.update().where(tx_counter.c.id == 1)
            .values(value=tx_counter.c.value + 1).returning(tx_counter.c.value)
        ).scalar_one()
    return conn.execute(tx_sequence.next_value()).scalar_one()


def current_tx(conn: Connection) -> int:
    """The snapshot a search pins: the latest committed transaction (visible to this connection)."""
    if is_sqlite(conn):
        return conn.execute(text("SELECT value FROM tx_counter WHERE id = 1")).scalar_one()
    # Allocated-but-uncommitted numbers may be below this; see docs/search.md (paging).
    return conn.execute(text("SELECT coalesce(max(tx), 0) FROM resource")).scalar_one()


__all__ = ["LIVE_TX", "WRITE", "current_tx", "is_sqlite", "make_engine", "next_tx"]
