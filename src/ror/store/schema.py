"""Tables of the national store (SQLAlchemy Core, one schema for SQLite and PostgreSQL).

``resource`` holds the current version of every resource as the JSON bytes served to clients;
``resource_version`` the prior versions. Searches never read JSON: they run on the ``idx_*`` tables,
filled at write time from the search-parameter definitions.

Index rows are *temporal*: each carries the transaction that wrote it (``since_tx``) and the one
that superseded it (``until_tx``, ``LIVE_TX`` while current). A search pinned to a snapshot
transaction S sees exactly the rows with ``since_tx <= S < until_tx``, which is what lets a `next`
link keep returning the result set of the first page while data changes (DESIGN.md §3). Rows
superseded longer ago than the cursor lifetime are pruned.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

LIVE_TX = 2**62  # until_tx of a current index row

metadata = MetaData()

# Bytewise collation on PostgreSQL so that prefix searches are index range scans, as on SQLite.
Folded = String(200).with_variant(String(200, collation="C"), "postgresql")
Key = String(64).with_variant(String(64, collation="C"), "postgresql")
Code = String(128).with_variant(String(128, collation="C"), "postgresql")
Stamp = String(24).with_variant(String(24, collation="C"), "postgresql")  # ISO-8601 UTC, ms, "Z"

PkType = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is the rowid on SQLite

tx_sequence = Sequence("ror_tx_seq")  # PostgreSQL transaction counter

tx_counter = Table(  # SQLite transaction counter (writers are serialised there anyway)
    "tx_counter",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("value", BigInteger, nullable=False),
)

resource = Table(
    "resource",
    metadata,
    Column("pk", PkType, primary_key=True, autoincrement=True),
    Column("rtype", String(40), nullable=False),
    Column("rid", Key, nullable=False),
    Column("version", Integer, nullable=False),
    Column("tx", BigInteger, nullable=False),
    Column("last_updated", Stamp, nullable=False),
    Column("region", String(8)),
    Column("content_hash", LargeBinary(16), nullable=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("rtype", "rid", name="uq_resource_type_id"),
    Index("ix_resource_tx", "tx"),
    # A reload's check that a resource still has the content a line gave (bulk._unchanged) reads this index
    # rather than the resource's row, whose page holds its body: ~35 µs a line of cold pages at national scale.
    Index("ix_resource_content", "pk", "content_hash"),
)

resource_version = Table(
    "resource_version",
    metadata,
    Column("pk", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    Column("tx", BigInteger, nullable=False),
    Column("last_updated", Stamp, nullable=False),
    Column("body", LargeBinary, nullable=False),
    PrimaryKeyConstraint("pk", "version", name="pk_resource_version"),
)


def _index_table(name: str, *value_columns: Column, lookup: tuple[str, ...],
                 extra: tuple[tuple[str, ...], ...] = (), by_pk: tuple[str, ...] = ()) -> Table:
    """``by_pk``: columns the ``(pk, until_tx)`` index carries too, so that reading a resource's rows by pk visits
    no table row."""
    cols = [Column("pk", BigInteger, nullable=False), Column("param", String(80), nullable=False),
            *value_columns,
            # Ordinal of the record (capacity, price, equipment… extension instance) the value comes
            # from, 0 outside records: lets several criteria be required on the same record.
            Column("grp", SmallInteger, nullable=False),
            # Bit p set when access profile p may see the value (ror.profiles.access.row_mask).
            Column("vis", SmallInteger, nullable=False),
            Column("since_tx", BigInteger, nullable=False),
            Column("until_tx", BigInteger, nullable=False)]
    # pk before since_tx: the live rows of one value come out in pk order, so that a page of them is their first
    # rows and a union of values' sets (a ``_filter`` OR) is merged, neither sorted nor deduplicated in a temporary
    # B-tree (migration 0012, docs/search.md).
    indexes = [Index(f"ix_{name}_lookup", "param", *lookup, "until_tx", "pk", "since_tx"),
               Index(f"ix_{name}_pk", "pk", "until_tx", *by_pk)]
    indexes += [Index(f"ix_{name}_lookup{i}", "param", *cols_, "until_tx", "pk", "since_tx")
                for i, cols_ in enumerate(extra, 2)]
    return Table(name, metadata, *cols, *indexes)


# The source line each resource was last loaded from (``ror load``): a reload skips, without parsing it,
# a line whose digest is known while the resource still has the content that line gave (bulk.py).
load_fingerprint = Table(
    "load_fingerprint",
    metadata,
    Column("pk", BigInteger, primary_key=True, autoincrement=False),
    Column("digest", LargeBinary(16), nullable=False),
    Column("content_hash", LargeBinary(16), nullable=False),
    Index("ix_load_fingerprint_digest", "digest", "pk", "content_hash"),  # covers the reload's look-up (0011)
)

# A criterion tested on each resource another one found reads the resource's rows of its parameter from the index
# alone, not each of an offer's ~25 token rows from the table (0015; a capacity status tested on 2,360 national
# offers: 41 → 12 ms).
idx_token = _index_table("idx_token", Column("system", String(250)), Column("code", Code),
                         lookup=("code", "system"), by_pk=("param", "code"))
idx_string = _index_table("idx_string", Column("norm", Folded), Column("exact", String(400)),
                          lookup=("norm",))
# A chained criterion reads each resource's references by pk (an offer's places, for `location.near…`): from the
# index alone (0013; the national `near` statements −26 %).
idx_ref = _index_table("idx_ref", Column("target_type", String(40)), Column("target_id", Key),
                       lookup=("target_id", "target_type"), by_pk=("param", "target_type", "target_id"))
idx_date = _index_table("idx_date", Column("low", Stamp, nullable=False), Column("high", Stamp, nullable=False),
                        lookup=("low", "high"), extra=(("high", "low"),))
# Each type's `_lastUpdated` rows in pk order: the drive of a search without a selective criterion (0009).
Index("ix_idx_date_param_pk", idx_date.c.param, idx_date.c.pk, idx_date.c.until_tx, idx_date.c.since_tx)
idx_number = _index_table("idx_number", Column("value", Float, nullable=False), lookup=("value",),
                          by_pk=("param", "value"))
idx_quantity = _index_table("idx_quantity", Column("value", Float, nullable=False),
                            Column("system", String(250)), Column("code", String(64)),
                            lookup=("value", "code"))
# A resource's coordinates read from an index alone: the geographic test of each offer found by another
# criterion (`location.near…`, chained) visited the table for every place (0010, then in the pk index: 0016).
idx_geo = _index_table("idx_geo", Column("lat", Float, nullable=False), Column("lon", Float, nullable=False),
                       lookup=("lat", "lon"), by_pk=("param", "lat", "lon"))
idx_text = _index_table("idx_text", Column("content", Text, nullable=False), lookup=())

INDEX_TABLES = {
    "token": idx_token,
    "string": idx_string,
    "reference": idx_ref,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "geo": idx_geo,
    "text": idx_text,
}
