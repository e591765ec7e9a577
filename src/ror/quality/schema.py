"""Tables of the quality runs: one row per run, and the indicator counts of each run per
(region, department, sector) cell, from which every grouping is summed at read time."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text

from ror.store.schema import PkType, Stamp

metadata = MetaData()

quality_run = Table(
    "quality_run",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("started_at", Stamp, nullable=False),
    Column("finished_at", Stamp, nullable=False),
    Column("region", String(8)),  # None: the whole store
    Column("snapshot_tx", BigInteger, nullable=False),
    Column("created", Integer, nullable=False),  # Tasks raised
    Column("updated", Integer, nullable=False),  # Tasks whose problem text changed, or reopened
    Column("closed", Integer, nullable=False),  # Tasks closed (anomaly gone or focus deleted)
    Column("unchanged", Integer, nullable=False),
)

quality_indicator = Table(
    "quality_indicator",
    metadata,
    Column("run_id", BigInteger, nullable=False),
    Column("region", String(8), nullable=False),
    Column("department", String(8), nullable=False),
    Column("sector", String(20), nullable=False),
    Column("counts", Text, nullable=False),  # JSON object of the counts (ror.quality.indicators.COUNTS)
    PrimaryKeyConstraint("run_id", "region", "department", "sector", name="pk_quality_indicator"),
)
