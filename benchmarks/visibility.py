"""Cost of the access-profile rules on searches: profile 1 (sees everything) against the restricted
profiles 0, 2, 3, 5, on a loaded store, in process (FhirService.search, no HTTP).

    .venv/bin/python benchmarks/visibility.py --database sqlite:////tmp/gen/ror.db [--repeat 15]
        [--baseline-src DIR] [--json OUT]

The database must hold a generated dataset (``ror generate --scale 5000 --seed 1 DIR`` then
``ror load --keep-last-updated DIR/fhir/*/*.ndjson``). Each scenario is a list of searches built from
the data; each figure is the median over ``--repeat`` rounds of the time of one search (CPU time of
this process for SQLite, which runs in it; wall time for PostgreSQL), the rounds interleaving the
profiles so that a busy moment of the shared machine hits them all alike.

``--baseline-src DIR`` runs the same measurement a second time, in a child process whose ``ror``
package is imported from ``DIR`` (a copy of ``src/`` with the previous search/visibility code), round
by round alternating with this one: before and after side by side, in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROFILES = (1, 2, 3, 0, 5)
INCLUDES = [("_include", "HealthcareService:location"), ("_include", "HealthcareService:organization"),
            ("_revinclude", "PractitionerRole:service"), ("_include:iterate", "PractitionerRole:practitioner")]


def scenarios(engine) -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    from sqlalchemy import text
    with engine.connect() as c:
        specialties = [r[0] for r in c.execute(text(
            "SELECT code FROM idx_token WHERE param = 'HealthcareService.specialty' GROUP BY code "
            "ORDER BY count(*) DESC, code LIMIT 5"))]
        communes = [r[0] for r in c.execute(text(
            "SELECT code FROM idx_token WHERE param = 'Location.commune-cog' GROUP BY code "
            "ORDER BY count(*) DESC, code LIMIT 5"))]
        stamps = sorted(str(r[0]) for r in c.execute(text(
            "SELECT last_updated FROM resource WHERE rtype = 'HealthcareService'")))
    date = stamps[len(stamps) // 2][:10]
    return {
        "offers, first page (50) + total": [("HealthcareService", [("_count", "50")])],
        "offers by specialty": [("HealthcareService", [("specialty", s)]) for s in specialties],
        "places by commune": [("Location", [("commune-cog", c)]) for c in communes],
        "offers by place commune (chain)": [("HealthcareService", [("location.commune-cog", c)]) for c in communes],
        "roles, first page (50) + total": [("PractitionerRole", [("_count", "50")])],
        "professionals, first page (50) + total": [("Practitioner", [("_count", "50")])],
        "capacity filter (chain)": [("HealthcareService", [("location.capacity-status", "02"),
                                                           ("location.nb-capacity", "gt0"), ("_count", "50")])],
        "delta sync, 200 offers + include set": [("HealthcareService", [("_lastUpdated", f"ge{date}"),
                                                                        ("_count", "200"), *INCLUDES])],
    }


def measure(url: str, repeat: int, before_round=None, after_round=None) -> dict:
    from ror.fhir.rights import LocalCaller
    from ror.fhir.service import FhirService
    from ror.settings import Settings
    from ror.store.engine import make_engine
    engine = make_engine(url)
    svc = FhirService(engine, Settings(database_url=url))
    clock = time.process_time if url.startswith("sqlite") else time.perf_counter
    cases = scenarios(engine)
    callers = {p: LocalCaller(app_id=f"bench-p{p}", profile=p, write_all=False, write_establishments=frozenset())
               for p in PROFILES}
    times: dict[str, dict[int, list[float]]] = {name: {p: [] for p in PROFILES} for name in cases}
    for searches in cases.values():  # warm-up (and a check that every search answers)
        for p in PROFILES:
            for rtype, pairs in searches:
                svc.search(rtype, pairs, "http://bench/fhir", caller=callers[p])
    for round_no in range(repeat):
        if before_round is not None:  # alternate with the baseline process, round by round
            before_round(round_no)
        for name, searches in cases.items():
            for p in PROFILES:
                t0 = clock()
                for rtype, pairs in searches:
                    svc.search(rtype, pairs, "http://bench/fhir", caller=callers[p])
                times[name][p].append((clock() - t0) / len(searches))
        if after_round is not None:
            after_round(round_no)
    engine.dispose()
    return {name: {p: statistics.median(v) * 1000 for p, v in by.items()} for name, by in times.items()}


def table(results: dict[str, dict], labels: list[str]) -> str:
    head = "| scenario | " + " | ".join(f"P{p} {lab}" for p in PROFILES for lab in labels) + " |"
    lines = [head, "|---|" + "---:|" * (len(PROFILES) * len(labels))]
    first = results[labels[0]]
    for name in first:
        cells = [f"{results[lab][name][p]:.1f}" for p in PROFILES for lab in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database", required=True)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--baseline-src", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # the baseline: each round when the parent says so
        def wait(_round):
            sys.stdin.readline()

        def done(_round):
            sys.stdout.write("done\n")
            sys.stdout.flush()
        out = measure(args.database, args.repeat, wait, done)
        sys.stdout.write("RESULT " + json.dumps(out) + "\n")
        return
    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
    if args.baseline_src is None:
        results = {"now": measure(args.database, args.repeat)}
    else:
        env = {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())}
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--database", args.database,
                                  "--repeat", str(args.repeat), "--child"],
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")

        def baseline_round(_round):  # the baseline's round first, then ours: never both at once
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "done"
        now = measure(args.database, args.repeat, baseline_round)
        line = child.stdout.readline()
        child.wait(60)
        before = {k: {int(p): v for p, v in by.items()} for k, by in json.loads(line[7:]).items()}
        results = {"before": before, "after": now}
    print(f"load average at end: {os.getloadavg()}", file=sys.stderr)
    print(table(results, list(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
