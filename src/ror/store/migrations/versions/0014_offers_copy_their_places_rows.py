"""Offers hold copies of their places' rows for the orientation search's chained criteria.

``location.near``, ``location.near-insee-code`` and the capacity criteria of an offer search are answered from the
offer's own copies of its places' rows (``ror.store.derived``), and the offers of a specialty in a box are read from
the copies of their places' points kept per specialty code; kept by every write from now on, this copies them for the
offers already stored, at the store's latest transaction. About 6 minutes on the national store (855,000 offers'
place references: 6.8 million rows).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""

from alembic import op

from ror.store import derived

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    derived.copy_again(op.get_bind())


def downgrade() -> None:
    derived.drop_all(op.get_bind())
