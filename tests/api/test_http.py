"""The REST API over real HTTP (uvicorn on 127.0.0.1), with a raw client (httpx), a real FHIR client
library (fhirpy), and an independent FHIR validator (fhir.resources) on everything returned."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhirpy import SyncFHIRClient

EXAMPLES = Path(__file__).parents[2] / "src" / "ror" / "data" / "examples"
FHIR = "application/fhir+json"
CAPACITY = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-location-supported-capacity"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def valid(resource: dict) -> dict:
    """Parse with fhir.resources (R4B models: the nearest to R4 in a maintained pydantic-2 library)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    if resource["resourceType"] == "Bundle":
        for e in resource.get("entry", []):
            if "resource" in e:
                valid(e["resource"])
    return resource


def outcome(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR)
    body = valid(r.json())
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code, body
    return body


@pytest.fixture
def http(live):
    # Generous timeout: the first validation of a place loads the 39,000-commune table (~1 s idle).
    with httpx.Client(base_url=live.base, headers={"Accept": FHIR}, timeout=60) as c:
        yield c


def put(http, res: dict, **headers) -> httpx.Response:
    return http.put(f"/{res['resourceType']}/{res['id']}", content=json.dumps(res),
                    headers={"Content-Type": FHIR, **headers})


def capacity(status: str, nb: int) -> dict:
    def cc(tre, code):
        return {"coding": [{"system": f"https://mos.esante.gouv.fr/NOS/{tre}/FHIR/{tre.replace('_', '-')}",
                            "code": code}]}
    return {"url": CAPACITY, "extension": [
        {"url": "capacityType", "valueCodeableConcept": cc("TRE_R329-NatureCapacite", "01")},
        {"url": "capacityStatus", "valueCodeableConcept": cc("TRE_R330-TypeStatutCapacite", status)},
        {"url": "temporalityCapacity", "valueCodeableConcept": cc("TRE_R331-TemporaliteCapacite", "01")},
        {"url": "nbCapacity", "valueInteger": nb},
        {"url": "capacitySourceType", "valueCodeableConcept": cc("TRE_R335-TypeSourceCapacite", "02")},
        {"url": "capacityUpdateDate", "valueDateTime": "2026-11-20T10:00:00+01:00"},
        {"url": "temporaryAssignement", "valueCodeableConcept": cc("TRE_R337-AffectationTemporaire", "01")}]}


def test_metadata_instantiates_ror_serveur(http):
    cs = valid(http.get("/metadata").json())
    assert "https://interop.esante.gouv.fr/ig/fhir/ror/CapabilityStatement/ror-serveur|0.7.0" in cs["instantiates"]
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert set(by_type) == {"Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole",
                            "Task"}
    location_params = {p["name"] for p in by_type["Location"]["searchParam"]}
    ig = json.loads((Path(__file__).parents[2] / "src/ror/data/ig/CapabilityStatement-ror-serveur.json").read_text())
    for res in ig["rest"][0]["resource"]:
        declared = {p["name"] for p in res.get("searchParam", [])}
        assert declared <= {p["name"] for p in by_type[res["type"]]["searchParam"]}, res["type"]
    assert {"near-insee-code", "capacity-status", "nb-capacity"} <= location_params


def test_read_etag_last_modified_and_conditional_headers(http):
    loc = example("Location-ror-location-exemple.json")
    r = put(http, loc)
    assert r.status_code == 201 and r.headers["etag"] == 'W/"1"' and "last-modified" in r.headers
    got = http.get(f"/Location/{loc['id']}")
    assert got.status_code == 200 and got.headers["etag"] == 'W/"1"'
    body = valid(got.json())
    stripped = {k: v for k, v in body.items() if k != "meta"}
    assert stripped == {k: v for k, v in loc.items() if k != "meta"}  # read back identically, modulo meta
    loc["name"] = "Lieu modifié"
    outcome(put(http, loc, **{"If-Match": 'W/"7"'}), 412, "conflict")
    ok = put(http, loc, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    assert http.get(f"/Location/{loc['id']}/_history/1").json().get("name") is None
    hist = valid(http.get(f"/Location/{loc['id']}/_history").json())
    assert hist["type"] == "history" and hist["total"] == 2


def test_create_patch_and_conditional_patch(http):
    loc = example("Location-ror-location-exemple.json")
    loc["identifier"] = [{"type": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R345-TypeIdentifiantAutre"
                                               "/FHIR/TRE-R345-TypeIdentifiantAutre", "code": "26"}]},
                          "value": "1780000001/LIT-A"}]
    loc["extension"].append(capacity("02", 3))
    created = http.post("/Location", content=json.dumps(loc), headers={"Content-Type": FHIR})
    assert created.status_code == 201
    rid = created.json()["id"]
    assert created.headers["location"].endswith(f"/Location/{rid}/_history/1")
    path = (f"Location.extension.where(url='{CAPACITY}' and extension.where(url='capacityStatus')"
            ".value.coding.code='02')")
    patch = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": path},
        {"name": "value", "valueExtension": capacity("02", 5)}]}]}
    r = http.patch("/Location?identifier=1780000001/LIT-A", content=json.dumps(patch), headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    nb = next(e for e in r.json()["extension"] if e["url"] == CAPACITY)["extension"][3]  # replaced record
    assert nb == {"url": "nbCapacity", "valueInteger": 5}
    # The very next search sees the new capacity.
    found = http.get("/Location", params={"nb-capacity": "5", "identifier": "1780000001/LIT-A"}).json()
    assert found["total"] == 1
    # Replace of an indicator that does not exist: 404 with the capacity protocol's expression, so
    # the client sends `add` (ANS developer documentation, patch-capacitaire).
    missing = copy.deepcopy(patch)
    missing["parameter"][0]["part"][1]["valueString"] = path.replace("'02'", "'05'")
    body = outcome(http.patch("/Location?identifier=1780000001/LIT-A", content=json.dumps(missing),
                              headers={"Content-Type": FHIR}), 404, "not-found")
    assert body["issue"][0]["expression"] == [f"Location.extension.where(url='{CAPACITY}')"]
    # No such place: 404 on Location; two places: 412 multiple-matches.
    body = outcome(http.patch("/Location?identifier=nope", content=json.dumps(patch),
                              headers={"Content-Type": FHIR}), 404, "not-found")
    assert body["issue"][0]["expression"] == ["Location"]
    http.post("/Location", content=json.dumps(loc), headers={"Content-Type": FHIR})
    outcome(http.patch("/Location?identifier=1780000001/LIT-A", content=json.dumps(patch),
                       headers={"Content-Type": FHIR}), 412, "multiple-matches")
    # JSON Patch by id.
    jp = [{"op": "replace", "path": "/address/city", "value": "VERSAILLES"}]
    r = http.patch(f"/Location/{rid}", content=json.dumps(jp), headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200 and r.json()["address"]["city"] == "VERSAILLES"


def test_post_search_is_the_same_search_as_get(http):
    loc = example("Location-ror-location-exemple.json")
    for i in range(5):
        put(http, {**loc, "id": f"place-{i}", "name": f"Lieu {i}"})
    query = {"name": "lieu", "_count": "2", "_sort": "-name"}
    got = http.get("/Location", params=query).json()
    posted = http.post("/Location/_search", data=query,
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    assert [e["resource"]["id"] for e in posted["entry"]] == ["place-4", "place-3"]
    assert [e["resource"]["id"] for e in got["entry"]] == ["place-4", "place-3"]
    assert posted["total"] == got["total"] == 5
    nxt = next(link["url"] for link in posted["link"] if link["relation"] == "next")
    assert "_cursor=" in nxt and "name=lieu" in nxt  # the next link of a POST search is a GET link
    assert [e["resource"]["id"] for e in httpx.get(nxt).json()["entry"]] == ["place-2", "place-1"]


def test_errors_are_operation_outcomes(http):
    outcome(http.get("/Location/does-not-exist"), 404, "not-found")
    outcome(http.get("/Patient/1"), 404, "not-supported")
    outcome(http.get("/Location", params={"colour": "blue"}), 400, "not-supported")
    outcome(http.get("/Location", params={"nb-capacity": "many"}), 400, "invalid")
    outcome(http.get("/Location", params={"_lastUpdated": "ge2024-13-45"}), 400, "invalid")
    outcome(http.get("/HealthcareService", params={"organization.colour": "x"}), 400, "not-supported")
    outcome(http.get("/Location", params={"_filter": "name eq"}), 400, "invalid")
    outcome(http.get("/Location", params={"_cursor": "forged"}), 400, "invalid")
    outcome(http.post("/Location", content=b"{not json", headers={"Content-Type": FHIR}), 400, "invalid")
    outcome(http.post("/Location", content=b"<Location/>", headers={"Content-Type": "application/xml"}), 415,
            "not-supported")
    outcome(http.post("/Location", content=json.dumps({"resourceType": "Task"}), headers={"Content-Type": FHIR}),
            400, "invalid")
    outcome(http.delete("/Location/x"), 405, "not-supported")
    outcome(http.get("/Location", headers={"Accept": "application/fhir+xml"}), 406, "not-supported")
    lenient = http.get("/Location", params={"colour": "blue"}, headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    warn = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in warn[0]["resource"]["issue"][0]["diagnostics"]


def fixture(rid: str) -> dict:
    bundle = json.loads((Path(__file__).parents[1] / "fixtures/small/bundle.json").read_text())
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == rid)


def valid_offer() -> dict:
    """The IG's HealthcareService example made valid: its care mode (the example lacks it)."""
    hs = example("HealthcareService-1234564.json")
    hs["characteristic"].append({"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R213-ModePriseEnCharge/"
                                             "FHIR/TRE-R213-ModePriseEnCharge", "code": "28"}]})
    return hs


def test_transaction_is_atomic_and_batch_is_not(http):
    loc = example("Location-ror-location-exemple.json")
    hs = valid_offer()
    hs["location"] = [{"reference": "urn:uuid:place-1"}]
    hs["providedBy"] = {"reference": "urn:uuid:provider"}  # created in the same transaction
    good = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:place-1", "resource": loc, "request": {"method": "POST", "url": "Location"}},
        {"fullUrl": "urn:uuid:provider", "resource": fixture("ej-asso-kerlann"),
         "request": {"method": "POST", "url": "Organization"}},
        {"resource": hs, "request": {"method": "PUT", "url": f"HealthcareService/{hs['id']}"}}]}
    r = http.post("", content=json.dumps(good), headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.text
    resp = valid(r.json())
    new_loc = resp["entry"][0]["response"]["location"].split("/_history")[0].split("/fhir/")[1]
    new_org = resp["entry"][1]["response"]["location"].split("/_history")[0].split("/fhir/")[1]
    stored = http.get(f"/HealthcareService/{hs['id']}").json()
    assert stored["location"] == [{"reference": new_loc}] and stored["providedBy"] == {"reference": new_org}
    bad = copy.deepcopy(good)
    bad["entry"][2]["resource"]["id"] = "other"  # id mismatch: the whole Bundle is refused
    before = http.get("/Location", params={"_summary": "count"}).json()["total"]
    body = outcome(http.post("", content=json.dumps(bad), headers={"Content-Type": FHIR}), 400, "invalid")
    assert body["issue"][0]["expression"][0] == "Bundle.entry[2]"
    assert http.get("/Location", params={"_summary": "count"}).json()["total"] == before
    # A profile rule broken by one entry: 422 naming the entry and the element, nothing written.
    invalid = copy.deepcopy(good)
    invalid["entry"][2]["resource"]["characteristic"].pop()  # no care mode
    body = outcome(http.post("", content=json.dumps(invalid), headers={"Content-Type": FHIR}), 422, "required")
    assert body["issue"][0]["expression"] == ["Bundle.entry[2]", "HealthcareService"]
    assert "careMode" in body["issue"][0]["diagnostics"]
    assert http.get("/Location", params={"_summary": "count"}).json()["total"] == before
    batch = copy.deepcopy(bad)
    batch["type"] = "batch"
    batch["entry"][2]["resource"]["providedBy"] = {"reference": "Organization/ej-asso-kerlann"}
    r = http.post("", content=json.dumps(batch), headers={"Content-Type": FHIR})
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201", "201", "400"]


def test_fhir_client_library_create_read_search_page(live):
    client = SyncFHIRClient(live.base, extra_headers={"Accept": FHIR})
    base = example("Location-ror-location-exemple.json")
    for i in range(23):
        loc = copy.deepcopy(base)
        del loc["id"]
        loc["name"] = f"Lieu {i:02d}"
        client.resource("Location", **loc).save()
    found = client.resources("Location").search(name="lieu").limit(5).fetch_all()
    assert sorted(r["name"] for r in found) == [f"Lieu {i:02d}" for i in range(23)]
    one = client.resources("Location").search(name="Lieu 07").first()
    read = client.reference("Location", one.id).to_resource()
    assert read["name"] == "Lieu 07"
    valid(read.serialize())
    assert client.resources("Location").search(name="lieu").count() == 23


def test_an_unexpected_failure_of_a_read_is_a_500_operation_outcome(service, monkeypatch, caplog):
    """Reads by id take the FastReads path, before Starlette's error handler: same answer as elsewhere."""
    from ror.api.app import create_app
    from tests.access.test_security import call

    def broken(*args, **kwargs):
        raise RuntimeError("database gone")

    async def broken_async(*args, **kwargs):
        broken()

    monkeypatch.setattr(service, "read", broken)
    monkeypatch.setattr(service, "read_now_async", broken_async)  # PostgreSQL's read, awaited on the loop
    app = create_app(service, service.settings)
    try:
        r = call(app, "GET", "/fhir/Location/any")
    finally:
        app.trust.audit.close()  # its writer thread must not outlive the test's database
    assert r.status_code == 500 and r.headers["content-type"].startswith(FHIR)
    assert r.json()["issue"][0]["code"] == "exception" and "database gone" not in r.text
    assert "unexpected error on GET /fhir/Location/any" in caplog.text


def test_reads_by_id_are_answered_by_the_trust_space_and_audited_as_any_request(service):
    """A read by id is answered by the trust space itself (``FastReads``, its ``direct``): its audit row says what
    the other requests' rows say (operation, type, status, outcome, what was returned), no audit header leaks, and
    a query string or another method goes to the app."""
    from ror.api.app import create_app
    from tests.access.test_security import call

    location = example("Location-ror-location-exemple.json")
    service.update("Location", location["id"], json.dumps(location).encode(), "http://ror/fhir")
    app = create_app(service, service.settings)
    try:
        read = call(app, "GET", f"/fhir/Location/{location['id']}")
        missing = call(app, "GET", "/fhir/Location/nope")
        refused = call(app, "GET", f"/fhir/Location/{location['id']}", headers={"Accept": "text/html"})
        searched = call(app, "GET", f"/fhir/Location/{location['id']}?_format=json")
        rows = app.trust.audit.query()[::-1]
    finally:
        app.trust.audit.close()
    assert read.status_code == 200 and read.json()["id"] == location["id"] and "x-ror-audit" not in read.headers
    assert read.headers["etag"] == 'W/"1"' and read.headers["content-type"].startswith(FHIR)
    assert int(read.headers["content-length"]) == len(read.content)
    assert missing.status_code == 404 and missing.json()["issue"][0]["code"] == "not-found"
    assert refused.status_code == 406
    assert searched.status_code == 200
    assert [(r["operation"], r["resource_type"], r["status"], r["outcome"], r["returned"]) for r in rows] == [
        ("read", "Location", 200, "ok", {"Location": 1}),
        ("read", "Location", 404, "not-found", {}),
        ("read", "Location", 406, "not-supported", {}),
        ("read", "Location", 200, "ok", {"Location": 1}),
    ]
    assert rows[0]["app_id"] == "local" and rows[0]["profile"] == 1 and rows[0]["path"] == read.request.url.path


def test_patches_skip_starlettes_router_with_the_same_answers(service, monkeypatch, caplog):
    """PATCHes of the store's types take the FastPatches path, before Starlette's router and error handler: the
    same answers as through them (404, 415, a 500 OperationOutcome for an unexpected failure); others go on."""
    from ror.api.app import FastPatches, create_app
    from tests.access.test_security import call

    app = create_app(service, service.settings)
    fast = app.app
    assert isinstance(fast, FastPatches)
    routed, inner = [], fast.app

    async def router(scope, receive, send):
        routed.append((scope["method"], scope["path"]))
        await inner(scope, receive, send)

    fast.app = router

    def broken(*args, **kwargs):
        raise RuntimeError("database gone")

    try:
        body = json.dumps({"resourceType": "Parameters", "parameter": []})
        r = call(app, "PATCH", "/fhir/Location?identifier=nope", content=body, headers={"Content-Type": FHIR})
        assert r.status_code == 404 and r.json()["issue"][0]["expression"] == ["Location"]
        r = call(app, "PATCH", "/fhir/Location/any", content=body, headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and r.json()["issue"][0]["code"] == "not-supported"
        r = call(app, "PATCH", "/fhir/CodeSystem/any", content=body, headers={"Content-Type": FHIR})
        assert r.status_code == 405
        monkeypatch.setattr(service, "conditional_patch_soon", broken)
        r = call(app, "PATCH", "/fhir/Location?identifier=any", content=body, headers={"Content-Type": FHIR})
    finally:
        app.trust.audit.close()  # its writer thread must not outlive the test's database
    assert r.status_code == 500 and r.headers["content-type"].startswith(FHIR)
    assert r.json()["issue"][0]["code"] == "exception" and "database gone" not in r.text
    assert "unexpected error on PATCH /fhir/Location" in caplog.text
    assert routed == [("PATCH", "/fhir/CodeSystem/any")]
