"""In-memory view of the loaded NOS tables, for validation at write speed.

A code system or value set is read from the database the first time it is needed and then served
from memory. Every load bumps ``nos_state.generation``; each process looks at it at most every
``ttl_s`` seconds and drops its views when it moved, so a NOS update reaches every API worker
without a restart and without one query per validated resource.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter

from sqlalchemy import Connection, select

from ror.terminology.nos import ALL_CODES
from ror.terminology.schema import nos_concept, nos_member, nos_state, nos_table, nos_version


@dataclass(frozen=True)
class CodeInfo:
    display: str
    status: str  # current status: active | retired
    periods: tuple[tuple[str | None, str | None], ...]  # validity periods [start, end), ISO date-times


@dataclass(frozen=True)
class CodeSystemView:
    url: str
    name: str
    version: str
    codes: dict[str, CodeInfo]


@dataclass(frozen=True)
class ValueSetView:
    url: str
    name: str
    version: str
    members: dict[tuple[str, str], str]  # (system, code) -> display, current version
    removed: dict[tuple[str, str], str]  # (system, code) -> date of the version that dropped it
    by_oid: dict[str, str]  # code -> display, for members kept under an urn:oid system (code system not loaded)
    systems: frozenset[str]  # code systems of the current members
    whole: frozenset[str] = frozenset()  # code systems included whole (``ALL_CODES`` member, e.g. J124 -> TRE_R13)


@dataclass(frozen=True)
class Validity:
    """Where a code stands at a date: ``valid``, ``unknown`` (no such code), ``not-yet-valid`` or ``retired``."""

    state: str
    date: str | None = None  # start (not-yet-valid) or end (retired) of the relevant period
    retired_since: str | None = None  # set when the code is retired today, whatever ``state`` says
    period: tuple[str | None, str | None] | None = None  # the validity period holding the date (``valid``)


def _periods(states: list) -> tuple[tuple[str | None, str | None], ...]:
    """Replay the successive states of a code into validity periods (handles retire / reactivate)."""
    periods: list[list[str | None]] = []
    for s in states:
        if s.status == "active":
            if not periods:
                periods.append([s.date_valid, None])
            elif periods[-1][1] is not None:  # reactivated: valid again from the reactivating version
                periods.append([s.date_updated or s.version_date, None])
        else:
            end = s.date_end or s.version_date
            if not periods:
                periods.append([s.date_valid, end])
            else:
                periods[-1][1] = end
    return tuple((a, b) for a, b in periods)


def validity(info: CodeInfo, at: str) -> Validity:
    retired_since = info.periods[-1][1] if info.status == "retired" and info.periods else None
    for start, end in info.periods:
        if (start is None or start <= at) and (end is None or at < end):
            return Validity("valid", retired_since=retired_since, period=(start, end))
    first = info.periods[0][0] if info.periods else None
    if first is not None and at < first:
        return Validity("not-yet-valid", first, retired_since)
    ended = [end for _, end in info.periods if end is not None and end <= at]
    return Validity("retired", max(ended) if ended else retired_since, retired_since)


class Terminology:
    """Shared, thread-safe cache of code-system and value-set views."""

    def __init__(self, ttl_s: float = 5.0):
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._checked_at = 0.0
        self._cs: dict[str, CodeSystemView | None] = {}
        self._vs: dict[str, ValueSetView | None] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._cs.clear()
            self._vs.clear()
            self._generation = None

    @property
    def generation(self) -> int | None:
        """The database's NOS generation last read (None: not read yet, or no NOS loaded)."""
        return self._generation

    def refresh(self, conn: Connection) -> None:
        """Read the database's NOS generation again if last read more than ``ttl_s`` ago."""
        now = time.monotonic()
        if now - self._checked_at < self.ttl_s and self._generation is not None:
            return
        gen = conn.execute(select(nos_state.c.generation).where(nos_state.c.id == 1)).scalar()
        with self._lock:
            if gen != self._generation:
                self._cs.clear()
                self._vs.clear()
                self._generation = gen
            self._checked_at = now

    def code_system(self, conn: Connection, url: str) -> CodeSystemView | None:
        self.refresh(conn)
        if url not in self._cs:
            view = self._load_cs(conn, url)
            with self._lock:
                self._cs[url] = view
        return self._cs[url]

    def value_set(self, conn: Connection, url: str) -> ValueSetView | None:
        self.refresh(conn)
        url = url.split("|")[0]
        if url not in self._vs:
            view = self._load_vs(conn, url)
            with self._lock:
                self._vs[url] = view
        return self._vs[url]

    @staticmethod
    def _table(conn: Connection, url: str, kind: str):
        return conn.execute(select(nos_table.c.pk, nos_table.c.name, nos_version.c.version)
                            .join(nos_version, nos_version.c.pk == nos_table.c.current_version)
                            .where(nos_table.c.url == url, nos_table.c.kind == kind)).first()

    def _load_cs(self, conn: Connection, url: str) -> CodeSystemView | None:
        t = self._table(conn, url, "CodeSystem")
        if t is None:
            return None
        rows = conn.execute(
            select(nos_concept.c.code, nos_concept.c.display, nos_concept.c.status, nos_concept.c.date_valid,
                   nos_concept.c.date_end, nos_concept.c.date_updated, nos_version.c.version_date)
            .join(nos_version, nos_version.c.pk == nos_concept.c.since_version)
            .where(nos_concept.c.table_pk == t.pk).order_by(nos_concept.c.code, nos_concept.c.since_version)).all()
        return code_system_view(url, t.name, t.version, ((code, list(states)) for code, states in
                                                         groupby(rows, key=attrgetter("code"))))

    def _load_vs(self, conn: Connection, url: str) -> ValueSetView | None:
        t = self._table(conn, url, "ValueSet")
        if t is None:
            return None
        rows = conn.execute(select(nos_member.c.system, nos_member.c.code, nos_member.c.display,
                                   nos_member.c.until_version, nos_version.c.version_date)
                            .outerjoin(nos_version, nos_version.c.pk == nos_member.c.until_version)
                            .where(nos_member.c.vs_pk == t.pk).order_by(nos_member.c.pk))
        return value_set_view(url, t.name, t.version,
                              ((r.system, r.code, r.display, None if r.until_version is None else r.version_date)
                               for r in rows))


def code_system_view(url: str, name: str, version: str, histories) -> CodeSystemView:
    """A code system from the (code, states) of each code, its states in version order (``nos_concept``
    columns as attributes, plus the ``version_date`` of the version that opened the state)."""
    return CodeSystemView(url, name, version, {code: CodeInfo(states[-1].display, states[-1].status, _periods(states))
                                               for code, states in histories})


def value_set_view(url: str, name: str, version: str, rows) -> ValueSetView:
    """A value set from every member row in load order: (system, code, display, date of the version that
    ended the row, or None while it is current)."""
    members: dict[tuple[str, str], str] = {}
    removed: dict[tuple[str, str], str] = {}
    by_oid: dict[str, str] = {}
    for system, code, display, ended_on in rows:
        key = (system, code)
        if ended_on is None:
            members[key] = display
            if system.startswith("urn:oid:"):
                by_oid[code] = display
        else:
            removed[key] = ended_on
    for key in members:
        removed.pop(key, None)
    whole = frozenset(s for s, c in members if c == ALL_CODES)
    for s in whole:
        del members[(s, ALL_CODES)]
    return ValueSetView(url, name, version, members, removed, by_oid, frozenset(s for s, _ in members) | whole, whole)
