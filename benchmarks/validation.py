#!/usr/bin/env python3
"""Cost of validating writes against the ROR profiles, and of loading the NOS.

Measures, on SQLite in a temporary folder:
1. the time to load the NOS set shipped with ROR national (zip of 2023 + 2020-2023 + 2026 + IG tables);
2. resources validated per second on a realistic offer: the IG HealthcareService example completed with
   its care mode (7 opening-hour entries, contact, patient type...: ~8 kB of JSON), its Location and an
   EG Organization, with reference look-ups (one query per resource), without, and in batches of 50
   (``validate_many``: one query per batch);
3. the same on a fresh database (no NOS loaded) and with no connection: the bundled NOS set is then read
   in memory (``ror.terminology.bundled``), whose first-use cost is measured per resource type, and for
   all 318 tables at once;
4. the same loop through `orjson.loads` alone, to express validation as a factor of parse cost.

Run: ``.venv/bin/python benchmarks/validation.py [--seconds 5]``. Prints one JSON object; rates are per
second of CPU time, first-use costs and loads in wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ror.fhir.service import FhirService  # noqa: E402
from ror.profiles.structure import compile_profiles  # noqa: E402
from ror.profiles.validation import Validator  # noqa: E402
from ror.settings import Settings  # noqa: E402
from ror.store.engine import WRITE, make_engine  # noqa: E402
from ror.store.migrate import upgrade  # noqa: E402
from ror.terminology.bundled import BundledTerminology  # noqa: E402
from ror.terminology.nos import ParsedTable, read_path  # noqa: E402
from ror.terminology.store import load_path  # noqa: E402
from tests.validation.corpus import EX, ORGANIZATION, hs  # noqa: E402

NOS = ROOT / "src" / "ror" / "data" / "nos"


def rate(fn, seconds: float) -> float:
    """Calls per second of this process's CPU time: steadier than wall time on a shared machine (SQLite runs
    in the process, so its queries are counted)."""
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(50):
            fn()
        n += 50
    return n / (time.process_time() - start)


def _store(url: str, nos: bool) -> tuple:
    """A store holding the targets of the offer's references (and the NOS set if ``nos``)."""
    engine = make_engine(url)
    upgrade(engine)
    report = None
    if nos:
        with engine.connect() as conn:
            conn.execution_options(**WRITE)
            with conn.begin():
                report = load_path(conn, NOS)
    svc = FhirService(engine, Settings(database_url=url))
    svc.update("Organization", "999999", json.dumps(ORGANIZATION).encode(), "http://x/fhir")
    svc.update("Location", "888888", json.dumps({**EX["Location-ror-location-exemple.json"], "id": "888888"})
               .encode(), "http://x/fhir")
    return engine, report


def _bundled_costs() -> dict:
    """First-use cost of the bundled NOS set: per resource type (the tables its profile needs), then all."""
    out = {}
    offer, location = hs(), {**EX["Location-ror-location-exemple.json"], "id": "888888"}
    cold = Validator()
    cold.fallback = BundledTerminology()  # a process that never read the set
    for name, res in (("offer", offer), ("location", location), ("organization", ORGANIZATION)):
        started = time.perf_counter()
        cold.validate(res, None)
        out[f"bundled_first_{name}_ms"] = round((time.perf_counter() - started) * 1000)
    every = BundledTerminology()
    tables = {(t.url, t.kind) for t in read_path(NOS) if isinstance(t, ParsedTable)}
    started = time.perf_counter()
    for url, kind in tables:
        (every.code_system if kind == "CodeSystem" else every.value_set)(None, url)
    out["bundled_all_tables_s"] = round(time.perf_counter() - started, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    out = _bundled_costs()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        engine, report = _store(f"sqlite:///{tmp}/bench.db", nos=True)
        out.update({"nos_load_s": round(time.perf_counter() - started, 2), "nos_tables": report.totals()["new_tables"],
                    "nos_codes": report.totals()["new_codes"]})
        fresh, _ = _store(f"sqlite:///{tmp}/fresh.db", nos=False)
        offer, location = hs(), {**EX["Location-ror-location-exemple.json"], "id": "888888"}
        raw = orjson.dumps(offer)
        full, no_refs = Validator(), Validator(check_references=False)
        out["offer_bytes"] = len(raw)
        with engine.connect() as conn, fresh.connect() as fresh_conn:
            for c in (conn, fresh_conn, None):
                assert full.validate(offer, c) == [] and full.validate(location, c) == []
            compile_profiles.cache_clear()
            compile_started = time.perf_counter()
            Validator()
            out["validator_build_ms"] = round((time.perf_counter() - compile_started) * 1000, 2)
            out["offer_per_s_with_references"] = round(rate(lambda: full.validate(offer, conn), args.seconds))
            out["offer_per_s_no_references"] = round(rate(lambda: no_refs.validate(offer, conn), args.seconds))
            out["offer_per_s_batches_of_50"] = round(50 * rate(lambda: full.validate_many([offer] * 50, conn),
                                                                args.seconds))
            out["offer_per_s_fresh_database"] = round(rate(lambda: full.validate(offer, fresh_conn), args.seconds))
            out["offer_per_s_no_connection"] = round(rate(lambda: full.validate(offer, None), args.seconds))
            out["location_per_s"] = round(rate(lambda: full.validate(location, conn), args.seconds))
            out["organization_per_s"] = round(rate(lambda: full.validate(ORGANIZATION, conn), args.seconds))
        out["orjson_parse_per_s"] = round(rate(lambda: orjson.loads(raw), args.seconds))
        engine.dispose()
        fresh.dispose()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
