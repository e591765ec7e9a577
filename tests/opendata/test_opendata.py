"""Open-data files (``ror.opendata``) on the hand-built dataset (sensitive units, every confidentiality level,
city and hospital offers, capacities), on SQLite and PostgreSQL: public data only, CSD valid against the ROR
v3.0 XSD and readable back by the CSD feed, deterministic, published atomically."""

from __future__ import annotations

import csv
import hashlib
import json

import orjson
import pytest

from ror.errors import InvalidRequest
from ror.feeds.model import Record
from ror.feeds.regional import RegionalFeed
from ror.fhir.files import read_resources
from ror.fhir.rights import LocalCaller
from ror.opendata import build
from ror.opendata.build import publish
from ror.settings import Settings
from ror.store import bulk
from tests.conftest import FIXTURES, make_service
from tests.generate.test_csd import schema  # noqa: F401 (the XSD fixture)

etree = pytest.importorskip("lxml.etree")
NS = "{urn:ihe:iti:csd:2013}"
SENSITIVE = {"hs-psy-adulte", "hs-cmp-reze"}
SENSITIVE_PLACES = {"loc-psy-reze"}
HIDDEN_ROLE_IDS = {"pr-rousseau-psy", "pr-martin-gyneco", "pr-durand-usp"}


@pytest.fixture(scope="module")
def store(module_db_url):
    svc = make_service(module_db_url)
    resources = list(read_resources(FIXTURES / "small" / "bundle.json"))
    bulk.upsert(svc.engine, resources, keep_last_updated=True)
    yield svc, resources
    svc.engine.dispose()


@pytest.fixture(scope="module")
def published(store, tmp_path_factory):
    svc, _ = store
    out = tmp_path_factory.mktemp("od") / "opendata"
    manifest = publish(svc.engine, Settings(database_url=""), out)
    return out, manifest


def _files(out):
    return sorted(p for p in out.rglob("*") if p.is_file())


def _profile0_view(svc) -> dict[tuple[str, str], dict]:
    """Everything profile 0 gets from searches (the API's own rules), by (type, id)."""
    caller = LocalCaller(app_id="p0", profile=0, write_all=False, write_establishments=frozenset())
    out = {}
    for rtype in build.TYPES:
        body = orjson.loads(svc.search(rtype, [("_count", "1000")], "http://t/fhir", caller=caller).body)
        for e in body.get("entry", ()):
            out[(rtype, e["resource"]["id"])] = e["resource"]
    return out


def test_layout_and_manifest(published):
    out, manifest = published
    assert sorted(r["code"] for r in manifest["regions"]) == ["11", "52", "53", "84", "93"]
    assert manifest["licence"]["name"] == "Licence Ouverte / Open Licence 2.0" and manifest["accessProfile"] == 0
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    for region in manifest["regions"]:
        names = {f["path"] for f in region["files"]}
        code = region["code"]
        assert names == {f"{code}/ror-{code}.xml", f"{code}/ror-{code}.ndjson", f"{code}/ror-{code}-offer.csv",
                         f"{code}/ror-{code}-organization.csv", f"{code}/ror-{code}-place.csv"}
        for f in region["files"]:
            data = (out / f["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_nothing_profile_0_cannot_see(store, published):
    svc, resources = store
    out, manifest = published
    seen = _profile0_view(svc)
    every_text = b"".join(p.read_bytes() for p in _files(out))
    for rid in SENSITIVE | SENSITIVE_PLACES | HIDDEN_ROLE_IDS | {"pra-rousseau"}:
        assert rid.encode() not in every_text, rid
    # Every published resource is exactly what profile 0 reads through the API.
    count = 0
    for region in manifest["regions"]:
        for line in (out / region["code"] / f"ror-{region['code']}.ndjson").read_bytes().splitlines():
            res = orjson.loads(line)
            assert (res["resourceType"], res["id"]) in seen, res["id"]
            assert res == seen[(res["resourceType"], res["id"])], res["id"]
            count += 1
    assert count >= len({k for k in seen if k[0] != "Task"})  # every public resource, in some region
    # Restricted and very restricted telecoms / contacts (levels 2, 3) appear in no file.
    hidden_values = set()
    for r in resources:
        for node in [*r.get("telecom", ()), *(t for c in r.get("contact", ()) for t in c.get("telecom", ()))]:
            levels = {e["valueCodeableConcept"]["coding"][0]["code"] for e in node.get("extension", ())
                      if e["url"].endswith("confidentiality-level")}
            if levels and levels != {"1"}:
                hidden_values.add(node["value"])
    public_values = {t["value"] for r in seen.values() for t in r.get("telecom", ())}
    for value in hidden_values - public_values:
        assert value.encode() not in every_text, value
    assert hidden_values - public_values
    # Profile 0 sees no capacity record: none in any format.
    assert b"ror-location-supported-capacity" not in every_text
    assert b"operationalAccommodationCapacity" not in every_text


def test_csd_validates_against_the_xsd(published, schema):  # noqa: F811
    out, manifest = published
    for region in manifest["regions"]:
        doc = etree.parse(str(out / region["code"] / f"ror-{region['code']}.xml"))
        assert schema.validate(doc), (region["code"], [str(e) for e in list(schema.error_log)[:3]])


def test_csv_rows_and_labels(published):
    out, _ = published
    with (out / "11" / "ror-11-offer.csv").open(encoding="utf-8") as f:
        rows = {r["id"]: r for r in csv.DictReader(f, delimiter=";")}
    row = rows["hs-cardio-ville"]
    assert (row["activity_code"], row["activity_label"]) == ("013", "Cardiologie générale")
    assert (row["champ_code"], row["care_mode_code"] if "care_mode_code" in row else row["care_mode_codes"]) == \
        ("05", "32")
    assert row["commune_cog"] == "78646" and row["latitude"] and row["capacities"] == ""
    with (out / "52" / "ror-52-place.csv").open(encoding="utf-8") as f:
        places = {r["id"] for r in csv.DictReader(f, delimiter=";")}
    assert places and not places & SENSITIVE_PLACES


def _read_back(path, region):
    feed = RegionalFeed(region)
    found = {}
    for item in feed.read(path):
        if isinstance(item, Record):
            for e in item.entities:
                found[(e.rtype, e.keys[0].rpartition("|")[2])] = e.resource
                found[f"@{e.rtype}|{e.keys[0]}"] = e.resource  # how the feed's references name it
    return found


def _capacities(loc):
    """(nature, status, temporality, number) of each capacity record of a place."""
    out = []
    for e in loc.get("extension", ()):
        if e["url"].endswith("supported-capacity"):
            v = {s["url"]: s["valueCodeableConcept"]["coding"][0]["code"] if "valueCodeableConcept" in s
                 else s.get("valueInteger") for s in e["extension"]}
            out.append((v.get("capacityType"), v.get("capacityStatus"), v.get("temporalityCapacity"),
                        v.get("nbCapacity")))
    return sorted(out)


@pytest.mark.parametrize("profile", [0, 1])
def test_round_trip_through_the_csd_feed(store, tmp_path, profile):
    """Profile 0 is the publication; profile 1 (all data) also exercises the capacity records."""
    svc, _ = store
    out = tmp_path / "od"
    publish(svc.engine, Settings(database_url=""), out, ["52"], ("csd", "json"), profile=profile)
    source = {(r["resourceType"], r["id"]): r for r in map(orjson.loads, (out / "52" / "ror-52.ndjson")
                                                           .read_bytes().splitlines())}
    back = _read_back(out / "52" / "ror-52.xml", "52")
    offers = {rid: r for (t, rid), r in source.items() if t == "HealthcareService"}
    read_offers = {k[1]: r for k, r in back.items() if isinstance(k, tuple) and k[0] == "HealthcareService"}
    written = set(read_offers)
    assert written and written <= set(offers)
    for rid in written:
        a, b = offers[rid], read_offers[rid]
        assert a["name"] == b["name"]
        assert [c["code"] for c in a["specialty"][0]["coding"]] == [c["code"] for c in b["specialty"][0]["coding"]]
        assert {c["code"] for cc in a["type"] for c in cc["coding"]} == {c["code"] for cc in b["type"] for c in
                                                                          cc["coding"]}
        assert back[b["providedBy"]["reference"]]["name"] == source[("Organization", a["providedBy"]["reference"]
                                                                       .rsplit("/", 1)[1])]["name"]
        places_a = [source[("Location", x["reference"].rsplit("/", 1)[1])] for x in a.get("location", ())]
        places_b = [back[x["reference"]] for x in b.get("location", ())]
        assert sorted(p["name"] for p in places_a) == sorted(p["name"] for p in places_b)
        assert sorted(map(_capacities, places_a)) == sorted(map(_capacities, places_b))
    caps = sum(len(_capacities(p)) for k, p in back.items() if isinstance(k, tuple) and k[0] == "Location")
    assert (caps > 0) == (profile == 1)
    orgs = sorted(r["name"] for (t, _), r in source.items() if t == "Organization")
    assert sorted(r["name"] for k, r in back.items() if isinstance(k, tuple) and k[0] == "Organization") == orgs


def test_same_store_same_bytes_and_atomic_replacement(store, published, tmp_path, monkeypatch):
    svc, _ = store
    out, first = published
    before = {p.relative_to(out): p.read_bytes() for p in _files(out) if p.name != "manifest.json"}
    again = tmp_path / "again"
    second = publish(svc.engine, Settings(database_url=""), again)
    after = {p.relative_to(again): p.read_bytes() for p in _files(again) if p.name != "manifest.json"}
    assert before == after
    assert [r["files"] for r in first["regions"]] == [r["files"] for r in second["regions"]]
    # A failing regeneration leaves the previous set untouched and no staging folder.
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(build, "_region_files", boom)
    with pytest.raises(RuntimeError):
        publish(svc.engine, Settings(database_url=""), again)
    assert {p.relative_to(again): p.read_bytes() for p in _files(again) if p.name != "manifest.json"} == after
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_refuses_to_replace_a_folder_that_is_not_a_publication(store, tmp_path):
    svc, _ = store
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidRequest):
        publish(svc.engine, Settings(database_url=""), tmp_path / "mine")
    with pytest.raises(InvalidRequest):
        publish(svc.engine, Settings(database_url=""), tmp_path / "x", formats=("pdf",))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
