"""The bed-management suppliers' protocol, replayed over real HTTP on the hand-built dataset:
replace → 404 → add, delete of a temporary assignment, 404 on an unknown place, 412 on duplicates,
invalid indicators, atomic batches, and the history they leave."""

from __future__ import annotations

import copy
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import pairwise

import httpx
import orjson
import pytest

from ror.capacity import history
from ror.capacity.indicators import CAPACITY_EXPR, CAPACITY_URL
from ror.fhir.files import read_resources
from ror.store import bulk
from tests.conftest import FIXTURES, LiveServer

FHIR = "application/fhir+json"
USP = "1440990034/ZH-USP"  # idExterneSynchro of loc-usp-nord (fixture README)
NOS = "https://mos.esante.gouv.fr/NOS"


def cc(table: str, code: str) -> dict:
    return {"coding": [{"system": f"{NOS}/{table}/FHIR/{table.replace('_', '-')}", "code": code}]}


def capacity(status="02", nb=1, gender="02", temporality="01", assignment="01", **extra) -> dict:
    subs = [{"url": "capacityType", "valueCodeableConcept": cc("TRE_R329-NatureCapacite", "01")},
            {"url": "capacityStatus", "valueCodeableConcept": cc("TRE_R330-TypeStatutCapacite", status)},
            {"url": "temporalityCapacity", "valueCodeableConcept": cc("TRE_R331-TemporaliteCapacite", temporality)},
            {"url": "nbCapacity", "valueInteger": nb},
            {"url": "capacitySourceType", "valueCodeableConcept": cc("TRE_R335-TypeSourceCapacite", "02")},
            {"url": "capacityUpdateDate", "valueDateTime": "2020-01-01T00:00:00+01:00"},
            {"url": "temporaryAssignement", "valueCodeableConcept": cc("TRE_R337-AffectationTemporaire", assignment)}]
    if gender:
        subs.append({"url": "genderCapacityAvailable", "valueCodeableConcept": cc("TRE_R332-GenreCapacite", gender)})
    for url, (table, code) in extra.items():
        subs.append({"url": url, "valueCodeableConcept": cc(table, code)})
    return {"url": CAPACITY_URL, "extension": subs}


def path(status="02", gender="02", assignment="01", temporality="01") -> str:
    crit = [f"url='{CAPACITY_URL}'", f"extension.where(url='capacityStatus').value.coding.code='{status}'",
            f"extension.where(url='temporalityCapacity').value.coding.code='{temporality}'",
            f"extension.where(url='temporaryAssignement').value.coding.code='{assignment}'"]
    if gender:
        crit.append(f"extension.where(url='genderCapacityAvailable').value.coding.code='{gender}'")
    return f"Location.extension.where({' and '.join(crit)})"


def op(kind: str, fhirpath: str, value: dict | None = None, ans_form: bool = False) -> dict:
    parts = [{"name": "type", "valueString" if ans_form else "valueCode": kind},
             {"name": "path", "valueString": fhirpath}]
    if value is not None:
        parts.append({"name": "value", "part": [{"extension": [value]}]} if ans_form
                     else {"name": "value", "valueExtension": value})
        if kind == "add" and not ans_form:
            parts.append({"name": "name", "valueString": "extension"})
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]}


@pytest.fixture
def http(service):
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    with LiveServer(service) as live, httpx.Client(base_url=live.base, headers={"Accept": FHIR}, timeout=60) as c:
        c.service = service
        yield c


def patch(http, body: dict, identifier: str = USP) -> httpx.Response:
    # Suppliers send only Authorization and Content-Type (no Ror-* headers).
    return http.patch(f"/Location?identifier={identifier}", content=json.dumps(body),
                      headers={"Content-Type": FHIR})


def records(location: dict) -> dict[tuple, dict]:
    out = {}
    for e in location.get("extension", ()):
        if e["url"] == CAPACITY_URL:
            sub = {s["url"]: s for s in e["extension"]}
            key = tuple(sub[d]["valueCodeableConcept"]["coding"][0]["code"] if d in sub else None
                        for d in ("capacityStatus", "temporalityCapacity", "genderCapacityAvailable",
                                  "temporaryAssignement"))
            out[key] = {"nb": sub["nbCapacity"]["valueInteger"], "updated": sub["capacityUpdateDate"]["valueDateTime"]}
    return out


def test_supplier_protocol_end_to_end(http):
    start = datetime.now(UTC)
    # 1. replace an existing indicator (available, men, no temporary assignment): 2 -> 5
    r = patch(http, op("replace", path(), capacity(nb=5)))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"' and "last-modified" in r.headers
    rec = records(r.json())[("02", "01", "02", "01")]
    assert rec["nb"] == 5
    assert datetime.fromisoformat(rec["updated"]) >= start.replace(microsecond=0)  # stamped by the server
    assert records(r.json())[("01", "01", "03", "01")]["updated"] == "2025-06-02T10:00:00+02:00"  # untouched record
    # ... visible in the very next request, directly and chained from the offer
    assert http.get("/Location", params={"identifier": USP, "nb-capacity": "5"}).json()["total"] == 1
    offers = http.get("/HealthcareService", params={"location.nb-capacity": "5",
                                                    "location.identifier": USP}).json()
    assert [e["resource"]["id"] for e in offers["entry"]] == ["hs-usp"]

    # 2. replace of a Covid+ indicator the place does not have yet: 404 with the protocol's expression
    covid = capacity(nb=3, gender="03", assignment="02")
    r = patch(http, op("replace", path(gender="03", assignment="02"), covid))
    assert r.status_code == 404
    issue = r.json()["issue"][0]
    assert issue["code"] == "not-found" and issue["expression"] == [CAPACITY_EXPR]
    # ... so the supplier sends add, in ANS's shape (valueString type, value wrapped in a part, no name)
    r = patch(http, op("add", "Location", covid, ans_form=True))
    assert r.status_code == 200, r.text
    assert records(r.json())[("02", "01", "03", "02")]["nb"] == 3
    assert r.headers["etag"] == 'W/"3"'
    # adding the same indicator again is refused: it must be replaced
    r = patch(http, op("add", "Location", covid))
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "business-rule"

    # 3. end of the crisis: delete the records of temporary assignment 02
    r = patch(http, op("delete", f"Location.extension.where(url='{CAPACITY_URL}' and "
                                 "extension.where(url='temporaryAssignement').value.coding.code='02')"))
    assert r.status_code == 200
    assert ("02", "01", "03", "02") not in records(r.json())
    assert http.get("/Location", params={"identifier": USP, "temporary-assignement": "02"}).json()["total"] == 0

    # 4. the history is exact, with the application
    with http.service.engine.connect() as conn:
        events = [(e.indicator["capacityStatus"], e.indicator["temporaryAssignement"], e.old_value, e.new_value)
                  for e in history.query(conn, location_id="loc-usp-nord")]
        by_eg = history.query(conn, establishment="1440990034")
    assert events == [("02", "01", 2, 5), ("02", "02", None, 3), ("02", "02", 3, None)]
    assert len(by_eg) == 3 and {e.app_id for e in by_eg} == {"local"}


def test_unknown_place_and_duplicate_identifiers(http):
    r = patch(http, op("replace", path(), capacity(nb=5)), identifier="1440990034/NOWHERE")
    assert r.status_code == 404 and r.json()["issue"][0]["expression"] == ["Location"]
    loc = orjson.loads(http.service.read("Location", "loc-usp-nord").body)
    twin = copy.deepcopy(loc)
    twin["id"] = "loc-usp-twin"
    bulk.upsert(http.service.engine, [twin])
    r = patch(http, op("replace", path(), capacity(nb=5)))
    assert r.status_code == 412 and r.json()["issue"][0]["code"] == "multiple-matches"


@pytest.mark.parametrize(("record", "why"), [
    (capacity(status="05", gender=None), "needs 'capacityClosingType'"),  # closed without closing type
    (capacity(status="02", capacityClosingType=("TRE_R333-TypeFermetureCapacite", "01")), "cannot have"),
    (capacity(status="06", gender=None), "needs 'additionalBedType'"),
    (capacity(status="01", temporality="03"), "cannot have temporality"),
    (capacity(status="09"), "is not a code"),
    (capacity(nb=-2), "non-negative"),
    ({"url": CAPACITY_URL, "extension": [{"url": "nbCapacity", "valueInteger": 1}]}, "without 'capacityType'"),
])
def test_invalid_indicators_are_refused(http, record, why):
    before = http.get("/Location", params={"identifier": USP}).json()["entry"][0]["resource"]
    r = patch(http, op("add", "Location", record))
    assert r.status_code == 400, r.text
    issues = r.json()["issue"]
    assert all(i["code"] == "business-rule" for i in issues)
    assert any(why in i["diagnostics"] for i in issues), issues
    assert all(i["expression"][0].startswith(CAPACITY_EXPR) for i in issues)
    after = http.get("/Location", params={"identifier": USP}).json()["entry"][0]["resource"]
    assert after["meta"] == before["meta"]  # nothing written


def test_batch_of_patches_is_atomic(http):
    def entry(identifier, body):
        return {"resource": body, "request": {"method": "PATCH", "url": f"Location?identifier={identifier}"}}
    good = op("replace", path(), capacity(nb=7))
    gyn = op("replace", path(gender="01"), capacity(nb=9, gender="01"))
    bad = op("add", "Location", capacity(status="05", gender=None))
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [entry(USP, good), entry("1440990026/ZH-GYN-A", gyn), entry("1440990026/ZH-GYN-B", bad)]}
    r = http.post("", content=json.dumps(bundle), headers={"Content-Type": FHIR})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"][0] == "Bundle.entry[2]"
    assert http.get("/Location", params={"identifier": USP, "nb-capacity": "7"}).json()["total"] == 0
    bundle["entry"].pop()
    r = http.post("", content=json.dumps(bundle), headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.text
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["200", "200"]
    assert http.get("/Location", params={"identifier": USP, "nb-capacity": "7"}).json()["total"] == 1
    assert http.get("/Location", params={"identifier": "1440990026/ZH-GYN-A", "nb-capacity": "9"}).json()["total"] == 1


def test_a_bundle_patching_one_place_twice_applies_both(http):
    def entry(body):
        return {"resource": body, "request": {"method": "PATCH", "url": f"Location?identifier={USP}"}}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [entry(op("replace", path(), capacity(nb=31))), entry(op("replace", path(), capacity(nb=32)))]}
    r = http.post("", content=json.dumps(bundle), headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.text
    versions = [int(e["response"]["etag"].split('"')[1]) for e in r.json()["entry"]]
    assert versions[1] == versions[0] + 1  # played entry by entry: two versions
    assert http.get("/Location", params={"identifier": USP, "nb-capacity": "32"}).json()["total"] == 1


def test_concurrent_bundles_lose_nothing(service):
    """4 clients send transaction Bundles patching the same 4 places, half of them in the reverse order
    (computed ahead of the write lock, then written if no other write came first, else played again under the
    lock; on PostgreSQL, a transaction chosen as a deadlock's victim is run again): every change lands once."""
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    places = {"1440990034/ZH-USP": ("02", "02"), "1440990026/ZH-GYN-A": ("02", "01"),
              "1440990026/ZH-GYN-B": ("02", "01"), "1440990026/ZH-NEONAT": ("02", "03")}

    def run(value):
        entries = [{"resource": op("replace", path(status, gender), capacity(status, value, gender)),
                    "request": {"method": "PATCH", "url": f"Location?identifier={ident}"}}
                   for ident, (status, gender) in places.items()]
        body = {"resourceType": "Bundle", "type": "transaction", "entry": entries[::1 if value % 2 else -1]}
        return service.bundle(json.dumps(body).encode(), "http://t").status

    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(run, range(200, 240))) == {200}
    assert_history_chains(service, places, range(200, 240))


def assert_history_chains(service, places: dict, values: range) -> None:
    """Each place's history holds every value once, as an unbroken chain (each change's old value is the
    previous one's new value), and the place ends with the last change's value."""
    with service.engine.connect() as conn:
        for ident, (status, gender) in places.items():
            loc = service.search_result(conn, "Location", [("identifier", ident)]).matches[0]
            events = history.query(conn, location_id=loc.rid)
            assert sorted(e.new_value for e in events) == list(values)
            assert all(a.new_value == b.old_value for a, b in pairwise(events))
            assert records(orjson.loads(loc.body))[(status, "01", gender, "01")]["nb"] == events[-1].new_value


def test_concurrent_suppliers_lose_nothing(service):
    """8 clients, 4 places, 120 replaces with distinct values: every change lands once in the history,
    in an unbroken chain per indicator, and the final state is the last change of each chain."""
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    places = {"1440990034/ZH-USP": ("02", "02"), "1440990026/ZH-GYN-A": ("02", "01"),
              "1440990026/ZH-GYN-B": ("02", "01"), "1440990026/ZH-NEONAT": ("02", "03")}
    jobs = [(ident, status, gender, 100 + i) for i in range(30) for ident, (status, gender) in places.items()]

    def run(job):
        ident, status, gender, value = job
        body = json.dumps(op("replace", path(status, gender), capacity(status, value, gender))).encode()
        return service.conditional_patch("Location", [("identifier", ident)], body, FHIR, "http://t").status

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(run, jobs)) == {200}
    with service.engine.connect() as conn:
        for ident in places:
            loc = service.search_result(conn, "Location", [("identifier", ident)]).matches[0]
            events = history.query(conn, location_id=loc.rid)
            assert len(events) == 30
            assert all(a.new_value == b.old_value for a, b in pairwise(events))
            final = records(orjson.loads(loc.body))[(places[ident][0], "01", places[ident][1], "01")]["nb"]
            assert final == events[-1].new_value
            assert sorted(e.new_value for e in events) == list(range(100, 130))
