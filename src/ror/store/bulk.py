"""Bulk write path for feeds, loads and tests: batched upserts through ``repository.write_batch``.

Each batch is one transaction, so a run killed mid-way leaves whole batches; since unchanged
content is skipped, re-running the same input converges to the state of an uninterrupted run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from sqlalchemy import Engine

from ror.store import repository
from ror.store.engine import write_transaction


def upsert(engine: Engine, resources: Iterable[dict], batch_size: int = 2000,
           on_batch: Callable[[Counter], None] | None = None, keep_last_updated: bool = False) -> Counter:
    """Create or update ``resources`` (each with resourceType and id). Returns counts per outcome.
    ``keep_last_updated``: see ``repository.write_batch``."""
    totals: Counter = Counter()
    batch: list[repository.Prepared] = []

    def flush():
        with write_transaction(engine) as conn:
            done = Counter(w.outcome for w in repository.write_batch(conn, batch, keep_last_updated=keep_last_updated))
        totals.update(done)
        batch.clear()
        if on_batch:
            on_batch(done)

    for res in resources:
        batch.append(repository.prepare(res))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return totals


def analyze(engine: Engine) -> None:
    """Refresh PostgreSQL's planner statistics after a large load: without them the planner chose
    nested loops that made a geographic search take minutes (measured by benchmarks/run.py)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
