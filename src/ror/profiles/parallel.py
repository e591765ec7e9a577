"""Profile checks of large batches in worker processes: a feed's validation on every core.

A FINESS import spent about half its time validating the merged resources (``Validator.validate_many``, cProfile),
in the one process that also writes. ``CheckPool.check_many`` shares a batch's
``Validator.check_many`` — structure, codes, identifiers: everything but the look-up of reference targets — between
worker processes, each with its own validator and its own connection to the store (it reads only NOS tables there);
the caller then resolves the references on its own connection (``Validator.resolve_references``), which sees the
resources its transaction wrote. The verdicts are the ones the caller's validator would give. The workers also do
the rest of the pure work of the write that follows (``check_and_prepare``: bodies and index rows), which the one
writing process did before (a tenth of its time in a first RPPS import, py-spy). ``CheckPool.start`` lets the caller
go on meanwhile: a feed's run writes the batch before while the workers check the next (``ror.feeds.runs``); they run
niced, after the run, which is the import's bottleneck (``bulk.WORKER_NICENESS``), and with the garbage collector
paused, collecting between jobs (``_check``), as the run and the bulk load's workers do.

The workers are spawned, not forked: a forked child inherits SQLite's per-process lock bookkeeping of the caller's
open connections, and must not open the same file again. They start at the first batch large enough to be shared
(an import of a few hundred records stays in its process), take a few seconds to get ready (imports, the NOS
tables they read on first use), and stop with the import (``close``).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from ror.profiles.validation import Checked, Validator

MIN_SHARED = 400  # resources: below, a batch is checked in the caller's process (the pool's round trips cost more)
_JOBS_PER_WORKER = 4  # a batch is cut in as many jobs per worker: an uneven job does not keep the others waiting


class CheckPool:
    """Checks batches of at least ``min_shared`` resources in ``workers`` processes (default: one per CPU when the
    machine has more than one) when the store is a database file or server they can open; smaller batches, and all
    of them otherwise, in this process with ``validator``. Workers build their validator as ``make_validator`` does
    (importable at module level: it crosses to a new interpreter)."""

    def __init__(self, engine: Engine, validator: Validator, make_validator, *, min_shared: int = MIN_SHARED,
                 workers: int | None = None):
        self.validator = validator
        self.make_validator = make_validator
        self.min_shared = min_shared
        url = engine.url
        shareable = url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:")
        if workers is None:
            cpus = len(os.sched_getaffinity(0))
            workers = cpus if cpus > 1 else 0
        self.workers = workers if shareable else 0
        self.url = url.render_as_string(hide_password=False)
        self.shared = 0  # resources checked in the workers
        self._pool: ProcessPoolExecutor | None = None

    def check_many(self, resources: list[dict], conn: Connection, *, at: str | None = None) -> list[Checked]:
        return self.check_and_prepare(resources, conn, at=at)[0]

    def check_and_prepare(self, resources: list[dict], conn: Connection, *, at: str | None = None,
                          view: Callable[[dict], dict] | None = None, prepare: Callable[[dict], Any] | None = None
                          ) -> tuple[list[Checked], list]:
        """``check_many`` of ``view(r)`` (default ``r``) for each of ``resources``, and ``prepare(r)`` of each (none
        without ``prepare``): the other pure work their write needs, done in the workers with their checks.
        ``view`` and ``prepare`` cross to the workers: module-level functions, or partials of them."""
        return self.start(resources, conn, at=at, view=view, prepare=prepare)()

    def start(self, resources: list[dict], conn: Connection, *, at: str | None = None,
              view: Callable[[dict], dict] | None = None, prepare: Callable[[dict], Any] | None = None
              ) -> Callable[[], tuple[list[Checked], list]]:
        """``check_and_prepare`` started: what it gives, when the returned function is called. Shared between the
        workers, the checks run meanwhile (the caller writes the batch before, ``ror.feeds.runs``); otherwise they are
        made here and now, on ``conn``."""
        if self.workers < 2 or len(resources) < self.min_shared:
            done = check_and_prepare(self.validator, resources, conn, at, view, prepare)
            return lambda: done
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_start,
                                             initargs=(self.url, self.make_validator))
        self.shared += len(resources)
        size = -(-len(resources) // (self.workers * _JOBS_PER_WORKER))
        # As JSON: pickling the resources' dicts cost a third to half of checking them (2,000 RPPS roles: 50-150 ms
        # against ~240).
        jobs = [self._pool.submit(_check, orjson.dumps(resources[i:i + size]), at, view, prepare)
                for i in range(0, len(resources), size)]

        def collect() -> tuple[list[Checked], list]:
            checked: list[Checked] = []
            prepared: list = []
            for job in jobs:
                part_checked, part_prepared = job.result()
                checked += part_checked
                prepared += part_prepared
            return checked, prepared

        return collect

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


_worker: tuple[Engine, Validator] | None = None


def _start(url: str, make_validator) -> None:
    from ror.store.bulk import WORKER_NICENESS
    from ror.store.engine import make_engine
    global _worker
    os.nice(WORKER_NICENESS)
    _worker = (make_engine(url), make_validator())
    gc.disable()  # collected between jobs (``_check``)


def check_and_prepare(validator: Validator, resources: list[dict], conn: Connection | None, at: str | None,
                      view: Callable[[dict], dict] | None, prepare: Callable[[dict], Any] | None
                      ) -> tuple[list[Checked], list]:
    """``CheckPool.check_and_prepare`` in this process."""
    checked = validator.check_many([view(r) for r in resources] if view else resources, conn, at=at)
    return checked, [prepare(r) for r in resources] if prepare else []


def _check(resources: bytes, at: str | None, view, prepare) -> tuple[list[Checked], list]:
    engine, validator = _worker
    # The young objects collected before a job, when nothing of a job is held. With the collector on, its collections
    # traversed each job's resources and results, and the full ones the NOS tables: 17 % of a check worker's time in a
    # first RPPS import. A job leaves almost nothing in cycles (a few hundred objects in a whole import).
    gc.collect(1)
    with engine.connect() as conn:  # one short read transaction a job: no snapshot held between batches
        return check_and_prepare(validator, orjson.loads(resources), conn, at, view, prepare)
