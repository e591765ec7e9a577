"""The SQL shapes of a search (search/compile.py): one condition drives, the others are tested on each
of its resources. Whatever condition drives (or none), the results are the same; the hierarchy,
geographic and date criteria whose SQL was reshaped keep their edges."""

from __future__ import annotations

import math
from unittest.mock import patch

import orjson
import pytest
from sqlalchemy import event, func, select

from ror.fhir.files import read_resources
from ror.geo import EARTH_RADIUS_KM, haversine_km
from ror.search import execute
from ror.search.compile import Compiler, _estimated_rows
from ror.store import bulk, derived
from ror.store.engine import current_tx
from tests.conftest import BACKENDS, FIXTURES, _database, make_service
from tests.integration.test_access_profiles import caller
from tests.integration.test_paging import next_pairs, places
from tests.integration.test_search_semantics import CASES, FINESS, matches


def _found(svc, rtype, pairs, profile=1) -> set[str]:
    bundle = orjson.loads(svc.search(rtype, list(pairs), "http://t/fhir", caller=caller(profile)).body)
    found = matches(bundle)
    assert len(found) == len(set(found)) and bundle.get("total", len(found)) == len(found)
    return set(found)


def _forced(pick):
    """``Compiler._driver`` replaced: ``pick(candidates)`` drives (None: the type's rows are scanned)."""
    return patch.object(Compiler, "_driver", staticmethod(
        lambda conds, conn: pick([c for c in conds if c.set is not None])))


DRIVERS = {"scan": lambda cands: None, "first": lambda cands: cands[0] if cands else None,
           "second": lambda cands: cands[1] if len(cands) > 1 else None,
           "last": lambda cands: cands[-1] if cands else None}


@pytest.fixture(scope="module")
def small(module_db_url):
    svc = make_service(module_db_url)
    bulk.upsert(svc.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    yield svc
    svc.engine.dispose()


@pytest.mark.parametrize("profile", [1, 3])
def test_every_driver_gives_the_same_results(small, profile):
    """Every search of the semantic cases, driven by each of its conditions in turn and by none,
    finds what the default plan finds (and, for profile 1, what the dataset's README says)."""
    for rtype, pairs, expected in CASES:
        default = _found(small, rtype, pairs, profile)
        if profile == 1:
            assert default == expected, (rtype, pairs)
        for name, pick in DRIVERS.items():
            with _forced(pick):
                assert _found(small, rtype, pairs, profile) == default, (name, rtype, pairs)


def test_sqlite_drives_from_the_smallest_set(small):
    if small.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL orders the semi-joins itself")
    specialty = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle|022"
    for pairs in ([("active", "true"), ("specialty", specialty)], [("specialty", specialty), ("active", "true")]):
        plan = small.plan("HealthcareService", pairs, lenient=False)
        with small.engine.connect() as conn:
            comp = Compiler(plan, small.settings, current_tx(conn), "sqlite")
            conds = comp._conditions()
            chosen = comp._driver(conds, conn)
        assert chosen is conds[[k for k, _ in pairs].index("specialty")]


def _pages(svc, rtype, pairs, profile) -> list[tuple[int | None, list[str]]]:
    """(total, ids of the matches) of each page, following every `next` link."""
    out = []
    while pairs is not None:
        bundle = orjson.loads(svc.search(rtype, pairs, "http://t/fhir", caller=caller(profile)).body)
        out.append((bundle.get("total"), matches(bundle)))
        pairs = next_pairs(bundle)
    return out


@pytest.mark.parametrize("profile", [1, 3])
@pytest.mark.parametrize("rows_per_match", [1, 20])
def test_pages_found_by_scanning_the_type_are_the_sorted_pages(small, profile, rows_per_match):
    """Every search counted apart and paged by the type scan (the way of large result sets), including scans too
    short to fill a page (sorting takes over), returns the same pages and totals."""
    scanned = []
    real = execute._scanned_page

    def spy(*args):
        rows = real(*args)
        scanned.append(rows is not None)
        return rows
    for rtype, pairs, _ in CASES:
        paged = [*pairs, ("_count", "2")]
        default = _pages(small, rtype, paged, profile)
        with patch.multiple(execute, _SCAN_FROM=0, _SCAN_ROWS_PER_MATCH=rows_per_match, _scanned_page=spy):
            assert _pages(small, rtype, paged, profile) == default, (rtype, pairs)
    assert any(scanned) and (rows_per_match == 20 or not all(scanned))


def test_a_union_is_sized_from_its_parts_without_overcounting_their_overlap(service):
    """Whether a ``_filter`` OR drives a large result set: at least n when one part has n rows, fewer when
    the parts together have fewer, else the union itself counted (parts that overlap: 10 + 3 rows, 12 in all)."""
    if service.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's planner estimates the union's size")
    bulk.upsert(service.engine, places(12))  # Unité 000 … Unité 011
    pairs = [("_filter", 'name sw "unite 00" or name co "1"')]  # 000…009, and 001, 010, 011
    assert len(_found(service, "Location", pairs)) == 12
    plan = service.plan("Location", pairs, lenient=False)
    with service.engine.connect() as conn:
        comp = Compiler(plan, service.settings, current_tx(conn), "sqlite")
        assert [comp.driven_by_at_least(conn, n) for n in range(9, 15)] == [True] * 4 + [False] * 2


def test_postgresql_judges_a_result_set_large_from_its_planner_s_estimate(service):
    """Whether a driving set is large enough for the type scan: not counted (20,000 rows cost PostgreSQL 8 ms a
    search), but as the plan of its statement estimates it, statistics gathered (``vacuum_analyze``); for a date
    criterion only (a sync since a date), the others not estimated at all."""
    if service.engine.dialect.name != "postgresql":
        pytest.skip("SQLite counts the set up to the size wanted")
    bulk.upsert(service.engine, places(400))
    bulk.vacuum_analyze(service.engine)
    statements = []
    with service.engine.connect() as conn, conn.begin():
        def compiler(pairs):
            return Compiler(service.plan("Location", pairs, lenient=False), service.settings, current_tx(conn),
                            "postgresql")
        synced, named = compiler([("_lastUpdated", "ge2000-01-01")]), compiler([("name", "unite")])
        estimate = math.floor(_estimated_rows(conn, synced._conditions_and_driver(conn)[1].set()))
        event.listen(conn, "before_cursor_execute", lambda *args: statements.append(args[2]))
        assert 0 < estimate <= 400
        assert synced.driven_by_at_least(conn, estimate) and not synced.driven_by_at_least(conn, estimate + 1)
        assert not named.driven_by_at_least(conn, 1)
    assert len(statements) == 2 and all(s.startswith("EXPLAIN (FORMAT JSON) SELECT") for s in statements)


def test_a_driving_set_counted_whole_when_sized_is_not_counted_again(small):
    """A driver of the base type's own rows whose count stopped below the sizing cap is known to be smaller than a
    large result set: no second count (on SQLite, which sizes)."""
    if small.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL does not size the driving sets: its planner orders them")
    plan = small.plan("HealthcareService", [("specialty", "022"), ("name", "gyn")], lenient=False)
    counted = []
    with small.engine.connect() as conn, conn.begin():
        comp = Compiler(plan, small.settings, current_tx(conn), "sqlite")
        _, driver = comp._conditions_and_driver(conn)
        event.listen(conn, "before_cursor_execute", lambda *args: counted.append(args[2]))
        assert driver.sized is not None and not comp.driven_by_at_least(conn, execute._SCAN_FROM)
        assert counted == []
        assert comp.driven_by_at_least(conn, driver.sized) and len(counted) == 1  # below the cap: counted


def test_a_filter_or_is_merged_from_sets_read_in_pk_order(service):
    """SQLite reads a ``_filter`` OR of two values as the merge of their sets, each in pk order straight from the
    lookup index (pk before since_tx, migration 0012): no temporary B-tree to deduplicate or sort them."""
    if service.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans the union itself")
    bulk.upsert(service.engine, places(12))
    pairs = [("_filter", 'name eq "unite 003" or name eq "unite 010"')]
    assert _found(service, "Location", pairs) == {"p-003", "p-010"}
    plan = service.plan("Location", pairs, lenient=False)
    with service.engine.connect() as conn, conn.begin():
        base, _ = Compiler(plan, service.settings, current_tx(conn), "sqlite", live=True).matches(conn)
        counted = str(select(func.count()).select_from(base.subquery())
                      .compile(conn, compile_kwargs={"literal_binds": True}))
        steps = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + counted)]
        assert conn.exec_driver_sql(counted).scalar() == 2
    assert "MERGE (UNION)" in steps and not [s for s in steps if "TEMP B-TREE" in s], steps


def test_matches_of_a_string_held_once_per_resource_are_not_deduplicated(service):
    """An offer has at most one name (a plain string): its name matches are read without ``DISTINCT`` (on SQLite, a
    temporary B-tree: most of counting a national prefix). A place's name and alias may both match: counted once."""
    place = {**places(1)[0], "name": "Unité Nord", "alias": ["Unité Nord bis", "Autre"]}
    offer = {"resourceType": "HealthcareService", "id": "hs-nord", "name": "Unité Nord"}
    bulk.upsert(service.engine, [place, offer])
    for rtype, distinct in (("HealthcareService", False), ("Location", True), ("Practitioner", True)):
        plan = service.plan(rtype, [("name", "unite nord")], lenient=False)
        with service.engine.connect() as conn, conn.begin():
            base, _ = Compiler(plan, service.settings, current_tx(conn), service.engine.dialect.name).matches(conn)
            assert ("DISTINCT" in str(base)) is distinct, rtype
    for rtype, found in (("HealthcareService", ["hs-nord"]), ("Location", ["p-000"])):
        bundle = orjson.loads(service.search(rtype, [("name", "unite nord")], "http://t/fhir").body)
        assert bundle["total"] == 1 and matches(bundle) == found


R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"


@pytest.mark.parametrize(("pairs", "distinct"), [
    ([("specialty", f"{R211}|022")], False),  # one row per system|code: the indexer writes a row once
    ([("specialty", "022")], True),  # any system: one row per system
    ([("specialty", f"{R211}|022,{R211}|170")], True),  # two values
    ([("characteristic", "https://mos.esante.gouv.fr/NOS/TRE_R209-TypeAccueil/FHIR/TRE-R209-TypeAccueil|1")],
     True),  # a mask per value
    ([("location.capacity-status", "https://mos.esante.gouv.fr/NOS/TRE_R330-StatutCapacite/FHIR/"
                                   "TRE-R330-StatutCapacite|02")], True),  # copies: one per mask of the places
])
def test_matches_of_one_code_held_once_per_resource_are_not_deduplicated(service, pairs, distinct):
    """An offer's rows of one ``system|code`` of its specialty are one row, even when the code is given twice: read
    without ``DISTINCT``, each offer is found once."""
    twice = {"coding": [{"system": R211, "code": "022"}]}
    offers = [{"resourceType": "HealthcareService", "id": f"hs-{i}", "specialty": [twice, twice] if i else [twice],
               "location": [{"reference": "Location/p-000"}]} for i in range(2)]
    bulk.upsert(service.engine, [*places(1), *offers])
    plan = service.plan("HealthcareService", pairs, lenient=False)
    with service.engine.connect() as conn, conn.begin():
        base, _ = Compiler(plan, service.settings, current_tx(conn), service.engine.dialect.name).matches(conn)
        assert ("DISTINCT" in str(base)) is distinct
    if pairs[0][0] == "specialty":
        bundle = orjson.loads(service.search("HealthcareService", pairs, "http://t/fhir").body)
        assert bundle["total"] == 2 and sorted(matches(bundle)) == ["hs-0", "hs-1"]


FONCTION_LIEU = "https://mos.esante.gouv.fr/NOS/TRE_R343-FonctionLieu/FHIR/TRE-R343-FonctionLieu"


@pytest.mark.parametrize("pairs, streamed", [
    ([("type", f"{FONCTION_LIEU}|001")], True),  # one value, system and code
    ([("_filter", 'name eq "unite 003" or name eq "unite 010" or name eq "unite 007"')], True),
    ([("_filter", f'name eq "unite 003" or type eq {FONCTION_LIEU}|001')], True),  # p-003 in both parts, once
    ([("type", "001")], False),  # any system: rows in (system, pk) order
    ([("name", "unite 00")], False),  # a prefix: rows in (name, pk) order
    ([("type", f"{FONCTION_LIEU}|001"), ("name", "unite")], False),  # a second condition to test on each
])
def test_a_first_page_of_matches_read_in_pk_order_is_their_first_rows(service, pairs, streamed):
    """Matches that are one driving set read in pk order from its lookup index (one value fixing every column before
    ``until_tx``, or a union of such) have their first page read as the set's first rows: on SQLite, no temporary
    B-tree sorts them (PostgreSQL plans a table this small as it likes); the pages, then followed by cursor, still
    give each match once, with the total counted apart."""
    bulk.upsert(service.engine, places(12))
    plan = service.plan("Location", pairs, lenient=False)
    dialect = service.engine.dialect.name
    with service.engine.connect() as conn, conn.begin():
        comp = Compiler(plan, service.settings, current_tx(conn), dialect, live=True)
        assert comp.streams_in_pk_order(conn) is streamed
        if streamed and dialect == "sqlite":
            first = str(comp.first_in_pk_order(conn, 3).compile(conn, compile_kwargs={"literal_binds": True}))
            steps = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + first)]
            assert not [s for s in steps if "TEMP B-TREE" in s], steps
    expected = sorted(_found(service, "Location", pairs))
    with patch.object(Compiler, "first_in_pk_order", autospec=True, side_effect=Compiler.first_in_pk_order) as spy:
        bundle = orjson.loads(service.search("Location", [*pairs, ("_count", "2")], "http://t/fhir").body)
    assert spy.called is streamed and bundle["total"] == len(expected)
    seen = []
    while True:
        seen += matches(bundle)
        if not (more := next_pairs(bundle)):
            break
        bundle = orjson.loads(service.search("Location", more, "http://t/fhir").body)
    assert seen == expected and len(expected) in (3, 10, 12), seen


def test_a_scan_that_falls_short_is_followed_by_one_sorted_and_counted_statement(service):
    """A large driving set whose matches are too sparse for the scan: the page is sorted by a statement that counts
    the matches too, not counted apart first (which tested each resource through its chains twice: national
    ``near``)."""
    if service.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL scans for a date criterion only")
    bulk.upsert(service.engine, places(12))
    pairs = [("name", "unite"), ("name", "unite 01")]  # the first drives (12 rows), 2 match

    def no_count_apart(conn, comp, base):
        raise AssertionError("counted apart")
    with patch.multiple(execute, _SCAN_FROM=0, _SCAN_ROWS_PER_MATCH=1, _count=no_count_apart), \
            patch.object(Compiler, "_driver", staticmethod(lambda conds, conn: conds[0])):
        bundle = orjson.loads(service.search("Location", [*pairs, ("_count", "2")], "http://t/fhir").body)
    assert bundle["total"] == 2 and matches(bundle) == ["p-010", "p-011"]


def test_a_first_page_counted_apart_ignores_what_commits_between_its_statements(service):
    """A first page is read as the live rows of its transaction's snapshot (``LiveRows``): a place renamed before it
    is not found by its former name; one written by another connection between its page and its count is in
    neither."""
    data = places(6)
    bulk.upsert(service.engine, data)
    bulk.upsert(service.engine, [{**data[5], "name": "Autre"}])  # its first version's rows are closed, not live
    real = execute._count

    def write_then_count(conn, comp, base):
        bulk.upsert(service.engine, places(3, prefix="late"))  # another connection, committed at once
        return real(conn, comp, base)
    # The scan finds the page, then counts; driven by the date criterion, which PostgreSQL scans for too.
    with patch.multiple(execute, _SCAN_FROM=0, _count=write_then_count), \
            patch.object(Compiler, "_driver", staticmethod(lambda conds, conn: next(c for c in conds if c.dated))):
        bundle = orjson.loads(service.search("Location", [("name", "unite"), ("_lastUpdated", "ge2000-01-01"),
                                                          ("_count", "3")], "http://t/fhir").body)
    assert bundle["total"] == 5 and sorted(matches(bundle)) == [f"p-{i:03d}" for i in range(3)]
    assert len(_found(service, "Location", [("name", "unite")])) == 8


# -- hierarchy over several levels ------------------------------------------------------------------
def _org(rid: str, finess: str, parent: str | None = None) -> dict:
    org = {"resourceType": "Organization", "id": rid, "identifier": [{"system": FINESS, "value": finess}]}
    if parent:
        org["partOf"] = {"reference": f"Organization/{parent}"}
    return org


def _offer(rid: str, org: str, location: str | None = None) -> dict:
    hs = {"resourceType": "HealthcareService", "id": rid, "providedBy": {"reference": f"Organization/{org}"}}
    if location:
        hs["location"] = [{"reference": f"Location/{location}"}]
    return hs


def _place(rid: str, lat: float, lon: float) -> dict:
    return {"resourceType": "Location", "id": rid, "position": {"latitude": lat, "longitude": lon}}


LAT, LON, KM = 44.0, 3.0, 10.0


def _north(km: float) -> float:
    """Latitude of the point ``km`` due north of (LAT, LON) on the sphere of the distance formula."""
    return LAT + math.degrees(km / EARTH_RADIUS_KM)


@pytest.fixture(scope="module", params=BACKENDS)
def store(request, tmp_path_factory):
    """A store of its own: the organisation tree ej ← eg ← oi1 ← oi2 ← oi3 and ej ← eg2 (a sibling
    branch) with one offer on each; places on a radius's edge (with an offer each, of eg3), and one
    across the antimeridian."""
    database = _database(request, tmp_path_factory, "plans")
    svc = make_service(next(database))
    orgs = [_org("ej", "100000001"), _org("eg", "100000002", "ej"), _org("oi1", "100000003", "eg"),
            _org("oi2", "100000004", "oi1"), _org("oi3", "100000005", "oi2"), _org("eg2", "100000006", "ej")]
    places = [_place("edge-in", _north(KM * (1 - 1e-9)), LON), _place("edge-out", _north(KM * (1 + 1e-6)), LON),
              _place("east-in", LAT, LON + 0.12), _place("wallis", -13.3, 179.95)]
    offers = [_offer(f"hs-{o['id']}", o["id"]) for o in orgs]
    offers += [_offer("hs-in", "eg3", "edge-in"), _offer("hs-out", "eg3", "edge-out")]
    bulk.upsert(svc.engine, [*orgs, _org("eg3", "100000007"), *places, *offers])
    yield svc
    svc.engine.dispose()
    next(database, None)  # drops a PostgreSQL database


@pytest.mark.parametrize(("name", "finess", "expected"), [
    ("identifier:above", "100000002", {"eg", "oi1", "oi2", "oi3"}),
    ("identifier:above", "100000001", {"ej", "eg", "oi1", "oi2", "oi3", "eg2"}),
    ("identifier:above", "100000004", {"oi2", "oi3"}),
    ("identifier:below", "100000005", {"oi3", "oi2", "oi1", "eg", "ej"}),
    ("identifier:below", "100000006", {"eg2", "ej"}),
    ("identifier:below", "100000001", {"ej"}),
])
def test_hierarchy_over_several_levels(store, name, finess, expected):
    assert _found(store, "Organization", [(name, f"{FINESS}|{finess}")]) == expected
    if name.endswith("above"):
        offers = _found(store, "HealthcareService", [(f"organization.{name}", f"{FINESS}|{finess}")])
        assert offers == {f"hs-{o}" for o in expected}


def test_hierarchy_with_another_criterion_drives_either_way(store):
    pairs = [("organization.identifier:above", f"{FINESS}|100000002"), ("_id", "hs-oi2,hs-eg2,hs-ej")]
    for pick in DRIVERS.values():
        with _forced(pick):
            assert _found(store, "HealthcareService", pairs) == {"hs-oi2"}


# -- near: the radius edge, the antimeridian ---------------------------------------------------------
def test_near_at_the_radius_edge(store):
    inside, outside = _north(KM * (1 - 1e-9)), _north(KM * (1 + 1e-6))
    assert haversine_km(LAT, LON, inside, LON) <= KM < haversine_km(LAT, LON, outside, LON)
    assert _found(store, "Location", [("near", f"{LAT}|{LON}|{KM}|km")]) == {"edge-in", "east-in"}
    assert _found(store, "Location", [("near", f"{LAT}|{LON}|{KM * 1000}|m")]) == {"edge-in", "east-in"}
    for pick in DRIVERS.values():
        with _forced(pick):
            assert _found(store, "HealthcareService", [("location.near", f"{LAT}|{LON}|{KM}|km"),
                                                        ("organization.identifier", f"{FINESS}|100000007")]) == \
                {"hs-in"}


def _plan_driven_by_the_first(svc, pairs, live: bool) -> list[str]:
    """The steps of SQLite's plan of an offer search, its first criterion driving."""
    plan = svc.plan("HealthcareService", pairs, lenient=False)
    with _forced(DRIVERS["first"]), svc.engine.connect() as conn, conn.begin():
        base, _ = Compiler(plan, svc.settings, current_tx(conn), "sqlite", live=live).matches(conn)
        sql = str(base.compile(conn, compile_kwargs={"literal_binds": True}))
        return [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]


def test_a_chained_criterion_reads_each_resource_s_references_from_the_index(store):
    """Offers found by one criterion are tested through their organisation (``organization.identifier``): their
    reference rows are read by pk from the index alone, which carries each row's parameter and target (migration
    0013)."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL chooses its index-only scans from its statistics")
    pairs = [("location.near", f"{LAT}|{LON}|{KM}|km"), ("organization.identifier", f"{FINESS}|100000007")]
    with _forced(DRIVERS["first"]):
        assert _found(store, "HealthcareService", pairs) == {"hs-in"}
    steps = _plan_driven_by_the_first(store, pairs, live=True)
    by_pk = [s for s in steps if s.startswith("SEARCH idx_ref") and "(pk=?" in s]
    assert by_pk and all("COVERING INDEX ix_idx_ref_pk" in s for s in by_pk), steps



@pytest.mark.parametrize("live", [True, False])
def test_a_token_tested_on_each_resource_is_read_from_the_index_alone(small, live):
    """A ``system|code`` tested on each resource found by another criterion is one descent of the lookup index on a
    live snapshot (every column before ``pk`` fixed); a code alone, or an older snapshot (``until_tx`` a range), reads
    the resource's rows by pk, from the index alone on a live snapshot (it carries their parameter and code: migration
    0015)."""
    if small.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL chooses its index-only scans from its statistics")
    pairs = [("_id", "hs-gyneco-hc,hs-psy-adulte"), ("specialty", f"{R211}|022"), ("specialty", "022")]
    with _forced(DRIVERS["first"]):
        assert _found(small, "HealthcareService", pairs) == {"hs-gyneco-hc"}
    steps = [s for s in _plan_driven_by_the_first(small, pairs, live) if "idx_token" in s]
    pinned = "COVERING INDEX ix_idx_token_lookup (param=? AND code=? AND system=? AND until_tx=? AND pk=?)"
    if live:
        assert pinned in steps[0] and "COVERING INDEX ix_idx_token_pk (pk=? AND until_tx=?)" in steps[1], steps
    else:  # the snapshot's since_tx is read from the table
        assert all("INDEX ix_idx_token_pk (pk=? AND until_tx>?)" in s for s in steps), steps
    assert len(steps) == 2


# Searches on the rows an offer copies from its places (store/derived.py), alone and with others.
_ON_COPIES = [(rtype, pairs) for rtype, pairs, _ in CASES
              if rtype == "HealthcareService" and any(name.startswith("location.") for name, _ in pairs)] + [
    ("HealthcareService", [("location.near-insee-code", "44162|15|km")]),
    ("HealthcareService", [("location.nb-capacity", "ge25"), ("location.capacity-status", "02")]),
    ("HealthcareService", [("location.nb-capacity", "0")]),
    ("HealthcareService", [("location.nb-capacity:missing", "true")]),
    ("HealthcareService", [("location.capacity-status:not", "02")]),
    ("HealthcareService", [("_filter", "location.nb-capacity gt 30 or location.capacity-status eq 05")]),
    # a specialty in a circle: driven by the offers of the code in the circle (points copied per specialty code)
    ("HealthcareService", [("specialty", "022"), ("location.near-insee-code", "44109|20|km")]),
    ("HealthcareService", [("location.near", "47.2372|-1.6388|30|km"), ("specialty", f"{R211}|170")]),
    ("HealthcareService", [("specialty", "https://autre.example/systeme|170"), ("location.near", "47.2|-1.6|30|km")]),
    ("HealthcareService", [("specialty", "022"), ("location.near-insee-code", "44109|20|km"),
                           ("location.nb-capacity", "gt0")]),
]


@pytest.mark.parametrize("profile", [0, 1, 3, 4])
def test_criteria_on_an_offer_s_copies_of_its_places_rows_find_what_the_chain_finds(small, profile):
    """Plain ``location.near``, ``near-insee-code`` and capacity criteria are answered from the offer's copies of its
    places' rows for the profiles that see every place (1, 4); the other profiles, ``:missing`` and ``:not`` keep the
    chain. Either way, the offers found through the chain."""
    assert len(_ON_COPIES) >= 16
    for rtype, pairs in _ON_COPIES:
        got = _found(small, rtype, pairs, profile)
        with patch.object(derived, "copy_key", lambda key: None):
            assert _found(small, rtype, pairs, profile) == got, pairs
        with patch.object(derived, "keyed_base", lambda code: None):  # copies, but no points per specialty code
            assert _found(small, rtype, pairs, profile) == got, pairs


@pytest.mark.parametrize("profile", [0, 1, 3, 4])
def test_offers_sorted_by_distance_from_their_copies_as_through_the_chain(small, profile):
    """``_sort=near`` on offers reads the nearest of their places from their copies of the points where the criterion
    reads the copies (profiles 1 and 4): the same order as through the chain."""
    def ordered(pairs) -> list[str]:
        return matches(orjson.loads(small.search("HealthcareService", pairs, "http://t/fhir",
                                                 caller=caller(profile)).body))
    for sort in ("near,_id", "-near,_id"):
        pairs = [("location.near-insee-code", "44162|30|km"), ("_sort", sort)]
        got = ordered(pairs)
        assert len(got) >= 4
        with patch.object(derived, "copy_key", lambda key: None):
            assert ordered(pairs) == got, sort
    plan = small.plan("HealthcareService", pairs, lenient=False, profile=profile)
    with small.engine.connect() as conn, conn.begin():
        _, keys = Compiler(plan, small.settings, current_tx(conn), conn.dialect.name).matches(conn)
        params = keys[0][0].compile(conn).params.values()  # the key, and the matches it is computed on
    assert ("Location.near" in params) == (profile not in (1, 4))  # the places' own points: through the chain


def test_a_specialty_in_a_circle_is_driven_by_its_offers_in_the_circle(small):
    """On SQLite, a specialty and a circle around the offers' places drive from the offers of that code whose places
    are in the circle (their points copied per specialty code), found by the lookup index alone."""
    if small.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL orders the semi-joins itself")
    pairs = [("location.nb-capacity", "ge0"), ("specialty", "022"), ("location.near-insee-code", "44109|20|km")]
    assert _found(small, "HealthcareService", pairs) == {"hs-gyneco-hc"}
    plan = small.plan("HealthcareService", pairs, lenient=False)
    sized = []
    with small.engine.connect() as conn, conn.begin():
        def statement(conn, cursor, sql, params, *_):
            sized.append(params)
        event.listen(conn, "before_cursor_execute", statement)
        _, driver = Compiler(plan, small.settings, current_tx(conn), "sqlite")._conditions_and_driver(conn)
        event.remove(conn, "before_cursor_execute", statement)
        found = driver.set().compile(conn)
        steps = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(driver.set().compile(
            conn, compile_kwargs={"literal_binds": True})))]
    assert f"{derived.REFERENCE}@022.near" in found.params.values()
    # Sized beside the specialty and the bed count, not the circle of every offer's points, which it implies.
    assert len(sized) == 1 and f"{derived.REFERENCE}@022.near" in sized[0]
    assert f"{derived.REFERENCE}.near" not in sized[0] and f"{derived.REFERENCE}.nb-capacity" in sized[0]
    assert steps == ["SEARCH idx_geo_1 USING COVERING INDEX ix_idx_geo_lookup (param=? AND lat>? AND lat<?)"], steps


def test_the_specialty_is_tested_last_on_its_offers_in_a_circle(small):
    """Driving, the offers of a specialty code in a circle nearly all have the specialty (in its system): its test
    comes after the others, which let fewer offers through."""
    if small.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL orders the semi-joins itself")
    pairs = [("specialty", f"{R211}|022"), ("location.nb-capacity", "ge0"), ("location.near-insee-code", "44109|20|km")]
    assert _found(small, "HealthcareService", pairs) == {"hs-gyneco-hc"}
    plan = small.plan("HealthcareService", pairs, lenient=False)
    with small.engine.connect() as conn, conn.begin():
        base, _ = Compiler(plan, small.settings, current_tx(conn), "sqlite").matches(conn)
        compiled = base.compile(conn)
    written = [compiled.params[name] for name in compiled.positiontup]
    assert f"{derived.REFERENCE}@022.near" in written  # drives
    assert written.index(f"{derived.REFERENCE}.nb-capacity") < written.index(derived.SPECIALTY), written


@pytest.mark.parametrize(("profile", "pairs", "on_copies"), [
    (1, [("location.nb-capacity", "gt0")], True),
    (1, [("specialty", "022"), ("location.near-insee-code", "44109|20|km")], True),
    (4, [("location.near-insee-code", "44162|15|km")], True),
    (1, [("location.capacity-status:not", "02")], False),
    (3, [("location.nb-capacity", "gt0")], False),
    (1, [("location.nb-capacity", "gt0"), ("location.capacity-status", "02"), ("_same-record", "true")], False),
])
def test_which_criteria_read_the_copies(small, profile, pairs, on_copies):
    plan = small.plan("HealthcareService", pairs, lenient=False, profile=profile)
    with small.engine.connect() as conn, conn.begin():
        base, _ = Compiler(plan, small.settings, current_tx(conn), conn.dialect.name).matches(conn)
        params = base.compile(conn).params.values()
    assert any(derived.is_copy(str(v)) for v in params) == on_copies


def test_near_across_the_antimeridian(store):
    """Wallis-and-Futuna: the box around a point at 179.9° W reaches 179.95° E."""
    assert _found(store, "Location", [("near", "-13.3|-179.95|15|km")]) == {"wallis"}
    assert _found(store, "Location", [("near", "-13.3|-179.95|5|km")]) == set()


def test_a_circle_tested_on_each_resource_reads_its_points_from_the_index_alone(store):
    """Offers found by their organisation are tested for the circle on the points of their places (copied into the
    offers' rows): each offer's points are read by pk from its one pk-led index, which carries them (migration 0016,
    as 0010 did with a second index)."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL chooses its index-only scans from its statistics")
    pairs = [("organization.identifier", f"{FINESS}|100000007"), ("location.near", f"{LAT}|{LON}|{KM}|km")]
    with _forced(DRIVERS["first"]):
        assert _found(store, "HealthcareService", pairs) == {"hs-in"}
    steps = [s for s in _plan_driven_by_the_first(store, pairs, live=True) if "idx_geo" in s]
    assert steps and all("COVERING INDEX ix_idx_geo_pk (pk=? AND until_tx=?" in s for s in steps), steps
