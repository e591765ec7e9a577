"""RPPS and regional feeds on the real samples, consolidation across sources, precedence, disappearance,
and convergence after a killed run."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select

from ror.errors import InputFileError
from ror.feeds.finess import FinessFeed
from ror.feeds.regional import RegionalFeed
from ror.feeds.reports import run_changes, run_problems
from ror.feeds.rpps import RppsFeed
from ror.feeds.runs import run_import
from ror.feeds.schema import feed_run
from ror.feeds.validation import FeedValidation
from ror.store import bulk, repository
from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from ror.store.schema import INDEX_TABLES, LIVE_TX, resource
from tests.feeds.conftest import CSD_SAMPLE, FINESS_SAMPLE, RPPS_SAMPLE, all_stored, ext, stored


def test_rpps_real_sample_field_by_field(engine):
    report = run_import(engine, RppsFeed(), RPPS_SAMPLE)
    assert report.counts["records"] == 22 and report.counts["rejected"] == 0
    doctor = stored(engine, "Practitioner", "ps-810106476764")
    assert doctor["identifier"] == [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810106476764"}]
    assert doctor["name"] == [{"use": "official", "family": "BENHOUCHAME", "given": ["Zakaria"], "prefix": ["M"]}]
    assert [q["code"]["coding"][0]["code"] for q in doctor["qualification"]] == ["10", "SM20"]
    osteo = stored(engine, "Practitioner", "ps-0010001949")  # code 71: a title (TRE_R95 171), not TRE_G15
    assert osteo["qualification"][0]["code"]["coding"][0]["code"] == "171"
    # city practice without FINESS: identified by idNatStruct (old id) + SIRET + technical id
    site = stored(engine, "Organization", "st-349940088500020")
    assert {(i["system"], i["value"]) for i in site["identifier"]} == {
        ("urn:oid:1.2.250.1.71.4.2.2", "349940088500020"), ("https://sirene.fr", "49940088500020")}
    assert site["name"] == "DOUBS OPTIC" and site["address"][0]["line"] == ["9 RTE DE BESANCON"]
    assert site["address"][0]["postalCode"] == "25300" and site["meta"]["tag"][0]["code"] == "27"
    # sector SA42 is not an establishment category (JDV_J55 has only SA05/07/08/09 of TRE_R02): no type
    assert "type" not in site
    # ADELI cabinet: adeliRang from the technical id C01920057500
    cabinet = stored(engine, "Organization", "st-001920057500")
    ids = {(i["system"], i["value"]) for i in cabinet["identifier"]}
    assert ("https://adelirang.esante.gouv.fr", "01920057500") in ids
    offer = stored(engine, "HealthcareService", "of-349940088500020.26")
    assert offer["providedBy"] == {"reference": "Organization/st-349940088500020"}
    assert offer["name"] == "Audioprothésiste – DOUBS OPTIC" and offer["type"][0]["coding"][0]["code"] == "05"
    role = stored(engine, "PractitionerRole", "so-0012600631.349940088500020.26")
    assert role["practitioner"] == {"reference": "Practitioner/ps-0012600631"}
    assert role["healthcareService"] == [{"reference": "HealthcareService/of-349940088500020.26"}]  # 0..* in R4
    assert role["code"][0]["coding"][0]["code"] == "26"
    assert ext(role, "unit-exercise-mode")[0]["valueCodeableConcept"]["coding"][0]["code"] == "S"
    # a FINESS site is the FINESS establishment: a bare stub until FINESS loads, no city offer (sector SA01)
    ch = stored(engine, "Organization", "fin-010000024")
    assert [i["value"] for i in ch["identifier"]] == ["010000024"]
    assert ch["partOf"] == {"reference": "Organization/fin-010780054"}
    with engine.connect() as conn:
        types = conn.execute(select(resource.c.rtype)).scalars().all()
    assert types.count("HealthcareService") == 7 and types.count("PractitionerRole") == 7
    assert types.count("Practitioner") == 22


def test_pre_fill_never_overwrites_what_the_professional_entered(engine, tmp_path):
    run_import(engine, RppsFeed(), RPPS_SAMPLE)
    offer = stored(engine, "HealthcareService", "of-349940088500020.26")
    offer["name"] = "Audioprothèses Doubs — centre-ville"
    offer["characteristic"] = [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R213-ModePriseEnCharge/FHIR/"
                                            "TRE-R213-ModePriseEnCharge", "code": "29"}]}]
    bulk.upsert(engine, [offer])  # what the professional entered through the API
    newer = tmp_path / "PS_LibreAcces_Personne_activite_202201010000.txt"
    newer.write_text(RPPS_SAMPLE.read_text(encoding="utf-8").replace("DOUBS OPTIC", "DOUBS OPTIQUE"), encoding="utf-8")
    report = run_import(engine, RppsFeed(), newer)
    after = stored(engine, "HealthcareService", "of-349940088500020.26")
    assert after["name"] == offer["name"]
    assert after["characteristic"] == offer["characteristic"]
    assert stored(engine, "Organization", "st-349940088500020")["name"] == "DOUBS OPTIQUE"  # RPPS owns the site
    untouched = stored(engine, "HealthcareService", "of-341129997700065.28")  # nobody edited it: follows RPPS
    assert untouched["name"] == "Opticien-Lunetier – BUGEY OPTIQUE"
    assert report.counts["closed"] == 0


def test_an_edit_made_while_a_batch_is_checked_is_merged_not_overwritten(engine, tmp_path, monkeypatch):
    """A batch is merged in one write transaction and written in a second, its profile checks between them, out of
    the write lock (``runs._Staged``). A resource an API write changed meanwhile is merged again from its new
    version: the outcome is that of the edit coming before the import."""
    run_import(engine, RppsFeed(), RPPS_SAMPLE)
    site = stored(engine, "Organization", "st-349940088500020")
    site["telecom"] = [_phone("0381000000")]  # entered by the professional; RPPS owns the site's name, not this
    edits = [site]
    check_ahead = FeedValidation.check_ahead

    def edit_meanwhile(self, *args):
        if edits:
            bulk.upsert(engine, [edits.pop()])
        return check_ahead(self, *args)

    monkeypatch.setattr(FeedValidation, "check_ahead", edit_meanwhile)
    newer = tmp_path / "PS_LibreAcces_Personne_activite_202201010000.txt"
    newer.write_text(RPPS_SAMPLE.read_text(encoding="utf-8").replace("DOUBS OPTIC", "DOUBS OPTIQUE"), encoding="utf-8")
    report = run_import(engine, RppsFeed(), newer)
    assert not edits and report.counts["rejected"] == 0
    after = stored(engine, "Organization", "st-349940088500020")
    assert after["name"] == "DOUBS OPTIQUE"
    assert after["telecom"] == site["telecom"]
    assert after["meta"]["versionId"] == "3"  # the edit's version, then the import's


def _written(engine) -> dict:
    """Every resource's body and live index rows, without what the write's instant and transaction decide."""
    out = {k: {"body": res} for k, res in all_stored(engine, versions=True).items()}
    with engine.connect() as conn:
        rids = {pk: (rtype, rid) for pk, rtype, rid in conn.execute(select(resource.c.pk, resource.c.rtype,
                                                                           resource.c.rid))}
        for kind, table in INDEX_TABLES.items():
            values = [c for c in table.columns if c.name not in ("pk", "since_tx", "until_tx")]
            for pk, *row in conn.execute(select(table.c.pk, *values).where(table.c.until_tx == LIVE_TX)):
                if not str(row[0]).endswith("._lastUpdated"):
                    out[rids[pk]].setdefault(kind, []).append(tuple(row))
    return {k: {kind: v if kind == "body" else sorted(v, key=repr) for kind, v in parts.items()}
            for k, parts in out.items()}


def test_resources_prepared_out_of_the_write_lock_are_stored_as_when_prepared_in_it(engine, tmp_path, monkeypatch):
    """A batch's resources to write get their bodies and index rows between its two transactions
    (``repository.prepare_ahead``); the write only puts in the version and the instant."""
    prepared, prepare_ahead = [], repository.prepare_ahead

    def counted(res, keep_last_updated):
        prepared.append(res["id"])
        return prepare_ahead(res, keep_last_updated)

    sources = ((FinessFeed(), FINESS_SAMPLE), (RppsFeed(), RPPS_SAMPLE), (RegionalFeed("93"), CSD_SAMPLE))
    monkeypatch.setattr(repository, "prepare_ahead", counted)
    for feed, path in sources:
        run_import(engine, feed, path)
    ahead = _written(engine)
    assert len(prepared) > 150 and len(ahead) == 150
    monkeypatch.setattr(repository, "prepare_ahead", lambda res, keep_last_updated: repository.prepare(res))
    in_lock = make_engine(f"sqlite:///{tmp_path / 'in_lock.db'}")
    upgrade(in_lock)
    for feed, path in sources:
        run_import(in_lock, feed, path)
    assert _written(in_lock) == ahead
    in_lock.dispose()


def test_region_csd_sample(engine):
    report = run_import(engine, RegionalFeed("93"), CSD_SAMPLE)
    # EJ, EG, the unit's two offers (one per operational activity), their place (Location, with its capacities)
    assert (report.counts["created"], report.counts["rejected"]) == (5, 1)
    ej = stored(engine, "Organization", "sir-407702521")
    eg = stored(engine, "Organization", "sir-40770252100052")
    assert eg["partOf"] == {"reference": "Organization/sir-407702521"} and "partOf" not in ej
    # '83602013100' under the professionals' authority: the nurse's ADELI number and rang, the cabinet's id
    # (TRE_G07 0) on both, and no identity key (it does not merge the EJ and its EG)
    for org in (ej, eg):
        cabinet = [i for i in org["identifier"] if i["value"] == "83602013100"]
        assert [(i["system"], i["type"]["coding"][0]["code"]) for i in cabinet] == [
            ("https://adelirang.esante.gouv.fr", "0")]
    assert eg["name"] == "ETABLISSEMENT CABINET INDIVIDUEL INFIRMIER RAISON SOCIALE"
    assert [t["value"] for t in eg["telecom"]] == ["+33 4 94 08 00 80", "public@test.com", "+33 4 94 08 00 83"]
    assert ext(eg["address"][0], "insee-code")[0]["valueCoding"]["code"] == "83069"
    assert ej["type"][0]["coding"][0]["code"] == "01" and eg["meta"]["tag"][0]["code"] == "93"
    hs = stored(engine, "HealthcareService", "r93-47045")
    assert hs["providedBy"] == {"reference": "Organization/sir-40770252100052"}
    assert [s["coding"][0]["code"] for s in hs["specialty"]] == ["001"]
    assert hs["name"] == "UNITÉ CABINET INDIVIDUEL INFIRMIER"
    age = ext(hs, "patient-type")[0]["extension"][0]["valueRange"]
    assert (age["low"]["value"], age["high"]["value"]) == (18, 65)
    assert ext(hs, "sensitive-unit")[0]["valueBoolean"] is False
    # ROR 3: one operational activity per offer; the unit's second service is an offer of its own
    hs2 = stored(engine, "HealthcareService", "r93-47045.003")
    assert [s["coding"][0]["code"] for s in hs2["specialty"]] == ["003"]
    assert hs2["identifier"][0]["value"] == "93/47045.003"
    assert {k: v for k, v in hs2.items() if k not in ("id", "identifier", "specialty", "meta")} == {
        k: v for k, v in hs.items() if k not in ("id", "identifier", "specialty", "meta")}
    problems = run_problems(engine, report.run_id)
    assert [(p["line"], p["severity"], p["field"]) for p in problems] == [
        (2, "warning", "codedType"),  # SA07 is not in the table of its scheme: left out
        (5, "warning", "organizations/organization/service"),
        (6, "error", "Practitioner")]
    assert "split into offers 47045, 47045.003" in problems[1]["reason"]
    # the provider has no national id (idNat_PS) in the source: rejected, nothing stored
    assert problems[2]["reason"] == ("Practitioner/r93-84266: Practitioner.identifier (idNat_PS): "
                                     "minimum required = 1, but only found 0")
    assert not any(rtype == "Practitioner" for rtype, _ in all_stored(engine))


@pytest.mark.parametrize("payload", [
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<CSD xmlns="urn:ihe:iti:csd:2013">&x;</CSD>',
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><CSD xmlns="urn:ihe:iti:csd:2013">&c;</CSD>',
])
def test_xml_entities_are_refused(engine, tmp_path, payload):
    run_import(engine, RegionalFeed("93"), CSD_SAMPLE)
    path = tmp_path / "evil.xml"
    path.write_text(payload, encoding="utf-8")
    with pytest.raises(InputFileError, match="XXE"):
        run_import(engine, RegionalFeed("93"), path)
    assert len(all_stored(engine)) == 5  # what the sample stored (test_region_csd_sample), nothing more


def test_unknown_region_is_refused():
    with pytest.raises(InputFileError, match="not a current region code"):
        RegionalFeed("21")  # Champagne-Ardenne, retired in 2016


_NOS = "https://mos.esante.gouv.fr/NOS"
_SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"


def _nos(table: str, code: str) -> dict:
    return {"coding": [{"system": f"{_NOS}/{table}/FHIR/{table.replace('_', '-')}", "code": code}]}


def _phone(number: str) -> dict:
    return {"extension": [{"url": _SD + "ror-telecom-communication-channel",
                           "valueCodeableConcept": _nos("TRE_R200-CanalCommunication", "2")},
                          {"url": _SD + "ror-telecom-confidentiality-level",
                           "valueCodeableConcept": _nos("TRE_R283-NiveauConfidentialite", "1")}],
            "system": "phone", "value": number}


def _regional_extract(tmp_path):
    """A region's extract of valid ROR resources (the test is about consolidation, not validation): the
    region's description of a FINESS establishment, the EJ it references (a region's extract holds what
    its resources reference: FINESS's EG file has no EJ), an internal organisation and its offer; and a
    resource type the ROR does not serve."""
    phone = _phone("0474000000")
    lines = [
        {"resourceType": "Organization", "id": "org-1", "name": "CH Fleyriat (nom régional)",
         "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "010000024"}],
         "telecom": [phone], "alias": ["Hôpital Fleyriat"]},
        {"resourceType": "Organization", "id": "ej-1", "name": "CENTRE HOSPITALIER DE BOURG-EN-BRESSE",
         "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "010780054"}]},
        {"resourceType": "Organization", "id": "oi-7", "name": "Pôle urgences",
         "identifier": [{"system": "https://oi.esante.gouv.fr", "value": "84-7"}],
         "partOf": {"reference": "Organization/org-1"}},
        {"resourceType": "HealthcareService", "id": "hs-1", "name": "Urgences adultes",
         "extension": [{"url": _SD + "ror-healthcareservice-patient-type",
                        "extension": [{"url": "ageRange", "valueRange": {
                            "low": {"value": 18, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}}]},
                       {"url": _SD + "ror-healthcareservice-sensitive-unit", "valueBoolean": False}],
         "identifier": [{"type": _nos("TRE_R355-TypeIdentifiantOffre", "35"), "value": "84/hs-1"}],
         "type": [_nos("TRE_R227-ChampActivite", "01")], "specialty": [_nos("TRE_R211-ActiviteOperationnelle", "001")],
         "characteristic": [_nos("TRE_R213-ModePriseEnCharge", "29")],
         "providedBy": {"reference": "Organization/oi-7"}},
        {"resourceType": "Patient", "id": "p"},
    ]
    path = tmp_path / "region84.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    return path


def test_registry_then_region_then_newer_registry(engine, tmp_path):
    r1 = run_import(engine, FinessFeed(), FINESS_SAMPLE)
    r2 = run_import(engine, RegionalFeed("84"), _regional_extract(tmp_path))
    assert r2.counts["rejected"] == 1 and r2.counts["created"] == 3 and r2.counts["updated"] == 1  # Patient refused
    assert stored(engine, "Organization", "fin-010780054")["name"] == "CENTRE HOSPITALIER DE BOURG-EN-BRESSE"
    eg = stored(engine, "Organization", "fin-010000024")  # one national resource for the establishment
    assert eg["name"] == "CENTRE HOSPITALIER DE BOURG-EN-BRESSE FLEYRIAT"  # identification: FINESS
    assert [t["value"] for t in eg["telecom"]] == ["0474000000"]  # operational description: the region
    assert eg["alias"] == ["Hôpital Fleyriat"]
    oi = stored(engine, "Organization", "oi-84-7")
    assert oi["partOf"] == {"reference": "Organization/fin-010000024"}
    assert oi["identifier"] == [{"system": "https://oi.esante.gouv.fr", "value": "84-7"}]
    hs = stored(engine, "HealthcareService", "r84-hs-1")
    assert hs["providedBy"] == {"reference": "Organization/oi-84-7"} and hs["meta"]["tag"][0]["code"] == "84"
    # a newer FINESS file: a renamed establishment, one establishment gone
    text = FINESS_SAMPLE.read_text(encoding="utf-8")
    newer = tmp_path / "etalab_small_20210131.csv"
    newer.write_text("\n".join(line.replace("CENTRE HOSPITALIER DE BOURG-EN-BRESSE FLEYRIAT", "CH FLEYRIAT BOURG")
                               for line in text.splitlines() if not line.startswith("010000032;")) + "\n",
                     encoding="utf-8")
    r3 = run_import(engine, FinessFeed(), newer)
    assert (r3.counts["updated"], r3.counts["closed"], r3.counts["unchanged"]) == (1, 1, 98)
    eg = stored(engine, "Organization", "fin-010000024")
    assert eg["name"] == "CH FLEYRIAT BOURG" and [t["value"] for t in eg["telecom"]] == ["0474000000"]
    assert eg["meta"]["tag"][0]["code"] == "84"
    gone = stored(engine, "Organization", "fin-010000032")  # closed, never deleted
    assert gone["active"] is False
    assert ext(gone, "organization-period")[0]["valuePeriod"] == {"start": "1901-01-01", "end": "2021-01-31"}
    changes = {(c["outcome"], c["rid"]) for c in run_changes(engine, r3.run_id)}
    assert changes == {("updated", "fin-010000024"), ("closed", "fin-010000032")}
    assert {c["rid"] for c in run_changes(engine, r1.run_id)} >= {"fin-010000024", "fin-010000032"}
    # the closed establishment comes back in a later file: reopened
    r4 = run_import(engine, FinessFeed(), FINESS_SAMPLE)
    assert stored(engine, "Organization", "fin-010000032")["active"] is True and r4.counts["updated"] == 2


def test_mass_disappearance_is_reported_not_applied(engine, tmp_path):
    run_import(engine, FinessFeed(), FINESS_SAMPLE)
    head = FINESS_SAMPLE.read_text(encoding="utf-8").splitlines()[:11]
    short = tmp_path / "etalab_small_20210228.csv"
    short.write_text("\n".join(head) + "\n", encoding="utf-8")
    report = run_import(engine, FinessFeed(), short)
    assert report.counts["closed"] == 0
    assert any("90 of 100 'eg' resources are missing" in p.reason for p in report.problems)
    assert stored(engine, "Organization", "fin-010000032")["active"] is True


class Killed(Exception):
    pass


def test_killed_run_converges(engine, tmp_path):
    batches = []

    def die_after_three(done):
        batches.append(done)
        if len(batches) == 3:
            raise Killed

    # The run killed is the RPPS one: the FINESS sample is an EG file without its EJs, so every EG is held
    # back to the end of the run (its EJ might come later in the file: docs/feeds.md, "Validation") and a
    # killed FINESS run writes nothing; the RPPS records are written batch by batch.
    run_import(engine, FinessFeed(), FINESS_SAMPLE)
    with pytest.raises(Killed):
        run_import(engine, RppsFeed(), RPPS_SAMPLE, batch_size=5, on_batch=die_after_three)
    with engine.connect() as conn:
        assert conn.execute(select(feed_run.c.status).order_by(feed_run.c.run_id)).scalars().all() == ["done", "failed"]
    partial = all_stored(engine)
    assert 100 < len(partial) < 100 + 45  # some of the 45 resources RPPS adds, not all
    run_import(engine, RppsFeed(), RPPS_SAMPLE, batch_size=5)
    reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    upgrade(reference)
    run_import(reference, FinessFeed(), FINESS_SAMPLE)
    run_import(reference, RppsFeed(), RPPS_SAMPLE)
    assert all_stored(engine) == all_stored(reference)
    reference.dispose()



def test_a_national_identifier_sent_with_or_without_its_type_is_one_identifier(engine, tmp_path):
    """RPPS writes a professional's idNat_PS without a type; a region sends it with its TRE_G08 type:
    the merged Practitioner keeps one identifier (the profile allows one), the registry's."""
    run_import(engine, RppsFeed(), RPPS_SAMPLE)
    rid = next(r for t, r in all_stored(engine) if t == "Practitioner")
    before = stored(engine, "Practitioner", rid)
    [ident] = before["identifier"]
    typed = {**ident, "type": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_G08-TypeIdentifiantPersonne"
                                                     "/FHIR/TRE-G08-TypeIdentifiantPersonne", "code": "8"}]}}
    regional = {"resourceType": "Practitioner", "id": "pra-1", "identifier": [typed],
                "name": [{"family": "Nom régional"}]}
    path = tmp_path / "region.ndjson"
    path.write_bytes(orjson.dumps(regional) + b"\n")
    report = run_import(engine, RegionalFeed("84"), path)
    assert report.counts["rejected"] == 0
    after = stored(engine, "Practitioner", rid)
    assert after["identifier"] == [ident] and after["name"] == before["name"]  # identification: RPPS
    assert after["meta"]["tag"][0]["code"] == "84"
