"""Contributions remember the digest of what the source said and the resource's version once merged.

A monthly reload of unchanged files merged, checked and compared every resource again to find that nothing changed
(about 2,000 records/s). With these two columns an entity that repeats what its source said, on a resource no one
changed since, is only marked as seen (``ror.feeds.runs``, ``Run._repeats``). Created by 0003 for a new database
(the table's definition has them); rows written before stay NULL, so their first reload merges them as before.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import inspect

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_COLUMNS = (("said", sa.LargeBinary()), ("said_version", sa.Integer()))


def upgrade() -> None:
    present = {c["name"] for c in inspect(op.get_bind()).get_columns("feed_contribution")}
    for name, kind in _COLUMNS:
        if name not in present:
            op.add_column("feed_contribution", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feed_contribution") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
