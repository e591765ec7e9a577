"""Bulk Data $export (docs/export.md) on the hand-built dataset (tests/fixtures/small), on SQLite and
PostgreSQL: the files hold exactly what the equivalent searches (with the IG's include set) return to
the same caller, as of one snapshot; the HTTP flow (kick-off, poll, manifest, download, cancel), job
ownership in the trust space, parameter errors and the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from ror.access.trust import TrustSpace
from ror.errors import InvalidRequest, NotFound
from ror.export.jobs import ExportJobs
from ror.export.request import parse_export
from ror.export.runner import run_export
from ror.export.schema import export_job
from ror.fhir.files import read_resources
from ror.fhir.rights import LocalCaller
from ror.settings import Settings
from ror.store import bulk
from tests.conftest import FIXTURES, LiveServer, make_service

REGION = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
TYPES = ("Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole", "Task")
# The IG's include set of the full offer (§3.4), as a search writes it.
INCLUDE_SET = [("_include", "HealthcareService:organization"), ("_include:iterate", "Organization:partof"),
               ("_include", "HealthcareService:location"), ("_revinclude", "PractitionerRole:service"),
               ("_include:iterate", "PractitionerRole:practitioner")]
COMPLETE = ("includeAssociatedData", "_myCompleteExtract")


def caller(profile: int) -> LocalCaller:
    return LocalCaller(app_id=f"app-p{profile}", profile=profile, write_all=False)


def load_small(svc) -> None:
    bulk.upsert(svc.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)


@pytest.fixture(scope="module")
def svc(module_db_url, tmp_path_factory):
    s = make_service(module_db_url, export_dir=str(tmp_path_factory.mktemp("export")))
    load_small(s)
    yield s
    s.engine.dispose()


def searched(svc, profile: int, rtype: str, pairs: list[tuple[str, str]]) -> dict[str, dict[str, dict]]:
    """What the caller gets from the search (every page) with its includes: type -> id -> resource."""
    out: dict[str, dict[str, dict]] = {}
    bundle = orjson.loads(svc.search(rtype, [*pairs, ("_count", "1000")], "http://t/fhir",
                                     caller=caller(profile)).body)
    assert not any(link["relation"] == "next" for link in bundle.get("link", ()))
    for e in bundle.get("entry", ()):
        r = e["resource"]
        out.setdefault(r["resourceType"], {})[r["id"]] = r
    return out


def exported(svc, tmp_path: Path, profile: int, pairs: list[tuple[str, str]], **settings):
    s = Settings(**{**svc.settings.__dict__, **settings})
    result = run_export(svc.engine, s, parse_export(pairs, s, profile), profile, tmp_path)
    out: dict[str, dict[str, dict]] = {}
    for f in result.files:
        lines = (tmp_path / f.name).read_bytes().splitlines()
        assert len(lines) == f.count
        for line in lines:
            r = orjson.loads(line)
            assert r["resourceType"] == f.type
            assert r["id"] not in out.get(f.type, {}), "a resource exported twice"
            out.setdefault(f.type, {})[r["id"]] = r
    return out, result


# -- content = search ---------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", [1, 0, 2, 3])
def test_full_export_equals_the_searches_of_each_type(svc, tmp_path, profile):
    got, result = exported(svc, tmp_path, profile, [])
    for rtype in TYPES:
        expected = searched(svc, profile, rtype, []).get(rtype, {})
        assert got.get(rtype, {}) == expected, rtype  # same resources, same redaction
        assert result.counts().get(rtype, 0) == len(expected)
    if profile == 1:
        assert result.counts() == {"Organization": 14, "HealthcareService": 12, "Location": 10, "Practitioner": 5,
                                   "PractitionerRole": 7, "Task": 3}


@pytest.mark.parametrize("profile", [1, 0, 2, 3])
@pytest.mark.parametrize("region", ["11", "52", None])
def test_complete_extract_equals_search_with_the_include_set(svc, tmp_path, profile, region):
    pairs = [("_type", "HealthcareService"), COMPLETE]
    criteria = []
    if region:
        pairs.append(("_typeFilter", f"HealthcareService?_tag={REGION}|{region}"))
        criteria = [("_tag", f"{REGION}|{region}")]
    got, _ = exported(svc, tmp_path, profile, pairs)
    expected = searched(svc, profile, "HealthcareService", criteria + INCLUDE_SET)
    assert got == expected
    if region == "11":  # the region's offers only, with what they link (whatever region that is in)
        assert {r["meta"]["tag"][0]["code"] for r in got["HealthcareService"].values()} == {"11"}
        assert "Task" not in got


def test_regional_extract_facts(svc, tmp_path):
    got, _ = exported(svc, tmp_path, 1, [("_type", "HealthcareService"), COMPLETE,
                                         ("_typeFilter", f"HealthcareService?_tag={REGION}|11")])
    assert {t: len(v) for t, v in got.items()} == {"Organization": 3, "HealthcareService": 2, "Location": 2,
                                                   "Practitioner": 1, "PractitionerRole": 1}
    got3, _ = exported(svc, tmp_path / "p3", 3, [("_type", "HealthcareService"), COMPLETE,
                                                ("_typeFilter", f"HealthcareService?_tag={REGION}|11")])
    assert "PractitionerRole" not in got3 and "Practitioner" not in got3  # profile 3: medico-social roles only


def test_type_filters_are_ored_and_other_types_whole(svc, tmp_path):
    pairs = [("_type", "HealthcareService,Task"),
             ("_typeFilter", f"HealthcareService?_tag={REGION}|11,HealthcareService?_tag={REGION}|52")]
    got, _ = exported(svc, tmp_path, 1, pairs)
    expected = searched(svc, 1, "HealthcareService", [("_tag", f"{REGION}|11,{REGION}|52")])["HealthcareService"]
    assert got["HealthcareService"] == expected
    assert set(got) == {"HealthcareService", "Task"} and len(got["Task"]) == 3


def test_since_only_returns_what_changed_after(svc, tmp_path):
    since = "2026-01-01T00:00:00+01:00"
    got, _ = exported(svc, tmp_path, 1, [("_since", since)])
    total = 0
    for rtype in TYPES:
        expected = searched(svc, 1, rtype, [("_lastUpdated", f"gt{since}")]).get(rtype, {})
        assert got.get(rtype, {}) == expected
        total += len(expected)
    assert 0 < total < 51
    # with the complete extract, _since applies to the offers and to what they link alike
    got, _ = exported(svc, tmp_path / "c", 1, [("_type", "HealthcareService"), COMPLETE, ("_since", since)])
    full = searched(svc, 1, "HealthcareService", INCLUDE_SET)
    for rtype, resources in got.items():
        changed = searched(svc, 1, rtype, [("_lastUpdated", f"gt{since}")]).get(rtype, {})
        assert resources == {k: v for k, v in full[rtype].items() if k in changed}


def test_files_split_at_the_maximum_count(svc, tmp_path):
    _, result = exported(svc, tmp_path, 1, [("_type", "Organization")], export_file_max_resources=4,
                         export_batch_size=3)
    assert [(f.name, f.count) for f in result.files] == [("Organization-1.ndjson", 4), ("Organization-2.ndjson", 4),
                                                         ("Organization-3.ndjson", 4), ("Organization-4.ndjson", 2)]


# -- consistency ----------------------------------------------------------------------------------------

def test_a_write_during_the_export_is_not_in_it(db_url, tmp_path):
    svc = make_service(db_url, export_batch_size=1)
    try:
        load_small(svc)
        before = {t: searched(svc, 1, t, []).get(t, {}) for t in TYPES}
        offer = before["HealthcareService"]["hs-gyneco-hc"]
        org_id = offer["providedBy"]["reference"].split("/")[1]
        writes = []

        def check(progress: str) -> None:
            if progress.endswith("(Organization)") and not writes:  # mid-way through the first type
                org = {**before["Organization"][org_id], "name": "Renamed during the export"}
                org.pop("meta")
                svc.update("Organization", org_id, orjson.dumps(org), "http://t/fhir")
                new = {**offer, "id": "hs-new-during-export"}
                new.pop("meta")
                svc.update("HealthcareService", new["id"], orjson.dumps(new), "http://t/fhir")
                writes.append(progress)

        req = parse_export([], svc.settings, 1)
        result = run_export(svc.engine, svc.settings, req, 1, tmp_path, check=check)
        assert writes
        got: dict[str, dict[str, dict]] = {}
        for f in result.files:
            for line in (tmp_path / f.name).read_bytes().splitlines():
                r = orjson.loads(line)
                got.setdefault(r["resourceType"], {})[r["id"]] = r
        assert got == before  # as of the snapshot: old name, no new offer
        assert searched(svc, 1, "Organization", [("_id", org_id)])["Organization"][org_id]["name"] == \
            "Renamed during the export"
        # internally consistent: every reference of an exported offer resolves inside the export
        for hs in got["HealthcareService"].values():
            assert hs["providedBy"]["reference"].split("/")[1] in got["Organization"]
            for loc in hs.get("location", ()):
                assert loc["reference"].split("/")[1] in got["Location"]
    finally:
        svc.engine.dispose()


# -- parameters -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("pairs", "text"), [
    ([("_type", "Patient")], "_type 'Patient' is not a resource type this server exports"),
    ([("_outputFormat", "text/csv")], "_outputFormat 'text/csv' is not supported"),
    ([("_since", "2026-01-01")], "_since '2026-01-01' is not a FHIR instant"),
    ([("_since", "2026-01-01T10:00:00")], "is not a FHIR instant"),
    ([("foo", "1")], "Unknown $export parameter 'foo'"),
    ([("patient", "Patient/1")], "patient applies to Patient-level exports"),
    ([("includeAssociatedData", "LatestProvenanceResources")], "includeAssociatedData 'LatestProvenanceResources'"),
    ([("_typeFilter", "HealthcareService?nope=1")], "_typeFilter 'HealthcareService?nope=1'"),
    ([("_typeFilter", "HealthcareService")], "is not a search query 'Type?parameters'"),
    ([("_type", "Location"), ("_typeFilter", "HealthcareService?_id=x")], "not among the exported types"),
    ([("_typeFilter", "HealthcareService?_count=5")], "_count is a result parameter"),
    ([("_type", "Location"), COMPLETE], "_type must include HealthcareService"),
])
def test_bad_parameters_are_refused(pairs, text):
    with pytest.raises(InvalidRequest) as e:
        parse_export(pairs, Settings(), 1)
    assert text in e.value.message


def test_output_formats_and_defaults():
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson", "application/fhir+json",
                "application/json"):
        assert parse_export([("_outputFormat", fmt)], Settings()).output_format == "application/fhir+ndjson"
    req = parse_export([COMPLETE], Settings())
    assert req.own == ["HealthcareService"]
    assert req.types == ["Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole"]
    assert parse_export([], Settings()).types == list(TYPES)


# -- jobs ----------------------------------------------------------------------------------------------------

def wait_done(jobs: ExportJobs, job_id: str, who) -> object:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = jobs.get(job_id, who)
        if job.status not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError("export did not finish")


def test_jobs_belong_to_their_application_and_stale_ones_fail(svc):
    jobs = ExportJobs(svc.engine, svc.settings)
    try:
        job_id = jobs.submit(caller(2), parse_export([("_type", "Location")], svc.settings, 2), "http://t/x")
        job = wait_done(jobs, job_id, caller(2))
        assert job.status == "completed" and job.manifest["output"][0]["count"] == 9  # a sensitive place hidden
        with pytest.raises(NotFound):
            jobs.get(job_id, caller(1))  # another application: does not exist
        with pytest.raises(NotFound):
            jobs.delete(job_id, caller(1))
        with pytest.raises(NotFound):
            jobs.file(job_id, "Location-1.ndjson", caller(1))
        assert jobs.file(job_id, "Location-1.ndjson", caller(2))[1:] == ("Location", 9)
        # a job left queued by a process that stopped (no heartbeat) is failed, not left hanging
        other = ExportJobs(svc.engine, Settings(**{**svc.settings.__dict__, "export_stale_after_s": 0}))
        with svc.engine.begin() as conn:
            conn.execute(insert(export_job).values(
                id="00000000-0000-4000-8000-000000000000", owner="app-p2", profile="2", request="r",
                params=orjson.dumps(parse_export([], svc.settings).to_json()),
                status="running", created="2026-01-01T00:00:00.000Z", heartbeat="2026-01-01T00:00:00.000Z"))
        assert other.reap()["failed"] == 1
        stale = jobs.get("00000000-0000-4000-8000-000000000000", caller(2))
        assert stale.status == "failed" and "interrupted" in stale.error
        jobs.delete(job_id, caller(2))
        assert not jobs.folder(job_id).exists()
    finally:
        jobs.close()


# -- HTTP ------------------------------------------------------------------------------------------------------

def poll(client: httpx.Client, url: str, **kw) -> httpx.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = client.get(url, **kw)
        if r.status_code != 202:
            return r
        assert r.headers["x-progress"] and r.headers["retry-after"].isdigit()
        time.sleep(0.05)
    raise AssertionError("export did not finish")


def test_http_kick_off_poll_manifest_download_cancel(svc):
    with LiveServer(svc) as live, httpx.Client(timeout=30) as client:
        r = client.get(f"{live.base}/$export", params=[("_type", "HealthcareService"), COMPLETE,
                                                        ("_typeFilter", f"HealthcareService?_tag={REGION}|11")],
                       headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        assert r.status_code == 202, r.text
        status_url = r.headers["content-location"]
        assert status_url.startswith(f"{live.base}/$export-poll-status?_jobId=")
        r = poll(client, status_url)
        assert r.status_code == 200, r.text
        manifest = r.json()
        assert manifest["requiresAccessToken"] is False and manifest["error"] == []
        assert manifest["request"].startswith(f"{live.base}/$export?")
        assert manifest["transactionTime"].endswith("+00:00")
        counts = {o["type"]: o["count"] for o in manifest["output"]}
        assert counts == {"Organization": 3, "HealthcareService": 2, "Location": 2, "Practitioner": 1,
                          "PractitionerRole": 1}
        expected = searched(svc, 1, "HealthcareService", [("_tag", f"{REGION}|11"), *INCLUDE_SET])
        for o in manifest["output"]:
            f = client.get(o["url"])
            assert f.status_code == 200 and f.headers["content-type"].startswith("application/fhir+ndjson")
            got = {r["id"]: r for r in map(orjson.loads, f.content.splitlines())}
            assert got == expected[o["type"]]
        # POST with a Parameters body, no Prefer header (optional per the national deviation)
        body = {"resourceType": "Parameters",
                "parameter": [{"name": "_type", "valueString": "Task"},
                              {"name": "_outputFormat", "valueString": "application/fhir+json"}]}
        r = client.post(f"{live.base}/$export", content=orjson.dumps(body),
                        headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 202, r.text
        r2 = poll(client, r.headers["content-location"])
        assert [(o["type"], o["count"]) for o in r2.json()["output"]] == [("Task", 3)]
        # cancel: job and files gone
        url = r2.json()["output"][0]["url"]
        assert client.delete(status_url).status_code == 202
        assert client.get(status_url).status_code == 404
        job_id = status_url.rsplit("=", 1)[1]
        assert not (Path(svc.settings.export_dir) / job_id).exists()
        assert client.get(url).status_code == 200  # the other job is untouched
        # errors: 400 OperationOutcome with a clear text
        r = client.get(f"{live.base}/$export", params={"_type": "Patient"})
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
        assert "_type 'Patient'" in r.json()["issue"][0]["diagnostics"]
        r = client.get(f"{live.base}/$export-poll-status")
        assert r.status_code == 400 and "_jobId" in r.json()["issue"][0]["diagnostics"]
        assert client.get(f"{live.base}/$export-poll-status?_jobId=nope").status_code == 404
        assert client.get(f"{live.base}/$export-file/{job_id}/Task-1.ndjson").status_code == 404
        cs = client.get(f"{live.base}/metadata").json()
        assert cs["rest"][0]["operation"][0]["name"] == "export"


def test_http_jobs_of_another_application_are_404(module_db_url, tmp_path):
    if not module_db_url.startswith("sqlite"):
        pytest.skip("the trust space part is database-independent; once is enough")
    svc = make_service(f"sqlite:///{tmp_path / 'ror.db'}", auth_required=True, export_dir=str(tmp_path / "x"))
    load_small(svc)
    trust = TrustSpace(svc.engine, svc.settings)
    secrets = {}
    for app_id in ("open-a", "open-b"):
        secrets[app_id] = trust.registry.register(app_id=app_id, name=app_id, contact="c@x.test", profile=0,
                                                  user_profile_code="CU23", role_code="AUTOMATE")[1]
    ror = {"Ror-Profil-Utilisateur-Code": "CU23", "Ror-Profil-Utilisateur-System": "1.2.250.1.213.1.6.1.66",
           "Ror-Role-Metier-Code": "AUTOMATE", "Ror-Role-Metier-System": "1.2.250.1.213.1.1.4.6"}
    try:
        with LiveServer(svc) as live, httpx.Client(timeout=30) as client:
            auth = {}
            for app_id, secret in secrets.items():
                tok = client.post(f"{live.url}/oauth/token", data={"grant_type": "client_credentials",
                                                                   "client_id": app_id, "client_secret": secret})
                auth[app_id] = {"Authorization": f"Bearer {tok.json()['access_token']}"}
            r = client.get(f"{live.base}/$export", params={"_type": "HealthcareService"}, headers=auth["open-a"])
            assert r.status_code == 400 and "Ror-Profil-Utilisateur-Code" in r.text  # a consultation
            r = client.get(f"{live.base}/$export", params=[("_type", "HealthcareService"), COMPLETE],
                           headers={**auth["open-a"], **ror})
            assert r.status_code == 202, r.text
            status_url = r.headers["content-location"]
            manifest = poll(client, status_url, headers=auth["open-a"]).json()
            assert manifest["requiresAccessToken"] is True
            # profile 0: no sensitive offers, professionals of city offers only
            expected = searched(svc, 0, "HealthcareService", INCLUDE_SET)
            for o in manifest["output"]:
                f = client.get(o["url"], headers=auth["open-a"])
                assert {r["id"]: r for r in map(orjson.loads, f.content.splitlines())} == expected[o["type"]]
                assert client.get(o["url"], headers=auth["open-b"]).status_code == 404
                assert client.get(o["url"]).status_code == 401
            assert client.get(status_url, headers=auth["open-b"]).status_code == 404
            assert client.delete(status_url, headers=auth["open-b"]).status_code == 404
            assert client.get(status_url, headers=auth["open-a"]).status_code == 200
    finally:
        svc.engine.dispose()


# -- CLI -------------------------------------------------------------------------------------------------------

def test_cli_writes_the_same_files_and_a_manifest(svc, tmp_path, monkeypatch):
    from ror.cli.main import app
    monkeypatch.setenv("ROR_DATABASE_URL", svc.settings.database_url)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["export", "--complete", "--region", "11", str(out)])
    assert r.exit_code == 0, r.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert {o["type"]: o["count"] for o in manifest["output"]} == {
        "Organization": 3, "HealthcareService": 2, "Location": 2, "Practitioner": 1, "PractitionerRole": 1}
    assert all((out / o["url"]).is_file() for o in manifest["output"])
    r = CliRunner().invoke(app, ["export", "--type", "Patient", str(tmp_path / "bad")])
    assert r.exit_code == 1 and "Patient" in r.output
