"""Dirty records are real defects, each one listed: an independent scan of the files finds exactly the
detectable defects the manifest declares (so a reader's rejection count can be checked against it)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter

from ror.generate.keys import finess_ok, luhn_ok
from ror.generate.nos import Nos

FIELDS = {"structureet": 32, "geolocalisation": 6, "structureej": 23}
NOS_SYSTEM = re.compile(r"^https://mos\.esante\.gouv\.fr/NOS/((?:TRE|JDV)_[A-Z]\d+-[^/]+)/FHIR/")


def _codings(node) -> list[dict]:
    if isinstance(node, dict):
        found = [c for c in node.get("coding", [])] if isinstance(node.get("coding"), list) else []
        return found + [c for v in node.values() for c in _codings(v)]
    if isinstance(node, list):
        return [c for v in node for c in _codings(v)]
    return []


def _scan_finess(dataset, nos: Nos) -> dict[int, str]:
    """line number -> defect found by looking at the FINESS file alone."""
    path = next((dataset / "finess").iterdir())
    found = {}
    for number, raw in enumerate(path.read_bytes().splitlines()[1:], 2):
        try:
            raw.decode("ascii")
        except UnicodeDecodeError:
            try:
                text = raw.decode("utf-8")  # valid UTF-8 with accents inside a Latin-1 file: mangled accents
                found[number] = "mojibake"
                continue
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
        else:
            text = raw.decode("ascii")
        fields = next(csv.reader(io.StringIO(text), delimiter=";"))
        if len(fields) != FIELDS[fields[0]]:
            found[number] = "truncated"
        elif fields[0] != "geolocalisation" and not finess_ok(fields[1]):
            found[number] = "bad_key"
        elif fields[0] == "structureet" and fields[22] and not luhn_ok(fields[22]):
            found[number] = "bad_siret"
        elif fields[0] == "structureet" and not nos.has("TRE_R66-CategorieEtablissement", fields[18]):
            found[number] = "unknown_code"
    return found


def _scan_rpps(dataset, nos: Nos) -> dict[int, str]:
    path = next((dataset / "rpps").iterdir())
    found = {}
    for number, line in enumerate(path.read_text("utf-8").splitlines()[1:], 2):
        fields = line.split("|")
        if "Ã" in line:
            found[number] = "mojibake"
        elif len(fields) != 53:
            found[number] = "truncated"
        elif not luhn_ok(fields[1]):
            found[number] = "bad_key"
        elif not nos.has("TRE_G15-ProfessionSante", fields[9]):
            found[number] = "unknown_code"
    return found


def test_flat_file_defects_are_exactly_the_listed_ones(dataset, manifest):
    nos = Nos()
    finess_file = f"finess/{next((dataset / 'finess').iterdir()).name}"
    rpps_file = f"rpps/{next((dataset / 'rpps').iterdir()).name}"
    for file, scan in ((finess_file, _scan_finess(dataset, nos)), (rpps_file, _scan_rpps(dataset, nos))):
        listed = {d["line"]: d["kind"] for d in manifest["dirty"]["records"] if d["file"] == file}
        assert listed, file
        assert scan == listed, (file, sorted(set(scan.items()) ^ set(listed.items()))[:5])


def test_fhir_defects_are_real(dataset, manifest):
    nos = Nos()
    records = [d for d in manifest["dirty"]["records"] if d["file"].startswith("fhir/")]
    assert {d["kind"] for d in records} >= {"truncated", "unknown_code", "bad_key", "mojibake"}
    for d in records:
        line = (dataset / d["file"]).read_bytes().splitlines()[d["line"] - 1]
        if d["kind"] == "truncated":
            try:
                json.loads(line)
            except ValueError:
                continue
            raise AssertionError(f"{d} parses")
        r = json.loads(line)
        assert f"{r['resourceType']}/{r['id']}" == d["key"]
        if d["kind"] == "bad_key":
            values = [i["value"] for i in r["identifier"] if i.get("system") in (
                "https://finess.esante.gouv.fr", "urn:oid:1.2.250.1.71.4.2.1")]
            assert values and not all(luhn_ok(v if len(v) == 9 else v[1:]) for v in values), d
        elif d["kind"] == "unknown_code":
            unknown = [c for c in _codings(r) if NOS_SYSTEM.match(c.get("system", ""))
                       and not nos.has(NOS_SYSTEM.match(c["system"]).group(1), c["code"])]
            assert unknown, d
        elif d["kind"] == "mojibake":
            assert "Ã" in line.decode("utf-8"), d
        assert d["expect"] in ("reject", "flag")


def test_counts_by_kind(manifest):
    by_kind = Counter(f"{d['file'].split('/')[0]}:{d['kind']}" for d in manifest["dirty"]["records"])
    assert dict(by_kind) == manifest["dirty"]["by_kind"]
    assert manifest["dirty"]["count"] == len(manifest["dirty"]["records"])
    # about the requested share of all records (3 %), every output having some
    total = manifest["resources"]["total"] + sum(manifest["finess"].values()) + manifest["rpps"]["lines"]
    assert 0.015 * total < manifest["dirty"]["count"] < 0.045 * total
