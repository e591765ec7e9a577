"""NOS terminologies: tables, versions, temporal concepts and value-set members, load reports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

from ror.terminology.schema import TABLES

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)
    op.execute("INSERT INTO nos_state (id, generation) VALUES (1, 0)")


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
