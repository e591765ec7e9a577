"""Data-quality runs and their indicators per region, department and sector.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from alembic import op

from ror.quality.schema import quality_indicator, quality_run

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    quality_run.create(op.get_bind())
    quality_indicator.create(op.get_bind())


def downgrade() -> None:
    quality_indicator.drop(op.get_bind())
    quality_run.drop(op.get_bind())
