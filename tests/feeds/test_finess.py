"""FINESS feed on the real enriched sample, on a raw etalab file and on the JSON flux; bad inputs."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ror.errors import InputFileError
from ror.feeds.finess import FinessFeed, crs_of, to_wgs84
from ror.feeds.reports import run_problems
from ror.feeds.runs import run_import
from ror.feeds.schema import feed_run
from ror.feeds.validation import DANGLING, REGISTRY_CODE
from ror.store.schema import resource, resource_version
from tests.feeds.conftest import FINESS_SAMPLE, ext, stored

R66 = "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement"


def test_real_enriched_sample_field_by_field(engine):
    report = run_import(engine, FinessFeed(), FINESS_SAMPLE)
    assert report.counts["records"] == 100 and report.counts["created"] == 100 and report.counts["rejected"] == 0
    eg = stored(engine, "Organization", "fin-010000024")
    assert eg["name"] == "CENTRE HOSPITALIER DE BOURG-EN-BRESSE FLEYRIAT"
    assert eg["alias"] == ["CH DE FLEYRIAT"]
    assert eg["active"] is True
    assert {(i["system"], i["value"]) for i in eg["identifier"]} == {
        ("https://finess.esante.gouv.fr", "010000024"), ("https://sirene.fr", "26010004500012"),
        ("urn:oid:1.2.250.1.71.4.2.2", "1010000024")}
    types = {t["coding"][0]["system"].rsplit("/", 1)[1]: t["coding"][0] for t in eg["type"]}
    assert types["TRE-R66-CategorieEtablissement"]["code"] == "355"
    assert types["TRE-R66-CategorieEtablissement"]["display"] == "Centre hospitalier (CH)"  # NOS, not the file
    assert types["TRE-R73-ESPIC"]["code"] == "1"
    assert eg["partOf"] == {"reference": "Organization/fin-010780054"}
    addr = eg["address"][0]
    assert addr["line"] == ["900 RTE DE PARIS"] and addr["postalCode"] == "01440" and addr["city"] == "VIRIAT"
    insee = ext(addr, "fr-core-address-insee-code")[0]["valueCoding"]
    assert insee["code"] == "01451"
    geo = {e["url"].rsplit("/", 1)[-1]: e for e in ext(addr, "geolocation")[0]["extension"]}
    assert geo["latitude"]["valueDecimal"] == pytest.approx(46.2227, abs=1e-4)  # Lambert-93 (870215.7, 6571590.5)
    assert geo["longitude"]["valueDecimal"] == pytest.approx(5.2086, abs=1e-4)
    assert geo["ror-confidence-geolocation"]["valueBoolean"] is True
    assert [t["value"] for t in eg["telecom"]] == ["0474454647", "0474454114"]
    assert ext(eg, "organization-period")[0]["valuePeriod"] == {"start": "1979-02-13"}
    assert ext(eg, "ror-meta-creation-date")[0]["valueDateTime"] == "2020-12-31"
    assert eg["meta"]["tag"] == [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM",
                                  "code": "84"}]
    # mangled accents: free text kept as received, reported with line and field
    problems = run_problems(engine, report.run_id)
    mangled = [(p["line"], p["field"]) for p in problems if "U+FFFD" in p["reason"]]
    assert mangled == [(24, "voie"), (42, "lieuditbp"), (53, "compldistrib"), (93, "voie"), (95, "rslongue")]
    assert all(p["severity"] == "warning" and p["record"] for p in problems)
    pharmacy = stored(engine, "Organization", "fin-010002228")
    assert pharmacy["type"][0]["coding"][0]["display"].startswith("Etablissement d'hébergement")


def test_reload_changes_nothing(engine):
    run_import(engine, FinessFeed(), FINESS_SAMPLE)
    before = stored(engine, "Organization", "fin-010000024")["meta"]
    report = run_import(engine, FinessFeed(), FINESS_SAMPLE)
    assert report.counts["unchanged"] == 100 and report.counts["created"] == report.counts["updated"] == 0
    assert stored(engine, "Organization", "fin-010000024")["meta"] == before
    with engine.connect() as conn:
        assert conn.execute(select(resource_version)).first() is None
        runs = conn.execute(select(feed_run.c.file_sha256, feed_run.c.status)).all()
    assert len(runs) == 2 and runs[0] == runs[1] and runs[0][1] == "done"


ETALAB_ET = ("structureet;010000024;010780054;CH DE FLEYRIAT;CENTRE HOSPITALIER DE BOURG-EN-BRESSE FLEYRIAT;;;900;RTE;"
             "DE PARIS;;;451;01;AIN;01440 VIRIAT;0474454647;0474454114;355;Centre Hospitalier (C.H.);1102;"
             "Centres Hospitaliers;26010004500012;8610Z;03;ARS établissements Publics de santé dotation globale;1;"
             "Etablissement public de santé;1979-02-13;1979-02-13;2020-02-04;")
REUNION_ET = ("structureet;970462107;970462099;CLINIQUE SAINTE-CLOTILDE;;;;127;RTE;DU BOIS DE NEFLES;;;411;9D;"
              "LA REUNION;97400 ST DENIS;0262482020;;365;Clinique;1102;Etab.Soins;;8610Z;07;ARS;6;ESPIC;"
              "1980-01-01;1980-01-01;2024-01-01;")
ETALAB_EJ = ("structureej;010780054;CH DE BOURG EN BRESSE;CENTRE HOSPITALIER DE BOURG EN BRESSE;;900;RTE;DE PARIS;;;;"
             "451;01440 VIRIAT;01;AIN;0474454647;13;Etb.Pub.Commun.Hosp.;355;C.H.;260100045;8610Z;1965-01-01")


def _etalab(tmp_path, lines: list[str], encoding: str = "utf-8"):
    path = tmp_path / "etalab-cs1100507-stock-20260512-0400.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def test_raw_etalab_latin1_two_sections_and_overseas_utm(engine, tmp_path):
    path = _etalab(tmp_path, [
        "finess;etalab;111;2026-05-12", ETALAB_ET, REUNION_ET,
        "geolocalisation;010000024;870215.7;6571590.5;1,ATLASANTE,96,BAN,EPSG:2154 RGF93 / Lambert-93 (Métropole);"
        "2026-05-01",
        "geolocalisation;970462107;338296.0;7690468.0;2,ATLASANTE,89,BAN,EPSG:2975 RGR92 / UTM zone 40S;2026-05-01",
        ETALAB_EJ], "latin-1")
    report = run_import(engine, FinessFeed(), path)
    assert report.counts["created"] == 3 and report.counts["rejected"] == 0
    assert "Windows-1252/Latin-1" in report.message and "extraction of 2026-05-12" in report.message
    ej = stored(engine, "Organization", "fin-010780054")
    assert ej["name"] == "CENTRE HOSPITALIER DE BOURG EN BRESSE"
    assert ("https://sirene.fr", "260100045") in {(i["system"], i["value"]) for i in ej["identifier"]}
    assert ej["type"][0]["coding"][0]["code"] == "13"
    assert ext(ej, "ror-organization-creation-date")[0]["valueDate"] == "1965-01-01"
    eg = stored(engine, "Organization", "fin-010000024")
    assert eg["partOf"]["reference"] == "Organization/fin-010780054"
    reunion = stored(engine, "Organization", "fin-970462107")
    addr = reunion["address"][0]
    assert ext(addr, "insee-code")[0]["valueCoding"]["code"] == "97411"
    geo = {e["url"]: e.get("valueDecimal") for e in ext(addr, "geolocation")[0]["extension"]}
    assert geo["latitude"] == pytest.approx(-20.89, abs=0.02) and geo["longitude"] == pytest.approx(55.45, abs=0.02)
    assert reunion["meta"]["tag"][0]["code"] == "04"  # La Réunion


def test_crs_spellings():
    assert crs_of("1,ATLASANTE,100,IGN,BD_ADRESSE,V2.2,LAMBERT_93") == 2154
    assert crs_of("2,ATLASANTE,100,IGN,BD_ADRESSE,V2.2,UTM_S40") == 2975
    assert crs_of("2,ATLASANTE,96,BAN,EPSG:5490 RGAF09/UTM Zone 20N (Antilles)") == 5490
    assert crs_of("1,ATLASANTE,90,BAN,WGS84/UTM zone 21N") == 32621
    assert crs_of("1,X,90,BAN,WGS84/UTM zone 1S") == 32701
    assert crs_of("1,X,90,BAN,MERCATOR") is None
    lat, lon = to_wgs84(652469.0, 6862035.0, 2154)  # Notre-Dame de Paris
    assert lat == pytest.approx(48.853, abs=0.01) and lon == pytest.approx(2.35, abs=0.01)


def test_bad_records_are_rejected_with_line_field_and_reason(engine, tmp_path):
    bad_key = ETALAB_ET.replace("010000024", "010000025", 1)
    unknown_cat = ETALAB_ET.replace(";355;", ";999;").replace("010000024", "010000032", 1)
    truncated = ";".join(ETALAB_ET.split(";")[:12])
    path = _etalab(tmp_path, ["finess;etalab;111;2026-05-12", bad_key, unknown_cat, truncated, "autre;1;2"])
    report = run_import(engine, FinessFeed(), path)
    assert report.counts["rejected"] == 4 and report.counts["created"] == 0
    got = {(p["line"], p["field"]): p["reason"] for p in run_problems(engine, report.run_id)}
    assert "invalid check key" in got[(2, "nofinesset")]
    assert "unknown establishment category '999'" in got[(3, "categetab")]
    assert "11 fields instead of 31" in got[(4, "(line)")] and "truncated" in got[(4, "(line)")]
    assert "unknown record type 'autre'" in got[(5, "record type")]


def test_cut_file_is_not_a_full_extract(engine, tmp_path):
    path = tmp_path / "cut.csv"
    path.write_text("finess;etalab;111;2026-05-12\n" + ETALAB_ET + "\n" + ETALAB_ET[:80], encoding="utf-8")
    report = run_import(engine, FinessFeed(), path)
    assert report.counts["created"] == 1 and report.counts["rejected"] == 1
    assert "ends in the middle of a record" in report.message


@pytest.mark.parametrize(("content", "message"), [
    ("", "the file is empty"),
    ("nofinesset,nofinessej,rs\n1,2,3\n", "separated by ';'; line 1 looks separated by ','"),
    ("hello;world\n", "not a FINESS file"),
])
def test_unreadable_files_fail_clearly_and_keep_the_store(engine, tmp_path, content, message):
    run_import(engine, FinessFeed(), FINESS_SAMPLE)
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError, match=message):
        run_import(engine, FinessFeed(), path)
    with engine.connect() as conn:
        assert len(conn.execute(select(resource.c.pk)).all()) == 100
        assert conn.execute(select(feed_run.c.status).order_by(feed_run.c.run_id.desc())).first()[0] == "failed"


def test_json_structures_flux(engine, tmp_path):
    path = tmp_path / "finess-structures-journalier-20260309.json"
    path.write_text("""{"schemaVersion": "1", "generatedAt": "2026-03-09", "pmej": [{
      "informationsGeneralesPMEJ": {"numFinessPm": "010000156", "siren": "779245869",
        "denominationPm": "CLINIQUE CONVERT", "statutJuridique": {"code": "73", "system": "TRE_R72"},
        "dateCreation": "1970-01-01"},
      "adresse": [{"numeroVoie": "62", "typeVoie": "AV", "libelleVoie": "DE JASSERON", "cogCommune": "01053",
        "ligneAcheminement": "01000 BOURG EN BRESSE", "codePostal": "01000",
        "coordonneesGeographique": {"coordonneeX": "6570080.1", "coordonneeY": "873466.5"}}],
      "ege": [{"informationsGeneralesEGE": {"numFinessEge": "010780195", "nomEgeCourt": "CLINIQUE CONVERT"},
        "siret": "77924586900012", "categorieEntiteGeographiqueExercice": {"code": "365"},
        "adresse": [{"numeroVoie": "62", "typeVoie": "AV", "libelleVoie": "DE JASSERON", "cogCommune": "01053",
          "ligneAcheminement": "01000 BOURG EN BRESSE", "codePostal": "01000",
          "coordonneesGeographique": {"directionLatitude": "46.215", "directionLongitude": "5.240",
                                      "scoreBAN": "0.95"}}],
        "etatObjet": {"code": "A"}, "roleEge": {"code": "1"}}]}], "gco": [], "gcc": []}""", encoding="utf-8")
    report = run_import(engine, FinessFeed(), path)
    assert report.counts["created"] == 2, report.problems
    eg = stored(engine, "Organization", "fin-010780195")
    assert eg["partOf"]["reference"] == "Organization/fin-010000156"
    assert eg["type"][0]["coding"][0]["system"] == R66 and eg["type"][0]["coding"][0]["code"] == "365"
    ej = stored(engine, "Organization", "fin-010000156")
    geo = {e["url"]: e.get("valueDecimal") for e in ext(ej["address"][0], "geolocation")[0]["extension"]}
    assert geo["latitude"] == pytest.approx(46.21, abs=0.02)  # X/Y given swapped: detected


def test_dry_run_keeps_nothing_but_the_run(engine):
    report = run_import(engine, FinessFeed(), FINESS_SAMPLE, dry_run=True)
    assert report.counts["created"] == 100 and report.dry_run
    with engine.connect() as conn:
        assert conn.execute(select(resource.c.pk)).first() is None
        assert conn.execute(select(feed_run.c.created, feed_run.c.dry_run)).one() == (100, True)
    # the feed's own problems (field = a column of the file) and the validation warnings (field = a FHIRPath)
    # are booked in a dry run as in a real one
    problems = run_problems(engine, report.run_id)
    own = [p for p in problems if not p["field"].startswith("Organization.")]
    assert [(p["line"], p["field"]) for p in own] == [
        (20, "categetab"), (24, "voie"), (42, "lieuditbp"), (53, "compldistrib"), (68, "categetab"), (93, "voie"),
        (95, "rslongue")]
    checked = [p for p in problems if p["field"].startswith("Organization.")]
    assert all(p["severity"] == "warning" for p in problems) and len(checked) == 102
    # the file has the EGs, not their EJs: each EG's partOf is kept, and reported (every EG is in the file)
    dangling = [p for p in checked if p["field"] == "Organization.partOf.reference"]
    assert len(dangling) == 100 and all(p["reason"].endswith(DANGLING) for p in dangling)
    assert len({p["line"] for p in dangling}) == 100
    # the categories NOS retired before the file's date that FINESS still publishes: kept, reported
    codes = [(p["line"], p["reason"]) for p in checked if p["field"] == "Organization.type[0].coding[0]"]
    assert [line for line, _ in codes] == [20, 68]
    assert all(REGISTRY_CODE in r and "retired on" in r for _, r in codes)
    assert "code '437'" in codes[0][1] and "code '379'" in codes[1][1]


def test_limit(engine):
    report = run_import(engine, FinessFeed(), FINESS_SAMPLE, limit=10)
    assert report.counts["records"] == 10 and "--limit" in report.message
