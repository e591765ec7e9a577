"""Trust space: applications, their certificates and write rights, tokens, signing keys, audit.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

from ror.access.schema import TABLES

revision = "0004"
down_revision = "0003"
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
