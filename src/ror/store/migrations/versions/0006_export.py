"""Bulk Data export jobs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from alembic import op

from ror.export.schema import export_job

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    export_job.create(op.get_bind())


def downgrade() -> None:
    export_job.drop(op.get_bind())
