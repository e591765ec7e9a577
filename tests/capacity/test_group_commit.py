"""Group commit (``group_commit.grouped_write``): the writes queued behind the one in progress are applied in one
transaction, each in its own savepoint; one that fails is undone and answered alone, the others land, and
the capacity history stays exact."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from ror.api import app as app_module
from ror.capacity import history
from ror.errors import NotFound
from ror.fhir.files import read_resources
from ror.fhir.rights import FULL_ACCESS
from ror.fhir.service import Response
from ror.store import bulk, group_commit
from tests.capacity.test_protocol import FHIR, assert_history_chains, capacity, op, path, records
from tests.conftest import FIXTURES, LiveServer
from tests.integration.test_store import location

PLACES = {"1440990034/ZH-USP": ("02", "02"), "1440990026/ZH-GYN-A": ("02", "01"),
          "1440990026/ZH-GYN-B": ("02", "01"), "1440990026/ZH-NEONAT": ("02", "03")}


@pytest.fixture
def transactions(monkeypatch) -> list[int]:
    """Counts the write transactions the groups open."""
    opened: list[int] = []
    real = group_commit.write_transaction

    def counted(engine):
        opened.append(1)
        return real(engine)

    monkeypatch.setattr(group_commit, "write_transaction", counted)
    return opened


def _queued_behind_a_write(service, jobs: list) -> list:
    """Runs ``jobs`` (callables) in threads while a write holds the write transaction, once all of them wait
    in the queue: they then form one group. Returns each job's result or exception."""
    release, started = threading.Event(), threading.Event()

    def hold(conn):
        started.set()
        assert release.wait(30)

    def guarded(job):
        try:
            return job()
        except Exception as e:
            return e

    with ThreadPoolExecutor(len(jobs) + 1) as pool:
        holder = pool.submit(group_commit.grouped_write, service.engine, hold)
        assert started.wait(30)
        outcomes = [pool.submit(guarded, job) for job in jobs]
        queue = group_commit._GROUPS[service.engine.pool].queue
        deadline = time.monotonic() + 30
        while len(queue) < len(jobs) + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(queue) == len(jobs) + 1, "the jobs did not queue behind the held write"
        release.set()
        holder.result()
        return [o.result() for o in outcomes]


def test_queued_writes_share_one_transaction_and_a_failure_is_undone_alone(service, transactions):
    def create(i: int, fail: bool = False):
        def work(conn):
            res = {**location(), "id": f"grouped-{i}"}
            response = service._update(conn, "Location", res["id"], res, "http://t/fhir", None, FULL_ACCESS)
            if fail:  # after its write: the savepoint must undo it
                raise RuntimeError(f"write {i} fails")
            return response.status
        return lambda: group_commit.grouped_write(service.engine, work)

    outcomes = _queued_behind_a_write(service, [create(0), create(1, fail=True), create(2), create(3)])
    assert outcomes[0] == outcomes[2] == outcomes[3] == 201
    assert isinstance(outcomes[1], RuntimeError) and str(outcomes[1]) == "write 1 fails"
    assert len(transactions) == 2  # the held write's, then one for the four queued behind it
    for i in (0, 2, 3):
        assert service.read("Location", f"grouped-{i}").status == 200
    with pytest.raises(NotFound):
        service.read("Location", "grouped-1")


def test_grouped_patches_are_written_as_one_batch_and_answered_one_by_one(service, transactions):
    """Supplier PATCHes queued together: those computed ahead are written in one batch (one transaction
    number); a second PATCH of a place in the batch is redone after it on the new version; an invalid indicator
    gets its 400 and an unknown place its 404, nothing of them is written; the history is exact."""
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)

    def patch(ident, body):
        return lambda: service.conditional_patch("Location", [("identifier", ident)], json.dumps(body).encode(),
                                                 FHIR, "http://t").status

    valid = [patch(ident, op("replace", path(status, gender), capacity(status, 40 + k, gender)))
             for k, (ident, (status, gender)) in enumerate(PLACES.items())]
    again = patch("1440990034/ZH-USP", op("replace", path("02", "02"), capacity("02", 60, "02")))
    invalid = patch("1440990034/ZH-USP", op("add", "Location", capacity(status="09")))
    unknown = patch("1440990034/NO-SUCH-PLACE", op("replace", path(), capacity(nb=3)))
    outcomes = _queued_behind_a_write(service, [valid[0], invalid, valid[1], unknown, again, valid[2], valid[3]])
    assert [o if isinstance(o, int) else type(o).__name__ for o in outcomes] == \
        [200, "BusinessRule", 200, "NotFound", 200, 200, 200]
    assert len(transactions) == 2
    with service.engine.connect() as conn:
        txs = {}
        for k, (ident, (status, gender)) in enumerate(PLACES.items()):
            loc = service.search_result(conn, "Location", [("identifier", ident)]).matches[0]
            events = [(e.old_value, e.new_value) for e in history.query(conn, location_id=loc.rid)]
            txs[ident] = conn.execute(text("SELECT tx FROM resource WHERE rid = :rid"), {"rid": loc.rid}).scalar()
            if ident == "1440990034/ZH-USP":  # in the order the two PATCHes queued: an unbroken chain
                assert events in ([(2, 40), (40, 60)], [(2, 60), (60, 40)])
            else:
                assert [new for _, new in events] == [40 + k]
            assert records(orjson.loads(loc.body))[(status, "01", gender, "01")]["nb"] == events[-1][1]
    usp = txs.pop("1440990034/ZH-USP")
    assert len(set(txs.values())) == 1 and usp > next(iter(txs.values()))  # one batch, then the PATCH redone


def test_concurrent_suppliers_with_failures_lose_nothing(service):
    """8 clients, 4 places: 120 valid replaces with distinct values mixed with invalid indicators and unknown
    places, all grouped as they come: every valid change lands once in an unbroken chain per indicator, no
    failed one leaves a trace, and the final state is the last change of each chain."""
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    jobs = [(ident, op("replace", path(status, gender), capacity(status, 100 + i, gender)), 200)
            for i in range(30) for ident, (status, gender) in PLACES.items()]
    for i in range(0, len(jobs), 6):
        jobs.insert(i, ("1440990026/ZH-GYN-A", op("replace", path("02", "01"), capacity(nb=-1, gender="01")), 400))
        jobs.insert(i + 3, ("1440990026/UNKNOWN", op("replace", path(), capacity(nb=1)), 404))

    def run(job):
        ident, body, _ = job
        try:
            return service.conditional_patch("Location", [("identifier", ident)], json.dumps(body).encode(), FHIR,
                                             "http://t").status
        except Exception as e:
            return getattr(e, "status", e)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(run, jobs)) == [expected for _, _, expected in jobs]
    assert_history_chains(service, PLACES, range(100, 130))


def test_the_leader_prepares_the_writes_of_its_group_at_once_before_the_write_transaction(service, transactions):
    """The ``prepare`` step of queued writes is called by the thread leading their group, once for all the writes
    that share it (in queue order), before the group's write transaction; one that fails fails only its writes."""
    calls: list[tuple[int, list, int]] = []  # (thread, works, write transactions opened so far)

    def prepare(works):
        calls.append((threading.get_ident(), list(works), len(transactions)))

    def failing(works):
        raise RuntimeError("cannot prepare")

    works = [lambda conn, i=i: i for i in range(4)]
    steps = [prepare, failing, prepare, None]

    def job(i: int):
        return lambda: (threading.get_ident(), group_commit.grouped_write(service.engine, works[i], None, steps[i]))

    outcomes = _queued_behind_a_write(service, [job(i) for i in range(4)])
    assert [o[1] if isinstance(o, tuple) else str(o) for o in outcomes] == [0, "cannot prepare", 2, 3]
    assert len(calls) == 1
    leader, prepared, opened = calls[0]
    assert prepared == [works[0], works[2]]
    assert opened == 1  # the held write's transaction only: the group's opens after
    assert len(transactions) == 2
    assert leader in {o[0] for o in outcomes if isinstance(o, tuple)}  # one of the queued callers computed them


def test_queued_patches_are_computed_by_one_thread_in_one_read_transaction(service, transactions, monkeypatch):
    """Single PATCHes queued together are computed ahead by the thread leading their group, one after the other
    in one read transaction, not each by its caller's thread; they are then written as one batch."""
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    computed: list[tuple[int, int]] = []  # (thread, read connection)
    real = service._patched

    def patched(conn, *args, **kwargs):
        computed.append((threading.get_ident(), id(conn)))
        return real(conn, *args, **kwargs)

    monkeypatch.setattr(service, "_patched", patched)

    def patch(ident, status, gender, nb):
        body = json.dumps(op("replace", path(status, gender), capacity(status, nb, gender))).encode()
        return lambda: service.conditional_patch("Location", [("identifier", ident)], body, FHIR, "http://t").status

    outcomes = _queued_behind_a_write(service, [patch(ident, status, gender, 50 + k)
                                                for k, (ident, (status, gender)) in enumerate(PLACES.items())])
    assert outcomes == [200] * len(PLACES)
    assert len(computed) == len(PLACES) and len(set(computed)) == 1  # no PATCH computed again under the lock
    assert len(transactions) == 2


def test_a_database_error_while_computing_ahead_leaves_the_patches_to_the_write_lock(service, transactions,
                                                                                    monkeypatch, caplog):
    """If the read fails while a group's PATCHes are computed ahead, those not computed yet are computed under the
    write lock, each alone: every PATCH is still applied once, and the history stays exact."""
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    real = service._ahead
    seen: list[int] = []

    def ahead(conn, *args):
        seen.append(1)
        if len(seen) == 2:
            raise OperationalError("SELECT …", {}, RuntimeError("disk I/O error"))
        return real(conn, *args)

    monkeypatch.setattr(service, "_ahead", ahead)

    def patch(ident, status, gender, nb):
        body = json.dumps(op("replace", path(status, gender), capacity(status, nb, gender))).encode()
        return lambda: service.conditional_patch("Location", [("identifier", ident)], body, FHIR, "http://t").status

    outcomes = _queued_behind_a_write(service, [patch(ident, status, gender, 70)
                                                for ident, (status, gender) in PLACES.items()])
    assert outcomes == [200] * len(PLACES)
    assert len(seen) == 2  # the others were not computed ahead
    assert "not computed ahead" in caplog.text
    assert len(transactions) == 2
    assert_history_chains(service, PLACES, [70])


def test_patches_from_an_event_loop_are_written_by_one_lane_thread(service, transactions, monkeypatch):
    """Single PATCHes sent from an event loop (the API's) take no thread each: one thread, the lane, queues all
    those waiting and writes them as groups; each is answered on its own (an unknown place's 404 among them),
    the others land once."""
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    runs: list[tuple[int, int]] = []  # (thread, writes queued at once)
    real = group_commit._CommitGroups._run_all

    def run_all(self, engine, pending):
        runs.append((threading.get_ident(), len(pending)))
        real(self, engine, pending)

    monkeypatch.setattr(group_commit._CommitGroups, "_run_all", run_all)
    release, started, holder = threading.Event(), threading.Event(), []

    def hold(conn):
        holder.append(threading.get_ident())
        started.set()
        assert release.wait(30)

    patches = [(ident, op("replace", path(status, gender), capacity(status, 70, gender)))
               for ident, (status, gender) in PLACES.items()]
    patches.insert(2, ("1440990034/NO-SUCH-PLACE", op("replace", path(), capacity(nb=3))))

    async def send_all():
        sent = [asyncio.ensure_future(service.conditional_patch_soon(
            "Location", [("identifier", ident)], json.dumps(body).encode(), FHIR, "http://t"))
            for ident, body in patches]
        groups = group_commit._GROUPS[service.engine.pool]
        deadline = time.monotonic() + 30
        while len(groups.queue) + len(groups.submitted) < len(patches) + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        release.set()
        return await asyncio.gather(*sent, return_exceptions=True)

    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(group_commit.grouped_write, service.engine, hold)
        assert started.wait(30)
        outcomes = asyncio.run(send_all())
        held.result()
    assert [o.status if isinstance(o, Response) else type(o).__name__ for o in outcomes] == \
        [200, 200, "NotFound", 200, 200]
    lane = [(thread, n) for thread, n in runs if thread != holder[0]]
    assert len({thread for thread, _ in lane}) == 1 and lane[0][0] != threading.get_ident()
    assert sum(n for _, n in lane) == len(patches)  # each queued once, by the lane
    assert len(transactions) == 1 + len(lane)  # the held write's, then one per group
    assert_history_chains(service, PLACES, [70])


def test_concurrent_suppliers_over_http_lose_nothing_without_a_thread_each(service, monkeypatch):
    """8 clients PATCH 4 places over HTTP (through the write lane), valid changes mixed with invalid indicators
    and unknown places: each gets its own status, every valid change lands once in an unbroken chain per
    indicator, and no PATCH went through the threadpool."""
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    hops: list = []
    real = app_module.run_in_threadpool

    async def counted(fn, *args, **kwargs):
        hops.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(app_module, "run_in_threadpool", counted)
    jobs = [(ident, op("replace", path(status, gender), capacity(status, 100 + i, gender)), 200)
            for i in range(15) for ident, (status, gender) in PLACES.items()]
    for i in range(0, len(jobs), 6):
        jobs.insert(i, ("1440990026/ZH-GYN-A", op("replace", path("02", "01"), capacity(nb=-1, gender="01")), 400))
        jobs.insert(i + 3, ("1440990026/UNKNOWN", op("replace", path(), capacity(nb=1)), 404))
    with LiveServer(service) as live, httpx.Client(base_url=live.base, timeout=60) as client:
        def run(job):
            ident, body, _ = job
            return client.patch(f"/Location?identifier={ident}", content=json.dumps(body),
                                headers={"Content-Type": FHIR}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(run, jobs)) == [expected for _, _, expected in jobs]
        assert hops == []  # before the server stops (its shutdown hops)
    assert_history_chains(service, PLACES, range(100, 115))


def test_a_write_submitted_from_a_loop_whose_executor_is_shut_down_is_still_written(service):
    """The lane runs in the loop's executor; a loop that is closing refuses it, and the lane then gets a thread
    of its own rather than leave the write (and every later one) waiting for good."""
    async def submit():
        await asyncio.get_running_loop().shutdown_default_executor()
        return await asyncio.wait_for(group_commit.grouped_write_soon(service.engine, lambda conn: 42), 10)
    assert asyncio.run(submit()) == 42
    assert group_commit.grouped_write(service.engine, lambda conn: 43) == 43  # the lane is free again
