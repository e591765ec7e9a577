"""The audit trail: one row per request to the FHIR API, the token endpoint and the admin API.

Rows are queued by the request, as tuples in ``AUDIT_COLUMNS`` order, and written in batches by a
background thread (every ``FLUSH_INTERVAL_S``, one DBAPI ``executemany``: through SQLAlchemy's insert
the flush cost about a quarter of the CPU of the reads it audited, profiled), so that auditing never adds a
database write, nor a lock wait, to a request; a clean shutdown flushes what is queued. Nothing secret
is recorded: no header values except the ``Ror-*`` codes, and query parameters that could carry
credentials are blanked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

import orjson
from sqlalchemy import Engine, select

from ror.access.db import plain, reading, writing
from ror.access.schema import access_audit
from ror.errors import InvalidRequest
from ror.store.engine import dbapi_many

log = logging.getLogger("ror.audit")

FLUSH_INTERVAL_S = 0.2
_QUEUE_MAX = 100_000  # rows kept while the database cannot be written; beyond, the oldest are dropped (logged)
_SECRET_PARAMS = frozenset({"access_token", "client_secret", "client_assertion", "password", "token"})
_QUERY_MAX = 4000
AUDIT_HEADER = "x-ror-audit"
# The columns of ``access_audit`` a request fills (all but ``id``), in the order of a queued row.
AUDIT_COLUMNS = ("at", "app_id", "profile", "client_ip", "cert_thumbprint", "method", "path", "query", "operation",
                 "resource_type", "user_profile_code", "role_code", "status", "outcome", "returned", "duration_ms")
_INSERT = f"INSERT INTO access_audit ({', '.join(AUDIT_COLUMNS)}) VALUES ({', '.join(['{p}'] * len(AUDIT_COLUMNS))})"


def audit_header(counts: Mapping[str, int]) -> str:
    """The value of ``X-Ror-Audit`` an inner handler sets to report what it returned:
    ``Organization=3,HealthcareService=10``. The security layer reads and removes it."""
    return ",".join(f"{rtype}={n}" for rtype, n in counts.items())


def parse_audit_header(value: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for part in value.split(","):
        rtype, _, n = part.partition("=")
        if rtype.strip() and n.strip().isdigit():
            counts[rtype.strip()] = counts.get(rtype.strip(), 0) + int(n)
    return counts


def count_resources(body: bytes) -> dict[str, int]:
    """Resources returned in a FHIR JSON response body, by type (a Bundle's entries, or the resource)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(doc, dict):
        return {}
    if doc.get("resourceType") != "Bundle":
        rtype = doc.get("resourceType")
        return {rtype: 1} if isinstance(rtype, str) and rtype != "OperationOutcome" else {}
    counts: dict[str, int] = {}
    for entry in doc.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        rtype = res.get("resourceType") if isinstance(res, dict) else None
        if isinstance(rtype, str) and rtype != "OperationOutcome":
            counts[rtype] = counts.get(rtype, 0) + 1
    return counts


def scrub_query(query: str) -> str | None:
    """The query string as recorded: credential-like parameters blanked, length capped."""
    if not query:
        return None
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
        query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs])
    return query[:_QUERY_MAX]


class AuditLog:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._queue: list[tuple] = []
        self._lock = threading.Lock()
        # Held while a flush writes: a query's flush waits for the writer thread's (which may hold the latest rows).
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def record(self, row: tuple) -> None:
        """Queue one row (values in ``AUDIT_COLUMNS`` order); the writer thread starts on first use."""
        with self._lock:
            self._queue.append(row)
            if len(self._queue) > _QUEUE_MAX:
                del self._queue[: len(self._queue) - _QUEUE_MAX]
                log.error("audit queue full: oldest rows dropped (is the database writable?)")
            if self._thread is None:
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="ror-audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the database is down: rows stay queued, the next flush retries
                log.exception("audit rows could not be written; will retry")

    def flush(self) -> None:
        """Write what is queued now (also what admin queries call first, to see the latest requests), once a flush
        under way is done: the writer thread may have taken the rows just before and not committed them yet."""
        with self._flushing:
            with self._lock:
                rows, self._queue = self._queue, []
            if not rows:
                return
            try:
                with writing(self.engine) as conn:
                    dbapi_many(conn, _INSERT, rows)
            except Exception:
                with self._lock:
                    self._queue[:0] = rows
                raise

    def close(self) -> None:
        """Stop the writer thread and write the last rows (logged, not raised, if that fails: shutdown goes on)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop = True
            self._wake.set()
            thread.join(10)
        try:
            self.flush()
        except Exception:
            log.exception("audit rows lost at shutdown: the database could not be written")

    def query(self, *, app_id: str | None = None, since: str | None = None, until: str | None = None,
              status: int | None = None, operation: str | None = None, outcome: str | None = None,
              before_id: int | None = None, limit: int = 100) -> list[dict]:
        """Audit rows, newest first; ``since``/``until`` are stamps or their prefixes (``2026-11-25``)."""
        if not 1 <= limit <= 10_000:
            raise InvalidRequest("limit must be between 1 and 10000", expression="limit")
        self.flush()
        t = access_audit.c
        q = select(access_audit).order_by(t.id.desc()).limit(limit)
        for column, value in ((t.app_id, app_id), (t.status, status), (t.operation, operation),
                              (t.outcome, outcome)):
            if value is not None:
                q = q.where(column == value)
        if since:
            q = q.where(t.at >= since)
        if until:
            q = q.where(t.at < until)
        if before_id is not None:
            q = q.where(t.id < before_id)
        with reading(self.engine) as conn:
            rows = [plain(r) for r in conn.execute(q).mappings().all()]
        for r in rows:
            r["returned"] = orjson.loads(r["returned"]) if r["returned"] else {}
        return rows
