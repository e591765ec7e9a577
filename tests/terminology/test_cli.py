"""`ror terminology load` and `ror terminology impact` end to end on SQLite (the CLI reads ROR_DATABASE_URL)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ror.cli.terminology import terminology_app
from ror.store import bulk
from ror.store.engine import make_engine
from tests.validation.corpus import hs


def test_load_then_impact_lists_resources_using_retired_codes(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ror.db'}"
    monkeypatch.setenv("ROR_DATABASE_URL", url)
    runner = CliRunner()
    first = runner.invoke(terminology_app, ["load", "--bundled"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(terminology_app, ["load", "--bundled", "--json"])
    totals = json.loads(again.stdout)["totals"]
    # 357 before the 12 value sets of ig-nos-2023-07 (J124, J199, J209-J216, J229, J232)
    assert (totals["new_tables"], totals["changed_tables"], totals["unchanged_versions"]) == (0, 0, 369)

    offer = hs()
    offer["characteristic"][-1]["coding"][0]["code"] = "06"  # care mode retired on 2021-03-26
    engine = make_engine(url)
    bulk.upsert(engine, [offer])  # stored before the code was retired (a REST write would now be refused)
    engine.dispose()
    result = runner.invoke(terminology_app, ["impact", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows == [{"rtype": "HealthcareService", "rid": "1234564", "path": "HealthcareService.characteristic[2]"
                     ".coding[0]", "system": "https://mos.esante.gouv.fr/NOS/TRE_R213-ModePriseEnCharge/FHIR/"
                     "TRE-R213-ModePriseEnCharge", "code": "06", "reason": "retired on 2021-03-26"}]


def test_load_of_a_missing_path_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ROR_DATABASE_URL", f"sqlite:///{tmp_path / 'ror.db'}")
    result = CliRunner().invoke(terminology_app, ["load", str(tmp_path / "absent.zip")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
