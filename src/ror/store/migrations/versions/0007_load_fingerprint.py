"""Fingerprints of loaded source lines (no-op reloads without parsing).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from alembic import op

from ror.store.schema import load_fingerprint

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    load_fingerprint.create(op.get_bind())


def downgrade() -> None:
    load_fingerprint.drop(op.get_bind())
