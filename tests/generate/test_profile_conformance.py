"""Generated regional extracts conform to the ROR profiles: every clean resource passes the validator the
feeds judge imported records with, the dirty ones fail exactly as ``dirty.EXPECT`` says, and every reference
resolves inside the region's extract, except those to a rejected resource, which the manifest lists as
dependents. So importing FINESS, RPPS, then the regional extracts rejects only what the manifest lists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ror.generate.runner import generate
from ror.profiles.identifiers import check_id_nat_struct, check_rang
from ror.profiles.validation import Validator

REFERENCE = re.compile(r'"reference":"([A-Za-z]+/[^"]+)"')


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("conformance")
    generate(out, "600", seed=5, jobs=1, dirty=0.03)
    return out, json.loads((out / "manifest.json").read_text("utf-8"))


def _extracts(out: Path):
    """region -> [(file, line, raw bytes)] over the region's NDJSON files."""
    for region_dir in sorted((out / "fhir").iterdir()):
        rows = []
        for path in sorted(region_dir.glob("*.ndjson")):
            rel = path.relative_to(out).as_posix()
            rows += [(rel, n, raw) for n, raw in enumerate(path.read_bytes().splitlines(), 1)]
        yield region_dir.name, rows


def test_clean_resources_pass_the_profiles_and_dirty_ones_fail_as_expected(small):
    out, manifest = small
    dirty = {(d["file"], d["line"]): d for d in manifest["dirty"]["records"]}
    dependents = {(d["file"], d["line"]): d for d in manifest["dirty"]["dependents"]}
    validator = Validator()
    at = manifest["as_of"] + "T23:59:59"  # a feed judges records at the extraction date
    wrong, judged, outcomes = [], 0, {"reject": 0, "flag": 0}
    for _region, rows in _extracts(out):
        parsed = []
        for rel, n, raw in rows:
            d = dirty.get((rel, n))
            if d and d["kind"] == "truncated":
                with pytest.raises(ValueError):
                    json.loads(raw)
                outcomes["reject"] += 1
                continue
            parsed.append((rel, n, json.loads(raw)))
        issues = validator.validate_many([r for _, _, r in parsed], None, at=at)  # no store: references aside
        for (rel, n, _res), found in zip(parsed, issues, strict=True):
            judged += 1
            errors = [f"{i.expression}: {i.diagnostics}" for i in found if i.severity in ("error", "fatal")]
            d = dirty.get((rel, n))
            expected = d["expect"] if d else "flag"  # clean resources and dependents must pass on their own
            if d:
                outcomes[d["expect"]] += 1
            if (expected == "reject") != bool(errors):
                wrong.append((rel, n, d and d["kind"], errors[:2]))
    assert not wrong, wrong[:10]
    assert judged > 500
    assert outcomes["reject"] and outcomes["flag"], outcomes  # the small dataset has both outcomes
    assert all((d["file"], d["line"]) not in dirty for d in dependents.values())


def test_references_resolve_within_the_region_or_name_a_rejected_resource(small):
    out, manifest = small
    truncated = {(d["file"], d["line"]) for d in manifest["dirty"]["records"] if d["kind"] == "truncated"}
    rejected = {d["key"] for d in manifest["dirty"]["records"] if d["expect"] == "reject" and
                d["file"].startswith("fhir/")}
    dependents = {d["key"]: d for d in manifest["dirty"]["dependents"]}
    for region, rows in _extracts(out):
        ids, refs = set(), []
        for rel, n, raw in rows:
            if (rel, n) in truncated:
                continue  # the key is in the manifest
            res = json.loads(raw)
            key = f"{res['resourceType']}/{res['id']}"
            ids.add(key)
            refs += [(key, target) for target in REFERENCE.findall(raw.decode("utf-8"))]
        named_rejected = {}
        for key, target in refs:
            assert target in ids | rejected, f"{region}: {key} -> {target} is not in the region's extract"
            if target in rejected or target in dependents:
                named_rejected.setdefault(key, target)
        # the resources naming a rejected one are exactly the listed dependents (transitively)
        listed = {k for k, d in dependents.items() if d["file"].startswith(f"fhir/{region}/")}
        assert set(named_rejected) - rejected == listed, region
    for d in dependents.values():
        assert d["of"] in rejected or d["of"] in dependents, d


def test_cabinet_numbers_agree_across_rpps_fhir_and_csd(small):
    out, manifest = small
    truncated = {(d["file"], d["line"]) for d in manifest["dirty"]["records"] if d["kind"] == "truncated"}
    dirty_holders = {d["key"] for d in manifest["dirty"]["records"] if d["file"].startswith("rpps/")}
    rpps = next((out / "rpps").iterdir()).read_text("utf-8").splitlines()
    header = rpps[0].split("|")
    tech_col, old_col = header.index("Identifiant technique de la structure"), \
        header.index("Ancien identifiant de la structure")
    cabinets = {}
    for line in rpps[1:]:
        f = line.split("|")
        if len(f) == len(header) and f[old_col][:1] in ("4", "0") and f[tech_col][:1] in ("R", "C"):
            cabinets[f[old_col]] = f[tech_col]
    assert any(k.startswith("4") for k in cabinets) and any(k.startswith("0") for k in cabinets)
    for old, tech in cabinets.items():
        assert check_id_nat_struct(old) is None, old
        assert tech == ("R" if old[0] == "4" else "C") + old[1:]
        assert check_rang("RPPS" if old[0] == "4" else "ADELI", 11 if old[0] == "4" else 9)(old[1:]) is None, old
    seen_fhir = seen_csd = 0
    for region_dir in sorted((out / "fhir").iterdir()):
        csd = (out / "csd" / f"ror-csd-{region_dir.name}.xml").read_text("utf-8")
        rel = f"fhir/{region_dir.name}/Organization.ndjson"
        for n, raw in enumerate((region_dir / "Organization.ndjson").read_bytes().splitlines(), 1):
            if (rel, n) in truncated:
                continue
            res = json.loads(raw)
            ids = {i.get("system"): i["value"] for i in res["identifier"]}
            idnat = ids.get("urn:oid:1.2.250.1.71.4.2.2", "")
            if idnat[:1] in ("4", "0"):
                rang = ids["https://rppsrang.esante.gouv.fr" if idnat[0] == "4" else "https://adelirang.esante.gouv.fr"]
                assert idnat[1:] == rang
                holder = ("8" + idnat[1:12]) if idnat[0] == "4" else idnat[:10]  # the holder's idNat_PS
                # the RPPS file lists the cabinet with the same numbers (unless the holder's line is dirty)
                assert idnat in cabinets or holder in dirty_holders, idnat
                seen_fhir += 1
                seen_csd += f'code="{idnat}"' in csd
    assert seen_fhir and seen_csd == seen_fhir
