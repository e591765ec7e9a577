"""The generator's dirty records through the real feeds: importing its FINESS file, its RPPS extraction, then each
region's extract rejects exactly the records its manifest says a reader must reject (``ror.generate.dirty``), and
nothing else but the regional resources that depend on a rejected one (the manifest's ``dependents``)."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from ror.feeds.fileset import collect
from ror.feeds.finess import FinessFeed
from ror.feeds.regional import RegionalFeed
from ror.feeds.reports import run_problems
from ror.feeds.rpps import RppsFeed
from ror.feeds.runs import run_import
from ror.generate.runner import generate
from ror.store.schema import resource

REGIONS = ["84", "53"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("dirty")
    generate(out, "3000", seed=3, regions=REGIONS, jobs=1, dirty=0.04)
    return out, json.loads((out / "manifest.json").read_text("utf-8"))


def _rejected(engine, run_id: int) -> list[dict]:
    return [p for p in run_problems(engine, run_id) if p["severity"] == "error"]


def _expected(manifest: dict, prefix: str, key: str = "records") -> set[tuple[str, int]]:
    """(file name, line) of the manifest's records under ``prefix`` a reader must reject (all the dependents)."""
    return {(d["file"].rsplit("/", 1)[1], d["line"]) for d in manifest["dirty"][key]
            if d["file"].startswith(prefix) and (key == "dependents" or d["expect"] == "reject")}


def test_the_feeds_reject_exactly_what_the_manifest_lists(engine, dataset):
    out, manifest = dataset
    records = manifest["dirty"]["records"]
    assert {d["kind"] for d in records} >= {"truncated", "bad_key", "unknown_code"}
    # The seed gives the cases readers got wrong: an ADELI number with a wrong key, an extract's first line cut
    assert any(d["kind"] == "bad_key" and d["file"].startswith("rpps/") and d["key"][0] == "0" for d in records)
    assert any(d["kind"] == "truncated" and d["file"].startswith("fhir/") and d["line"] == 1 for d in records)
    for feed, folder in ((FinessFeed(), "finess"), (RppsFeed(), "rpps")):
        (path,) = (out / folder).iterdir()
        report = run_import(engine, feed, path, full=True)
        got = {(path.name, p["line"]) for p in _rejected(engine, report.run_id)}
        assert got == _expected(manifest, f"{folder}/"), folder
        assert got
    for region in REGIONS:
        report = run_import(engine, RegionalFeed(region), collect([out / "fhir" / region]), full=True)
        got = set()
        for p in _rejected(engine, report.run_id):
            # The file is named in the field of a line that could not be read, else by the resource's type
            found = re.match(r'\{"resourceType":"(\w+)"', p["record"] or "")
            got.add((f"{found[1]}.ndjson" if found else p["field"].split(": ")[0], p["line"]))
        must = _expected(manifest, f"fhir/{region}/")
        assert must and must <= got, region
        assert got - must <= _expected(manifest, f"fhir/{region}/", "dependents"), region


def test_double_encoded_text_is_stored_as_it_was_meant_and_reported(engine, dataset):
    out, manifest = dataset
    messages: list[str] = []
    for feed, path in ((FinessFeed(), next((out / "finess").iterdir())), (RppsFeed(), next((out / "rpps").iterdir())),
                       *((RegionalFeed(r), collect([out / "fhir" / r])) for r in REGIONS)):
        messages.append(run_import(engine, feed, path, full=True).message)
    mangled = {d["file"].split("/")[0] for d in manifest["dirty"]["records"] if d["kind"] == "mojibake"}
    assert mangled >= {"rpps", "fhir"}
    assert "double-encoded" in messages[1] and any("double-encoded" in m for m in messages[2:])
    with engine.connect() as conn:
        bodies = [b.decode() for (b,) in conn.execute(select(resource.c.body))]
    assert len(bodies) > 1000
    assert [b for b in bodies if re.search("Ã[©¨´§‰]", b)] == []
