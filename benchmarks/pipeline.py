"""The national consolidation pipeline, timed feed by feed: FINESS, RPPS, then each regional extract, into one empty
store, then the same files again, ``--reloads`` times (monthly reloads of unchanged sources: nothing may change).

    python benchmarks/pipeline.py DATA [--database sqlite:///var/pipeline.db] [--regions 11,84] [--reloads 2]
                                       [--output F.md]

The first reload is not yet the steady state: a registry's resources that the regions' imports changed after it are
merged once more (their versions moved on since it said them); from the second, every entity repeats what was said
(``ror.feeds.runs``, ``Run._repeats``).

``DATA`` is what ``ror generate`` wrote (its finess/, rpps/ and fhir/<region>/ folders). Each step runs as its own
``ror import`` process, as an operator runs it: wall time, CPU (user + system) and peak resident memory are that
process's own (``os.wait4``); records and outcomes come from the run's report in the store (``feed_run``). The
table is printed (Markdown) and, with ``--output``, written there. Results go to benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from ror.feeds.schema import feed_run
from ror.store.engine import make_engine

ROR = Path(sys.executable).parent / "ror"
OUTCOMES = ("created", "updated", "unchanged", "closed", "rejected", "warnings")


@dataclass
class Step:
    name: str
    words: list[str]  # the ``ror import`` command's words


@dataclass
class Measure:
    step: str
    seconds: float
    cpu: float
    rss_mb: float
    run: dict  # the feed_run row


def steps(data: Path, regions: list[str] | None) -> list[Step]:
    """FINESS, RPPS, then the regions (all of DATA's, or ``regions``), as the feeds must run: registries first."""
    out = [Step("FINESS", ["finess", str(f)]) for f in sorted((data / "finess").iterdir())]
    out += [Step("RPPS", ["rpps", str(f)]) for f in sorted((data / "rpps").iterdir())]
    chosen = regions or sorted(p.name for p in (data / "fhir").iterdir() if p.is_dir())
    out += [Step(f"region {r}", ["region", "--region", r, str(data / "fhir" / r)]) for r in chosen]
    return out


def run_step(step: Step, database: str) -> Measure:
    env = {**os.environ, "ROR_DATABASE_URL": database, "COLUMNS": "200"}
    start = time.perf_counter()
    proc = subprocess.Popen([str(ROR), "import", *step.words], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{step.name} failed:\n{output.decode(errors='replace')[-3000:]}")
    engine = make_engine(database)
    with engine.connect() as conn:
        run = dict(conn.execute(select(feed_run).order_by(feed_run.c.run_id.desc()).limit(1)).mappings().one())
    engine.dispose()
    return Measure(step.name, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, run)


def table(passes: list[list[Measure]]) -> str:
    lines = ["| step | pass | records | records/s | wall s | CPU s | peak RSS MB | "
             + " | ".join(OUTCOMES) + " |", "|---|---|" + "---:|" * (5 + len(OUTCOMES))]
    for n, measures in enumerate(passes, 1):
        label = "first" if n == 1 else f"reload {n - 1}"
        for m in measures:
            records = m.run["records"]
            lines.append(f"| {m.step} | {label} | {records:,} | {records / m.seconds:,.0f} | {m.seconds:.1f} | "
                         f"{m.cpu:.1f} | {m.rss_mb:,.0f} | " + " | ".join(f"{m.run[k]:,}" for k in OUTCOMES) + " |")
        total = sum(m.run["records"] for m in measures)
        wall = sum(m.seconds for m in measures)
        lines.append(f"| **all** | {label} | {total:,} | {total / wall:,.0f} | {wall:.1f} | "
                     f"{sum(m.cpu for m in measures):.1f} | {max(m.rss_mb for m in measures):,.0f} | "
                     + " | ".join(f"{sum(m.run[k] for m in measures):,}" for k in OUTCOMES) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="what `ror generate` wrote")
    ap.add_argument("--database", default="sqlite:///var/pipeline.db", help="an empty store (created if absent)")
    ap.add_argument("--regions", default="", help="comma-separated region codes (default: every one in DATA)")
    ap.add_argument("--reloads", type=int, default=2, help="passes over the same files after the first")
    ap.add_argument("--output", type=Path, help="also write the table there")
    args = ap.parse_args(argv)
    plan = steps(args.data, [r for r in args.regions.split(",") if r] or None)
    passes = []
    for n in range(1, 2 + args.reloads):
        measures = []
        for step in plan:
            measures.append(run_step(step, args.database))
            m = measures[-1]
            print(f"pass {n} {m.step}: {m.run['records']:,} records in {m.seconds:.1f} s, {m.rss_mb:,.0f} MB",
                  flush=True)
        passes.append(measures)
    report = table(passes)
    print(report)
    if args.output:
        args.output.write_text(report)
    changed = sum(m.run["created"] + m.run["updated"] + m.run["closed"] for reload in passes[1:] for m in reload)
    if changed:
        print(f"the reloads changed {changed} resources: they must change nothing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
