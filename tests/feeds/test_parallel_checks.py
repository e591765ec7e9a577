"""A feed's large batches are checked in worker processes (``ror.profiles.parallel``) with the outcome one process
gives: same issues in the same order (the references resolved on the run's connection), same resources and index
rows stored."""

from __future__ import annotations

import copy
import gc
import os
from concurrent.futures.process import BrokenProcessPool

import orjson
import pytest
from sqlalchemy import create_engine, select

from ror.feeds import runs
from ror.feeds.finess import FinessFeed
from ror.feeds.rpps import RppsFeed
from ror.feeds.runs import run_import
from ror.feeds.schema import feed_problem, feed_run
from ror.feeds.validation import feed_validator
from ror.profiles import parallel
from ror.profiles.parallel import CheckPool
from ror.store.bulk import WORKER_NICENESS
from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from ror.store.schema import INDEX_TABLES, resource
from tests.feeds.conftest import FINESS_SAMPLE, RPPS_SAMPLE, all_stored

_NOS = "https://mos.esante.gouv.fr/NOS"


def _broken(stored: list[dict]) -> list[dict]:
    """Real resources made wrong in the ways a feed meets: a code NOS never knew, a required element gone, a
    reference to nothing, an unknown element."""
    org = next(r for r in stored if r["resourceType"] == "Organization" and r.get("type"))
    role = next(r for r in stored if r["resourceType"] == "PractitionerRole")
    bad_code = copy.deepcopy(org)
    bad_code["type"][0]["coding"][0]["code"] = "not-a-nos-code"
    no_identifier = copy.deepcopy(org)
    del no_identifier["identifier"]
    dangling = copy.deepcopy(role)
    dangling["practitioner"] = {"reference": "Practitioner/nobody-here"}
    unknown = {**copy.deepcopy(role), "colour": "blue"}
    return [bad_code, no_identifier, dangling, unknown]


@pytest.fixture
def loaded(engine):
    run_import(engine, FinessFeed(), FINESS_SAMPLE)
    run_import(engine, RppsFeed(), RPPS_SAMPLE)
    with engine.connect() as conn:
        stored = [orjson.loads(b) for b in conn.execute(select(resource.c.body).order_by(resource.c.pk)).scalars()]
    return engine, stored


def test_workers_give_the_verdicts_of_one_process_on_real_records(loaded):
    engine, stored = loaded
    batch = stored + _broken(stored)
    validator = feed_validator()
    pool = CheckPool(engine, validator, feed_validator, min_shared=1, workers=2)
    try:
        with engine.connect() as conn:
            alone = validator.validate_many(copy.deepcopy(batch), conn, at="2026-11-02T23:59:59")
            shared = validator.resolve_references(conn, pool.check_many(copy.deepcopy(batch), conn,
                                                                          at="2026-11-02T23:59:59"))
    finally:
        pool.close()
    assert pool.shared == len(batch) > 100
    assert shared == alone
    broken = alone[-4:]
    assert all(any(i.severity == "error" for i in issues) for issues in broken)
    assert any("does not exist in ROR national" in i.diagnostics for i in broken[2])
    retired = [i for issues in alone[:-4] for i in issues if "was retired on" in i.diagnostics]
    assert len(retired) >= 2  # the sample's two sites in categories NOS retired before the extraction date


def test_small_batches_and_a_memory_store_stay_in_the_process(engine):
    validator = feed_validator()
    pool = CheckPool(engine, validator, feed_validator, min_shared=50, workers=2)
    with engine.connect() as conn:
        assert pool.check_many([{"resourceType": "Organization", "id": "x"}], conn)[0][0]
    assert (pool.shared, pool._pool) == (0, None)
    assert CheckPool(create_engine("sqlite://"), validator, feed_validator, workers=2).workers == 0


def _pools(pools: list[CheckPool], make_validator=None, **options):
    """What a run calls to make its ``CheckPool``: one with ``options``, kept in ``pools``."""
    def pool(engine, validator, default):
        pools.append(CheckPool(engine, validator, make_validator or default, **options))
        return pools[-1]
    return pool


def _import_records(engine, pools: list[CheckPool], make_validator=None, **options):
    """The FINESS sample imported with its batches checked by a ``CheckPool`` with ``options``: the run's report
    and problems."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runs, "CheckPool", _pools(pools, make_validator, **options))
        report = run_import(engine, FinessFeed(), FINESS_SAMPLE)
    with engine.connect() as conn:
        problems = [tuple(r) for r in conn.execute(
            select(feed_problem.c.line, feed_problem.c.field, feed_problem.c.severity, feed_problem.c.reason)
            .where(feed_problem.c.run_id == report.run_id).order_by(feed_problem.c.problem_id))]
    return report, problems


def test_an_import_checked_in_workers_stores_and_reports_what_one_process_does(engine):
    pools: list[CheckPool] = []
    report, problems = _import_records(engine, pools, min_shared=10, workers=2)
    assert pools[0].shared >= 100 and pools[0]._pool is None  # used, then closed with the run
    assert (report.counts["created"], report.counts["rejected"]) == (100, 0)
    # the real extract's two sites in categories NOS retired before its date (test_feed_validation)
    assert [(line, field) for line, field, severity, _ in problems if severity == "warning"
            and field == "Organization.type[0].coding[0]"] == [(20, "Organization.type[0].coding[0]"),
                                                                (68, "Organization.type[0].coding[0]")]


def _no_validator():
    raise RuntimeError("no validator in this worker")


def test_a_worker_that_cannot_start_fails_the_run_instead_of_hanging(engine):
    with pytest.raises(BrokenProcessPool):
        _import_records(engine, [], _no_validator, min_shared=10, workers=2)
    with engine.connect() as conn:
        status, message = conn.execute(select(feed_run.c.status, feed_run.c.message)).one()
        stored = conn.execute(select(resource.c.pk)).all()
    assert status == "failed" and "BrokenProcessPool" in message
    assert stored == []  # the batch being judged was not written


def _store_rows(engine) -> tuple[dict, set]:
    """Each stored resource without its stamps, and every index row by (type, id) but the `_lastUpdated` ones."""
    rows = set()
    with engine.connect() as conn:
        for kind, table in INDEX_TABLES.items():
            values = [c for c in table.columns if c.name not in ("pk", "since_tx", "until_tx")]
            q = select(resource.c.rtype, resource.c.rid, *values).join(resource, resource.c.pk == table.c.pk)
            rows |= {(kind, *r) for r in conn.execute(q) if not r[2].endswith("._lastUpdated")}
    return all_stored(engine), rows


def test_an_import_checked_in_workers_stores_the_resources_and_rows_of_one_in_one_process(tmp_path):
    """The FINESS and RPPS samples imported into two SQLite stores, one with every batch checked in workers: the
    same resources and the same index rows."""
    stores = []
    for name, options in (("pooled", {"min_shared": 10, "workers": 2}), ("alone", {"workers": 0})):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(engine)
        pools: list[CheckPool] = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runs, "CheckPool", _pools(pools, **options))
            run_import(engine, FinessFeed(), FINESS_SAMPLE)
            run_import(engine, RppsFeed(), RPPS_SAMPLE)
        shared = sum(p.shared for p in pools)
        assert shared > 100 if name == "pooled" else shared == 0
        stores.append(_store_rows(engine))
        engine.dispose()
    (pooled, pooled_rows), (alone, alone_rows) = stores
    assert pooled == alone and len(pooled) > 100
    assert pooled_rows == alone_rows and len(pooled_rows) > 2000



def test_a_batch_is_checked_while_the_one_before_is_written(engine, tmp_path, monkeypatch):
    """The run stages and merges a batch and starts its checks in the workers before it writes the batch before it:
    the workers check one while the run writes the other (``Run._execute``). What it stores is what a one-batch
    import checked in its own process stores."""
    events: list[tuple[str, int]] = []
    begin, write_staged = runs.Run._begin, runs.Run._write_staged
    batches: list[runs._Staged] = []  # in the order they began

    def begun(self, records, loose):
        batches.append(begin(self, records, loose))
        events.append(("begun", len(batches) - 1))
        return batches[-1]

    def written(self, conn, batch):
        events.append(("written", next(n for n, b in enumerate(batches) if b is batch)))
        return write_staged(self, conn, batch)

    monkeypatch.setattr(runs.Run, "_begin", begun)
    monkeypatch.setattr(runs.Run, "_write_staged", written)
    pools: list[CheckPool] = []
    monkeypatch.setattr(runs, "CheckPool", _pools(pools, min_shared=1, workers=2))
    run_import(engine, FinessFeed(), FINESS_SAMPLE)
    events.clear()
    report = run_import(engine, RppsFeed(), RPPS_SAMPLE, batch_size=5)
    last = len(batches) - 1  # the first, the FINESS import's one batch
    assert pools[1].shared > 20 and last > 5
    assert [n for kind, n in events if kind == "written"] == list(range(1, last + 1))
    assert all(events.index(("begun", n + 1)) < events.index(("written", n)) for n in range(1, last))
    monkeypatch.undo()
    alone = make_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    upgrade(alone)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runs, "CheckPool", _pools([], workers=0))
        run_import(alone, FinessFeed(), FINESS_SAMPLE)
        assert run_import(alone, RppsFeed(), RPPS_SAMPLE).counts == report.counts
    assert all_stored(engine) == all_stored(alone)
    alone.dispose()


def test_the_check_workers_are_scheduled_after_the_run(engine):
    """The run, which writes, is an import's bottleneck: the workers checking ahead of it run at a lower priority."""
    pool = CheckPool(engine, feed_validator(), feed_validator, min_shared=1, workers=2)
    try:
        with engine.connect() as conn:
            pool.check_many([{"resourceType": "Organization", "id": "x"}], conn)
        assert pool._pool.submit(os.nice, 0).result() == min(os.nice(0) + WORKER_NICENESS, 19)
    finally:
        pool.close()


def test_the_check_workers_collect_their_garbage_between_jobs(engine):
    """A check worker's collector is paused (its collections traversed every job's resources and results); what a
    job left in cycles is collected when the next one starts."""
    pool = CheckPool(engine, feed_validator(), feed_validator, min_shared=1, workers=2)
    try:
        with engine.connect() as conn:
            pool.check_many([{"resourceType": "Organization", "id": "x"}], conn)
        assert pool._pool.submit(gc.isenabled).result() is False
        assert pool._pool.submit(_a_job_after_a_cycle).result() == 0
    finally:
        pool.close()


class _Cycle:
    def __init__(self):
        self.me = self


def _a_job_after_a_cycle() -> int:
    """In a check worker: a cycle left, then a job; how many such cycles are left."""
    _Cycle()
    parallel._check(orjson.dumps([{"resourceType": "Organization", "id": "x"}]), None, None, None)
    return sum(isinstance(o, _Cycle) for o in gc.get_objects())
