"""Feeds remember each record they gave (``feed_record``): a reload does not map an unchanged record again.

A monthly reload of unchanged files still read, parsed and mapped every record (RPPS: 90 % of its reader's time) to
find, entity by entity, that each repeated what was said (0018). ``ror.feeds.memo`` keeps the digest of each record
with the resources it gave. Created by 0003 for a new database (the table is in its list); a store upgraded from 0018
maps every record once more, at its first reload.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-27
"""

from alembic import op

from ror.feeds.schema import feed_record

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    feed_record.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    feed_record.drop(op.get_bind(), checkfirst=True)
