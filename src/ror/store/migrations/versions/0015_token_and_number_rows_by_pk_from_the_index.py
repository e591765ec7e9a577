"""A resource's token and number rows tested by pk from the index alone.

A criterion tested on each resource that another one found (an offer of the specialty in the circle, tested for its
places' capacity status and bed count on its copies, migration 0014) read each of the resource's ~25 token rows from
the table for its ``param`` and ``code`` through the ``(pk, until_tx)`` index: the index now carries them, and the
number rows' ``param`` and ``value`` (national store, 2,360 offers of the largest specialty around Paris tested for a
capacity status: 41 → 12 ms, raw SQL). Rebuilt only where the database has the former columns; 60–80 s on the
national store (27.7 million token rows; about +1 GB).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26
"""

from alembic import op
from sqlalchemy import inspect

from ror.store.schema import idx_number, idx_token

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_CARRIED = {idx_token: ["param", "code"], idx_number: ["param", "value"]}


def _rebuild(table, columns: list[str]) -> None:
    name = f"ix_{table.name}_pk"
    existing = {ix["name"]: ix["column_names"] for ix in inspect(op.get_bind()).get_indexes(table.name)}
    if existing.get(name) != columns:
        op.drop_index(name, table_name=table.name, if_exists=True)
        op.create_index(name, table.name, columns)


def upgrade() -> None:
    for table, carried in _CARRIED.items():
        _rebuild(table, ["pk", "until_tx", *carried])


def downgrade() -> None:
    for table in _CARRIED:
        _rebuild(table, ["pk", "until_tx"])
