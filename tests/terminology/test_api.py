"""The terminology API and $validate over real HTTP (uvicorn on 127.0.0.1, the routes as mounted)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from ror.api.terminology import terminology_routes
from ror.cli.main import example_files
from ror.terminology.nos import canonical_url
from tests.conftest import _free_port

J19 = canonical_url("JDV_J19-ModePriseEnCharge-ROR")
R227 = canonical_url("TRE_R227-ChampActivite")
R213 = canonical_url("TRE_R213-ModePriseEnCharge")


@pytest.fixture(scope="module")
def client(nos_engine):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=terminology_routes(nos_engine)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
        yield c
    server.should_exit = True
    thread.join(5)


def _params(body: dict) -> dict:
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in body["parameter"]
            if "part" not in p}


def test_search_by_url_and_name(client):
    b = client.get("/fhir/ValueSet", params={"url": J19}).json()
    assert b["total"] == 1 and b["entry"][0]["resource"]["version"] == "20260629120000"
    b = client.get("/fhir/CodeSystem", params={"name": "TRE_R22"}).json()
    assert {e["resource"]["id"] for e in b["entry"]} >= {"TRE-R227-ChampActivite", "TRE-R22-GenreActivite"}
    assert client.get("/fhir/CodeSystem", params={"colour": "x"}).status_code == 400


def test_read_and_read_only(client):
    cs = client.get("/fhir/CodeSystem/TRE-R227-ChampActivite").json()
    assert [c["code"] for c in cs["concept"]] == ["01", "02", "03", "04", "05", "06"]
    assert client.get("/fhir/ValueSet/JDV-J19-ModePriseEnCharge-ROR").json()["compose"]["include"][0]["system"] == R213
    assert client.get("/fhir/CodeSystem/nope").status_code == 404
    r = client.put("/fhir/CodeSystem/TRE-R227-ChampActivite", json=cs)
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"


def test_lookup_current_and_older_version(client):
    now = _params(client.get("/fhir/CodeSystem/$lookup", params={"system": R227, "code": "02"}).json())
    assert now["display"] == "Soins Médicaux et de réadaptation (SMR)" and now["version"] == "20260330120000"
    old = _params(client.get("/fhir/CodeSystem/$lookup",
                             params={"system": R227, "code": "02", "version": "20190329120000"}).json())
    assert old["display"] == "Soins de Suite et Réadaptation (SSR)"
    assert client.get("/fhir/CodeSystem/$lookup", params={"system": R227, "code": "99"}).status_code == 404


def test_validate_code_with_dates(client):
    ok = _params(client.get("/fhir/ValueSet/$validate-code", params={"url": J19, "code": "40"}).json())
    assert ok["result"] is True
    gone = _params(client.get("/fhir/ValueSet/$validate-code", params={"url": J19, "code": "14"}).json())
    assert gone["result"] is False and "not in JDV_J19" in gone["message"]
    retired = _params(client.get("/fhir/CodeSystem/$validate-code", params={"url": R213, "code": "06"}).json())
    assert retired["result"] is False and "retired on 2021-03-26" in retired["message"]
    then = _params(client.get("/fhir/CodeSystem/$validate-code",
                              params={"url": R213, "code": "06", "date": "2020-01-01"}).json())
    assert then["result"] is True
    body = {"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": J19},
                                                        {"name": "coding", "valueCoding": {"system": R213,
                                                                                                   "code": "40"}}]}
    assert _params(client.post("/fhir/ValueSet/$validate-code", json=body).json())["result"] is True


def test_expand_filter_and_paging(client):
    e = client.get("/fhir/ValueSet/JDV-J19-ModePriseEnCharge-ROR/$expand",
                   params={"filter": "hospitalisation", "count": 2, "offset": 1}).json()["expansion"]
    assert e["offset"] == 1 and len(e["contains"]) == 2 and e["total"] > 3
    assert all("hospitalisation" in c["display"].lower() for c in e["contains"])
    accents = client.get("/fhir/ValueSet/$expand", params={"url": J19, "filter": "spécialisé"}).json()
    plain = client.get("/fhir/ValueSet/$expand", params={"url": J19, "filter": "SPECIALISE"}).json()
    assert accents["expansion"]["contains"] == plain["expansion"]["contains"] != []
    assert client.get("/fhir/ValueSet/$expand", params={"url": J19, "count": "x"}).status_code == 400


def test_validate_operation_lists_every_issue(client):
    hs = next(json.loads(p.read_text()) for p in example_files() if p.name.startswith("HealthcareService"))
    hs["type"][0]["coding"][0]["code"] = "99"
    r = client.post("/fhir/HealthcareService/$validate?mode=create", json=hs)
    assert r.status_code == 200
    diags = [i["diagnostics"] for i in r.json()["issue"]]
    assert len(diags) == 2 and "|99 is not in value set JDV_J20" in diags[0] and "careMode" in diags[1]
    loc = next(json.loads(p.read_text()) for p in example_files() if p.name.startswith("Location"))
    ok = client.post("/fhir/Location/$validate", json={"resourceType": "Parameters",
                                                       "parameter": [{"name": "resource", "resource": loc}]})
    assert ok.json()["issue"][0]["severity"] == "information"
    assert client.post("/fhir/Location/$validate", json=hs).status_code == 400
    assert client.post("/fhir/Location/$validate", content=b"{not json").status_code == 400
