"""Capacity PATCH latency while a regional import runs on the same store: how long the API's writes wait for a feed.

    .venv/bin/python benchmarks/patches_during_import.py DATA --region 11 [--seconds 20] [--interval-ms 50]
                                                         [--database URL] [--batch-size N] [--reload]

``DATA`` is what ``ror generate`` wrote. A server (``ror serve``) runs on a store holding ``benchmarks/capacity.py``'s
places; one client sends a capacity PATCH (the supplier's conditional ``replace`` of a place's bed count) every
``--interval-ms``: first for ``--seconds`` alone, then while ``ror import region`` imports ``DATA/fhir/<region>`` into
the same store; with ``--reload``, the extract is imported once before (not timed), and the import timed is the monthly
reload of the same files. Prints one JSON object: the PATCHes' latency percentiles in both phases, and the import's
time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from capacity import ROOT, capacity, op, path, served  # benchmarks/capacity.py: its store, server and PATCH bodies

PLACES = 200


def patches(client: httpx.Client, until: Callable[[], bool], interval_s: float) -> list[float]:
    """PATCHes, one every ``interval_s`` after the previous answer, until ``until()``: their times in seconds."""
    times, n = [], 0
    while not until():
        body = json.dumps(op("replace", path(), capacity(nb=n % 900 + 1)))
        t0 = time.perf_counter()
        r = client.patch(f"/Location?identifier=1440990034/BENCH-{n % PLACES}", content=body,
                         headers={"Content-Type": "application/fhir+json"})
        times.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise SystemExit(f"PATCH -> {r.status_code}: {r.text[:300]}")
        n += 1
        time.sleep(interval_s)
    return times


def percentiles(times: list[float]) -> dict:
    ordered = sorted(times)

    def ms(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"patches": len(ordered), "p50_ms": ms(0.5), "p95_ms": ms(0.95), "p99_ms": ms(0.99),
            "max_ms": round(1000 * ordered[-1], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="what `ror generate` wrote")
    ap.add_argument("--region", required=True)
    ap.add_argument("--seconds", type=float, default=20, help="of PATCHes alone, before the import")
    ap.add_argument("--interval-ms", type=float, default=50)
    ap.add_argument("--database", default="", help="an empty store (default: a SQLite file in a temporary folder)")
    ap.add_argument("--batch-size", type=int, default=0, help="the import's (default: its own)")
    ap.add_argument("--reload", action="store_true", help="import the extract once before: time its reload")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{tmp}/store.db"
        with served(url, PLACES) as (_, base), httpx.Client(base_url=f"{base}/fhir", timeout=120) as client:
            command = [sys.executable, "-m", "ror.cli.main", "import", "region", "--region", args.region,
                       str(args.data / "fhir" / args.region)]
            if args.batch_size:
                command += ["--batch-size", str(args.batch_size)]
            env = {**os.environ, "ROR_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
            log = Path(tmp) / "import.log"
            if args.reload:
                first = subprocess.run(command, env=env, capture_output=True, text=True)
                if first.returncode != 0:
                    raise SystemExit(f"the first import failed: {(first.stdout + first.stderr)[-2000:]}")
            end = time.perf_counter() + args.seconds
            alone = patches(client, lambda: time.perf_counter() > end, args.interval_ms / 1000)
            with log.open("w") as out:
                t0 = time.perf_counter()
                feed = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
                during = patches(client, lambda: feed.poll() is not None, args.interval_ms / 1000)
                seconds = time.perf_counter() - t0
            if feed.returncode != 0:
                raise SystemExit(f"the import failed: {log.read_text()[-2000:]}")
    print(json.dumps({"database": url.split("://")[0], "region": args.region, "batch_size": args.batch_size or None,
                      "import": "reload" if args.reload else "first",
                      "alone": percentiles(alone), "during_import": percentiles(during),
                      "import_s": round(seconds, 1)}, indent=1))


if __name__ == "__main__":
    main()
