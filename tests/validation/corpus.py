"""A corpus of deliberately broken resources, one per rule family of the validator.

Each case starts from a valid resource (the IG examples, completed where the IG example is defective)
and breaks one rule; ``test_broken.py`` checks the exact OperationOutcome issues the validator returns.
"""

from __future__ import annotations

import copy
import json

from ror.cli.main import example_files

ROR = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
NOS = "https://mos.esante.gouv.fr/NOS/"
EX = {p.name: json.loads(p.read_text()) for p in example_files()}
# A valid EG (the target of the HealthcareService example's providedBy).
ORGANIZATION = {
    "resourceType": "Organization", "id": "999999",
    "meta": {"lastUpdated": "2025-04-08T13:05:27.000+00:00"},
    "extension": [{"url": "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-meta-creation-date",
                   "valueDateTime": "2017-11-27T17:12:28+00:00"}],
    "identifier": [
        {"type": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_G07-TypeIdentifiantStructure/FHIR/"
                                        "TRE-G07-TypeIdentifiantStructure", "code": "1"}]},
         "system": "https://finess.esante.gouv.fr", "value": "010000024"},
        {"type": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_G07-TypeIdentifiantStructure/FHIR/"
                                        "TRE-G07-TypeIdentifiantStructure", "code": "40"}]},
         "system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1010000024"}],
    "type": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/"
                                    "TRE-R66-CategorieEtablissement", "code": "355"}]}],
    "name": "CH DE FLEYRIAT",
}
CARE_MODE = {"coding": [{"system": f"{NOS}TRE_R213-ModePriseEnCharge/FHIR/TRE-R213-ModePriseEnCharge", "code": "40"}]}


def hs() -> dict:
    r = copy.deepcopy(EX["HealthcareService-1234564.json"])
    r["characteristic"].append(copy.deepcopy(CARE_MODE))
    return r


def loc() -> dict:
    r = copy.deepcopy(EX["Location-ror-location-exemple.json"])
    r.pop("text")
    return r


def org() -> dict:
    return copy.deepcopy(ORGANIZATION)


def practitioner(value: str) -> dict:
    return {"resourceType": "Practitioner", "id": "p1", "meta": {"lastUpdated": "2025-01-01T00:00:00Z"},
            "extension": [{"url": f"{ROR}ror-meta-creation-date", "valueDateTime": "2020-01-01T00:00:00Z"}],
            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": value}]}


def _set(r: dict, fn) -> dict:
    fn(r)
    return r


CASES = {
    # cardinality: a 1..1 extension slice missing
    "cardinality-min": _set(loc(), lambda r: r["extension"].pop(0)),
    # cardinality: Location.type is 0..1 in the profile
    "cardinality-max": _set(loc(), lambda r: r["type"].append(copy.deepcopy(r["type"][0]))),
    # slice: careMode twice (1..1)
    "slice-max": _set(hs(), lambda r: r["characteristic"].append(copy.deepcopy(CARE_MODE))),
    # pattern: the territorial division type of an EG is fixed to TRE_R201#4
    "pattern": _set(org(), lambda r: r["extension"].append({"url": f"{ROR}ror-territorial-division", "extension": [
        {"url": "typeTerritorialDivision", "valueCodeableConcept": {"coding": [
            {"system": f"{NOS}TRE_R201-TypeDivisionTerritoriale/FHIR/TRE-R201-TypeDivisionTerritoriale",
             "code": "3"}]}},
        {"url": "codeTerritorialDivision", "valueCodeableConcept": {"coding": [
            {"system": f"{NOS}TRE_G09-DepartementOM/FHIR/TRE-G09-DepartementOM", "code": "01"}]}}]})),
    # required binding: a code that is not in JDV_J20
    "binding": _set(hs(), lambda r: r["type"][0]["coding"][0].update(code="99")),
    # required binding + date: care mode 06 was retired in 2021 and left JDV_J19 in 2023
    "retired-before": _set(hs(), lambda r: r["characteristic"][-1]["coding"][0].update(code="06")),
    # ... the same code on a record last updated in 2020 is only a warning
    "retired-after": _set(hs(), lambda r: (r["characteristic"][-1]["coding"][0].update(code="06"),
                                          r["meta"].update(lastUpdated="2020-06-01T10:00:00+02:00"))),
    # extension structure: wrong value type, and a missing sub-extension
    "extension-type": _set(loc(), lambda r: (r["extension"][0].pop("valueCodeableConcept"),
                                             r["extension"][0].update(valueString="78646"))),
    "sub-extension": _set(hs(), lambda r: r["extension"][1].update(extension=[])),
    # references: a target that does not exist, and a target of the wrong type
    "reference-missing": _set(loc(), lambda r: r.update(partOf={"reference": "Location/absent"})),
    "reference-type": _set(loc(), lambda r: r.update(managingOrganization={"reference": "Location/888888"})),
    # identifiers: FINESS key, idNatStruct prefix, SIRET key, RPPS key
    "finess-key": _set(org(), lambda r: r["identifier"][0].update(value="010000025")),
    "idnatstruct-prefix": _set(org(), lambda r: r["identifier"][1].update(value="9010000024")),
    "siret-key": _set(org(), lambda r: r["identifier"].append({"system": "https://sirene.fr", "type": {"coding": [
        {"system": f"{NOS}TRE_G07-TypeIdentifiantStructure/FHIR/TRE-G07-TypeIdentifiantStructure", "code": "3"}]},
        "value": "26010004500013"})),
    "rpps-key": practitioner("810106476765"),
    # structure: an unknown element, a primitive in the wrong format
    "unknown-element": _set(loc(), lambda r: r.update(colour="blue")),
    "primitive-format": _set(loc(), lambda r: r["extension"][1].update(valueDateTime="2022-13-01")),
}
