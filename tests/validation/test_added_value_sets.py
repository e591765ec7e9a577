"""The NOS value sets added from ansforge/IG-NOS (src/ror/data/nos/ig-nos-2023-07, SOURCES.md) are enforced."""

from __future__ import annotations

import copy

import pytest

from ror.errors import UnprocessableResource
from ror.profiles.structure import FR_ADDRESS_INSEE
from ror.profiles.validation import Validator, raise_if_errors
from ror.terminology.bundled import bundled
from ror.terminology.nos import canonical_url
from tests.validation.corpus import ORGANIZATION

R72 = canonical_url("TRE_R72-FinessStatutJuridique")
R13 = canonical_url("TRE_R13-CommuneOM")


def _with_legal_status(code: str) -> dict:
    org = copy.deepcopy(ORGANIZATION)
    org["type"] = [*org["type"], {"coding": [{"system": R72, "code": code}]}]
    return org


def test_the_added_value_sets_are_shipped():
    sizes = {name: len(bundled().value_set(None, canonical_url(name)).members) for name in (
        "JDV_J199-StatutJuridique-ROR", "JDV_J209-TypeSavoirFaire-ROR", "JDV_J210-SpecialiteOrdinale-ROR",
        "JDV_J211-CompetenceExclusive-ROR", "JDV_J212-OrientationParticuliere-ROR",
        "JDV_J213-CapaciteSavoirFaire-ROR", "JDV_J214-QualificationPAC-ROR", "JDV_J215-DESCnonQualifiant-ROR",
        "JDV_J216-DroitExerciceCompl-ROR", "JDV_J229-ProfessionSante-ROR", "JDV_J232-Competence-ROR")}
    assert sizes == {"JDV_J199-StatutJuridique-ROR": 79, "JDV_J209-TypeSavoirFaire-ROR": 10,
                     "JDV_J210-SpecialiteOrdinale-ROR": 80, "JDV_J211-CompetenceExclusive-ROR": 4,
                     "JDV_J212-OrientationParticuliere-ROR": 2, "JDV_J213-CapaciteSavoirFaire-ROR": 16,
                     "JDV_J214-QualificationPAC-ROR": 1, "JDV_J215-DESCnonQualifiant-ROR": 41,
                     "JDV_J216-DroitExerciceCompl-ROR": 24, "JDV_J229-ProfessionSante-ROR": 29,
                     "JDV_J232-Competence-ROR": 43}
    commune = bundled().value_set(None, canonical_url("JDV_J124-Commune"))
    assert commune.whole == {R13} and commune.members == {}  # intensional: every current TRE_R13 code


def test_a_legal_status_outside_j199_is_rejected_with_the_exact_outcome():
    with pytest.raises(UnprocessableResource) as err:
        raise_if_errors(Validator().validate(_with_legal_status("999"), None))
    assert err.value.status == 422
    assert [i.to_fhir() for i in err.value.issues] == [{
        "severity": "error", "code": "code-invalid",
        "diagnostics": f"Organization.type:statutJuridiqueINSEE: {R72}|999 is not in value set "
                       "JDV_J199-StatutJuridique-ROR (version 20220826120000), which this element requires",
        "expression": ["Organization.type[1].coding[0]"]}]


def test_a_legal_status_of_j199_passes():
    assert Validator().validate(_with_legal_status("61"), None) == []


@pytest.mark.parametrize("url", FR_ADDRESS_INSEE)
def test_the_commune_of_an_address_is_bound_to_j124_whatever_fr_core_url_it_carries(url):
    org = copy.deepcopy(ORGANIZATION)
    org["address"] = [{"extension": [{"url": url, "valueCoding": {"system": R13, "code": "44109"}}],
                       "city": "Nantes"}]
    assert [i for i in Validator().validate(org, None) if i.severity == "error"] == []
    org["address"][0]["extension"][0]["valueCoding"]["code"] = "44999"
    errors = [i for i in Validator().validate(org, None) if i.severity == "error"]
    where = ["Organization.address[0].extension[0].valueCoding"]
    assert [(i.code, i.expression) for i in errors] == [("code-invalid", where)]
    assert errors[0].diagnostics == (f"Organization.address.extension:inseeCode.value: {R13}|44999 is not in value set "
                                     "JDV_J124-Commune (version 20240628120000), which this element requires")
