"""FHIR search parameters -> a typed plan (what to match, sort, include, page).

Strict handling (the default) refuses an unknown parameter, modifier or value with 400 naming it;
with ``Prefer: handling=lenient`` an unknown parameter is ignored and reported as a warning in the
Bundle (FHIR R4 search §3.1.1.5). Values are validated here so that the SQL compiler only sees
well-formed input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ror.errors import InvalidRequest, InvalidSearch, Issue, UnknownSearchParameter
from ror.profiles.searchparams import RESOURCE_TYPES, SPECIAL, Registry, SearchParam
from ror.search import filter as filter_parser
from ror.settings import Settings

# Parameters that are not matched against the index but steer the search itself.
# Result parameters declared but not implemented: refused in strict mode (IG 0.6.0: no _elements).
UNSUPPORTED_CONTROL = {"_elements", "_contained", "_containedType"}

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIX_RE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[-+0-9.])")
MODIFIERS_BY_TYPE = {
    "token": {"not", "missing", "above", "below"},
    "uri": {"not", "missing", "above", "below"},
    "string": {"exact", "contains", "missing", "above", "below"},
    "reference": {"missing", "above", "below"},
    "date": {"missing", "above", "below"},
    "number": {"missing", "above", "below"},
    "quantity": {"missing", "above", "below"},
    SPECIAL: {"missing"},
}
# Pseudo-parameters every type has, handled by the compiler rather than an index lookup.
_ID = SearchParam(code="_id", base="*", type="token", expression="Resource.id",
                  url="http://hl7.org/fhir/SearchParameter/Resource-id")
_CONTENT = SearchParam(code="_content", base="*", type="text", expression="",
                       url="http://hl7.org/fhir/SearchParameter/Resource-content")


@dataclass(frozen=True)
class Hop:
    """One link of a chain. Forward: follow ``param`` (a reference on ``source``) to ``target``.
    Reverse (``_has``): resources of ``source`` whose ``param`` points at the current type."""

    source: str
    param: SearchParam
    target: str
    reverse: bool = False


@dataclass(frozen=True)
class Criterion:
    """A parameter test on the resource reached through ``hops`` (outermost first).
    ``values`` are ORed; criteria of a query are ANDed."""

    name: str  # as the client wrote it, for error messages
    hops: tuple[Hop, ...]
    rtype: str  # type the parameter applies to (the end of the chain)
    param: SearchParam
    modifier: str | None
    values: tuple[str, ...]


@dataclass(frozen=True)
class IncludeSpec:
    source: str
    param: SearchParam
    target: str | None
    iterate: bool
    reverse: bool


@dataclass
class SearchPlan:
    rtype: str
    criteria: list[Criterion] = field(default_factory=list)
    filters: list = field(default_factory=list)  # (filter AST, compiled-criteria map)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, descending)
    count: int = 200
    total: bool = True
    summary_count: bool = False
    includes: list[IncludeSpec] = field(default_factory=list)
    cursor: str | None = None
    warnings: list[Issue] = field(default_factory=list)
    near: Criterion | None = None  # the geographic criterion whose distance entries report
    profile: int = 1  # access profile of the caller (ror.profiles.access)
    same_record: bool = False  # capacity / price criteria must hold on one record (issue 5)

    @property
    def near_sort_requested(self) -> bool:
        return any(k in ("near", "near-insee-code") for k, _ in self.sort)


class PlanBuilder:
    def __init__(self, registry: Registry, settings: Settings, rtype: str, lenient: bool):
        self.registry = registry
        self.settings = settings
        self.rtype = rtype
        self.lenient = lenient
        self.warnings: list[Issue] = []

    # -- parameters ---------------------------------------------------------------------------
    def lookup(self, rtype: str, code: str, name: str) -> SearchParam:
        if code == "_id":
            return _ID
        if code == "_content":
            return _CONTENT
        p = self.registry.get(rtype, code)
        if p is None:
            raise UnknownSearchParameter(f"Unknown search parameter '{code}' for resource type {rtype}"
                                         + (f" (in '{name}')" if name != code else ""), expression=name)
        return p

    def parse_name(self, name: str, rtype: str) -> tuple[tuple[Hop, ...], str, SearchParam, str | None]:
        """``organization.partof.identifier:above`` -> hops, end type, param, modifier."""
        if name.startswith("_has:"):
            parts = name.split(":", 3)
            if len(parts) < 4 or not parts[1] or not parts[2] or not parts[3]:
                raise InvalidSearch(f"'{name}': _has needs the form _has:Type:reference:parameter",
                                    expression=name)
            source, ref_code, rest = parts[1], parts[2], parts[3]
            if source not in RESOURCE_TYPES:
                raise InvalidSearch(f"'{name}': unknown resource type '{source}' in _has", expression=name)
            ref = self.lookup(source, ref_code, name)
            if ref.type != "reference" or (ref.targets and rtype not in ref.targets):
                raise InvalidSearch(f"'{name}': {source}.{ref_code} is not a reference to {rtype}",
                                    expression=name)
            hops, end, param, mod = self.parse_name(rest, source)
            return (Hop(source, ref, rtype, reverse=True), *hops), end, param, mod
        links = name.split(".")
        hops: list[Hop] = []
        cur = rtype
        for link in links[:-1]:
            code, _, target = link.partition(":")
            ref = self.lookup(cur, code, name)
            if ref.type != "reference":
                raise InvalidSearch(f"'{name}': '{code}' is not a reference parameter of {cur} and cannot "
                                    "be chained", expression=name)
            if target:
                if target not in ref.targets:
                    raise InvalidSearch(f"'{name}': {cur}.{code} cannot point to '{target}'", expression=name)
            elif len(ref.targets) != 1:
                raise InvalidSearch(f"'{name}': {cur}.{code} may point to {', '.join(ref.targets)}; "
                                    f"name the type, e.g. {code}:{ref.targets[0]}.…", expression=name)
            else:
                target = ref.targets[0]
            hops.append(Hop(cur, ref, target))
            cur = target
        code, _, modifier = links[-1].partition(":")
        if code.startswith("_has"):
            raise InvalidSearch(f"'{name}': _has cannot follow a chain", expression=name)
        param = self.lookup(cur, code, name)
        mod = modifier or None
        allowed = MODIFIERS_BY_TYPE.get(param.type, {"missing"})
        if param is _ID:
            allowed = {"not", "missing"}
        if param is _CONTENT:
            allowed = set()
        if mod is not None and mod not in allowed:
            raise InvalidSearch(f"'{name}': modifier ':{mod}' is not supported on {param.type} parameter "
                                f"'{code}' (supported: {', '.join(sorted(allowed)) or 'none'})", expression=name)
        if mod in ("above", "below") and cur not in ("Organization", "Location"):
            raise InvalidSearch(f"'{name}': ':{mod}' follows the partOf hierarchy of Organization and Location; "
                                f"{cur} has none (and NOS codes have no subsumption)", expression=name)
        return tuple(hops), cur, param, mod

    def criterion(self, name: str, raw: str) -> Criterion:
        hops, end, param, mod = self.parse_name(name, self.rtype)
        values = tuple(_split_values(raw))
        if not values or any(v == "" for v in values):
            raise InvalidSearch(f"'{name}': empty value", expression=name)
        crit = Criterion(name, hops, end, param, mod, values)
        validate_values(crit, self.settings)
        return crit

    # -- result parameters --------------------------------------------------------------------
    def include(self, name: str, raw: str) -> IncludeSpec:
        reverse = name.startswith("_revinclude")
        iterate = name.endswith(":iterate") or name.endswith(":recurse")
        if name not in ("_include", "_revinclude", "_include:iterate", "_revinclude:iterate",
                        "_include:recurse", "_revinclude:recurse"):
            raise InvalidSearch(f"'{name}': unknown modifier", expression=name)
        parts = raw.split(":")
        if raw == "*" or len(parts) not in (2, 3):
            raise InvalidSearch(f"{name}={raw}: expected SourceType:searchParam[:TargetType] (no wildcard)",
                                expression=name)
        source, code = parts[0], parts[1]
        if source not in RESOURCE_TYPES:
            raise InvalidSearch(f"{name}={raw}: unknown resource type '{source}'", expression=name)
        param = self.lookup(source, code, f"{name}={raw}")
        if param.type != "reference":
            raise InvalidSearch(f"{name}={raw}: '{code}' is not a reference parameter of {source}",
                                expression=name)
        target = parts[2] if len(parts) == 3 else None
        if target is not None and target not in param.targets:
            raise InvalidSearch(f"{name}={raw}: {source}.{code} cannot point to '{target}'", expression=name)
        if not iterate and not reverse and source != self.rtype:
            # The IG's full-offer set writes `_include=PractitionerRole:practitioner` for the
            # revincluded roles: an include from another type can only mean an iterate include.
            iterate = True
        if not iterate and reverse and self.rtype not in (param.targets or (self.rtype,)):
            iterate = True
        return IncludeSpec(source, param, target, iterate, reverse)

    def sort(self, raw: str) -> list[tuple[str, bool]]:
        keys = []
        for part in raw.split(","):
            desc = part.startswith("-")
            code = part[1:] if desc else part
            if code in ("_id", "_lastUpdated", "near", "near-insee-code"):
                keys.append((code, desc))
                continue
            p = self.registry.get(self.rtype, code)
            if p is None or p.type not in ("string", "date", "number", "quantity", "token", "uri"):
                raise InvalidSearch(f"_sort: '{code}' is not a sortable parameter of {self.rtype}",
                                    expression="_sort")
            keys.append((p.code, desc))
        if len(keys) > 3:
            raise InvalidSearch("_sort: at most 3 keys", expression="_sort")
        return keys


def _split_values(raw: str) -> list[str]:
    """Comma = OR; ``\\,`` is a literal comma (FHIR escaping)."""
    out, cur, i = [], [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in ",$|\\":
            cur.append("\\" + raw[i + 1] if raw[i + 1] == "|" else raw[i + 1])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def split_prefix(value: str) -> tuple[str, str]:
    m = _PREFIX_RE.match(value)
    return (m.group(1), value[2:]) if m else ("eq", value)


_NUMBER_RE = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def validate_values(c: Criterion, settings: Settings) -> None:
    """Reject malformed values before they reach SQL (400 naming the parameter)."""
    t = c.param.type
    for v in c.values:
        if c.modifier == "missing":
            if v not in ("true", "false"):
                raise InvalidSearch(f"'{c.name}': :missing takes true or false, not '{v}'", expression=c.name)
            continue
        if t in ("number", "quantity"):
            _prefix, rest = split_prefix(v)
            num = rest.split("|", 1)[0]
            if not _NUMBER_RE.match(num):
                raise InvalidSearch(f"'{c.name}': '{v}' is not a number", expression=c.name)
            if t == "quantity" and rest.count("|") not in (0, 2):
                raise InvalidSearch(f"'{c.name}': quantity values are [prefix]number|system|code", expression=c.name)
        elif t == "date":
            from ror.fhirdates import parse_search_date
            _prefix, rest = split_prefix(v)
            parse_search_date(rest, settings.local_timezone, c.name)
        elif t == SPECIAL:
            parse_geo(c, v, settings)
        if len(v) > 500:
            raise InvalidSearch(f"'{c.name}': value longer than 500 characters", expression=c.name)


@dataclass(frozen=True)
class GeoQuery:
    lat: float
    lon: float
    km: float


_UNITS_KM = {"km": 1.0, "m": 0.001, "[mi_i]": 1.609344, "mi": 1.609344}


def parse_geo(c: Criterion, v: str, settings: Settings) -> GeoQuery:
    """``near=lat|lon|distance|unit`` or ``near-insee-code=COG|distance|unit``."""
    parts = v.split("|")
    try:
        if c.param.code == "near":
            if len(parts) < 2 or len(parts) > 4:
                raise ValueError
            lat, lon = float(parts[0]), float(parts[1])
            dist = float(parts[2]) if len(parts) > 2 and parts[2] else settings.near_radius_max_km
            unit = parts[3] if len(parts) > 3 and parts[3] else "km"
        else:
            if len(parts) < 1 or len(parts) > 3 or not parts[0]:
                raise ValueError
            from ror.geo import load_communes
            commune = load_communes().get(parts[0])
            if commune is None or commune.latitude is None:
                raise InvalidSearch(f"'{c.name}': '{parts[0]}' is not a known INSEE commune code (COG)",
                                    expression=c.name)
            lat, lon = commune.latitude, commune.longitude
            dist = float(parts[1]) if len(parts) > 1 and parts[1] else settings.near_radius_max_km
            unit = parts[2] if len(parts) > 2 and parts[2] else "km"
    except ValueError:
        form = "lat|long|distance|unit" if c.param.code == "near" else "COG|distance|unit"
        raise InvalidSearch(f"'{c.name}': '{v}' does not match {form}", expression=c.name) from None
    if unit not in _UNITS_KM:
        raise InvalidSearch(f"'{c.name}': unit '{unit}' not supported (km, m, [mi_i])", expression=c.name)
    km = dist * _UNITS_KM[unit]
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or km < 0 or km > settings.near_radius_max_km:
        raise InvalidSearch(f"'{c.name}': coordinates out of range or distance above "
                            f"{settings.near_radius_max_km:g} km", expression=c.name)
    return GeoQuery(lat, lon, km)


def build_plan(rtype: str, pairs: list[tuple[str, str]], registry: Registry, settings: Settings,
               lenient: bool = False, profile: int = 1) -> SearchPlan:
    b = PlanBuilder(registry, settings, rtype, lenient)
    plan = SearchPlan(rtype=rtype, count=settings.page_size_default, profile=profile)
    for name, raw in pairs:
        try:
            _apply(b, plan, name, raw, settings)
        except UnknownSearchParameter as e:
            if not lenient:
                raise
            plan.warnings.append(Issue("warning", "not-supported", e.message + " — ignored (lenient handling)",
                                       e.expression))
    if plan.near_sort_requested and plan.near is None:
        raise InvalidSearch("_sort=near needs a near or near-insee-code criterion (direct or chained through "
                            "location)", expression="_sort")
    return plan


def _apply(b: PlanBuilder, plan: SearchPlan, name: str, raw: str, settings: Settings) -> None:
    base = name.split(":", 1)[0]
    if base in UNSUPPORTED_CONTROL:
        raise UnknownSearchParameter(f"'{name}' is not implemented by this server (IG 0.6.0 change-log)",
                                     expression=name)
    if base == "_count":
        if not raw.isdigit():
            raise InvalidSearch(f"_count must be a non-negative integer, not '{raw}'", expression="_count")
        n = int(raw)
        if n > settings.page_size_max:
            plan.warnings.append(Issue("information", "informational",
                                       f"_count={n} reduced to the maximum page size {settings.page_size_max}",
                                       ["_count"]))
            n = settings.page_size_max
        plan.count = n
        plan.summary_count = plan.summary_count or n == 0
    elif base == "_sort":
        plan.sort = b.sort(raw)
    elif base in ("_include", "_revinclude"):
        for v in raw.split(","):
            plan.includes.append(b.include(name, v))
    elif base in ("_total", "_totalMethod"):  # _totalMethod: HAPI's spelling, sent by client libraries
        if raw not in ("none", "estimate", "accurate", "count"):
            raise InvalidSearch(f"{base} takes none, estimate or accurate", expression=base)
        plan.total = raw != "none"
    elif base == "_summary":
        if raw == "count":
            plan.summary_count = True
        elif raw != "false":
            raise InvalidSearch(f"_summary={raw} is not supported (count or false)", expression="_summary")
    elif base == "_cursor":
        plan.cursor = raw
    elif base == "_same-record":  # ROR national extension, docs/search.md "Several capacity criteria"
        if raw not in ("true", "false"):
            raise InvalidSearch("_same-record takes true or false", expression="_same-record")
        plan.same_record = raw == "true"
    elif base == "_format":
        if raw not in ("json", "application/json", "application/fhir+json", "application/json+fhir"):
            raise InvalidSearch(f"_format={raw} is not supported: this server speaks application/fhir+json",
                                expression="_format")
    elif base == "_pretty":
        pass
    elif base == "_filter":
        ast = filter_parser.parse_filter(raw)
        compiled = {id(cmp): _filter_criterion(b, cmp) for cmp in filter_parser.iter_comparisons(ast)}
        plan.filters.append((ast, compiled))
    else:
        crit = b.criterion(name, raw)
        plan.criteria.append(crit)
        if crit.param.type == SPECIAL and crit.modifier is None:
            if plan.near is not None:
                raise InvalidSearch("only one near / near-insee-code criterion per search", expression=name)
            if any(h.reverse for h in crit.hops):
                raise InvalidSearch(f"'{name}': geographic criteria cannot go through _has", expression=name)
            plan.near = crit


# _filter operators -> (prefix to put before the value, modifier) by parameter type.
_FILTER_OPS = {
    "date": {op: (op, None) for op in PREFIXES},
    "number": {op: (op, None) for op in PREFIXES},
    "quantity": {op: (op, None) for op in PREFIXES},
    "token": {"eq": ("", None), "ne": ("", "not")},
    "uri": {"eq": ("", None), "ne": ("", "not")},
    "string": {"eq": ("", "exact-folded"), "co": ("", "contains"), "sw": ("", None), "ew": ("", "ends"),
               "ne": ("", "not-folded")},
    "reference": {"eq": ("", None)},
    "text": {"eq": ("", None), "co": ("", None)},
    SPECIAL: {},
}


def _filter_criterion(b: PlanBuilder, cmp) -> Criterion:
    name = ".".join(cmp.path) + (f":{cmp.modifier}" if cmp.modifier else "")
    try:
        hops, end, param, mod = b.parse_name(name, b.rtype)
    except InvalidRequest as e:
        # Never ignorable (even with lenient handling): dropping part of a boolean expression
        # would silently widen the result.
        raise InvalidSearch(f"_filter: {e.message}", expression="_filter") from None
    if cmp.op == "pr":
        if cmp.value not in ("true", "false"):
            raise InvalidSearch(f"_filter: 'pr' takes true or false, not '{cmp.value}'", expression="_filter")
        return Criterion(name, hops, end, param, "missing", ("false" if cmp.value == "true" else "true",))
    ops = _FILTER_OPS.get(param.type, {})
    if cmp.op not in ops:
        raise InvalidSearch(f"_filter: operator '{cmp.op}' is not supported on {param.type} parameter "
                            f"'{param.code}'", expression="_filter")
    prefix, op_mod = ops[cmp.op]
    if op_mod and mod:
        raise InvalidSearch(f"_filter: '{name} {cmp.op}' combines two modifiers", expression="_filter")
    crit = Criterion(name, hops, end, param, op_mod or mod, (prefix + cmp.value,))
    validate_values(crit, b.settings)
    return crit
