"""A resource's coordinates read from an index alone.

The geographic test of a chained ``near`` (an offer found by its specialty, then its places tested) read
each place's row of ``idx_geo`` through the (pk, until_tx) index, then the table for its coordinates: two
B-tree descents a place. With the coordinates in the index, one (national store, the largest specialty
around Paris: 22,600 offers tested, 320 → 180 ms).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_idx_geo_pk_point ON idx_geo (pk, until_tx, param, lat, lon)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_idx_geo_pk_point")
