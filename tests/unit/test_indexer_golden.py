"""``index_rows`` is a pure function of a resource; its output must not drift when it is optimised.

The committed ``indexer_golden.json`` holds one sha256 per resource (of the ``repr`` of its rows: row
order, value types and visibility masks included) for the IG examples, the small fixture bundle and a
few hand-written edge cases, computed by the indexer before it was rewritten for speed. If a change of
the index is intended, regenerate it with ``python tests/unit/test_indexer_golden.py --write`` and say
why in the commit.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

import pytest

from ror.profiles.searchparams import ROR
from ror.settings import Settings
from ror.store import indexer

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("indexer_golden.json")
EXAMPLES = ROOT / "src" / "ror" / "data" / "examples"
BUNDLE = ROOT / "tests" / "fixtures" / "small" / "bundle.json"
TZ = "Europe/Paris"


def _cc(system: str, code, display: str | None = None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _edge_cases() -> list[dict]:
    """Resources with odd shapes: the lenient paths of the extractors and of the visibility masks."""
    nos = "https://mos.esante.gouv.fr/NOS/"
    capacity = ROR + "ror-location-supported-capacity"
    return [
        {"resourceType": "Location", "id": "edge-capacity",
         "meta": {"lastUpdated": "2024-03-05T10:00", "tag": [{"code": "x"}, "bad"], "profile": ["a", 3]},
         "extension": [
             {"url": capacity, "extension": [
                 {"url": "capacityStatus", "valueCodeableConcept": _cc(nos + "TRE_R329", "06")},
                 {"url": "nbCapacity", "valueInteger": 4},
                 {"url": "capacityUpdateDate", "valueDateTime": "2024-02"}]},
             {"url": capacity, "extension": [
                 {"url": "capacityStatus", "valueCodeableConcept": _cc(nos + "TRE_R329", "01")},
                 {"url": "nbCapacity", "valueInteger": 4},
                 {"url": "nbCapacity", "valueInteger": 4},
                 {"url": "capacityType", "valueCodeableConcept": {"coding": [{"code": "a"}, {"system": "s"},
                                                                               "junk", {"code": ""}]}}]},
             {"url": capacity, "extension": [{"url": "additionalBedType", "valueCodeableConcept": _cc("s", "b")},
                                             {"url": "nbCapacity", "valueDecimal": 2.5}]},
             {"url": capacity},
             "not-an-extension",
             {"url": ROR + "ror-location-equipment", "extension": [
                 {"url": "equipmentType", "valueCodeableConcept": _cc("s", "E1")},
                 {"url": ROR + "ror-location-equipment-limit", "extension": [
                     {"url": "equipmentFeature", "valueCodeableConcept": _cc("s", "F")},
                     {"url": "limitValue", "valueQuantity": {"value": 12, "unit": "kg"}}]}]},
             {"url": ROR + "ror-location-residential-capacity", "extension": [
                 {"url": "residentialNumber", "valueInteger": True},
                 {"url": "residentialType", "valueCodeableConcept": _cc("s", "R")}]},
             {"url": ROR + "ror-commune-cog", "valueCodeableConcept": _cc(nos + "TRE_R13", "78646")},
         ],
         "identifier": {"system": "urn:x", "value": "single"},
         "name": "  Éléphant   Œuvre  ", "alias": ["", " ", "Ærø", 7],
         "status": True, "type": [{"text": "no coding"}, _cc("s", "12")],
         "address": [{"text": "Rue", "line": ["1", 2, None], "city": "Saint-Étienne", "postalCode": "42000"},
                     {"family": "odd"}],
         "managingOrganization": {"reference": "https://h/fhir/Organization/o1/_history/3"},
         "partOf": {"reference": "location/lower"}},
        {"resourceType": "HealthcareService", "id": "edge-hs",
         "meta": {"lastUpdated": "2024-03-05T10:00:00.123456+02:00"},
         "extension": [{"url": ROR + "ror-healthcareservice-sensitive-unit", "valueBoolean": True},
                       {"url": ROR + "ror-healthcareservice-patient-type", "extension": [
                           {"url": "ageRange", "valueRange": {"low": {"value": 15}, "high": {"value": 150.5}}}]}],
         "type": [_cc("https://mos.esante.gouv.fr/NOS/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite",
                      "04")],
         "characteristic": [
             _cc(nos + "TRE_R245-X/FHIR/TRE-R245-X", "r1"),
             {"extension": [{"url": ROR + "ror-act-type", "valueCodeableConcept": _cc("s", "t")}],
              "coding": [{"system": "s", "code": "act"}]},
             _cc("s", "open"), "plain", 5, False],
         "name": ["not", "a string"], "active": "yes",
         "providedBy": {"reference": "Organization/"}, "location": [{"reference": "Location/l1"}, {"display": "x"}],
         "availableTime": [{"availableStartTime": "08:00:00"}]},
        {"resourceType": "Organization", "id": "edge-org",
         "meta": {"lastUpdated": "0001-01-01T00:30:00+01:00"},
         "extension": [
             {"url": ROR + "ror-organization-drop-zone", "valueBoolean": False},
             {"url": ROR + "ror-organization-price", "extension": [
                 {"url": "startDate", "valueDate": "2023"},
                 {"url": "specialPrice", "valueCodeableConcept": _cc("s", "sp")},
                 {"url": "amount", "valueMoney": {"value": 10.5, "currency": "EUR"}}]},
             {"url": ROR + "ror-organization-price", "extension": [{"url": "startDate", "valueDate": "bad"}]},
             {"url": "http://hl7.org/fhir/StructureDefinition/organization-period",
              "valuePeriod": {"end": "9999-12-31T23:59:59+14:00"}},
             {"url": ROR + "ror-organization-level-recours-orsan", "valueCodeableConcept": _cc("s", "o")}],
         "name": "Hôpital", "alias": "Single alias", "active": False,
         "type": [{"coding": [{"system": "a", "code": "1"}, {"system": "a", "code": "1"}]}],
         "partOf": {"reference": "Organization/p"}},
        {"resourceType": "Task", "id": "edge-task", "status": "requested",
         "authoredOn": "2024-02-30", "lastModified": "2024-01-04T25:00:00Z",
         "focus": {"reference": "#contained"}, "owner": {"reference": "Practitioner/p1"},
         "businessStatus": {"text": "none"}, "code": {"coding": [{"code": "06"}]}},
        {"resourceType": "Practitioner", "id": "edge-pr",
         "name": [{"family": "Dupont", "given": ["Jean-Marie", "  "], "prefix": ["Dr"]}, {"text": "J. D."}],
         "identifier": [{"value": 3}, {"system": "s"}, {"type": _cc("s", "t"), "value": "x" * 200}]},
        {"resourceType": "Organization", "id": "edge-text",  # _content and string folding
         "name": 'Quote " and \\ backslash\tTab\nNew  line', "alias": ["a", 1, "b", {"name": "nested"}],
         "description": '"name":"not a key" ΣΊΣΥΦΟΣ ﬁ ŒUF Straße\u00a0nbsp\u2003em\u3000ideo \u2070 \U0001d400 ǅ',
         "text": {"div": "<div>x</div>", "status": "generated"}, "comment": "   ",
         "contact": [{"name": {"text": "Hidden contact"}, "telecom": [{"value": "0102"}]}],
         "telecom": [{"system": "phone", "value": "0203"}],
         "extension": [{"url": ROR + "ror-healthcareservice-contact", "valueString": "hidden"},
                       {"url": "other", "valueString": "shown \\u escaped"}],
         "address": [{"line": ["\u00a0"], "city": "Ærø\u0301", "text": ["x"]}]},
        {"resourceType": "HealthcareService", "id": "edge-plain", "name": "Only a name"},
        {"resourceType": "PractitionerRole", "id": "edge-role",
         "code": [{"coding": [{"code": "c", "system": None}]}], "active": True,
         "practitioner": {"reference": "Practitioner/edge-pr"}, "location": [{"reference": 12}]},
    ]


def corpus() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for p in sorted(EXAMPLES.glob("*.json")):
        out[f"example/{p.name}"] = json.loads(p.read_text(encoding="utf-8"))
    for i, entry in enumerate(json.loads(BUNDLE.read_text(encoding="utf-8"))["entry"]):
        r = entry["resource"]
        out[f"bundle/{i}/{r['resourceType']}/{r['id']}"] = r
    for r in _edge_cases():
        out[f"edge/{r['resourceType']}/{r['id']}"] = r
    return out


def digest(resource: dict) -> str:
    return hashlib.sha256(repr(indexer.index_rows(resource)).encode()).hexdigest()


def digests() -> dict[str, str]:
    return {name: digest(r) for name, r in corpus().items()}


@pytest.fixture()
def paris(monkeypatch):
    settings = Settings(local_timezone=TZ)
    monkeypatch.setattr(indexer, "get_settings", lambda: settings)


def test_index_rows_unchanged(paris):
    expected = json.loads(GOLDEN.read_text())
    got = digests()
    assert sorted(got) == sorted(expected)
    changed = [name for name in got if got[name] != expected[name]]
    assert not changed, f"index rows changed for {changed}"


def test_index_rows_does_not_mutate_its_input(paris):
    for name, resource in corpus().items():
        before = copy.deepcopy(resource)
        indexer.index_rows(resource)
        assert resource == before, name


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/unit/test_indexer_golden.py --write")
    indexer.get_settings = lambda: Settings(local_timezone=TZ)
    GOLDEN.write_text(json.dumps(digests(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
