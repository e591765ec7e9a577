"""Bulk write path for feeds, loads and tests: batched upserts through ``repository.write_batch``.

Each batch is one transaction, so a run killed mid-way leaves whole batches; since unchanged
content is skipped, re-running the same input converges to the state of an uninterrupted run.

NDJSON lines (``ror.fhir.files.Line``) are fingerprinted: the digest of the line a resource was loaded
from is kept with the content hash it gave (``load_fingerprint``). A reload skips a known line without
parsing it while the resource still has that content — parsing was most of a no-op reload's cost (orjson
builds every object of the resource: ~50 µs for an offer) — and parses it again once the resource changed
by any other way (API, feed, another file).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable

from sqlalchemy import Connection, Engine

from ror.errors import InputFileError
from ror.fhir.files import Line, Rejected
from ror.store import repository
from ror.store.engine import dbapi_many, dbapi_rows, write_transaction


def upsert(engine: Engine, items: Iterable[dict | Line], batch_size: int = 2000,
           on_batch: Callable[[Counter], None] | None = None, keep_last_updated: bool = False,
           on_rejected: Callable[[Rejected], None] | None = None) -> Counter:
    """Create or update ``items`` (resources with resourceType and id, or NDJSON lines). Returns counts
    per outcome. ``keep_last_updated``: see ``repository.write_batch``. Lines that are not valid
    resources go to ``on_rejected``; without it, the first one stops the load (``InputFileError``)."""
    totals: Counter = Counter()
    batch: list[dict | Line] = []

    def flush():
        with write_transaction(engine) as conn:
            done = _write(conn, batch, keep_last_updated, on_rejected)
        totals.update(done)
        batch.clear()
        if on_batch:
            on_batch(done)

    for item in items:
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return totals


def _write(conn: Connection, batch: list[dict | Line], keep_last_updated: bool,
           on_rejected: Callable[[Rejected], None] | None) -> Counter:
    digests = {id(item): hashlib.blake2b(item.raw, digest_size=16).digest() for item in batch if isinstance(item, Line)}
    known = _unchanged(conn, set(digests.values()))
    done: Counter = Counter()
    prepared: list[repository.Prepared] = []
    fingerprinted: dict[tuple[str, str], bytes] = {}
    for item in batch:
        if isinstance(item, Line):
            digest = digests[id(item)]
            if digest in known:
                done["unchanged"] += 1
                continue
            res = item.parse()
            if isinstance(res, Rejected):
                if on_rejected is None:
                    raise InputFileError(f"{res.where}: {res.reason}")
                on_rejected(res)
                continue
            fingerprinted[(res["resourceType"], res["id"])] = digest
        else:
            res = item
        prepared.append(repository.prepare(res))
    written = repository.write_batch(conn, prepared, keep_last_updated=keep_last_updated)
    done.update(w.outcome for w in written)
    if fingerprinted:
        hashes = {(p.rtype, p.rid): p.content_hash for p in prepared}
        pks = repository.pks_for(conn, fingerprinted)
        dbapi_many(conn, _REMEMBER, [(pks[k], digest, hashes[k]) for k, digest in fingerprinted.items()])
    return done


_REMEMBER = ("INSERT INTO load_fingerprint (pk, digest, content_hash) VALUES ({p}, {p}, {p}) ON CONFLICT (pk) "
             "DO UPDATE SET digest = excluded.digest, content_hash = excluded.content_hash")


def _unchanged(conn: Connection, digests: set[bytes]) -> set[bytes]:
    """The digests of lines whose resource still has the content they gave."""
    out: set[bytes] = set()
    todo = list(digests)
    for i in range(0, len(todo), 500):
        chunk = todo[i:i + 500]
        out.update(bytes(d) for (d,) in dbapi_rows(
            conn, "SELECT f.digest FROM load_fingerprint f JOIN resource r ON r.pk = f.pk AND r.content_hash = "
                  f"f.content_hash WHERE f.digest IN ({', '.join(['{p}'] * len(chunk))})", chunk))
    return out


def analyze(engine: Engine) -> None:
    """Refresh PostgreSQL's planner statistics after a large load: without them the planner chose
    nested loops that made a geographic search take minutes (measured by benchmarks/run.py)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
