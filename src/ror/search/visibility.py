"""Which resources and index rows an access profile may see, as SQL over the index (snapshot-aware).

Resource-level rules (``ror.profiles.access`` has the element-level ones):

- a sensitive offer (``uniteSensible``) and what hangs under it — its places, its roles, the
  professionals seen only through them, the anomalies about them — are visible to profiles 1 and 4
  only;
- roles (and so professionals) are visible to profile 3 only on medico-social offers, to profile 0
  only on city ("Ville") offers;
- profile 3 sees the capacities of the places of medico-social offers only.

Each rule has two forms (``Visibility`` says which is used where): *sets* computed once per
statement (named CTEs over the lookup indexes: the sensitive offers and their places, the roles and
professionals seen), for the searches, and *probes* correlated on one resource's pk (a few
primary-key index lookups), for a handful of resources (includes, reads, the redaction context)
and inside correlated subqueries. The previous form computed the hidden sets of roles and
professionals from full scans (every role minus those seen, every offer minus the sensitive ones),
and the redaction context and include checks as whole sets per batch, which made restricted
profiles 4–8× slower than profile 1 (docs/search.md, "Access profiles"). Row-level rules (capacity
records, restricted characteristics, the helipad) are the ``vis`` bitmask of each index row.

Invariant relied on: every indexed version of an offer has exactly one ``SENSITIVE_KEY`` token row,
``true`` or ``false`` (``ror.store.indexer.index_rows``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

from sqlalchemy import ColumnElement, Dialect, Select, and_, bindparam, exists, false, literal, not_, or_, select, true
from sqlalchemy.engine import Compiled
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import InternalTraversal

from ror.profiles.access import CAPACITY, CHAMP_MS, CHAMP_SYSTEM, CHAMP_VILLE, bit
from ror.profiles.searchparams import SearchParam
from ror.store.indexer import SENSITIVE_KEY
from ror.store.schema import LIVE_TX, idx_date, idx_ref, idx_token, resource

_FULL_VIEW = (1, 4)  # profiles that see every resource
_RESTRICTED_TYPES = ("HealthcareService", "Location", "PractitionerRole", "Practitioner", "Task")


class _NoIndex(ColumnElement):
    """A column SQLite must not look up through an index (its documented no-op ``+col``): in a probe
    by pk, the (param, code, system, …) lookup indexes would walk every offer of that code for each
    probe, where the (pk, until_tx) index reads the ten-odd rows of one offer. PostgreSQL gets the
    plain column: its planner weighs both (with statistics) and may run a probe as one set."""

    inherit_cache = True
    _traverse_internals: ClassVar = [("col", InternalTraversal.dp_clauseelement)]  # in the statement cache key

    def __init__(self, col):
        self.col = col
        self.type = col.type


@compiles(_NoIndex)
def _no_index_default(element, compiler, **kw):
    return compiler.process(element.col, **kw)


@compiles(_NoIndex, "sqlite")
def _no_index_sqlite(element, compiler, **kw):
    return "+" + compiler.process(element.col, **kw)


def no_index(col) -> ColumnElement:
    """``col`` in a condition SQLite must not answer through an index (see ``_NoIndex``)."""
    return _NoIndex(col)


class LiveRows:
    """The snapshot of a transaction that pinned the latest transaction and whose statements all see one state
    (``engine.one_snapshot``): the rows it sees belong to the snapshot exactly when they are live (a row closed or
    created after it was committed after the transaction's snapshot, so it is not seen). One equality instead of two
    ranges: a fifth of a national delta page's count on SQLite; and the lookup indexes, which have pk after
    ``until_tx``, give a value's rows in pk order."""


LIVE_ROWS = LiveRows()


def visible(t, snap: BindParameter | LiveRows) -> ColumnElement:
    """The index row belongs to the snapshot."""
    if snap is LIVE_ROWS:
        return t.c.until_tx == LIVE_TX
    return and_(t.c.since_tx <= snap, t.c.until_tx > snap)


_ALIASES: dict[str, list] = {}


class Visibility:
    """Visibility for one profile at one snapshot.

    ``shown(rtype, pk)`` is a set membership (sets made once per instance, computed once per
    statement): searches filter many rows at their top level. ``shown(rtype, pk, probe=True)`` and
    ``hidden_condition(..., probe=True)`` check resource by resource: for a few resources (includes,
    reads) and inside correlated subqueries, where SQLite would recompute a set for every outer row."""

    def __init__(self, profile: int, snap: BindParameter | LiveRows):
        self.profile = profile
        self.snap = snap
        self._bit = literal(bit(profile))
        self._ctes: dict[str, object] = {}
        self._aliases: dict[str, int] = {}

    def alias(self, table):
        """A fresh alias of ``table`` for this instance's statements. Aliases are shared between
        instances (building one's column collection was a third of the time spent building a search
        statement) and handed out once per instance, so a statement never holds one twice."""
        n = self._aliases.get(table.name, 0)
        self._aliases[table.name] = n + 1
        pool = _ALIASES.setdefault(table.name, [])
        while len(pool) <= n:
            pool.append(table.alias())
        return pool[n]

    def row_conditions(self, t) -> list[ColumnElement]:
        return [] if self.profile == 1 else [t.c.vis.op("&")(self._bit) != 0]

    def everything(self, rtype: str, pk=None) -> Select:
        """Every resource of ``rtype`` in the snapshot (with ``pk``: that one, read by pk)."""
        d = self.alias(idx_date)
        key = f"{rtype}._lastUpdated"
        if pk is None:
            return select(d.c.pk).where(d.c.param == key, visible(d, self.snap))
        return select(d.c.pk).where(d.c.pk == pk, no_index(d.c.param) == key, visible(d, self.snap))

    def restricts(self, rtype: str) -> bool:
        """Whether the profile may miss some resources of ``rtype``."""
        return self.profile not in _FULL_VIEW and rtype in _RESTRICTED_TYPES

    def restrict(self, rtype: str, sel: Select) -> Select:
        """``sel`` (a select of pks) without what the profile must not see."""
        if not self.restricts(rtype):
            return sel
        # One more condition on the same select, not a select around it: each nesting level counts
        # against SQLite's parser stack, which a chain through roles overflowed for profile 3.
        return sel.where(self.shown(rtype, sel.selected_columns[0]))

    # -- per-resource conditions --------------------------------------------------------------------
    def shown(self, rtype: str, pk, probe: bool = False) -> ColumnElement:
        """True for a resource of ``rtype`` (existing in the snapshot) that the profile may see.
        ``probe``: checked resource by resource (inside a correlated subquery, or for a few resources)
        rather than against sets computed once for the statement."""
        if not self.restricts(rtype):
            return true()
        if rtype == "HealthcareService":
            return not_(self._sensitive(pk)) if probe else pk.not_in(self._sensitive_set())
        if rtype == "Location":
            return not_(self._serves(pk, self._sensitive)) if probe else \
                pk.not_in(self._places_set("sensitive", self._sensitive_set()))
        if rtype == "PractitionerRole":
            return self._role_seen(pk) if probe else pk.in_(self._roles_seen_set())
        if rtype == "Practitioner" and not probe:
            return pk.in_(self._practitioners_seen_set())
        if rtype == "Practitioner":
            rp, ir = self.alias(resource), self.alias(idx_ref)
            return exists(select(literal(1)).select_from(rp).join(ir, and_(
                ir.c.param == "PractitionerRole.practitioner", ir.c.target_type == "Practitioner",
                ir.c.target_id == rp.c.rid)).where(rp.c.pk == pk, rp.c.rtype == "Practitioner", visible(ir, self.snap),
                                                   self._role_seen(ir.c.pk)))
        # Task: not about a hidden offer, place, role or professional.
        ir, r = self.alias(idx_ref), self.alias(resource)
        return not_(exists(select(literal(1)).select_from(ir).join(r, and_(
            r.c.rtype == ir.c.target_type, r.c.rid == ir.c.target_id)).where(
            ir.c.pk == pk, ir.c.param == "Task.focus", visible(ir, self.snap),
            or_(*[and_(ir.c.target_type == target, self.hidden_condition(target, r.c.pk, probe=True))
                  for target in ("HealthcareService", "Location", "PractitionerRole", "Practitioner")]))))

    def hidden_condition(self, rtype: str, pk, probe: bool = False) -> ColumnElement:
        """True for a resource of ``rtype`` that exists in the snapshot and that the profile must not see."""
        if not self.restricts(rtype):
            return false()
        if rtype in ("HealthcareService", "Location"):  # the rule itself implies the resource exists
            return not_(self.shown(rtype, pk, probe))
        return and_(self.exists(rtype, pk), not_(self.shown(rtype, pk, probe)))

    def hidden(self, rtype: str) -> Select | None:
        """pks of ``rtype`` the profile must not see, or None when it sees them all (for offers and
        places the small hidden set itself; for the other types a query meant to be narrowed to a
        few pks, e.g. ``WHERE pk = :pk`` for a read)."""
        if not self.restricts(rtype):
            return None
        if rtype == "HealthcareService":
            return self._sensitive_set()
        if rtype == "Location":
            return self._places_set("sensitive", self._sensitive_set())
        r = self.alias(resource)  # probes: callers narrow this to one or a few pks (reads)
        return select(r.c.pk).where(r.c.rtype == rtype, self.hidden_condition(rtype, r.c.pk, probe=True))

    def exists(self, rtype: str, pk) -> ColumnElement:
        """The resource ``pk`` of ``rtype`` exists in the snapshot."""
        return exists(self.everything(rtype, pk))

    # -- sets (named CTEs) --------------------------------------------------------------------------
    def _cte(self, name: str, build) -> Select:
        if name not in self._ctes:
            self._ctes[name] = build().cte(f"vis_{name}")
        return select(self._ctes[name].c.pk)

    def _sensitive_set(self) -> Select:
        def build():
            t = self.alias(idx_token)
            return select(t.c.pk).where(t.c.param == SENSITIVE_KEY, t.c.code == "true", visible(t, self.snap))
        return self._cte("sensitive", build)

    def _champ_set(self, code: str) -> Select:
        def build():
            t = self.alias(idx_token)
            return select(t.c.pk).where(t.c.param == "HealthcareService.service-type", t.c.system == CHAMP_SYSTEM,
                                        t.c.code == code, visible(t, self.snap))
        return self._cte(f"champ_{code}", build)

    def _places_set(self, name: str, offers: Select) -> Select:
        def build():
            ir, r = self.alias(idx_ref), self.alias(resource)
            return select(r.c.pk).where(r.c.rtype == "Location", r.c.rid.in_(
                select(ir.c.target_id).where(ir.c.param == "HealthcareService.location",
                                             ir.c.target_type == "Location", visible(ir, self.snap),
                                             ir.c.pk.in_(offers))))
        return self._cte(f"places_{name}", build)

    def _role_offers_set(self) -> Select:
        """Offers whose roles the profile sees (a token row of the snapshot implies the offer is in it)."""
        def build():
            t = self.alias(idx_token)
            if self.profile in (0, 3):
                sel = self._champ_set(CHAMP_MS if self.profile == 3 else CHAMP_VILLE).subquery()
                return select(sel.c.pk).where(sel.c.pk.not_in(self._sensitive_set()))
            return select(t.c.pk).where(t.c.param == SENSITIVE_KEY, t.c.code == "false", visible(t, self.snap))
        return self._cte("role_offers", build)

    def _roles_seen_set(self) -> Select:
        def build():
            ir, r = self.alias(idx_ref), self.alias(resource)
            return select(ir.c.pk).where(ir.c.param == "PractitionerRole.service",
                                         ir.c.target_type == "HealthcareService", visible(ir, self.snap),
                                         ir.c.target_id.in_(select(r.c.rid).where(  # offers by pk, not all
                                             no_index(r.c.rtype) == "HealthcareService",
                                             r.c.pk.in_(self._role_offers_set()))))
        return self._cte("roles_seen", build)

    def _practitioners_seen_set(self) -> Select:
        def build():
            ir, r = self.alias(idx_ref), self.alias(resource)
            return select(r.c.pk).where(r.c.rtype == "Practitioner", r.c.rid.in_(
                select(ir.c.target_id).where(ir.c.param == "PractitionerRole.practitioner",
                                             ir.c.target_type == "Practitioner", visible(ir, self.snap),
                                             ir.c.pk.in_(self._roles_seen_set()))))
        return self._cte("practitioners_seen", build)

    # -- probes (correlated on a pk) ----------------------------------------------------------------
    # Leaf facts read the offer's own token rows by pk. ``no_index`` keeps SQLite from reading them
    # through the (param, code, system) lookup index instead, which would walk every offer of that
    # code for each probe.
    def _sensitive(self, offer_pk) -> ColumnElement:
        """The offer is a sensitive unit in the snapshot."""
        t = self.alias(idx_token)
        return exists(select(literal(1)).where(t.c.pk == offer_pk, no_index(t.c.param) == SENSITIVE_KEY,
                                               no_index(t.c.code) == "true", visible(t, self.snap)))

    def _of_champ(self, offer_pk, code: str) -> ColumnElement:
        t = self.alias(idx_token)
        return exists(select(literal(1)).where(
            t.c.pk == offer_pk, no_index(t.c.param) == "HealthcareService.service-type",
            no_index(t.c.system) == CHAMP_SYSTEM, no_index(t.c.code) == code, visible(t, self.snap)))

    def _serves(self, place_pk, offer_condition) -> ColumnElement:
        """Some offer of the snapshot for which ``offer_condition(offer pk)`` holds lists the place."""
        rl, ir = self.alias(resource), self.alias(idx_ref)
        return exists(select(literal(1)).select_from(rl).join(ir, and_(
            ir.c.param == "HealthcareService.location", ir.c.target_type == "Location",
            ir.c.target_id == rl.c.rid)).where(rl.c.pk == place_pk, rl.c.rtype == "Location",
                                               visible(ir, self.snap), offer_condition(ir.c.pk)))

    def _role_offer(self, offer_pk) -> ColumnElement:
        """An offer whose roles the profile sees: in the snapshot, not sensitive (and for profile 3
        medico-social, for profile 0 a city offer)."""
        conds = [self.exists("HealthcareService", offer_pk), not_(self._sensitive(offer_pk))]
        if self.profile == 3:
            conds.append(self._of_champ(offer_pk, CHAMP_MS))
        elif self.profile == 0:
            conds.append(self._of_champ(offer_pk, CHAMP_VILLE))
        return and_(*conds)

    def _role_serving(self, role_pk, offer_condition) -> ColumnElement:
        """The role serves (in the snapshot) an offer for which ``offer_condition(offer pk)`` holds."""
        ir, ro = self.alias(idx_ref), self.alias(resource)
        return exists(select(literal(1)).select_from(ir).join(ro, and_(
            ro.c.rtype == "HealthcareService", ro.c.rid == ir.c.target_id)).where(
            ir.c.pk == role_pk, ir.c.param == "PractitionerRole.service", ir.c.target_type == "HealthcareService",
            visible(ir, self.snap), offer_condition(ro.c.pk)))

    def _role_seen(self, role_pk) -> ColumnElement:
        return self._role_serving(role_pk, self._role_offer)

    def medico_social_place(self, pk) -> ColumnElement:
        """The place is listed by a medico-social offer in the snapshot (a probe)."""
        return self._serves(pk, lambda offer: self._of_champ(offer, CHAMP_MS))

    def medico_social_role(self, pk) -> ColumnElement:
        """The role serves a medico-social offer in the snapshot (a probe)."""
        return self._role_serving(pk, lambda offer: self._of_champ(offer, CHAMP_MS))

    # -- capacities and redaction context -----------------------------------------------------------
    def record_scope(self, param: SearchParam, pk) -> list[ColumnElement]:
        """Profile 3 sees capacities of medico-social places only: rows of other places never match."""
        if self.profile != 3 or param.group != CAPACITY:
            return []
        return [pk.in_(self._places_set("ms", self._champ_set(CHAMP_MS)))]

    def medico_social_places_and_roles(self) -> tuple[Select, Select]:
        """(places, roles) serving medico-social offers: the context of their redaction."""
        rr = self.alias(resource)
        return (self._places_set("ms", self._champ_set(CHAMP_MS)),
                select(rr.c.pk).where(rr.c.rtype == "PractitionerRole", self.medico_social_role(rr.c.pk)))


@lru_cache(maxsize=64)
def hidden_probe(dialect: Dialect, profile: int, rtype: str) -> Compiled | None:
    """The statement whose one row says that the resource ``:pk`` of ``rtype`` is hidden to ``profile`` at snapshot
    ``:snap`` (``Visibility.hidden`` narrowed to it), compiled once per dialect; None when the profile sees every
    resource of the type. A read by id of a restricted profile built and compiled it for every read: in process
    (SQLite), an offer read by profile 0 in 673 → 237 µs; through HTTP (PostgreSQL, a profile-0 token), 586 → 815
    reads a second over eight connections (benchmarks/RESULTS.md, session 15)."""
    hidden = Visibility(profile, bindparam("snap")).hidden(rtype)
    if hidden is None:
        return None
    sub = hidden.subquery()
    return select(sub.c.pk).where(sub.c.pk == bindparam("pk")).compile(dialect=dialect)
