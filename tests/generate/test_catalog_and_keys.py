"""The catalog only uses NOS codes the snapshot holds, the snapshot is what the NOS files say, check keys
are computed right, and the CLI command works and fails cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ror.cli.generate import generate as generate_command
from ror.generate import catalog as cat
from ror.generate import keys, nosdata
from ror.generate.nos import Nos
from tests.generate.conftest import SHARED

NOS_ZIP = SHARED / "platines/ror-server-tests/lecture-eg-avec-date-sans-restriction-profil1/" \
                   "2023-06-14_NOS-Fichiers_Publics.zip"


def _units():
    for s in (*cat.MCO_SERVICES, *cat.PSY_SERVICES, *cat.SMR_SERVICES, cat.USLD):
        yield from (u for u, _ in s.units)
    for g in cat.GROUPS:
        for kind, _, _ in g.sites:
            yield from (u for u, _ in kind.units)
        yield from (u for u, _ in g.offers)
    yield from (u for u, _ in cat.CITY_UNITS)
    yield from (u for u, _, _ in cat.CITY_EXTRA)


def test_catalog_codes_exist():
    nos = Nos()
    for u in _units():
        assert nos.has("TRE_R227-ChampActivite", u.champ), u.key
        assert u.category is None or nos.has("TRE_R244-CategorieOrganisation", u.category), u.key
        assert nos.has("TRE_R213-ModePriseEnCharge", u.mode), u.key
        assert nos.has("TRE_R239-PublicPrisEnCharge", u.public), u.key
        assert nos.has("TRE_G15-ProfessionSante", u.profession), u.key
        assert u.specialty is None or nos.has("TRE_R38-SpecialiteOrdinale", u.specialty), u.key
        for code, prob in u.activities:
            assert nos.has("TRE_R211-ActiviteOperationnelle", code) and 0 < prob <= 1, (u.key, code)
        assert u.activities[0][1] == 1.0
        for table, code in (("TRE_R240-TemporaliteAccueil", u.reception), ("TRE_R238-OuvertureAnnuelle", u.opening)):
            assert code is None or nos.has(table, code), u.key
    for g in cat.GROUPS:
        assert all(nos.has("TRE_R72-FinessStatutJuridique", s) for s, _ in g.statuts), g.key
        for kind, (lo, hi), prob in g.sites:
            table = "TRE_R02-SecteurActivite" if kind.category.startswith("SA") else "TRE_R66-CategorieEtablissement"
            assert nos.has(table, kind.category) and 1 <= lo <= hi and 0 < prob <= 1, kind.key
            assert not kind.mft or nos.has("TRE_R74-ModeFixationTarifaire", kind.mft), kind.key
            assert not kind.sph or nos.has("TRE_R73-ESPIC", kind.sph), kind.key


def test_snapshot_is_what_the_nos_files_say():
    if not (SHARED / "nos").is_dir() or not NOS_ZIP.is_file():
        pytest.skip("the shared NOS files are not available")
    packaged = json.loads((Path(nosdata.__file__).parent / "data" / "nos.json").read_text("utf-8"))
    assert nosdata.build(SHARED / "nos", NOS_ZIP) == packaged


def test_check_keys():
    assert keys.finess("01", 2) == "010000024"          # CH de Fleyriat, a published number
    assert keys.finess("9701", 1) == "970100012"        # Guadeloupe
    assert keys.siren(73282932) == "732829320"
    assert keys.siret("732829320", 7) == "73282932000074"
    assert keys.rpps(10647676) == "10106476764"
    assert keys.adeli("01", "26", 63) == "012600631"
    corsica = keys.finess("2A", 5)
    assert corsica.startswith("2A") and keys.finess_ok(corsica) and not keys.luhn_ok(corsica)
    for number in ("010000024", "732829320", "10106476764"):
        assert keys.luhn_ok(number) and not keys.luhn_ok(keys.corrupt_key(number))
    with pytest.raises(ValueError):
        keys.finess("9701", 123456)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("generate")(generate_command)
    app.command("version")(lambda: None)  # a second command keeps "generate" a sub-command, as in ror.cli.main
    return app


def test_cli_generates_and_reports(tmp_path):
    result = CliRunner().invoke(_app(), ["generate", str(tmp_path / "out"), "--scale", "600", "--seed", "4",
                                         "--regions", "53", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text("utf-8"))
    assert manifest["scale"] == "600" and list(manifest["regions"]) == ["53"]
    assert "resources" in result.output


@pytest.mark.parametrize("args, message", [(["--scale", "lots"], "scale"), (["--regions", "99"], "99"),
                                           (["--as-of", "yesterday"], "as-of"), (["--dirty", "0.9"], "dirty")])
def test_cli_errors_are_one_line(tmp_path, args, message):
    result = CliRunner().invoke(_app(), ["generate", str(tmp_path / "out"), *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
