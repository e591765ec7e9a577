"""Offers hold copies of their places' rows for the orientation search's chained criteria.

``location.near``, ``location.near-insee-code`` and the capacity criteria of an offer search are answered from the
offer's own copies of its places' rows (``ror.store.derived``), kept by every write from now on: this copies them for
the offers already stored, at the store's latest transaction. About 4 minutes on the national store (855,000 offers'
place references: 5.9 million rows).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""

from alembic import op

from ror.store import derived
from ror.store.engine import dbapi_rows
from ror.store.schema import INDEX_TABLES

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _drop_copies() -> None:
    keys = ", ".join(f"'{k}'" for k in sorted(derived.COPIES))
    for kind in sorted(set(derived.COPIED.values())):
        op.execute(f"DELETE FROM {INDEX_TABLES[kind].name} WHERE param IN ({keys})")


def upgrade() -> None:
    conn = op.get_bind()
    _drop_copies()
    derived.copy_all(conn, dbapi_rows(conn, "SELECT coalesce(max(tx), 0) FROM resource")[0][0])


def downgrade() -> None:
    _drop_copies()
