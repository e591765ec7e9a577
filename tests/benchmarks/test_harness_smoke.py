"""CI runs the performance harness at a tiny scale, to prove it still works end to end (issue 7): the
generator, the loader, the API under wrk, the walk, the export, the raw SQL floor, the report. No
figure is asserted: performance lives in benchmarks/RESULTS.md, not in timed tests."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("taskset")),
                                reason="needs wrk and taskset (Debian packages wrk, util-linux; .ci/run installs them)")


def test_quick_harness_runs_and_reports(tmp_path):
    report = tmp_path / "RESULTS.md"
    command = [sys.executable, "benchmarks/run.py", "--quick", "--database", "sqlite", "--output", str(report)]
    p = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    text = report.read_text()
    for section in ("## Machine and run", "## Dataset", "## Load", "no-op reload", "$export", "Raw SQL floor"):
        assert section in text, section


def test_store_api_measures_a_store_loaded_earlier(tmp_path):
    """benchmarks/store_api.py (the national figures without reloading) runs on a loaded store and leaves it."""
    db = tmp_path / "store.db"
    env = {"ROR_DATABASE_URL": f"sqlite:///{db}", "PATH": "/usr/bin:/bin"}
    def ror(*words):
        p = subprocess.run([str(Path(sys.executable).parent / "ror"), *words], cwd=ROOT, capture_output=True,
                           text=True, timeout=600, env=env)
        assert p.returncode == 0, (words[0], p.stdout[-2000:], p.stderr[-2000:])
    ror("generate", "--scale", "1000", "--seed", "1", str(tmp_path / "data"))
    ror("load", "--keep-last-updated", *map(str, sorted((tmp_path / "data").glob("fhir/*/*.ndjson"))))
    def stored() -> list[tuple]:
        with sqlite3.connect(db) as c:
            return c.execute("SELECT rtype, rid, version FROM resource ORDER BY pk").fetchall()
    before = stored()
    assert len(before) > 900
    output = tmp_path / "api.json"
    p = subprocess.run([sys.executable, "benchmarks/store_api.py", str(db), "--seconds", "1", "--repeat", "1",
                        "--walk-pages", "1", "--scenarios", "read,delta", "--output", str(output)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    results = json.loads(output.read_text())
    assert set(results["scenarios"]) == {"read", "delta"} and results["walk"]["pages"] == 1
    assert results["scenarios"]["delta"]["c8"]["non2xx"] == 0
    assert stored() == before  # measured, not changed


def test_capacity_harness_repeats_its_patch_runs():
    """benchmarks/capacity.py: repeated PATCH runs on one server, the batches, the next-request visibility."""
    p = subprocess.run([sys.executable, "benchmarks/capacity.py", "--places", "20", "--seconds", "1", "--repeat", "2",
                        "--batch-clients", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    result = json.loads(p.stdout)
    assert len(result["runs_patches_per_s"]) == len(result["runs_server_cpu_ms_per_patch"]) == 2
    assert result["patches_per_s"] in result["runs_patches_per_s"] and result["errors"] == 0
    assert result["batch_patches_per_s"] > 0 and result["visible_at_next_request"] == "50/50"


def test_pipeline_harness_imports_the_feeds_then_reloads_them_and_the_reloads_change_nothing(tmp_path):
    """benchmarks/pipeline.py: FINESS, RPPS and a region into an empty store, then twice again; it fails if a reload
    changed anything."""
    data = tmp_path / "data"
    p = subprocess.run([str(Path(sys.executable).parent / "ror"), "generate", "--scale", "800", "--seed", "2",
                        "--regions", "84", "--dirty", "0", str(data)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    report = tmp_path / "pipeline.md"
    p = subprocess.run([sys.executable, "benchmarks/pipeline.py", str(data), "--database",
                        f"sqlite:///{tmp_path / 'store.db'}", "--output", str(report)], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in report.read_text().splitlines()}
    assert set(rows) >= {("FINESS", "first"), ("RPPS", "first"), ("region 84", "first"), ("**all**", "reload 1"),
                         ("**all**", "reload 2")}
    created_column = 8  # | step | pass | records | records/s | wall | CPU | RSS | created | …
    assert rows[("region 84", "first")].split("|")[created_column].strip() != "0"
    assert rows[("**all**", "reload 1")].split("|")[created_column].strip() == "0"
    assert rows[("**all**", "reload 2")].split("|")[created_column].strip() == "0"


def test_patches_during_import_harness_times_patches_alone_then_during_an_import(tmp_path):
    """benchmarks/patches_during_import.py: PATCHes alone, then while a region's extract is imported into the store."""
    data = tmp_path / "data"
    p = subprocess.run([str(Path(sys.executable).parent / "ror"), "generate", "--scale", "800", "--seed", "2",
                        "--regions", "84", "--dirty", "0", str(data)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    for extra, imported in (([], "first"), (["--reload"], "reload")):
        p = subprocess.run([sys.executable, "benchmarks/patches_during_import.py", str(data), "--region", "84",
                            "--seconds", "1", *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
        result = json.loads(p.stdout)
        assert result["import"] == imported
        assert result["alone"]["patches"] > 5 and result["during_import"]["patches"] > 0
        assert result["during_import"]["max_ms"] >= result["during_import"]["p50_ms"] > 0 and result["import_s"] > 0
