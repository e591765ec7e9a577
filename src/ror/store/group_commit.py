"""Group commit of the API's writes (capacity PATCHes above all): see ``_CommitGroups``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.pool import Pool

from ror.store.engine import dbapi_rows, per_pool, write_transaction

T = TypeVar("T")

Together = Callable[[Connection, list], list]  # works of a group -> their results, None for those to run alone
Prepare = Callable[[list], None]  # works of a group, prepared before the write transaction


class _Pending:
    """A write waiting in a ``_CommitGroups`` queue; ``turn`` is set when it is done or when it is to lead."""

    __slots__ = ("done", "error", "prepare", "result", "together", "turn", "work")

    def __init__(self, work: Callable[[Connection], T], together: Together | None, prepare: Prepare | None):
        self.work = work
        self.together = together
        self.prepare = prepare
        self.turn = threading.Event()
        self.done = False
        self.result = None
        self.error: BaseException | None = None

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


class _CommitGroups:
    """Group commit: the writes of a process queued behind the one in progress are applied together, in
    one transaction, by the first of them (the leader); each caller is answered once the group is committed
    (visible at its next request). The write slot, the connection checkout, BEGIN and COMMIT (WAL frames,
    PostgreSQL's WAL flush) are paid once per group, and the write lock changes hands between threads (under
    the GIL, each hand-over a wait) once per group instead of once per write.

    A write may come with a ``prepare`` function (PATCHes computed ahead of the write lock), which the leader calls
    before taking the write slot, once with all the writes of its group that share it: the threads of a process
    that wait to write are then blocked, not computing side by side. Every SQLite call releases the GIL, and with
    several threads wanting it each call handed it over (two thread switches): with 8 PATCHes in flight in one
    process, up to ~120 switches per PATCH and a fifth of its CPU in the kernel. Computed by one thread, the group
    holds every write that came meanwhile; the other worker processes compute theirs while this one writes.

    Writes that share a ``together`` function (the capacity PATCHes computed ahead) are passed to it at once,
    in a savepoint, to be written as one batch (one transaction number, one statement per table, as a Bundle
    is); those it leaves (None: another write came first, If-Match) and all the others run alone, each in its
    own savepoint, so that one failure (404, 412, invalid, deadlock victim) is undone and answered alone while
    the others are committed. If ``together`` fails, its writes all run alone.

    Writes submitted from an event loop (``submit``) take no thread each: they wait in ``submitted`` while one
    thread, the lane, queues all those waiting at once and answers them with one call to each loop, so a group
    costs one thread wake-up each way instead of three per write (loop -> thread, leader -> thread -> loop); on
    this virtual machine each futex wake was ~6 % of a capacity PATCH's CPU (profiled)."""

    def __init__(self):
        self.mutex = threading.Lock()
        self.queue: list[_Pending] = []  # the first one leads (or will once the current group is done)
        self.submitted: list[tuple[_Pending, asyncio.Future]] = []  # waiting for the lane
        self.lane_busy = False

    def run(self, engine: Engine, work: Callable[[Connection], T], together: Together | None,
            prepare: Prepare | None) -> T:
        me = _Pending(work, together, prepare)
        self._run_all(engine, [me])
        return me.outcome()

    def _run_all(self, engine: Engine, pending: list[_Pending]) -> None:
        """Queues ``pending`` in order and returns once all are done, leading the groups where their turn comes."""
        with self.mutex:
            leads = not self.queue
            self.queue += pending
        for i, p in enumerate(pending):
            if i or not leads:
                p.turn.wait()
            if not p.done:
                self._lead(engine)

    def submit(self, engine: Engine, work: Callable[[Connection], T], together: Together | None,
               prepare: Prepare | None) -> asyncio.Future:
        """``run`` for the running event loop: a future of its result, written by the lane."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.mutex:
            self.submitted.append((_Pending(work, together, prepare), future))
            start, self.lane_busy = not self.lane_busy, True
        if start:
            try:
                loop.run_in_executor(None, self._lane, engine)
            except RuntimeError:  # the loop's executor is shut down (the loop is closing): the lane gets a thread
                threading.Thread(target=self._lane, args=(engine,), name="ror-write-lane", daemon=True).start()
        return future

    def _lane(self, engine: Engine) -> None:
        """Writes the submitted writes, those waiting together, until none is left."""
        while True:
            with self.mutex:
                batch, self.submitted = self.submitted, []
                if not batch:
                    self.lane_busy = False
                    return
            self._run_all(engine, [p for p, _ in batch])
            loops: dict[asyncio.AbstractEventLoop, list] = {}
            for p, future in batch:
                loops.setdefault(future.get_loop(), []).append((p, future))
            for loop, answered in loops.items():
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for these
                    loop.call_soon_threadsafe(_answer, answered)

    def _lead(self, engine: Engine) -> None:
        with self.mutex:
            group = self.queue[:_GROUP_MAX]
        prepared = _prepare(group)
        if not prepared:
            group = group[:1]  # the leader alone until the write slot is held: others join meanwhile
        try:
            with write_transaction(engine) as conn:
                if not prepared:
                    with self.mutex:
                        group = self.queue[:_GROUP_MAX]
                writes = [p for p in group if p.error is None]
                if len(writes) == 1:  # alone: its failure rolls the transaction back (no savepoint to pay)
                    writes[0].result = writes[0].work(conn)
                elif writes:
                    _apply(conn, writes)
        except BaseException as e:  # alone and failed, or BEGIN or COMMIT failed: nothing of the group is written
            for p in group:
                if p.error is None:
                    p.result, p.error = None, e
        finally:
            with self.mutex:
                del self.queue[:len(group)]
                following = self.queue[0] if self.queue else None
            for p in group:
                p.done = True
                p.turn.set()
            if following is not None:
                following.turn.set()  # not done: it leads the next group


def _answer(answered: list[tuple[_Pending, asyncio.Future]]) -> None:
    for p, future in answered:
        if not future.done():  # cancelled: the client left (the write stands, as a thread's would)
            if p.error is not None:
                future.set_exception(p.error)
            else:
                future.set_result(p.result)


def _prepare(group: list[_Pending]) -> bool:
    """Calls the ``prepare`` functions of ``group``, each once with its writes; whether there was any. A function
    that fails fails its writes (answered with its error, nothing of them written)."""
    steps: dict[Prepare, list[_Pending]] = {}
    for p in group:
        if p.prepare is not None:
            steps.setdefault(p.prepare, []).append(p)
    for prepare, members in steps.items():
        try:
            prepare([p.work for p in members])
        except Exception as e:
            for p in members:
                p.error = e
    return bool(steps)


def _apply(conn: Connection, group: list[_Pending]) -> None:
    """The writes of a group: those that share a ``together`` function as one batch, then the rest alone."""
    batches: dict[Together, list[_Pending]] = {}
    alone: list[_Pending] = []
    for p in group:
        (alone if p.together is None else batches.setdefault(p.together, [])).append(p)
    for together, members in batches.items():
        if len(members) == 1:
            alone += members
            continue
        results, error = _in_savepoint(conn, lambda t=together, m=members: t(conn, [p.work for p in m]))
        for p, result in zip(members, results if error is None else [None] * len(members), strict=True):
            if result is None:
                alone.append(p)
            else:
                p.result = result
    for p in alone:
        p.result, p.error = _in_savepoint(conn, lambda p=p: p.work(conn))


def _in_savepoint(conn: Connection, run: Callable[[], T]) -> tuple[T | None, Exception | None]:
    """``run()`` in a savepoint of the group's transaction, rolled back alone if it fails: (result, None) or
    (None, error). Through the DBAPI cursor: SQLAlchemy's nested transactions cost more than a capacity
    PATCH's own statements (profiled)."""
    dbapi_rows(conn, "SAVEPOINT ror_write")
    try:
        return run(), None
    except Exception as e:
        dbapi_rows(conn, "ROLLBACK TO SAVEPOINT ror_write")
        return None, e
    finally:
        dbapi_rows(conn, "RELEASE SAVEPOINT ror_write")


_GROUP_MAX = 64  # writes per group: bounds the wait of the first one
_GROUPS: weakref.WeakKeyDictionary[Pool, _CommitGroups] = weakref.WeakKeyDictionary()


def grouped_write(engine: Engine, work: Callable[[Connection], T], together: Together | None = None,
                  prepare: Prepare | None = None) -> T:
    """``work(conn)`` in a write transaction shared with this process's writes queued at the same time
    (``_CommitGroups``), or with them through ``together``; returns its result or raises its error once the
    group is committed. ``work`` must not depend on being alone in its transaction (others' writes precede it).
    ``prepare``, if given, is called first with ``work`` and the group's other works that share it, outside the
    write lock, by the thread leading the group (maybe another than the caller's); its error is the write's."""
    return per_pool(_GROUPS, engine, _CommitGroups).run(engine, work, together, prepare)


def grouped_write_soon(engine: Engine, work: Callable[[Connection], T], together: Together | None = None,
                       prepare: Prepare | None = None) -> asyncio.Future:
    """``grouped_write`` from the running event loop, without a thread per write: a future of its result."""
    return per_pool(_GROUPS, engine, _CommitGroups).submit(engine, work, together, prepare)
