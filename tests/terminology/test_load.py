"""Loading NOS tables: the 2023 public set, then the newer value sets; versions, retire/reactivate."""

from __future__ import annotations

from pathlib import Path

from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from ror.terminology.cache import Terminology, validity
from ror.terminology.nos import canonical_url, parse_tabs
from tests.terminology.conftest import NOS, load

R213 = canonical_url("TRE_R213-ModePriseEnCharge")
R227 = canonical_url("TRE_R227-ChampActivite")
J19 = canonical_url("JDV_J19-ModePriseEnCharge-ROR")


def _change(report, name, to_version):
    found = [c for c in report.changed if c.table == name and c.to_version == to_version]
    assert len(found) == 1, [(c.table, c.to_version) for c in report.changed if c.table == name]
    return found[0]


def test_reload_2023_set_then_newer_value_sets(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    first = load(engine, NOS / "2023-06-14_NOS-Fichiers_Publics.zip")
    t = first.totals()
    assert (t["new_tables"], t["changed_tables"], t["skipped_files"]) == (270, 0, 15)
    assert {s["reason"].split(" ")[0] for s in first.skipped} == {"ASS", "PUB"}

    second = load(engine, NOS / "nos-2020-2023")
    r213 = _change(second, "TRE_R213-ModePriseEnCharge", "20230127120000")
    assert (r213.added, r213.retired) == (["58", "59"], ["06", "26"])
    assert r213.relabelled == [{"code": "50", "from": "Accueil familial", "to": "Placement famille d'accueil"}]
    j19 = _change(second, "JDV_J19-ModePriseEnCharge-ROR", "20230127120000")
    assert (j19.added, j19.removed) == (["58", "59"], ["06", "26"])
    assert "JDV_J19-ModePriseEnCharge-ROR 20230127120000" in second.unchanged  # tabs and FHIR JSON: one version

    third = load(engine, NOS / "terminologies-v1.12.0")
    j19 = _change(third, "JDV_J19-ModePriseEnCharge-ROR", "20260629120000")
    assert (j19.added, j19.removed) == (["60"], ["14"])
    r227 = _change(third, "TRE_R227-ChampActivite", "20260330120000")
    assert r227.added == ["06"]
    assert {r["code"]: r["to"] for r in r227.relabelled} == {  # 01 loses its commas in the 2026 export
        "01": "Médecine Chirurgie Obstétrique (MCO)", "02": "Soins Médicaux et de réadaptation (SMR)", "05": "Ville"}
    j55 = _change(third, "JDV_J55-CategorieEG-ROR", "20260505120000")
    assert {"617", "618", "638"} <= set(j55.added)
    assert third.totals()["new_tables"] == 1  # JDV_J238-TypeOffre-ROR appears in 2026

    again = load(engine, NOS / "terminologies-v1.12.0")
    assert again.totals()["changed_tables"] == 0 and len(again.unchanged) == 8

    same = load(engine, NOS / "nos-2020-2023" / "JDV_J19-ModePriseEnCharge-ROR.tabs")
    assert same.unchanged == ["JDV_J19-ModePriseEnCharge-ROR 20230127120000"]

    term = Terminology()
    with engine.connect() as conn:
        vs = term.value_set(conn, J19)
        assert vs.version == "20260629120000" and len(vs.members) == 37
        assert (R213, "14") in vs.removed and (R213, "06") in vs.removed
        cs = term.code_system(conn, R213)
        assert validity(cs.codes["06"], "2020-06-01T00:00:00").state == "valid"
        assert validity(cs.codes["06"], "2022-01-01T00:00:00").state == "retired"
    engine.dispose()


def _tabs(version: str, end: str, label: str) -> bytes:
    return ("<OID>;<Type fichier>;<Nom fichier>;<Description>;<URL fichier>;<Date valid>;<Date fin>;<Date MàJ>\r\n"
            f"1.2.3.4;TRE;TRE_R999-Essai.tabs;Essai;https://mos.esante.gouv.fr/NOS/TRE_R999-Essai;20200101000000;;"
            f"{version}\r\n"
            "<OID>;<Code>;<Libellé adapté>;<Libellé court>;<Libellé long>;<Date valid>;<Date fin>;<Date MàJ>\r\n"
            f"1.2.3.4;01;{label};court;long;20200101000000;{end};{version}\r\n").encode("latin-1")


def test_retire_then_reactivate_keeps_both_periods(db_url, tmp_path: Path):
    engine = make_engine(db_url)
    upgrade(engine)
    steps = [("20200101000000", "", "Libellé"), ("20210101000000", "20210101000000", "Libellé"),
             ("20220101000000", "", "Libellé révisé")]
    reports = []
    for i, (version, end, label) in enumerate(steps):
        path = tmp_path / f"v{i}" / "TRE_R999-Essai.tabs"
        path.parent.mkdir()
        path.write_bytes(_tabs(version, end, label))
        reports.append(load(engine, path))
    assert reports[0].new_tables == [{"table": "TRE_R999-Essai", "kind": "CodeSystem", "version": "20200101000000",
                                      "codes": 1}]
    assert reports[1].changed[0].retired == ["01"]
    assert reports[2].changed[0].reactivated == ["01"]
    assert reports[2].changed[0].relabelled == [{"code": "01", "from": "Libellé", "to": "Libellé révisé"}]
    path = tmp_path / "old" / "TRE_R999-Essai.tabs"
    path.parent.mkdir()
    path.write_bytes(_tabs("20190101000000", "", "Ancien"))
    assert load(engine, path).older == ["TRE_R999-Essai 20190101000000 (loaded: 20220101000000)"]
    with engine.connect() as conn:
        info = Terminology().code_system(conn, canonical_url("TRE_R999-Essai")).codes["01"]
    assert info.periods == (("2020-01-01T00:00:00", "2021-01-01T00:00:00"), ("2022-01-01T00:00:00", None))
    assert [validity(info, d).state for d in ("2020-06-01T00:00:00", "2021-06-01T00:00:00", "2023-01-01T00:00:00")] \
        == ["valid", "retired", "valid"]
    engine.dispose()


def test_tabs_reader_handles_latin1_and_the_old_url():
    raw = _tabs("20190329120000", "", "Médecine")
    table = parse_tabs(raw, "x.tabs")
    assert table.url == canonical_url("TRE_R999-Essai")
    assert table.url == "https://mos.esante.gouv.fr/NOS/TRE_R999-Essai/FHIR/TRE-R999-Essai"
    assert table.concepts[0].display == "Médecine" and table.version_date == "2019-03-29T12:00:00"
