"""Access profiles 0–5 (IG §6) on the hand-built dataset, which has sensitive units, every
confidentiality level, medico-social and city offers, installed and additional capacities. What each
profile gets from read, search, chains, includes and totals is exactly what the rules say, and
filters cannot reveal hidden values."""

from __future__ import annotations

import copy

import orjson
import pytest

from ror.errors import Forbidden, NotFound
from ror.fhir.files import read_resources
from ror.fhir.rights import LocalCaller
from ror.fhir.service import FhirService
from ror.store import bulk
from tests.api.test_http import valid
from tests.conftest import FIXTURES, make_service

SENSITIVE = {"hs-psy-adulte", "hs-cmp-reze"}
ALL_OFFERS = {"hs-gyneco-hc", "hs-maternite", "hs-neonat", "hs-usp", "hs-emsp", "hs-cardio-usic", "hs-psy-adulte",
              "hs-cmp-reze", "hs-chir-versailles", "hs-cardio-ville", "hs-ehpad-hp", "hs-repit"}
CAPACITY = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-location-supported-capacity"
CONTACT = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-healthcareservice-contact"
LEVEL = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-confidentiality-level"


def caller(profile: int, writes: frozenset[str] = frozenset()) -> LocalCaller:
    return LocalCaller(app_id=f"app-p{profile}", profile=profile, write_all=False, write_establishments=writes)


@pytest.fixture(scope="module")
def svc(module_db_url) -> FhirService:
    s = make_service(module_db_url)
    bulk.upsert(s.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    yield s
    s.engine.dispose()


def search(svc, profile, rtype, pairs) -> dict:
    return valid(orjson.loads(svc.search(rtype, list(pairs), "http://t/fhir", caller=caller(profile)).body))


def ids(bundle, mode="match") -> set[str]:
    return {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == mode}


def read(svc, profile, rtype, rid) -> dict:
    return valid(orjson.loads(svc.read(rtype, rid, caller=caller(profile)).body))


def capacity_statuses(location: dict) -> list[str]:
    out = []
    for e in location.get("extension", ()):
        if e["url"] == CAPACITY:
            out += [s["valueCodeableConcept"]["coding"][0]["code"] for s in e["extension"]
                    if s["url"] == "capacityStatus"]
    return sorted(out)


def contact_levels(hs: dict) -> list[str]:
    return sorted(s["valueCodeableConcept"]["coding"][0]["code"] for e in hs.get("extension", ())
                  if e["url"] == CONTACT for s in e["extension"] if s["url"] == LEVEL)


# -- sensitive units ------------------------------------------------------------------------------

@pytest.mark.parametrize(("profile", "expected"), [
    (1, ALL_OFFERS), (4, ALL_OFFERS), (0, ALL_OFFERS - SENSITIVE), (2, ALL_OFFERS - SENSITIVE),
    (3, ALL_OFFERS - SENSITIVE), (5, ALL_OFFERS - SENSITIVE)])
def test_sensitive_offers_only_for_profiles_1_and_4(svc, profile, expected):
    bundle = search(svc, profile, "HealthcareService", [])
    assert ids(bundle) == expected
    assert bundle["total"] == len(expected)  # totals count what the profile sees


@pytest.mark.parametrize("profile", [0, 2, 3, 5])
def test_what_hangs_under_a_sensitive_offer_is_hidden(svc, profile):
    for rtype, rid in [("HealthcareService", "hs-psy-adulte"), ("Location", "loc-psy-reze"),
                       ("PractitionerRole", "pr-rousseau-psy"), ("Practitioner", "pra-rousseau")]:
        with pytest.raises(NotFound):
            svc.read(rtype, rid, caller=caller(profile))
    assert "loc-psy-reze" not in ids(search(svc, profile, "Location", []))


@pytest.mark.parametrize("profile", [0, 2, 3, 5])
def test_no_way_around_through_filters_chains_or_includes(svc, profile):
    assert ids(search(svc, profile, "HealthcareService", [("psychiatric-sector", "44G05")])) == set()
    assert ids(search(svc, profile, "Location", [("_has:HealthcareService:location:psychiatric-sector", "44G")])) \
        == set()
    assert ids(search(svc, profile, "PractitionerRole", [("service", "HealthcareService/hs-psy-adulte")])) == set()
    assert ids(search(svc, profile, "Practitioner", [("_has:PractitionerRole:practitioner:service.psychiatric-sector",
                                                       "44G05")])) == set()
    assert ids(search(svc, profile, "HealthcareService", [("location.commune-cog", "44143")])) == set()
    place = search(svc, profile, "Location", [("commune-cog", "44143"), ("_revinclude", "HealthcareService:location")])
    assert ids(place) == set() and ids(place, "include") == set()
    # From a visible Organization, the include of its offers never brings a sensitive one.
    org = search(svc, profile, "Organization", [("_id", "eg-hopital-nord"),
                                                ("_revinclude", "HealthcareService:organization")])
    assert ids(org, "include") & SENSITIVE == set()
    assert search(svc, profile, "HealthcareService", [("_content", "psychiatrie")])["total"] == 0


def test_profiles_1_and_4_see_sensitive_units_with_their_roles(svc):
    for profile in (1, 4):
        b = search(svc, profile, "HealthcareService", [("_id", "hs-psy-adulte"),
                                                       ("_revinclude", "PractitionerRole:service")])
        assert ids(b) == {"hs-psy-adulte"} and ids(b, "include") == {"pr-rousseau-psy"}


# -- professionals --------------------------------------------------------------------------------

@pytest.mark.parametrize(("profile", "roles"), [
    (1, {"pr-martin-gyneco", "pr-martin-maternite", "pr-le-goff-neonat", "pr-durand-usp", "pr-durand-emsp",
         "pr-benali-cabinet", "pr-rousseau-psy"}),
    (2, {"pr-martin-gyneco", "pr-martin-maternite", "pr-le-goff-neonat", "pr-durand-usp", "pr-durand-emsp",
         "pr-benali-cabinet"}),
    (3, set()),  # no role on a medico-social offer in the dataset
    (0, {"pr-benali-cabinet"}),  # city offers only
])
def test_roles_and_professionals_by_profile(svc, profile, roles):
    assert ids(search(svc, profile, "PractitionerRole", [])) == roles
    practitioners = ids(search(svc, profile, "Practitioner", []))
    expected = {r.split("-")[1] for r in roles}
    assert {p.split("-", 1)[1].split("-")[0] for p in practitioners} == expected


def test_profile_0_full_offer_include_set_on_a_hospital_offer_brings_no_professional(svc):
    b = search(svc, 0, "HealthcareService", [("_id", "hs-gyneco-hc"), ("_revinclude", "PractitionerRole:service"),
                                            ("_include", "PractitionerRole:practitioner")])
    assert ids(b) == {"hs-gyneco-hc"} and ids(b, "include") == set()
    city = search(svc, 0, "HealthcareService", [("_id", "hs-cardio-ville"), ("_revinclude", "PractitionerRole:service"),
                                               ("_include", "PractitionerRole:practitioner")])
    assert ids(city, "include") == {"pr-benali-cabinet", "pra-benali"}


# -- contacts by confidentiality ------------------------------------------------------------------

# Confidentiality levels (TRE_R283) of each offer's contacts in the dataset, and the levels each
# profile may read (IG §6): P1 all; P2, P5 not "très restreint"; P3 the same on medico-social offers,
# public only elsewhere; P4 and P0 public only.
OFFER_LEVELS = {"hs-gyneco-hc": ["1", "2"], "hs-neonat": ["1", "3"], "hs-cardio-usic": ["3"],
                "hs-ehpad-hp": ["1", "2"], "hs-repit": ["1"], "hs-chir-versailles": ["1"]}
MEDICO_SOCIAL = {"hs-ehpad-hp", "hs-repit"}


def readable_levels(profile: int, rid: str) -> set[str]:
    if profile == 1:
        return {"1", "2", "3"}
    if profile in (2, 5) or (profile == 3 and rid in MEDICO_SOCIAL):
        return {"1", "2"}
    return {"1"}


@pytest.mark.parametrize("profile", range(6))
@pytest.mark.parametrize("rid", sorted(OFFER_LEVELS))
def test_offer_contacts_by_confidentiality_level(svc, profile, rid):
    expected = [lv for lv in OFFER_LEVELS[rid] if lv in readable_levels(profile, rid)]
    assert contact_levels(read(svc, profile, "HealthcareService", rid)) == expected


def test_contact_levels_spot_checks(svc):
    assert contact_levels(read(svc, 2, "HealthcareService", "hs-cardio-usic")) == []  # its only contact is level 3
    assert contact_levels(read(svc, 3, "HealthcareService", "hs-gyneco-hc")) == ["1"]  # sanitary: public only
    assert contact_levels(read(svc, 3, "HealthcareService", "hs-ehpad-hp")) == ["1", "2"]


def test_organization_contacts_and_helipad(svc):
    def org_levels(org):
        return sorted(e["valueCodeableConcept"]["coding"][0]["code"] for c in org.get("contact", ())
                      for e in c.get("extension", ()) if e["url"].endswith("ror-contact-confidentiality-level"))
    assert org_levels(read(svc, 1, "Organization", "eg-hotel-dieu")) == ["1", "2", "3"]
    assert org_levels(read(svc, 2, "Organization", "eg-hotel-dieu")) == ["1", "2"]
    assert org_levels(read(svc, 4, "Organization", "eg-hotel-dieu")) == ["1"]
    helipad = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-organization-drop-zone"
    for profile, seen in [(1, True), (4, True), (2, False), (0, False), (5, False)]:
        org = read(svc, profile, "Organization", "eg-hotel-dieu")
        assert any(e["url"] == helipad for e in org.get("extension", ())) is seen
        assert (ids(search(svc, profile, "Organization", [("drop-zone", "true")])) == {"eg-hotel-dieu"}) is seen


# -- capacities -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("profile", "rid", "statuses"), [
    (1, "loc-gyn-b", ["01", "02", "06"]), (4, "loc-gyn-b", ["01", "02", "06"]),
    (2, "loc-gyn-b", ["01", "02"]),  # no additional capacity
    (5, "loc-gyn-b", ["01"]),  # installed only
    (0, "loc-gyn-b", []),
    (3, "loc-gyn-b", []),  # sanitary place: profile 3 sees capacities of medico-social places only
    (3, "loc-ehpad-rennes", ["01", "02", "02", "03"]),  # four records, none additional (README)
])
def test_capacities_by_profile(svc, profile, rid, statuses):
    assert capacity_statuses(read(svc, profile, "Location", rid)) == statuses


def test_capacity_filters_match_only_what_the_profile_reads(svc):
    def places(profile, pairs):
        return ids(search(svc, profile, "Location", pairs))
    assert places(1, [("capacity-status", "06")]) == {"loc-gyn-b", "loc-neonat"}
    assert places(2, [("capacity-status", "06")]) == set()
    assert places(0, [("capacity-status", "02")]) == set()
    assert places(5, [("capacity-status", "02")]) == set()
    assert "loc-gyn-b" in places(5, [("capacity-status", "01")])
    assert places(3, [("nb-capacity", "ge0")]) == {"loc-ehpad-rennes"}
    assert places(2, [("additional-bed-type", "02")]) == set()
    # :missing agrees with the redacted view: to profile 0 no place has a capacity.
    assert places(0, [("capacity-type:missing", "true")]) == places(0, [])
    offers = ids(search(svc, 5, "HealthcareService", [("location.capacity-status", "02")]))
    assert offers == set()


def test_restricted_characteristics(svc):
    hs = orjson.loads(svc.read("HealthcareService", "hs-usp").body)
    act = {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R210-ActeSpecifique/FHIR/TRE-R210-ActeSpecifique",
                       "code": "0123"}],
           "extension": [{"url": "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-act-type",
                          "valueCode": "specificAct"}]}
    hs = copy.deepcopy(hs)
    hs["id"] = "hs-usp-acts"
    hs["identifier"] = [{"value": "52/acts"}]
    hs["characteristic"].append(act)
    bulk.upsert(svc.engine, [hs])
    for profile, seen in [(1, True), (2, True), (4, True), (5, True), (0, False), (3, False)]:
        got = read(svc, profile, "HealthcareService", "hs-usp-acts")
        assert any(c.get("extension") for c in got["characteristic"]) is seen
        found = ids(search(svc, profile, "HealthcareService", [("characteristic", "0123")]))
        assert (found == {"hs-usp-acts"}) is seen


# -- write rights ---------------------------------------------------------------------------------

def test_write_rights_per_establishment(svc):
    loc = orjson.loads(svc.read("Location", "loc-usp-nord").body)
    loc["name"] = "USP renommée"
    nord = frozenset({"1440990034"})  # idNatStruct of eg-hopital-nord (README)
    with pytest.raises(Forbidden):
        svc.update("Location", "loc-usp-nord", orjson.dumps(loc), "http://t", caller=caller(1))
    with pytest.raises(Forbidden):
        svc.update("Location", "loc-usp-nord", orjson.dumps(loc), "http://t",
                   caller=caller(1, frozenset({"1440990026"})))  # another EG
    ok = svc.update("Location", "loc-usp-nord", orjson.dumps(loc), "http://t", caller=caller(1, nord))
    assert ok.status == 200
    # Moving an offer into an establishment the application does not hold is refused.
    hs = orjson.loads(svc.read("HealthcareService", "hs-usp").body)
    hs["providedBy"] = {"reference": "Organization/eg-hotel-dieu"}
    with pytest.raises(Forbidden):
        svc.update("HealthcareService", "hs-usp", orjson.dumps(hs), "http://t", caller=caller(1, nord))


# -- paths added with the visibility rewrite (sets for searches, probes for includes and reads) ----

HIDDEN_UNDER_SENSITIVE = {"loc-psy-reze", "pr-rousseau-psy", "pra-rousseau"}


def next_pairs(bundle: dict) -> list[tuple[str, str]] | None:
    from urllib.parse import parse_qsl, urlsplit
    for link in bundle.get("link", ()):
        if link["relation"] == "next":
            return parse_qsl(urlsplit(link["url"]).query)
    return None


@pytest.mark.parametrize("profile", [0, 2, 3, 5])
def test_iterated_includes_never_bring_what_hangs_under_a_sensitive_offer(svc, profile):
    b = search(svc, profile, "Organization", [
        ("_id", "eg-hopital-nord"), ("_revinclude", "HealthcareService:organization"),
        ("_include:iterate", "HealthcareService:location"), ("_revinclude:iterate", "PractitionerRole:service"),
        ("_include:iterate", "PractitionerRole:practitioner")])
    assert ids(b, "include") & (SENSITIVE | HIDDEN_UNDER_SENSITIVE) == set()
    # From the professional's side: his role on the sensitive offer, and the offer, stay hidden.
    roles = search(svc, profile, "Practitioner", [("_id", "pra-durand"),
                                                  ("_revinclude", "PractitionerRole:practitioner"),
                                                  ("_include:iterate", "PractitionerRole:service")])
    if profile in (2, 5):
        assert ids(roles) == {"pra-durand"}
        assert ids(roles, "include") == {"pr-durand-usp", "pr-durand-emsp", "hs-usp", "hs-emsp"}
    else:  # profiles 0 and 3: no role of his is on a city / medico-social offer
        assert ids(roles) == set() and ids(roles, "include") == set()


def test_iterated_includes_for_profiles_1_and_4(svc):
    for profile in (1, 4):
        b = search(svc, profile, "Organization", [
            ("_id", "eg-hopital-nord"), ("_revinclude", "HealthcareService:organization"),
            ("_include:iterate", "HealthcareService:location"), ("_revinclude:iterate", "PractitionerRole:service"),
            ("_include:iterate", "PractitionerRole:practitioner")])
        assert ids(b, "include") >= SENSITIVE | HIDDEN_UNDER_SENSITIVE


@pytest.mark.parametrize(("profile", "seen"), [(0, set()), (3, set()), (2, {"pra-martin"}), (5, {"pra-martin"}),
                                               (1, {"pra-martin"})])
def test_reverse_chains_through_roles_obey_the_role_rules(svc, profile, seen):
    assert ids(search(svc, profile, "Practitioner", [
        ("_has:PractitionerRole:practitioner:service", "HealthcareService/hs-gyneco-hc")])) == seen
    # The role itself, reached by a chain on its offer.
    roles = ids(search(svc, profile, "PractitionerRole", [("service.identifier:missing", "false"),
                                                          ("practitioner", "Practitioner/pra-martin")]))
    assert roles == ({"pr-martin-gyneco", "pr-martin-maternite"} if seen else set())


@pytest.mark.parametrize("profile", [0, 2, 3, 5])
def test_paging_a_restricted_profile_walks_exactly_what_it_sees(svc, profile):
    everything = ids(search(svc, profile, "Location", [("_count", "100")]))
    assert "loc-psy-reze" not in everything
    seen: list[str] = []
    pairs = [("_count", "2")]
    first = None
    while pairs is not None:
        b = search(svc, profile, "Location", pairs)
        first = first or b
        seen += [e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "match"]
        pairs = next_pairs(b)
    assert sorted(seen) == sorted(everything) and first["total"] == len(everything)


def test_profile_3_capacities_through_search_and_include(svc):
    got = search(svc, 3, "Location", [("_id", "loc-ehpad-rennes,loc-gyn-b")])
    by_id = {e["resource"]["id"]: e["resource"] for e in got["entry"]}
    assert capacity_statuses(by_id["loc-ehpad-rennes"]) == ["01", "02", "02", "03"]
    assert capacity_statuses(by_id["loc-gyn-b"]) == []
    inc = search(svc, 3, "HealthcareService", [("_id", "hs-ehpad-hp,hs-gyneco-hc"),
                                              ("_include", "HealthcareService:location")])
    places = {e["resource"]["id"]: e["resource"] for e in inc["entry"] if e["search"]["mode"] == "include"}
    assert capacity_statuses(places["loc-ehpad-rennes"]) == ["01", "02", "02", "03"]
    assert capacity_statuses(places["loc-gyn-b"]) == []


TASKS = {"task-on-psy": "HealthcareService/hs-psy-adulte", "task-on-psy-place": "Location/loc-psy-reze",
         "task-on-psy-role": "PractitionerRole/pr-rousseau-psy", "task-on-rousseau": "Practitioner/pra-rousseau",
         "task-on-gyneco-role": "PractitionerRole/pr-martin-gyneco", "task-on-gyneco": "HealthcareService/hs-gyneco-hc"}


@pytest.fixture(scope="module")
def tasks(svc):
    base = orjson.loads(svc.read("Task", "task-usp-completude").body)
    made = []
    for tid, focus in TASKS.items():
        t = copy.deepcopy(base)
        t["id"] = tid
        t["focus"] = {"reference": focus}
        t.pop("identifier", None)
        made.append(t)
    bulk.upsert(svc.engine, made)
    return TASKS


@pytest.mark.parametrize(("profile", "seen"), [
    (1, set(TASKS)), (4, set(TASKS)),
    (2, {"task-on-gyneco-role", "task-on-gyneco"}), (5, {"task-on-gyneco-role", "task-on-gyneco"}),
    (0, {"task-on-gyneco"}), (3, {"task-on-gyneco"}),  # the gyneco role is neither city nor medico-social
])
def test_anomalies_about_hidden_resources_are_hidden(svc, tasks, profile, seen):
    assert ids(search(svc, profile, "Task", [("_id", ",".join(tasks))])) == seen
    for tid in set(tasks) - seen:
        with pytest.raises(NotFound):
            svc.read("Task", tid, caller=caller(profile))
    for tid in seen:
        assert read(svc, profile, "Task", tid)["id"] == tid
    # Nor can a filter on the focus reveal them.
    assert ids(search(svc, profile, "Task", [("focus", "HealthcareService/hs-psy-adulte")])) == (
        {"task-on-psy"} if profile in (1, 4) else set())
