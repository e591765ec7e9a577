"""A reload does not map again the records a source gave in the same words (``ror.feeds.memo``).

The property checked: whatever happened since (API edits, records changed, added or gone, a record earlier in the
file now giving an entity first), a run gives what it gives when nothing is remembered — the same stored resources
version for version, the same counts, run message and problems, the same contributions — while a reload of unchanged
files maps only the records it cannot remember (those with problems, reported again).
"""

from __future__ import annotations

import multiprocessing
from collections import Counter

import pytest
from sqlalchemy import delete, func, select

from ror.feeds import model
from ror.feeds.fileset import collect
from ror.feeds.finess import FinessFeed
from ror.feeds.model import Entity, Feed, Known, Record
from ror.feeds.regional import RegionalFeed
from ror.feeds.rpps import C, RppsFeed
from ror.feeds.runs import run_import
from ror.feeds.schema import feed_record
from ror.generate.runner import generate
from ror.store import bulk
from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from tests.feeds.conftest import all_stored, stored
from tests.feeds.test_readahead import _contributions, _outcome

REGION = "53"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("memo")
    generate(out, "1500", seed=7, regions=[REGION], jobs=1, dirty=0.04)
    return out


def _sources(data) -> list[tuple]:
    return [(FinessFeed, next((data / "finess").iterdir())), (RppsFeed, next((data / "rpps").iterdir())),
            (lambda: RegionalFeed(REGION), collect([data / "fhir" / REGION]))]


def _forget(engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(feed_record))


def _remembered(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(feed_record)).scalar_one()


@pytest.fixture
def mappings(monkeypatch) -> Counter:
    """Records mapped, by feed method, and the records remembered but mapped again (``again``), in this process."""
    calls: Counter = Counter()
    for cls, name in ((FinessFeed, "_ej_line"), (FinessFeed, "_et_line"), (RppsFeed, "_professional"),
                      (RegionalFeed, "_line"), (RegionalFeed, "_resource")):
        original = getattr(cls, name)

        def counted(self, *args, _original=original, _name=name):
            calls[_name] += 1
            return _original(self, *args)
        monkeypatch.setattr(cls, name, counted)
    again = Feed.again

    def counted_again(self, known):
        calls["again"] += 1
        return again(self, known)
    monkeypatch.setattr(Feed, "again", counted_again)
    return calls


def _stores(tmp_path) -> dict[str, object]:
    stores = {}
    for name in ("remembers", "forgets"):
        stores[name] = make_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
        upgrade(stores[name])
    return stores


def _run_both(stores, sources, **kwargs) -> dict[str, list]:
    """Each source into both stores; the second forgets every record before each run."""
    out = {}
    for name, engine in stores.items():
        outcomes = []
        for make_feed, path in sources:
            if name == "forgets":
                _forget(engine)
            outcomes.append(_outcome(engine, run_import(engine, make_feed(), path, batch_size=300, **kwargs)))
        out[name] = outcomes
    return out


def _same(stores) -> None:
    remembers, forgets = (all_stored(stores[n], versions=True) for n in ("remembers", "forgets"))
    assert remembers == forgets and len(remembers) > 900
    assert _contributions(stores["remembers"]) == _contributions(stores["forgets"])


def test_a_reload_of_unchanged_files_maps_again_only_what_it_cannot_remember(dataset, engine, mappings):
    sources = _sources(dataset)
    first = [_outcome(engine, run_import(engine, f(), p, batch_size=300)) for f, p in sources]
    assert _remembered(engine) > 0.9 * sum(o[1]["records"] for o in first)
    # The first reload merges again the practitioners the region's import changed after RPPS said them (their
    # version moved on); from the second on, every resource repeats.
    settled = [_outcome(engine, run_import(engine, f(), p, batch_size=300)) for f, p in sources]
    before = all_stored(engine, versions=True)
    mappings.clear()
    reload = [_outcome(engine, run_import(engine, f(), p, batch_size=300)) for f, p in sources]
    # mapped: the records with problems, each reported again as before, and again those the profiles rejected
    # (remembered, but what they said was not kept: checked again)
    problems = [sum(1 for p in o[3] if p[3] == "error" or "reference" in p[1]) for o in first]
    assert 0 < mappings["_ej_line"] + mappings["_et_line"] <= problems[0]
    assert 0 < mappings["_professional"] <= problems[1]
    assert mappings["_resource"] - mappings["_line"] <= problems[2]
    assert 0 < mappings["again"] == mappings["_line"] <= reload[2][1]["rejected"]
    assert reload == settled
    assert [sum(o[1].get(k, 0) for k in ("created", "updated", "closed")) for o in reload] == [0, 0, 0]
    assert all_stored(engine, versions=True) == before


PHONE = "0142424242"


def _rpps_changed(path, out) -> str:
    """The RPPS file with the phone of a city practice two professionals share changed on the first one's line (which
    says the site first), and the last professional gone. Returns the site's id."""
    lines = path.read_text(encoding="utf-8").splitlines()
    names = lines[0].split("|")
    idnat, structure, phone, finess = (names.index(C[k]) for k in ("idnat", "old_id", "phone", "finess"))
    first: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(lines[1:], 1):
        f = line.split("|")
        site = f"st-{f[structure]}" if len(f) >= len(names) - 1 and f[structure] and not f[finess] else None
        if site is None:
            continue
        if site in first and first[site][0] != f[idnat]:
            break
        first.setdefault(site, (f[idnat], i))
    else:
        raise AssertionError("no city practice shared by two professionals")
    f = lines[first[site][1]].split("|")
    f[phone] = PHONE
    lines[first[site][1]] = "|".join(f)
    last = lines[-1].split("|")[idnat]
    while lines[-1].split("|")[idnat] == last:
        lines.pop()
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return site


def _finess_moved(path, out) -> str:
    """The FINESS file with the coordinates of its first establishment moved (its structureet line unchanged: what
    its record says comes from two lines). Returns its FINESS number."""
    lines = path.read_bytes().split(b"\n")
    i = next(i for i, line in enumerate(lines) if line.startswith(b"geolocalisation;"))
    f = lines[i].split(b";")
    f[2] = str(float(f[2]) + 5000).encode()
    lines[i] = b";".join(f)
    out.write_bytes(b"\n".join(lines))
    return f[1].decode()


def test_whatever_changed_a_run_gives_what_it_gives_when_nothing_is_remembered(dataset, tmp_path, mappings):
    stores = _stores(tmp_path)
    sources = _sources(dataset)
    _run_both(stores, sources)
    _run_both(stores, sources)  # a reload that remembers every record it can
    # an API edit of a resource a remembered record gave: that record is mapped again, and merged
    role = next(k for k in all_stored(stores["remembers"]) if k[0] == "PractitionerRole" and k[1].startswith("so-"))
    edited = stored(stores["remembers"], *role)
    edited["active"] = False
    finess = tmp_path / sources[0][1].name
    moved = _finess_moved(sources[0][1], finess)
    establishment = next(res for (t, rid), res in all_stored(stores["remembers"]).items() if t == "Organization"
                         and rid.startswith("fin-") and "partOf" in res and rid != f"fin-{moved}")
    establishment["name"] = "RENAMED THROUGH THE API"  # FINESS owns the name: its next run names it again
    for engine in stores.values():
        bulk.upsert(engine, [edited, establishment])
    rpps = tmp_path / "PS_LibreAcces_Personne_activite_202612020612.txt"
    _rpps_changed(sources[1][1], rpps)
    place = stored(stores["remembers"], "Organization", f"fin-{moved}")["address"]
    changed = [(FinessFeed, finess), (RppsFeed, rpps), sources[2]]
    mappings.clear()
    got = _run_both(stores, changed)
    assert got["remembers"] == got["forgets"]
    assert got["remembers"][1][1]["closed"] > 0 and got["remembers"][1][1]["updated"] > 0
    assert got["remembers"][0][1]["updated"] == 2 and mappings["again"] >= 2
    assert stored(stores["remembers"], "Organization", establishment["id"])["name"] != establishment["name"]
    assert stored(stores["remembers"], "Organization", f"fin-{moved}")["address"] != place
    _same(stores)
    for engine in stores.values():
        bulk.upsert(engine, [edited])
    # and back to the first files, the reader forked in one store
    got = {n: [_outcome(e, run_import(e, f(), p, batch_size=300, fork_reader=n == "remembers"))
               for f, p in sources] for n, e in stores.items()}
    assert got["remembers"] == got["forgets"]
    _same(stores)
    assert not multiprocessing.active_children()


def test_an_entity_is_taken_from_the_record_that_says_it_first(dataset, tmp_path):
    """The changed line says the site first, a remembered one after it: the site is the changed line's."""
    stores = _stores(tmp_path)
    source = _sources(dataset)[1]
    _run_both(stores, [source])
    rpps = tmp_path / "PS_LibreAcces_Personne_activite_202612020612.txt"
    site = _rpps_changed(source[1], rpps)
    got = _run_both(stores, [(RppsFeed, rpps)])
    assert got["remembers"] == got["forgets"] and got["remembers"][0][1]["updated"] == 1
    _same(stores)
    assert PHONE in str(stored(stores["remembers"], "Organization", site)["telecom"])


def test_the_records_a_complete_extract_no_longer_has_are_forgotten(dataset, tmp_path, engine):
    path = next((dataset / "rpps").iterdir())
    run_import(engine, RppsFeed(), path)
    n = _remembered(engine)
    shorter = tmp_path / "PS_LibreAcces_Personne_activite_202612020612.txt"
    _rpps_changed(path, shorter)
    run_import(engine, RppsFeed(), shorter, limit=50)
    assert _remembered(engine) == n + 1  # the changed professional; nothing forgotten after a run cut short
    run_import(engine, RppsFeed(), shorter, full=False)
    assert _remembered(engine) == n + 1  # nor after a partial extract
    run_import(engine, RppsFeed(), shorter)
    assert _remembered(engine) == n - 1  # the changed one's old text and the last professional


class _OneRecord(Feed):
    source = "test"

    def _one(self, line: int):
        yield Record(line, [Entity("Organization", ["k"], {"resourceType": "Organization"}, "ej")])

    def mapped_one(self, line: int, said: tuple[str, ...]):
        return next(self.mapped(line, said, lambda: self._one(line), ("_one", (line,))))


def test_a_record_digest_changes_with_what_maps_it(monkeypatch):
    feed = _OneRecord()
    digests = []
    for version in (b"v1", b"v1", b"v2"):
        monkeypatch.setattr(model, "mapping_version", lambda v=version: v)
        digests.append(feed.mapped_one(1, ("header", "line")).digest)
    assert digests[0] == digests[1] != digests[2]
    feed.known = {digests[2]: 1}
    known = feed.mapped_one(7, ("header", "line"))
    assert isinstance(known, Known) and known.line == 7 and feed.again(known)[0].digest == digests[2]
    assert feed.mapped_one(1, ("header", "other line")).digest not in digests
