"""``ror quality run`` on the hand-built dataset (tests/fixtures/small, README facts) and on a few
deliberately broken copies of its offers: exact Tasks, exact indicators, idempotence, closure, visibility.

Hand count from the README: 12 offers; ``hs-repit`` hangs on an EJ (outside the §4.2 population);
``hs-maternite`` has no careMode, ``hs-emsp`` no place: the two incomplete offers (both region 52, dept 44,
sanitaire), so their EGs (Hôtel-Dieu, Hôpital Nord) are "in progress"; ``eg-clinique-marseille`` is closed
(period ended 2025-06-30) and not counted. NOS-checked resources = 14 Organization + 12 HealthcareService +
10 Location = 36 (52: 8+8+6, 11: 3+2+2, 53: 2+2+1, 93: 1+0+1). Open Tasks of the dataset: gyneco (in-progress)
and usp (ready), both 52; ``task-ehpad-corrigee`` is completed."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from ror.fhir.files import read_resources
from ror.fhir.rights import FULL_ACCESS
from ror.profiles.validation import Validator
from ror.quality.indicators import indicators
from ror.quality.run import run
from ror.store import bulk
from ror.store.schema import resource, resource_version
from tests.conftest import FIXTURES, LiveServer

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
PT = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-healthcareservice-patient-type"
MATERNITE = ("HealthcareService/hs-maternite", "Offer not complete (ANS completeness criterion): mode de prise en "
             "charge (characteristic, TRE_R213) missing or not in the NOS")
EMSP = ("HealthcareService/hs-emsp", "Offer not complete (ANS completeness criterion): no place (location) of the "
        "offer with a street or lieu-dit, a city and a postal code")


def resources():
    return {r["id"]: r for r in read_resources(FIXTURES / "small" / "bundle.json")}


@pytest.fixture
def loaded(service):
    bulk.upsert(service.engine, list(resources().values()), keep_last_updated=True)
    return service


def quality_tasks(svc) -> dict[str, dict]:
    with svc.engine.connect() as conn:
        return {rid: orjson.loads(body) for rid, body in conn.execute(
            select(resource.c.rid, resource.c.body).where(resource.c.rtype == "Task", resource.c.rid.like("rq-%")))}


def shown(tasks):
    return sorted((t["focus"]["reference"], t["description"], t["status"]) for t in tasks.values())


def groups(svc, by, region=None):
    with svc.engine.connect() as conn:
        return {g["key"]: g for g in indicators(conn, by, region)["groups"]}


def pick(g, *keys):
    return tuple(g[k] for k in keys)


def versions(svc) -> int:
    with svc.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(resource_version)).scalar()


def broken():
    """hs-cardio-ville with a retired operational activity (R211 002, out of JDV_J17) and hs-chir-versailles
    without age max."""
    res = resources()
    ville, chir = copy.deepcopy(res["hs-cardio-ville"]), copy.deepcopy(res["hs-chir-versailles"])
    ville["specialty"][0]["coding"][0]["code"] = "002"
    ville["specialty"][0]["coding"][0].pop("display", None)
    for e in chir["extension"]:
        if e["url"] == PT:
            for sub in e["extension"]:
                if sub["url"] == "ageRange":
                    del sub["valueRange"]["high"]
    return ville, chir


def test_dataset_tasks_and_indicators(loaded):
    result = run(loaded.engine, now=NOW, stale_after_h=1e6)
    tasks = quality_tasks(loaded)
    assert shown(tasks) == sorted([(*EMSP, "requested"), (*MATERNITE, "requested")])
    assert result.counts == {"created": 2}
    validator = Validator()
    with loaded.engine.connect() as conn:
        for t in tasks.values():  # ror-task conformity (references included)
            assert [i for i in validator.validate(t, conn) if i.severity == "error"] == []
            assert t["code"]["coding"][0]["code"] == "01" and t["reasonCode"]["coding"][0]["code"] == "AJO"
            assert t["businessStatus"]["coding"][0]["code"] == "02"
            assert t["meta"]["tag"][0]["code"] == "52"
    keys = ("offers", "offersComplete", "offersInProgress", "establishments", "establishmentsComplete", "locations",
            "locationsWithCapacity", "locationsCapacityUpToDate", "nosChecked", "nosConform", "openAnomalies",
            "completenessRate", "nosConformityRate")
    assert {k: pick(g, *keys) for k, g in groups(loaded, "region").items()} == {
        "52": (8, 6, 2, 2, 0, 6, 6, 6, 22, 22, 4, 0.75, 1.0),
        "11": (2, 2, 0, 1, 1, 2, 1, 1, 7, 7, 0, 1.0, 1.0),
        "53": (1, 1, 0, 1, 1, 1, 1, 1, 5, 5, 0, 1.0, 1.0),
        "93": (0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 0, 0.0, 1.0)}
    assert {k: pick(g, "offers", "offersComplete", "locations", "openAnomalies")
            for k, g in groups(loaded, "department").items()} == {
        "44": (8, 6, 6, 4), "78": (2, 2, 2, 0), "35": (1, 1, 1, 0), "13": (0, 0, 1, 0)}
    # Sector = DomaineROR of the EG category (§4.4): CHU 101 and clinique 365/128 sanitaire, EHPAD 500 MS;
    # hs-repit (no EG, champ 04) medico-social; the 3 EJ have no sector (non-defini).
    assert {k: pick(g, "offers", "offersComplete", "offersOutsidePopulation", "establishments", "locations",
                    "nosChecked", "completenessRate")
            for k, g in groups(loaded, "sector").items()} == {
        "sanitaire": (10, 8, 0, 3, 9, 29, 0.8), "medico-social": (1, 1, 1, 1, 1, 4, 1.0),
        "non-defini": (0, 0, 0, 0, 0, 3, 0.0)}
    assert {k: g["offers"] for k, g in groups(loaded, "department", region="11").items()} == {"78": 2}


def test_capacity_staleness_uses_the_setting(loaded):
    run(loaded.engine, now=NOW, stale_after_h=24)
    assert {k: g["capacityUpToDateRate"] for k, g in groups(loaded, "region").items()} == {
        "52": 0.0, "11": 0.0, "53": 0.0, "93": 0.0}  # every capacityUpdateDate is older than a day


def test_broken_resources_idempotence_and_closure(loaded):
    run(loaded.engine, now=NOW)
    ville, chir = broken()
    bulk.upsert(loaded.engine, [ville, chir])
    result = run(loaded.engine, now=NOW)
    assert result.counts == {"created": 2, "unchanged": 2}
    tasks = quality_tasks(loaded)
    assert shown(tasks) == sorted([
        (*EMSP, "requested"), (*MATERNITE, "requested"),
        ("HealthcareService/hs-cardio-ville", "NOS code '002' (TRE-R211-ActiviteOperationnelle) at "
         "HealthcareService.specialty[0].coding[0] is retired from the NOS", "requested"),
        ("HealthcareService/hs-chir-versailles", "Offer not complete (ANS completeness criterion): patientèle age "
         "minimum and maximum (ror-healthcareservice-patient-type ageRange) not both filled", "requested")])
    nos = next(t for t in tasks.values() if t["focus"]["reference"].endswith("hs-cardio-ville"))
    assert nos["code"]["coding"][0]["code"] == "05" and nos["meta"]["tag"][0]["code"] == "11"
    assert {i["type"]["coding"][0]["code"]: i.get("valueString", i.get("valueExpression")) for i in nos["input"]} == {
        "systemRequester": "ROR national - contrôle qualité", "ruleErrorId": "NOS-RETIRED",
        "errorValue": f"{R211}|002",
        "pathElementError": {"language": "text/fhirpath", "expression": "HealthcareService.specialty[0].coding[0]"}}
    g = groups(loaded, "region")["11"]
    assert pick(g, "offers", "offersComplete", "nosChecked", "nosConform", "codesRetired", "openAnomalies",
                "completenessRate", "nosConformityRate") == (2, 1, 7, 6, 1, 2, 0.5, 0.8571)
    # Idempotence: a second run writes nothing.
    before = versions(loaded)
    assert run(loaded.engine, now=NOW).counts == {"unchanged": 4}
    assert versions(loaded) == before and quality_tasks(loaded) == tasks
    # Fixed: both Tasks are closed as corrected, the others untouched; the anomaly coming back reopens it.
    res = resources()
    bulk.upsert(loaded.engine, [res["hs-cardio-ville"], res["hs-chir-versailles"]])
    assert run(loaded.engine, now=NOW).counts == {"closed": 2, "unchanged": 2}
    after = quality_tasks(loaded)
    closed = {t["focus"]["reference"]: (t["status"], t["businessStatus"]["coding"][0]["code"])
              for t in after.values() if t["status"] != "requested"}
    assert closed == {"HealthcareService/hs-cardio-ville": ("completed", "08"),
                      "HealthcareService/hs-chir-versailles": ("completed", "08")}
    assert groups(loaded, "region")["11"]["openAnomalies"] == 0
    assert run(loaded.engine, now=NOW).counts == {"unchanged": 2}
    bulk.upsert(loaded.engine, [ville])
    assert run(loaded.engine, now=NOW).counts == {"updated": 1, "unchanged": 2}
    assert quality_tasks(loaded)[nos["id"]]["status"] == "requested"


def test_region_run_and_task_visibility(loaded):
    res = resources()
    psy = copy.deepcopy(res["hs-psy-adulte"])  # a sensitive offer without operational activity
    del psy["specialty"]
    bulk.upsert(loaded.engine, [psy])
    assert run(loaded.engine, region="11", now=NOW).counts == {}  # nothing wrong in Île-de-France
    assert run(loaded.engine, region="52", now=NOW).counts == {"created": 3}
    ref = [("focus", "HealthcareService/hs-psy-adulte")]
    full = orjson.loads(loaded.search("Task", ref, "http://t", caller=FULL_ACCESS).body)
    assert [e["resource"]["id"][:3] for e in full["entry"]] == ["rq-"]
    limited = orjson.loads(loaded.search("Task", ref, "http://t", caller=replace(FULL_ACCESS, profile=2)).body)
    assert limited.get("entry", []) == []  # Tasks about a sensitive offer: profiles 1 and 4 only (docs/search.md)
    st = orjson.loads(loaded.search("Task", [("status", "requested")], "http://t", caller=FULL_ACCESS).body)
    assert len(st["entry"]) == 3
    with LiveServer(loaded) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        r = http.get("/api/quality/indicators", params={"by": "sector", "region": "52"})
        assert r.status_code == 200
        assert {g["key"]: g["offersComplete"] for g in r.json()["groups"]} == {"sanitaire": 5, "non-defini": 0}  # EJ
        assert http.get("/api/quality/indicators", params={"by": "planet"}).status_code == 400
        assert len(http.get("/api/quality/runs").json()["runs"]) == 2
