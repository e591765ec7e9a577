"""The ``export_job`` table: one row per Bulk Data export, owned by the application that asked."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, String, Table, Text

from ror.store.schema import Stamp, metadata

export_job = Table(
    "export_job",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid4, the _jobId of the status URL
    Column("owner", String(100), nullable=False),  # app_id of the application that kicked it off
    Column("profile", String(2), nullable=False),  # its access profile at kick-off
    Column("request", Text, nullable=False),  # the kick-off URL as the client sent it (manifest.request)
    Column("params", LargeBinary, nullable=False),  # the parsed request (JSON), what the runner executes
    # queued -> running -> completed | failed; cancelled jobs are deleted
    Column("status", String(12), nullable=False),
    Column("progress", String(200)),
    Column("snapshot_tx", BigInteger),
    Column("transaction_time", Stamp),
    Column("manifest", LargeBinary),  # output[] and error[] (JSON)
    Column("error", Text),
    Column("created", Stamp, nullable=False),
    Column("heartbeat", Stamp, nullable=False),  # refreshed by the process running or queueing it
    Column("finished", Stamp),
    Column("expires", Stamp),
    Index("ix_export_job_owner", "owner", "created"),
    Index("ix_export_job_status", "status", "heartbeat"),
)
