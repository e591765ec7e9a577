"""One small generated dataset shared by the generator tests: three regions chosen for their projections
(52 Lambert-93, 94 Corsica's 2A/2B FINESS numbers, 04 La Réunion's UTM 40S), with a high dirty share so
that every kind of defect shows up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ror.generate.runner import generate

DATA = Path(__file__).resolve().parent / "data"                         # copied reference files (SOURCES.md)
SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"  # real FINESS and RPPS samples
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"        # the NOS sources, when present
SCALE = "5000"
REGIONS = ["04", "52", "94"]
DIRTY = 0.03


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    generate(out, SCALE, seed=11, regions=REGIONS, jobs=2, dirty=DIRTY)
    return out


@pytest.fixture(scope="session")
def manifest(dataset) -> dict:
    return json.loads((dataset / "manifest.json").read_text("utf-8"))


@pytest.fixture(scope="session")
def dirty_lines(manifest) -> dict[tuple[str, int], dict]:
    return {(d["file"], d["line"]): d for d in manifest["dirty"]["records"]}


def read_ndjson(dataset: Path, dirty_lines: dict) -> dict[str, dict[str, list[dict]]]:
    """region -> type -> parsed resources, skipping the lines the manifest lists as truncated."""
    out: dict[str, dict[str, list[dict]]] = {}
    for region_dir in sorted((dataset / "fhir").iterdir()):
        for path in sorted(region_dir.glob("*.ndjson")):
            rel = path.relative_to(dataset).as_posix()
            resources = []
            for number, line in enumerate(path.read_bytes().splitlines(), 1):
                d = dirty_lines.get((rel, number))
                if d and d["kind"] == "truncated":
                    continue
                resources.append(json.loads(line))
            out.setdefault(region_dir.name, {})[path.stem] = resources
    return out


@pytest.fixture(scope="session")
def fhir(dataset, dirty_lines):
    return read_ndjson(dataset, dirty_lines)
