"""FINESS JSON "Structures" flux: closing (date de fermeture, closed / lapsed state, closing and lapsing
events) closes the EJ / EG as the IG says — active false, organization-period.end, closing type — and
never deletes it; a later flux saying "open" reopens."""

from __future__ import annotations

import orjson

from ror.feeds.finess import FinessFeed
from ror.feeds.runs import run_import
from tests.feeds.conftest import all_stored, ext, stored

PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"
ADDRESS = [{"numeroVoie": "62", "typeVoie": "AV", "libelleVoie": "DE JASSERON", "cogCommune": "01053",
            "ligneAcheminement": "01000 BOURG EN BRESSE", "codePostal": "01000"}]


def _flux(tmp_path, name: str, *, ej_info: dict | None = None, ej_extra: dict | None = None,
          eges: list[dict] | None = None):
    ege = [{"informationsGeneralesEGE": {"numFinessEge": "010780195", "nomEgeCourt": "CLINIQUE CONVERT",
                                          "dateOuverture": "1970-01-01"},
            "siret": "77924586900012", "categorieEntiteGeographiqueExercice": {"code": "365"},
            "adresse": ADDRESS, "etatObjet": {"code": "A"}, "roleEge": {"code": "1"}},
           {"informationsGeneralesEGE": {"numFinessEge": "010000024", "nomEgeCourt": "CH FLEYRIAT"},
            "categorieEntiteGeographiqueExercice": {"code": "355"}, "adresse": ADDRESS,
            "etatObjet": {"code": "A"}, "roleEge": {"code": "1"}}]
    for i, patch in enumerate(eges or []):
        ege[i] = {**ege[i], **patch}
    pmej = {"informationsGeneralesPMEJ": {"numFinessPm": "010000156", "siren": "779245869",
                                          "denominationPm": "CLINIQUE CONVERT",
                                          "statutJuridique": {"code": "73"}, "dateCreation": "1970-01-01",
                                          **(ej_info or {})},
            "adresse": ADDRESS, "ege": ege, **(ej_extra or {})}
    path = tmp_path / name
    path.write_bytes(orjson.dumps({"schemaVersion": "1", "generatedAt": "2026-03-09", "pmej": [pmej],
                                   "gco": [], "gcc": []}))
    return path


def test_closing_date_and_events_close_never_delete_and_reopen(engine, tmp_path):
    r = run_import(engine, FinessFeed(), _flux(tmp_path, "finess-structures-journalier-20260309.json"))
    assert r.counts["created"] == 3
    assert all(res["active"] for res in all_stored(engine).values())
    closed = _flux(tmp_path, "finess-structures-journalier-20260310.json",
                   ej_info={"dateFermeture": "2026-03-01", "typeFermeture": {"code": "DEF"}},
                   eges=[{"evenement": [  # the EG: a closing event, dated
                       {"evenementId": "1", "dateEnregistrement": "2026-03-02", "dateEvenement": "2026-02-28",
                        "etatObjet1": "FERME", "identifiantObjet1": "010780195", "systemeMaitre": "FINESS",
                        "typeObjet1": "EGE", "codeEvenement": "FERMETURE"}]},
                         {"etatObjet": {"code": "CADUC"}}])  # the other EG: lapsed (caducité), no date
    r = run_import(engine, FinessFeed(), closed)
    assert r.counts["updated"] == 3 and r.counts["created"] == 0, r.problems
    ej = stored(engine, "Organization", "fin-010000156")
    assert ej["active"] is False
    assert ext(ej, "organization-period")[0]["valuePeriod"] == {"end": "2026-03-01"}
    assert ext(ej, "ror-organization-closing-type")[0]["valueCodeableConcept"]["coding"] == [
        {"system": "https://mos.esante.gouv.fr/NOS/TRE_R286-TypeFermeture/FHIR/TRE-R286-TypeFermeture",
         "code": "DEF", "display": "Définitive"}]
    eg = stored(engine, "Organization", "fin-010780195")
    assert eg["active"] is False and eg["name"] == "CLINIQUE CONVERT"  # kept whole, only closed
    assert ext(eg, "organization-period")[0]["valuePeriod"] == {"start": "1970-01-01", "end": "2026-02-28"}
    lapsed = stored(engine, "Organization", "fin-010000024")
    assert lapsed["active"] is False and not ext(lapsed, "organization-period")
    assert len(all_stored(engine)) == 3  # nothing deleted
    # the same flux again: nothing changes
    r = run_import(engine, FinessFeed(), closed)
    assert (r.counts["updated"], r.counts["unchanged"]) == (0, 3)
    # a reopening event after the closing one: open again, the closing date gone
    reopened = _flux(tmp_path, "finess-structures-journalier-20260311.json", eges=[{"evenement": [
        {"evenementId": "1", "dateEnregistrement": "2026-03-02", "dateEvenement": "2026-02-28",
         "etatObjet1": "FERME", "identifiantObjet1": "010780195", "systemeMaitre": "FINESS", "typeObjet1": "EGE",
         "codeEvenement": "FERMETURE"},
        {"evenementId": "2", "dateEnregistrement": "2026-03-11", "dateEvenement": "2026-03-10",
         "etatObjet1": "ACTIF", "identifiantObjet1": "010780195", "systemeMaitre": "FINESS", "typeObjet1": "EGE",
         "codeEvenement": "REOUVERTURE"}]}])
    run_import(engine, FinessFeed(), reopened)
    eg = stored(engine, "Organization", "fin-010780195")
    assert eg["active"] is True and ext(eg, "organization-period")[0]["valuePeriod"] == {"start": "1970-01-01"}
    ej = stored(engine, "Organization", "fin-010000156")
    assert ej["active"] is True and not ext(ej, "closing-type")


def test_unknown_state_and_closing_type_are_reported_and_change_nothing(engine, tmp_path):
    path = _flux(tmp_path, "finess-structures-journalier-20260309.json",
                 ej_info={"dateFermeture": "2026-03-01", "typeFermeture": "XYZ"},
                 eges=[{"etatObjet": {"code": "Q"}}])
    r = run_import(engine, FinessFeed(), path)
    assert r.counts["created"] == 3 and r.counts["rejected"] == 0
    reasons = {p.field: p.reason for p in r.problems}
    assert "XYZ" in reasons["typeFermeture"] and "'Q'" in reasons["etatObjet"]
    assert stored(engine, "Organization", "fin-010000156")["active"] is False  # the date closes it
    assert not ext(stored(engine, "Organization", "fin-010000156"), "closing-type")
    assert stored(engine, "Organization", "fin-010780195")["active"] is True  # unknown state: left as it is
