"""The validator's memo of elements and extensions found clean (``Validator._unless_clean``) never changes a
verdict: content is only skipped at a date where every code it holds keeps the validity it had when it was
checked, and references are checked for every resource."""

from __future__ import annotations

import copy

from ror.profiles.validation import MISSING_TARGET, Validator
from tests.capacity.test_protocol import capacity
from tests.validation.corpus import EX, hs


def _place(last_updated: str, record: dict) -> dict:
    loc = copy.deepcopy(EX["Location-ror-location-exemple.json"])
    loc["meta"]["lastUpdated"] = last_updated
    loc["extension"].append(record)
    return loc


def _errors(validator: Validator, resource: dict, conn=None) -> list[tuple[str, list[str]]]:
    return [(i.diagnostics, i.expression) for i in validator.validate(resource, conn) if i.severity == "error"]


def test_a_record_found_clean_is_judged_again_before_its_codes_were_valid():
    # The capacity codes of NOS (TRE_R329 … TRE_R337) are valid from 2022-05-27T12:00:00, Paris time.
    v = Validator()
    record = capacity()
    assert _errors(v, _place("2022-05-27T14:00:00+02:00", record)) == []
    assert _errors(v, _place("2024-06-01T10:00:00+02:00", record)) == []  # the memo's case
    morning = _errors(v, _place("2022-05-27T10:00:00+02:00", record))  # same day, before noon
    assert len(morning) == 6 and all("is only valid from 2022-05-27" in d for d, _ in morning)
    assert morning == _errors(Validator(), _place("2022-05-27T10:00:00+02:00", record))  # as a fresh validator


def test_errors_are_never_remembered_as_clean():
    v = Validator()
    bad = capacity(status="99")
    first = _errors(v, _place("2024-01-01T10:00:00+01:00", bad))
    assert len(first) == 1 and "TypeStatutCapacite|99 is not in value set JDV_J188" in first[0][0]
    assert _errors(v, _place("2024-01-02T10:00:00+01:00", bad)) == first


def test_a_reference_is_checked_at_every_write(stored):
    v = Validator()
    offer = hs()
    with stored.connect() as conn:
        assert _errors(v, offer, conn) == []
        offer["providedBy"] = {"reference": "Organization/not-stored"}
        for _ in range(2):
            assert _errors(v, offer, conn) == [
                (f"HealthcareService.providedBy.reference: Organization/not-stored {MISSING_TARGET}",
                 ["HealthcareService.providedBy.reference"])]
