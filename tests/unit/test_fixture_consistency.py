"""The hand-built dataset stays internally consistent (references, check keys, NOS codes, profile
rules the search tests rely on): its checker passes, and it catches a broken copy."""

from __future__ import annotations

import json

from tests.fixtures.small import check_bundle


def test_fixture_is_consistent(capsys):
    nos_available = check_bundle.DEFAULT_NOS_DIR.is_dir() and check_bundle.DEFAULT_NOS_ZIP.is_file()
    args = [] if nos_available else ["--skip-nos"]
    assert check_bundle.main(args) == 0, capsys.readouterr()


def test_checker_catches_a_broken_reference(tmp_path, capsys):
    bundle = json.loads(check_bundle.DEFAULT_BUNDLE.read_text())
    role = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "PractitionerRole")
    role["healthcareService"] = [{"reference": "HealthcareService/nowhere"}]
    broken = tmp_path / "bundle.json"
    broken.write_text(json.dumps(bundle))
    assert check_bundle.main(["--bundle", str(broken), "--skip-nos"]) == 1
    assert "nowhere" in capsys.readouterr().out
