"""The IG's official examples: loaded by the CLI, read back identically (modulo meta), and found by
every search parameter they carry a value for."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from ror.cli.main import app, example_files
from ror.fhir.service import FhirService
from ror.profiles.searchparams import registry
from ror.settings import Settings
from ror.store.engine import make_engine

EXAMPLES = {p.name: json.loads(p.read_text()) for p in example_files()}

# Expected matches written by hand from the example files (independent of the extractors).
HAND = [
    ("HealthcareService", "1234564", [
        ("specialty", "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/"
                      "TRE-R211-ActiviteOperationnelle|022"),
        ("specialty", "022"), ("service-category", "157"), ("service-type", "01"), ("characteristic", "04"),
        ("identifier", "06/0099999"), ("name", "5812"), ("name:contains", "gynecologique"),
        ("name:exact", "5812  Chirurgie gynécologique - HOSPITALISATION COMPLETE"),
        ("age-range-low", "15"), ("age-range-low", "le15||a"), ("age-range-high", "ge150"), ("_tag", "06"),
        ("organization", "Organization/999999"), ("organization", "999999"), ("location", "Location/888888"),
        ("_content", "gynécologique"), ("_id", "1234564"), ("characteristic:not", "99"),
        ("psychiatric-sector:missing", "true"),
    ]),
    ("Location", "ror-location-exemple", [
        ("commune-cog", "78646"), ("type", "001"), ("address-city", "versailles"), ("address-postalcode", "78"),
        ("near-insee-code", "78646|1|km"), ("near-insee-code", "78297|15|km"),  # from Saint-Germain-en-Laye
        ("near", "48.80|2.13|5|km"), ("capacity-status:missing", "true"),
    ]),
    ("Task", "ror-task-exemple", [
        ("status", "in-progress"), ("business-status", "02"), ("code", "06"), ("authored-on", "2024-01-03"),
        ("modified", "ge2024-01-04"), ("authored-on", "2024-01"), ("authored-on", "lt2024-01-04"),
    ]),
]
NOT_FOUND = [
    ("Location", "near-insee-code", "44109|50|km"),  # Nantes is ~340 km away
    ("HealthcareService", "specialty", "023"),
    ("HealthcareService", "age-range-low", "gt15"),
    ("HealthcareService", "characteristic:not", "04"),
    ("Task", "authored-on", "gt2024-01-03"),
]


@pytest.fixture(scope="module")
def loaded(module_db_url) -> FhirService:
    result = CliRunner().invoke(app, ["load", "--examples"], env={"ROR_DATABASE_URL": module_db_url})
    assert result.exit_code == 0, result.output
    assert "created 3" in result.output
    again = CliRunner().invoke(app, ["load", "--examples"], env={"ROR_DATABASE_URL": module_db_url})
    assert "created 0, updated 0, unchanged 3" in again.output
    svc = FhirService(make_engine(module_db_url), Settings(database_url=module_db_url))
    yield svc
    svc.engine.dispose()


def ids(svc: FhirService, rtype: str, pairs) -> set[str]:
    bundle = orjson.loads(svc.search(rtype, list(pairs), "http://t/fhir").body)
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_read_back_identically_modulo_meta(loaded, name):
    ex = EXAMPLES[name]
    back = orjson.loads(loaded.read(ex["resourceType"], ex["id"]).body)
    assert {k: v for k, v in back.items() if k != "meta"} == {k: v for k, v in ex.items() if k != "meta"}
    assert back["meta"]["versionId"] == "1"
    assert back["meta"].get("tag") == ex.get("meta", {}).get("tag")


@pytest.mark.parametrize(("rtype", "rid", "param", "value"),
                         [(t, i, p, v) for t, i, pairs in HAND for p, v in pairs])
def test_found_by_hand_written_criteria(loaded, rtype, rid, param, value):
    assert rid in ids(loaded, rtype, [(param, value)])


@pytest.mark.parametrize(("rtype", "param", "value"), NOT_FOUND)
def test_not_found_when_the_value_differs(loaded, rtype, param, value):
    assert ids(loaded, rtype, [(param, value)]) == set()


def _query_value(ptype: str, value, hint) -> str | None:
    if ptype in ("token", "uri"):
        if isinstance(value, dict) and "coding" in value:
            c = value["coding"][0]
            return f"{c.get('system', '')}|{c['code']}"
        if isinstance(value, dict) and "value" in value:
            return f"{value.get('system', '')}|{value['value']}"
        if isinstance(value, dict) and "code" in value:
            return f"{value.get('system', '')}|{value['code']}"
        return str(value).lower() if isinstance(value, bool) else str(value)
    if ptype == "string":
        text = value if isinstance(value, str) else value.get("city") or value.get("family")
        return text.split()[0] if text else None
    if ptype == "reference":
        return value.get("reference")
    if ptype == "date":
        if isinstance(value, dict):
            return f"ge{value['start']}" if "start" in value else f"le{value['end']}"
        return f"eq{value}"
    if ptype == "number":
        return str(value)
    if ptype == "quantity":
        return f"{value['value']}|{value.get('system', '')}|{value.get('code', '')}"
    return None


def _cases():
    out = []
    for _name, ex in sorted(EXAMPLES.items()):
        for p in registry().for_type(ex["resourceType"]):
            if p.code == "_lastUpdated":
                continue  # server-assigned
            for value, hint in p.extract(ex)[:1]:
                q = _query_value(p.type, value, hint)
                if q is not None:
                    out.append((ex["resourceType"], ex["id"], p.code, q))
    return out


@pytest.mark.parametrize(("rtype", "rid", "param", "value"), _cases())
def test_found_by_every_parameter_it_carries(loaded, rtype, rid, param, value):
    assert rid in ids(loaded, rtype, [(param, value)])


def test_every_parameter_case_is_covered():
    covered = {(t, p) for t, _, p, _ in _cases()}
    assert {("HealthcareService", "specialty"), ("HealthcareService", "age-range-low"),
            ("Location", "commune-cog"), ("Location", "address-postalcode"),
            ("Task", "business-status"), ("Task", "authored-on"), ("HealthcareService", "_tag")} <= covered
    assert Path(example_files()[0]).exists()


def test_last_updated_searches_the_server_time_not_the_submitted_one(loaded):
    # The HealthcareService example was submitted with meta.lastUpdated 2025-04-08.
    assert "1234564" not in ids(loaded, "HealthcareService", [("_lastUpdated", "2025-04-08")])
    assert "1234564" in ids(loaded, "HealthcareService", [("_lastUpdated", "ge2026-01-01")])
