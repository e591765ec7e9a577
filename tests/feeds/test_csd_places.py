"""CSD capacities, places and opening hours -> Location (ror-location-supported-capacity,
ror-location-residential-capacity) and HealthcareService.availableTime, field by field on the real samples
(PLATINES ME 2.4 responses) and against the generator's own FHIR for the ME 3.0 shape."""

from __future__ import annotations

import orjson
import pytest

from ror.capacity.indicators import check
from ror.feeds.model import Record
from ror.feeds.regional import RegionalFeed
from ror.feeds.runs import run_import
from ror.generate.runner import generate
from tests.feeds.conftest import CSD_SAMPLE, SAMPLES, all_stored, ext

MOCK_SAMPLE = SAMPLES / "bouchon_eg_conformite_cas1.xml"  # PLATINES ROR mock, response "EG_Conformite_…_Cas1"
NOS = "https://mos.esante.gouv.fr/NOS/"
ROR = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"


def _read(path, region="93"):
    feed = RegionalFeed(region)
    entities, warnings = {}, []
    for item in feed.read(path):
        if isinstance(item, Record):
            warnings.extend(item.warnings)
            for e in item.entities:
                entities.setdefault((e.rtype, e.keys[0].rpartition("|")[2]), e.resource)
    return entities, warnings


def _cap(c: dict) -> dict:
    """A capacity record as {sub-extension: code or value}."""
    out = {}
    for s in c["extension"]:
        v = s.get("valueCodeableConcept")
        out[s["url"]] = (v["coding"][0]["system"].rsplit("/", 1)[-1], v["coding"][0]["code"]) if v else (
            s.get("valueInteger", s.get("valueDateTime")))
    return out


def test_me24_sample_beds_and_housing_capacity_on_the_place_of_the_offer():
    entities, warnings = _read(CSD_SAMPLE)
    hs = entities[("HealthcareService", "47045")]
    loc = entities[("Location", "facility/47045")]
    assert hs["location"] == [{"reference": "@Location|urn:ror:feed:region:93:Location|facility/47045"}]
    assert loc["meta"]["profile"] == [ROR + "ror-location"] and loc["meta"]["tag"][0]["code"] == "93"
    assert loc["status"] == "active" and loc["name"] == "UNITÉ CABINET INDIVIDUEL INFIRMIER"
    # the ME 2.4 offer has no place of its own: the commune of its organisation (e_40841, Hyères)
    assert ext(loc, "ror-commune-cog")[0]["valueCodeableConcept"]["coding"] == [
        {"system": NOS + "TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM", "code": "83069", "display": "Hyères"}]
    assert ext(loc, "ror-meta-creation-date")[0]["valueDateTime"] == "2021-01-07T16:17:29+01:00"
    caps = ext(loc, "ror-location-supported-capacity")
    # <beds total="26" updateDate="2021-01-07T16:17:29+01:00"/>: 26 installed beds, nothing else
    assert [_cap(c) for c in caps] == [{
        "capacityType": ("TRE-R329-NatureCapacite", "01"), "capacityStatus": ("TRE-R330-TypeStatutCapacite", "01"),
        "temporalityCapacity": ("TRE-R331-TemporaliteCapacite", "01"), "nbCapacity": 26,
        "capacitySourceType": ("TRE-R335-TypeSourceCapacite", "01"),
        "capacityUpdateDate": "2021-01-07T16:17:29+01:00",
        "temporaryAssignement": ("TRE-R337-AffectationTemporaire", "01")}]
    assert [s["url"] for s in caps[0]["extension"]] == [  # the order of the IG
        "capacityType", "capacityStatus", "temporalityCapacity", "nbCapacity", "capacitySourceType",
        "capacityUpdateDate", "temporaryAssignement"]
    assert check(caps[0]) == []
    # <residentialCapactity><residentialType code="02" …/><residentialNumber>6</residentialNumber>
    assert ext(loc, "ror-location-residential-capacity") == [{"url": ROR + "ror-location-residential-capacity",
        "extension": [{"url": "residentialType", "valueCodeableConcept": {"coding": [
            {"system": NOS + "TRE_R242-TypeHabitation/FHIR/TRE-R242-TypeHabitation", "code": "02",
             "display": "Chambre simple"}]}}, {"url": "residentialNumber", "valueInteger": 6}]}]
    assert "availableTime" not in hs  # the sample has no operatingHours
    assert not [w for w in warnings if "capacity" in w.field.lower()]


def test_me24_mock_beds_places_place_and_closed_hours():
    entities, warnings = _read(MOCK_SAMPLE, "84")
    hs = entities[("HealthcareService", "UE1")]
    loc = entities[("Location", "facility/UE1")]
    assert hs["location"] == [{"reference": "@Location|urn:ror:feed:region:84:Location|facility/UE1"}]
    # the facility's own <location>: name, description, status TRE_R203 3 (opérationnel), commune Rethel
    assert (loc["name"], loc["description"], loc["status"]) == ("EG", "Centre SSR", "active")
    assert loc["operationalStatus"] == {"system": NOS + "TRE_R203-StatutLieu/FHIR/TRE-R203-StatutLieu",
                                        "code": "3", "display": "Opérationnel"}
    assert ext(loc, "ror-commune-cog")[0]["valueCodeableConcept"]["coding"][0]["code"] == "08362"
    # beds total 231 / avaible 21, space total 231 / avaible 21, updateDate 2017-10-19T00:00:00 (Paris time)
    got = {(c["capacityType"][1], c["capacityStatus"][1]): c["nbCapacity"]
           for c in map(_cap, ext(loc, "ror-location-supported-capacity"))}
    assert got == {("01", "01"): 231, ("01", "02"): 21, ("02", "01"): 231, ("02", "02"): 21}
    assert {c["capacityUpdateDate"] for c in map(_cap, ext(loc, "ror-location-supported-capacity"))} == {
        "2017-10-19T00:00:00+02:00"}
    assert ext(loc, "residential-capacity")[0]["extension"] == [{"url": "residentialType", "valueCodeableConcept": {
        "coding": [{"system": NOS + "TRE_R242-TypeHabitation/FHIR/TRE-R242-TypeHabitation", "code": "02",
                    "display": "Chambre simple"}]}}]  # no residentialNumber in the sample
    # the mock's hours have openFlag 0 (closed) and a filler type 'code144': reported, not mapped
    assert "availableTime" not in hs
    reasons = {(w.line, w.field) for w in warnings}
    assert (6, "openFlag") in reasons and (6, "operatingHoursType") in reasons


def test_me24_hours_with_open_flag_become_available_time(tmp_path):
    text = MOCK_SAMPLE.read_text(encoding="utf-8").replace("<ns1:openFlag>0</ns1:openFlag>",
                                                           "<ns1:openFlag>true</ns1:openFlag>", 1)
    text = text.replace('code="code144" codingScheme="codingScheme134"',
                        'code="01" codingScheme="1.2.250.1.213.3.3.50"', 1)
    path = tmp_path / "open.xml"
    path.write_text(text, encoding="utf-8")
    entities, _ = _read(path, "84")
    assert entities[("HealthcareService", "UE1")]["availableTime"] == [{
        "extension": [
            {"url": ROR + "ror-available-time-number-days-of-week", "valueInteger": 1},
            {"url": ROR + "ror-available-time-effective-opening-closing-date",
             "valuePeriod": {"start": "2017-01-01", "end": "2017-12-31"}},
            {"url": ROR + "ror-available-time-type-of-time", "valueCodeableConcept": {"coding": [
                {"system": NOS + "TRE_R252-TypeHoraire/FHIR/TRE-R252-TypeHoraire", "code": "01",
                 "display": "Horaire d'ouverture"}]}}],
        "daysOfWeek": ["mon"], "availableStartTime": "08:00:00",
        "availableEndTime": "23:59:59"}]  # <endingHour>00:00:00.000</endingHour>: midnight, end of the day


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    generate(out, "2000", seed=1, regions=["84"], jobs=1, dirty=0.0)
    return out


def test_me30_places_and_capacities_match_the_generators_fhir(generated):
    """The generator writes the same places in FHIR and in CSD 3.0: the CSD mapping must give the same
    capacities, housing, commune, names and opening hours."""
    entities, warnings = _read(generated / "csd" / "ror-csd-84.xml", "84")
    assert not warnings
    fhir = [orjson.loads(x) for x in (generated / "fhir" / "84" / "Location.ndjson").read_bytes().splitlines()]
    by_ident = {i["value"]: res for res in fhir for i in res.get("identifier", ()) if
                i["type"]["coding"][0]["code"] == "25"}
    csd = {res["identifier"][0]["value"]: res for (t, _), res in entities.items() if t == "Location"
           and res.get("identifier") and res["identifier"][0]["type"]["coding"][0]["code"] == "25"}
    assert csd and set(csd) <= set(by_ident)
    with_capacity = 0

    def strip(records):
        return sorted(orjson.dumps(_cap(c), option=orjson.OPT_SORT_KEYS) for c in records)
    for ident, loc in csd.items():
        ref = by_ident[ident]
        assert strip(ext(loc, "supported-capacity")) == strip(ext(ref, "supported-capacity")), ident
        assert [_cap(c) for c in ext(loc, "residential-capacity")] == [_cap(c) for c in
                                                                       ext(ref, "residential-capacity")]
        assert ext(loc, "commune-cog")[0]["valueCodeableConcept"]["coding"][0]["code"] == \
            ext(ref, "commune-cog")[0]["valueCodeableConcept"]["coding"][0]["code"]
        assert loc["name"] == ref["name"] and loc.get("alias", [loc["name"]]) == ref.get("alias", [ref["name"]])
        assert {i["type"]["coding"][0]["code"]: i["value"] for i in loc["identifier"]} == {
            i["type"]["coding"][0]["code"]: i["value"] for i in ref["identifier"]}
        assert loc["position"] == pytest.approx(ref["position"])
        assert all(check(c) == [] for c in ext(loc, "supported-capacity"))
        with_capacity += bool(ext(loc, "supported-capacity"))
    assert with_capacity > 0
    offers = {orjson.loads(x)["id"]: orjson.loads(x) for x in
              (generated / "fhir" / "84" / "HealthcareService.ndjson").read_bytes().splitlines()}
    hours = 0
    for (t, rid), hs in entities.items():
        if t == "HealthcareService" and rid in offers:
            assert hs.get("availableTime") == offers[rid].get("availableTime"), rid
            assert hs.get("notAvailable") == offers[rid].get("notAvailable"), rid
            hours += bool(hs.get("availableTime"))
    assert hours > 0


def test_me30_places_are_stored_and_a_reload_changes_nothing(engine, generated):
    path = generated / "csd" / "ror-csd-84.xml"
    r1 = run_import(engine, RegionalFeed("84"), path)
    locations = {k: v for k, v in all_stored(engine).items() if k[0] == "Location"}
    assert locations and r1.counts["created"] > 0
    assert any(ext(v, "supported-capacity") for v in locations.values())
    referenced = {x["reference"] for (t, _), v in all_stored(engine).items() if t == "HealthcareService"
                  for x in v.get("location", ())}
    assert referenced and referenced <= {f"Location/{rid}" for _, rid in locations}
    r2 = run_import(engine, RegionalFeed("84"), path)
    assert (r2.counts["created"], r2.counts["updated"], r2.counts["closed"]) == (0, 0, 0)
