"""The API scenarios of benchmarks/run.py on a store loaded earlier (a SQLite file or a PostgreSQL database): the
national scale, whose first load takes most of an hour here, measured again without reloading it.

    .venv/bin/python benchmarks/store_api.py DATABASE_FILE|postgresql://… [--scenarios near,delta,…]
                                             [--walk-pages 150] [--seconds 3] [--repeat 3] [--output results.json]

Same request paths (``run.scenarios``, built from the store), server (``run.api_server``: uvicorn, one worker
pinned to core 0), load generator (``run.timed``: a warm-up pass, then wrk over 1 and 8 connections, medians
of the repeats) and walk (``run.walk``, its first ``--walk-pages`` pages) as the harness; then the server's
memory. Prints one line per figure and writes them all as JSON. The store is only read.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import run


class Store(run.Db):
    """A store loaded earlier: never dropped (``run.Db`` starts from an empty one)."""

    def __init__(self, target: str):
        if target.startswith("postgresql://"):
            self.kind, self.url = "postgresql", target
        else:
            self.path = Path(target).resolve()
            self.kind, self.url = "sqlite", f"sqlite:///{self.path}"

    def drop(self):
        raise RuntimeError("a store measured by store_api.py is never dropped")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("database", help="a SQLite file or a postgresql:// URL")
    ap.add_argument("--scenarios", default="", help="comma-separated (default: all of run.scenarios)")
    ap.add_argument("--walk-pages", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()
    store = Store(args.database)
    os.sched_setaffinity(0, {int(run.CLIENT_CORE)})
    paths = run.scenarios(store)
    wanted = [s for s in args.scenarios.split(",") if s] or list(paths)
    out: dict = {"machine": run.machine(), "paths": {k: len(v) for k, v in paths.items()}, "scenarios": {}}
    with store.connect() as c:
        offers = store.q(c, "SELECT count(*) FROM resource WHERE rtype = 'HealthcareService'")[0][0]
    server = run.api_server(store.url)
    try:
        with tempfile.TemporaryDirectory() as t:
            for name in wanted:
                out["scenarios"][name] = s = run.timed(server, paths[name], args, Path(t), name)
                for c in (1, 8):
                    f = s[f"c{c}"]
                    print(f"{name}, {c} conn: p50 {run.ms(f['p50_us'])} / p95 {run.ms(f['p95_us'])} ms, "
                          f"{run.fmt(f['rps'])} req/s, {run.ms(f['cpu_us_per_req'])} ms CPU, load {f['loadavg']}")
        if args.walk_pages:
            out["walk"] = w = run.walk(server.base, offers, args.walk_pages)
            print(f"walk: {w['pages']} pages, {w['ms_per_page']} ms a page, "
                  f"{w['ms_per_page'] * (offers / 200) / 60000:.1f} min extrapolated to {offers:,} offers")
        out["server_memory"] = server.vm()
        print(f"server memory: {out['server_memory']}")
    finally:
        server.stop()
    output = args.output or (store.path.with_suffix(".api.json") if store.kind == "sqlite" else Path("store.api.json"))
    output.write_text(json.dumps(out, indent=1, default=str))
    print(f"-> {output}")


if __name__ == "__main__":
    main()
