"""The regional FHIR extracts: every resource is valid FHIR (an independent validator, fhir.resources R4B),
shaped like the hand-built fixture (profiles, extension URLs, identifier systems and types, region tag),
with NOS codes that exist, and references that resolve inside the region's extract."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from ror.generate.nos import Nos

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "small" / "bundle.json"
NOS_SYSTEM = re.compile(r"^https://mos\.esante\.gouv\.fr/NOS/((?:TRE|JDV)_[A-Z]\d+-[^/]+)/FHIR/")
# Identifier slices the generator uses that the hand-built fixture has no example of: the RPPS cabinet rank
# of individual practices (TRE_G07 #4) and ADELI numbers (TRE_G08 #0) of professions not in the RPPS.
EXTRA_IDENTIFIERS = {("Organization", "https://rppsrang.esante.gouv.fr", "4"),
                     ("Organization", "https://adelirang.esante.gouv.fr", "0"),
                     ("Practitioner", "urn:oid:1.2.250.1.71.4.2.1", "0")}


def _walk(node, found: list, key: str):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            _walk(v, found, key)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found, key)
    return found


def _shape(resources: list[dict]) -> tuple[set, set, set]:
    urls, identifiers, profiles = set(), set(), set()
    for r in resources:
        t = r["resourceType"]
        urls.update((t, u) for u in _walk(r, [], "url") if u.startswith("http"))
        profiles.update((t, p) for p in r["meta"].get("profile", []))
        for ident in r.get("identifier", []):
            code = ident["type"]["coding"][0]["code"] if "type" in ident else None
            identifiers.add((t, ident.get("system"), code))
    return urls, identifiers, profiles


def _all(fhir) -> list[dict]:
    return [r for types in fhir.values() for resources in types.values() for r in resources]


def test_every_resource_is_valid_r4(fhir):
    errors = Counter()
    for r in _all(fhir):
        try:
            get_fhir_model_class(r["resourceType"]).model_validate(r)
        except Exception as e:
            errors[f"{r['resourceType']}: {str(e)[:200]}"] += 1
    assert not errors, errors.most_common(5)


def test_only_listed_lines_are_unreadable(dataset, dirty_lines):
    for path in sorted((dataset / "fhir").rglob("*.ndjson")):
        rel = path.relative_to(dataset).as_posix()
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            try:
                json.loads(line)
            except ValueError:
                assert dirty_lines.get((rel, number), {}).get("kind") == "truncated", (rel, number)


def test_references_resolve_within_each_region(fhir):
    for region, types in fhir.items():
        ids = {f"{r['resourceType']}/{r['id']}" for resources in types.values() for r in resources}
        refs = _walk(list(types.values()), [], "reference")
        assert refs, region
        missing = [ref for ref in refs if ref not in ids]
        assert not missing, (region, missing[:5])


def test_shaped_like_the_hand_built_fixture(fhir):
    bundle = json.loads(FIXTURE.read_text("utf-8"))
    fixture = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] != "Task"]
    urls, identifiers, profiles = _shape(_all(fhir))
    f_urls, f_identifiers, f_profiles = _shape(fixture)
    assert urls <= f_urls, sorted(urls - f_urls)
    assert identifiers <= f_identifiers | EXTRA_IDENTIFIERS, sorted(identifiers - f_identifiers)
    assert profiles == f_profiles
    # every kind of record the fixture carries is generated too (capacities, prices, zones, sectors...)
    assert len(urls) >= 0.9 * len(f_urls), sorted(f_urls - urls)


def test_region_tag_ids_and_functional_identifiers(fhir):
    tag_system = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
    seen = set()
    for region, types in fhir.items():
        for r in (r for resources in types.values() for r in resources):
            assert r["meta"]["tag"] == [{"system": tag_system, "code": region}]
            assert r["id"] not in seen
            seen.add(r["id"])
            for ident in r.get("identifier", []):
                code = ident.get("type", {}).get("coding", [{}])[0].get("code")
                if code in ("25", "30", "35", "42"):  # place, role, offer, OI ids: region prefix
                    assert re.fullmatch(rf"{region}/\d{{7}}", ident["value"]), ident
        for loc in types["Location"]:
            synchro = [i["value"] for i in loc.get("identifier", []) if i["type"]["coding"][0]["code"] == "26"]
            if synchro:  # idExterneSynchro = idNatStruct of the EG that owns the place / external id
                assert re.fullmatch(r"[0-4](?:2[AB]|\d\d)\d+/ZH-[A-Z-]+-\d+", synchro[0]), synchro


def test_codes_exist_in_the_nos(fhir, dirty_lines, manifest):
    nos = Nos()
    unknown_allowed = {r["key"] for r in manifest["dirty"]["records"] if r["kind"] == "unknown_code"}
    for r in _all(fhir):
        for coding in _walk(r, [], "coding"):
            for c in coding:
                m = NOS_SYSTEM.match(c.get("system", ""))
                if not m or m.group(1) == "TRE_R13-CommuneOM":
                    continue
                known = nos.has(m.group(1), c["code"])
                assert known or f"{r['resourceType']}/{r['id']}" in unknown_allowed, (r["id"], c)
                if known and "display" in c:
                    assert c["display"] == nos.label(m.group(1), c["code"])
    communes = nos.current_communes
    for r in _all(fhir):
        if r["resourceType"] == "Location":
            assert r["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] in communes


def test_hierarchy_and_roles(fhir):
    for types in fhir.values():
        orgs = {o["id"]: o for o in types["Organization"]}
        kinds = Counter()
        for o in orgs.values():
            kind = o["id"].split("-")[0]
            kinds[kind] += 1
            parent = o.get("partOf", {}).get("reference", "").removeprefix("Organization/")
            expected = {"ej": "", "eg": "ej", "oi": "eg"}[kind]
            assert parent.split("-")[0] == expected or (parent == "" and expected == ""), o["id"]
        assert kinds["ej"] and kinds["eg"]
        for role in types["PractitionerRole"]:
            assert role["healthcareService"][0]["reference"].startswith("HealthcareService/")
            assert role["organization"]["reference"].removeprefix("Organization/").startswith("eg-")


@pytest.mark.parametrize("rtype", ["Organization", "HealthcareService", "Location", "Practitioner",
                                   "PractitionerRole"])
def test_every_type_is_generated_in_every_region(fhir, rtype):
    assert all(types[rtype] for types in fhir.values())
