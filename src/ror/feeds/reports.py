"""Reading back recorded runs: the run rows, every problem of a run (with its record), its change report."""

from __future__ import annotations

from sqlalchemy import Engine, select

from ror.feeds.schema import feed_change, feed_problem, feed_problem_record, feed_run


def list_runs(engine: Engine, source: str | None = None, last: int = 20) -> list[dict]:
    q = select(feed_run).order_by(feed_run.c.run_id.desc()).limit(last)
    if source:
        q = q.where(feed_run.c.source == source)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def run_problems(engine: Engine, run_id: int) -> list[dict]:
    p, r = feed_problem.c, feed_problem_record.c
    query = (select(p.problem_id, p.run_id, p.line, p.field, p.severity, p.reason, r.record)
             .join(feed_problem_record, (r.run_id == p.run_id) & (r.record_no == p.record_no))
             .where(p.run_id == run_id).order_by(p.problem_id))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def run_changes(engine: Engine, run_id: int) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(feed_change).where(feed_change.c.run_id == run_id)
            .order_by(feed_change.c.outcome, feed_change.c.rtype, feed_change.c.rid))]
