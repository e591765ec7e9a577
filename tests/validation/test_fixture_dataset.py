"""The hand-built dataset (``tests/fixtures/small``) against the ROR profiles, whatever terminology is at hand.

Its README lists two deliberate defects: ``hs-maternite`` lacks its care mode (a profile rule: the one
error expected), and ``oi-service-gyneco`` is an OI under an OI (a rule of the IG's text, not of its
profiles: no error). Every other resource must conform with no connection, and on a fresh database
where ``ror terminology load`` never ran (the validator falls back to the bundled NOS set), so that a
write is judged the same before and after the NOS are loaded.
"""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import func, select

from ror.errors import UnprocessableResource
from ror.profiles.validation import Validator
from ror.store import bulk
from ror.terminology.schema import nos_table
from tests.conftest import FIXTURES, make_service
from tests.validation.corpus import NOS

RESOURCES = [e["resource"] for e in json.loads((FIXTURES / "small" / "bundle.json").read_text("utf-8"))["entry"]]
CARE_MODE_MISSING = {"severity": "error", "code": "required",
                     "diagnostics": "Slice 'careMode' of HealthcareService.characteristic (modePriseEnCharge): "
                                    "minimum required = 1, but only found 0",
                     "expression": ["HealthcareService"]}
EXPECTED = {"hs-maternite": [CARE_MODE_MISSING]}  # every issue of every resource, warnings included


def _issues(validator: Validator, conn) -> dict[str, list[dict]]:
    found = {r["id"]: [i.to_fhir() for i in validator.validate(r, conn)] for r in RESOURCES}
    return {rid: issues for rid, issues in found.items() if issues}


def test_dataset_conforms_without_a_connection():
    assert _issues(Validator(), None) == EXPECTED


def test_dataset_conforms_on_a_fresh_database(db_url):
    svc = make_service(db_url)
    bulk.upsert(svc.engine, RESOURCES, keep_last_updated=True)  # the targets of every reference
    with svc.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(nos_table)).scalar() == 0
        assert _issues(svc.validator, conn) == EXPECTED
    svc.engine.dispose()


def _transaction(resources: list[dict]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]
    }).encode()


def test_dataset_is_written_through_a_validated_transaction(db_url):
    svc = make_service(db_url, validate_writes=True)
    with pytest.raises(UnprocessableResource) as e:
        svc.bundle(_transaction(RESOURCES), "http://x/fhir")
    errors = [i for i in e.value.issues if i.severity == "error"]
    entry = next(i for i, r in enumerate(RESOURCES) if r["id"] == "hs-maternite")
    assert len(errors) == 1 and CARE_MODE_MISSING["diagnostics"] in errors[0].diagnostics
    assert f"Bundle.entry[{entry}]" in errors[0].expression
    fixed = copy.deepcopy(RESOURCES)
    maternite = next(r for r in fixed if r["id"] == "hs-maternite")
    maternite["characteristic"].append({"coding": [{"system": f"{NOS}TRE_R213-ModePriseEnCharge/FHIR/"
                                                              "TRE-R213-ModePriseEnCharge", "code": "28"}]})
    assert svc.bundle(_transaction(fixed), "http://x/fhir").status == 200
    svc.engine.dispose()
