"""The IG's official examples against the validator: the only defect is the one the IG is known for."""

from __future__ import annotations

import copy
import json

import pytest

from ror.cli.main import example_files
from ror.errors import UnprocessableResource
from ror.profiles.validation import Validator, raise_if_errors
from tests.validation.corpus import ORGANIZATION

EXAMPLES = {p.name: json.loads(p.read_text()) for p in example_files()}

CARE_MODE = {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R213-ModePriseEnCharge/FHIR/"
                                   "TRE-R213-ModePriseEnCharge", "code": "40", "display": "Hospitalisation complète"}]}


CARE_MODE_MISSING = {"severity": "error", "code": "required",
                     "diagnostics": "Slice 'careMode' of HealthcareService.characteristic (modePriseEnCharge): "
                                    "minimum required = 1, but only found 0",
                     "expression": ["HealthcareService"]}


def _issues(engine, resource):
    with engine.connect() as conn:
        return [i.to_fhir() for i in Validator().validate(resource, conn)]


def test_healthcareservice_example_lacks_exactly_its_care_mode(stored):
    assert _issues(stored, EXAMPLES["HealthcareService-1234564.json"]) == [CARE_MODE_MISSING]


def test_healthcareservice_example_with_its_care_mode_conforms(stored):
    hs = copy.deepcopy(EXAMPLES["HealthcareService-1234564.json"])
    hs["characteristic"].append(CARE_MODE)
    assert _issues(stored, hs) == []


@pytest.mark.parametrize("name", ["Location-ror-location-exemple.json", "Task-ror-task-exemple.json"])
def test_other_examples_conform(stored, name):
    assert _issues(stored, EXAMPLES[name]) == []


def test_examples_keep_their_verdict_without_a_connection():
    """No database: the bundled NOS set recognises the slices and checks the bindings all the same."""
    verdicts = {name: [i.to_fhir() for i in Validator().validate(res, None)] for name, res in EXAMPLES.items()}
    assert verdicts == {"HealthcareService-1234564.json": [CARE_MODE_MISSING],
                        "Location-ror-location-exemple.json": [], "Task-ror-task-exemple.json": []}


def test_organization_used_as_target_conforms(stored):
    assert _issues(stored, ORGANIZATION) == []


def test_raise_if_errors_carries_every_issue(stored):
    hs = copy.deepcopy(EXAMPLES["HealthcareService-1234564.json"])
    hs["providedBy"] = {"reference": "Organization/absent"}
    with stored.connect() as conn:
        issues = Validator().validate(hs, conn)
    with pytest.raises(UnprocessableResource) as e:
        raise_if_errors(issues)
    assert e.value.status == 422
    assert [i.expression for i in e.value.issues] == [["HealthcareService"], ["HealthcareService.providedBy.reference"]]
    raise_if_errors([i for i in issues if i.severity == "warning"])  # warnings alone never block


def test_strict_false_turns_validation_off(stored):
    with stored.connect() as conn:
        assert Validator(strict=False).validate({"resourceType": "Location"}, conn) == []
