"""Database engines: SQLite (embedded default) and PostgreSQL, with their dialect-specific bits."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import orjson
import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Compiled, Connection
from sqlalchemy.pool import Pool

from ror.geo import haversine_km
from ror.store.schema import LIVE_TX, tx_sequence

T = TypeVar("T")
log = logging.getLogger(__name__)

WRITE = {"ror_write": True}  # execution option: this transaction writes


# SQLite's page cache per connection, unless said otherwise: the loaders write through one connection,
# whose cache holds the index B-trees they insert into.
_SQLITE_CACHE_MB = 256
_BUSY_TIMEOUT_MS = 30000


def make_engine(url: str, sqlite_cache_mb: int = _SQLITE_CACHE_MB) -> Engine:
    """An engine on ``url``; on SQLite, each connection with a page cache of ``sqlite_cache_mb``."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, sqlite_cache_mb)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_engine(url: str, cache_mb: int) -> Engine:
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
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={_BUSY_TIMEOUT_MS}",
                       f"cache_size=-{cache_mb * 1024}", "mmap_size=1073741824", "temp_store=MEMORY"):
            cur.execute("PRAGMA " + pragma)
        cur.close()
        # The distance a geographic search sorts by (SQLite's SQL has no such function).
        dbapi_conn.create_function("ror_distance_km", 4, haversine_km, deterministic=True)
        ensure_math_functions(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        # Writers take the write lock up front: no SQLITE_BUSY on lock upgrade mid-transaction.
        immediate = conn.get_execution_options().get("ror_write")
        # On the driver connection: through SQLAlchemy's execution path this cost as much as a read.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


# SQLite's math functions that a geographic search's test calls (``Compiler.within``), as Python would compute them.
_MATH_FUNCTIONS = (("sin", 1, math.sin), ("cos", 1, math.cos), ("power", 2, math.pow))


def ensure_math_functions(dbapi_conn) -> None:
    """Give the connection SQLite's math functions where its build left them out (they are compiled in by default
    since SQLite 3.35, optional before)."""
    try:
        dbapi_conn.execute("SELECT sin(0), cos(0), power(2, 2)").fetchall()
    except sqlite3.OperationalError:
        for name, arity, fn in _MATH_FUNCTIONS:
            dbapi_conn.create_function(name, arity, fn, deterministic=True)


class _WriterQueue:
    """SQLite allows one writer: this process's writers queue on a lock, and the worker processes of
    one server queue on an advisory lock of a file beside the database, rather than in SQLite's busy
    handler, whose growing sleeps (up to 100 ms each) collapse throughput under concurrent writes.

    A process waits for that lock holding a second one, the turnstile, so that the process releasing the
    lock cannot take it again before the one waiting: the kernel wakes lock waiters in no order, and under
    load a worker re-locking at once starved the other for seconds (p95 of 3 s with group commit)."""

    def __init__(self, database: str):
        self.thread_lock = threading.Lock()
        self.path = f"{database}.writer" if database and database != ":memory:" else None

    @contextmanager
    def slot(self):
        with self.thread_lock:
            if self.path is None:
                yield
                return
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            turnstile = os.open(f"{self.path}.turn", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(turnstile, fcntl.LOCK_EX)
                fcntl.flock(fd, fcntl.LOCK_EX)
                fcntl.flock(turnstile, fcntl.LOCK_UN)
                yield
            finally:
                os.close(turnstile)
                os.close(fd)  # releases the lock


_SQLITE_WRITERS: weakref.WeakKeyDictionary[Pool, _WriterQueue] = weakref.WeakKeyDictionary()
_PER_POOL = threading.Lock()


def per_pool(registry: weakref.WeakKeyDictionary, engine: Engine, make: Callable[[], T]) -> T:
    """The one ``make()`` of ``engine``'s pool, which its option engines (``execution_options``) share: keyed
    by the pool itself, weakly, as an ``id`` could be reused by the pool of another database."""
    found = registry.get(engine.pool)
    if found is None:
        with _PER_POOL:
            found = registry.get(engine.pool)
            if found is None:
                found = registry[engine.pool] = make()
    return found


@contextmanager
def writer_slot(engine: Engine):
    """The right to write, on SQLite (see ``_WriterQueue``). A no-op on PostgreSQL, where row locks
    serialise only what conflicts."""
    if engine.dialect.name != "sqlite":
        yield
        return
    with per_pool(_SQLITE_WRITERS, engine, lambda: _WriterQueue(engine.url.database or "")).slot():
        yield


@contextmanager
def write_transaction(engine: Engine, direct: bool = False):
    """A connection in a write transaction: queued with this server's other writers (``writer_slot``),
    started with the write lock taken up front on SQLite (``WRITE``), committed on exit. ``direct``: on SQLite,
    through a rollback journal when the connection has the file to itself (``_rollback_journal``: a first load), its
    sorts in files on every CPU (``_parallel_sorts``)."""
    bulk = direct and is_sqlite(engine)
    with (writer_slot(engine), engine.connect() as conn, _rollback_journal(conn) if bulk else nullcontext(),
          _parallel_sorts(conn) if bulk else nullcontext()):
        conn.execution_options(**WRITE)
        with conn.begin():
            yield conn


@contextmanager
def _rollback_journal(conn: Connection):
    """On SQLite, ``conn`` writes through a rollback journal rather than the write-ahead log, if no other connection
    has the file open (the switch needs it alone: otherwise the log stays); then back to the log. Yields whether it
    switched. For a first load (``store.bulk``): a store's new pages need no journal (it keeps the pages a transaction
    changes that were there before it), where the log receives every page the load writes, then the checkpoint copies
    them into the file; and each page read that misses the connection's cache searches the log's index block by
    block (4,096 pages each), newest first, while the transaction lasts."""
    raw = conn.connection.driver_connection
    switched = _journal(raw, "delete")
    log.info("write through %s", "a rollback journal" if switched else "the write-ahead log (file shared)")
    if switched:  # in this mode NORMAL does not sync the journal before pages are spilled into the file
        raw.execute("PRAGMA synchronous=FULL")
    try:
        yield switched
    finally:
        if switched and _journal(raw, "wal"):  # else the next connection's set-up (``_sqlite_engine``) does it
            raw.execute("PRAGMA synchronous=NORMAL")


@contextmanager
def _parallel_sorts(conn: Connection):
    """On SQLite, the sorts of ``conn`` (a first load's index builds) spilled to temporary files and shared by one
    thread per CPU: SQLite sorts on one thread while its temporary storage is in memory (this engine's default), and
    that cannot change inside a transaction. idx_token's lookup index of a 270k store, alternated: 12.2, 13.4 s ->
    10.3, 10.9 s; the national first load's peak RSS 4.66 -> 1.61 GB (its sorts and the copies' in files). SQLite
    writes its temporary files to ``SQLITE_TMPDIR``, else ``TMPDIR``, else /var/tmp."""
    raw = conn.connection.driver_connection
    temp_store, threads = (raw.execute(f"PRAGMA {name}").fetchone()[0] for name in ("temp_store", "threads"))
    raw.execute("PRAGMA temp_store=FILE")
    raw.execute(f"PRAGMA threads={len(os.sched_getaffinity(0))}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA threads={threads}")
        raw.execute(f"PRAGMA temp_store={temp_store}")


def _journal(raw, mode: str) -> bool:
    """Set the journal mode of a DBAPI SQLite connection without waiting for the other connections (their locks
    would hold it the whole busy timeout): whether it is now ``mode``."""
    raw.execute("PRAGMA busy_timeout=0")
    try:
        return raw.execute(f"PRAGMA journal_mode={mode}").fetchone()[0] == mode
    except sqlite3.OperationalError:  # the database is locked: another connection has it open
        return False
    finally:
        raw.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")


def is_sqlite(conn_or_engine) -> bool:
    return conn_or_engine.dialect.name == "sqlite"


SNAPSHOT = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}  # ``one_snapshot`` on PostgreSQL


def one_snapshot(conn: Connection) -> bool:
    """Whether every statement of ``conn``'s transaction sees the same committed state: any SQLite transaction (its
    read snapshot, or the write lock), a PostgreSQL one only at REPEATABLE READ (``SNAPSHOT``) or above, where each
    statement of a READ COMMITTED one sees what was committed before it began."""
    return is_sqlite(conn) or conn.get_execution_options().get("isolation_level") in ("REPEATABLE READ", "SERIALIZABLE")


def _sql(conn: Connection | Engine, template: str) -> str:
    return template.replace("{p}", "?" if conn.dialect.paramstyle == "qmark" else "%s")


def dbapi_rows(conn: Connection, template: str, params: Sequence = (), binary: bool = False) -> list[tuple]:
    """Run a statement on the DBAPI cursor of ``conn`` (in its transaction), ``{p}`` marking each
    parameter. The read and write hot paths use it: SQLAlchemy's statement handling, even for
    ``exec_driver_sql``, cost more than these primary-key and index lookups themselves (profiled).
    ``binary``: on PostgreSQL, results in binary (resource bodies: as ``bytea``'s hex text, encoded and decoded,
    they cost a third of a delta page)."""
    cur = conn.connection.cursor(binary=True) if binary and not is_sqlite(conn) else conn.connection.cursor()
    try:
        cur.execute(_sql(conn, template), params)
        return cur.fetchall() if cur.description else []
    finally:
        cur.close()


# A list of pks or ids bound as one parameter: one statement whatever its length, where expanding ``IN (…)`` lists
# were rendered into SQL at each call (12–15 % of a delta page's includes; 1.8 → 0.55 ms for a page's 200 bodies).
def in_list(conn: Connection, col: str, pg_type: str) -> str:
    """SQL: ``col`` is one of the values bound by ``list_param`` (``{p}``)."""
    if is_sqlite(conn):
        return f"{col} IN (SELECT value FROM json_each({{p}}))"
    return f"{col} = ANY({{p}}::{pg_type}[])"


def list_param(conn: Connection, values: list):
    """``values`` as the one parameter of ``in_list``."""
    return orjson.dumps(values).decode() if is_sqlite(conn) else values


def dbapi_row_now(engine: Engine, template: str, params: Sequence = ()) -> tuple | None:
    """One row of a single-statement read, on a DBAPI connection outside any transaction of ours: the
    by-id read of the API, where SQLAlchemy's connection, begin and commit events cost twice the lookup
    (profiled). One statement sees one consistent state on both databases."""
    return row_now(engine, _sql(engine, template), params)


def row_now(engine: Engine, sql: str, params: Sequence | dict = ()) -> tuple | None:
    """``dbapi_row_now`` for SQL in the engine's own parameter style: on a connection held by the process for these
    reads (``_HeldReader`` on SQLite, ``_HeldConnections`` on PostgreSQL), not a pooled one."""
    if engine.dialect.name == "sqlite":
        return per_pool(_READERS, engine, lambda: _HeldReader(engine)).row(sql, params)
    return per_pool(_READERS, engine, lambda: _HeldConnections(engine, _HELD_PG)).row(sql, params)


class _HeldReader:
    """One SQLite connection kept open for the single-statement reads of a process, taken from the pool
    once (with its connect settings) and detached from it: a pool checkout and return cost more than the
    primary-key lookup itself (~20 µs against ~8, profiled). Reads take turns on a lock (they last
    microseconds); SQLite connections do not go stale, and one with no statement running holds no lock
    on the database. It is closed with the pool's registry entry, when the engine is garbage-collected."""

    def __init__(self, engine: Engine):
        fairy = engine.raw_connection()
        fairy.detach()
        self.conn = fairy.dbapi_connection
        # Every read by id of the process goes through it: it keeps the large cache whatever the pool's
        # (docs/storage.md, "SQLite connections and memory").
        self.conn.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_MB * 1024}")
        self.lock = threading.Lock()

    def row(self, sql: str, params: Sequence) -> tuple | None:
        with self.lock:
            cur = self.conn.cursor()
            try:
                cur.execute(sql, params)
                return cur.fetchone()
            finally:
                cur.close()  # resets the statement: no read transaction stays open to hold back checkpoints


# PostgreSQL connections a process holds for its single-statement reads: reads by id and the token check of every
# request run on them in turns of a round trip each.
_HELD_PG = 4


class _HeldConnections:
    """PostgreSQL connections kept open in autocommit for the single-statement reads of a process, taken from the
    pool (with the dialect's set-up) and detached from it. Through the pool, each read cost three round trips to the
    server (the checkout's ping, the statement, the rollback of the transaction the driver had begun) and as many
    wake-ups of its backend: a read by id at 20,000 resources, ~2.3 ms over one HTTP connection. At most ``size`` are
    open; one the server dropped since its last use (a restart) is replaced and the read run again on a new one. They
    close with the registry's entry, when the pool is garbage-collected (``Engine.dispose`` replaces it)."""

    def __init__(self, engine: Engine, size: int):
        self.pool = weakref.ref(engine.pool)  # not the engine: the registry's value would keep its key alive
        self.turns = threading.BoundedSemaphore(size)
        self.idle: list = []  # list.append and list.pop are atomic

    def _connect(self):
        fairy = self.pool().connect()
        fairy.detach()
        conn = fairy.dbapi_connection
        conn.rollback()  # the checkout's ping may have begun a transaction
        conn.autocommit = True
        return conn

    def row(self, sql: str, params: Sequence | dict) -> tuple | None:
        with self.turns:
            for attempt in (1, 2):
                conn = self.idle.pop() if self.idle else self._connect()
                try:
                    row = conn.execute(sql, params).fetchone()
                except Exception:
                    if not conn.broken:
                        self.idle.append(conn)
                        raise
                    conn.close()
                    if attempt == 2:
                        raise
                    continue
                self.idle.append(conn)
                return row
        raise AssertionError("unreachable")


_READERS: weakref.WeakKeyDictionary[Pool, _HeldReader | _HeldConnections] = weakref.WeakKeyDictionary()


async def dbapi_row_now_async(engine: Engine, template: str, params: Sequence = ()) -> tuple | None:
    """``dbapi_row_now`` on PostgreSQL, its round trip awaited on the running event loop rather than in a thread: the
    API's read by id, 20,797 resources, alternated: 1,692 → 2,162 req/s over one connection, 2,984 → 3,246 over
    eight; 468 → 377 µs of server CPU a read (benchmarks/RESULTS.md, session 15)."""
    return await row_now_async(engine, _sql(engine, template), params)


async def row_now_async(engine: Engine, sql: str, params: Sequence | dict = ()) -> tuple | None:
    """``dbapi_row_now_async`` for SQL in the engine's own parameter style."""
    by_loop = per_pool(_LOOP_READERS, engine, weakref.WeakKeyDictionary)
    loop = asyncio.get_running_loop()
    held = by_loop.get(loop)
    if held is None:  # no await since the look-up: no other task of this loop made one meanwhile
        held = by_loop[loop] = _LoopConnections(engine.url.set(drivername="postgresql")
                                                .render_as_string(hide_password=False), _HELD_PG)
    return await held.row(sql, params)


class _LoopConnections:
    """``_HeldConnections`` for one event loop: asynchronous connections (bound to the loop that made them), at most
    ``size`` in use, one the server dropped replaced and the read run again. Gone with the loop (tests make one per
    client), their sockets closed when they are collected."""

    def __init__(self, conninfo: str, size: int):
        self.conninfo = conninfo
        self.turns = asyncio.Semaphore(size)
        self.idle: list[psycopg.AsyncConnection] = []

    async def row(self, sql: str, params: Sequence | dict) -> tuple | None:
        async with self.turns:
            for attempt in (1, 2):
                conn = self.idle.pop() if self.idle else await psycopg.AsyncConnection.connect(self.conninfo,
                                                                                                autocommit=True)
                try:
                    row = await (await conn.execute(sql, params)).fetchone()
                except Exception:
                    if not conn.broken:
                        self.idle.append(conn)
                        raise
                    await conn.close()
                    if attempt == 2:
                        raise
                    continue
                self.idle.append(conn)
                return row
        raise AssertionError("unreachable")


_LOOP_READERS: weakref.WeakKeyDictionary[Pool, weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()


def compiled_params(compiled: Compiled, values: dict) -> tuple | dict:
    """``values`` as the DBAPI takes them for ``compiled.string``: by position on SQLite, by name on PostgreSQL."""
    params = compiled.construct_params(values)
    return tuple(params[name] for name in compiled.positiontup) if compiled.positional else params


def dbapi_many(conn: Connection, template: str, rows: Sequence[Sequence]) -> None:
    """``executemany`` of a statement on the DBAPI cursor of ``conn`` (see ``dbapi_rows``)."""
    cur = conn.connection.cursor()
    try:
        cur.executemany(_sql(conn, template), rows)
    finally:
        cur.close()


def next_tx(conn: Connection) -> int:
    """A new transaction number, strictly greater than every committed one."""
    if is_sqlite(conn):
        return dbapi_rows(conn, "UPDATE tx_counter SET value = value + 1 WHERE id = 1 RETURNING value")[0][0]
    return dbapi_rows(conn, f"SELECT nextval('{tx_sequence.name}')")[0][0]


def current_tx(conn: Connection) -> int:
    """The snapshot a search pins: the latest committed transaction (visible to this connection)."""
    if is_sqlite(conn):
        return dbapi_rows(conn, "SELECT value FROM tx_counter WHERE id = 1")[0][0]
    # Allocated-but-uncommitted numbers may be below this; see docs/search.md (paging).
    return dbapi_rows(conn, "SELECT coalesce(max(tx), 0) FROM resource")[0][0]


__all__ = ["LIVE_TX", "SNAPSHOT", "WRITE", "compiled_params", "current_tx", "dbapi_many", "dbapi_row_now",
           "dbapi_row_now_async", "dbapi_rows", "is_sqlite", "make_engine", "next_tx", "one_snapshot", "per_pool",
           "row_now", "row_now_async", "write_transaction", "writer_slot"]
