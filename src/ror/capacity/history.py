"""The time series of capacity changes: every indicator of every place that appears, changes value or
disappears through the API (PATCH protocol, updates, transactions), when and by which application."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Connection, Index, Integer, String, Table, select

from ror.capacity.indicators import KEY_DIMENSIONS
from ror.capacity.protocol import Change
from ror.store.engine import dbapi_many
from ror.store.schema import Stamp, metadata

capacity_event = Table(
    "capacity_event",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("location_id", String(64), nullable=False),
    # Identifiers (FINESS, idNatStruct) of the establishments the place belongs to, space-delimited.
    Column("establishments", String(400), nullable=False),
    *[Column(d, String(8)) for d in KEY_DIMENSIONS],
    Column("old_value", Integer),
    Column("new_value", Integer),
    Column("at", Stamp, nullable=False),
    Column("app_id", String(100), nullable=False),
    Index("ix_capacity_event_location", "location_id", "at"),
    Index("ix_capacity_event_at", "at"),
)


_COLUMNS = ["location_id", "establishments", *(f'"{d}"' for d in KEY_DIMENSIONS), "old_value", "new_value", "at",
            "app_id"]  # the dimensions are camelCase: quoted for PostgreSQL
_INSERT = f"INSERT INTO capacity_event ({', '.join(_COLUMNS)}) VALUES ({', '.join(['{p}'] * len(_COLUMNS))})"


def record(conn: Connection, location_id: str, establishments: set[str], events: list[Change], at: str,
           app_id: str) -> int:
    """Store the indicator changes of a place (``protocol.changes`` between two versions); returns how many."""
    held = " " + " ".join(sorted(establishments)) + " "
    if events:
        dbapi_many(conn, _INSERT, [(location_id, held, *c.key, c.old, c.new, at, app_id) for c in events])
    return len(events)


@dataclass
class Event:
    location_id: str
    indicator: dict[str, str | None]
    old_value: int | None
    new_value: int | None
    at: str
    app_id: str

    def to_json(self) -> dict:
        return {"location": f"Location/{self.location_id}", "indicator": self.indicator, "old": self.old_value,
                "new": self.new_value, "at": self.at, "application": self.app_id}


def query(conn: Connection, *, location_id: str | None = None, establishment: str | None = None,
          since: str | None = None, until: str | None = None, limit: int = 10_000) -> list[Event]:
    """Events of a place or an establishment over a period (stamps, inclusive), oldest first."""
    t = capacity_event
    q = select(t).order_by(t.c.at, t.c.id).limit(limit)
    if location_id:
        q = q.where(t.c.location_id == location_id)
    if establishment:
        q = q.where(t.c.establishments.contains(f" {establishment} ", autoescape=True))
    if since:
        q = q.where(t.c.at >= since)
    if until:
        q = q.where(t.c.at <= until)
    return [Event(r.location_id, {d: getattr(r, d) for d in KEY_DIMENSIONS}, r.old_value, r.new_value, r.at,
                  r.app_id) for r in conn.execute(q)]
