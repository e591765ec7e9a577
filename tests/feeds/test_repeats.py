"""A reload repeats what the sources said: those entities are marked as seen, not merged again (``Run._repeats``).

The property checked: the store after any sequence of imports and API edits is the same, version for version, as
when every entity is merged again (the behaviour before contributions remembered what was said, and what a store
migrated to 0018 does at its first reload).
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import update

from ror.feeds import precedence
from ror.feeds.finess import FinessFeed
from ror.feeds.regional import RegionalFeed
from ror.feeds.rpps import RppsFeed
from ror.feeds.runs import run_import
from ror.feeds.schema import feed_contribution
from ror.store import bulk
from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from tests.feeds.conftest import CSD_SAMPLE, FINESS_SAMPLE, RPPS_SAMPLE, all_stored, stored
from tests.feeds.test_consolidation import _phone

# The one entity of the samples its profile rejects (no national identifier): merged and checked again at every run.
REJECTED = {("Practitioner", "r93-84266")}


def _merges(monkeypatch) -> Counter:
    """Counts ``precedence.merge`` calls by resource."""
    calls: Counter = Counter()
    merge = precedence.merge

    def counted(rtype, rid, *args, **kwargs):
        calls[(rtype, rid)] += 1
        return merge(rtype, rid, *args, **kwargs)

    monkeypatch.setattr(precedence, "merge", counted)
    return calls


def _sources(tmp_path, renamed: bool = False) -> list:
    finess = FINESS_SAMPLE
    if renamed:  # a newer FINESS file: one establishment renamed
        finess = tmp_path / "etalab_small_20210131.csv"
        finess.write_text(FINESS_SAMPLE.read_text(encoding="utf-8").replace(
            "CENTRE HOSPITALIER DE BOURG-EN-BRESSE FLEYRIAT", "CH FLEYRIAT BOURG"), encoding="utf-8")
    return [(FinessFeed(), finess), (RppsFeed(), RPPS_SAMPLE), (RegionalFeed("93"), CSD_SAMPLE)]


def _import_all(engine, sources) -> list[Counter]:
    return [Counter({k: v for k, v in run_import(engine, feed, path).counts.items() if v}) for feed, path in sources]


def _forget_what_was_said(engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(feed_contribution).values(said=None, said_version=None))


def test_a_reload_of_unchanged_sources_merges_nothing_and_changes_nothing(engine, tmp_path, monkeypatch):
    merges = _merges(monkeypatch)
    first = _import_all(engine, _sources(tmp_path))
    assert sum(merges.values()) > 150 and first[0]["created"] == 100
    before = all_stored(engine, versions=True)
    merges.clear()
    again = _import_all(engine, _sources(tmp_path))
    assert set(merges) == REJECTED and again[2]["rejected"] == first[2]["rejected"] == 1
    assert [c["created"] + c["updated"] + c["closed"] for c in again] == [0, 0, 0]
    assert again[0]["unchanged"] == 100 and all(c["unchanged"] > 0 for c in again)
    assert all_stored(engine, versions=True) == before


def test_what_changed_since_is_merged_again_as_if_nothing_were_remembered(engine, tmp_path, monkeypatch):
    """Two stores, the same imports and API edit; the second forgets what was said before its reload."""
    merges = _merges(monkeypatch)
    forgetful = make_engine(f"sqlite:///{tmp_path / 'forgetful.db'}")
    upgrade(forgetful)
    stores = [engine, forgetful]
    for store in stores:
        _import_all(store, _sources(tmp_path))
    site = stored(engine, "Organization", "st-349940088500020")
    site["telecom"] = [_phone("0381000000")]  # entered by the professional through the API
    for store in stores:
        bulk.upsert(store, [site])
    merges.clear()
    counts = _import_all(engine, _sources(tmp_path, renamed=True))
    # the renamed establishment (its file has a new extraction date: the others repeat) and the edited site
    assert set(merges) == {("Organization", "fin-010000024"), ("Organization", "st-349940088500020")} | REJECTED
    assert counts[0]["updated"] == 1 and counts[1]["updated"] == 0
    assert stored(engine, "Organization", "st-349940088500020")["telecom"] == site["telecom"]
    assert stored(engine, "Organization", "fin-010000024")["name"] == "CH FLEYRIAT BOURG"
    _forget_what_was_said(forgetful)
    merges.clear()
    assert _import_all(forgetful, _sources(tmp_path, renamed=True)) == counts
    assert len(merges) > 150
    assert all_stored(forgetful, versions=True) == all_stored(engine, versions=True)
    forgetful.dispose()
    merges.clear()
    assert _import_all(engine, _sources(tmp_path, renamed=True))[0]["unchanged"] == 100 and set(merges) == REJECTED
