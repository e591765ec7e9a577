"""Every resource a feed stores is validated against the ROR profiles (docs/feeds.md, "Validation")."""

from __future__ import annotations

import orjson
from sqlalchemy import func, select

from ror.feeds.finess import FinessFeed
from ror.feeds.regional import RegionalFeed
from ror.feeds.reports import run_problems
from ror.feeds.rpps import RppsFeed
from ror.feeds.runs import run_import
from ror.feeds.schema import feed_problem, feed_problem_record
from ror.feeds.validation import DANGLING, INHERITED, PREFILL, REGISTRY_CODE
from tests.feeds.conftest import FINESS_SAMPLE, RPPS_SAMPLE, stored

_NOS = "https://mos.esante.gouv.fr/NOS"
_SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"


def _nos(table: str, code: str) -> dict:
    return {"coding": [{"system": f"{_NOS}/{table}/FHIR/{table.replace('_', '-')}", "code": code}]}


def _problems(engine, run_id: int, severity: str) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(feed_problem.c.line, feed_problem.c.field, feed_problem.c.reason).where(
                feed_problem.c.run_id == run_id, feed_problem.c.severity == severity)
            .order_by(feed_problem.c.problem_id))]


def test_retired_registry_categories_are_kept_with_a_warning(engine):
    """The real FINESS extract has two sites in categories NOS retired (437, 379 on 2018-10-26) before its
    date: the registry's own data, kept, and reported as a NOS anomaly on the field that carries it."""
    report = run_import(engine, FinessFeed(), FINESS_SAMPLE)
    assert (report.counts["created"], report.counts["rejected"]) == (100, 0)
    assert _problems(engine, report.run_id, "error") == []
    warnings = _problems(engine, report.run_id, "warning")
    codes = [(line, reason) for line, f, reason in warnings if f == "Organization.type[0].coding[0]"]
    assert [line for line, _ in codes] == [20, 68]
    for (_, reason), (rid, code) in zip(codes, (("fin-010001741", "437"), ("fin-010003119", "379")), strict=True):
        assert reason.startswith(f"Organization/{rid}: {REGISTRY_CODE}")
        assert f"code '{code}'" in reason and "was retired on 2018-10-26, before the resource date 2020-12-31" in reason
        eg = stored(engine, "Organization", rid)
        assert eg["type"][0]["coding"][0]["code"] == code
    # the feed itself reports them too, on its column
    assert [(line, f) for line, f, _ in warnings if f == "categetab"] == [(20, "categetab"), (68, "categetab")]
    # EJs absent from this cut of the file: the EGs are kept, the reference is reported, not dropped.
    dangling = [reason for _, f, reason in warnings if f == "Organization.partOf.reference"]
    assert len(dangling) == 100 and all(r.endswith(DANGLING) for r in dangling)
    eg = stored(engine, "Organization", "fin-010000024")
    assert eg["partOf"]["reference"].startswith("Organization/fin-")
    assert any(e["url"].endswith("ror-meta-creation-date") for e in eg["extension"])


def test_the_warnings_of_a_pre_filled_offer_share_one_copy_of_its_record(engine):
    """The real RPPS sample's pre-filled offers lack what the region completes (care mode, public...): one
    warning per missing element, each about the same merged resource, stored once."""
    run_import(engine, FinessFeed(), FINESS_SAMPLE)
    report = run_import(engine, RppsFeed(), RPPS_SAMPLE)
    problems = run_problems(engine, report.run_id)
    prefills = [p for p in problems if PREFILL in p["reason"]]
    assert (len(prefills), len(problems), report.counts["warnings"]) == (56, 59, 59)
    for p in problems:  # each problem reads the resource it is about
        rtype, rid = p["reason"].split(":", 1)[0].split("/")
        record = orjson.loads(p["record"])
        assert (record["resourceType"], record["id"]) == (rtype, rid)
    with engine.connect() as conn:
        copies = conn.execute(select(func.count()).select_from(feed_problem_record).where(
            feed_problem_record.c.run_id == report.run_id)).scalar_one()
    assert copies == len({p["record"] for p in problems}) == 17


def test_validation_can_be_turned_off_for_an_emergency_load(engine, monkeypatch):
    monkeypatch.setenv("ROR_VALIDATE_FEEDS", "false")
    from ror.settings import get_settings
    get_settings.cache_clear()
    try:
        report = run_import(engine, FinessFeed(), FINESS_SAMPLE)
    finally:
        get_settings.cache_clear()
    assert (report.counts["created"], report.counts["rejected"]) == (100, 0)
    assert report.counts["warnings"] == 7  # the feed's own problems only: nothing was validated


def _extract(path, activity_field: str):
    """A region's extract: an EJ and one offer whose activity field (TRE_R227, bound to JDV_J20) is given."""
    lines = [
        {"resourceType": "Organization", "id": "ej-1", "name": "CENTRE HOSPITALIER DE BOURG-EN-BRESSE",
         "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "010780054"}]},
        {"resourceType": "HealthcareService", "id": "hs-1", "name": "Urgences adultes",
         "extension": [{"url": _SD + "ror-healthcareservice-patient-type",
                        "extension": [{"url": "ageRange", "valueRange": {
                            "low": {"value": 18, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}}]},
                       {"url": _SD + "ror-healthcareservice-sensitive-unit", "valueBoolean": False}],
         "identifier": [{"type": _nos("TRE_R355-TypeIdentifiantOffre", "35"), "value": "84/hs-1"}],
         "type": [_nos("TRE_R227-ChampActivite", activity_field)],
         "specialty": [_nos("TRE_R211-ActiviteOperationnelle", "001")],
         "characteristic": [_nos("TRE_R213-ModePriseEnCharge", "29")],
         "providedBy": {"reference": "Organization/ej-1"}},
    ]
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    return path


def test_a_rejected_record_keeps_the_stored_version_with_line_field_and_reason(engine, tmp_path):
    run_import(engine, RegionalFeed("84"), _extract(tmp_path / "region84.ndjson", "01"))
    before = stored(engine, "HealthcareService", "r84-hs-1")
    # the region's next extract gives the offer an activity field outside JDV_J20: the feed does not check
    # that binding, the validator does
    report = run_import(engine, RegionalFeed("84"), _extract(tmp_path / "region84-next.ndjson", "99"))
    assert (report.counts["rejected"], report.counts["unchanged"], report.counts["updated"]) == (1, 1, 0)
    errors = _problems(engine, report.run_id, "error")
    assert [(line, f) for line, f, _ in errors] == [(2, "HealthcareService.type[0].coding[0]")]  # line of the record
    assert errors[0][2].startswith(
        "HealthcareService/r84-hs-1: HealthcareService.type (champActivite): https://mos.esante.gouv.fr/NOS/"
        "TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite|99 is not in value set JDV_J20-ChampActivite-ROR")
    [problem] = [p for p in run_problems(engine, report.run_id) if p["severity"] == "error"]
    assert orjson.loads(problem["record"])["type"][0]["coding"][0]["code"] == "99"  # the merged resource refused
    assert stored(engine, "HealthcareService", "r84-hs-1") == before


def test_a_reference_the_region_did_not_send_is_not_held_against_it(engine, tmp_path):
    """FINESS stored a site with the link to its EJ, whose line is in another department's file: the
    region's description of that site is accepted, the missing EJ reported as a warning, not an error."""
    from tests.feeds.test_consolidation import _regional_extract
    run_import(engine, FinessFeed(), FINESS_SAMPLE)
    path = _regional_extract(tmp_path)
    lines = [x for x in path.read_bytes().splitlines() if b'"id":"ej-1"' not in x]
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = run_import(engine, RegionalFeed("84"), path)
    assert report.counts["rejected"] == 1  # the Patient only
    assert stored(engine, "Organization", "fin-010000024")["alias"] == ["Hôpital Fleyriat"]
    warnings = [(f, r) for _, f, r in _problems(engine, report.run_id, "warning") if INHERITED in r]
    assert warnings == [("Organization.partOf.reference", "Organization/fin-010000024: Organization.partOf.reference: "
                         "Organization/fin-010780054 does not exist in ROR national" + INHERITED)]
