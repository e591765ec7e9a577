"""Import runs: a feed's records become national resources, in batches, with a recorded report.

Each batch writes in one transaction the resources (through ``repository.write_batch``, which skips unchanged
content), the source contributions, the change rows, the problems and the run counters; its identity keys are
committed in the transaction before; between the two, out of the write lock, it is merged, checked against the
profiles and prepared for the write (``_Staged``). An entity that repeats what its source said last time, on a
resource no one changed since, is only marked as seen (``_repeats``), and a record its source gave in the same
words last time is not even mapped (``ror.feeds.memo``): a monthly reload of unchanged files neither maps, merges
nor checks again. A run killed at any point leaves whole batches, and re-running converges,
because ids derive from identity keys and merged content is deterministic. A dry run does the same work and
rolls every batch back. Disappearance is handled only after a complete, unlimited, full-extract run: resources
the source said before and no longer says are closed (when the source owns their status) or reported, never
deleted, and a mass disappearance beyond ``max_closure_ratio`` is only reported.
"""

from __future__ import annotations

import gc
import hashlib
import re
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ror.errors import InputFileError
from ror.feeds import precedence
from ror.feeds.fileset import FileSet, one_digest
from ror.feeds.identity import Resolver
from ror.feeds.memo import Gave, Memo
from ror.feeds.model import Entity, Feed, Known, Problem, Record, clip, weight
from ror.feeds.readahead import read_ahead
from ror.feeds.schema import feed_change, feed_contribution, feed_problem, feed_problem_record, feed_run
from ror.feeds.validation import FeedValidation, feed_validator
from ror.fhirdates import now_stamp
from ror.profiles.parallel import CheckPool
from ror.settings import get_settings
from ror.store import repository
from ror.store.bulk import gc_paused
from ror.store.engine import WRITE, dbapi_many, dbapi_rows, writer_slot
from ror.store.schema import resource

_CHUNK = 400
_COLLECT_EVERY = 16  # batches: the garbage collector's young objects collected (``Run.execute``)
SHOWN_PROBLEMS = 200  # problems kept in the returned report (all of them are in feed_problem)
# What a source said of resources of one type, and the version it left and they have (``Run._repeats``).
_SAID = ("SELECT c.rid, c.said, c.said_version, r.version FROM feed_contribution c JOIN resource r "
         "ON r.rtype = c.rtype AND r.rid = c.rid WHERE c.source = {{p}} AND c.rtype = {{p}} AND c.rid IN ({}) "
         "AND c.closed_run IS NULL")
# In every digest of what a source said (``_said``): a release that changes the merge rules merges everything again.
_MERGE_RULES = hashlib.sha256(Path(precedence.__file__).read_bytes()).digest()


@dataclass
class RunReport:
    run_id: int
    source: str
    status: str
    dry_run: bool
    counts: Counter
    message: str
    problems: list[Problem] = field(default_factory=list)


def file_digest(path: Path | FileSet) -> tuple[int, str]:
    """Size and SHA-256 of the input; for a set of files (a whole ``$export``) one checksum of the set."""
    if isinstance(path, FileSet):
        return path.digest()
    return one_digest(path)


def _dialect(conn: Connection):
    return postgresql if conn.dialect.name == "postgresql" else sqlite


_PLACEHOLDER = re.compile(rb'"reference":"@([A-Za-z]+)\|([^"\\]*)"')


def _refs(raw: bytes) -> list[tuple[str, str]]:
    """The ``ref()`` placeholders in a serialised resource (found on bytes: 10x cheaper than a walk)."""
    if b'"@' not in raw:
        return []
    return [(t.decode(), k.decode()) for t, k in _PLACEHOLDER.findall(raw)]


def _resolve_refs(raw: bytes, resolver: Resolver) -> bytes:
    def sub(m: re.Match) -> bytes:
        rtype = m.group(1).decode()
        return b'"reference":"' + f"{rtype}/{resolver.reference(rtype, m.group(2).decode())}".encode() + b'"'
    return _PLACEHOLDER.sub(sub, raw)


def _said(e: Entity, raw: bytes) -> bytes:
    """The digest of what a source says of a resource: its entity serialised, references resolved (a reference
    that now names another resource is a change), with its scope and the merge rules; not the values a merge keeps
    once written (``precedence.without_set_once_values``: the date of the monthly file)."""
    parts = (_MERGE_RULES, e.rtype.encode(), e.scope.encode(), precedence.without_set_once_values(raw))
    return hashlib.blake2b(b"\0".join(parts), digest_size=16).digest()


@dataclass
class _Merged:
    """A batch's entities merged (``Run._merge``), and the stored versions the merge started from."""
    keys: list[tuple[str, str]]
    current: dict[tuple[str, str], tuple[repository.Current, dict]]
    bases: dict[tuple[str, str], dict]
    merged: dict[tuple[str, str], dict]
    contrib: dict[tuple[str, str], tuple[str, dict]]
    entities: dict[tuple[str, str], tuple[str, Entity]]
    line_of: dict[tuple[str, str], int]

    def stored_hashes(self) -> dict[tuple[str, str], bytes]:
        return {k: v[0].content_hash for k, v in self.current.items()}

    def update(self, again: _Merged) -> None:
        """Some of the resources merged again (``again``), from newer stored versions."""
        for k in again.keys:
            self.current.pop(k, None)
            self.bases.pop(k, None)
        self.current.update(again.current)
        self.bases.update(again.bases)
        self.merged.update(again.merged)
        self.contrib.update(again.contrib)


@dataclass
class _Staged:
    """A batch between its two write transactions (``Run._begin``, ``Run._end``): its identities assigned in the
    first, written in the second. Between them it is merged, checked against the profiles and prepared for the write,
    without the write lock that the API's writes wait for: an import held it for each whole batch, and a capacity
    PATCH waited up to 2 s (docs/feeds.md, "Runs")."""
    problems: list[Problem]
    done: Counter
    assigned: list[tuple[str, Entity]]
    lines: dict[int, int]
    merged: _Merged | None = None
    checks: Callable[[], tuple[dict, dict]] | None = None  # what ``checked`` and ``ready`` come from, once made
    checked: dict = field(default_factory=dict)
    ready: dict = field(default_factory=dict)  # the resources to write, prepared for it (``repository.prepare_ahead``)


class Run:
    def __init__(self, engine: Engine, feed: Feed, path: Path, *, dry_run: bool, limit: int | None,
                 batch_size: int, full: bool, max_closure_ratio: float,
                 on_batch: Callable[[Counter], None] | None, validate: bool = True, fork_reader: bool | None = None):
        self.engine, self.feed, self.path = engine, feed, path
        self.fork_reader = fork_reader
        self.dry_run, self.limit, self.batch_size, self.full = dry_run, limit, batch_size, full
        self.max_closure_ratio = max_closure_ratio
        self.on_batch = on_batch
        self.counts: Counter = Counter()
        self.shown: list[Problem] = []
        self.problem_records = 0  # records booked in ``feed_problem_record``: the last one's number
        self.seen: set[int] = set()  # (rtype, strongest key) already written by this run
        self.scopes_seen: set[str] = set()
        self.run_id = 0
        self.memo = Memo(feed.source)
        self.deferred: list[tuple[tuple[str, Entity], int]] = []  # held back for a reference not yet written
        # Profile validation of what is stored (``ror.feeds.validation``), large batches in worker processes
        # (``ror.profiles.parallel``); None: ROR_VALIDATE_FEEDS=false.
        self.checks = FeedValidation(feed, pool=CheckPool(engine, feed_validator(), feed_validator)) \
            if validate else None

    # --- bookkeeping ------------------------------------------------------------------------------

    def _start(self, size: int, sha: str) -> None:
        with self.engine.begin() as conn:
            self.run_id = conn.execute(insert(feed_run).returning(feed_run.c.run_id), {
                "source": self.feed.source, "file_name": str(self.path), "file_bytes": size, "file_sha256": sha,
                "started_at": now_stamp(), "status": "running", "dry_run": self.dry_run,
                "full_extract": self.full, "record_limit": self.limit, "records": 0, "created": 0, "updated": 0,
                "unchanged": 0, "closed": 0, "rejected": 0, "warnings": 0}).scalar_one()

    def _finish(self, status: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(feed_run).where(feed_run.c.run_id == self.run_id).values(
                status=status, finished_at=now_stamp(), message=message))

    def _book(self, conn: Connection, problems: list[Problem], done: Counter) -> None:
        if problems:
            numbers: dict[str, int] = {}  # the problems of one record (an offer's warnings) share its text
            for p in problems:
                if p.record not in numbers:
                    self.problem_records += 1
                    numbers[p.record] = self.problem_records
            conn.execute(insert(feed_problem_record), [
                {"run_id": self.run_id, "record_no": no, "record": clip(text)} for text, no in numbers.items()])
            conn.execute(insert(feed_problem), [
                {"run_id": self.run_id, "line": p.line, "field": p.field[:200], "severity": p.severity,
                 "reason": p.reason, "record_no": numbers[p.record]} for p in problems])
            room = SHOWN_PROBLEMS - len(self.shown)
            self.shown.extend(problems[:max(room, 0)])
        if done:
            c = feed_run.c
            conn.execute(update(feed_run).where(c.run_id == self.run_id).values(
                **{k: getattr(c, k) + v for k, v in done.items()}))

    # --- batches --------------------------------------------------------------------------------

    def _transaction(self, work: Callable[[Connection], tuple[list[Problem], Counter]]) -> Counter:
        with writer_slot(self.engine), self.engine.connect() as conn:  # queued with the API's writers
            conn.execution_options(**WRITE)
            trans = conn.begin()
            try:
                problems, done = work(conn)
                if self.dry_run:
                    trans.rollback()
                    with conn.begin():
                        self._book(conn, problems, done)
                else:
                    self._book(conn, problems, done)
                    trans.commit()
            except BaseException:
                if trans.is_active:
                    trans.rollback()
                raise
        self.counts.update(done)
        if self.on_batch and done:  # not the first transaction of a batch (``_stage``): nothing written yet
            self.on_batch(done)
        return done

    def _begin(self, records: list[Record | Known], loose: list[Problem]) -> _Staged | None:
        """Start writing the entities of ``records``; ``loose``: problems not attached to a record (rejections). A
        batch is written in two write transactions (``_Staged``), with, between them and out of the write lock, its
        merge, its profile checks and what the write needs. This is the first transaction and the merge; the checks
        are started, and run in the check workers while this process writes the batch before and reads the next one
        (``_execute``); ``_end`` writes it. None: there are no checks, and the batch is written at once, in one
        transaction."""
        if self.checks is None:
            def whole(conn: Connection) -> tuple[list[Problem], Counter]:
                batch = self._stage(conn, records, loose)
                batch.merged = self._merge(conn, batch.assigned, batch.lines)
                return self._write_staged(conn, batch)

            self._transaction(whole)
            return None
        staged: list[_Staged] = []

        def stage(conn: Connection) -> tuple[list[Problem], Counter]:
            staged.append(self._stage(conn, records, loose))
            return [], Counter()  # nothing to book yet

        self._transaction(stage)
        batch = staged[0]
        with self.engine.connect() as conn:  # reads only: the stored resources, then the NOS tables (workers: theirs)
            batch.merged = m = self._merge(conn, batch.assigned, batch.lines)
            # With what the write needs of the resources to write (the checked ones: new or changed), out of the lock
            # too: their bodies and index rows (the rows were 40 % of the second transaction).
            batch.checks = self.checks.check_ahead(conn, m.keys, m.merged, m.stored_hashes())
        return batch

    def _write(self, records: list[Record | Known], loose: list[Problem], pending: _Staged | None) -> _Staged | None:
        """``_begin`` this batch, then ``_end`` the one before it, ``pending``: returns this one, pending."""
        staged = self._begin(records, loose)
        self._end(pending)
        return staged

    def _end(self, batch: _Staged | None) -> None:
        """The second transaction of a batch ``_begin`` started, once its checks are made."""
        if batch is not None:
            batch.checked, batch.ready = batch.checks()
            self._transaction(lambda conn: self._write_staged(conn, batch))

    def _stage(self, conn: Connection, items: list[Record | Known], loose: list[Problem]) -> _Staged:
        """The first transaction of a batch: identities assigned (their keys committed: a run stopped before the
        second leaves keys that a re-run uses again), the records remembered (``ror.feeds.memo``) and the repeats
        marked as seen; the rest is to merge. A remembered record of which a resource is not a repeat (changed since,
        by the API or another source) is mapped again and taken as if it had not been remembered."""
        problems = list(loose)
        rejected = sum(1 for p in loose if p.severity == "error")
        done: Counter = Counter(records=len(items) + rejected, rejected=rejected)
        recalled = self.memo.recall(conn, [i.digest for i in items if isinstance(i, Known)])
        order: dict[int, int] = {}  # each entity's item (by ``id``): its place in the batch
        assigned, lines, recalls, mapped = self._assign(conn, items, recalled, problems, done, order)
        repeats = self._repeats(conn, assigned + [a for _, got in recalls for a in got])
        stale = [(known, got) for known, got in recalls if any((e.rtype, rid) not in repeats for rid, e in got)]
        if stale:
            claimed = {id(known): {hash((e.rtype, e.keys[0])) for _, e in got} for known, got in stale}
            more, more_lines, _, more_mapped = self._assign(conn, [k for k, _ in stale], {}, problems, done, order,
                                                            claimed)
            kept = {(e.rtype, rid) for known, got in recalls if id(known) not in claimed for rid, e in got} & repeats
            assigned += more
            repeats = kept | self._repeats(conn, assigned)  # again: a resource twice in the batch is merged
            lines.update(more_lines)
            mapped += more_mapped
            assigned.sort(key=lambda a: order[id(a[1])])  # merged in file order
        self.memo.remember(conn, [(r.digest, r.entities) for r in mapped if r.digest],
                           {id(e): rid for rid, e in assigned})
        done["unchanged"] += len(repeats)
        to_merge = [(rid, e) for rid, e in assigned if (e.rtype, rid) not in repeats]
        for _, e in to_merge:
            if e.resource is None:
                e.resource = orjson.loads(e.raw)
        return _Staged(problems, done, to_merge, lines)

    def _write_staged(self, conn: Connection, batch: _Staged) -> tuple[list[Problem], Counter]:
        """The second transaction of a batch: the resources an API write (or another import) changed since they were
        merged are merged again, and checked and prepared here; the others' checks are ``batch.checked``."""
        m = batch.merged
        before = {k: (cur.version, bytes(cur.content_hash)) for k, (cur, _) in m.current.items()}
        now = {k: (cur.version, cur.content_hash) for k, cur in repository.fetch_current(conn, m.keys).items()}
        stale = {k for k in m.keys if before.get(k) != now.get(k)}
        if stale:
            again = self._merge(conn, [(rid, e) for rid, e in batch.assigned if (e.rtype, rid) in stale], batch.lines)
            m.update(again)
            batch.checked = {k: v for k, v in batch.checked.items() if k not in stale}
            batch.ready = {k: v for k, v in batch.ready.items() if k not in stale}
        problems, done = batch.problems, batch.done
        written = self._judge_and_write(conn, m, problems, done, checked=batch.checked,
                                        settled=set(m.keys) - stale, ready=batch.ready)
        done.update(w.outcome for w in written)
        done["warnings"] += sum(1 for p in problems if p.severity == "warning")
        return problems, done

    def _assign(self, conn: Connection, items: list[Record | Known], recalled: dict[bytes, list[Gave]],
                problems: list[Problem], done: Counter, order: dict[int, int],
                claimed: dict[int, set[int]] | None = None
                ) -> tuple[list[tuple[str, Entity]], dict[int, int], list[tuple[Known, list[tuple[str, Entity]]]],
                           list[Record]]:
        """The national id of each entity of ``items``, in file order, its references resolved: the (id, entity)
        pairs, each entity's line, the remembered records recalled (``_recall``) with theirs, and the records mapped.
        A remembered record not in ``recalled`` is mapped again; ``claimed``: for such records (by ``id``) the
        entities they take (those their recall took), whoever took them since. Adds to ``problems`` and ``done``, and
        to ``order`` the place of each entity's item in ``items`` (or where ``order`` already has it)."""
        resolver = Resolver(conn)
        todo: list[tuple[Record, Entity, bytes]] = []
        wanted: set[tuple[str, str]] = set()
        recalls: list[tuple[Known, list[tuple[str, Entity]]]] = []
        mapped: list[Record] = []
        for place, item in enumerate(items):
            place = order.setdefault(id(item), place)
            if isinstance(item, Known):
                got = self._recall(recalled.get(item.digest))
                if got is not None:
                    recalls.append((item, got))
                    continue
                records = []
                for again in self.feed.again(item):
                    if isinstance(again, Problem):
                        problems.append(again)
                        done["rejected"] += again.severity == "error"
                    else:
                        records.append(again)
            else:
                records = [item]
            takes = (claimed or {}).get(id(item))
            for rec in records:
                mapped.append(rec)
                problems.extend(rec.warnings)
                for e in rec.entities:
                    h = hash((e.rtype, e.keys[0]))
                    if takes is not None:
                        if h not in takes:
                            continue
                    elif h in self.seen:
                        continue
                    self.seen.add(h)
                    self.scopes_seen.add(e.scope)
                    raw = e.raw or orjson.dumps(e.resource)
                    todo.append((rec, e, raw))
                    order[id(e)] = place
                    wanted.update((e.rtype, k) for k in e.keys)
                    wanted.update(_refs(raw))
        resolver.load(wanted)
        assigned: list[tuple[str, Entity]] = []
        lines = {id(e): rec.line for rec, e, _ in todo}
        for rec, e, _ in todo:
            before = len(resolver.conflicts)
            rid = resolver.assign(e.rtype, e.keys)
            problems.extend(Problem(rec.line, "identifier", c, "warning") for c in resolver.conflicts[before:])
            assigned.append((rid, e))
        resolver.flush()
        for (_, e, raw) in todo:
            if b'"@' in raw:
                raw = _resolve_refs(raw, resolver)
                e.resource = None  # decoded from ``raw`` if it is merged (``_stage``)
            e.raw = raw
            e.said = _said(e, raw)
        return assigned, lines, recalls, mapped

    def _recall(self, gave: list[Gave] | None) -> list[tuple[str, Entity]] | None:
        """The entities a remembered record gave that it takes now, in file order (an earlier record may have given
        some first), or None if it must be mapped again: not remembered any more (another run forgot it), or
        first to give an entity an earlier record gave when it was remembered."""
        if gave is None or any(g.rid is None and hash((g.rtype, g.key)) not in self.seen for g in gave):
            return None
        got = []
        for g in gave:
            h = hash((g.rtype, g.key))
            if h in self.seen:
                continue
            self.seen.add(h)
            self.scopes_seen.add(g.scope)
            got.append((g.rid, Entity(g.rtype, [g.key], None, g.scope, said=g.said)))
        return got

    def _repeats(self, conn: Connection, assigned: list[tuple[str, Entity]]) -> set[tuple[str, str]]:
        """The resources of ``assigned`` whose one entity this batch repeats what the source said last time, on the
        version that merge wrote or found (nothing changed it since): merging it again would give the stored resource
        back (a merge applied twice gives what it gave once), so it is only marked as seen, for disappearance."""
        said: dict[tuple[str, str], bytes | None] = {}
        for rid, e in assigned:
            said[(e.rtype, rid)] = None if (e.rtype, rid) in said else e.said  # twice in a batch: merged
        by_type: dict[str, list[str]] = {}
        for rtype, rid in said:
            by_type.setdefault(rtype, []).append(rid)
        out: set[tuple[str, str]] = set()
        for rtype, rids in by_type.items():
            for i in range(0, len(rids), _CHUNK):
                chunk = rids[i:i + _CHUNK]
                found = [(rid,) for rid, s, version_said, version in dbapi_rows(conn, _SAID.format(
                    ", ".join(["{p}"] * len(chunk))), (self.feed.source, rtype, *chunk))
                    if s is not None and bytes(s) == said[(rtype, rid)] and version_said == version]
                dbapi_many(conn, "UPDATE feed_contribution SET seen_run = {p} WHERE source = {p} AND rtype = {p} "
                           "AND rid = {p}", [(self.run_id, self.feed.source, rtype, rid) for rid, in found])
                out.update((rtype, rid) for rid, in found)
        return out

    def _current(self, conn: Connection, keys: list[tuple[str, str]]):
        bodies: dict[tuple[str, str], tuple[repository.Current, dict]] = {}
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, rids in by_type.items():
            for i in range(0, len(rids), _CHUNK):
                q = select(resource.c.rid, resource.c.pk, resource.c.version, resource.c.content_hash,
                           resource.c.last_updated, resource.c.body).where(
                    resource.c.rtype == rtype, resource.c.rid.in_(rids[i:i + _CHUNK]))
                for rid, pk, version, h, lu, body in conn.execute(q):
                    bodies[(rtype, rid)] = (repository.Current(pk, version, h, lu), orjson.loads(body))
        return bodies

    def _bases(self, conn: Connection, keys: list[tuple[str, str]]
               ) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], list[dict]]]:
        """What this source said last time of each resource, and, for a region, what the other regions that
        describe it said (``precedence.merge``'s ``others``)."""
        out: dict[tuple[str, str], dict] = {}
        others: dict[tuple[str, str], list[dict]] = {}
        c = feed_contribution.c
        sources = c.source == self.feed.source
        if self.feed.kind == "region":
            sources = sources | (c.source.like("region:%") & c.closed_run.is_(None))
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        for rtype, rids in by_type.items():
            for i in range(0, len(rids), _CHUNK):
                for source, rid, facets in conn.execute(select(c.source, c.rid, c.facets).where(
                        sources, c.rtype == rtype, c.rid.in_(rids[i:i + _CHUNK]))):
                    if source == self.feed.source:
                        out[(rtype, rid)] = orjson.loads(facets)
                    else:
                        others.setdefault((rtype, rid), []).append(orjson.loads(facets))
        return out, others

    def _merge(self, conn: Connection, assigned: list[tuple[str, Entity]], lines: dict[int, int]) -> _Merged:
        """Each entity merged into the stored resource (``precedence.merge``)."""
        keys = list(dict.fromkeys((e.rtype, rid) for rid, e in assigned))
        current = self._current(conn, keys)
        bases, others = self._bases(conn, keys)
        merged: dict[tuple[str, str], dict] = {}
        contrib: dict[tuple[str, str], tuple[str, dict]] = {}
        for rid, e in assigned:
            k = (e.rtype, rid)
            cur = merged.get(k) or (current[k][1] if k in current else None)
            owns = precedence.owner(self.feed.kind, e.rtype, e.scope)
            res, base = precedence.merge(e.rtype, rid, cur, bases.get(k), e.resource, owns, others.get(k, []))
            merged[k] = res
            contrib[k] = (e.scope, base)
        return _Merged(keys, current, bases, merged, contrib, {(e.rtype, rid): (rid, e) for rid, e in assigned},
                       {(e.rtype, rid): lines.get(id(e), 0) for rid, e in assigned})

    def _merge_and_write(self, conn: Connection, assigned: list[tuple[str, Entity]], lines: dict[int, int],
                         problems: list[Problem], done: Counter, final: bool = False) -> list[repository.Written]:
        """``_merge`` then ``_judge_and_write`` in one transaction. ``final``: the last pass over records held back
        for a reference (see ``_deferred``)."""
        return self._judge_and_write(conn, self._merge(conn, assigned, lines), problems, done, final)

    def _judge_and_write(self, conn: Connection, m: _Merged, problems: list[Problem], done: Counter,
                         final: bool = False, checked: dict | None = None,
                         settled: frozenset | set = frozenset(),
                         ready: dict[tuple[str, str], repository.Prepared] | None = None
                         ) -> list[repository.Written]:
        """Validate the merged resources (rejected ones are not written and keep their stored version;
        ``problems``/``done`` get the issues and the rejections) and write the others. ``checked``, ``settled``: the
        checks made ahead (``FeedValidation.judge``); ``ready``: resources prepared ahead for the write."""
        keys, contrib = m.keys, m.contrib
        if self.checks is not None:
            verdict = self.checks.judge(conn, keys, m.merged, m.entities, m.line_of, final, m.stored_hashes(),
                                        checked, settled)
            problems.extend(verdict.problems)
            done["rejected"] += len(verdict.rejected)
            self.deferred.extend((m.entities[k], m.line_of[k]) for k in verdict.deferred)
            for k in verdict.deferred:
                contrib.pop(k, None)
            for k in verdict.rejected:  # still said by the source: seen (not closed), what it said before kept
                if k in m.bases:
                    contrib[k] = (contrib[k][0], m.bases[k])
                else:
                    contrib.pop(k, None)
            keys = [k for k in keys if k in contrib and k not in verdict.rejected]
        items = [(ready or {}).get(k) or repository.prepare(m.merged[k]) for k in keys]
        written = repository.write_batch(conn, items, {k: v[0] for k, v in m.current.items()})
        self._record(conn, contrib, written, said={(w.rtype, w.rid): (m.entities[(w.rtype, w.rid)][1].said, w.version)
                                                   for w in written})
        return written

    def _record(self, conn: Connection, contrib: dict[tuple[str, str], tuple[str, dict]],
                written: list[repository.Written], closed: bool = False,
                said: dict[tuple[str, str], tuple[bytes, int]] | None = None) -> None:
        """The contributions ``contrib`` and the changes ``written``. ``said``: the digest of each entity written and
        the version it left (``_repeats``); the others (rejected, closed) get none, and are merged at the next run."""
        d = _dialect(conn)
        said, rows = said or {}, []
        for (rtype, rid), (scope, base) in contrib.items():
            digest, version = said.get((rtype, rid), (None, None))
            rows.append({"source": self.feed.source, "rtype": rtype, "rid": rid, "scope": scope,
                         "facets": orjson.dumps(base, option=orjson.OPT_SORT_KEYS), "seen_run": self.run_id,
                         "closed_run": self.run_id if closed else None, "said": digest, "said_version": version})
        for i in range(0, len(rows), _CHUNK):
            stmt = d.insert(feed_contribution)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["source", "rtype", "rid"],
                set_={"scope": stmt.excluded.scope, "facets": stmt.excluded.facets,
                      **({} if closed else {"seen_run": stmt.excluded.seen_run}),
                      "closed_run": stmt.excluded.closed_run, "said": stmt.excluded.said,
                      "said_version": stmt.excluded.said_version}), rows[i:i + _CHUNK])
        changes = [{"run_id": self.run_id, "rtype": w.rtype, "rid": w.rid,
                    "outcome": "closed" if closed else w.outcome} for w in written if w.outcome != "unchanged"]
        for i in range(0, len(changes), _CHUNK):
            conn.execute(d.insert(feed_change).on_conflict_do_nothing(), changes[i:i + _CHUNK])

    def _deferred(self) -> None:
        """Records held back because a reference named a resource not written yet (it may come later in the
        file: a regional extract in any order, an EG before its EJ): written now, when every batch is in,
        or rejected if the target still does not exist."""
        while self.deferred:
            chunk, self.deferred = self.deferred[:self.batch_size], self.deferred[self.batch_size:]

            def work(conn, chunk=chunk):
                problems: list[Problem] = []
                done: Counter = Counter()
                lines = {id(e): line for (_, e), line in chunk}
                written = self._merge_and_write(conn, [a for a, _ in chunk], lines, problems, done, final=True)
                done.update(w.outcome for w in written)
                done["warnings"] += sum(1 for p in problems if p.severity == "warning")
                return problems, done
            self._transaction(work)

    # --- disappearance ----------------------------------------------------------------------------

    def _disappear(self) -> None:
        c = feed_contribution.c
        for scope in sorted(self.feed.closable & self.scopes_seen):
            with self.engine.connect() as conn:
                live = (c.source == self.feed.source, c.scope == scope, c.closed_run.is_(None))
                total = conn.execute(select(func.count()).where(*live)).scalar_one()
                missing = [tuple(r) for r in conn.execute(
                    select(c.rtype, c.rid).where(*live, c.seen_run < self.run_id).order_by(c.rtype, c.rid))]
            if not missing:
                continue
            if len(missing) > self.max_closure_ratio * total:
                sample = ", ".join(f"{t}/{r}" for t, r in missing[:20])
                self._transaction(lambda conn, n=len(missing), tot=total, s=sample, sc=scope: ([Problem(
                    0, sc, f"{n} of {tot} '{sc}' resources are missing from this full extract, more than "
                    f"{self.max_closure_ratio:.0%}: none closed (truncated or partial file?). "
                    f"First ones: {s}", "warning")], Counter(warnings=1)))
                continue
            for i in range(0, len(missing), self.batch_size):
                self._transaction(lambda conn, chunk=missing[i:i + self.batch_size], sc=scope:
                                  self._close(conn, chunk, sc))

    def _forget(self, conn: Connection) -> tuple[list[Problem], Counter]:
        self.memo.forget(conn)
        return [], Counter()

    def _close(self, conn: Connection, keys: list[tuple[str, str]], scope: str) -> tuple[list[Problem], Counter]:
        current = self._current(conn, keys)
        bases, _ = self._bases(conn, keys)
        problems: list[Problem] = []
        items, contrib = [], {}
        for k in keys:
            rtype, rid = k
            if k not in current:
                continue
            owns = precedence.owner(self.feed.kind, rtype, scope)
            status = "status" if rtype == "Location" else "active"
            if not owns(status):
                problems.append(Problem(0, scope, f"{rtype}/{rid} is no longer in the extract; not closed, "
                                        f"its status belongs to another source", "warning"))
                continue
            res = precedence.close(rtype, current[k][1], self.feed.extraction_date)
            items.append(repository.prepare(res))
            base = dict(bases.get(k, {}))
            parts = precedence.facets(res)
            base[status] = precedence.digest(parts[status])
            contrib[k] = (scope, base)
        written = repository.write_batch(conn, items, {k: current[k][0] for k in contrib}) if items else []
        self._record(conn, contrib, written, closed=True)
        return problems, Counter(closed=sum(1 for w in written if w.outcome != "unchanged"),
                                 warnings=len(problems))

    # --- the run ----------------------------------------------------------------------------------

    def execute(self) -> RunReport:
        # The garbage collector paused, the run collecting the young objects itself (and its forked reader after each
        # chunk): what outlives a batch (the identities seen, the digests known: millions of entries) is never
        # traversed again. The collector's own full collections went through them time and again (national RPPS
        # reload: 98.4, 119.0 s; 70.4, 70.4 s paused). A collection traverses every young object still held, each
        # visit of what they reference a cache miss on a large heap: the batch checked while the one before is
        # written is always held, and took 88 ms a collection (9 % of a first RPPS import) to find ~600 small objects
        # in cycles (SQLAlchemy's statement constructs). So the run collects every ``_COLLECT_EVERY`` batches.
        with gc_paused():
            return self._execute()

    def _execute(self) -> RunReport:
        size, sha = file_digest(self.path)
        self._start(size, sha)
        try:
            records: list[Record] = []
            loose: list[Problem] = []
            n_entities = n_records = batches = 0
            limited = False
            with self.engine.connect() as conn:
                self.memo.load(conn)
            self.feed.known = self.memo.known
            # The batch whose checks run while the next one is read, staged and merged. That merge may start from a
            # version the write of this batch replaces: ``_write_staged`` merges such a resource again.
            pending: _Staged | None = None
            with closing(read_ahead(self.feed, self.path, size, self.batch_size, self.fork_reader)) as items:
                while True:
                    try:
                        item = next(items)
                    except StopIteration:
                        break
                    except Exception:  # the reader's: the batches read before it are written, as one by one
                        self._end(pending)
                        raise
                    if isinstance(item, Problem):
                        loose.append(item)
                        n_records += item.severity == "error"
                    else:
                        records.append(item)
                        n_records += 1
                        n_entities += weight(item)
                    if n_entities >= self.batch_size or len(loose) >= self.batch_size:
                        pending = self._write(records, loose, pending)
                        records, loose, n_entities = [], [], 0
                        batches += 1
                        if batches % _COLLECT_EVERY == 0:  # what batches left in cycles (collector paused: ``execute``)
                            gc.collect(1)
                    if self.limit and n_records >= self.limit:
                        limited = True
                        break
            if records or loose:
                pending = self._write(records, loose, pending)
            self._end(pending)
            self._deferred()
            notes = list(self.feed.notes)
            if not self.feed.complete:
                notes.append("the file ends in the middle of a record: disappearance not handled")
            elif limited:
                notes.append(f"stopped after {self.limit} records (--limit): disappearance not handled")
            elif not self.full:
                notes.append("partial extract: disappearance not handled")
            else:
                self._disappear()
                self._transaction(self._forget)
        except KeyboardInterrupt:
            self._finish("interrupted", "interrupted by the user")
            raise
        except InputFileError as e:
            self._finish("failed", e.message)
            raise
        except BaseException as e:
            self._finish("failed", f"{type(e).__name__}: {e}")
            raise
        finally:
            if self.checks:
                self.checks.pool.close()
        message = "; ".join(notes)
        self._finish("done", message)
        return RunReport(self.run_id, self.feed.source, "done", self.dry_run, self.counts, message, self.shown)


def run_import(engine: Engine, feed: Feed, path: Path, *, dry_run: bool = False, limit: int | None = None,
               batch_size: int = 2000, full: bool = True, max_closure_ratio: float = 0.2,
               on_batch: Callable[[Counter], None] | None = None, validate: bool | None = None,
               fork_reader: bool | None = None) -> RunReport:
    """Import ``path`` with ``feed`` and record the run; see the module docstring. ``validate``: check every
    resource against the ROR profiles before it is stored (default: the ``validate_feeds`` setting).
    ``fork_reader``: read the file in a forked process (``ror.feeds.readahead``; default: for large files)."""
    if validate is None:
        validate = get_settings().validate_feeds
    return Run(engine, feed, path, dry_run=dry_run, limit=limit, batch_size=batch_size, full=full,
               max_closure_ratio=max_closure_ratio, on_batch=on_batch, validate=validate,
               fork_reader=fork_reader).execute()
