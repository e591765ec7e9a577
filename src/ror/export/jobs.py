"""Persisted export jobs, run in background threads of the server process.

- A job belongs to the application that kicked it off: for any other application it does not exist
  (404, never 403).
- At most ``export_max_jobs`` run at once per process (a thread pool); the others wait ``queued``.
- The process that queues or runs a job refreshes its ``heartbeat``; a job whose heartbeat is older
  than ``export_stale_after_s`` belonged to a process that stopped (restart, crash) and is marked
  ``failed`` by whichever process looks next — the client starts a new export (Bulk Data clients
  handle a failed job; resuming would need the snapshot's index rows, which may have been pruned).
- ``DELETE`` removes the job and its files at once; a run in progress (in any process) notices
  that its row is gone at its next batch, stops and removes what it wrote.
- Finished jobs and their files are deleted ``export_expiry_s`` after they finished.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import Engine, delete, insert, select, update

from ror.errors import NotFound
from ror.export.request import ExportRequest
from ror.export.runner import Cancelled, ExportResult, pin_snapshot, run_export
from ror.export.schema import export_job
from ror.fhir.rights import Caller
from ror.fhirdates import now_stamp, stamp
from ror.settings import Settings
from ror.store.engine import write_transaction

log = logging.getLogger("ror.export")
_JOB_ID_LEN = 36


def _stamp_in(seconds: float) -> str:
    return stamp(datetime.now(UTC) + timedelta(seconds=seconds))


def manifest_outputs(result: ExportResult) -> dict:
    return {"output": [{"type": f.type, "file": f.name, "count": f.count} for f in result.files], "error": []}


@dataclass
class Job:
    id: str
    owner: str
    profile: int
    request: str
    params: ExportRequest
    status: str
    progress: str | None
    transaction_time: str | None
    manifest: dict | None
    error: str | None
    created: str
    finished: str | None
    expires: str | None


class ExportJobs:
    """Job store and background runner of one server process."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.root = Path(settings.export_dir)
        self._local: set[str] = set()  # jobs queued or running in this process
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # -- database ------------------------------------------------------------------------------------
    def _write(self, stmt):
        with write_transaction(self.engine) as conn:
            return conn.execute(stmt).rowcount

    def _row(self, job_id: str):
        with self.engine.connect() as conn, conn.begin():
            return conn.execute(select(export_job).where(export_job.c.id == job_id)).mappings().first()

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    # -- API -------------------------------------------------------------------------------------------
    def submit(self, caller: Caller, req: ExportRequest, request_url: str) -> str:
        self.reap()
        job_id = str(uuid.uuid4())
        now = now_stamp()
        self._write(insert(export_job).values(
            id=job_id, owner=caller.app_id, profile=str(caller.profile), request=request_url[:4000],
            params=orjson.dumps(req.to_json()), status="queued", progress="queued", created=now, heartbeat=now))
        with self._lock:
            self._local.add(job_id)
            self._start()
        assert self._pool is not None
        self._pool.submit(self._run, job_id, req, caller.profile)
        return job_id

    def get(self, job_id: str, caller: Caller) -> Job:
        """The caller's job; NotFound for unknown ids and for another application's jobs alike."""
        row = self._row(job_id) if len(job_id) <= _JOB_ID_LEN else None
        if row is None or row["owner"] != caller.app_id:
            raise NotFound(f"No export job '{job_id}' (unknown, expired or deleted)", expression="_jobId")
        if row["status"] in ("queued", "running") and row["heartbeat"] < _stamp_in(-self.settings.export_stale_after_s):
            self.reap()
            row = self._row(job_id)
            if row is None:
                raise NotFound(f"No export job '{job_id}' (unknown, expired or deleted)", expression="_jobId")
        return Job(id=row["id"], owner=row["owner"], profile=int(row["profile"]), request=row["request"],
                   params=ExportRequest.from_json(orjson.loads(row["params"])), status=row["status"],
                   progress=row["progress"], transaction_time=row["transaction_time"],
                   manifest=orjson.loads(row["manifest"]) if row["manifest"] else None, error=row["error"],
                   created=row["created"], finished=row["finished"], expires=row["expires"])

    def delete(self, job_id: str, caller: Caller) -> None:
        self.get(job_id, caller)
        self._write(delete(export_job).where(export_job.c.id == job_id))
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def file(self, job_id: str, name: str, caller: Caller) -> tuple[Path, str, int]:
        """(path, type, count) of one output file of the caller's completed job."""
        job = self.get(job_id, caller)
        for out in (job.manifest or {}).get("output", ()):
            if out["file"] == name and job.status == "completed":
                path = self.folder(job_id) / name
                if path.is_file():
                    return path, out["type"], out["count"]
        raise NotFound(f"Export job '{job_id}' has no file '{name}'", expression="file")

    # -- background ------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.settings.export_max_jobs),
                                            thread_name_prefix="ror-export")
        if self._ticker is None or not self._ticker.is_alive():
            self._ticker = threading.Thread(target=self._tick, name="ror-export-heartbeat", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        interval = max(0.5, min(10.0, self.settings.export_stale_after_s / 4))
        rounds = 0
        while not self._stop.wait(interval):
            try:
                self.heartbeat()
                rounds += 1
                if rounds % 6 == 0:
                    self.reap()
            except Exception:  # keep beating: a transient database error must not fail every job
                log.exception("export heartbeat failed")

    def heartbeat(self) -> None:
        with self._lock:
            ids = sorted(self._local)
        if ids:
            self._write(update(export_job).where(export_job.c.id.in_(ids),
                                                 export_job.c.status.in_(("queued", "running")))
                        .values(heartbeat=now_stamp()))

    def reap(self) -> dict[str, int]:
        """Fail the jobs of stopped processes; delete expired jobs, their files and orphan folders."""
        now = now_stamp()
        stale = _stamp_in(-self.settings.export_stale_after_s)
        with self._lock:
            mine = set(self._local)
        failed = self._write(update(export_job).where(
            export_job.c.status.in_(("queued", "running")), export_job.c.heartbeat < stale,
            export_job.c.id.not_in(sorted(mine)) if mine else export_job.c.id.is_not(None))
            .values(status="failed", finished=now, expires=_stamp_in(self.settings.export_expiry_s),
                    error="The export was interrupted (the server process running it stopped); start a new one"))
        with self.engine.connect() as conn, conn.begin():
            expired = [r for (r,) in conn.execute(select(export_job.c.id).where(export_job.c.expires < now))]
        for job_id in expired:
            self._write(delete(export_job).where(export_job.c.id == job_id))
            shutil.rmtree(self.folder(job_id), ignore_errors=True)
        orphans = 0
        if self.root.is_dir():
            # Folders first, then the jobs: a job's row is written before its folder, so a folder
            # listed here whose job is not in the table afterwards has none.
            folders = [p for p in self.root.iterdir() if p.is_dir() and len(p.name) == _JOB_ID_LEN]
            with self.engine.connect() as conn, conn.begin():
                known = {r for (r,) in conn.execute(select(export_job.c.id))}
            for p in folders:
                if p.name not in known:
                    shutil.rmtree(p, ignore_errors=True)
                    orphans += 1
        return {"failed": failed, "expired": len(expired), "orphans": orphans}

    def _run(self, job_id: str, req: ExportRequest, profile: int) -> None:
        folder = self.folder(job_id)
        try:
            if not self._write(update(export_job).where(export_job.c.id == job_id, export_job.c.status == "queued")
                               .values(status="running", progress="starting", heartbeat=now_stamp())):
                return  # deleted (or failed as stale) while queued
            snap = pin_snapshot(self.engine)
            self._write(update(export_job).where(export_job.c.id == job_id).values(
                snapshot_tx=snap.tx, transaction_time=snap.transaction_time))

            def check(progress: str) -> None:
                if not self._write(update(export_job).where(export_job.c.id == job_id,
                                                            export_job.c.status == "running")
                                   .values(progress=progress[:200])):
                    raise Cancelled

            result = run_export(self.engine, self.settings, req, profile, folder, snap, check)
            done = self._write(update(export_job).where(export_job.c.id == job_id, export_job.c.status == "running")
                               .values(status="completed", progress="completed", finished=now_stamp(),
                                       expires=_stamp_in(self.settings.export_expiry_s),
                                       manifest=orjson.dumps(manifest_outputs(result))))
            if not done:
                raise Cancelled
        except Cancelled:
            shutil.rmtree(folder, ignore_errors=True)
        except Exception as e:
            log.exception("export %s failed", job_id)
            shutil.rmtree(folder, ignore_errors=True)
            message = getattr(e, "message", None) or "internal error; it has been logged"
            self._write(update(export_job).where(export_job.c.id == job_id).values(
                status="failed", finished=now_stamp(), expires=_stamp_in(self.settings.export_expiry_s),
                error=f"The export failed: {message}"[:2000]))
        finally:
            with self._lock:
                self._local.discard(job_id)

    def close(self, wait: bool = False) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
