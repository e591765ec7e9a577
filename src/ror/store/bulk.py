"""Bulk write path for feeds, loads and tests: batched upserts through ``repository.write_batch``.

Each batch is one transaction, so a run killed mid-way leaves whole batches; since unchanged
content is skipped, re-running the same input converges to the state of an uninterrupted run. The
exception is a *first load*, of more than one batch into an empty store: it is one transaction, in which
the lookup indexes of the index tables and the fingerprints' digest index are dropped, then built once at the end
(a sort, rather than a random insertion per row and index); killed mid-way, it leaves the store empty.

NDJSON lines (``ror.fhir.files.Line``) are fingerprinted: the digest of the line a resource was loaded
from is kept with the content hash it gave (``load_fingerprint``). A reload skips a known line without
parsing it while the resource still has that content — parsing was most of a no-op reload's cost (orjson
builds every object of the resource: ~50 µs for an offer) — and parses it again once the resource changed
by any other way (API, feed, another file). A batch's digests are looked up when it is read, before its
write transaction, which a batch of known lines only does not open.

The lines to write are parsed, hashed, indexed and serialised (the pure part of a write) by worker processes when
the load has more than one batch and this process may use more than one CPU, ``_AHEAD`` batches ahead of
the one this process writes. The garbage collector is paused meanwhile: a batch holds about a million
objects, which every full collection traversed again (a fifth of a load's time, profiled). Figures:
docs/storage.md, "Bulk loads".
"""

from __future__ import annotations

import gc
import hashlib
import os
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from multiprocessing import get_context

from sqlalchemy import Connection, Engine, inspect

from ror.errors import InputFileError
from ror.fhir.files import Line, Rejected
from ror.store import derived, repository
from ror.store.engine import dbapi_many, dbapi_rows, is_sqlite, write_transaction
from ror.store.schema import INDEX_TABLES, load_fingerprint

_AHEAD = 2  # batches read and handed to the workers before the one being written
# A reload that has looked up this share of the store's fingerprints reads those still valid at once (``_Known``).
_READ_AT_ONCE = 10
_JOB = 250  # lines per worker job: a batch is shared between the workers
# How much less the workers that prepare what one process writes are scheduled than that writer (``nice``): see
# ``_Preparer._workers``, and a feed's check workers (``ror.profiles.parallel``).
WORKER_NICENESS = 10


def upsert(engine: Engine, items: Iterable[dict | Line], batch_size: int = 2000,
           on_batch: Callable[[Counter], None] | None = None, keep_last_updated: bool = False,
           on_rejected: Callable[[Rejected], None] | None = None) -> Counter:
    """Create or update ``items`` (resources with resourceType and id, or NDJSON lines). Returns counts
    per outcome. ``keep_last_updated``: see ``repository.write_batch``. Lines that are not valid
    resources go to ``on_rejected``; without it, the first one stops the load (``InputFileError``)."""
    totals: Counter = Counter()
    many, batches = _batches(items, batch_size)
    first_load = many and _is_empty(engine)
    # Workers forked with the collector paused, which they inherit; and before a first load's transaction.
    with (gc_paused(), _Preparer(many, first_load, keep_last_updated) as preparer,
          _session(engine, first_load) as session):
        for batch in preparer.ahead(session, batches):
            if batch.unchanged and not batch.relabel:  # no write transaction (nor, on SQLite, the write lock)
                done = Counter(unchanged=len(batch.items))
            else:
                with session.writing() as conn:
                    done = _write(conn, batch, keep_last_updated, on_rejected, copies=not session.first_load,
                                  changed=preparer.known.changed)
            totals.update(done)
            if on_batch:
                on_batch(done)
    return totals


def _batches(items: Iterable, size: int) -> tuple[bool, Iterator[list]]:
    """Whether there is more than one batch, and the batches (each let go once written)."""
    it = iter(items)
    head = deque(filter(None, (list(islice(it, size)) for _ in range(2))))

    def batches() -> Iterator[list]:
        while head:
            yield head.popleft()
        yield from iter(lambda: list(islice(it, size)), [])

    return len(head) > 1, batches()


@contextmanager
def gc_paused():
    """No garbage collection meanwhile (see the module's docstring): the few cycles a load makes are
    collected after it (an import run collects its young objects every few batches: ``ror.feeds.runs``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- where batches are read and written ---------------------------------------------------------------

class _Session:
    """Connections for the known-line lookups and the writes: a new one each time, or the one
    transaction of a first load."""

    def __init__(self, engine: Engine, conn: Connection | None = None, first_load: bool = False):
        self.engine, self.conn, self.first_load = engine, conn, first_load

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        if self.conn is not None:
            yield self.conn
        else:
            with self.engine.connect() as conn:
                _plan_each_statement(conn)
                yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        if self.conn is not None:
            yield self.conn
        else:
            with write_transaction(self.engine) as conn:
                _plan_each_statement(conn)
                yield conn


def _plan_each_statement(conn: Connection) -> None:
    """On PostgreSQL, each statement of this transaction planned for its values. psycopg prepares a statement run
    five times, and PostgreSQL then kept the generic plan it chose while the tables were small: during a first load
    of 270,000 resources, the look-up of a batch's resources by id became a sequential scan of the growing table
    (0.3 s a batch and rising: benchmarks/RESULTS.md, session 7)."""
    if not is_sqlite(conn):
        dbapi_rows(conn, "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")  # true: this transaction


def _is_empty(engine: Engine) -> bool:
    with engine.connect() as conn:
        return not dbapi_rows(conn, "SELECT 1 FROM resource LIMIT 1")


def _lookup_indexes(conn: Connection) -> dict[str, tuple[str, str]]:
    """Name and definition, as the database has them, of the indexes not led by pk of the index tables and the
    fingerprints (whose digest index no line of a first load looks up), by name of their table. A load appends to the
    pk-led ones (pks only grow) but inserts each row at a random place in the others: built once from the loaded
    rows, these cost one sort."""
    inspector = inspect(conn)
    tables = {ix["name"]: table.name for table in (*INDEX_TABLES.values(), load_fingerprint)
              for ix in inspector.get_indexes(table.name) if ix["column_names"][:1] != ["pk"]}
    catalog = ("SELECT name, sql FROM sqlite_master WHERE type = 'index'" if is_sqlite(conn) else
               "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
    return {name: (tables[name], ddl) for name, ddl in dbapi_rows(conn, catalog) if name in tables}


@contextmanager
def _session(engine: Engine, first_load: bool) -> Iterator[_Session]:
    if not first_load:
        yield _Session(engine)
        return
    # DDL is transactional on both databases: a failed load rolls the dropped indexes back too.
    # On SQLite through a rollback journal when it can: its write-ahead log grew to 24 GB nationally, every page
    # written twice, and every page read of the index builds and copies searched through the log's index.
    with write_transaction(engine, direct=True) as conn:
        _plan_each_statement(conn)
        deferred = _lookup_indexes(conn)
        for name in deferred:
            dbapi_rows(conn, f"DROP INDEX {name}")
        yield _Session(engine, conn, first_load=True)
        # The offers' copies of their places' rows, all at once (batch by batch, a place written after its offers
        # would have had them looked up through an index dropped meanwhile), once the index they find the offers'
        # places by is built, and before the others: their rows are then sorted into those with the loaded ones,
        # rather than each inserted at a random place. 270k first load's end: 27.6, 29.3, 29.1 -> 26.8, 25.9, 24.9 s.
        first = [ddl for table, ddl in deferred.values() if table == derived.READS]
        for ddl in first:
            dbapi_rows(conn, ddl)
        derived.copy_all(conn, dbapi_rows(conn, "SELECT coalesce(max(tx), 0) FROM resource")[0][0])
        for _, ddl in deferred.values():
            if ddl not in first:
                dbapi_rows(conn, ddl)


# -- preparing lines: parse, content hash, index rows --------------------------------------------------

@dataclass
class _Batch:
    items: list[dict | Line]
    digests: dict[int, bytes]  # position of each line in items -> its digest
    known: set[bytes]  # digests of lines whose resource still has the content they gave
    relabel: dict[bytes, bytes]  # digest of a known line -> the earlier digest its fingerprint has (``_known_before``)
    prepared: Callable[[], list[repository.Prepared | Rejected]]  # the other lines', in order

    @property
    def unchanged(self) -> bool:
        """Only known lines (the whole batch of a no-op reload)."""
        return len(self.digests) == len(self.items) and all(d in self.known for d in self.digests.values())


class _Preparer:
    """Prepares the lines a batch must write: in this process when it writes them, or, for a load of
    more than one batch on more than one CPU, ahead in worker processes. They are forked (they start at
    once, with everything imported) when a batch first has lines to prepare, or, for a first load, before
    its transaction and writer lock exist, which they would otherwise inherit."""

    def __init__(self, many: bool, first_load: bool, keep_last_updated: bool):
        self.keep_last_updated = keep_last_updated
        # One worker per CPU, the writer's included: the writer waited on its one worker a third of the time, and
        # workers running ahead block on the ``_AHEAD`` batches queued. First load of 270,061 resources, both cores,
        # alternated: 95.2, 101.7, 107.0, 118.1 s -> 83.8, 94.3, 89.4, 85.7 s with the second worker.
        cpus = len(os.sched_getaffinity(0))
        self.workers = cpus if many and cpus > 1 else 0  # alone on its CPU, a worker would only add the pickling
        self.many = many
        self.known = _Known()
        self.pool = None
        self.first_load = first_load  # into an empty store: no line is looked up, none can be known
        if first_load:
            self._workers()

    def _workers(self):
        """The pool, its workers scheduled after the writer: the writer is the load's bottleneck, and the workers,
        which only need to be ahead of it, shared the cores with it evenly. First load of 270,061 resources on two
        cores: the writer waited 24.4 s for a CPU (``/proc/…/schedstat``), 6.2 s with the workers niced; wall,
        alternated, 126.7, 117.9, 130.9 s -> 112.4, 124.4, 114.3 s."""
        if self.pool is None and self.workers:
            self.pool = get_context("fork").Pool(self.workers, initializer=os.nice, initargs=(WORKER_NICENESS,))
        return self.pool

    def __enter__(self) -> _Preparer:
        return self

    def __exit__(self, *_) -> None:
        # Closed, not terminated, even on failure: the workers finish the at most ``_AHEAD`` batches queued
        # and exit. ``Pool.terminate`` could hang for good, its task thread blocked on the queue's lock while
        # being joined (seen in CI on a failed first load).
        if self.pool is not None:
            self.pool.close()
            self.pool.join()

    def ahead(self, session: _Session, batches: Iterable[list]) -> Iterator[_Batch]:
        """``batches`` with their known lines looked up and the others being prepared, ``_AHEAD``
        batches before each is yielded when there are workers to do it. A load of more than one batch reads
        and digests its batches in a thread (``_threaded``), ``_AHEAD`` batches before they are looked up."""
        digested = ((items, _digests(items)) for items in batches)
        pending: deque[_Batch] = deque()
        for items, digests in _threaded(digested, _AHEAD) if self.many else digested:
            with session.reading() as conn:
                pending.append(self._start(conn, items, digests))
            if len(pending) > (_AHEAD if self.pool else 0):
                yield pending.popleft()
        yield from pending

    def _start(self, conn: Connection, items: list[dict | Line], digests: dict[int, bytes]) -> _Batch:
        known: set[bytes] = set()
        relabel: dict[bytes, bytes] = {}
        if not self.first_load:
            known = self.known.among(conn, set(digests.values()))
            relabel = _known_before(conn, {d: items[i].raw for i, d in digests.items() if d not in known})
            known |= relabel.keys()
        todo = [items[i] for i, digest in digests.items() if digest not in known]
        pool = self._workers() if todo else None
        if pool is None:
            return _Batch(items, digests, known, relabel, lambda: [_prepare(line) for line in todo])
        jobs = [pool.apply_async(_prepare_in_worker, (todo[i:i + _JOB], self.keep_last_updated))
                for i in range(0, len(todo), _JOB)]
        return _Batch(items, digests, known, relabel, lambda: list(chain.from_iterable(j.get() for j in jobs)))


def _prepare(line: Line) -> repository.Prepared | Rejected:
    res = line.parse()
    return res if isinstance(res, Rejected) else repository.prepare(res)


def _prepare_in_worker(lines: list[Line], keep_last_updated: bool) -> list[repository.Prepared | Rejected]:
    """The lines prepared so that the writer needs neither the resources nor their serialisation
    (``repository.prepare_ahead``): the resources are not sent back, unpickling them would cost the writer
    more than parsing the lines."""
    out: list[repository.Prepared | Rejected] = []
    for line in lines:
        res = line.parse()
        out.append(res if isinstance(res, Rejected) else repository.prepare_ahead(res, keep_last_updated))
    return out


# -- writing a batch ------------------------------------------------------------------------------------

def _write(conn: Connection, batch: _Batch, keep_last_updated: bool,
           on_rejected: Callable[[Rejected], None] | None, copies: bool, changed: set[int] | None) -> Counter:
    """``changed``: if given, the pks of the resources this write creates or changes are added to it."""
    done: Counter = Counter()
    prepared: list[repository.Prepared] = []
    fingerprinted: dict[tuple[str, str], bytes] = {}
    if batch.relabel:
        dbapi_many(conn, "UPDATE load_fingerprint SET digest = {p} WHERE digest = {p}", list(batch.relabel.items()))
    from_lines = iter(batch.prepared())
    for i, item in enumerate(batch.items):
        if isinstance(item, Line):
            digest = batch.digests[i]
            if digest in batch.known:
                done["unchanged"] += 1
                continue
            p = next(from_lines)
            if isinstance(p, Rejected):
                if on_rejected is None:
                    raise InputFileError(f"{p.where}: {p.reason}")
                on_rejected(p)
                continue
            fingerprinted[(p.rtype, p.rid)] = digest
        else:
            p = repository.prepare(item)
        prepared.append(p)
    written = repository.write_batch(conn, prepared, keep_last_updated=keep_last_updated, copies=copies)
    done.update(w.outcome for w in written)
    if changed is not None:
        changed.update(w.pk for w in written if w.outcome != "unchanged")
    if fingerprinted:
        hashes = {(p.rtype, p.rid): p.content_hash for p in prepared}
        pks = {(w.rtype, w.rid): w.pk for w in written}
        # A resource this write created has no fingerprint yet: plain inserts (COPY on PostgreSQL).
        created = {(w.rtype, w.rid) for w in written if w.outcome == "created"}
        rows = {k: (pks[k], digest, hashes[k]) for k, digest in fingerprinted.items()}
        repository.insert_rows(conn, load_fingerprint, [row for k, row in rows.items() if k in created])
        dbapi_many(conn, _REMEMBER, [row for k, row in rows.items() if k not in created])
    return done


_REMEMBER = ("INSERT INTO load_fingerprint (pk, digest, content_hash) VALUES ({p}, {p}, {p}) ON CONFLICT (pk) "
             "DO UPDATE SET digest = excluded.digest, content_hash = excluded.content_hash")


def _digests(items: list[dict | Line]) -> dict[int, bytes]:
    """The digest of each line of a batch, by its position."""
    return {i: _digest(item.raw) for i, item in enumerate(items) if isinstance(item, Line)}


_END = object()


def _threaded(items: Iterator, ahead: int) -> Iterator:
    """``items``, made by a thread at most ``ahead`` before they are taken; an error it meets is raised here, in its
    turn. For a reload of unchanged lines: reading the files and SHA-256 (which lets other threads run on a line of
    more than 2 KB) in that thread overlap the look-ups of this one (SQLite's statements let other threads run too).
    One thread did each in turn: the national no-op reload took 63 s of one core, 40 % in the look-ups, 17 % in the
    digests, 14 % reading lines (py-spy)."""
    made: queue.Queue = queue.Queue(ahead)
    stopped = threading.Event()

    def put(entry: tuple) -> bool:
        while not stopped.is_set():  # the consumer gone (its error, or closed early): the thread ends
            try:
                made.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def make() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as e:  # raised in the consumer's thread, after the items made before it
            put((_END, e))

    thread = threading.Thread(target=make, name="ror-load-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = made.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stopped.set()
        thread.join()


def _digest(raw: bytes) -> bytes:
    """A line's fingerprint: SHA-256, truncated to 128 bits. With the CPU's SHA extensions it digests faster
    than BLAKE2b here (3.1 against 5.2 µs for a national line of 3.3 KB: ≈ 6 s of the ≈ 52 s of CPU of a
    national no-op reload)."""
    return hashlib.sha256(raw).digest()[:16]


def _known_before(conn: Connection, lines: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """Among ``lines`` (digest -> raw line) not known by their digest, those known by the BLAKE2b digest that
    versions before SHA-256 recorded (digest -> that one): skipped all the same, their fingerprints re-recorded
    under the new digest (``_write``), so that the first reload after the change does not parse every line
    again. Changed lines pay one more digest and look-up; once every fingerprint is re-recorded, that is all."""
    if not lines:
        return {}
    earlier = {hashlib.blake2b(raw, digest_size=16).digest(): d for d, raw in lines.items()}
    return {earlier[e]: e for e in _unchanged(conn, set(earlier))}


class _Known:
    """Which lines a reload knows: those whose resource still has the content they gave. Looked up batch by batch
    (``_unchanged``: 8–10 µs of CPU a line nationally, a random probe of the digest index), until the load has looked
    up ``1 / _READ_AT_ONCE`` of the store's fingerprints: it then reads every fingerprint still valid at once
    (national: 2.7 M in ~8 s, ~400 MB) and tests its other lines in memory, but for the resources it changed since
    (``changed``, which ``_write`` fills): their fingerprints changed with them. A resource another writer (the API)
    changes meanwhile keeps that write until the next reload, as when its line was looked up just before the write.
    A load of a few files into a large store keeps to the look-ups. National no-op reload, alternated: 57.3, 57.5 s
    -> 42.1, 42.6 s."""

    def __init__(self):
        self.looked_up = 0
        self.stored: int | None = None  # fingerprints in the store, about (their largest pk)
        self.valid: dict[bytes, int] | None = None  # digest -> pk, when read at once
        self.changed: set[int] | None = None  # pks of the resources this load changed since ``valid`` was read

    def among(self, conn: Connection, digests: set[bytes]) -> set[bytes]:
        if self.valid is None:
            if self.stored is None:
                self.stored = dbapi_rows(conn, "SELECT coalesce(max(pk), 0) FROM load_fingerprint")[0][0]
            self.looked_up += len(digests)
            if self.looked_up * _READ_AT_ONCE < self.stored:
                return _unchanged(conn, digests)
            cur = conn.connection.cursor()  # rows taken as they come: no list of millions of tuples besides the dict
            try:
                cur.execute("SELECT f.digest, f.pk FROM load_fingerprint f JOIN resource r ON r.pk = f.pk "
                            "AND r.content_hash = f.content_hash")
                self.valid = {bytes(d): pk for d, pk in cur}
            finally:
                cur.close()
            self.changed = set()
        valid, changed = self.valid, self.changed
        return {d for d in digests if (pk := valid.get(d)) is not None and pk not in changed}


def _unchanged(conn: Connection, digests: set[bytes]) -> set[bytes]:
    """The digests of lines whose resource still has the content they gave."""
    out: set[bytes] = set()
    todo = list(digests)
    for i in range(0, len(todo), 500):
        chunk = todo[i:i + 500]
        out.update(bytes(d) for (d,) in dbapi_rows(
            conn, "SELECT f.digest FROM load_fingerprint f JOIN resource r ON r.pk = f.pk AND r.content_hash = "
                  f"f.content_hash WHERE f.digest IN ({', '.join(['{p}'] * len(chunk))})", chunk))
    return out


def vacuum_analyze(engine: Engine) -> None:
    """After a large load on PostgreSQL: the planner's statistics refreshed (without them it chose nested loops that
    made a geographic search take minutes, measured by benchmarks/run.py), and the pages written marked all-visible,
    so that searches read the index tables' rows from their indexes alone rather than visiting the table for each
    (national store after its first load, in process: `_filter` p95 89 → 56 ms, delta 313 → 260; 30 s). Autovacuum
    would get there too, some minutes into serving. Pages left untouched since the last vacuum are skipped."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
