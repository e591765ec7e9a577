"""Each type's `_lastUpdated` rows in pk order: the drive of a search without a selective criterion.

A page of such a search (the default sort is by pk, keyset ``pk > last``) read every resource of the
type through the (param, low, high) lookup index and sorted them, at every page: a walk through all
offers cost pages × offers. In (param, pk) order a page reads its 200 rows and stops; the first page's
count reads the type's rows only (the (pk, until_tx) index holds every date row of every type).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_idx_date_param_pk ON idx_date (param, pk, until_tx, since_tx)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_idx_date_param_pk")
