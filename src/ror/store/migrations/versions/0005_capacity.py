"""Capacity history (bed availability time series).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

from ror.capacity.history import capacity_event

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    capacity_event.create(op.get_bind())


def downgrade() -> None:
    capacity_event.drop(op.get_bind())
