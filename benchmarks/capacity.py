"""Bed-availability update throughput: capacity PATCHes per second sustained against a real server
process, and whether the very next search sees each change.

    .venv/bin/python benchmarks/capacity.py [--places 2000] [--seconds 10] [--concurrency 8] [--workers 1]
                                            [--database URL]

The server (uvicorn, ``--workers`` processes) runs in its own process; this process is the load generator
(asyncio + httpx, loopback). Each PATCH is the supplier's conditional ``replace`` of one indicator
of one place (``PATCH /fhir/Location?identifier={idNatStruct}/{id}``) with a new bed count; after
every 50th PATCH the generator immediately searches ``Location?identifier=…&nb-capacity=<new>``
and counts whether the change is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from ror.fhir.files import read_resources  # noqa: E402
from ror.store import bulk  # noqa: E402
from ror.store.engine import make_engine  # noqa: E402
from ror.store.migrate import upgrade  # noqa: E402
from tests.capacity.test_protocol import capacity, op, path  # noqa: E402

FHIR = "application/fhir+json"


def dataset(n: int) -> list[dict]:
    """The hand-built dataset, plus ``n`` copies of its palliative-care place under new identifiers."""
    base = [r for r in read_resources(ROOT / "tests/fixtures/small/bundle.json")]
    place = next(r for r in base if r["id"] == "loc-usp-nord")
    out = list(base)
    for i in range(n):
        p = copy.deepcopy(place)
        p["id"] = f"bench-place-{i}"
        p["identifier"] = [{**p["identifier"][0], "value": f"1440990034/BENCH-{i}"}]
        out.append(p)
    return out


async def run(base: str, places: int, seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    visible = checked = errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=concurrency)) as c:
        async def worker(w: int):
            nonlocal visible, checked, errors, counter
            i = w
            while time.perf_counter() < deadline:
                counter += 1
                value = 10 + counter % 1000
                ident = f"1440990034/BENCH-{i % places}"
                body = json.dumps(op("replace", path(), capacity(nb=value)))
                t0 = time.perf_counter()
                r = await c.patch(f"/Location?identifier={ident}", content=body, headers={"Content-Type": FHIR})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors += 1
                elif counter % 50 == 0:
                    s = await c.get("/Location", params={"identifier": ident, "nb-capacity": str(value)})
                    checked += 1
                    visible += s.json()["total"] == 1
                i += concurrency

        start = time.perf_counter()
        await asyncio.gather(*[worker(w) for w in range(concurrency)])
        elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    return {"patches": len(lat), "errors": errors, "seconds": round(elapsed, 1),
            "patches_per_s": round(len(lat) / elapsed), "p50_ms": round(statistics.median(lat) * 1000, 1),
            "p95_ms": round(lat[int(len(lat) * 0.95)] * 1000, 1),
            "visible_at_next_request": f"{visible}/{checked}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--places", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="API worker processes")
    ap.add_argument("--database", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{tmp}/bench.db"
        engine = make_engine(url)
        upgrade(engine)
        bulk.upsert(engine, dataset(args.places), keep_last_updated=True)
        engine.dispose()
        port = 18000 + os.getpid() % 1000
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "ror.bootstrap:app_factory", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log", "--workers", str(args.workers)],
            env={**os.environ, "ROR_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "src")})
        try:
            for _ in range(100):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            result = asyncio.run(run(f"http://127.0.0.1:{port}/fhir", args.places, args.seconds, args.concurrency))
        finally:
            server.terminate()
            server.wait(10)
    print(json.dumps({"database": url.split("://")[0], "workers": args.workers, "places": args.places + 10,
                      **result}, indent=1))


if __name__ == "__main__":
    main()
