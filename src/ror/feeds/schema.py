"""Tables of the feeds, on the store's ``metadata`` (created by migration 0003).

- ``feed_run``: one row per import run — source, file, checksum, times, status and counts.
- ``feed_problem``: every rejected record (and every warning) of a run, with line, field and reason;
  ``feed_problem_record``: the record each problem is about, once for all the problems of the same record.
- ``feed_change``: the change report of a run — which national resources it created, updated or closed.
- ``feed_identity``: identity keys (``system|value``) -> national resource, the consolidation memory.
- ``feed_contribution``: what each source last said about each resource (hash per element) and the
  run that last saw it: the base of the three-way merge and of disappearance detection; and the digest of
  what it said with the resource's version once merged, which let a reload skip what repeats (``ror.feeds.runs``).
- ``feed_record``: the digest of each record a source gave (its text and what its mapping depends on) with the
  resources it gave, which let a reload skip mapping it again (``ror.feeds.memo``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from ror.store.schema import Key, PkType, Stamp, metadata

feed_run = Table(
    "feed_run",
    metadata,
    Column("run_id", PkType, primary_key=True, autoincrement=True),
    Column("source", String(40), nullable=False),  # finess | rpps | region:<code>
    Column("file_name", String(500), nullable=False),
    Column("file_bytes", BigInteger, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("started_at", Stamp, nullable=False),
    Column("finished_at", Stamp),
    Column("status", String(20), nullable=False),  # running | done | failed | interrupted
    Column("dry_run", Boolean, nullable=False),
    Column("full_extract", Boolean, nullable=False),
    Column("record_limit", Integer),
    Column("records", Integer, nullable=False, default=0),
    Column("created", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("closed", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("warnings", Integer, nullable=False, default=0),
    Column("message", Text),
    Index("ix_feed_run_source", "source", "run_id"),
)

feed_problem = Table(
    "feed_problem",
    metadata,
    Column("problem_id", PkType, primary_key=True, autoincrement=True),
    Column("run_id", BigInteger, nullable=False),
    Column("line", Integer, nullable=False),  # 0: about the whole file
    Column("field", String(200), nullable=False),
    Column("severity", String(10), nullable=False),  # error (record rejected) | warning (record kept)
    Column("reason", Text, nullable=False),
    Column("record_no", BigInteger, nullable=False),  # its record in ``feed_problem_record``
    Index("ix_feed_problem_run", "run_id", "problem_id"),
)

# The raw record (or the merged resource) problems are about, for correction and replay: an RPPS pre-filled offer
# has about four warnings, each with the same record (migration 0020).
feed_problem_record = Table(
    "feed_problem_record",
    metadata,
    Column("run_id", BigInteger, nullable=False),
    Column("record_no", BigInteger, nullable=False),
    Column("record", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "record_no", name="pk_feed_problem_record"),
)

feed_change = Table(
    "feed_change",
    metadata,
    Column("run_id", BigInteger, nullable=False),
    Column("rtype", String(40), nullable=False),
    Column("rid", Key, nullable=False),
    Column("outcome", String(10), nullable=False),  # created | updated | closed
    PrimaryKeyConstraint("run_id", "rtype", "rid", name="pk_feed_change"),
)

feed_identity = Table(
    "feed_identity",
    metadata,
    Column("rtype", String(40), nullable=False),
    Column("key", String(300), nullable=False),
    Column("rid", Key, nullable=False),
    PrimaryKeyConstraint("rtype", "key", name="pk_feed_identity"),
    Index("ix_feed_identity_rid", "rtype", "rid"),
)

feed_contribution = Table(
    "feed_contribution",
    metadata,
    Column("source", String(40), nullable=False),
    Column("rtype", String(40), nullable=False),
    Column("rid", Key, nullable=False),
    Column("scope", String(40), nullable=False),
    Column("facets", LargeBinary, nullable=False),  # JSON {element key: hash} of what the source said
    Column("seen_run", BigInteger, nullable=False),
    Column("closed_run", BigInteger),
    # Digest of the entity the source last said, references resolved, and the resource's version once it was
    # merged (None: rejected, closed, or recorded before migration 0018): the same entity again on an unchanged
    # version is a repeat, not merged again.
    Column("said", LargeBinary),
    Column("said_version", Integer),
    PrimaryKeyConstraint("source", "rtype", "rid", name="pk_feed_contribution"),
    Index("ix_feed_contribution_scope", "source", "scope", "seen_run"),
    # What every source said of a resource: a region's merge reads the other regions' (ror.feeds.precedence)
    Index("ix_feed_contribution_resource", "rtype", "rid"),
)

feed_record = Table(
    "feed_record",
    metadata,
    Column("source", String(40), nullable=False),
    Column("digest", LargeBinary, nullable=False),  # ``Feed.mapped``
    Column("entities", Integer, nullable=False),  # how many it gave: a run's batches count them (``model.weight``)
    # JSON [[rtype, strongest key, scope, rid, said], ...]: each entity of the record; rid and said (hex, the
    # entity's ``said``) are null for an entity an earlier record of the file gave first
    Column("gave", LargeBinary, nullable=False),
    PrimaryKeyConstraint("source", "digest", name="pk_feed_record"),
)

TABLES = [feed_run, feed_problem, feed_problem_record, feed_change, feed_identity, feed_contribution, feed_record]
