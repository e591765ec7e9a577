"""The problems of a run share their record (``feed_problem_record``) instead of holding a copy each.

An RPPS pre-filled offer has about four warnings (incomplete pre-fill), and each kept the whole merged resource: at
270,000 resources, 157,142 problem rows held 174 MB of record text, about four copies of each record. A store made
by 0003 has the new shape. An older store's problems move their record to the new table, one copy for the problems
that follow one another in a run with the same record (a resource's problems are booked together); its number is the
first one's problem number. At 270,000 resources the move took 11.6 s; the space the copies took is reused by
the store's next writes.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import inspect

from ror.feeds.schema import feed_problem_record

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def _columns() -> set[str]:
    return {c["name"] for c in inspect(op.get_bind()).get_columns("feed_problem")}


def upgrade() -> None:
    feed_problem_record.create(op.get_bind(), checkfirst=True)
    if "record" not in _columns():
        return
    op.execute("INSERT INTO feed_problem_record (run_id, record_no, record) "
               "SELECT run_id, problem_id, record FROM (SELECT run_id, problem_id, record, "
               "LAG(record) OVER (PARTITION BY run_id ORDER BY problem_id) AS before FROM feed_problem) AS p "
               "WHERE before IS NULL OR before <> record")
    with op.batch_alter_table("feed_problem") as batch:
        batch.add_column(sa.Column("record_no", sa.BigInteger(), nullable=True))
    op.execute("UPDATE feed_problem SET record_no = (SELECT MAX(r.record_no) FROM feed_problem_record r "
               "WHERE r.run_id = feed_problem.run_id AND r.record_no <= feed_problem.problem_id)")
    with op.batch_alter_table("feed_problem") as batch:
        batch.alter_column("record_no", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_column("record")


def downgrade() -> None:
    with op.batch_alter_table("feed_problem") as batch:
        batch.add_column(sa.Column("record", sa.Text(), nullable=True))
    op.execute("UPDATE feed_problem SET record = (SELECT r.record FROM feed_problem_record r "
               "WHERE r.run_id = feed_problem.run_id AND r.record_no = feed_problem.record_no)")
    with op.batch_alter_table("feed_problem") as batch:
        batch.alter_column("record", existing_type=sa.Text(), nullable=False)
        batch.drop_column("record_no")
    feed_problem_record.drop(op.get_bind())
