"""CI runs the performance harness at a tiny scale, to prove it still works end to end (issue 7): the
generator, the loader, the API under wrk, the walk, the export, the raw SQL floor, the report. No
figure is asserted: performance lives in benchmarks/RESULTS.md, not in timed tests."""

from __future__ import annotations

import shutil
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
