"""Search semantics on the hand-built dataset (tests/fixtures/small): every expected result below is
transcribed from the dataset's README ("Facts the data ensures"), computed by hand and checked with
a plain-Python evaluation, independently of the SQL."""

from __future__ import annotations

import orjson
import pytest

from ror.errors import InvalidSearch, UnknownSearchParameter
from ror.fhir.files import read_resources
from ror.store import bulk
from tests.api.test_http import valid
from tests.conftest import FIXTURES, make_service


def N(table: str, code: str) -> str:
    """A NOS token: N('TRE_R211-ActiviteOperationnelle', '022') -> 'https://…/TRE-R211-…|022'."""
    return f"https://mos.esante.gouv.fr/NOS/{table}/FHIR/{table.replace('_', '-')}|{code}"


R211, R227, R213, R238 = ("TRE_R211-ActiviteOperationnelle", "TRE_R227-ChampActivite", "TRE_R213-ModePriseEnCharge",
                          "TRE_R238-OuvertureAnnuelle")
R329, R330, R331, R332 = ("TRE_R329-NatureCapacite", "TRE_R330-TypeStatutCapacite", "TRE_R331-TemporaliteCapacite",
                          "TRE_R332-GenreCapacite")
FINESS, SIRENE = "https://finess.esante.gouv.fr", "https://sirene.fr"
CHU_OFFERS = {"hs-gyneco-hc", "hs-maternite", "hs-neonat", "hs-usp", "hs-emsp", "hs-cardio-usic", "hs-psy-adulte",
              "hs-cmp-reze"}
ALL_OFFERS = CHU_OFFERS | {"hs-chir-versailles", "hs-cardio-ville", "hs-ehpad-hp", "hs-repit"}
NEAR_44162_5 = {"hs-usp", "hs-cardio-usic"}
BED = [("location.capacity-type", N(R329, "01")), ("location.gender-capacity-available", N(R332, "01")),
       ("location.temporality-capacity", N(R331, "01")), ("location.capacity-status", N(R330, "02")),
       ("location.nb-capacity", "gt0")]

CASES: list[tuple[str, list[tuple[str, str]], set[str]]] = [
    # -- Organization: references, hierarchy, tokens, prices --------------------------------------
    ("Organization", [("partof", "Organization/eg-hotel-dieu")], {"oi-pole-femme", "oi-service-neonat"}),
    ("Organization", [("partof", "ej-chu-nantes")], {"eg-hotel-dieu", "eg-hopital-nord"}),
    ("Organization", [("partof:missing", "true")], {"ej-chu-nantes", "ej-groupe-horizon", "ej-asso-kerlann"}),
    ("Organization", [("type", N("TRE_R66-CategorieEtablissement", "101"))], {"eg-hotel-dieu", "eg-hopital-nord"}),
    ("Organization", [("type", N("TRE_R207-TypeOrganisationInterne", "2"))],
     {"oi-service-gyneco", "oi-service-neonat", "oi-service-chirurgie-versailles"}),
    ("Organization", [("identifier", f"{FINESS}|440990026")], {"eg-hotel-dieu"}),
    ("Organization", [("identifier", "urn:oid:1.2.250.1.71.4.2.2|1350990024")], {"eg-ehpad-rennes"}),
    ("Organization", [("identifier", f"{SIRENE}|264409996")], {"ej-chu-nantes"}),
    ("Organization", [("identifier", "https://oi.esante.gouv.fr|52/0990012")], {"oi-service-gyneco"}),
    ("Organization", [("identifier", "https://oi.esante.gouv.fr|")], {
        "oi-pole-femme", "oi-service-gyneco", "oi-service-neonat", "oi-pole-medecine-nord", "oi-uf-usp",
        "oi-service-chirurgie-versailles"}),
    ("Organization", [("identifier:above", f"{FINESS}|440990026")],
     {"eg-hotel-dieu", "oi-pole-femme", "oi-service-neonat", "oi-service-gyneco"}),
    ("Organization", [("identifier:below", "https://oi.esante.gouv.fr|52/0990012")],
     {"oi-service-gyneco", "oi-pole-femme", "eg-hotel-dieu", "ej-chu-nantes"}),
    ("Organization", [("drop-zone", "true")], {"eg-hotel-dieu"}),
    ("Organization", [("drop-zone", "false")], {"eg-hopital-nord"}),
    ("Organization", [("period-end:missing", "false")], {"eg-clinique-marseille"}),
    ("Organization", [("period-end", "2025-06-30")], {"eg-clinique-marseille"}),
    ("Organization", [("closing-type", "DEF")], {"eg-clinique-marseille"}),
    ("Organization", [("price-type", N("TRE_R246-TypeTarif", "02"))], {"eg-ehpad-rennes"}),
    ("Organization", [("price-type", N("TRE_R246-TypeTarif", "04"))], {"eg-clinique-versailles"}),
    ("Organization", [("price-type", N("TRE_R246-TypeTarif", "01"))], set()),
    ("Organization", [("price-amount-value", "lt10")], {"eg-ehpad-rennes"}),
    ("Organization", [("amount-value", "lt80")], {"eg-ehpad-rennes"}),  # the IG's SearchParameter code
    ("Organization", [("price-amount-value", "ge90")], {"eg-clinique-versailles"}),
    ("Organization", [("price-amount-value", "gt100")], set()),
    ("Organization", [("special-price", "01")], {"eg-clinique-versailles", "eg-ehpad-rennes"}),
    ("Organization", [("special-price", "02")], {"eg-ehpad-rennes"}),
    ("Organization", [("special-price", "03")], set()),
    ("Organization", [("price-validity-start-date", "eq2025-01-01")], {"eg-clinique-versailles", "eg-ehpad-rennes"}),
    ("Organization", [("price-validity-start-date", "ge2026-01-01")], {"eg-ehpad-rennes"}),
    ("Organization", [("price-dependency-level", "03")], set()),
    ("Organization", [("price-type", "03"), ("price-amount-value", "gt50")], {"eg-ehpad-rennes"}),  # independent
    ("Organization", [("price-type", "03"), ("price-amount-value", "gt50"), ("_same-record", "true")], set()),
    ("Organization", [("price-type", "03"), ("price-amount-value", "lt50"), ("_same-record", "true")],
     {"eg-ehpad-rennes"}),
    ("Organization", [("_lastUpdated", "ge2026-01-01")], {"eg-hopital-nord", "eg-ehpad-rennes"}),
    # -- HealthcareService: tokens, OR / AND, modifiers -------------------------------------------
    ("HealthcareService", [("specialty", N(R211, "022"))], {"hs-gyneco-hc", "hs-chir-versailles"}),
    ("HealthcareService", [("specialty", f"{N(R211, '022')},{N(R211, '170')}")],
     {"hs-gyneco-hc", "hs-chir-versailles", "hs-usp", "hs-emsp"}),
    ("HealthcareService", [("specialty", "022,170")], {"hs-gyneco-hc", "hs-chir-versailles", "hs-usp", "hs-emsp"}),
    ("HealthcareService", [("service-type", N(R227, "01"))],
     {"hs-gyneco-hc", "hs-maternite", "hs-neonat", "hs-usp", "hs-emsp", "hs-cardio-usic", "hs-chir-versailles"}),
    ("HealthcareService", [("service-type", N(R227, "02"))], set()),
    ("HealthcareService", [("service-type:not", N(R227, "01"))],
     {"hs-psy-adulte", "hs-cmp-reze", "hs-ehpad-hp", "hs-repit", "hs-cardio-ville"}),
    ("HealthcareService", [("characteristic", N(R213, "28"))],
     {"hs-gyneco-hc", "hs-neonat", "hs-usp", "hs-cardio-usic", "hs-psy-adulte"}),
    ("HealthcareService", [("characteristic", N(R213, "28")), ("characteristic", N(R238, "03"))],
     {"hs-gyneco-hc", "hs-cardio-usic"}),
    ("HealthcareService", [("service-category:missing", "true")], {"hs-emsp"}),
    ("HealthcareService", [("specialty", N(R211, "022")), ("service-category", "157"), ("characteristic", "28")],
     {"hs-gyneco-hc"}),
    ("HealthcareService", [("patient-type", "01")], {"hs-ehpad-hp", "hs-repit"}),
    ("HealthcareService", [("identifier", "52/0990101")], {"hs-gyneco-hc"}),
    ("HealthcareService", [("_tag", "52")], CHU_OFFERS),
    ("HealthcareService", [("_tag", "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM|11")],
     {"hs-chir-versailles", "hs-cardio-ville"}),
    ("HealthcareService", [("_tag", "84")], set()),
    # quantities, strings, dates
    ("HealthcareService", [("age-range-low", "le0")], {"hs-neonat", "hs-cardio-ville"}),
    ("HealthcareService", [("age-range-low", "ge60")], {"hs-ehpad-hp", "hs-repit"}),
    ("HealthcareService", [("age-range-high", "le1")], {"hs-neonat"}),
    ("HealthcareService", [("age-range-high", "lt100")], {"hs-neonat", "hs-maternite", "hs-psy-adulte"}),
    ("HealthcareService", [("age-range-low", "le70"), ("age-range-high", "ge70")],
     ALL_OFFERS - {"hs-neonat", "hs-maternite", "hs-psy-adulte"}),
    ("HealthcareService", [("psychiatric-sector", "44G05")], {"hs-psy-adulte", "hs-cmp-reze"}),
    ("HealthcareService", [("psychiatric-sector", "44g06")], {"hs-cmp-reze"}),
    ("HealthcareService", [("psychiatric-sector", "44G07")], set()),
    ("HealthcareService", [("intervention-zone", N("TRE_R13-CommuneOM", "44109"))], {"hs-emsp"}),
    ("HealthcareService", [("intervention-zone", "78646")], set()),
    ("HealthcareService", [("notavailable-closing-reopeningdate", "ge2026-11-25")], {"hs-cardio-usic"}),
    ("HealthcareService", [("notavailable-closing-reopeningdate", "lt2025-01-01")], {"hs-chir-versailles"}),
    ("HealthcareService", [("_lastUpdated", "ge2026-01-01")],
     {"hs-gyneco-hc", "hs-neonat", "hs-cardio-usic", "hs-cardio-ville", "hs-ehpad-hp"}),
    ("HealthcareService", [("_lastUpdated", "lt2025-01-01")], {"hs-emsp", "hs-cmp-reze", "hs-repit"}),
    ("HealthcareService", [("_lastUpdated", "ge2026-03-10T17:00:00+01:00")], {"hs-cardio-usic", "hs-cardio-ville"}),
    # ge / le at a stamp itself include it
    ("HealthcareService", [("_lastUpdated", "ge2026-01-05T10:15:00+01:00")],
     {"hs-ehpad-hp", "hs-gyneco-hc", "hs-neonat", "hs-cardio-usic", "hs-cardio-ville"}),
    ("HealthcareService", [("_lastUpdated", "le2026-01-05T10:15:00+01:00")],
     ALL_OFFERS - {"hs-gyneco-hc", "hs-neonat", "hs-cardio-usic", "hs-cardio-ville"}),
    ("HealthcareService", [("_lastUpdated", "le2026-01-05T10:14:59+01:00")],
     ALL_OFFERS - {"hs-ehpad-hp", "hs-gyneco-hc", "hs-neonat", "hs-cardio-usic", "hs-cardio-ville"}),
    ("HealthcareService", [("_lastUpdated", "ge2025-01-01"), ("_lastUpdated", "lt2026-01-01")],
     ALL_OFFERS - {"hs-gyneco-hc", "hs-neonat", "hs-cardio-usic", "hs-cardio-ville", "hs-ehpad-hp", "hs-emsp",
                   "hs-cmp-reze", "hs-repit"}),
    # references and chains
    ("HealthcareService", [("location", "Location/loc-gyn-b")], {"hs-gyneco-hc", "hs-maternite"}),
    ("HealthcareService", [("location:missing", "true")], {"hs-emsp"}),
    ("HealthcareService", [("organization", "Organization/eg-hopital-nord")], {"hs-psy-adulte", "hs-cmp-reze"}),
    ("HealthcareService", [("organization", "Organization/eg-hotel-dieu")], set()),
    ("HealthcareService", [("organization.identifier:above", f"{FINESS}|440990026")],
     {"hs-gyneco-hc", "hs-maternite", "hs-neonat"}),
    ("HealthcareService", [("organization.identifier:above", f"{SIRENE}|264409996")], CHU_OFFERS),
    ("HealthcareService", [("organization._lastUpdated:above", "ge2026-01-01")],
     {"hs-usp", "hs-emsp", "hs-cardio-usic", "hs-psy-adulte", "hs-cmp-reze", "hs-ehpad-hp"}),
    ("HealthcareService", [("location.commune-cog", "44109")], {"hs-gyneco-hc", "hs-maternite", "hs-neonat"}),
    # multi-level chains: the offer's organisation's parent (OI -> EG), and two levels up (OI -> OI -> EG)
    ("HealthcareService", [("organization.partof", "Organization/eg-hotel-dieu")], {"hs-maternite", "hs-neonat"}),
    ("HealthcareService", [("organization.partof.identifier", f"{FINESS}|440990026")], {"hs-maternite", "hs-neonat"}),
    ("HealthcareService", [("organization.partof.partof.identifier", f"{FINESS}|440990026")], {"hs-gyneco-hc"}),
    ("PractitionerRole", [("service.organization.partof", "Organization/eg-hotel-dieu")],
     {"pr-martin-maternite", "pr-le-goff-neonat"}),
    ("Practitioner", [("_has:PractitionerRole:practitioner:service.location.commune-cog", "44109")],
     {"pra-martin", "pra-le-goff"}),
    ("HealthcareService", [("location.address-postalcode", "44")], CHU_OFFERS - {"hs-emsp"}),
    ("HealthcareService", [("location.near-insee-code", "44162|5|km")], NEAR_44162_5),
    ("HealthcareService", [("location.near-insee-code", "44162|10|km")],
     NEAR_44162_5 | {"hs-gyneco-hc", "hs-maternite", "hs-neonat", "hs-psy-adulte", "hs-cmp-reze"}),
    ("HealthcareService", [("specialty", N(R211, "022")), *BED], {"hs-gyneco-hc"}),
    ("HealthcareService", BED, {"hs-gyneco-hc", "hs-usp", "hs-maternite"}),  # criteria evaluated independently
    ("HealthcareService", [*BED, ("_same-record", "true")], {"hs-gyneco-hc", "hs-usp"}),  # on one capacity record
    ("Location", [(k.split(".", 1)[1], v) for k, v in BED] + [("_same-record", "true")], {"loc-gyn-a", "loc-usp-nord"}),
    ("Location", [(k.split(".", 1)[1], v) for k, v in BED], {"loc-gyn-a", "loc-gyn-b", "loc-usp-nord"}),
    ("HealthcareService", [("location.capacity-status", N(R330, "05")),
                           ("location.capacity-closing-type", N("TRE_R333-TypeFermetureCapacite", "01"))],
     {"hs-cardio-usic"}),
    ("HealthcareService", [("location.equipment-type", "089")], {"hs-gyneco-hc"}),
    ("HealthcareService", [("location.equipment-type", "088")], set()),
    ("HealthcareService", [("_has:PractitionerRole:service:practitioner.identifier", "810099000019")],
     {"hs-gyneco-hc", "hs-maternite"}),
    ("HealthcareService", [("_has:PractitionerRole:service:practitioner.identifier", "810099000035")],
     {"hs-usp", "hs-emsp"}),
    ("HealthcareService", [("_has:Task:focus:business-status", "02,10")], {"hs-gyneco-hc", "hs-usp"}),
    # _filter
    ("HealthcareService", [("_filter", f"specialty eq {N(R211, '022')} or specialty eq {N(R211, '170')}")],
     {"hs-gyneco-hc", "hs-chir-versailles", "hs-usp", "hs-emsp"}),
    ("HealthcareService",
     [("_filter", "(_lastUpdated ge 2026-01-01 or organization._lastUpdated:above ge 2026-01-01)")],
     {"hs-gyneco-hc", "hs-neonat", "hs-cardio-usic", "hs-cardio-ville", "hs-ehpad-hp", "hs-usp", "hs-emsp",
      "hs-psy-adulte", "hs-cmp-reze"}),
    ("HealthcareService", [("_filter", f"not (service-type eq {N(R227, '01')})")],
     {"hs-psy-adulte", "hs-cmp-reze", "hs-ehpad-hp", "hs-repit", "hs-cardio-ville"}),
    ("HealthcareService", [("_filter", "psychiatric-sector sw 44G0 and location.commune-cog eq 44143")],
     {"hs-psy-adulte", "hs-cmp-reze"}),
    ("HealthcareService", [("_filter", "(age-range-low le 70 and age-range-high ge 70) and _tag eq 53")],
     {"hs-ehpad-hp", "hs-repit"}),
    ("HealthcareService", [("_filter", "service-category pr false")], {"hs-emsp"}),
    # -- Location ----------------------------------------------------------------------------------
    ("Location", [("capacity-type", N(R329, "02"))], {"loc-psy-reze", "loc-ehpad-rennes"}),
    ("Location", [("capacity-status", N(R330, "05"))], {"loc-cardio-nord", "loc-marseille"}),
    ("Location", [("capacity-closing-type", "01")], {"loc-cardio-nord"}),
    ("Location", [("additional-bed-type", "02")], {"loc-gyn-b"}),
    ("Location", [("crisis-type", "02")], {"loc-neonat"}),
    ("Location", [("temporary-assignement", "02")], {"loc-cardio-nord"}),
    ("Location", [("temporality-capacity", N(R331, "03"))], {"loc-gyn-a"}),
    ("Location", [("gender-capacity-available", N(R332, "04"))], set()),
    ("Location", [("nb-capacity", "0")], {"loc-gyn-b", "loc-ehpad-rennes", "loc-marseille"}),
    ("Location", [("nb-capacity", "gt50")], {"loc-ehpad-rennes"}),
    ("Location", [("nb-capacity", "ge25")], {"loc-versailles-hc", "loc-ehpad-rennes", "loc-marseille"}),
    ("Location", [("capacity-update-date", "ge2026-03-01")], {"loc-cardio-nord", "loc-versailles-hc"}),
    ("Location", [("capacity-update-date", "lt2025-07-01T00:00:00Z")],
     {"loc-usp-nord", "loc-psy-reze", "loc-ehpad-rennes", "loc-marseille"}),
    ("Location", [("equipment-feature", "001")], {"loc-gyn-a", "loc-cardio-nord"}),
    ("Location", [("limit-value", "ge260|http://unitsofmeasure.org|kg")], {"loc-gyn-a"}),
    ("Location", [("limit-value", "ge200")], {"loc-gyn-a", "loc-cardio-nord"}),
    ("Location", [("limit-value", "le250")], {"loc-cardio-nord"}),
    ("Location", [("residential-number", "ge50")], {"loc-ehpad-rennes"}),
    ("Location", [("residential-type", "02")], {"loc-ehpad-rennes"}),
    ("Location", [("capacity-type:missing", "true")], {"loc-cabinet-versailles"}),
    ("Location", [("commune-cog", "44162")], {"loc-usp-nord", "loc-cardio-nord"}),
    ("Location", [("address-postalcode", "44400")], {"loc-psy-reze"}),
    ("Location", [("address-city", "NANTES")], {"loc-gyn-a", "loc-gyn-b", "loc-neonat"}),
    ("Location", [("identifier", "1440990026/ZH-GYN-A")], {"loc-gyn-a"}),
    ("Location", [("identifier", "52/0990501")], {"loc-gyn-a"}),
    ("Location", [("operational-status", "3")], {"loc-gyn-a", "loc-cardio-nord", "loc-versailles-hc"}),
    ("Location", [("status", "inactive")], {"loc-marseille"}),
    ("Location", [("organization", "Organization/eg-clinique-marseille")], {"loc-marseille"}),
    ("Location", [("_has:HealthcareService:location:identifier", "52/0990101,52/0990102")],
     {"loc-gyn-a", "loc-gyn-b"}),
    ("Location", [("_tag", "93")], {"loc-marseille"}),
    ("Location", [("_lastUpdated", "ge2026-01-01")],
     {"loc-gyn-a", "loc-neonat", "loc-cardio-nord", "loc-versailles-hc", "loc-ehpad-rennes"}),
    ("Location", [("near", "47.2184|-1.5536|2|km")], {"loc-gyn-a", "loc-gyn-b", "loc-neonat"}),
    ("Location", [("near", "47.2184|-1.5536|5|km")], {"loc-gyn-a", "loc-gyn-b", "loc-neonat", "loc-psy-reze"}),
    ("Location", [("near", "47.2184|-1.5536|5000|m")], {"loc-gyn-a", "loc-gyn-b", "loc-neonat", "loc-psy-reze"}),
    # Rezé's centre in ror/data/communes.csv (polygon centroid) is ~0.7 km from the README's reference
    # point, so the radius leaves that margin: the Nantes places are 4+ km away.
    ("Location", [("near-insee-code", "44143|2|km")], {"loc-psy-reze"}),
    ("Location", [("near-insee-code", "44143|5|km")], {"loc-psy-reze", "loc-gyn-a", "loc-gyn-b", "loc-neonat"}),
    # -- Practitioner, PractitionerRole, Task ----------------------------------------------------------
    ("Practitioner", [("identifier", "urn:oid:1.2.250.1.71.4.2.1|810099000019")], {"pra-martin"}),
    ("Practitioner", [("_tag", "84")], {"pra-rousseau"}),
    ("PractitionerRole", [("practitioner", "Practitioner/pra-martin")], {"pr-martin-gyneco", "pr-martin-maternite"}),
    ("PractitionerRole", [("service", "HealthcareService/hs-cardio-ville")], {"pr-benali-cabinet"}),
    ("PractitionerRole", [("organization", "Organization/eg-hopital-nord")],
     {"pr-durand-usp", "pr-durand-emsp", "pr-rousseau-psy"}),
    ("PractitionerRole", [("specialty", "SM20")], {"pr-martin-gyneco", "pr-martin-maternite"}),
    ("Task", [("business-status", "08")], {"task-ehpad-corrigee"}),
    ("Task", [("focus", "HealthcareService/hs-usp")], {"task-usp-completude"}),
]


@pytest.fixture(scope="module")
def small(module_db_url):
    svc = make_service(module_db_url)
    resources = list(read_resources(FIXTURES / "small" / "bundle.json"))
    assert all(isinstance(r, dict) for r in resources)
    assert bulk.upsert(svc.engine, resources, keep_last_updated=True)["created"] == 51
    yield svc
    svc.engine.dispose()


def search(svc, rtype: str, pairs) -> dict:
    return valid(orjson.loads(svc.search(rtype, list(pairs), "http://t/fhir").body))


def matches(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


@pytest.mark.parametrize(("rtype", "pairs", "expected"), CASES,
                         ids=[f"{t}?{'&'.join(f'{k}={v}' for k, v in p)}"[:120] for t, p, _ in CASES])
def test_search(small, rtype, pairs, expected):
    bundle = search(small, rtype, pairs)
    found = matches(bundle)
    assert len(found) == len(set(found))
    assert set(found) == expected
    assert bundle["total"] == len(expected)


def test_full_offer_include_set_in_one_request(small):
    bundle = search(small, "HealthcareService", [
        ("identifier", "52/0990101"), ("_include", "HealthcareService:organization"),
        ("_include:iterate", "Organization:partof"), ("_include", "HealthcareService:location"),
        ("_revinclude", "PractitionerRole:service"), ("_include", "PractitionerRole:practitioner"),
        ("_revinclude", "Task:focus")])
    included = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]
                if e["search"]["mode"] == "include"}
    assert matches(bundle) == ["hs-gyneco-hc"]
    orgs = {i for t, i in included if t == "Organization"}
    assert orgs == {"oi-service-gyneco", "oi-pole-femme", "eg-hotel-dieu", "ej-chu-nantes"}  # the whole chain
    assert {i for t, i in included if t == "Location"} == {"loc-gyn-a", "loc-gyn-b"}
    assert ("PractitionerRole", "pr-martin-gyneco") in included
    assert ("Practitioner", "pra-martin") in included
    assert {i for t, i in included if t == "Task"} == {"task-gyneco-exactitude"}


def test_revinclude_on_location(small):
    bundle = search(small, "Location", [("_id", "loc-gyn-b,loc-marseille"),
                                        ("_revinclude", "HealthcareService:location")])
    assert sorted(matches(bundle)) == ["loc-gyn-b", "loc-marseille"]
    assert {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"} == \
        {"hs-gyneco-hc", "hs-maternite"}


def test_near_returns_distance_and_sorts_by_it(small):
    bundle = search(small, "Location", [("near", "47.2184|-1.5536|10|km"), ("_sort", "near")])
    ids = matches(bundle)
    distances = [e["search"]["extension"][0]["valueDistance"]["value"] for e in bundle["entry"]]
    assert distances == sorted(distances)
    assert set(ids[:3]) == {"loc-gyn-a", "loc-gyn-b", "loc-neonat"} and ids[3] == "loc-psy-reze"
    assert abs(distances[3] - 3.63) < 0.05  # README distance table (haversine)


def test_chained_near_insee_code_reports_place_distances_and_orders_offers(small):
    bundle = search(small, "HealthcareService", [("location.near-insee-code", "44162|10|km"), ("_sort", "near"),
                                                 ("_include", "HealthcareService:location")])
    assert matches(bundle)[:2] in (["hs-usp", "hs-cardio-usic"], ["hs-cardio-usic", "hs-usp"])
    places = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Location"]
    assert places and all(e["search"]["extension"][0]["url"].endswith("location-distance") for e in places)


def test_sort_by_last_updated_both_ways(small):
    asc = matches(search(small, "HealthcareService", [("_sort", "_lastUpdated")]))
    desc = matches(search(small, "HealthcareService", [("_sort", "-_lastUpdated")]))
    assert asc == list(reversed(desc)) and len(asc) == 12
    assert asc[-2:] == ["hs-cardio-usic", "hs-cardio-ville"]


def test_sort_by_string_then_id(small):
    names = [n.lower() for n in (e["resource"].get("name", "") for e in search(
        small, "Organization", [("_sort", "name,_id"), ("_count", "50")])["entry"])]
    from ror.store.indexer import fold
    assert [fold(n) for n in names] == sorted(fold(n) for n in names)


def test_summary_count_and_total_none(small):
    b = search(small, "HealthcareService", [("_summary", "count")])
    assert b["total"] == 12 and b["entry"] == []
    b = search(small, "HealthcareService", [("_total", "none"), ("_count", "1")])
    assert "total" not in b and len(b["entry"]) == 1


@pytest.mark.parametrize(("rtype", "pairs", "error"), [
    ("HealthcareService", [("colour", "red")], UnknownSearchParameter),
    ("HealthcareService", [("organization.colour", "red")], UnknownSearchParameter),
    ("HealthcareService", [("specialty:exact", "022")], InvalidSearch),
    ("HealthcareService", [("specialty:above", "022")], InvalidSearch),
    ("HealthcareService", [("age-range-low", "lt1x")], InvalidSearch),
    ("HealthcareService", [("_lastUpdated", "ge2026-02-30")], InvalidSearch),
    ("HealthcareService", [("name.identifier", "x")], InvalidSearch),
    ("HealthcareService", [("_has:PractitionerRole:organization:identifier", "x")], InvalidSearch),
    ("HealthcareService", [("_include", "HealthcareService:specialty")], InvalidSearch),
    ("HealthcareService", [("_sort", "colour")], InvalidSearch),
    ("HealthcareService", [("_sort", "near")], InvalidSearch),
    ("HealthcareService", [("_filter", "colour eq 1")], InvalidSearch),  # not ignorable, even when lenient
    ("HealthcareService", [("_filter", "specialty co 02")], InvalidSearch),
    ("HealthcareService", [("_count", "-1")], InvalidSearch),
    ("HealthcareService", [("_elements", "id")], UnknownSearchParameter),
    ("Location", [("near-insee-code", "99999|5|km")], InvalidSearch),
    ("Location", [("near", "47.2|-1.5|5|parsec")], InvalidSearch),
    ("Location", [("near", "147.2|-1.5|5|km")], InvalidSearch),
    ("Location", [("nb-capacity:missing", "maybe")], InvalidSearch),
    ("Location", [("_id", "")], InvalidSearch),
])
def test_malformed_search_is_refused_with_the_parameter_named(small, rtype, pairs, error):
    with pytest.raises(error) as exc:
        search(small, rtype, pairs)
    assert exc.value.expression and exc.value.expression[0].split(".")[0].split(":")[0] in \
        {p[0].split(".")[0].split(":")[0] for p in pairs} | {"_filter", "_include", "_sort"}


def test_injection_attempts_are_plain_values(small):
    for value in ["' OR 1=1 --", "%", "_", "\\", "022'); DROP TABLE resource; --"]:
        assert matches(search(small, "HealthcareService", [("specialty", value)])) == []
        assert matches(search(small, "HealthcareService", [("name:contains", value)])) == []
    assert search(small, "HealthcareService", [("_summary", "count")])["total"] == 12
