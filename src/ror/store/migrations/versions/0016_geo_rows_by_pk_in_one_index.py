"""A resource's coordinates read from its one pk-led index.

Migration 0010 added ``ix_idx_geo_pk_point (pk, until_tx, param, lat, lon)`` beside ``ix_idx_geo_pk (pk, until_tx)``,
its prefix: every geographic row was written into both, and a first load built both. ``ix_idx_geo_pk`` now carries
the columns (as 0013 and 0015 did for the reference, token and number rows) and the other is dropped: one index
less to write a row and to build after a first load (the national store's 2.1 million geographic rows; 14 s).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27
"""

from alembic import op
from sqlalchemy import inspect

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_CARRIED = ["pk", "until_tx", "param", "lat", "lon"]


def _pk_index(columns: list[str]) -> None:
    existing = {ix["name"]: ix["column_names"] for ix in inspect(op.get_bind()).get_indexes("idx_geo")}
    if existing.get("ix_idx_geo_pk") != columns:
        op.drop_index("ix_idx_geo_pk", table_name="idx_geo", if_exists=True)
        op.create_index("ix_idx_geo_pk", "idx_geo", columns)


def upgrade() -> None:
    _pk_index(_CARRIED)
    op.drop_index("ix_idx_geo_pk_point", table_name="idx_geo", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_idx_geo_pk_point", "idx_geo", _CARRIED)
    _pk_index(["pk", "until_tx"])
