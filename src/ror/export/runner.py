"""Run one export: pin a snapshot, work out the resources of each type as SQL over the temporal
index (as of that snapshot, as the caller's access profile sees them), then stream their bodies as
of the snapshot, redacted for the profile, into NDJSON files.

Memory stays bounded: the only per-resource state is the sorted list of primary keys of the type
being written (8 bytes each); bodies are read, redacted and written ``export_batch_size`` at a time,
each batch in its own short read transaction. Writes committed after the snapshot are invisible:
index rows are read as of it and bodies come from ``resource_version`` when the current version is
newer (``repository.bodies(..., snapshot)``), so a concurrent write never tears a file.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, Select, and_, literal, select

from ror.export.request import ExportRequest
from ror.export.writer import NdjsonWriter, OutputFile
from ror.fhirdates import now_stamp
from ror.profiles.searchparams import registry
from ror.search.compile import Compiler
from ror.search.execute import redacted
from ror.search.plan import build_plan
from ror.search.visibility import Visibility, visible
from ror.settings import Settings
from ror.store import repository
from ror.store.engine import current_tx
from ror.store.schema import idx_date, idx_ref, resource


class Cancelled(Exception):
    """The job was deleted while it ran."""


@dataclass
class Snapshot:
    tx: int
    transaction_time: str  # stamp (UTC)


@dataclass
class ExportResult:
    snapshot: Snapshot
    files: list[OutputFile] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.type] = out.get(f.type, 0) + f.count
        return out


def pin_snapshot(engine: Engine) -> Snapshot:
    """The export's snapshot and its ``transactionTime``. The clock is read before the transaction
    number is: a write stamped after ``transactionTime`` either is in the snapshot (and a later
    ``_since=transactionTime`` export repeats it) or is not (and that export brings it)."""
    at = now_stamp()
    with engine.connect() as conn, conn.begin():
        return Snapshot(current_tx(conn), at)


class _Sets:
    """The SQL of each exported type's primary keys, as of the snapshot, for one profile."""

    def __init__(self, req: ExportRequest, settings: Settings, profile: int, snap: int, dialect: str):
        self.req, self.settings, self.profile, self.snap, self.dialect = req, settings, profile, snap, dialect

    def _compiler(self, rtype: str, pairs: list[tuple[str, str]]) -> Compiler:
        plan = build_plan(rtype, pairs, registry(), self.settings, False, self.profile)
        return Compiler(plan, self.settings, self.snap, self.dialect)

    def _matches(self, comp: Compiler) -> Select:
        sub = comp.matches()[0].subquery()
        return select(sub.c.pk)

    def own(self, rtype: str) -> list[tuple[Compiler, Select]]:
        """(compiler, pks) per filter query of the type (ORed), or the whole type."""
        queries = self.req.type_filters.get(rtype) or [[]]
        out = []
        for pairs in queries:
            comp = self._compiler(rtype, pairs)
            out.append((comp, self._matches(comp)))
        return out

    def components(self, rtype: str) -> list[Select]:
        """Selects whose union is the type's export (each ordered by pk, each with one Visibility)."""
        parts: list[Select] = []
        if rtype in self.req.own:
            parts += [q for _, q in self.own(rtype)]
        if self.req.associated and rtype != "HealthcareService":
            for comp, offers in self.own("HealthcareService"):
                parts.append(self._associated(comp, rtype, offers))
        return [self._since(rtype, q) for q in parts]

    # -- associated data (the IG's include set of the full offer) -----------------------------------
    def _refs(self, comp: Compiler, param: str, target: str, sources: Select) -> Select:
        ir = idx_ref.alias()
        return select(ir.c.target_id).where(ir.c.param == param, ir.c.target_type == target,
                                            visible(ir, comp.snap), ir.c.pk.in_(sources))

    def _pks_of(self, rtype: str, rids: Select) -> Select:
        r = resource.alias()
        return select(r.c.pk).where(r.c.rtype == rtype, r.c.rid.in_(rids))

    def _associated(self, comp: Compiler, rtype: str, offers: Select) -> Select:
        vis = comp.vis
        if rtype == "Organization":
            r0, r1, ir = resource.alias(), resource.alias(), idx_ref.alias()
            chain = select(r0.c.pk, r0.c.rid).where(
                r0.c.rtype == "Organization",
                r0.c.rid.in_(self._refs(comp, "HealthcareService.organization", "Organization", offers))
            ).cte("export_orgs", recursive=True)
            chain = chain.union(
                select(r1.c.pk, r1.c.rid).select_from(ir.join(r1, and_(r1.c.rtype == "Organization",
                                                                      r1.c.rid == ir.c.target_id)))
                .where(ir.c.param == "Organization.partof", ir.c.target_type == "Organization",
                       visible(ir, comp.snap), ir.c.pk == chain.c.pk))
            sel = select(chain.c.pk)
        elif rtype == "Location":
            sel = self._pks_of("Location", self._refs(comp, "HealthcareService.location", "Location", offers))
        elif rtype == "PractitionerRole":
            ir = idx_ref.alias()
            sel = select(ir.c.pk).where(ir.c.param == "PractitionerRole.service",
                                        ir.c.target_type == "HealthcareService", visible(ir, comp.snap),
                                        ir.c.target_id.in_(self._pks_rids("HealthcareService", offers)))
        elif rtype == "Practitioner":
            roles = self._associated(comp, "PractitionerRole", offers)
            sel = self._pks_of("Practitioner",
                               self._refs(comp, "PractitionerRole.practitioner", "Practitioner", roles))
        else:
            raise ValueError(rtype)
        return vis.restrict(rtype, sel)

    @staticmethod
    def _pks_rids(rtype: str, pks: Select) -> Select:
        r = resource.alias()
        return select(r.c.rid).where(r.c.rtype == rtype, r.c.pk.in_(pks))

    def _since(self, rtype: str, sel: Select) -> Select:
        sub = sel.subquery()
        q = select(sub.c.pk.label("pk"))
        if self.req.since:
            d = idx_date.alias()
            q = q.where(sub.c.pk.in_(select(d.c.pk).where(d.c.param == f"{rtype}._lastUpdated",
                                                          visible(d, literal(self.snap)),
                                                          d.c.low > self.req.since)))
        return q.distinct().order_by(sub.c.pk)


def _merge(streams: list[Iterator[int]]) -> Iterator[int]:
    last = None
    for pk in heapq.merge(*streams):
        if pk != last:
            yield pk
            last = pk


def type_pks(engine: Engine, sets: _Sets, rtype: str) -> array:
    """The sorted primary keys the type's export holds."""
    out = array("q")
    with engine.connect() as conn, conn.begin():
        conn = conn.execution_options(yield_per=5000)
        streams = [iter(conn.execute(q).scalars()) for q in sets.components(rtype)]
        out.extend(_merge(streams))
    return out


def run_export(engine: Engine, settings: Settings, req: ExportRequest, profile: int, folder: Path,
               snapshot: Snapshot | None = None, check: Callable[[str], None] = lambda progress: None
               ) -> ExportResult:
    """Write the export of ``req`` as ``profile`` sees it into ``folder``. ``check(progress)`` is
    called between batches; it raises ``Cancelled`` to stop the run."""
    snap = snapshot or pin_snapshot(engine)
    sets = _Sets(req, settings, profile, snap.tx, engine.dialect.name)
    # Every type's key list is taken first, right after the snapshot: the index rows it reads are
    # kept by `ror db prune` for the cursor lifetime, long enough; bodies come from versions, never pruned.
    plan: list[tuple[str, array]] = []
    for rtype in req.types:
        check(f"selecting {rtype}")
        plan.append((rtype, type_pks(engine, sets, rtype)))
    total = sum(len(pks) for _, pks in plan)
    done = 0
    writer = NdjsonWriter(folder, settings.export_file_max_resources, settings.export_file_max_bytes)
    batch_size = max(1, settings.export_batch_size)
    try:
        with engine.connect() as conn:
            for rtype, pks in plan:
                for i in range(0, len(pks), batch_size):
                    check(f"{done}/{total} resources written ({rtype})")
                    batch = pks[i:i + batch_size].tolist()
                    with conn.begin():
                        bodies = repository.bodies(conn, batch, snap.tx)
                        items = [(pk, bodies[pk]) for pk in batch if pk in bodies]
                        out = redacted(conn, Visibility(profile, literal(snap.tx)), items)
                    for body in out:
                        writer.write(rtype, body)
                    done += len(batch)
    finally:
        files = writer.close()
    check(f"{done}/{total} resources written")
    return ExportResult(snap, files)
