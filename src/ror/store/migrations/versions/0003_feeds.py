"""Feeds: import runs, their problems and change reports, identity keys, source contributions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

from ror.feeds.schema import TABLES

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
