"""Search plan -> SQL over the index tables, pinned to a snapshot transaction.

Every criterion has two forms: a ``SELECT pk`` of the resources it matches, and a test of one
resource by pk. A query reads one criterion's set (the smallest, ``Compiler.matches``) and tests the
other criteria on each of its resources; a set reached through a chain is joined to its resources'
``_lastUpdated`` index row (present once per resource) to check they exist in the snapshot. Without
a criterion, or for a large result set (``Compiler.scan``), it scans the type's ``_lastUpdated`` rows
in pk order. The whole query — criteria, sort keys, count — sees one snapshot.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache, cached_property, partial
from typing import ClassVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Select,
    and_,
    bindparam,
    distinct,
    exists,
    false,
    func,
    intersect,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
    tuple_,
    union,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from ror.errors import InvalidSearch
from ror.fhirdates import STAMP_MAX, STAMP_MIN, parse_search_date
from ror.geo import EARTH_RADIUS_KM, bounding_box, haversine_bound
from ror.profiles.access import mask_rule
from ror.profiles.searchparams import SPECIAL, SearchParam, registry
from ror.profiles.structure import base_children
from ror.search import filter as fast
from ror.search.plan import Criterion, GeoQuery, Hop, SearchPlan, parse_geo, split_prefix
from ror.search.visibility import LIVE_ROWS, Visibility, no_index, visible
from ror.settings import Settings
from ror.store import derived
from ror.store.indexer import fold, parse_reference
from ror.store.schema import (
    idx_date,
    idx_geo,
    idx_number,
    idx_quantity,
    idx_ref,
    idx_string,
    idx_text,
    idx_token,
    resource,
)

_PIPE = re.compile(r"(?<!\\)\|")
_HIGH_SORT_STRING = "\x7f\x7f"
_FAR = 1e9
_PK_MAX = 2**63 - 1  # above every resource pk (BIGINT)


def _unescape(s: str) -> str:
    return s.replace("\\|", "|")


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Rows counted at most per candidate driving set (SQLite). Below it the smallest set drives (a few
# index lookups per resource); above it every order costs thousands of lookups, and counting further
# would cost as much as the choice saves (the count's time grows with the cap: 0.3 ms at 200, 1 ms at 2,000).
_SIZE_CAP = 500


class _Haversine(ColumnElement):
    """The haversine ``h`` of the distance (as in ``haversine_km``) between a row's point and the query's, its terms for
    the query point bound once (``Compiler.within``). One element rendered as text: built from SQLAlchemy operators,
    the formula's eleven nodes were an eighth of a ``near`` search's time in Python."""

    inherit_cache = True
    _traverse_internals: ClassVar = [("lat", InternalTraversal.dp_clauseelement),
                                     ("lon", InternalTraversal.dp_clauseelement),
                                     ("query", InternalTraversal.dp_clauseelement)]
    type = Float()

    def __init__(self, lat, lon, q: GeoQuery):
        self.lat, self.lon = lat, lon
        # the query point's latitude, longitude and the cosine of its latitude: values of the statement, not its text
        self.query = tuple_(*(bindparam(None, v, type_=Float()) for v in (q.lat, q.lon, math.cos(math.radians(q.lat)))))


@compiles(_Haversine)
def _haversine(element, compiler, **kw):
    lat, lon = compiler.process(element.lat, **kw), compiler.process(element.lon, **kw)
    qlat, qlon, cos_qlat = element.query.clauses
    half = math.pi / 360  # a degree in radians, halved
    # each value rendered in the order it appears in the text (positional parameters on SQLite)
    head = f"(power(sin(({lat} - {compiler.process(qlat, **kw)}) * {half!r}), 2) + cos({lat} * {2 * half!r})"
    cos_part = f" * {compiler.process(cos_qlat, **kw)}"
    return f"{head}{cos_part} * power(sin(({lon} - {compiler.process(qlon, **kw)}) * {half!r}), 2))"


@dataclass
class _Cond:
    """One ANDed condition of a query: its test on a pk; when it can drive, its set and how to size
    it (``size`` of the capped counts of ``samples``, keyed by the sample's id)."""

    test: Callable[[ColumnElement], ColumnElement]
    set: Callable[[], Select] | None = None
    samples: list[Callable[[], Select]] = field(default_factory=list)
    size: Callable[[dict[int, int]], int] | None = None
    # ``exact``: the set is read from the base type's own index rows in the snapshot, so it holds exactly
    # the matching resources (no join to their ``_lastUpdated`` row needed); ``unique``: without repeats.
    exact: bool = False
    unique: bool = False
    # The set is the union of these conditions' sets (a ``_filter`` OR): it has at least as many rows as each.
    union_of: tuple[_Cond, ...] = ()
    # On a live snapshot, the set comes out of its lookup index in pk order: every column of the index before
    # ``until_tx`` is fixed by one value (or, for a union, each part's is), since the index has pk next (0012).
    in_pk_order: bool = False
    # Conditions that hold on every row of the set: not tested again when it drives.
    implies: tuple[_Cond, ...] = ()
    # Conditions that hold on nearly every row of the set: tested last when it drives, on the resources the others
    # let through (SQLite tests the conditions in the order written and stops at the first that fails).
    nearly_implies: tuple[_Cond, ...] = ()
    # Its capped count (up to ``_SIZE_CAP``), once sized and chosen to drive (``Compiler._driver``).
    sized: int | None = None
    # A date criterion on the base type's own rows: a sync since a date can match most of a type.
    dated: bool = False

    def tests_beside(self, conds: list[_Cond]) -> list[Callable[[ColumnElement], ColumnElement]]:
        """The tests of ``conds`` left to check on each resource of this set, when it drives."""
        done = {id(self), *map(id, self.implies)}
        last = {id(c) for c in self.nearly_implies}
        left = [c for c in conds if id(c) not in done]
        return [c.test for c in sorted(left, key=lambda c: id(c) in last)]  # stable


class Compiler:
    def __init__(self, plan: SearchPlan, settings: Settings, snapshot: int, dialect: str, live: bool = False):
        """``live``: ``snapshot`` is the latest transaction, pinned by the transaction the statements run in (see
        ``LiveRows``)."""
        self.plan = plan
        self.settings = settings
        self.snap = LIVE_ROWS if live else literal(snapshot, literal_execute=False)
        self.dialect = dialect
        self.vis = Visibility(plan.profile, self.snap)
        self._names = itertools.count()  # CTE names: unique in a statement, the same for the same query
        self._driving: tuple[_Cond | None] | None = None  # the driver, once chosen

    def rows(self, t) -> list[ColumnElement]:
        """Conditions every index lookup carries: in the snapshot, and seen by the caller's profile."""
        return [visible(t, self.snap), *self.vis.row_conditions(t)]

    # -- sets of resources, and probes on one resource ------------------------------------------
    # Each criterion has two forms. The *set* (``criterion``) selects the pks it matches: the driving
    # set of a query. The *test* (``test``) is a condition correlated on one resource's pk, read
    # through the (pk, until_tx) indexes: how the other criteria check the driving set's resources,
    # a few index lookups per resource, so a query costs what its most selective criterion matches
    # rather than what its least selective one does.
    def all_of(self, rtype: str) -> Select:
        """Every resource of ``rtype`` in the snapshot that the caller's profile may see."""
        return self.vis.restrict(rtype, self.vis.everything(rtype))

    def criterion(self, c: Criterion) -> Select:
        """pks of the plan's base type matching ``c``; every set along a chain is restricted to what
        the caller may see, so no hidden resource can be reached or inferred through a chain."""
        return self._chain_set(c.hops, c.rtype, self._end(c))

    def test(self, c: Criterion, pk) -> ColumnElement:
        """The base resource ``pk`` matches ``c`` (the probe form of ``criterion``; the base resource
        itself is known to exist and be visible)."""
        return self._chain_test(c.hops, lambda end_pk: self._end_test(c, end_pk), pk)

    def _chain_set(self, hops: tuple[Hop, ...], rtype: str, end: Select) -> Select:
        sel = self.vis.restrict(rtype, end)
        for hop in reversed(hops):
            sel = self.vis.restrict(hop.source if not hop.reverse else hop.target, self._hop(hop, sel))
        return sel

    def _chain_test(self, hops: tuple[Hop, ...], end_test, pk) -> ColumnElement:
        if not hops:
            return end_test(pk)
        hop = hops[0]
        ir, r = self.vis.alias(idx_ref), self.vis.alias(resource)
        if hop.reverse:  # resources of hop.source whose reference points at this one
            step, rtype = ir.c.pk, hop.source
            q = (select(literal(1)).select_from(r)
                 .join(ir, and_(ir.c.param == hop.param.key, ir.c.target_id == r.c.rid, ir.c.target_type == hop.target))
                 .where(r.c.pk == pk, *self.rows(ir)))
        else:
            step, rtype = r.c.pk, hop.target
            q = (select(literal(1)).select_from(ir)
                 .join(r, and_(r.c.rtype == hop.target, r.c.rid == ir.c.target_id))
                 .where(*self._lookup(ir, hop.param.key, pk), ir.c.target_type == hop.target))
        return exists(q.where(self.vis.shown(rtype, step, probe=True), self._chain_test(hops[1:], end_test, step)))

    def _hop(self, hop: Hop, inner: Select) -> Select:
        # Each level is read by pk from the level below (``no_index``: not by scanning a type or a
        # parameter): ``inner``'s resources by rowid (all of the hop's type: index rows are per type),
        # or the references held by ``inner``'s resources through the (pk, until_tx) index.
        r = self.vis.alias(resource)
        ir = self.vis.alias(idx_ref)
        if hop.reverse:
            return select(r.c.pk).where(r.c.rtype == hop.target, r.c.rid.in_(
                select(ir.c.target_id).where(no_index(ir.c.param) == hop.param.key, *self.rows(ir),
                                             ir.c.target_type == hop.target, ir.c.pk.in_(inner))))
        return select(ir.c.pk).where(ir.c.param == hop.param.key, *self.rows(ir),
                                     ir.c.target_type == hop.target, ir.c.target_id.in_(
                                         select(r.c.rid).where(no_index(r.c.rtype) == hop.target,
                                                               r.c.pk.in_(inner))))

    def _lookup(self, t, key: str, pk=None, pinned: bool = False) -> list[ColumnElement]:
        """Rows of index table ``t`` for parameter ``key``, in the snapshot and seen by the caller;
        with ``pk``, only that resource's rows, read through the (pk, until_tx) index (``no_index``
        keeps SQLite off the lookup index, which would walk every row of the parameter). Unless ``pinned``: the
        conditions fix every column of the lookup index before ``until_tx`` (``_pins_lookup``), and on a live
        snapshot ``until_tx`` too, so that the lookup index finds the row in one step, where the (pk, until_tx)
        index reads each of the resource's rows (a national offer's ~25 token rows: 10 µs a test, 3 in this way)."""
        if pk is None:
            return [t.c.param == key, *self.rows(t)]
        point = pinned and self.snap is LIVE_ROWS
        return [t.c.pk == pk, (t.c.param if point else no_index(t.c.param)) == key, *self.rows(t)]

    def _end(self, c: Criterion) -> Select:
        if c.modifier == "missing":
            present = self._present(c)
            want_missing = c.values[0] == "true"
            if len(set(c.values)) > 1:
                return self.all_of(c.rtype)
            if want_missing:
                a = self.all_of(c.rtype).subquery()
                return select(a.c.pk).where(a.c.pk.not_in(present))
            return present
        positive = self._positive(c)
        if c.modifier in ("not", "not-folded"):
            a = self.all_of(c.rtype).subquery()
            return select(a.c.pk).where(a.c.pk.not_in(positive))
        if c.modifier in ("above", "below"):
            return self._hierarchy(c.rtype, positive, down=c.modifier == "above")
        return positive

    def _end_test(self, c: Criterion, pk) -> ColumnElement:
        """``_end`` as a test of the resource ``pk`` (found through a chain: its existence in the
        snapshot is checked wherever the condition does not imply it)."""
        if c.modifier == "missing":
            if len(set(c.values)) > 1:
                return self.vis.exists(c.rtype, pk)
            present = exists(self._present(c, pk))
            return and_(self.vis.exists(c.rtype, pk), not_(present)) if c.values[0] == "true" else present
        if c.modifier in ("above", "below"):
            return pk.in_(self._end(c))
        positive = exists(self._positive(c, pk))
        if c.modifier in ("not", "not-folded"):
            return and_(self.vis.exists(c.rtype, pk), not_(positive))
        return positive

    def _present(self, c: Criterion, pk=None) -> Select:
        p = c.param
        if p.code == "_id":
            return self.vis.everything(c.rtype, pk)
        if p.type == SPECIAL:
            t = self.vis.alias(idx_geo)
            return select(t.c.pk).where(*self._lookup(t, _rows_key(p), pk))
        t = self.vis.alias(_table_for(p.type))
        return select(t.c.pk).where(*self._lookup(t, p.key, pk), *self.vis.record_scope(p, t.c.pk))

    def _hierarchy(self, rtype: str, seed: Select, down: bool) -> Select:
        """``:above``: the resources matching, and every resource below them (partOf descendants) —
        i.e. those with the criterion true on themselves or an ancestor. ``:below``: the reverse.
        Each step reads the tree's next level by index: children by their reference's target id,
        parents by the child's pk."""
        tree = seed.cte(name=f"tree_{next(self._names)}", recursive=True)
        ir = self.vis.alias(idx_ref)
        r = self.vis.alias(resource)
        key = f"{rtype}.partof"
        if down:
            step = (select(ir.c.pk).select_from(tree)
                    .join(r, r.c.pk == tree.c.pk)
                    .join(ir, and_(ir.c.param == key, ir.c.target_id == r.c.rid))
                    .where(*self.rows(ir)))
        else:
            step = (select(r.c.pk).select_from(tree)
                    .join(ir, and_(ir.c.pk == tree.c.pk, no_index(ir.c.param) == key))
                    .join(r, and_(r.c.rtype == rtype, r.c.rid == ir.c.target_id))
                    .where(*self.rows(ir)))
        tree = tree.union(step)
        return select(tree.c.pk)

    def _positive(self, c: Criterion, pk=None) -> Select:
        p = c.param
        if p.code == "_id":
            r = self.vis.alias(resource)
            one = [r.c.pk == pk] if pk is not None else []
            return select(r.c.pk).where(*one, r.c.rtype == c.rtype, r.c.rid.in_(list(c.values)))
        if p.type == "text":
            t = self.vis.alias(idx_text)
            conds = []
            for v in c.values:
                words = fold(v).split()
                conds.append(and_(*[t.c.content.like(f"%{_like_escape(w)}%", escape="\\") for w in words])
                             if words else false())
            return select(t.c.pk).where(*self._lookup(t, f"{c.rtype}._content", pk), or_(*conds))
        if p.type == SPECIAL:
            return self._geo(c, pk)
        t = self.vis.alias(_table_for(p.type))
        conds = [self._value_condition(c, t, v) for v in c.values]
        return select(t.c.pk).where(*self._lookup(t, p.key, pk, _pins_lookup(c)), or_(*conds),
                                    *self.vis.record_scope(p, t.c.pk))

    def _value_condition(self, c: Criterion, t, v: str) -> ColumnElement:
        ptype = c.param.type
        if ptype in ("token", "uri"):
            parts = _PIPE.split(v, maxsplit=1)
            if len(parts) == 1:
                return t.c.code == _unescape(v)
            system, code = _unescape(parts[0]), _unescape(parts[1])
            if system == "":
                return and_(t.c.system.is_(None), t.c.code == code)
            if code == "":
                return t.c.system == system
            return and_(t.c.system == system, t.c.code == code)
        if ptype == "string":
            mod = c.modifier
            if mod == "exact":
                return t.c.exact == v
            f = fold(v)
            if mod == "contains":
                return t.c.norm.like(f"%{_like_escape(f)}%", escape="\\")
            if mod == "ends":
                return t.c.norm.like(f"%{_like_escape(f)}", escape="\\")
            if mod in ("exact-folded", "not-folded"):
                return t.c.norm == f
            return and_(t.c.norm >= f, t.c.norm < f + "\x7f") if f else true()
        if ptype == "reference":
            ref = parse_reference(v) if "/" in v else None
            if ref:
                rtype, rid = ref
                if c.param.targets and rtype not in c.param.targets:
                    raise InvalidSearch(f"'{c.name}': {c.param.base}.{c.param.code} cannot point to {rtype}",
                                        expression=c.name)
                return and_(t.c.target_type == rtype, t.c.target_id == rid)
            return t.c.target_id == v
        if ptype == "date":
            prefix, rest = split_prefix(v)
            qlo, qhi = parse_search_date(rest, self.settings.local_timezone, c.name)
            if c.param.code == "_lastUpdated" and prefix in ("ge", "le"):
                # A stamp is an instant (low = high, ``indexer.restamp``): ge / le are then this one bound, an index
                # range with nothing else to test on each row (the delta sync's count of 518,000 national offers:
                # −22 %, raw SQL).
                return t.c.high >= qlo if prefix == "ge" else t.c.low <= qhi
            return _range_condition(prefix, t.c.low, t.c.high, qlo, qhi)
        if ptype in ("number", "quantity"):
            prefix, rest = split_prefix(v)
            parts = rest.split("|")
            num = parts[0]
            value = float(num)
            cond = _number_condition(prefix, t.c.value, value, _half_precision(num))
            if ptype == "quantity" and len(parts) == 3:
                system, code = parts[1], parts[2]
                if system:
                    cond = and_(cond, t.c.system == system)
                if code:
                    cond = and_(cond, t.c.code == code)
            return cond
        raise InvalidSearch(f"'{c.name}': parameter type {ptype} is not searchable", expression=c.name)

    # -- geography ------------------------------------------------------------------------------
    def geo_query(self, c: Criterion) -> GeoQuery:
        return parse_geo(c, c.values[0], self.settings)

    def distance(self, g, q: GeoQuery) -> ColumnElement:
        if self.dialect == "sqlite":
            return func.ror_distance_km(g.c.lat, g.c.lon, q.lat, q.lon)
        rad = func.radians  # halves as `* 0.5`: `/ 2` is rendered as a NUMERIC division on PostgreSQL
        a = (func.power(func.sin(rad(g.c.lat - q.lat) * 0.5), 2)
             + func.cos(rad(g.c.lat)) * func.cos(rad(q.lat)) * func.power(func.sin(rad(g.c.lon - q.lon) * 0.5), 2))
        return 2 * EARTH_RADIUS_KM * func.asin(func.sqrt(func.least(1.0, a)))

    @staticmethod
    def within(g, q: GeoQuery) -> ColumnElement:
        """The point of row ``g`` is within ``q.km`` of ``q``'s: ``haversine_km`` compared by its haversine, with a
        bound computed once. Calling the distance (a Python function on SQLite) for each point of the box was two thirds
        of a national circle's time (2,555 points: 17 -> 4.9 ms, raw SQL)."""
        return _Haversine(g.c.lat, g.c.lon, q) <= haversine_bound(q.km)

    def _geo(self, c: Criterion, pk=None) -> Select:
        if len(c.values) != 1:
            raise InvalidSearch(f"'{c.name}': one location only (no comma list)", expression=c.name)
        q = self.geo_query(c)
        min_lat, max_lat, min_lon, max_lon = bounding_box(q.lat, q.lon, q.km)
        g = self.vis.alias(idx_geo)
        # A box crossing the antimeridian comes back with min_lon > max_lon.
        lon = g.c.lon.between(min_lon, max_lon) if min_lon <= max_lon else or_(g.c.lon >= min_lon,
                                                                                 g.c.lon <= max_lon)
        return select(g.c.pk).where(*self._lookup(g, _rows_key(c.param), pk), g.c.lat.between(min_lat, max_lat), lon,
                                    self.within(g, q))

    def distance_key(self, base_pk) -> ColumnElement:
        """Distance of each base resource from the plan's near point (nearest of its places: for an offer, from its
        copies of their points where the criterion reads them, rather than through the chain)."""
        c = self._on_copies(self.plan.near)
        q = self.geo_query(c)
        g = self.vis.alias(idx_geo)
        if not c.hops:
            return (select(func.min(self.distance(g, q))).where(
                g.c.pk == base_pk, no_index(g.c.param) == _rows_key(c.param), visible(g, self.snap)).scalar_subquery())
        if len(c.hops) != 1:
            raise InvalidSearch("_sort=near: the geographic criterion may be chained through one reference only",
                                expression="_sort")
        hop = c.hops[0]
        ir = self.vis.alias(idx_ref)
        r = self.vis.alias(resource)
        return (select(func.min(self.distance(g, q))).select_from(ir)
                .join(r, and_(r.c.rtype == hop.target, r.c.rid == ir.c.target_id))
                .join(g, and_(g.c.pk == r.c.pk, no_index(g.c.param) == "Location.near"))
                .where(ir.c.pk == base_pk, no_index(ir.c.param) == hop.param.key, visible(ir, self.snap),
                       visible(g, self.snap)).scalar_subquery())

    # -- the page query -------------------------------------------------------------------------
    def matches(self, conn: Connection | None = None) -> tuple[Select, list[tuple[ColumnElement, bool]]]:
        """(query of pk + sort keys, sort keys) for the plan, without keyset or limit.

        One condition drives: its set is read first and the other conditions are tested on each of its
        resources (``test``). A set read from the base type's own index rows (``exact``) is the matches
        themselves; any other set is joined to its resources' ``_lastUpdated`` row, which checks they exist
        in the snapshot (and carries that sort key). With ``conn`` on SQLite, whose planner cannot size
        subqueries, the driver is the condition whose index lookup counts fewest rows (up to ``_SIZE_CAP``,
        one statement); PostgreSQL orders the semi-joins itself from its statistics. Without a condition
        that can drive, the type's rows are scanned."""
        conds, driver = self._conditions_and_driver(conn)
        if driver is not None and driver.exact and all(code != "_lastUpdated" for code, _ in self.plan.sort):
            # Not joined to the _lastUpdated rows: at national scale, probing them for each of 50,000
            # matches cost four times reading the matches.
            found = _rows_of(driver)
            if driver.union_of and driver.in_pk_order and self.dialect == "sqlite":
                # Merged from its parts read in pk order (the lookup indexes, migration 0012), rather than
                # deduplicated in a temporary B-tree: the largest national `_filter` OR counted in 24, not 42 ms.
                found = found.order_by(literal_column("pk"))
            return self._page_query(found.subquery(), driver.tests_beside(conds))
        d = self.vis.alias(idx_date)
        key = f"{self.plan.rtype}._lastUpdated"
        where = [visible(d, self.snap)]
        if driver is None:
            where.append(d.c.param == key)
        else:
            where += [d.c.pk.in_(driver.set()), no_index(d.c.param) == key]
        if self.vis.restricts(self.plan.rtype):
            where.append(self.vis.shown(self.plan.rtype, d.c.pk))
        return self._page_query(d, driver.tests_beside(conds) if driver else [c.test for c in conds], where)

    def _driving_alone(self, conn: Connection) -> _Cond | None:
        """The driving set when it is the matches themselves: read from the base type's own rows, with no other
        condition to test on its resources."""
        conds, driver = self._conditions_and_driver(conn)
        return driver if driver is not None and driver.exact and not driver.tests_beside(conds) else None

    def streams_in_pk_order(self, conn: Connection) -> bool:
        """Whether the matches are the driving set alone, read in pk order from its lookup index (a live
        snapshot): a page of them is then its first rows, read without sorting or scanning the others."""
        driver = self._driving_alone(conn)
        return driver is not None and driver.in_pk_order and not self.plan.sort

    def first_in_pk_order(self, conn: Connection, n: int) -> Select:
        """The first ``n`` matches of a search that ``streams_in_pk_order``, ordered by the driving set's own
        statement: the database reads them from the index and stops at the n-th (a page query over the set,
        ordered from outside, sorted the whole set first: 51,000 national offers, 21 ms against 0.2 on SQLite)."""
        return self._first_rows(self._driving_alone(conn), n)

    def _first_rows(self, cond: _Cond, n: int) -> Select:
        if cond.union_of and self.dialect != "sqlite":
            # PostgreSQL (15) appends a UNION's parts and deduplicates them all before its LIMIT applies; each
            # part's own first n rows, read from its index in pk order, hold the union's first n.
            parts = [select(literal_column("pk")).select_from(self._first_rows(p, n).subquery()) for p in cond.union_of]
            return union(*parts).order_by(literal_column("pk")).limit(n)
        return _rows_of(cond).order_by(literal_column("pk")).limit(n)

    def count(self, conn: Connection, matches: Select) -> Select:
        """The statement that counts ``matches`` (``matches()``'s query). PostgreSQL counts a union that is the
        matches alone (a ``_filter`` OR) as the distinct pks of its parts appended: its UNION deduplicated them in
        a hash table first (the national offers of two specialties, 78,282: 64 ms, against 25)."""
        driver = self._driving_alone(conn)
        if driver is not None and driver.union_of and self.dialect != "sqlite":
            parts = union_all(*[p.set() for p in driver.union_of]).subquery()
            return select(func.count(distinct(parts.c.pk)))
        return select(func.count()).select_from(matches.subquery())

    def driven_by_at_least(self, conn: Connection, n: int) -> bool:
        """Whether the set that drives ``matches`` has ``n`` rows or more: counted up to ``n`` on SQLite; on PostgreSQL,
        as its planner estimates, for a date criterion only. A search without a driving set scans the whole type."""
        _, driver = self._conditions_and_driver(conn)
        if driver is None:
            return True
        if self.dialect != "sqlite":
            # Counting up to 20,000 rows cost PostgreSQL 8 ms a search; the estimate, planning one statement (1-4 ms):
            # paid for a date criterion only, since the other national searches gained nothing from the scan.
            return driver.dated and _estimated_rows(conn, driver.set()) >= n
        if driver.exact and driver.sized is not None and driver.sized < _SIZE_CAP <= n:
            return False  # its rows (the base type's own: no chain to fan out) all counted when sized
        parts = driver.union_of
        if parts:  # capped counts of the parts first: SQLite reads a UNION whole before its LIMIT applies
            sizes = conn.execute(select(*[_capped_count(p.set(), n) for p in parts])).one()
            if max(sizes) >= n or sum(sizes) < n:
                return max(sizes) >= n
        return conn.execute(select(_capped_count(driver.set(), n))).scalar_one() >= n

    def scan(self, after_pk: int | None, rows: int) -> Select:
        """pks of the matches among the first ``rows`` resources of the type after ``after_pk``, in pk
        order: every condition tested on each. For large result sets, this finds a page in a few
        thousand index steps where driving reads and sorts all the matches. The window is bounded by the
        pk of its last row (read from the covering (param, pk) index) rather than by a ``LIMIT``ed
        subquery: SQLite then streams the type's rows in pk order and stops at the page's last match,
        where it tested every row of the subquery first (national offers: 18.6 → 4.8 ms a page)."""
        d, w = self.vis.alias(idx_date), self.vis.alias(idx_date)

        def rows_after(t) -> list[ColumnElement]:
            return [t.c.param == f"{self.plan.rtype}._lastUpdated", visible(t, self.snap),
                    *([t.c.pk > after_pk] if after_pk is not None else [])]
        last = select(d.c.pk).where(*rows_after(d)).order_by(d.c.pk).limit(1).offset(rows - 1).scalar_subquery()
        # Fewer than ``rows`` rows left: the window is the rest of the type.
        window = [*rows_after(w), w.c.pk <= func.coalesce(last, _PK_MAX)]
        shown = [self.vis.shown(self.plan.rtype, w.c.pk)] if self.vis.restricts(self.plan.rtype) else []
        return select(w.c.pk).where(*window, *shown, *[c.test(w.c.pk) for c in self._conds]).order_by(w.c.pk)

    def _page_query(self, rows, tests: list, where: list | None = None):
        keys = [(self._sort_key(code, desc, rows), desc) for code, desc in self.plan.sort]
        q = select(rows.c.pk, *[k.label(f"k{i}") for i, (k, _) in enumerate(keys)]).select_from(rows)
        return q.where(*(where or []), *[test(rows.c.pk) for test in tests]), keys

    def _conditions_and_driver(self, conn: Connection | None) -> tuple[list[_Cond], _Cond | None]:
        """The plan's conditions and the one that drives, chosen once per search (sizing costs a statement)."""
        if self._driving is None:
            sizing = conn if conn is not None and self.dialect == "sqlite" else None
            self._driving = (self._driver(self._conds, sizing),)  # a 1-tuple: the driver chosen may be None
        return self._conds, self._driving[0]

    @cached_property
    def _conds(self) -> list[_Cond]:
        """The plan's conditions, built once per search (the page query and the scan test the same ones)."""
        return self._conditions()

    def _conditions(self) -> list[_Cond]:
        singles, groups = self._record_groups()
        per_criterion = [(c, self._criterion_cond(c)) for c in singles]
        conds = [cond for _, cond in per_criterion] + [self._group_cond(g) for g in groups]
        for ast, compiled in self.plan.filters:
            conds += [self._filter_cond(n, compiled) for n in (ast.items if isinstance(ast, fast.And) else (ast,))]
        oriented = self._specialty_in_circle(per_criterion)
        return [oriented, *conds] if oriented else conds

    def _specialty_in_circle(self, per_criterion: list[tuple[Criterion, _Cond]]) -> _Cond | None:
        """For a specialty and a geographic criterion on the places of the offers (on their copies), a set that can
        drive: the offers of that specialty code whose places are in the circle, read from the copies of their points
        kept per code (``store.derived``). Driving, it stands for the geographic criterion (the same points, the same
        circle) but not the specialty (whose code it reads in any system): that is tested last, since it nearly always
        holds (the largest national specialty around Paris, tested for it first: 34 ms, last: 23, raw SQL); first
        among ties, since it holds no more than either set."""
        specialty = [(c, cond) for c, cond in per_criterion if c.param.key == derived.SPECIALTY and not c.hops
                     and c.modifier is None and len(c.values) == 1]
        near = [(g, cond) for g, cond in ((self._on_copies(c), cond) for c, cond in per_criterion)
                if g.param.base == derived.REFERENCE and g.param.type == SPECIAL]
        if not specialty or not near:
            return None
        (s, specialty_cond), (g, near_cond) = specialty[0], near[0]
        base = derived.keyed_base(_unescape(_PIPE.split(s.values[0], maxsplit=1)[-1]))
        if base is None:
            return None
        found = cache(partial(self._positive, replace(g, param=replace(g.param, base=base))))
        return _Cond(lambda pk: true(), found, [found], lambda sizes: sizes[id(found)], exact=True,
                     implies=(near_cond,), nearly_implies=(specialty_cond,))

    @staticmethod
    def _driver(conds: list[_Cond], conn: Connection | None) -> _Cond | None:
        # A set that another one implies holds at least as many rows: not sized (a national circle of the places'
        # points counted up to 500, beside the specialty's offers in it).
        implied = {id(i) for c in conds for i in c.implies}
        candidates = [c for c in conds if c.set is not None and id(c) not in implied]
        if len(candidates) < 2 or conn is None:
            return candidates[0] if candidates else None
        samples = [f for c in candidates for f in c.samples]
        counts = conn.execute(select(*[_capped_count(f(), _SIZE_CAP) for f in samples])).one()
        sizes = {id(f): n for f, n in zip(samples, counts, strict=True)}
        chosen = min(candidates, key=lambda c: c.size(sizes))
        chosen.sized = chosen.size(sizes)
        return chosen

    def _on_copies(self, c: Criterion) -> Criterion:
        """``c`` on the offer's own copies of its places' rows (``store.derived``) when it is a chain to them that
        they answer alike: a plain value test (not ``:missing`` or ``:not``, which a place without the value would
        satisfy), for a profile that sees every place (the copies cannot know which places a profile hides)."""
        if c.modifier is not None or len(c.hops) != 1 or self.vis.restricts(c.rtype):
            return c
        hop = c.hops[0]
        key = derived.copy_key(_rows_key(c.param))
        if key is None or hop.reverse or hop.param.key != derived.REFERENCE or hop.target != derived.TARGET:
            return c
        return replace(c, hops=(), rtype=hop.source, param=replace(c.param, base=derived.REFERENCE, group=None))

    def _criterion_cond(self, c: Criterion) -> _Cond:
        c = self._on_copies(c)
        test = partial(self.test, c)
        if c.modifier in ("not", "not-folded", "missing"):
            return _Cond(test)  # (nearly) everything: never drives
        end = cache(partial(self._end, c))  # sized, then driving: built once
        exact = not c.hops and c.param.code != "_id" and c.modifier not in ("above", "below")
        # A type's _lastUpdated has one row per resource, as a single plain string has: one value cannot match a
        # resource twice.
        unique = exact and len(c.values) == 1 and (c.param.code == "_lastUpdated" or _one_row_per_resource(c.param)
                                                   or _one_row_per_value(c))
        return _Cond(test, lambda: self._chain_set(c.hops, c.rtype, end()), [end], lambda sizes: sizes[id(end)],
                     exact, unique, in_pk_order=exact and self.snap is LIVE_ROWS and _pins_lookup(c),
                     dated=exact and c.param.type == "date")

    def _filter_cond(self, node, compiled: dict) -> _Cond:
        """A ``_filter`` expression: tests combined as the expression says; it can drive (as the
        union / intersection of its operands' sets) when it has no ``not``."""
        if isinstance(node, fast.Comparison):
            return self._criterion_cond(compiled[id(node)])
        if isinstance(node, fast.Not):
            inner = self._filter_cond(node.item, compiled)
            return _Cond(lambda pk: not_(inner.test(pk)))
        items = [self._filter_cond(n, compiled) for n in node.items]
        both = isinstance(node, fast.And)
        join, combine, size = (and_, intersect, min) if both else (or_, union, sum)

        def test(pk):
            return join(*[i.test(pk) for i in items])
        if any(i.set is None for i in items):
            return _Cond(test)
        return _Cond(test, lambda: combine(*[i.set() for i in items]), [s for i in items for s in i.samples],
                     lambda sizes: size(i.size(sizes) for i in items), all(i.exact for i in items), True,
                     () if both else tuple(items), in_pk_order=not both and all(i.in_pk_order for i in items))

    def _record_groups(self) -> tuple[list[Criterion], list[list[Criterion]]]:
        """With ``_same-record=true``, criteria on the same record extension (capacity, price,
        equipment, housing), through the same chain, are matched together on one record."""
        if not self.plan.same_record:
            return self.plan.criteria, []
        by_group: dict[tuple, list[Criterion]] = {}
        singles = []
        for c in self.plan.criteria:
            if c.param.group is not None and c.modifier is None:
                by_group.setdefault((c.hops, c.rtype, c.param.group), []).append(c)
            else:
                singles.append(c)
        groups = []
        for group in by_group.values():
            if len(group) > 1:
                groups.append(group)
            else:
                singles.extend(group)
        return singles, groups

    def _group_cond(self, group: list[Criterion]) -> _Cond:
        first = group[0]
        record = cache(partial(self._record, group))
        return _Cond(lambda pk: self._chain_test(first.hops, lambda end: exists(self._record(group, end)), pk),
                     lambda: self._chain_set(first.hops, first.rtype, record()), [record],
                     lambda sizes: sizes[id(record)], exact=not first.hops)

    def _record(self, group: list[Criterion], pk=None) -> Select:
        """pks of the resources (or: is ``pk``) with one record satisfying every criterion of ``group``."""
        tables = [self.vis.alias(_table_for(c.param.type)) for c in group]
        first = tables[0]
        q = select(first.c.pk).select_from(first)
        conds = [*self.vis.record_scope(group[0].param, first.c.pk)]
        for c, t in zip(group, tables, strict=True):
            if t is first:
                conds += self._lookup(t, c.param.key, pk)
            else:
                q = q.join(t, and_(*self._lookup(t, c.param.key, first.c.pk), t.c.grp == first.c.grp))
            conds.append(or_(*[self._value_condition(c, t, v) for v in c.values]))
        return q.where(*conds)

    def _sort_key(self, code: str, desc: bool, d) -> ColumnElement:
        if code == "_lastUpdated":
            return d.c.high if desc else d.c.low
        if code == "_id":
            r = self.vis.alias(resource)
            return select(r.c.rid).where(r.c.pk == d.c.pk).scalar_subquery()
        if code in ("near", "near-insee-code"):
            return func.coalesce(self.distance_key(d.c.pk), _FAR)
        p = self.plan_param(code)
        t = self.vis.alias(_table_for(p.type))
        agg = func.max if desc else func.min
        if p.type == "string":
            col, hi, lo = t.c.norm, _HIGH_SORT_STRING, ""
        elif p.type == "date":
            col, hi, lo = (t.c.high if desc else t.c.low), STAMP_MAX, STAMP_MIN
        elif p.type in ("token", "uri"):
            col, hi, lo = t.c.code, _HIGH_SORT_STRING, ""
        else:
            col, hi, lo = t.c.value, 1e308, -1e308
        sub = select(agg(col)).where(*self._lookup(t, p.key, d.c.pk)).scalar_subquery()
        return func.coalesce(sub, lo if desc else hi)

    def plan_param(self, code: str):
        return registry().get(self.plan.rtype, code)


def _rows_key(p: SearchParam) -> str:
    """The key of the index rows ``p`` reads: a place's point for both geographic parameters (``near``,
    ``near-insee-code``), and for their copies on an offer."""
    return f"{p.base}.near" if p.type == SPECIAL else p.key


def _rows_of(driver: _Cond) -> Select:
    """The driving set as the matches: each resource once (made distinct unless it cannot repeat)."""
    return driver.set() if driver.unique else driver.set().distinct()


def _estimated_rows(conn: Connection, rows: Select) -> float:
    """How many rows PostgreSQL's planner expects ``rows`` to give."""
    compiled = rows.compile(conn, compile_kwargs={"render_postcompile": True})
    plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar_one()
    return plan[0]["Plan"]["Plan Rows"]


def _capped_count(rows: Select, n: int) -> ColumnElement:
    """The number of rows of ``rows``, counted up to ``n``."""
    return select(func.count()).select_from(rows.limit(n).subquery()).scalar_subquery()


@cache
def _one_row_per_resource(p: SearchParam) -> bool:
    """Whether ``p`` indexes at most one row per resource: a string parameter whose expression is one element of its
    type that holds at most one plain string (``HealthcareService.name``). Its sets need no deduplication, which
    SQLite does in a temporary B-tree: counting the 69,570 national offers named ``consultations…`` (session 8)."""
    if p.type != "string" or p.group is not None:
        return False
    base, _, element = p.expression.partition(".")
    node = base_children(base).get(element) if base == p.base and element.isidentifier() else None
    return node is not None and node.max == 1 and not node.many and node.types == ["string"]


def _one_row_per_value(c: Criterion) -> bool:
    """Whether a resource has at most one row of ``c``'s value: one ``system|code`` of a token parameter read on the
    resource itself whose rows all carry the same mask, since the indexer writes each row once (``index_rows``: a
    code given twice, or by two paths, is one row). Not ``characteristic`` (a mask per value), nor an offer's copies of
    its places' rows (one per mask). Its set is then read without deduplication: a national specialty's 51,000
    offers, ``near`` statements −6 % in all, p95 −23 % (session 9)."""
    p = c.param
    return (_pins_lookup(c) and p.type in ("token", "uri") and p.group is None and p.base != derived.REFERENCE
            and isinstance(mask_rule(p.base, p.code, None), int))


def _pins_lookup(c: Criterion) -> bool:
    """Whether ``c``'s rows fix every column of their lookup index before ``until_tx``: one ``system|code`` token
    value (``param``, ``code``, ``system``) or one string matched whole, folded (``param``, ``norm``)."""
    if len(c.values) != 1:
        return False
    if c.param.type == "string":
        return c.modifier == "exact-folded"
    parts = _PIPE.split(c.values[0], maxsplit=1)
    return c.param.type in ("token", "uri") and c.modifier is None and len(parts) == 2 and all(parts)


def _table_for(ptype: str):
    return {"token": idx_token, "uri": idx_token, "string": idx_string, "reference": idx_ref, "date": idx_date,
            "number": idx_number, "quantity": idx_quantity}[ptype]


def _range_condition(prefix: str, low, high, qlo: str, qhi: str) -> ColumnElement:
    """FHIR R4 date comparison of the resource range [low, high] with the value range [qlo, qhi]."""
    contained = and_(low >= qlo, high <= qhi)
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return not_(contained)
    if prefix == "gt":
        return high > qhi
    if prefix == "lt":
        return low < qlo
    if prefix == "ge":
        return or_(high > qhi, contained)
    if prefix == "le":
        return or_(low < qlo, contained)
    if prefix == "sa":
        return low > qhi
    if prefix == "eb":
        return high < qlo
    # ap: the ranges overlap (documented approximation of "approximately").
    return and_(low <= qhi, high >= qlo)


def _half_precision(num: str) -> float:
    """Half a unit of the last significant digit: ``100`` -> 0.5, ``1.50`` -> 0.005 (FHIR implicit range)."""
    mantissa = num.lstrip("+-").split("e")[0].split("E")[0]
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    exp = int(num.lower().split("e")[1]) if "e" in num.lower() else 0
    return 0.5 * 10 ** (exp - decimals)


def _number_condition(prefix: str, col, value: float, half: float) -> ColumnElement:
    lo, hi = value - half, value + half
    if prefix == "eq":
        return and_(col >= lo, col < hi)
    if prefix == "ne":
        return or_(col < lo, col >= hi)
    if prefix in ("gt", "sa"):
        return col > value
    if prefix in ("lt", "eb"):
        return col < value
    if prefix == "ge":
        return col >= value
    if prefix == "le":
        return col <= value
    margin = abs(value) * 0.1
    return and_(col >= value - margin, col <= value + margin)


def keyset_condition(keys: list[tuple[ColumnElement, bool]], pk, values: list, last_pk: int) -> ColumnElement:
    """Rows strictly after (values…, last_pk) in the order of ``keys`` then pk ascending."""
    ors = []
    for i in range(len(keys) + 1):
        eqs = [keys[j][0] == values[j] for j in range(i)]
        if i < len(keys):
            col, desc = keys[i]
            step = col < values[i] if desc else col > values[i]
        else:
            step = pk > last_pk
        ors.append(and_(*eqs, step))
    return or_(*ors)

