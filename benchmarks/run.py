"""National-scale performance harness (issue 7): load, reload, API latency and throughput, full walk, raw SQL floor.

    .venv/bin/python benchmarks/run.py [--resources N] [--database sqlite|postgresql|both] [--quick] [--no-peer]
                                       [--seconds S] [--repeat R] [--seed S] [--output FILE]

Data: ``ror generate`` (src/ror/generate) writes regional FHIR NDJSON extracts of about N resources (no dirty
records), loaded with ``ror load --keep-last-updated`` (the bulk path) in a separate process pinned to core 0.
The API server (uvicorn, one worker, ``ror.bootstrap:app_factory``) runs pinned to core 0; ``wrk`` (one thread)
and this process are pinned to core 1. Each wrk measurement lasts ``--seconds`` and is repeated ``--repeat``
times; the figures are the medians of the repeats. ``--quick`` (tiny scale, 1 s, one repeat) is what CI can run.
The side-by-side peer (benchmarks/peer: @medplum/fhir-router's in-memory repository under Node) loads the same
files and is checked and timed on the same request paths, pinned like our server (off with --quick or --no-peer).
Results go to benchmarks/RESULTS.md (``--quick``: a temporary file unless ``--output`` is given).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

LIVE_TX = 2**62
PG_ADMIN = "postgresql://ror:ror@127.0.0.1:5432/postgres"
FINESS = "https://finess.esante.gouv.fr"
INCLUDES = ("_include=HealthcareService:organization&_include:iterate=Organization:partof"
            "&_include=HealthcareService:location&_revinclude=PractitionerRole:service"
            "&_include=PractitionerRole:practitioner")
SERVER_CORE, CLIENT_CORE = "0", "1"
PEER = ROOT / "benchmarks/peer"
PEER_SAMPLE = 10  # request paths per scenario whose peer answer is compared with ours
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
# The API as the product serves it (``ror serve``: uvicorn with ror.api.server's options), from this checkout's src.
SERVE = [sys.executable, "-m", "ror.cli.main", "serve", "--host", "127.0.0.1", "--log-level", "warning"]

LOADER = r"""
import atexit, resource, sys
atexit.register(lambda: print("BENCH-MAXRSS-KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))
from ror.cli.main import app
sys.argv = ["ror", "load", "--keep-last-updated", *sys.argv[1:]]
app()
"""


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# -- machine ---------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "free_g": free, "python": platform.python_version(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "loadavg": [os.getloadavg()]}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- dataset ---------------------------------------------------------------------------------------

def dataset(workdir: Path, resources: int, seed: int) -> tuple[list[Path], dict]:
    out = workdir / f"data-{resources}-{seed}"
    if not (out / "manifest.json").exists():
        from datetime import date

        from ror.generate.runner import generate
        log(f"generating about {resources:,} resources (seed {seed}) into {out}")
        generate(out, str(resources), seed, None, 2, 0.0, date(2026, 11, 2))
    manifest = json.loads((out / "manifest.json").read_text())
    files = sorted((out / "fhir").glob("*/*.ndjson"))
    return files, manifest


# -- database --------------------------------------------------------------------------------------

class Db:
    def __init__(self, kind: str, workdir: Path):
        self.kind = kind
        if kind == "sqlite":
            self.path = workdir / "bench.db"
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            self.url = f"sqlite:///{self.path}"
        else:
            import psycopg
            self.name = f"ror_bench_{os.getpid()}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {self.name}")
                c.execute(f"CREATE DATABASE {self.name}")
            self.url = f"postgresql://ror:ror@127.0.0.1:5432/{self.name}"

    def connect(self):
        if self.kind == "sqlite":
            return sqlite3.connect(self.path)
        import psycopg
        return psycopg.connect(self.url, autocommit=True)

    def q(self, conn, sql: str, params: tuple = ()) -> list[tuple]:
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        cur = conn.execute(sql, params)
        return cur.fetchall()

    def drop(self):
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
        else:
            import psycopg
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def load(db: Db, files: list[Path]) -> dict:
    t0 = time.perf_counter()
    # Both cores: the loader parses and indexes in a worker process while it writes (store/bulk.py).
    p = subprocess.run(["taskset", "-c", f"{SERVER_CORE},{CLIENT_CORE}", sys.executable, "-c", LOADER,
                        *map(str, files)],
                       env={**ENV, "ROR_DATABASE_URL": db.url}, capture_output=True, text=True, timeout=7200)
    seconds = time.perf_counter() - t0
    text = re.sub(r"\s+", " ", p.stdout + p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"load failed ({p.returncode}): {text[-2000:]}")
    m = re.search(r"created (\d+), updated (\d+), unchanged (\d+), rejected (\d+)", text)
    counts = dict(zip(("created", "updated", "unchanged", "rejected"), map(int, m.groups()), strict=True))
    rss = int(re.search(r"BENCH-MAXRSS-KB (\d+)", text).group(1))
    n = sum(counts[k] for k in ("created", "updated", "unchanged"))
    return {**counts, "resources": n, "seconds": round(seconds, 2), "per_s": round(n / seconds),
            "peak_rss_mb": round(rss / 1024), "loadavg": loadavg()}


# -- scenarios -------------------------------------------------------------------------------------

def spread(rows: list, n: int) -> list:
    if len(rows) <= n:
        return rows
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]


def tok(system: str, code: str) -> str:
    return quote(f"{system}|{code}", safe="")


def near_triples(db: Db, c, wanted: int = 100) -> list[tuple]:
    """(specialty system, code, commune) of offers at places with available beds, each found by indexed
    look-ups from a sample of such places: one join over all of them did not finish at national scale."""
    places = [r[0] for r in db.q(c, f"SELECT pk FROM idx_token WHERE param = 'Location.capacity-status' "
                                    f"AND code = '02' AND until_tx = {LIVE_TX} ORDER BY pk")]
    out: set[tuple] = set()
    for pk in spread(places, wanted * 5):
        cog = db.q(c, f"SELECT code FROM idx_token WHERE pk = ? AND param = 'Location.commune-cog' "
                      f"AND until_tx = {LIVE_TX}", (pk,))
        beds = db.q(c, f"SELECT 1 FROM idx_number WHERE pk = ? AND param = 'Location.nb-capacity' AND value > 0 "
                       f"AND until_tx = {LIVE_TX}", (pk,))
        if not cog or not beds:
            continue
        out |= {(system, code, cog[0][0]) for system, code in db.q(c, f"""
            SELECT sp.system, sp.code FROM resource l
            JOIN idx_ref r ON r.param = 'HealthcareService.location' AND r.target_id = l.rid AND r.until_tx = {LIVE_TX}
            JOIN idx_token sp ON sp.pk = r.pk AND sp.param = 'HealthcareService.specialty' AND sp.until_tx = {LIVE_TX}
            WHERE l.pk = ? ORDER BY sp.system, sp.code LIMIT 1""", (pk,))}
        if len(out) >= wanted:
            break
    return sorted(out, key=lambda t: (t[2], t[1]))


def scenarios(db: Db) -> dict[str, list[str]]:
    """Request paths per scenario, taken from the loaded data so that searches match something."""
    with db.connect() as c:
        ids = [r[0] for r in db.q(c, "SELECT rid FROM resource WHERE rtype='HealthcareService' ORDER BY pk")]
        near = near_triples(db, c)
        stamps = sorted(r[0] for r in db.q(c, "SELECT last_updated FROM resource WHERE rtype='HealthcareService'"))
        egs = [r[0] for r in db.q(c, f"""
            SELECT t.code FROM idx_token t
            WHERE t.param = 'Organization.identifier' AND t.system = ? AND t.until_tx = {LIVE_TX}
            AND t.pk IN (SELECT pk FROM idx_ref WHERE param = 'Organization.partof' AND until_tx = {LIVE_TX})
            ORDER BY t.code""", (FINESS,))]  # a join: nested loops over both sets on SQLite (no statistics)
        specialties = db.q(c, f"""
            SELECT system, code FROM idx_token WHERE param = 'HealthcareService.specialty' AND until_tx = {LIVE_TX}
            GROUP BY system, code ORDER BY count(*) DESC, code""")
        names = sorted({r[0] for r in db.q(c, f"""
            SELECT norm FROM idx_string WHERE param = 'HealthcareService.name' AND until_tx = {LIVE_TX}""")})
        identifiers = [r[0] for r in db.q(c, f"""
            SELECT code FROM idx_token WHERE param = 'HealthcareService.identifier' AND until_tx = {LIVE_TX}
            ORDER BY code""")]
    stamps = [str(s) for s in stamps]
    dates = sorted({stamps[int(len(stamps) * f / 100)][:10] for f in range(10, 61, 5)})
    prefixes = sorted({" ".join(n.split()[:2])[:14].strip() for n in names})
    pairs = [(specialties[i], specialties[(i + 1 + i * 3) % len(specialties)])
             for i in range(min(40, len(specialties)))]
    return {
        "read": [f"/fhir/HealthcareService/{quote(i)}" for i in spread(ids, 500)],
        "near": [f"/fhir/HealthcareService?specialty={tok(s, c)}"
                 f"&location.near-insee-code={quote(cog + '|15|km', safe='')}&location.capacity-status=02"
                 "&location.nb-capacity=gt0" for s, c, cog in spread(near, 100)],
        "delta": [f"/fhir/HealthcareService?_lastUpdated=ge{d}&_count=200&{INCLUDES}" for d in dates],
        "above": [f"/fhir/HealthcareService?organization.identifier:above={tok(FINESS, e)}" for e in spread(egs, 100)],
        "filter": ["/fhir/HealthcareService?_filter="
                   + quote(f"specialty eq {a[0]}|{a[1]} or specialty eq {b[0]}|{b[1]}", safe="") for a, b in pairs],
        "name": [f"/fhir/HealthcareService?name={quote(p, safe='')}" for p in spread(prefixes, 100)],
        "identifier": [f"/fhir/HealthcareService?identifier={quote(v, safe='')}" for v in spread(identifiers, 100)],
    }


def peer_probes(db: Db) -> dict[str, list[str]]:
    """Shapes the peer is checked on (issue 7 lists them among its wrong answers) that the harness does not time."""
    with db.connect() as c:
        roles = db.q(c, f"""SELECT DISTINCT system, code FROM idx_token
                            WHERE param = 'PractitionerRole.role' AND until_tx = {LIVE_TX} ORDER BY code""")
    return {"has": [f"/fhir/HealthcareService?_has:PractitionerRole:service:role={tok(s, c)}"
                    for s, c in spread(roles, PEER_SAMPLE)]}


TITLES = {
    "read": "Read by id (`GET /HealthcareService/{id}`)",
    "near": "IG search: specialty + `location.near-insee-code=COG|15|km` + capacity filters "
            "(`location.capacity-status=02&location.nb-capacity=gt0`)",
    "delta": "Delta sync: `_lastUpdated=ge…&_count=200` with the full include set",
    "above": "Extraction: `organization.identifier:above=<EG FINESS>`",
    "filter": "`_filter=specialty eq A or specialty eq B`",
    "name": "Text search: `name=<prefix>`",
    "identifier": "Offer by identifier: `identifier=<value>`",
}
PROBE_TITLES = {"has": "Reverse chain: `_has:PractitionerRole:service:role=<profession>` (checked, not timed)"}


# -- server and load generator ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process pinned to ``cores`` (the server core), ready once it answers HTTP on `port`."""

    def __init__(self, command: list[str], port: int, env: dict, cwd: Path | None = None, start_timeout: float = 30,
                 cores: str = SERVER_CORE):
        self.base = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        # the peer writes its ready line on stdout: keep the harness's stdout for the report (--quick)
        self.proc = subprocess.Popen(["taskset", "-c", cores, *command], env=env, cwd=cwd, stdout=sys.stderr)
        while time.perf_counter() - t0 < start_timeout:
            try:
                httpx.get(f"{self.base}/fhir/metadata", timeout=2)
                self.start_s = round(time.perf_counter() - t0, 2)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited: {command[:3]}") from None
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"server did not start: {command[:3]}")

    def vm(self) -> dict:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        get = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1)) // 1024  # noqa: E731
        return {"VmHWM_mb": get("VmHWM"), "VmRSS_mb": get("VmRSS")}

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far by the server process and its worker processes."""
        total, pids = 0, [self.proc.pid]
        while pids:
            pid = pids.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                pids += map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
            except FileNotFoundError:  # a worker that just exited
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def api_server(url: str, workers: int = 1) -> Server:
    """The API on uvicorn: one worker pinned to the server core, or ``workers`` sharing both cores with wrk."""
    port = free_port()
    return Server([*SERVE, "--port", str(port), "--workers", str(workers)],
                  port, {**ENV, "ROR_DATABASE_URL": url},
                  cores=SERVER_CORE if workers == 1 else f"{SERVER_CORE},{CLIENT_CORE}")


def warm(base: str, paths: list[str]) -> dict:
    """One pass over the paths: all must answer 200; returns the median number of matches and entries."""
    totals, entries, ms = [], [], []
    with httpx.Client(base_url=base, timeout=120) as c:
        for p in paths:
            t0 = time.perf_counter()
            r = c.get(p)
            ms.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                raise SystemExit(f"{p} -> {r.status_code}: {r.text[:500]}")
            body = r.json()
            if body.get("resourceType") == "Bundle":
                totals.append(sum(1 for e in body.get("entry", []) if e.get("search", {}).get("mode") == "match"))
                entries.append(len(body.get("entry", [])))
    out = {"paths": len(paths), "first_pass_median_ms": round(statistics.median(ms), 2)}
    if totals:
        out |= {"matches_on_page_median": statistics.median(totals), "matches_on_page_min": min(totals),
                "entries_median": statistics.median(entries)}
    return out


def wrk(server: Server, paths: list[str], connections: int, seconds: float, tmp: Path) -> dict:
    base = server.base
    cpu0 = server.cpu_s()
    listing = tmp / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    p = subprocess.run(["taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                        "--timeout", "30s", "-s", str(ROOT / "benchmarks/paths.lua"), base, "--", str(listing)],
                       capture_output=True, text=True, timeout=seconds + 120)
    line = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if not line:
        raise SystemExit(f"wrk failed: {p.stdout}\n{p.stderr}")
    out = json.loads(line[-1])
    cpu = server.cpu_s() - cpu0
    out["server_cpu_share"] = cpu / out["seconds"]  # 1.0 = the server had its core to itself and used it all
    out["cpu_us_per_req"] = cpu * 1e6 / max(out["requests"], 1)
    return out


def timed(server: Server, paths: list[str], args, tmp: Path, label: str, connections=(1, 8), workers: int = 1) -> dict:
    """One scenario: a warm-up pass, then ``--repeat`` wrk runs over each number of connections (medians).
    With several workers, a first wrk run (not counted) also warms those the warm-up pass did not reach."""
    s = {"warm": warm(server.base, paths)}
    if workers > 1:
        wrk(server, paths, max(connections), args.seconds, tmp)
    for conns in connections:
        runs = [wrk(server, paths, conns, args.seconds, tmp) for _ in range(args.repeat)]
        s[f"c{conns}"] = median_runs(runs) | {"loadavg": loadavg()}
    log(f"{label}: " + ", ".join(f"p50 {ms(s[f'c{c}']['p50_us'])} ms, {fmt(s[f'c{c}']['rps'])} req/s ({c} conn)"
                                 for c in connections))
    return s


def median_runs(runs: list[dict]) -> dict:
    keys = ("rps", "p50_us", "p95_us", "p99_us", "max_us", "server_cpu_share", "cpu_us_per_req")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["non2xx"] = sum(r["non2xx"] for r in runs)
    out["socket_errors"] = sum(r["socket_errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["repeats"] = len(runs)
    if not any(r["requests"] for r in runs):  # every request outlasted the run: no latency measured
        out |= {k: None for k in ("rps", "p50_us", "p95_us", "p99_us", "max_us")} | {"rps": 0}
    out["rps_all"] = [round(r["rps"]) for r in runs]
    return out


# -- full walk -------------------------------------------------------------------------------------

@contextmanager
def gc_paused():
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def walk(base: str, expected: int, max_pages: int | None = None) -> dict:
    """Every ``next`` link through all HealthcareServices with the include set (the first ``max_pages`` only)."""
    seen: dict[str, int] = {}
    pages = included = 0
    url = f"{base}/fhir/HealthcareService?_count=200&{INCLUDES}"
    t0 = time.perf_counter()
    # The client's garbage collector is paused: a parsed page of ~3.5 MB is ~200,000 objects, whose
    # allocation set off collections that traversed them again (orjson.loads of a page: 210 ms with the
    # collector, 22 ms without; the server answers it in ~35 ms). Nothing here makes reference cycles.
    with httpx.Client(timeout=300) as c, gc_paused():
        for _ in range(max_pages or expected // 200 + 20):  # bounded
            r = c.get(url)
            if r.status_code != 200:
                raise SystemExit(f"walk: {url} -> {r.status_code}: {r.text[:300]}")
            b = orjson.loads(r.content)  # a page is ~3 MB: the stdlib parser took more than the server
            pages += 1
            for e in b.get("entry", []):
                if e["search"]["mode"] == "match":
                    rid = e["resource"]["id"]
                    seen[rid] = seen.get(rid, 0) + 1
                else:
                    included += 1
            url = next((ln["url"] for ln in b.get("link", []) if ln["relation"] == "next"), None)
            if url is None:
                break
    seconds = time.perf_counter() - t0
    dup = sum(1 for v in seen.values() if v > 1)
    return {"seconds": round(seconds, 2), "pages": pages, "matches": sum(seen.values()), "distinct": len(seen),
            "expected": expected, "duplicates": dup, "included": included,
            "exactly_once": dup == 0 and len(seen) == expected and url is None,
            "ms_per_page": round(seconds * 1000 / pages, 1)}


def export_walk(base: str, expected: int) -> dict:
    """The full offer as a Bulk Data export (offers + include set), kick-off to last file downloaded."""
    t0 = time.perf_counter()
    with httpx.Client(timeout=600) as c:
        r = c.get(f"{base}/fhir/$export?_type=HealthcareService&includeAssociatedData=_myCompleteExtract",
                  headers={"Prefer": "respond-async"})
        if r.status_code != 202:
            raise SystemExit(f"export: kick-off -> {r.status_code}: {r.text[:300]}")
        status = r.headers["content-location"]
        while (r := c.get(status)).status_code == 202:
            time.sleep(0.2)
        if r.status_code != 200:
            raise SystemExit(f"export: {status} -> {r.status_code}: {r.text[:300]}")
        ready = time.perf_counter() - t0
        lines: dict[str, int] = {}
        size = 0
        for out in r.json()["output"]:
            with c.stream("GET", out["url"]) as f:
                for chunk in f.iter_lines():
                    lines[out["type"]] = lines.get(out["type"], 0) + 1
                    size += len(chunk) + 1
        c.delete(status)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 2), "ready_s": round(ready, 2), "resources": sum(lines.values()),
            "offers": lines.get("HealthcareService", 0), "expected": expected, "mb": round(size / 1e6, 1),
            "per_s": round(sum(lines.values()) / seconds) if seconds else None}


# -- side-by-side peer ----------------------------------------------------------------------------

# Why the peer (@medplum/fhir-router 4.5.2, MemoryRepository) answers a shape wrongly, read in its source
# (repo.ts, core's search/match.ts) once the check below had shown that it does; shown next to a failed check.
PEER_WHY = {
    "near": "a chained parameter (`location.…`) is kept as a filter on an unknown parameter, which "
            "`matchesSearchRequest` treats as never matching (and its own `near` is refused: 400, type special)",
    "above": "a chained parameter is kept as a filter on an unknown parameter, never matching; on a token, "
             "`:above` acts as an exact match",
    "filter": "`_filter` is kept as a filter on an unknown parameter, never matching",
    "delta": "MemoryRepository.search ignores `_include` / `_revinclude` and cuts the matches at `_count` with no "
             "`next` link (Bundle.total is right)",
    "name": "string parameters match anywhere in the value (`includes`), accent-sensitive; FHIR (and ROR) "
            "match from the start, ignoring accents",
    "has": "`_has:` is kept as a filter on an unknown parameter, never matching",
}


def peer_install() -> str | None:
    """Installs the peer's locked packages when missing; returns why the peer cannot run, or None."""
    if not (shutil.which("node") and shutil.which("npm")):
        return "node and npm not found (Debian packages nodejs, npm)"
    if not (PEER / "node_modules").is_dir():
        log("installing the peer (npm ci in benchmarks/peer)")
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER, capture_output=True, text=True,
                           timeout=900)
        if p.returncode != 0:
            return f"`npm ci` failed in benchmarks/peer: {p.stderr.strip()[-300:]}"
    return None


def answer(client: httpx.Client, path: str) -> dict:
    """A server's answer reduced to what both must agree on: the resource without `meta` (each server stamps its
    own version id and date format), or every match id over all `next` pages, the included types, the pages."""
    url, matches, included, pages = path, [], set(), 0
    while url and pages < 100:  # bounded
        r = client.get(url)
        if r.status_code != 200:
            return {"status": r.status_code, "error": re.sub(r"\s+", " ", r.text)[:200]}
        body = r.json()
        pages += 1
        if body["resourceType"] != "Bundle":
            body.pop("meta", None)
            return {"status": 200, "resource": body}
        for e in body.get("entry", []):
            mode = e.get("search", {}).get("mode", "match")  # the peer sets no search mode: all its entries match
            if mode == "match":
                matches.append(e["resource"]["id"])
            elif mode == "include":
                included.add(e["resource"]["resourceType"])
        url = next((ln["url"] for ln in body.get("link", []) if ln["relation"] == "next"), None)
    return {"status": 200, "matches": sorted(matches), "included": sorted(included), "pages": pages}


def peer_check(ours_base: str, peer_base: str, paths: list[str]) -> dict:
    """Compares the peer's answers with ours on a sample of the paths; one line per kind of difference."""
    found: dict[str, tuple[int, str]] = {}  # kind -> (requests, first example)

    def note(kind: str, example: str):
        n, first = found.get(kind, (0, example))
        found[kind] = (n + 1, first)

    sample = spread(paths, PEER_SAMPLE)
    with httpx.Client(base_url=ours_base, timeout=300) as oc, httpx.Client(base_url=peer_base, timeout=300) as pc:
        for path in sample:
            ours, peer = answer(oc, path), answer(pc, path)
            if peer["status"] != 200:
                note("status", f"HTTP {peer['status']} (`{path}`: {peer['error']})")
            elif "resource" in ours:
                if peer != ours:
                    note("body", f"another resource body (`{path}`)")
            else:
                o, q = set(ours["matches"]), set(peer["matches"])
                if ours["matches"] != peer["matches"]:
                    note("matches", f"{len(peer['matches'])} matches where ours finds {len(ours['matches'])} "
                                    f"({len(o - q)} of ours missing, {len(q - o)} not ours)")
                if ours["included"] and not peer["included"]:
                    note("included", f"no included resources (ours: {', '.join(ours['included'])})")
                if ours["pages"] > 1 and peer["pages"] == 1:
                    note("next", f"no `next` link (ours: {ours['pages']} pages)")
    verdict = ("not supported" if "status" in found else "wrong result") if found else "same answers"
    return {"sampled": len(sample), "verdict": verdict,
            "differences": [f"{text} — {n}/{len(sample)} requests" for n, text in found.values()]}


def alternated(ours: Server, peer: Server, paths: list[str], args, tmp: Path, label: str) -> dict:
    """``timed`` for the peer, with our server measured again in the same rounds: wrk runs alternate between the two
    (both up, each pinned to the server core, the other idle), so that the machine's drift over the run (±20 % for
    the same server here) weighs on both alike. The peer's medians, and ours under ``ours``."""
    s: dict = {"warm": warm(peer.base, paths), "ours": {}}
    warm(ours.base, paths)
    for conns in (1, 8):
        runs: dict[str, list] = {"ours": [], "peer": []}
        for _ in range(args.repeat):
            runs["ours"].append(wrk(ours, paths, conns, args.seconds, tmp))
            runs["peer"].append(wrk(peer, paths, conns, args.seconds, tmp))
        s[f"c{conns}"] = median_runs(runs["peer"]) | {"loadavg": loadavg()}
        s["ours"][f"c{conns}"] = median_runs(runs["ours"]) | {"loadavg": loadavg()}
    log(f"[peer] {label}: " + ", ".join(f"{fmt(s[f'c{c}']['rps'])} req/s against ours {fmt(s['ours'][f'c{c}']['rps'])}"
                                        f" ({c} conn)" for c in (1, 8)))
    return s


def run_peer(files: list[Path], paths: dict[str, list[str]], probes: dict[str, list[str]], ours: Server, args,
             tmp: Path) -> dict:
    """Starts the peer on the same files, checks every shape against our answers, times those it answers the same
    (``alternated`` with our server)."""
    port = free_port()
    server = Server(["node", "server.mjs", "--port", str(port), *map(str, files)], port, os.environ, cwd=PEER,
                    start_timeout=3600)
    versions = json.loads((PEER / "package.json").read_text())["dependencies"]
    out = {"node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
           "fhir_router": versions["@medplum/fhir-router"], "start_s": server.start_s, "scenarios": {}}
    try:
        for name, ps in (paths | probes).items():
            if not ps:
                continue
            s = {"check": peer_check(ours.base, server.base, ps)}
            log(f"[peer] {name}: {s['check']['verdict']}")
            if name not in probes and s["check"]["verdict"] == "same answers":
                s |= alternated(ours, server, ps, args, tmp, name)
            out["scenarios"][name] = s
        out["memory"] = server.vm()
    finally:
        server.stop()
    return out


# -- raw SQL floor ---------------------------------------------------------------------------------

def floor(db: Db, paths: dict[str, list[str]], seconds: float) -> dict:
    """The read-by-id and name-search queries straight against the tables with the DB driver."""
    from urllib.parse import unquote
    ids = [unquote(p.rsplit("/", 1)[1]) for p in paths["read"]]
    prefixes = [unquote(p.split("name=", 1)[1]) for p in paths["name"]]
    read_sql = "SELECT body FROM resource WHERE rtype = ? AND rid = ?"
    # page of 200 current offers whose folded name starts with the prefix, bodies, and the total
    name_sql = (f"SELECT r.rid, r.body FROM resource r WHERE r.pk IN (SELECT pk FROM idx_string "
                f"WHERE param = 'HealthcareService.name' AND norm >= ? AND norm < ? AND until_tx = {LIVE_TX}) "
                f"ORDER BY r.pk LIMIT 200")
    count_sql = (f"SELECT count(DISTINCT pk) FROM idx_string WHERE param = 'HealthcareService.name' "
                 f"AND norm >= ? AND norm < ? AND until_tx = {LIVE_TX}")
    out = {}
    with db.connect() as c:
        def measure(fn, items):
            lat = []
            deadline = time.perf_counter() + seconds
            i = 0
            while time.perf_counter() < deadline and i < 10_000_000:
                t0 = time.perf_counter()
                fn(items[i % len(items)])
                lat.append(time.perf_counter() - t0)
                i += 1
            lat.sort()
            return {"ops": len(lat), "per_s": round(len(lat) / sum(lat)), "p50_us": round(lat[len(lat) // 2] * 1e6, 1),
                    "p99_us": round(lat[int(len(lat) * 0.99)] * 1e6, 1)}

        out["read"] = measure(lambda i: db.q(c, read_sql, ("HealthcareService", i)), ids)

        def name(p):
            rows = db.q(c, name_sql, (p, p + "\uffff"))
            db.q(c, count_sql, (p, p + "\uffff"))
            return rows
        out["name"] = measure(name, prefixes)
    return out


# -- one database ----------------------------------------------------------------------------------

def count(db: Db) -> dict:
    with db.connect() as c:
        types = dict(db.q(c, "SELECT rtype, count(*) FROM resource GROUP BY rtype"))
        versions = db.q(c, "SELECT count(*) FROM resource_version")[0][0]
    return {"types": types, "versions": versions}


def bench(kind: str, files: list[Path], args, tmp: Path, with_peer: bool) -> dict:
    db = Db(kind, tmp)
    res: dict = {"database": kind}
    server = None
    try:
        log(f"[{kind}] first load of {len(files)} files")
        res["load"] = load(db, files)
        before = count(db)
        log(f"[{kind}] first load {res['load']['per_s']:,}/s; no-op reload")
        res["reload"] = load(db, files)
        after = count(db)
        res["reload"] |= {"versions_before": before["versions"], "versions_after": after["versions"],
                          "new_versions": after["versions"] - before["versions"]}
        res["types"] = after["types"]
        if kind == "postgresql":
            # PostgreSQL plans from statistics that autovacuum gathers some time after a write (or not, for small
            # tables): without this, plans and figures depend on when the run starts. `ror load` vacuums and analyzes
            # after a load of more than 10,000 changes (bulk.vacuum_analyze), so after the first load but not after
            # this no-op reload; SQLite has no automatic statistics and plans the same way every time.
            with db.connect() as c:
                t0 = time.perf_counter()
                c.execute("ANALYZE")
                res["analyze_s"] = round(time.perf_counter() - t0, 2)
        paths = scenarios(db)
        if args.quick:  # fewer distinct requests: the first pass over each list is not free
            paths = {k: spread(v, 20) for k, v in paths.items()}
        res["paths"] = {k: len(v) for k, v in paths.items()}
        server = api_server(db.url)
        res["scenarios"] = {}
        for name, ps in paths.items():
            if not ps:
                log(f"[{kind}] {name}: no request could be built from the data, skipped")
                continue
            res["scenarios"][name] = timed(server, ps, args, tmp, f"[{kind}] {name}")
        hs = after["types"].get("HealthcareService", 0)
        log(f"[{kind}] full walk of {hs:,} HealthcareServices")
        res["walk"] = walk(server.base, hs) | {"loadavg": loadavg()}
        log(f"[{kind}] $export of the full offer")
        res["export"] = export_walk(server.base, hs) | {"loadavg": loadavg()}
        log(f"[{kind}] raw SQL floor")
        res["floor"] = floor(db, paths, args.seconds)
        res["server_memory"] = server.vm()
        if with_peer:  # while our server still runs (idle), to compare the peer's answers with ours
            log("[peer] loading the same files into @medplum/fhir-router's MemoryRepository")
            res["peer"] = run_peer(files, paths, peer_probes(db), server, args, tmp)
        server.stop()
        server = api_server(db.url, workers=2)
        res["scenarios_2w"] = {name: timed(server, ps, args, tmp, f"[{kind}] 2 workers, {name}", (8,), 2)
                               for name, ps in paths.items() if ps}
    finally:
        if server:
            server.stop()
        db.drop()
    return res


# -- report ----------------------------------------------------------------------------------------

def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    return f"{round(v):,}"


def ms(us):
    return "–" if us is None else f"{us / 1000:,.2f}"


def render(results: list[dict], info: dict, args, manifest: dict) -> str:
    dbs = [r["database"] for r in results]
    by = {r["database"]: r for r in results}
    head = "| measure | " + " | ".join(dbs) + " |\n|---|" + "---:|" * len(dbs) + "\n"

    def row(label, fn):
        return f"| {label} | " + " | ".join(fn(by[d]) for d in dbs) + " |\n"

    total = manifest["resources"]["total"]
    peer = next((r["peer"] for r in results if "peer" in r), None)
    ran = peer if peer and "skipped" not in peer else None
    flags = (" --quick" if args.quick else "") + (" --no-peer" if peer is None and not args.quick else
                                                  " --peer" if peer is not None and args.quick else "")
    out = [f"# Performance results (issue 7)\n\n"
           f"Produced by `.venv/bin/python benchmarks/run.py --resources {args.resources} --database {args.database}"
           f"{flags} --seconds {args.seconds} --repeat {args.repeat}` "
           f"(see README.md, section Harness).\n\n"
           f"## Machine and run\n\n"
           f"- date: {info['date']}\n- CPU: {info['cpu']}, `nproc` = {info['nproc']}; Python {info['python']}\n"
           f"- memory (`free -g`):\n\n```\n{info['free_g']}\n```\n"
           f"- load average (1/5/15 min) at start: {info['loadavg'][0][0]:.2f} {info['loadavg'][0][1]:.2f} "
           f"{info['loadavg'][0][2]:.2f}; at each measurement: in the tables. The machine is shared with other "
           f"work, so figures are lower bounds.\n"
           f"- placement: API server (uvicorn, 1 worker, uvloop + httptools) pinned to core 0 (`taskset -c 0`); "
           f"`wrk` (1 thread) and the harness on core 1; the loader on both cores (it parses and indexes in a "
           f"worker process while it writes). PostgreSQL's own backend processes are not pinned (they share both "
           f"cores with the rest). The 2-worker table: uvicorn `--workers 2` on both cores, wrk on core 1 too.\n"
           f"- each wrk figure: median of {args.repeat} runs of {args.seconds} s; every request path list cycles "
           f"over many distinct URLs (benchmarks/paths.lua) so that no single cached row is measured.\n\n"
           f"## Dataset\n\n"
           f"Generated with `ror generate` (src/ror/generate, `runner.generate(OUT, '{args.resources}', "
           f"seed={args.seed}, dirty=0)`): {total:,} resources in regional FHIR NDJSON extracts "
           f"({len(manifest.get('regions', {})) or 'all'} regions), "
           f"{manifest.get('capacity_records', 0):,} capacity records; loaded with `ror load --keep-last-updated "
           f"fhir/*/*.ndjson`.\n\n"
           f"| type | generated (manifest) | " + " | ".join(f"stored, {d}" for d in dbs) + " |\n|---|---:|"
           + "---:|" * len(dbs) + "\n"]
    for t in ("Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole"):
        out.append(f"| {t} | {manifest['resources'].get(t, 0):,} | "
                   + " | ".join(f"{by[d]['types'].get(t, 0):,}" for d in dbs) + " |\n")
    out.append("\n## Load\n\n" + head)
    out.append(row("first load: resources", lambda r: fmt(r["load"]["resources"])))
    out.append(row("first load: wall time, end to end (process start, migrations, parse, write, indexes) s",
                   lambda r: fmt(r["load"]["seconds"], 1)))
    out.append(row("**first load: resources/s**", lambda r: f"**{fmt(r['load']['per_s'])}**"))
    out.append(row("first load: peak RSS of the loading process (MB)", lambda r: fmt(r["load"]["peak_rss_mb"])))
    out.append(row("no-op reload: wall time s", lambda r: fmt(r["reload"]["seconds"], 1)))
    out.append(row("**no-op reload: resources/s**", lambda r: f"**{fmt(r['reload']['per_s'])}**"))
    out.append(row("no-op reload: created / updated / unchanged",
                   lambda r: f"{r['reload']['created']} / {r['reload']['updated']} / {r['reload']['unchanged']:,}"))
    out.append(row("resource_version rows before → after reload (new versions)",
                   lambda r: f"{r['reload']['versions_before']:,} → {r['reload']['versions_after']:,} "
                             f"(**{r['reload']['new_versions']}**)"))
    out.append(row("no-op reload: peak RSS (MB)", lambda r: fmt(r["reload"]["peak_rss_mb"])))
    out.append(row("`ANALYZE` after the reload, s (harness step, PostgreSQL only: see run.py)",
                   lambda r: fmt(r["analyze_s"], 1) if "analyze_s" in r else "–"))
    out.append(row("load average during load / reload", lambda r: f"{r['load']['loadavg']} / {r['reload']['loadavg']}"))

    for name, title in TITLES.items():
        if not all(name in by[d].get("scenarios", {}) for d in dbs):
            continue
        out.append(f"\n## {title}\n\n" + head)
        sc = lambda r, name=name: r["scenarios"][name]  # noqa: E731
        out.append(row("distinct request paths cycled", lambda r, sc=sc: fmt(sc(r)["warm"]["paths"])))
        if "matches_on_page_median" in sc(by[dbs[0]])["warm"]:
            out.append(row("matches on the page (median / min)",
                           lambda r, sc=sc: f"{sc(r)['warm']['matches_on_page_median']:g}"
                                            f" / {sc(r)['warm']['matches_on_page_min']}"))
            out.append(row("entries in the Bundle (median)",
                           lambda r, sc=sc: f"{sc(r)['warm']['entries_median']:g}"))
        for c in (1, 8):
            out.append(row(f"{c} conn: p50 / p95 / p99 ms",
                           lambda r, c=c, sc=sc: f"{ms(sc(r)[f'c{c}']['p50_us'])} / "
                                                 f"{ms(sc(r)[f'c{c}']['p95_us'])} / {ms(sc(r)[f'c{c}']['p99_us'])}"))
            out.append(row(f"**{c} conn: req/s** (runs)",
                           lambda r, c=c, sc=sc: f"**{fmt(sc(r)[f'c{c}']['rps'])}** "
                                                 f"({', '.join(map(str, sc(r)[f'c{c}']['rps_all']))})"))
            out.append(row(f"{c} conn: server CPU per request ms (⇒ req/s per full core) / CPU share of its core",
                           lambda r, c=c, sc=sc: f"{ms(sc(r)[f'c{c}']['cpu_us_per_req'])} "
                                     f"(⇒ {fmt(1e6 / max(sc(r)[f'c{c}']['cpu_us_per_req'], 1))}) / "
                                     f"{sc(r)[f'c{c}']['server_cpu_share']:.0%}"))
            out.append(row(f"{c} conn: non-2xx / socket errors",
                           lambda r, c=c, sc=sc: f"{sc(r)[f'c{c}']['non2xx']} / {sc(r)[f'c{c}']['socket_errors']}"))
        out.append(row("load average after", lambda r, sc=sc: sc(r)["c8"]["loadavg"]))

    out.append("\n## Full walk of all HealthcareServices with the include set (every `next` link, pages of 200)\n\n"
               + head)
    out.append(row("wall time s", lambda r: fmt(r["walk"]["seconds"], 1)))
    out.append(row("pages / ms per page", lambda r: f"{r['walk']['pages']} / {r['walk']['ms_per_page']}"))
    out.append(row("matches / distinct / expected / duplicates",
                   lambda r: f"{r['walk']['matches']:,} / {r['walk']['distinct']:,} / {r['walk']['expected']:,} / "
                             f"{r['walk']['duplicates']}"))
    out.append(row("included resources", lambda r: fmt(r["walk"]["included"])))
    out.append(row("**every match exactly once**", lambda r: "**yes**" if r["walk"]["exactly_once"] else "**NO**"))
    out.append(row("extrapolated to 600,000 offers (3,000 pages at the same ms/page) min",
                   lambda r: fmt(r["walk"]["ms_per_page"] * 3000 / 60000, 1)))

    if all("export" in r for r in results):
        out.append("\n## Full offer as a Bulk Data `$export` (offers + include set, as NDJSON files)\n\n" + head)
        out.append(row("job done s / with downloads s",
                       lambda r: f"{r['export']['ready_s']} / {r['export']['seconds']}"))
        out.append(row("resources / offers (expected) / MB",
                       lambda r: f"{r['export']['resources']:,} / {r['export']['offers']:,} "
                                 f"({r['export']['expected']:,}) / {r['export']['mb']}"))
        out.append(row("resources/s", lambda r: fmt(r["export"]["per_s"])))

    out.append("\n## Raw SQL floor (same query with the bare driver, sequential, core 1) and framework overhead\n\n"
               + head)
    for name, label in (("read", "read by id"), ("name", "name search (page of 200 bodies + count)")):
        out.append(row(f"{label}: raw SQL p50 µs / ops/s",
                       lambda r, name=name: f"{r['floor'][name]['p50_us']:,} / {r['floor'][name]['per_s']:,}"))
        out.append(row(f"{label}: API p50 µs / req/s (1 conn)",
                       lambda r, name=name: f"{r['scenarios'][name]['c1']['p50_us']:,} / "
                                            f"{fmt(r['scenarios'][name]['c1']['rps'])}"))
        out.append(row(f"**{label}: overhead ratio (API p50 / raw p50)**",
                       lambda r, name=name: "**{:.1f}×**".format(
                           r["scenarios"][name]["c1"]["p50_us"] / max(r["floor"][name]["p50_us"], 0.1))))

    if all("scenarios_2w" in r for r in results):
        out.append("\n## 2 API workers (uvicorn `--workers 2` on both cores, sharing them with wrk), 8 connections"
                   "\n\n" + head)
        for name in TITLES:
            if not all(name in by[d]["scenarios_2w"] and name in by[d]["scenarios"] for d in dbs):
                continue
            out.append(row(f"{name}: req/s, 1 → 2 workers (ratio); p95 ms with 2",
                           lambda r, name=name: "{} → **{}** (×{:.2f}); {}".format(
                               fmt(r["scenarios"][name]["c8"]["rps"]), fmt(r["scenarios_2w"][name]["c8"]["rps"]),
                               r["scenarios_2w"][name]["c8"]["rps"] / max(r["scenarios"][name]["c8"]["rps"], 1),
                               ms(r["scenarios_2w"][name]["c8"]["p95_us"]))))

    out.append("\n## API server memory\n\n" + head)
    out.append(row("peak RSS of the server process, VmHWM (MB)", lambda r: fmt(r["server_memory"]["VmHWM_mb"])))
    out.append(row("RSS at the end (MB)", lambda r: fmt(r["server_memory"]["VmRSS_mb"])))
    if ran:
        out.append(render_peer(results, ran, total))
    out.append("\n" + targets(results, total, ran))
    out.append("\n## Not measured yet\n\n")
    if not ran:
        out.append("- the side-by-side peer (`@medplum/fhir-router` in-memory repository under Node, benchmarks/peer): "
                   + (f"skipped, {peer['skipped']}" if peer else "not run (`--no-peer` or `--quick`)")
                   + "; issue 7 quotes ≈8,000 / ≈20,000 req/s for its reads, used above as the target;\n")
    if total < 2_000_000:
        out.append(f"- the national scale itself (≈2.7M resources: `--resources 2700000`; this run has {total:,});\n")
    out.append("- the FINESS, RPPS and CSD input paths of the generator in this run (only the FHIR NDJSON extracts are "
               "loaded here): the FINESS and RPPS imports are measured by hand at national scale (below, session 13; "
               "README.md says how), and `benchmarks/feeds.py` imports a FINESS file of any size.\n")
    return "".join(out)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def beside_peer(r: dict, peer: dict | None, name: str, c: int) -> dict:
    """Our figure for a shape to set against the peer's: from the rounds alternated with it when the peer ran beside
    this database (``alternated``), else from the scenario tables (runs before it, or results saved before)."""
    same_rounds = r.get("peer") is peer and peer is not None and "ours" in peer["scenarios"].get(name, {})
    return peer["scenarios"][name]["ours"][f"c{c}"] if same_rounds else r["scenarios"][name][f"c{c}"]


def render_peer(results: list[dict], peer: dict, total: int) -> str:
    dbs = [r["database"] for r in results]
    out = [f"\n## Side-by-side peer: `@medplum/fhir-router` {peer['fhir_router']} in-memory repository "
           f"(Node {peer['node']})\n\n"
           f"`benchmarks/peer/server.mjs` loads the same {total:,} resources into `MemoryRepository` and answers "
           f"through `FhirRouter` over Node's `http`, pinned to core 0 like our server; same wrk, same request "
           f"paths. The wrk runs alternate between the two servers (each idle while the other is measured): our "
           f"{results[0]['database']} figures here come from these same rounds, not from the scenario tables above. "
           f"Each shape is first checked on up to {PEER_SAMPLE} of its paths against our answer (read: the "
           f"resource without `meta`; search: every match id over all `next` pages, the included "
           f"types, the pages); only shapes answered the same are timed. CPU: the server process's CPU ms per "
           f"request, which does not depend on how busy the shared machine is. Ratio: our req/s over the peer's, "
           f"and in brackets the peer's CPU per request over ours (above 1: ours is faster).\n\n"
           "| shape | peer's answer | conn | " + " | ".join(f"{d}: req/s (p50 / p95 ms; CPU)" for d in dbs)
           + " | peer: req/s (p50 / p95 ms; CPU) | " + " | ".join(f"ratio {d} / peer (CPU)" for d in dbs) + " |\n"
           "|---|---|---:|" + "---:|" * (2 * len(dbs) + 1) + "\n"]

    def fig(f: dict) -> str:
        return f"{fmt(f['rps'])} ({ms(f['p50_us'])} / {ms(f['p95_us'])}; {ms(f['cpu_us_per_req'])})"

    for name, s in peer["scenarios"].items():
        check, why = s["check"], PEER_WHY.get(name)
        verdict = (f"same answers ({check['sampled']} requests)" if not check["differences"] else
                   f"**{check['verdict']}**: " + "; ".join(check["differences"]) + (f". Why: {why}" if why else ""))
        label = f"| {cell(TITLES.get(name) or PROBE_TITLES[name])} | {cell(verdict)} |"
        if "c1" not in s:
            out.append(f"{label} – |" + " – |" * (2 * len(dbs) + 1) + "\n")
            continue
        for c in (1, 8):
            ours, theirs = [beside_peer(r, peer, name, c) for r in results], s[f"c{c}"]
            out.append(f"{label} {c} | " + " | ".join(fig(o) for o in ours) + f" | {fig(theirs)} | "
                       + " | ".join(f"{o['rps'] / max(theirs['rps'], 1e-9):,.2f}× "
                                    f"({theirs['cpu_us_per_req'] / max(o['cpu_us_per_req'], 1e-9):,.2f}×)"
                                    for o in ours) + " |\n")
    mem = peer["memory"]
    out.append(f"\n- peer start-up (definitions, then the {total:,} NDJSON lines into memory; nothing durable): "
               f"{peer['start_s']:,.1f} s\n"
               f"- peer process memory: peak RSS (VmHWM) {mem['VmHWM_mb']:,} MB, at the end {mem['VmRSS_mb']:,} MB "
               f"(ours: section API server memory)\n")
    return "".join(out)


def targets(results: list[dict], total: int, peer: dict | None) -> str:
    lines = [f"## Targets of issue 7 (measured at {total:,} resources, not the national 2.5M)\n\n"
             "| target | " + " | ".join(r["database"] for r in results) + " |\n|---|" + "---|" * len(results) + "\n"]

    def verdict(ok: bool, text: str) -> str:
        return ("met: " if ok else "**missed**: ") + text

    def add(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in results) + " |\n")

    def sc(r, name, c=1):
        return r["scenarios"][name][f"c{c}"]

    def pct(value, target, unit=""):
        return f"{value:,.0f}{unit} ({value / target:.1%} of the target)"

    add("first load ≥ 20,000 resources/s",
        lambda r: verdict(r["load"]["per_s"] >= 20000, pct(r["load"]["per_s"], 20000, "/s")))
    add("no-op reload ≥ 50,000 resources/s, zero new versions",
        lambda r: verdict(r["reload"]["per_s"] >= 50000 and r["reload"]["new_versions"] == 0,
                          pct(r["reload"]["per_s"], 50000, "/s") + "; "
                          + ("zero new versions" if r["reload"]["new_versions"] == 0
                             else f"**{r['reload']['new_versions']} new versions**")))
    add("read by id p50 < 1 ms (1 conn)",
        lambda r: verdict(sc(r, "read")["p50_us"] < 1000, f"{ms(sc(r, 'read')['p50_us'])} ms"))
    # the peer's measured reads replace the figures quoted in issue 7 when it ran here
    read1, read8, source = ((peer["scenarios"]["read"]["c1"]["rps"], peer["scenarios"]["read"]["c8"]["rps"],
                             "the peer measured in this run") if peer and "c1" in peer["scenarios"].get("read", {})
                            else (8000, 20000, "the peer's figures quoted in issue 7"))
    def read_verdict(figure: dict, wanted: float) -> str:
        return verdict(figure["rps"] >= wanted, f"{pct(figure['rps'], wanted)}; at most "
                       f"{1e6 / figure['cpu_us_per_req']:,.0f} req/s with a full core (server CPU per request)")

    for c, wanted in ((1, read1), (8, read8)):
        add(f"read by id ≥ {wanted:,.0f} req/s ({c} conn): {source}",
            lambda r, c=c, wanted=wanted: read_verdict(beside_peer(r, peer, "read", c), wanted))
    for name in ("near", "above", "filter", "name"):
        add(f"IG search `{name}` p95 < 50 ms (1 conn; 8 conn)",
            lambda r, name=name: verdict((sc(r, name)["p95_us"] or 1e12) < 50000,
                                         f"{ms(sc(r, name)['p95_us'])} ms; {ms(sc(r, name, 8)['p95_us'])} ms"))
    add("delta sync page of 200 with includes p95 < 150 ms (1 conn; 8 conn)",
        lambda r: verdict((sc(r, "delta")["p95_us"] or 1e12) < 150000,
                          f"{ms(sc(r, 'delta')['p95_us'])} ms; {ms(sc(r, 'delta', 8)['p95_us'])} ms"))
    add("full walk of all HealthcareServices < 5 min (judged on the extrapolation to 600k offers)",
        lambda r: verdict(r["walk"]["ms_per_page"] * 3000 / 1000 < 300,
                          f"{r['walk']['seconds']:,.1f} s here; {r['walk']['ms_per_page'] * 3000 / 60000:,.1f} min "
                          f"extrapolated"))
    add("API process < 2 GiB RSS",
        lambda r: verdict(r["server_memory"]["VmHWM_mb"] < 2048, f"{r['server_memory']['VmHWM_mb']:,} MB (VmHWM)"))
    return "".join(lines)


MARK = "<!-- hand-written analysis below: kept when the report is rewritten -->"


def write(output: Path, text: str) -> None:
    """Write the report, keeping anything written by hand after MARK in the previous one."""
    kept = ""
    if output.exists() and MARK in (old := output.read_text()):
        kept = old[old.index(MARK):]
    output.write_text(text + "\n" + (kept or MARK + "\n"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resources", type=int, default=20000)
    ap.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="tiny scale, 1 s per measurement, one repeat (CI)")
    ap.add_argument("--peer", action=argparse.BooleanOptionalAction, default=None,
                    help="measure the side-by-side peer (benchmarks/peer; default: on, off with --quick)")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default="", help="keeps the generated data between runs (default: temporary)")
    ap.add_argument("--output", default="")
    ap.add_argument("--render", default="", metavar="RESULTS_JSON",
                    help="only rewrite the report from the results.json of an earlier run (same options)")
    args = ap.parse_args()
    if args.quick:
        args.resources, args.seconds, args.repeat = min(args.resources, 1000), 1, 1
    if args.peer is None:
        args.peer = not args.quick
    if not shutil.which("wrk") or not shutil.which("taskset"):
        raise SystemExit("needs wrk and taskset (Debian packages wrk, util-linux)")
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        data = Path(args.render).parent / f"data-{args.resources}-{args.seed}"
        manifest = json.loads((data / "manifest.json").read_text())
        output = Path(args.output) if args.output else ROOT / "benchmarks/RESULTS.md"
        write(output, render(saved["results"], saved["machine"], args, manifest))
        return
    peer_skipped = peer_install() if args.peer else None
    if peer_skipped:
        log(f"side-by-side peer skipped: {peer_skipped}")
        args.peer = False
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    info = machine()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ror-bench-") as t:
        tmp = Path(t)
        workdir = Path(args.workdir) if args.workdir else tmp
        workdir.mkdir(parents=True, exist_ok=True)
        files, manifest = dataset(workdir, args.resources, args.seed)
        kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
        results = [bench(k, files, args, tmp, with_peer=args.peer and i == 0) for i, k in enumerate(kinds)]
        if peer_skipped:
            results[0]["peer"] = {"skipped": peer_skipped}
        if args.workdir:  # raw figures, for whoever wants more than the tables (and for --render)
            (workdir / "results.json").write_text(json.dumps({"machine": info, "results": results}, indent=1,
                                                             default=str))
        text = render(results, info, args, manifest)
        output = Path(args.output) if args.output else (
            tmp / "RESULTS.md" if args.quick else ROOT / "benchmarks/RESULTS.md")
        write(output, text)
        if args.quick and not args.output:
            print(text)
        log(f"done in {time.perf_counter() - started:,.0f} s -> {output}")


if __name__ == "__main__":
    main()
