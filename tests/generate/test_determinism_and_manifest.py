"""Same seed, same bytes (whatever the number of processes); the manifest tells the truth about the files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ror.generate.nos import Nos
from ror.generate.runner import NATIONAL_RESOURCES, generate, plan


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_whatever_the_process_count(tmp_path):
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    generate(one, "1500", seed=5, regions=["04", "52"], jobs=1, dirty=0.02)
    generate(two, "1500", seed=5, regions=["04", "52"], jobs=2, dirty=0.02)
    generate(other, "1500", seed=6, regions=["04", "52"], jobs=1, dirty=0.02)
    first, second = _files(one), _files(two)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    assert _files(other)["manifest.json"] != first["manifest.json"]


def test_dirty_share_does_not_change_the_clean_data(tmp_path):
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    generate(clean, "800", seed=3, regions=["52"], jobs=1, dirty=0.0)
    generate(dirty, "800", seed=3, regions=["52"], jobs=1, dirty=0.05)
    a, b = _files(clean), _files(dirty)
    records = json.loads(b["manifest.json"])["dirty"]["records"]
    assert json.loads(a["manifest.json"])["dirty"]["count"] == 0 and records
    changed = {(r["file"], r["line"]) for r in records}
    for name in a:
        if name == "manifest.json":
            continue
        lines_a, lines_b = a[name].splitlines(), b[name].splitlines()
        assert len(lines_a) == len(lines_b), name
        differing = {(name, i) for i, (x, y) in enumerate(zip(lines_a, lines_b, strict=True), 1) if x != y}
        assert differing <= changed, (name, sorted(differing - changed)[:3])


def test_manifest_matches_the_files(dataset, manifest, fhir):
    on_disk = {p.relative_to(dataset).as_posix(): p for p in dataset.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == set(on_disk) - {"manifest.json"}
    for name, info in manifest["files"].items():
        data = on_disk[name].read_bytes()
        assert info == {"bytes": len(data), "lines": data.count(b"\n"), "sha256": hashlib.sha256(data).hexdigest()}
    totals: dict[str, int] = {}
    for region, types in manifest["regions"].items():
        for rtype, count in types["resources"].items():
            assert manifest["files"][f"fhir/{region}/{rtype}.ndjson"]["lines"] == count
            totals[rtype] = totals.get(rtype, 0) + count
    assert {k: v for k, v in manifest["resources"].items() if k != "total"} == totals
    assert manifest["resources"]["total"] == sum(totals.values())
    capacities = sum(1 for types in fhir.values() for loc in types["Location"] for e in loc["extension"]
                     if e["url"].endswith("/ror-location-supported-capacity"))
    assert manifest["capacity_records"] == capacities
    finess = next(p for n, p in on_disk.items() if n.startswith("finess/")).read_bytes().splitlines()
    for record, count in manifest["finess"].items():
        assert sum(1 for line in finess if line.startswith(record.encode() + b";")) == count
    rpps = manifest["files"][next(n for n in on_disk if n.startswith("rpps/"))]
    assert rpps["lines"] == manifest["rpps"]["lines"] + 1  # the header row
    assert manifest["seed"] == 11 and manifest["generator"]["version"]


def test_size_follows_the_scale(manifest):
    assert 0.9 * 5000 <= manifest["resources"]["total"] <= 1.15 * 5000


def test_scale_plans():
    nos = Nos()
    national = plan("national", None, nos)
    assert len(national.regions) == 18 and abs(national.total - NATIONAL_RESOURCES) < 20
    assert national.regions["11"] > national.regions["52"] > national.regions["94"]  # by population
    region = plan("region", None, nos)
    assert region.regions == {"52": NATIONAL_RESOURCES // 17}
    small = plan("1000", ["52", "53"], nos)
    assert set(small.regions) == {"52", "53"} and abs(small.total - 1000) <= 1
    for bad in ("0", "-5", "huge"):
        with pytest.raises(ValueError):
            plan(bad, None, nos)
    with pytest.raises(ValueError, match="99"):
        plan("1000", ["99"], nos)
