"""RPPS savoir-faire -> Practitioner.qualification and PractitionerRole.specialty (IG slices: expertiseType
TRE_R04, then the slice of that type: specialty TRE_R38, competence TRE_R39, exclusiveCompetence TRE_R40 …),
on the real sample and on lines derived from it."""

from __future__ import annotations

from ror.feeds.rpps import RppsFeed
from ror.feeds.runs import run_import
from tests.feeds.conftest import RPPS_SAMPLE, stored

NOS = "https://mos.esante.gouv.fr/NOS/"
R04 = NOS + "TRE_R04-TypeSavoirFaire/FHIR/TRE-R04-TypeSavoirFaire"
R38 = NOS + "TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
R40 = NOS + "TRE_R40-CompetenceExclusive/FHIR/TRE-R40-CompetenceExclusive"
DOCTOR = "810106476764"  # the sample's RPPS physician: savoir-faire S / SM20 Gynécologie-obstétrique


def test_real_sample_ordinal_specialty(engine):
    r = run_import(engine, RppsFeed(), RPPS_SAMPLE)
    assert not [p for p in r.problems if p.field == "Code savoir-faire"]
    doctor = stored(engine, "Practitioner", f"ps-{DOCTOR}")
    assert [q["code"]["coding"][0] for q in doctor["qualification"]][1] == {
        "system": R38, "code": "SM20", "display": "Gynécologie-obstétrique (SM)"}


def _derived(tmp_path):
    """The doctor's line and a second physician, both practising at the sample's city practice DOUBS OPTIC
    (the site columns of the first professional), with savoir-faire of several kinds."""
    lines = RPPS_SAMPLE.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("|")
    col = {name: i for i, name in enumerate(header)}
    doctor = next(x for x in lines if f"|{DOCTOR}|" in x).split("|")
    site = next(x for x in lines if "|0012600631|" in x).split("|")  # DOUBS OPTIC, sector SA42
    for name in header[col["Numéro SIRET site"]:col["Code secteur d'activité"] + 1]:
        if name:
            doctor[col[name]] = site[col[name]]

    def variant(rpps: str, kind: str, code: str) -> str:
        f = list(doctor)
        f[col["Identifiant PP"]], f[col["Identification nationale PP"]] = rpps, "8" + rpps
        f[col["Code type savoir-faire"]], f[col["Code savoir-faire"]] = kind, code
        return "|".join(f)
    rows = ["|".join(doctor), variant("10000000009", "CEX", "CEX22"), variant("10000000017", "DNQ", "SM99"),
            variant("10000000025", "ZZ", "Z1")]
    path = tmp_path / "PS_LibreAcces_Personne_activite_202601010000.txt"
    path.write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    return path


def test_savoir_faire_kinds_map_to_their_nos_table_and_role_slices(engine, tmp_path):
    r = run_import(engine, RppsFeed(), _derived(tmp_path))
    assert r.counts["rejected"] == 0, r.problems
    site = "349940088500020"
    role = stored(engine, "PractitionerRole", f"so-{DOCTOR}.{site}.10")
    assert role["specialty"] == [
        {"coding": [{"system": R04, "code": "S", "display": "Spécialité ordinale"}]},
        {"coding": [{"system": R38, "code": "SM20", "display": "Gynécologie-obstétrique (SM)"}]}]
    cex = stored(engine, "PractitionerRole", f"so-810000000009.{site}.10")
    assert cex["specialty"] == [
        {"coding": [{"system": R04, "code": "CEX", "display": "Compétence exclusive"}]},
        {"coding": [{"system": R40, "code": "CEX22", "display": "Gynécologie médicale et Obstétrique (CEX)"}]}]
    assert {"system": R40, "code": "CEX22", "display": "Gynécologie médicale et Obstétrique (CEX)"} in [
        q["code"]["coding"][0] for q in stored(engine, "Practitioner", "ps-810000000009")["qualification"]]
    # a code outside the table of its type, an unknown type: reported, left out (the role stays without it)
    reasons = {p.line: p.reason for p in r.problems if p.field == "Code savoir-faire"}
    assert reasons[4] == "savoir-faire 'SM99' is not in NOS TRE_R42-DESCnonQualifiant (type DNQ): left out"
    assert reasons[5] == "unknown savoir-faire type 'ZZ' (NOS TRE_R04): savoir-faire left out"
    assert "specialty" not in stored(engine, "PractitionerRole", f"so-810000000017.{site}.10")
    assert [q["code"]["coding"][0]["code"] for q in stored(engine, "Practitioner", "ps-810000000025")[
        "qualification"]] == ["10"]
