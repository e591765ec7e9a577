"""A feed's file read in a forked process (``ror.feeds.readahead``) gives the run exactly what reading it in the run's
process gives: the same stored resources, counts, run message and problems, the same error at the same place, and
an early stop ends the reader."""

from __future__ import annotations

import gc
import multiprocessing
import os

import orjson
import pytest
from sqlalchemy import select

from ror.errors import InputFileError
from ror.feeds.fileset import collect
from ror.feeds.finess import FinessFeed
from ror.feeds.readahead import read_ahead
from ror.feeds.regional import RegionalFeed
from ror.feeds.reports import run_problems
from ror.feeds.rpps import RppsFeed
from ror.feeds.runs import run_import
from ror.feeds.schema import feed_contribution, feed_run
from ror.generate.runner import generate
from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from tests.feeds.conftest import CSD_SAMPLE, FINESS_SAMPLE, RPPS_SAMPLE, all_stored
from tests.feeds.test_finess_json_closing import _flux

REGIONS = ["53", "84"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Generated files of every kind, some records dirty (rejected or warned about)."""
    out = tmp_path_factory.mktemp("readahead")
    generate(out, "1500", seed=5, regions=REGIONS, jobs=1, dirty=0.04)
    return out


def _stores(tmp_path) -> dict[bool, object]:
    stores = {}
    for fork in (False, True):
        stores[fork] = make_engine(f"sqlite:///{tmp_path / f'fork-{fork}.db'}")
        upgrade(stores[fork])
    return stores


def _outcome(engine, report) -> tuple:
    """What a run left, without its id and times."""
    problems = [(p["line"], p["field"], p["reason"], p["severity"], p["record"])
                for p in run_problems(engine, report.run_id)]
    return report.status, dict(report.counts), report.message, problems


def _contributions(engine) -> list[tuple]:
    c = feed_contribution.c
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(c.source, c.rtype, c.rid, c.scope, c.said, c.said_version)
                                               .where(c.said.is_not(None)).order_by(c.source, c.rtype, c.rid))]


def test_a_forked_reader_gives_the_run_what_reading_in_process_gives(dataset, tmp_path):
    sources = [(FinessFeed, FINESS_SAMPLE), (RppsFeed, RPPS_SAMPLE), (lambda: RegionalFeed("93"), CSD_SAMPLE)]
    sources += [(FinessFeed, p) for p in (dataset / "finess").iterdir()]
    sources += [(RppsFeed, p) for p in (dataset / "rpps").iterdir()]
    for region in REGIONS:
        sources.append((lambda r=region: RegionalFeed(r), collect([dataset / "fhir" / region])))
        sources += [(lambda r=region: RegionalFeed(r), p) for p in (dataset / "csd").glob(f"*{region}*")]
    assert len(sources) == 9
    stores = _stores(tmp_path)
    problems = 0
    for make_feed, path in sources:
        got = {fork: _outcome(engine, run_import(engine, make_feed(), path, batch_size=300, fork_reader=fork))
               for fork, engine in stores.items()}
        assert got[True] == got[False], path
        assert got[True][1]["records"] > 0
        problems += len(got[True][3])
    assert problems > 50  # the dirty records, rejected or warned about
    forked, in_process = (all_stored(stores[f], versions=True) for f in (True, False))
    assert forked == in_process and len(forked) > 2500
    said = {f: _contributions(stores[f]) for f in stores}  # what each source said (the digests that find repeats)
    assert said[True] == said[False] and len(said[True]) > 2500
    assert not multiprocessing.active_children()


def test_an_error_of_the_forked_reader_is_raised_where_reading_in_process_raises_it(tmp_path):
    flux = orjson.loads(_flux(tmp_path, "one.json").read_bytes())
    flux["pmej"] *= 40  # the same legal entity, said again and again: merged once
    text = orjson.dumps(flux)
    cut = tmp_path / "finess-structures-journalier-20260309.json"
    cut.write_bytes(text[:len(text) - 600])  # invalid JSON from there, after some 39 records read
    stores = _stores(tmp_path)
    errors, runs = {}, {}
    for fork, engine in stores.items():
        with pytest.raises(InputFileError) as e:
            run_import(engine, FinessFeed(), cut, batch_size=10, fork_reader=fork)
        errors[fork] = e.value.message
        with engine.connect() as conn:
            runs[fork] = conn.execute(select(feed_run.c.status, feed_run.c.message, feed_run.c.records,
                                             feed_run.c.created)).one()
    assert "records before the error were imported" in errors[True] and errors[True] == errors[False]
    assert runs[True] == runs[False] and runs[True].status == "failed"
    assert runs[True].records > 30 and runs[True].created == 3
    assert all_stored(stores[True], versions=True) == all_stored(stores[False], versions=True)


def test_a_run_stopped_early_stops_its_reader(engine):
    report = run_import(engine, FinessFeed(), FINESS_SAMPLE, limit=5, fork_reader=True)
    assert report.counts["records"] == 5 and "stopped after 5 records" in report.message
    assert "encoding: UTF-8" in report.message  # a fact the reader learnt, sent with the items
    assert not multiprocessing.active_children()


class _DyingReader(FinessFeed):
    """Killed after its 25th item (as the kernel's out-of-memory killer would): only in a forked reader."""

    def read(self, path):
        for n, item in enumerate(super().read(path), 1):
            if n > 25:
                os._exit(9)
            yield item


def test_a_reader_that_dies_fails_the_run_and_keeps_the_batches_before(engine):
    with pytest.raises(RuntimeError, match=r"stopped without a word \(exit code 9"):
        run_import(engine, _DyingReader(), FINESS_SAMPLE, batch_size=10, fork_reader=True)
    with engine.connect() as conn:
        run = conn.execute(select(feed_run.c.status, feed_run.c.message, feed_run.c.records)).one()
    assert run.status == "failed" and "stopped without a word" in run.message
    assert run.records == 20  # two whole batches of ten (establishments held back for their legal entity)
    assert not multiprocessing.active_children()


def test_the_items_a_forked_reader_sent_are_let_go_once_taken():
    """A batch the run has written is freed then, not when the reader's next chunk arrives: the run collects its young
    objects after each batch (``Run.execute``), and a chunk still held would be traversed at each collection."""
    items = read_ahead(RppsFeed(), RPPS_SAMPLE, RPPS_SAMPLE.stat().st_size, batch_size=3, fork=True)
    taken = 0
    for item in items:
        assert not any(isinstance(r, list) for r in gc.get_referrers(item))  # the chunk it came in
        taken += 1
    assert taken == len(list(RppsFeed().read(RPPS_SAMPLE))) > 10  # in several chunks
    assert not multiprocessing.active_children()
