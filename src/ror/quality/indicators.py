"""The indicators of a stored quality run, summed per region, department or sector (docs/quality.md).

Runs store counts per (region, department, sector) cell; rates are computed from the summed counts
(0 when the denominator is 0, like the ANS peuplement rate, spec §4.5)."""

from __future__ import annotations

from collections import Counter

import orjson
from sqlalchemy import Connection, or_, select

from ror.capacity.summary import REGIONS
from ror.quality.schema import quality_indicator, quality_run

GROUPINGS = ("region", "department", "sector")
COUNTS = ("offers", "offersComplete", "offersInProgress", "offersToDo", "offersOutsidePopulation",
          "establishments", "establishmentsComplete", "establishmentsInProgress", "establishmentsToDo",
          "locations", "locationsWithCapacity", "locationsCapacityUpToDate",
          "nosChecked", "nosConform", "codesRetired", "codesUnknown", "openAnomalies")
RATES = {"completenessRate": ("offersComplete", "offers"),
         "establishmentCompletenessRate": ("establishmentsComplete", "establishments"),
         "nosConformityRate": ("nosConform", "nosChecked"),
         "capacityUpToDateRate": ("locationsCapacityUpToDate", "locationsWithCapacity")}


def _rates(c: Counter) -> dict:
    out = {k: int(c.get(k, 0)) for k in COUNTS}
    for name, (num, den) in RATES.items():
        out[name] = round(c[num] / c[den], 4) if c[den] else 0.0
    return out


def latest_run(conn: Connection, region: str | None = None, run_id: int | None = None):
    q = select(quality_run)
    if run_id is not None:
        q = q.where(quality_run.c.id == run_id)
    elif region is None:
        q = q.where(quality_run.c.region.is_(None))
    else:
        q = q.where(or_(quality_run.c.region.is_(None), quality_run.c.region == region))
    return conn.execute(q.order_by(quality_run.c.id.desc()).limit(1)).first()


def runs(conn: Connection, limit: int = 100) -> list[dict]:
    return [{"id": r.id, "startedAt": r.started_at, "finishedAt": r.finished_at, "region": r.region,
             "tasksCreated": r.created, "tasksUpdated": r.updated, "tasksClosed": r.closed,
             "tasksUnchanged": r.unchanged}
            for r in conn.execute(select(quality_run).order_by(quality_run.c.id.desc()).limit(limit))]


def indicators(conn: Connection, by: str, region: str | None = None, run_id: int | None = None) -> dict:
    """The groups of the latest run (covering ``region`` when given), or of run ``run_id``."""
    if by not in GROUPINGS:
        raise ValueError(by)
    run = latest_run(conn, region, run_id)
    if run is None:
        return {"by": by, "region": region, "run": None, "groups": [], "total": _rates(Counter())}
    groups: dict[str, Counter] = {}
    total: Counter = Counter()
    q = select(quality_indicator).where(quality_indicator.c.run_id == run.id)
    if region is not None:
        q = q.where(quality_indicator.c.region == region)
    for row in conn.execute(q):
        counts = Counter(orjson.loads(row.counts))
        key = getattr(row, by)
        groups.setdefault(key, Counter()).update(counts)
        total.update(counts)
    out = []
    for key in sorted(groups):
        g = {"key": key, **_rates(groups[key])}
        if by == "region" and key in REGIONS:
            g = {"key": key, "label": REGIONS[key], **_rates(groups[key])}
        out.append(g)
    return {"by": by, "region": region,
            "run": {"id": run.id, "startedAt": run.started_at, "finishedAt": run.finished_at, "region": run.region},
            "groups": out, "total": _rates(total)}
