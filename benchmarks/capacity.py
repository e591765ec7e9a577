"""Bed-availability update throughput: capacity PATCHes per second sustained against a real server
process, and whether the very next search sees each change.

    .venv/bin/python benchmarks/capacity.py [--places 2000] [--seconds 10] [--repeat 3] [--concurrency 8]
                                            [--workers 1] [--database URL]

The server (uvicorn, ``--workers`` processes) runs in its own process; the load comes from ``wrk``
(benchmarks/paths.lua, C, so the load generator takes little of the 2 cores). Each PATCH is the
supplier's conditional ``replace`` of one indicator of one place
(``PATCH /fhir/Location?identifier={idNatStruct}/{id}``) with a new bed count, cycling over the places.
Then bed-management systems' batches: ``--batch-clients`` systems (default 2) each sending transaction
Bundles of 200 such PATCHes on its own places, one after the other (``batch_patches_per_s``, all
together). Last, sequentially, 50 PATCHes are each followed at once by
``Location?identifier=…&nb-capacity=<new>``: the change must be visible at the very next request.
The server's CPU time (user + system of its processes, from /proc) is reported per PATCH for both phases,
with the load average: the machine has 2 cores and is shared, so a rate alone says little.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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


OFFERS_PER_PLACE = 2  # national data: 855,319 offer-place references for 404,000 places


def dataset(n: int) -> list[dict]:
    """The hand-built dataset, plus ``n`` copies of its palliative-care place under new identifiers, each listed by
    ``OFFERS_PER_PLACE`` copies of its offer (whose copies of the place's rows each PATCH updates)."""
    base = [r for r in read_resources(ROOT / "tests/fixtures/small/bundle.json")]
    place = next(r for r in base if r["id"] == "loc-usp-nord")
    offer = next(r for r in base if r["id"] == "hs-usp")
    out = list(base)
    for i in range(n):
        p = copy.deepcopy(place)
        p["id"] = f"bench-place-{i}"
        p["identifier"] = [{**p["identifier"][0], "value": f"1440990034/BENCH-{i}"}]
        out.append(p)
        for k in range(OFFERS_PER_PLACE):
            o = copy.deepcopy(offer)
            o["id"] = f"bench-offer-{i}-{k}"
            o["identifier"] = [{**o["identifier"][0], "value": f"{o['identifier'][0]['value']}-{i}-{k}"}]
            o["location"] = [{"reference": f"Location/{p['id']}"}]
            out.append(o)
    return out


@contextmanager
def served(url: str, places: int, workers: int = 1) -> Iterator[tuple[subprocess.Popen, str]]:
    """A server (``ror serve``, ``workers`` processes) on a new store at ``url`` holding ``dataset(places)``, once it
    answers: its process and base URL."""
    engine = make_engine(url)
    upgrade(engine)
    bulk.upsert(engine, dataset(places), keep_last_updated=True)
    engine.dispose()
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "ror.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--workers", str(workers)],
        env={**os.environ, "ROR_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "src")})
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def server_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by the server process ``pid`` and by each of its worker processes
    (with their own children), by pid."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            stats[int(d.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(d.name))
    clock = os.sysconf("SC_CLK_TCK")

    def used(p: int) -> float:
        return (int(stats[p][11]) + int(stats[p][12])) / clock if p in stats else 0.0  # utime, stime (14, 15)

    def tree(root: int) -> float:
        total, todo = 0.0, [root]
        while todo:
            p = todo.pop()
            total += used(p)
            todo += children.get(p, [])
        return total

    return {pid: used(pid)} | {w: tree(w) for w in children.get(pid, [])}


def measured(pid: int, phase) -> dict:
    """``phase()``'s result (with its number of ``patches``) and the server's CPU time for it: per PATCH, and the
    share each worker took (the kernel hands wrk's connections to the workers unevenly, 7 and 1 or 4 and 4)."""
    before = server_cpu_s(pid)
    result = phase()
    spent = {p: t - before.get(p, 0.0) for p, t in server_cpu_s(pid).items()}
    total = sum(spent.values())
    return result | {"server_cpu_ms_per_patch": round(total * 1000 / max(result["patches"], 1), 2),
                     "worker_cpu_shares": sorted((round(t / max(total, 1e-9), 2) for p, t in spent.items()
                                                  if p != pid), reverse=True)}


def throughput(base: str, places: int, seconds: float, concurrency: int, tmp: Path) -> dict:
    body = json.dumps(op("replace", path(), capacity(nb=1))).replace('"valueInteger": 1', '"valueInteger": @NB@')
    assert "@NB@" in body
    listing = tmp / "patches.txt"
    listing.write_text("".join(f"PATCH /fhir/Location?identifier=1440990034/BENCH-{i}\t{body}\n"
                               for i in range(places)))
    p = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{round(seconds)}s", "--timeout", "30s",
                        "-s", str(ROOT / "benchmarks/paths.lua"), base, "--", str(listing)],
                       capture_output=True, text=True, timeout=seconds + 120)
    line = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if not line:
        raise SystemExit(f"wrk failed: {p.stdout}\n{p.stderr}")
    w = json.loads(line[-1])
    return {"patches": w["requests"], "errors": w["non2xx"] + w["socket_errors"], "seconds": round(w["seconds"], 1),
            "patches_per_s": round(w["rps"]), "p50_ms": round(w["p50_us"] / 1000, 1),
            "p95_ms": round(w["p95_us"] / 1000, 1), "p99_ms": round(w["p99_us"] / 1000, 1)}


def batches(base: str, places: int, seconds: float, size: int, clients: int) -> dict:
    """Bed-management systems' batches: ``clients`` systems (each its own places, as different establishments'
    systems) sending transaction Bundles of ``size`` conditional PATCHes one after the other for ``seconds``:
    PATCH entries applied per second, all systems together, and the median time of one Bundle."""
    deadline = time.perf_counter() + seconds
    share = places // clients

    def system(k: int) -> tuple[int, list[float]]:
        times, n = [], 0
        with httpx.Client(base_url=f"{base}/fhir", timeout=120) as c:
            while time.perf_counter() < deadline:
                entries = [{"resource": op("replace", path(), capacity(nb=10 + (n + i) % 1000)),
                            "request": {"method": "PATCH",
                                        "url": f"Location?identifier=1440990034/BENCH-{k * share + (n + i) % share}"}}
                           for i in range(size)]
                body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
                t0 = time.perf_counter()
                r = c.post("", content=body, headers={"Content-Type": FHIR})
                times.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise SystemExit(f"transaction -> {r.status_code}: {r.text[:300]}")
                n += size
        return n, times

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(system, range(clients)))
    wall = time.perf_counter() - t0
    return {"batch_size": size, "batch_clients": clients, "patches": sum(n for n, _ in done),
            "batch_patches_per_s": round(sum(n for n, _ in done) / wall),
            "batch_median_s": round(statistics.median(t for _, times in done for t in times), 2)}


def visibility(base: str, places: int, checks: int = 50) -> dict:
    visible = 0
    delays = []
    with httpx.Client(base_url=f"{base}/fhir", timeout=30) as c:
        for k in range(checks):
            ident, value = f"1440990034/BENCH-{(k * 37) % places}", 2000 + k
            r = c.patch(f"/Location?identifier={ident}", content=json.dumps(op("replace", path(), capacity(nb=value))),
                        headers={"Content-Type": FHIR})
            t0 = time.perf_counter()
            s = c.get("/Location", params={"identifier": ident, "nb-capacity": str(value)})
            delays.append(time.perf_counter() - t0)
            visible += r.status_code == 200 and s.json()["total"] == 1
    return {"visible_at_next_request": f"{visible}/{checks}",
            "next_search_ms_median": round(statistics.median(delays) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--places", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="API worker processes")
    ap.add_argument("--repeat", type=int, default=3, help="PATCH runs of --seconds each (median reported)")
    ap.add_argument("--database", default="")
    ap.add_argument("--batch-clients", type=int, default=2, help="bed-management systems sending Bundles at once")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{tmp}/bench.db"
        with served(url, args.places, args.workers) as (server, base):
            # Warm-up: each worker's first writes load the profiles and NOS tables (~1 s).
            throughput(base, args.places, 3, args.concurrency, Path(tmp))
            load = os.getloadavg()[0]
            runs = [measured(server.pid, lambda: throughput(base, args.places, args.seconds, args.concurrency,
                                                            Path(tmp))) for _ in range(args.repeat)]
            # The run of median rate, with every run's rate and CPU: the speed of this virtual machine's cores
            # drifts by ±30 % within minutes (docs/capacity.md, session 7), so one run says little.
            result = sorted(runs, key=lambda r: r["patches_per_s"])[len(runs) // 2] | {
                "runs_patches_per_s": [r["patches_per_s"] for r in runs],
                "runs_server_cpu_ms_per_patch": [r["server_cpu_ms_per_patch"] for r in runs]}
            batch = measured(server.pid, lambda: batches(base, args.places, args.seconds, 200, args.batch_clients))
            result |= {k: v for k, v in batch.items() if k not in ("patches", "server_cpu_ms_per_patch",
                                                                    "worker_cpu_shares")}
            result["batch_server_cpu_ms_per_patch"] = batch["server_cpu_ms_per_patch"]
            result["load_average"] = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
            result |= visibility(base, args.places)
    print(json.dumps({"database": url.split("://")[0], "workers": args.workers, "places": args.places + 10,
                      **result}, indent=1))


if __name__ == "__main__":
    main()
