"""Initial schema: resources, versions, temporal search index, transaction counter.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op
from sqlalchemy.schema import CreateSequence

from ror.store import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = [schema.tx_counter, schema.resource, schema.resource_version, *schema.INDEX_TABLES.values()]


def upgrade() -> None:
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind)
    if bind.dialect.name == "sqlite":
        op.execute("INSERT INTO tx_counter (id, value) VALUES (1, 0)")
    else:
        op.execute(CreateSequence(schema.tx_sequence))


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind)
    if bind.dialect.name != "sqlite":
        op.execute("DROP SEQUENCE ror_tx_seq")
