"""Search plan -> SQL over the index tables, pinned to a snapshot transaction.

Every criterion becomes a ``SELECT pk`` of the resources it matches; a query ANDs them with
``pk IN (…)`` semi-joins over a driving scan of the type's ``_lastUpdated`` index rows (present
once per resource), so the whole query — criteria, sort keys, count — sees one snapshot.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from ror.errors import InvalidSearch
from ror.fhirdates import STAMP_MAX, STAMP_MIN, parse_search_date
from ror.geo import EARTH_RADIUS_KM, bounding_box
from ror.profiles.searchparams import SPECIAL, registry
from ror.search import filter as fast
from ror.search.plan import Criterion, GeoQuery, Hop, SearchPlan, parse_geo, split_prefix
from ror.search.visibility import Visibility, visible
from ror.settings import Settings
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


def _unescape(s: str) -> str:
    return s.replace("\\|", "|")


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Compiler:
    def __init__(self, plan: SearchPlan, settings: Settings, snapshot: int, dialect: str):
        self.plan = plan
        self.settings = settings
        self.snap = literal(snapshot, literal_execute=False)
        self.dialect = dialect
        self.vis = Visibility(plan.profile, self.snap)

    def rows(self, t) -> list[ColumnElement]:
        """Conditions every index lookup carries: in the snapshot, and seen by the caller's profile."""
        return [visible(t, self.snap), *self.vis.row_conditions(t)]

    # -- sets of resources ----------------------------------------------------------------------
    def all_of(self, rtype: str) -> Select:
        """Every resource of ``rtype`` in the snapshot that the caller's profile may see."""
        return self.vis.restrict(rtype, self.vis.everything(rtype))

    def criterion(self, c: Criterion) -> Select:
        """pks of the plan's base type matching ``c``; every set along a chain is restricted to what
        the caller may see, so no hidden resource can be reached or inferred through a chain."""
        sel = self.vis.restrict(c.rtype, self._end(c))
        for hop in reversed(c.hops):
            sel = self.vis.restrict(hop.source if not hop.reverse else hop.target, self._hop(hop, sel))
        return sel

    def _hop(self, hop: Hop, inner: Select) -> Select:
        r = resource.alias()
        ir = idx_ref.alias()
        if hop.reverse:
            return select(r.c.pk).where(r.c.rtype == hop.target, r.c.rid.in_(
                select(ir.c.target_id).where(ir.c.param == hop.param.key, *self.rows(ir),
                                             ir.c.target_type == hop.target, ir.c.pk.in_(inner))))
        return select(ir.c.pk).where(ir.c.param == hop.param.key, *self.rows(ir),
                                     ir.c.target_type == hop.target, ir.c.target_id.in_(
                                         select(r.c.rid).where(r.c.rtype == hop.target, r.c.pk.in_(inner))))

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

    def _present(self, c: Criterion) -> Select:
        p = c.param
        if p.code == "_id":
            return self.all_of(c.rtype)
        if p.type == SPECIAL:
            t = idx_geo.alias()
            return select(t.c.pk).where(t.c.param == "Location.near", *self.rows(t))
        t = _table_for(p.type).alias()
        return self.vis.scope_records(p, select(t.c.pk).where(t.c.param == p.key, *self.rows(t)))

    def _hierarchy(self, rtype: str, seed: Select, down: bool) -> Select:
        """``:above``: the resources matching, and every resource below them (partOf descendants) —
        i.e. those with the criterion true on themselves or an ancestor. ``:below``: the reverse."""
        tree = seed.cte(name=f"tree_{'d' if down else 'u'}_{id(seed)}", recursive=True)
        ir = idx_ref.alias()
        r = resource.alias()
        if down:
            step = (select(ir.c.pk).select_from(ir)
                    .join(r, and_(r.c.rtype == rtype, r.c.rid == ir.c.target_id))
                    .join(tree, tree.c.pk == r.c.pk)
                    .where(ir.c.param == f"{rtype}.partof", *self.rows(ir)))
        else:
            step = (select(r.c.pk).select_from(ir)
                    .join(tree, tree.c.pk == ir.c.pk)
                    .join(r, and_(r.c.rtype == rtype, r.c.rid == ir.c.target_id))
                    .where(ir.c.param == f"{rtype}.partof", *self.rows(ir)))
        tree = tree.union(step)
        return select(tree.c.pk)

    def _positive(self, c: Criterion) -> Select:
        p = c.param
        if p.code == "_id":
            r = resource.alias()
            return select(r.c.pk).where(r.c.rtype == c.rtype, r.c.rid.in_(list(c.values)))
        if p.type == "text":
            t = idx_text.alias()
            conds = []
            for v in c.values:
                words = fold(v).split()
                conds.append(and_(*[t.c.content.like(f"%{_like_escape(w)}%", escape="\\") for w in words])
                             if words else false())
            return select(t.c.pk).where(t.c.param == f"{c.rtype}._content", *self.rows(t), or_(*conds))
        if p.type == SPECIAL:
            return self._geo(c)
        t = _table_for(p.type).alias()
        conds = [self._value_condition(c, t, v) for v in c.values]
        return self.vis.scope_records(p, select(t.c.pk).where(t.c.param == p.key, *self.rows(t), or_(*conds)))

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
        rad = func.radians
        a = (func.power(func.sin(rad(g.c.lat - q.lat) / 2), 2)
             + func.cos(rad(g.c.lat)) * func.cos(rad(q.lat)) * func.power(func.sin(rad(g.c.lon - q.lon) / 2), 2))
        return 2 * EARTH_RADIUS_KM * func.asin(func.sqrt(func.least(1.0, a)))

    def _geo(self, c: Criterion) -> Select:
        if len(c.values) != 1:
            raise InvalidSearch(f"'{c.name}': one location only (no comma list)", expression=c.name)
        q = self.geo_query(c)
        min_lat, max_lat, min_lon, max_lon = bounding_box(q.lat, q.lon, q.km)
        g = idx_geo.alias()
        return select(g.c.pk).where(g.c.param == "Location.near", *self.rows(g),
                                    g.c.lat.between(min_lat, max_lat), g.c.lon.between(min_lon, max_lon),
                                    self.distance(g, q) <= q.km)

    def distance_key(self, base_pk) -> ColumnElement:
        """Distance of each base resource from the plan's near point (nearest of its places)."""
        c = self.plan.near
        q = self.geo_query(c)
        g = idx_geo.alias()
        if not c.hops:
            return (select(func.min(self.distance(g, q))).where(g.c.pk == base_pk, g.c.param == "Location.near",
                                                               visible(g, self.snap)).scalar_subquery())
        if len(c.hops) != 1:
            raise InvalidSearch("_sort=near: the geographic criterion may be chained through one reference only",
                                expression="_sort")
        hop = c.hops[0]
        ir = idx_ref.alias()
        r = resource.alias()
        return (select(func.min(self.distance(g, q))).select_from(ir)
                .join(r, and_(r.c.rtype == hop.target, r.c.rid == ir.c.target_id))
                .join(g, and_(g.c.pk == r.c.pk, g.c.param == "Location.near"))
                .where(ir.c.pk == base_pk, ir.c.param == hop.param.key, visible(ir, self.snap),
                       visible(g, self.snap)).scalar_subquery())

    # -- _filter --------------------------------------------------------------------------------
    def filter_condition(self, node, compiled: dict, pk_col) -> ColumnElement:
        if isinstance(node, fast.Comparison):
            return pk_col.in_(self.criterion(compiled[id(node)]))
        if isinstance(node, fast.And):
            return and_(*[self.filter_condition(n, compiled, pk_col) for n in node.items])
        if isinstance(node, fast.Or):
            return or_(*[self.filter_condition(n, compiled, pk_col) for n in node.items])
        return not_(self.filter_condition(node.item, compiled, pk_col))

    # -- the page query -------------------------------------------------------------------------
    def matches(self) -> tuple[Select, list[tuple[ColumnElement, bool]]]:
        """(query of pk + sort keys, sort keys) for the plan, without keyset or limit."""
        d = idx_date.alias("drv")
        conds = [d.c.param == f"{self.plan.rtype}._lastUpdated", visible(d, self.snap)]
        if self.vis.restricts(self.plan.rtype):
            conds.append(self.vis.shown(self.plan.rtype, d.c.pk))
        singles, groups = self._record_groups()
        conds += [d.c.pk.in_(self.criterion(c)) for c in singles]
        conds += [d.c.pk.in_(self._same_record(group)) for group in groups]
        conds += [self.filter_condition(ast, compiled, d.c.pk) for ast, compiled in self.plan.filters]
        keys = [(self._sort_key(code, desc, d), desc) for code, desc in self.plan.sort]
        q = select(d.c.pk, *[k.label(f"k{i}") for i, (k, _) in enumerate(keys)]).select_from(d)
        return q.where(*conds), keys

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

    def _same_record(self, group: list[Criterion]) -> Select:
        tables = [_table_for(c.param.type).alias() for c in group]
        first = tables[0]
        q = select(first.c.pk).select_from(first)
        conds = []
        for c, t in zip(group, tables, strict=True):
            if t is not first:
                q = q.join(t, and_(t.c.pk == first.c.pk, t.c.grp == first.c.grp))
            conds += [t.c.param == c.param.key, *self.rows(t), or_(*[self._value_condition(c, t, v) for v in c.values])]
        sel = self.vis.restrict(group[0].rtype, self.vis.scope_records(group[0].param, q.where(*conds)))
        for hop in reversed(group[0].hops):
            sel = self.vis.restrict(hop.source if not hop.reverse else hop.target, self._hop(hop, sel))
        return sel

    def _sort_key(self, code: str, desc: bool, d) -> ColumnElement:
        if code == "_lastUpdated":
            return d.c.high if desc else d.c.low
        if code == "_id":
            r = resource.alias()
            return select(r.c.rid).where(r.c.pk == d.c.pk).scalar_subquery()
        if code in ("near", "near-insee-code"):
            return func.coalesce(self.distance_key(d.c.pk), _FAR)
        p = self.plan_param(code)
        t = _table_for(p.type).alias()
        agg = func.max if desc else func.min
        if p.type == "string":
            col, hi, lo = t.c.norm, _HIGH_SORT_STRING, ""
        elif p.type == "date":
            col, hi, lo = (t.c.high if desc else t.c.low), STAMP_MAX, STAMP_MIN
        elif p.type in ("token", "uri"):
            col, hi, lo = t.c.code, _HIGH_SORT_STRING, ""
        else:
            col, hi, lo = t.c.value, 1e308, -1e308
        sub = select(agg(col)).where(t.c.pk == d.c.pk, t.c.param == p.key, *self.rows(t)).scalar_subquery()
        return func.coalesce(sub, lo if desc else hi)

    def plan_param(self, code: str):
        return registry().get(self.plan.rtype, code)


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

