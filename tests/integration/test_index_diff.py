"""Updates supersede only the index rows that differ from the stored ones. Whatever the
change, the live rows of a resource must be exactly what the indexer yields from its current body,
and a snapshot must still see exactly the rows of the version current at that time."""

from __future__ import annotations

import copy
from collections import Counter

import orjson
import pytest
from sqlalchemy import text

from ror.fhir.files import read_resources
from ror.store import bulk, derived, repository
from ror.store.engine import current_tx
from ror.store.indexer import index_rows
from ror.store.schema import INDEX_TABLES, LIVE_TX
from tests.capacity.test_protocol import capacity, op, path
from tests.conftest import FIXTURES, make_service

FHIR = "application/fhir+json"
BASE = "http://x/fhir"
PLACE = "loc-usp-nord"  # a place with capacities (fixture README)


def rows_at(conn, rtype: str, rid: str, tx: int) -> dict[str, Counter]:
    """The index rows of a resource as a search pinned to ``tx`` sees them, but an offer's copies of its places'
    rows (``copies_are_current`` checks those)."""
    pk = repository.read(conn, rtype, rid).pk
    out = {}
    for kind, table in INDEX_TABLES.items():
        cols = [c.name for c in table.columns][1:-2]
        rows = conn.execute(text(f"SELECT {', '.join(cols)} FROM {table.name} "
                                 "WHERE pk = :pk AND since_tx <= :tx AND until_tx > :tx"), {"pk": pk, "tx": tx})
        out[kind] = Counter(tuple(r) for r in rows if not derived.is_copy(r[0]))
    return out


def copies_are_current(conn) -> None:
    """Every live offer's copies of its places' rows are what its live places give, and no other resource has any."""
    offers = {pk for (pk,) in conn.execute(text("SELECT pk FROM resource WHERE rtype = 'HealthcareService'"))}
    assert offers
    assert {kind: ([], []) for kind in ("geo", "number", "token")} == derived.differences(conn, offers)
    holders, keys = set(), set()
    for table in INDEX_TABLES.values():
        for pk, param in conn.execute(text(f"SELECT pk, param FROM {table.name} WHERE until_tx = {LIVE_TX} "
                                           f"AND param LIKE '{derived.REFERENCE}%'")):
            if derived.is_copy(param):
                holders.add(pk)
                keys.add(param)
    assert holders and holders <= offers
    assert any(key.startswith(f"{derived.REFERENCE}@") for key in keys)  # the points per specialty code


def expected(body: dict) -> dict[str, Counter]:
    rows = index_rows(body)
    return {kind: Counter(rows.get(kind, ())) for kind in INDEX_TABLES}


@pytest.fixture
def loaded(service):
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    return service


def current_body(service, rtype: str, rid: str) -> dict:
    return orjson.loads(service.read(rtype, rid).body)


def check_live(service, rtype: str, rid: str) -> None:
    with service.engine.connect() as conn:
        assert rows_at(conn, rtype, rid, current_tx(conn)) == expected(current_body(service, rtype, rid))
        copies_are_current(conn)


def test_capacity_patches_keep_live_rows_exact_and_snapshots_intact(loaded):
    snapshots = []
    for nb in (5, 6, 6, 40):  # the second 6 is a no-op: no new version
        with loaded.engine.connect() as conn:
            snapshots.append((current_tx(conn), current_body(loaded, "Location", PLACE)))
        r = loaded.patch("Location", PLACE, orjson.dumps(op("replace", path(), capacity(nb=nb))), FHIR, BASE)
        assert r.status == 200
        check_live(loaded, "Location", PLACE)
    # add a new indicator (a whole record: new grp ordinal), then delete it again
    covid = capacity(nb=3, gender="03", assignment="02")
    assert loaded.patch("Location", PLACE, orjson.dumps(op("add", "Location", covid)), FHIR, BASE).status == 200
    check_live(loaded, "Location", PLACE)
    gone = op("delete", path(gender="03", assignment="02"))
    assert loaded.patch("Location", PLACE, orjson.dumps(gone), FHIR, BASE).status == 200
    check_live(loaded, "Location", PLACE)
    with loaded.engine.connect() as conn:
        for tx, body in snapshots:
            assert rows_at(conn, "Location", PLACE, tx) == expected(body)


def test_updates_with_duplicate_values_and_removed_elements(db_url):
    """The store's own rule, whatever the profile says (two aliases break RORorganization)."""
    loaded = make_service(db_url, validate_writes=False)
    bulk.upsert(loaded.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    org = current_body(loaded, "Organization", _ids(loaded, "Organization")[0])
    changed = copy.deepcopy(org)
    changed["name"] = "Nom changé"
    changed.setdefault("alias", []).extend(["Même alias", "Même alias"])  # the same value twice
    loaded.update("Organization", org["id"], orjson.dumps(changed), BASE)
    check_live(loaded, "Organization", org["id"])
    fewer = copy.deepcopy(changed)
    fewer["alias"] = ["Même alias"]  # one copy of a duplicated value goes
    fewer.pop("telecom", None)
    loaded.update("Organization", org["id"], orjson.dumps(fewer), BASE)
    check_live(loaded, "Organization", org["id"])


def test_index_not_matching_the_stored_body_converges(loaded):
    """An index written by an older indexer (here: a row lost, another foreign) is put right."""
    with loaded.engine.begin() as conn:
        pk = repository.read(conn, "Location", PLACE).pk
        conn.execute(text(f"DELETE FROM idx_number WHERE pk = :pk AND until_tx = {LIVE_TX} "
                          "AND rowid IN (SELECT min(rowid) FROM idx_number WHERE pk = :pk)" if
                          conn.dialect.name == "sqlite" else
                          f"DELETE FROM idx_number WHERE ctid IN (SELECT min(ctid) FROM idx_number "
                          f"WHERE pk = :pk AND until_tx = {LIVE_TX})"), {"pk": pk})
        conn.execute(text("INSERT INTO idx_token (pk, param, system, code, grp, vis, since_tx, until_tx) "
                          f"VALUES (:pk, 'Location.identifier', NULL, 'stale', 0, 63, 1, {LIVE_TX})"), {"pk": pk})
    loaded.patch("Location", PLACE, orjson.dumps(op("replace", path(), capacity(nb=77))), FHIR, BASE)
    check_live(loaded, "Location", PLACE)
    assert loaded.search("Location", [("identifier", "stale")], BASE).body.count(b'"total":0') == 1


def _ids(service, rtype: str) -> list[str]:
    with service.engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT rid FROM resource WHERE rtype = :t ORDER BY rid"),
                                           {"t": rtype})]


def test_an_offer_s_copies_of_its_places_rows_follow_the_place_and_the_reference(db_url):
    """A place loaded after its offer (a first load copies at its end, a later load when the place is written), the
    offer then updated to list it no more: the offer's copies, and so ``location.…`` searches, follow each step."""
    resources = list(read_resources(FIXTURES / "small" / "bundle.json"))
    place = next(r for r in resources if r["id"] == "loc-usp-nord")
    svc = make_service(db_url)
    near = [("location.near", f"{place['position']['latitude']}|{place['position']['longitude']}|0.1|km")]

    def found(more: list[tuple[str, str]] = ()) -> set[str]:
        bundle = orjson.loads(svc.search("HealthcareService", [*near, *more], BASE).body)
        return {e["resource"]["id"] for e in bundle.get("entry", ())}

    bulk.upsert(svc.engine, [r for r in resources if r is not place], batch_size=7, keep_last_updated=True)
    with svc.engine.connect() as conn:
        copies_are_current(conn)
    others = found()  # offers of other places at the same point
    assert "hs-usp" not in others
    bulk.upsert(svc.engine, [place], keep_last_updated=True)
    with svc.engine.connect() as conn:
        copies_are_current(conn)
    assert found() == others | {"hs-usp"}
    renamed = current_body(svc, "HealthcareService", "hs-usp")
    renamed["name"] = "USP renommée"
    points = text(f"SELECT count(*), max(since_tx) FROM idx_geo WHERE param = '{derived.REFERENCE}.near'")
    with svc.engine.connect() as conn:
        copied = conn.execute(points).one()
    assert svc.update("HealthcareService", "hs-usp", orjson.dumps(renamed), BASE).status == 200
    with svc.engine.connect() as conn:  # the offer's places unchanged: its copies neither closed nor written again
        assert conn.execute(points).one() == copied
    # its specialty changed: found by the new one in the box (the points copied per specialty code), not the old one
    offer = current_body(svc, "HealthcareService", "hs-usp")
    old = offer["specialty"][0]["coding"][0]["code"]
    new = "022" if old != "022" else "170"
    offer["specialty"] = [{"coding": [{**offer["specialty"][0]["coding"][0], "code": new}]}]
    assert svc.update("HealthcareService", "hs-usp", orjson.dumps(offer), BASE).status == 200
    with svc.engine.connect() as conn:
        copies_are_current(conn)
    assert found([("specialty", new)]) == {"hs-usp"}
    assert "hs-usp" not in found([("specialty", old)])
    offer["location"] = [{"reference": "Location/loc-versailles-hc"}]
    assert svc.update("HealthcareService", "hs-usp", orjson.dumps(offer), BASE).status == 200
    with svc.engine.connect() as conn:
        copies_are_current(conn)
    assert found() == others
