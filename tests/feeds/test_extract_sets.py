"""`ror import region` on a whole `$export`: one NDJSON file per resource type, imported as ONE run.

Data: `ror generate --scale 2000 --seed 1` (the generator writes `fhir/<region>/<Type>.ndjson`), region 84.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from ror.cli.feeds import import_app
from ror.errors import InputFileError
from ror.feeds.fileset import FileSet, collect
from ror.feeds.regional import RegionalFeed
from ror.feeds.runs import Run, run_import
from ror.feeds.schema import feed_change, feed_run
from ror.generate.runner import generate
from tests.feeds.conftest import all_stored, stored

TYPES = ("HealthcareService", "Location", "Organization", "Practitioner", "PractitionerRole")


@pytest.fixture(scope="module")
def export84(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    generate(out, "2000", seed=1, jobs=1)
    return out / "fhir" / "84"


def _lines(d):
    return {t: [x for x in (d / f"{t}.ndjson").read_bytes().splitlines() if x.strip()] for t in TYPES}


def test_a_folder_is_one_run_with_one_checksum_and_a_reload_changes_nothing(engine, export84):
    src = collect([export84])
    assert isinstance(src, FileSet) and [f.name for f in src.files] == [f"{t}.ndjson" for t in TYPES]
    total = sum(len(v) for v in _lines(export84).values())
    r1 = run_import(engine, RegionalFeed("84"), src)
    assert r1.counts["records"] == total
    # (the generated cabinets' RPPS-rang keys fail the profile validation: those and what refers to them are
    # rejected, each with its line, field and reason)
    assert r1.counts["created"] + r1.counts["rejected"] == total and r1.counts["created"] > total / 2
    # one checksum for the set: sha256 over the sorted "<name> <sha256>" lines of its files
    expected = hashlib.sha256("".join(sorted(
        f"{t}.ndjson {hashlib.sha256((export84 / f'{t}.ndjson').read_bytes()).hexdigest()}\n" for t in TYPES
    )).encode()).hexdigest()
    with engine.connect() as conn:
        row = conn.execute(select(feed_run).where(feed_run.c.run_id == r1.run_id)).mappings().one()
    assert row["file_sha256"] == expected and row["status"] == "done"
    assert row["file_bytes"] == sum((export84 / f"{t}.ndjson").stat().st_size for t in TYPES)
    assert "5 files" in row["file_name"]
    before = {k: v["meta"] for k, v in _versions(engine).items()}
    r2 = run_import(engine, RegionalFeed("84"), collect([export84]))
    assert (r2.counts["created"], r2.counts["updated"], r2.counts["closed"]) == (0, 0, 0)
    assert r2.counts["unchanged"] == r1.counts["created"]
    assert {k: v["meta"] for k, v in _versions(engine).items()} == before  # no new version, lastUpdated kept


def _versions(engine):
    from ror.store.schema import resource
    with engine.connect() as conn:
        return {(t, r): orjson.loads(b) for t, r, b in conn.execute(
            select(resource.c.rtype, resource.c.rid, resource.c.body))}


def test_an_offer_missing_from_the_full_extract_is_closed_and_reported(engine, export84, tmp_path):
    run_import(engine, RegionalFeed("84"), collect([export84]))
    smaller = tmp_path / "84"
    shutil.copytree(export84, smaller)
    offers = _lines(export84)["HealthcareService"]
    kept = {rid for t, rid in all_stored(engine) if t == "HealthcareService"}
    i = next(i for i, x in enumerate(offers) if f"r84-{orjson.loads(x)['id']}" in kept)
    gone = orjson.loads(offers[i])
    (smaller / "HealthcareService.ndjson").write_bytes(b"\n".join(offers[:i] + offers[i + 1:]) + b"\n")
    rid = f"r84-{gone['id']}"
    assert stored(engine, "HealthcareService", rid)["active"] is True
    r = run_import(engine, RegionalFeed("84"), collect([smaller]))
    assert r.counts["closed"] == 1 and r.counts["created"] == 0 and r.counts["updated"] == 0
    closed = stored(engine, "HealthcareService", rid)  # closed, never deleted
    assert closed["active"] is False and closed["name"] == gone["name"]
    with engine.connect() as conn:
        changes = conn.execute(select(feed_change.c.rtype, feed_change.c.rid, feed_change.c.outcome).where(
            feed_change.c.run_id == r.run_id)).all()
    assert [tuple(c) for c in changes] == [("HealthcareService", rid, "closed")]
    # the offer comes back in the next extract: reopened
    r = run_import(engine, RegionalFeed("84"), collect([export84]))
    assert r.counts["updated"] == 1 and stored(engine, "HealthcareService", rid)["active"] is True


@pytest.mark.parametrize("shape", ["files", "one file"])
def test_references_across_files_resolve_whatever_the_file_order(engine, export84, tmp_path, monkeypatch, shape):
    """Files are read referenced types first, whatever order they come in, so that no record waits in memory for
    its references (``Run._deferred``); within one file, a record that names one further down waits and is written
    once every batch is in."""
    files = tuple(sorted((export84 / f"{t}.ndjson" for t in TYPES), key=lambda p: p.name, reverse=True))
    assert files[0].name == "PractitionerRole.ndjson"  # the referencing resources come first
    held: list[int] = []
    deferred = Run._deferred
    monkeypatch.setattr(Run, "_deferred", lambda run: (held.append(len(run.deferred)), deferred(run))[1])
    if shape == "files":
        src = FileSet(files, "reversed")
    else:
        src = tmp_path / "extract.ndjson"
        src.write_bytes(b"".join(f.read_bytes() for f in files))
    r = run_import(engine, RegionalFeed("84"), src, batch_size=20)
    assert r.counts["created"] > 0 and r.counts["rejected"] == 0
    assert (held == [0]) if shape == "files" else (held[0] > 20), held
    everything = all_stored(engine)
    ids = {f"{t}/{rid}" for t, rid in everything}
    refs = [res.get("providedBy", {}).get("reference") for (t, _), res in everything.items()
            if t == "HealthcareService"]
    refs += [x["reference"] for (t, _), res in everything.items() if t == "PractitionerRole"
             for x in [res.get("practitioner", {}), *res.get("healthcareService", [])] if x]
    assert refs and all(ref in ids for ref in refs), [ref for ref in refs if ref not in ids][:5]
    assert not any("@" in ref or "urn:ror:feed" in ref for ref in refs)


def test_a_bulk_data_manifest_lists_the_files(engine, export84, tmp_path):
    d = tmp_path / "export"
    shutil.copytree(export84, d)
    (d / "extra.ndjson").write_text("not part of the export\n", encoding="utf-8")
    manifest = {"transactionTime": "2026-11-02T00:00:00Z", "request": "https://ror.example/$export",
                "requiresAccessToken": True, "error": [],
                "output": [{"type": t, "url": f"{t}.ndjson" if t != "Location"
                            else f"https://ror.example/bulk/123/{t}.ndjson"} for t in TYPES]}
    (d / "manifest.json").write_bytes(orjson.dumps(manifest))
    src = collect([d])
    assert sorted(f.name for f in src.files) == sorted(f"{t}.ndjson" for t in TYPES)  # not extra.ndjson
    r = run_import(engine, RegionalFeed("84"), src)
    assert r.counts["rejected"] < r.counts["records"] and r.counts["created"] > 0
    manifest["output"].append({"type": "Organization", "url": "../../etc/passwd"})
    (d / "manifest.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(InputFileError, match="outside"):
        collect([d])


def test_several_files_on_the_command_line_are_one_run(engine, export84, tmp_path, monkeypatch, db_url):
    monkeypatch.setenv("ROR_DATABASE_URL", db_url)
    files = [str(export84 / f"{t}.ndjson") for t in TYPES]
    result = CliRunner().invoke(import_app, ["region", "--region", "84", *files])
    assert result.exit_code == 0, result.output
    assert "5filesreadasoneextract" in "".join(result.output.split())  # the console wraps lines at its width
    with engine.connect() as conn:
        runs = conn.execute(select(feed_run.c.source, feed_run.c.status)).all()
    assert [tuple(r) for r in runs] == [("region:84", "done")]


def test_problems_of_a_set_name_their_file_and_xml_is_imported_alone(engine, export84, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(export84, d)
    with (d / "Location.ndjson").open("ab") as f:
        f.write(b'{"resourceType": "Patient", "id": "p1"}\n')
    r = run_import(engine, RegionalFeed("84"), collect([d]))
    assert any(p.field == "Location.ndjson: resourceType" and "Patient" in p.reason for p in r.problems)
    (d / "region.xml").write_text('<CSD xmlns="urn:ihe:iti:csd:2013"/>', encoding="utf-8")
    with pytest.raises(InputFileError, match="CSD XML"):
        run_import(engine, RegionalFeed("84"), collect([d / "Location.ndjson", d / "region.xml"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match=r"no manifest\.json"):
        collect([tmp_path / "empty"])


def test_a_file_whose_first_line_is_cut_loses_that_line_only(engine, export84, tmp_path):
    """A producer's cut line, even the first, is one rejected record: the file is NDJSON by its name, and the
    reason is the cut (not the newline that followed it)."""
    d = tmp_path / "cut"
    shutil.copytree(export84, d)
    roles = _lines(d)["PractitionerRole"]
    (d / "PractitionerRole.ndjson").write_bytes(b"\n".join([roles[0][:90], *roles[1:]]) + b"\n")
    r = run_import(engine, RegionalFeed("84"), collect([d]))
    errors = [(p.line, p.field, p.reason.split(":")[:2]) for p in r.problems if p.severity == "error"]
    assert errors == [(1, "PractitionerRole.ndjson: (line)", ["invalid JSON", " unexpected end of data"])]
    assert r.counts["rejected"] == 1
    assert r.counts["records"] == sum(len(lines) for lines in _lines(export84).values())


def test_a_professional_two_regions_describe_keeps_the_first_and_a_reload_changes_nothing(engine, export84,
                                                                                          tmp_path):
    """The same professional (one idNat_PS) in two regions' extracts, with different contacts: the first region to
    describe an element keeps it (the profiles allow one source region), the other's import does not overwrite it,
    and importing both again writes nothing; when the first region changes it, the change is taken."""
    first = next(r for r in map(orjson.loads, _lines(export84)["Practitioner"]) if r.get("telecom"))

    def reached_at(value: str) -> list[dict]:
        return [{**first["telecom"][0], "value": value}]

    second = {**first, "id": "pra-53-000001", "telecom": reached_at("second@example.org"),
              "meta": {**first["meta"], "tag": [{**first["meta"]["tag"][0], "code": "53"}]}}
    extracts = {"84": tmp_path / "84.ndjson", "53": tmp_path / "53.ndjson"}
    extracts["84"].write_bytes(orjson.dumps(first) + b"\n")
    extracts["53"].write_bytes(orjson.dumps(second) + b"\n")

    def imported(region: str) -> Counter:
        return run_import(engine, RegionalFeed(region), extracts[region], full=False).counts

    assert imported("84")["created"] == 1 and imported("53")["unchanged"] == 1
    (rid,) = {rid for t, rid in all_stored(engine) if t == "Practitioner"}
    stored_one = stored(engine, "Practitioner", rid)
    assert [t["code"] for t in stored_one["meta"]["tag"]] == ["84"] and stored_one["telecom"] == first["telecom"]
    assert imported("84")["unchanged"] == 1 and imported("53")["unchanged"] == 1
    changed = {**first, "telecom": reached_at("changed@example.org")}
    extracts["84"].write_bytes(orjson.dumps(changed) + b"\n")
    assert imported("84")["updated"] == 1 and imported("53")["unchanged"] == 1
    assert stored(engine, "Practitioner", rid)["telecom"] == changed["telecom"]
