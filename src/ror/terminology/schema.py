"""Tables of the NOS terminologies, on the store's ``metadata`` (migration 0002).

Every version of every table is kept. Concepts and value-set members are *temporal* rows: each carries
the table version that introduced that state (``since_version``) and the one that replaced it
(``until_version``, NULL while current). A label change, a retirement (``date_end`` set or status
``retired``) or a reactivation therefore never overwrites anything: it closes the current row and
opens a new one, so the history of a code (validity periods, labels) can always be replayed.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from ror.store.schema import Code, PkType, metadata

Day = String(19)  # ISO-8601 date-time without zone, "YYYY-MM-DDTHH:MM:SS" (the NOS dates carry no zone)

nos_table = Table(
    "nos_table",
    metadata,
    Column("pk", PkType, primary_key=True, autoincrement=True),
    Column("kind", String(12), nullable=False),  # CodeSystem | ValueSet
    Column("url", String(250), nullable=False),
    Column("name", String(120), nullable=False),  # NOS name: TRE_R213-ModePriseEnCharge, JDV_J19-...
    Column("oid", String(64)),
    Column("title", Text),
    Column("current_version", BigInteger),  # nos_version.pk of the latest loaded version
    UniqueConstraint("url", name="uq_nos_table_url"),
)

nos_version = Table(
    "nos_version",
    metadata,
    Column("pk", PkType, primary_key=True, autoincrement=True),
    Column("table_pk", BigInteger, ForeignKey("nos_table.pk"), nullable=False),
    Column("version", String(40), nullable=False),
    Column("version_date", Day, nullable=False),  # publication date, orders the versions
    Column("valid_from", Day),
    Column("valid_to", Day),
    Column("source", String(300), nullable=False),  # file it was read from
    Column("load_pk", BigInteger, nullable=False),
    UniqueConstraint("table_pk", "version", name="uq_nos_version"),
)

nos_concept = Table(
    "nos_concept",
    metadata,
    Column("pk", PkType, primary_key=True, autoincrement=True),
    Column("table_pk", BigInteger, nullable=False),
    Column("code", Code, nullable=False),
    Column("display", Text, nullable=False),
    Column("short_label", Text),
    Column("long_label", Text),
    Column("date_valid", Day),
    Column("date_end", Day),  # set: retired from that date
    Column("date_updated", Day),
    Column("status", String(12), nullable=False),  # active | retired (NOS 'deprecated'/'retired' or Date fin)
    Column("since_version", BigInteger, nullable=False),
    Column("until_version", BigInteger),
    Index("ix_nos_concept_code", "table_pk", "code", "until_version"),
)

nos_member = Table(
    "nos_member",
    metadata,
    Column("pk", PkType, primary_key=True, autoincrement=True),
    Column("vs_pk", BigInteger, nullable=False),
    Column("system", String(250), nullable=False),
    Column("code", Code, nullable=False),
    Column("display", Text, nullable=False),
    Column("since_version", BigInteger, nullable=False),
    Column("until_version", BigInteger),
    Index("ix_nos_member_code", "vs_pk", "system", "code", "until_version"),
)

nos_load = Table(
    "nos_load",
    metadata,
    Column("pk", PkType, primary_key=True, autoincrement=True),
    Column("loaded_at", String(24), nullable=False),
    Column("source", String(300), nullable=False),
    Column("report", Text, nullable=False),  # JSON change report, as printed by `ror terminology load`
)

nos_state = Table(  # one row: bumped at each load so that every process refreshes its in-memory cache
    "nos_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", BigInteger, nullable=False),
)

TABLES = [nos_table, nos_version, nos_concept, nos_member, nos_load, nos_state]
