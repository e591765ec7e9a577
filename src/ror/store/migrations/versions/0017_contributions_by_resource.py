"""Source contributions found by resource, whatever the source.

A region's import merges each resource with what the other regions that describe it said (``ror.feeds.precedence``,
``merge``'s ``others``): their contributions are read by (rtype, rid), which the primary key (source, rtype, rid)
does not lead with. Without this index the statement scanned the table (183,000 RPPS contributions at 270,000
resources) for every batch. Created by 0003 for a new database (the table's definition has it).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27
"""

from alembic import op
from sqlalchemy import inspect

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_NAME = "ix_feed_contribution_resource"


def upgrade() -> None:
    if _NAME not in {ix["name"] for ix in inspect(op.get_bind()).get_indexes("feed_contribution")}:
        op.create_index(_NAME, "feed_contribution", ["rtype", "rid"])


def downgrade() -> None:
    op.drop_index(_NAME, table_name="feed_contribution")
