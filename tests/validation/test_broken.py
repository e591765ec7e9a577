"""One deliberately broken resource per rule family, with the exact OperationOutcome issues expected.

The expected issues are in ``expected_outcomes.json`` (read and checked by hand when written: message,
severity, issue code and FHIRPath of each); a change of wording or of any issue shows up here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ror.profiles.validation import Validator
from tests.validation.corpus import CASES

EXPECTED = json.loads((Path(__file__).parent / "expected_outcomes.json").read_text(encoding="utf-8"))


def test_every_case_has_its_expectation():
    assert sorted(CASES) == sorted(EXPECTED)


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_resource_outcome(stored, case):
    with stored.connect() as conn:
        issues = [i.to_fhir() for i in Validator().validate(CASES[case], conn)]
    assert issues == EXPECTED[case]


def test_warning_only_case_is_not_an_error():
    assert [i["severity"] for i in EXPECTED["retired-after"]] == ["warning"]
    assert all(i["severity"] == "error" for k, v in EXPECTED.items() if k != "retired-after" for i in v)
