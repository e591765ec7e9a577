"""Validation of a resource against its ROR profile: the guard of every write.

``Validator.validate(resource, conn)`` walks the resource once over the compiled profile tree
(``ror.profiles.structure``) and returns every issue found, never only the first:

- structure: unknown elements, JSON arrays where R4 has single values and the reverse, primitive
  formats (date, dateTime, code, id, integer ranges...);
- cardinalities of elements and of slices, fixed values and patterns;
- slices: by extension url, by ``coding.system`` (a slice bound to a value set holds the codings of
  that value set's code systems; of the code system named like it when the value set is not shipped),
  by a sub-extension's value, by pattern (``type``, ``id``);
- required bindings: the code must be in the bound NOS value set and valid at the resource's date
  (``meta.lastUpdated``, else now); a code retired or dropped from the value set *after* that date is
  a warning, not an error, so re-sending an old record does not fail on a later NOS update;
- extensions: each known extension is checked against its definition wherever it appears, and the
  value of one the IG does not define against the R4 data type its key names;
- references: type allowed by the profile, and the target must exist in the store (``validate_many``:
  one look-up for a whole batch);
- identifiers: FINESS, SIREN/SIRET, RPPS, idNat_PS, idNatStruct formats and check keys.

NOS tables are read from the database, and from the set shipped with ROR national for any table the
database does not hold (``ror.terminology.bundled``): a fresh database, or no connection at all, gives
the verdict a database loaded with that set gives.

Each issue carries a severity, an OperationOutcome issue code, an English message naming the ROR
element (and the ME attribute when the IG maps it) and the FHIRPath of the faulty element.
``raise_if_errors`` turns a list with errors into a 422 carrying all issues, warnings included.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, bindparam, select, tuple_

from ror.errors import Issue, UnprocessableResource
from ror.profiles.identifiers import CHECKS
from ror.profiles.structure import PRIMITIVES, URL_ALIASES, Node, compile_profiles, datatype
from ror.store.schema import resource as resource_table
from ror.terminology.bundled import bundled
from ror.terminology.cache import CodeSystemView, Terminology, ValueSetView, validity
from ror.terminology.nos import NOS_BASE, canonical_name, canonical_url

_EXISTS = select(resource_table.c.rtype, resource_table.c.rid).where(
    tuple_(resource_table.c.rtype, resource_table.c.rid).in_(bindparam("keys", expanding=True)))
ROR_SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
MISSING_TARGET = "does not exist in ROR national"  # text of the issue of a reference whose target is not stored
STORED_TYPES = frozenset({"Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole",
                          "Task"})

# A resource's issues but those of missing reference targets, and the stored resources its references name
# ((type, id) -> FHIRPaths): what ``check_many`` gives ``resolve_references``.
Checked = tuple[list[Issue], dict[tuple[str, str], list[str]]]
_CLEAN_MAX_BYTES = 32 * 1024 * 1024  # content of the clean verdicts kept per validator, then forgotten at once
_NEVER = "\uffff"  # after every date
_TZ = r"(Z|[+-](?:0\d|1[0-3]):[0-5]\d|[+-]14:00)"
_TIME = r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?"
_FORMATS = {
    "date": re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$"),
    "dateTime": re.compile(rf"^\d{{4}}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T{_TIME}{_TZ})?)?)?$"),
    "instant": re.compile(rf"^\d{{4}}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T{_TIME}{_TZ}$"),
    "time": re.compile(rf"^{_TIME}$"),
    "code": re.compile(r"^[^\s]+( [^\s]+)*$"),
    "id": re.compile(r"^[A-Za-z0-9\-.]{1,64}$"),
    "oid": re.compile(r"^urn:oid:[0-2](\.(0|[1-9]\d*))+$"),
    "uuid": re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    "uri": re.compile(r"^\S*$"),
    "url": re.compile(r"^\S*$"),
    "canonical": re.compile(r"^\S*$"),
}
_CODED = frozenset({"code", "Coding", "CodeableConcept"})
# Bindings checked: the NOS and ROR IG value sets. Core FHIR value sets (status codes...) are not shipped.
_CHECKED_BINDINGS = (NOS_BASE, "https://interop.esante.gouv.fr/")
_BY_ITSELF = [("value", "$this")]
_EXTENSIONS = frozenset({"extension", "modifierExtension"})
_INT_RANGE = {"integer": (-2**31, 2**31 - 1), "positiveInt": (1, 2**31 - 1), "unsignedInt": (0, 2**31 - 1)}


def _type_of_key(key: str, base: str) -> str:
    suffix = key[len(base):]
    low = suffix[:1].lower() + suffix[1:]
    return low if low in PRIMITIVES else suffix


def _keymap(node: Node) -> dict[str, tuple[str, str]]:
    """JSON property -> (child name, type code), choices expanded (``valueString`` -> value, string)."""
    km = node.__dict__.get("_keymap")
    if km is None:
        km = {}
        for name, kid in node.children().items():
            if kid.is_choice:
                for t in kid.types:
                    km[name + t[:1].upper() + t[1:]] = (name, t)
            else:
                km[name] = (name, kid.types[0] if kid.types else "")
        node.__dict__["_keymap"] = km
    return km


def _required(node: Node) -> list[Node]:
    """Children that must be looked at even when absent (minimum, or slices with a minimum)."""
    req = node.__dict__.get("_required")
    if req is None:
        req = [k for k in node.children().values() if k.min > 0 or any(s.min > 0 for s in k.slices)]
        node.__dict__["_required"] = req
    return req


def _ext_slices(node: Node) -> dict[str, int]:
    """Extension url -> index of the slice that holds it (extensions are sliced by url)."""
    m = node.__dict__.get("_ext_slices")
    if m is None:
        m = {}
        for i, s in enumerate(node.slices):
            url_node = s.children().get("url")
            url = s.profile or (url_node.fixed if url_node is not None else None)
            if isinstance(url, str):
                m.setdefault(url, i)
                for alias in URL_ALIASES.get(url, ()):
                    m.setdefault(alias, i)
        node.__dict__["_ext_slices"] = m
    return m


def _sub_extension(node: Node, url: str) -> Node | None:
    """The slice of ``node``'s extensions that holds extension ``url`` (discriminator ``extension(url)``)."""
    cache = node.__dict__.setdefault("_sub_extensions", {})
    if url not in cache:
        ext = node.children().get("extension")
        cache[url] = next((x for x in ext.slices if x.profile == url), None) if ext is not None else None
    return cache[url]


def _label(node: Node) -> str:
    path = node.path
    return f"{path} ({node.short})" if node.short and node.short not in path else path


def _same(a, b) -> bool:
    if isinstance(a, str) and isinstance(b, str) and a.startswith(NOS_BASE) and b.startswith(NOS_BASE):
        # The IG writes some NOS systems with '_' in the FHIR id (spec §8.13): compare canonical forms.
        na, nb = canonical_name(a.rsplit("/", 1)[-1]), canonical_name(b.rsplit("/", 1)[-1])
        return a == b or (na is not None and nb is not None and canonical_url(na) == canonical_url(nb))
    return a == b


def _matches_pattern(value, pattern) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and _matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        vals = value if isinstance(value, list) else [value]
        return all(any(_matches_pattern(v, p) for v in vals) for p in pattern)
    return _same(value, pattern)


def _navigate(value, path: list[str]) -> list:
    cur = [value]
    for seg in path:
        nxt = []
        for v in cur:
            if isinstance(v, dict) and seg in v:
                x = v[seg]
                nxt.extend(x if isinstance(x, list) else [x])
        cur = nxt
    return cur


def _codings(value, type_code: str) -> list[tuple[int | None, dict]]:
    if type_code == "CodeableConcept" and isinstance(value, dict):
        return [(i, c) for i, c in enumerate(value.get("coding") or []) if isinstance(c, dict)]
    if type_code == "Coding" and isinstance(value, dict):
        return [(None, value)]
    if isinstance(value, str):
        return [(None, {"code": value})]
    return []


class _Run:
    __slots__ = ("at", "conn", "issues", "refs", "tables", "window")

    def __init__(self, conn: Connection | None, at: str):
        self.conn = conn
        self.at = at
        self.issues: list[Issue] = []
        self.refs: list[tuple[str, str, tuple[str, ...]]] = []
        self.tables: dict[str, ValueSetView | CodeSystemView | None] = {}  # URL -> view, for this resource
        # The dates around ``at`` between which the codes checked so far keep their validity: [start, end).
        self.window: tuple[str, str] = ("", _NEVER)

    def narrow(self, start: str | None, end: str | None) -> None:
        lo, hi = self.window
        self.window = (max(lo, start or ""), min(hi, end or _NEVER))

    def add(self, severity: str, code: str, text: str, expr: str) -> None:
        self.issues.append(Issue(severity, code, text, [expr]))


class Validator:
    """Validates resources against the ROR profiles; build once, share between requests (thread-safe).

    ``strict=False`` turns validation off (``validate`` returns no issue): for bulk loads of data
    already validated upstream. ``check_references=False`` skips the store look-up of references
    (for ``$validate`` of payloads whose targets are not written yet).
    """

    def __init__(self, terminology: Terminology | None = None, *, strict: bool = True,
                 check_references: bool = True, local_timezone: str = "Europe/Paris"):
        self.profiles = compile_profiles()
        self.terminology = terminology or Terminology()
        self.fallback = bundled()
        self.strict = strict
        self.check_references = check_references
        self._tz = ZoneInfo(local_timezone)
        # Elements of a resource and extensions found clean, by (node, terminology generation, content) -> the
        # dates between which the verdict holds: what a write or a feed's reload keeps is checked once.
        self._clean: dict[tuple, tuple[str, str]] = {}
        self._clean_bytes = 0

    def validate(self, resource: dict, conn: Connection | None) -> list[Issue]:
        """Every issue of ``resource`` (errors, warnings, information), in document order."""
        return self.validate_many([resource], conn)[0]

    def validate_many(self, resources: list[dict], conn: Connection | None, *, at: str | None = None,
                      known: set[tuple[str, str]] | frozenset = frozenset()) -> list[list[Issue]]:
        """The issues of each resource, as ``validate`` gives them, with one store look-up for the references
        of the whole batch (a transaction's entries, a feed batch) instead of one per resource.

        ``at``: the date the codes must be valid on (``YYYY-MM-DDTHH:MM:SS``, local time) instead of each
        resource's ``meta.lastUpdated`` (a feed judges a record at its extraction date). ``known``: (type, id)
        of resources to take as existing besides the store (written by the same import, not committed yet).
        A missing reference target is an ``error``/``not-found`` issue whose text contains ``MISSING_TARGET``."""
        return self.resolve_references(conn, self.check_many(resources, conn, at=at), known)

    def check_many(self, resources: list[dict], conn: Connection | None, *, at: str | None = None) -> list[Checked]:
        """``validate_many`` but the store look-up of the references' targets: each resource's issues and the
        stored resources its references name, for ``resolve_references``. The costly part, which reads the
        store only for NOS tables: a feed runs it in worker processes (``ror.profiles.parallel``)."""
        if not self.strict:
            return [([], {}) for _ in resources]
        out: list[Checked] = []
        for resource in resources:
            rtype = resource.get("resourceType") if isinstance(resource, dict) else None
            root = self.profiles.by_type.get(rtype) if isinstance(rtype, str) else None
            if root is None:
                out.append(([Issue("error", "not-supported", f"No ROR profile for resource type '{rtype}' "
                                   f"(profiled: {', '.join(sorted(self.profiles.by_type))})", [str(rtype)])], {}))
                continue
            run = _Run(conn, at or self._resource_date(resource))
            self._object(root, resource, rtype, run, rtype)
            self._identifiers(resource, rtype, run)
            wanted = self._references(resource, run) if self.check_references and conn is not None and run.refs \
                else {}
            out.append((run.issues, wanted))
        return out

    @staticmethod
    def resolve_references(conn: Connection | None, checked: list[Checked],
                           known: set[tuple[str, str]] | frozenset = frozenset()) -> list[list[Issue]]:
        """The issues of ``check_many``'s resources, with one for each reference whose target is neither
        stored (one look-up for them all, on ``conn``: it sees its own transaction's writes) nor ``known``."""
        keys = {key for _, wanted in checked for key in wanted}
        if keys:
            found = _existing(conn, keys - known) | (keys & known) if known else _existing(conn, keys)
            for issues, wanted in checked:
                for key, exprs in wanted.items():
                    if key not in found:
                        issues.extend(Issue("error", "not-found", f"{expr}: {key[0]}/{key[1]} {MISSING_TARGET}",
                                            [expr]) for expr in exprs)
        return [issues for issues, _ in checked]

    def _value_set(self, run: _Run, url: str) -> ValueSetView | None:
        """The database's version of a table, else the bundled one: the verdict must not depend on whether
        ``ror terminology load`` ran (a fresh database, or ``$validate`` without a connection)."""
        if url not in run.tables:
            vs = self.terminology.value_set(run.conn, url) if run.conn is not None else None
            run.tables[url] = vs if vs is not None else self.fallback.value_set(None, url)
        return run.tables[url]

    def _code_system(self, run: _Run, url: str) -> CodeSystemView | None:
        if url not in run.tables:
            cs = self.terminology.code_system(run.conn, url) if run.conn is not None else None
            run.tables[url] = cs if cs is not None else self.fallback.code_system(None, url)
        return run.tables[url]

    def _resource_date(self, resource: dict) -> str:
        stamp = (resource.get("meta") or {}).get("lastUpdated") if isinstance(resource.get("meta"), dict) else None
        if isinstance(stamp, str) and _FORMATS["instant"].match(stamp):
            dt = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(self._tz)
        else:
            dt = datetime.now(self._tz)
        return dt.strftime("%Y-%m-%dT%H:%M:%S")

    # -- structure ---------------------------------------------------------------------------------
    def _object(self, node: Node, obj, expr: str, run: _Run, type_code: str) -> None:
        if not isinstance(obj, dict):
            run.add("error", "structure", f"{expr} must be a JSON object ({type_code})", expr)
            return
        keymap = _keymap(node)
        is_root = expr == type_code and node.name == type_code and type_code[:1].isupper() and "." not in node.path
        groups: dict[str, list] = {}
        for key, value in obj.items():
            if key == "resourceType" and is_root:
                continue
            if key.startswith("_"):
                base = key[1:]
                if base not in keymap and base not in obj:
                    run.add("error", "structure", f"Unknown element '{key}' in {expr}", f"{expr}.{key}")
                elif base not in obj and keymap.get(base) is not None:
                    # ``_line`` without ``line``: only the id/extensions of the primitive values
                    self._primitive_companions_for(node.children()[keymap[base][0]], value, expr, base, run)
                continue
            hit = keymap.get(key)
            if hit is None:
                if is_root and key == "contained":
                    continue
                run.add("error", "structure", f"Unknown element '{key}' in {expr} (not in FHIR R4 {type_code})",
                        f"{expr}.{key}")
                continue
            name, tcode = hit
            groups.setdefault(name, []).append((key, tcode, value))
        kids = node.children()
        for name, entries in groups.items():
            if is_root:  # a write usually changes one element of a resource: the others were found clean
                content = orjson.dumps([(key, value, obj.get("_" + key)) for key, _, value in entries])
                self._unless_clean(("element", id(kids[name])), content, run,
                                   lambda kid=kids[name], entries=entries: self._element(kid, entries, obj, expr, run))
            else:
                self._element(kids[name], entries, obj, expr, run)
        for kid in _required(node):
            if kid.name not in groups:
                self._element(kid, [], obj, expr, run)

    def _element(self, kid: Node, entries: list, obj: dict, expr: str, run: _Run) -> None:
        items: list[tuple[str, str, object]] = []  # (expression, type, value)
        for key, tcode, value in entries:
            if isinstance(value, list):
                if not kid.many:
                    run.add("error", "structure", f"{expr}.{key} must be a single value, not an array", f"{expr}.{key}")
                items.extend((f"{expr}.{key}[{i}]", tcode, v) for i, v in enumerate(value))
            else:
                if kid.many:
                    run.add("error", "structure", f"{expr}.{key} must be an array", f"{expr}.{key}")
                items.append((f"{expr}.{key}", tcode, value))
            companions = obj.get("_" + key)
            if companions is not None:
                self._primitive_companions_for(kid, companions, expr, key, run)
        if len(entries) > 1:
            run.add("error", "structure", f"{expr} has several values for the choice {kid.name}[x]",
                    f"{expr}.{entries[1][0]}")
        n, sliced = len(items), bool(kid.slices) or kid.name in _EXTENSIONS
        if sliced or n < kid.min or (kid.max is not None and n > kid.max):  # the path is only built when needed
            where = f"{expr}.{kid.name}[x]" if kid.is_choice else f"{expr}.{kid.name}"
            self._cardinality(kid, n, where, expr, run)
            if sliced:
                self._sliced(kid, items, where, expr, run)
                return
        for sub, tcode, value in items:
            self._value(kid, value, tcode, sub, run)

    def _primitive_companions_for(self, kid: Node, companions, expr: str, key: str, run: _Run) -> None:
        """``_line`` and friends: the id/extensions of primitive values, checked as an Element."""
        ext_node = kid.children().get("extension")
        items = companions if isinstance(companions, list) else [companions]
        for i, comp in enumerate(items):
            if comp is None:
                continue
            sub = f"{expr}._{key}[{i}]" if isinstance(companions, list) else f"{expr}._{key}"
            if not isinstance(comp, dict):
                run.add("error", "structure", f"{sub} must be a JSON object", sub)
                continue
            for k in comp:
                if k not in ("id", "extension"):
                    run.add("error", "structure", f"Unknown element '{k}' in {sub}", f"{sub}.{k}")
            if ext_node is not None and "extension" in comp:
                self._element(ext_node, [("extension", "Extension", comp["extension"])], comp, sub, run)

    @staticmethod
    def _cardinality(node: Node, n: int, where: str, parent: str, run: _Run, what: str | None = None) -> None:
        if n < node.min:
            run.add("error", "required", f"{what or _label(node)}: minimum required = {node.min}, but only found {n}",
                    where if n else parent)
        if node.max is not None and n > node.max:
            run.add("error", "structure", f"{what or _label(node)}: maximum allowed = {node.max}, but found {n}", where)

    # -- slicing -----------------------------------------------------------------------------------
    def _sliced(self, kid: Node, items: list, where: str, parent: str, run: _Run) -> None:
        is_ext = kid.name in _EXTENSIONS
        assigned: dict[int, list] = {i: [] for i in range(len(kid.slices))}
        unmatched = []
        by_url = _ext_slices(kid) if is_ext else None
        for item in items:
            if by_url is not None:
                i = by_url.get(item[2].get("url")) if isinstance(item[2], dict) else None
                (unmatched if i is None else assigned[i]).append(item)
                continue
            for i, s in enumerate(kid.slices):
                if self._in_slice(kid, s, item[2], item[1], run):
                    assigned[i].append(item)
                    break
            else:
                unmatched.append(item)
        for i, s in enumerate(kid.slices):
            got = assigned[i]
            if len(got) < s.min or (s.max is not None and len(got) > s.max):
                label = f"Slice '{s.slice_name}' of {kid.path}" + (f" ({s.short})" if s.short else "")
                if s.binding and not s.short:
                    label += f" [{s.binding.rsplit('/', 1)[-1]}]"
                self._cardinality(s, len(got), where, parent, run, label)
            for sub, tcode, value in got:
                if is_ext:
                    self._extension(s, value, tcode, sub, run)
                else:
                    self._value(s, value, tcode, sub, run)
        closed = kid.slicing is not None and kid.slicing.rules == "closed"
        for sub, tcode, value in unmatched:
            if closed:
                run.add("error", "structure", f"{sub} matches no slice of {kid.path} (closed slicing)", sub)
            elif is_ext:
                self._free_extension(kid, value, sub, run)
            else:
                self._value(kid, value, tcode, sub, run)

    def _extension(self, s: Node, value, tcode: str, sub: str, run: _Run) -> None:
        """``_value`` of an extension slice, skipped for content already found clean."""
        self._unless_clean(("extension", id(s)), orjson.dumps(value), run,
                           lambda: self._value(s, value, tcode, sub, run))

    def _unless_clean(self, what: tuple, content: bytes, run: _Run, check) -> None:
        """``check()`` unless ``content`` was already found clean as ``what``. Such a verdict depends on the
        content, the NOS tables read and the validity periods of its codes that hold the resource date; one
        that found a reference is not kept (the target's existence is checked for each resource)."""
        if run.conn is not None:
            self.terminology.refresh(run.conn)
        key = (what, run.conn is None, self.terminology.generation, content)
        window = self._clean.get(key)
        if window is not None and window[0] <= run.at < window[1]:
            run.narrow(*window)
            return
        issues, refs, outer = len(run.issues), len(run.refs), run.window
        run.window = ("", _NEVER)
        check()
        if len(run.issues) == issues and len(run.refs) == refs:
            self._clean_bytes += len(content) + 200  # the key's tuple and the window
            if self._clean_bytes > _CLEAN_MAX_BYTES:
                self._clean.clear()
                self._clean_bytes = len(content) + 200
            self._clean[key] = run.window
        inner, run.window = run.window, outer
        run.narrow(*inner)

    def _in_slice(self, parent: Node, s: Node, value, tcode: str, run: _Run) -> bool:
        # Slices without a slicing come from a base profile that is not shipped (FrOrganization slices
        # Organization.type): each slice is then told by its own pattern or value set.
        discs = parent.slicing.discriminators if parent.slicing else _BY_ITSELF
        return bool(discs) and all(self._disc(s, value, tcode, path, run) for _, path in discs)

    def _disc(self, s: Node, value, tcode: str, path: str, run: _Run) -> bool:
        if path.startswith("extension("):
            url = path[len("extension("):-1]
            sub = _sub_extension(s, url)
            found = [e for e in (value.get("extension") or []) if isinstance(e, dict) and e.get("url") == url] \
                if isinstance(value, dict) else []
            if sub is None:
                return True
            if sub.max == 0:
                return not found
            vnode = sub.children().get("value")
            expected = None if vnode is None else (vnode.fixed if vnode.fixed is not None else vnode.pattern)
            if expected is not None:
                return any(_same(v, expected) for e in found for k, v in e.items() if k.startswith("value"))
            return bool(found) or sub.min == 0
        segs = [] if path == "$this" else path.split(".")
        node: Node | None = s
        for i, seg in enumerate([*segs, None]):
            fixed = node.fixed if node.fixed is not None else node.pattern
            if fixed is not None:
                expected = _navigate(fixed, segs[i:]) if i < len(segs) else [fixed]
                actual = _navigate(value, segs)
                return bool(expected) and all(any(_same(a, e) for a in actual) for e in expected)
            if seg is None:
                break
            node = node.children().get(seg)
            if node is None:
                break
        # No fixed value on the discriminator path: a slice bound to a value set holds the codings
        # of that value set's code systems (how the ROR slices characteristic, specialty, meta.tag).
        if s.binding:
            vs = self._value_set(run, s.binding)
            systems = vs.systems if vs is not None else self.fallback.namesakes(s.binding)
            for _, c in _codings(value, tcode):
                if c.get("system") in systems:
                    return True
                if vs is not None and vs.by_oid and c.get("code") in vs.by_oid \
                        and self._code_system(run, c.get("system", "")) is None:
                    return True
        return False

    def _free_extension(self, kid: Node, value, sub: str, run: _Run) -> None:
        url = value.get("url") if isinstance(value, dict) else None
        if not isinstance(url, str):
            run.add("error", "required", f"{sub}: an extension must have a url", sub)
            return
        definition = self.profiles.extensions.get(url)
        if definition is not None:
            self._value(definition, value, "Extension", sub, run)
        elif url.startswith(ROR_SD):
            run.add("warning", "structure", f"{sub}: '{url}' is not an extension defined by the ROR IG 0.7.0", sub)
            self._value(kid, value, "Extension", sub, run)
        else:
            self._value(kid, value, "Extension", sub, run)

    # -- values ------------------------------------------------------------------------------------
    def _value(self, node: Node, value, tcode: str, expr: str, run: _Run) -> None:
        if tcode in PRIMITIVES:
            self._primitive(tcode, value, expr, run)
        elif tcode == "Resource":
            if not isinstance(value, dict) or "resourceType" not in value:
                run.add("error", "structure", f"{expr} must be a resource", expr)
            return
        else:
            self._object(node if len(node.types) < 2 else datatype(tcode), value, expr, run, tcode)
            if tcode == "Extension" and isinstance(value, dict) and "extension" in value \
                    and any(k.startswith("value") for k in value):
                run.add("error", "structure", f"{expr}: an extension has either a value[x] or extensions, not both",
                        expr)
            if tcode == "Reference" and isinstance(value, dict) and isinstance(value.get("reference"), str):
                run.refs.append((f"{expr}.reference", value["reference"], node.targets))
        if (node.fixed is not None and not _matches_pattern(value, node.fixed)) or \
                (node.pattern is not None and not _matches_pattern(value, node.pattern)):
            want = node.fixed if node.fixed is not None else node.pattern
            run.add("error", "value", f"{_label(node)}: value must be {_short_json(want)}, found {_short_json(value)}",
                    expr)
        if node.binding and node.binding_strength == "required" and tcode in _CODED \
                and node.binding.startswith(_CHECKED_BINDINGS):
            self._binding(node, value, tcode, expr, run)

    @staticmethod
    def _primitive(tcode: str, value, expr: str, run: _Run) -> None:
        if tcode == "boolean":
            ok = isinstance(value, bool)
        elif tcode in _INT_RANGE:
            lo, hi = _INT_RANGE[tcode]
            ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
        elif tcode == "decimal":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            fmt = _FORMATS.get(tcode)
            ok = isinstance(value, str) and value != "" and (fmt is None or bool(fmt.match(value)))
        if not ok:
            run.add("error", "value", f"{expr}: {_short_json(value)} is not a valid FHIR {tcode}", expr)

    def _binding(self, node: Node, value, tcode: str, expr: str, run: _Run) -> None:
        codings = _codings(value, tcode)
        if not codings:
            return
        vs = self._value_set(run, node.binding)
        vs_name = vs.name if vs else node.binding.rsplit("/", 1)[-1]
        what = _label(node)

        def sub(i):
            return f"{expr}.coding[{i}]" if i is not None else expr

        if vs is None:
            for i, c in codings:
                cs = self._code_system(run, c.get("system", "")) if c.get("system") else None
                if cs is None:
                    run.add("information", "informational",
                            f"{what}: value set {vs_name} is not loaded; code '{c.get('code')}' of "
                            f"'{c.get('system')}' was not checked", sub(i))
                else:
                    self._code_dates(cs, c, what, f"code system {cs.name}", sub(i), run, required=True)
            return
        for i, c in codings:
            if self._member(vs, c) or self._whole_member(run, vs, c):
                cs = self._code_system(run, c.get("system", "")) if c.get("system") else None
                if cs is not None:
                    self._code_dates(cs, c, what, f"value set {vs.name}", sub(i), run, required=False)
                return
        for i, c in codings:
            gone = vs.removed.get((c.get("system"), c.get("code")))
            if gone is not None and gone > run.at:
                run.add("warning", "code-invalid",
                        f"{what}: code '{c.get('code')}' left value set {vs.name} on {gone[:10]}, after the "
                        f"resource date {run.at[:10]}; it is no longer accepted for new data", sub(i))
                return
            if gone is not None:
                run.add("error", "code-invalid",
                        f"{what}: code '{c.get('code')}' left value set {vs.name} on {gone[:10]}, before the "
                        f"resource date {run.at[:10]}", sub(i))
                return
        shown = ", ".join(f"{c.get('system')}|{c.get('code')}" for _, c in codings)
        run.add("error", "code-invalid", f"{what}: {shown} is not in value set {vs.name} (version {vs.version}), "
                f"which this element requires", sub(codings[0][0]))

    def _whole_member(self, run: _Run, vs: ValueSetView, c: dict) -> bool:
        """A coding of a code system the value set includes whole (JDV_J124-Commune: TRE_R13): the code must
        exist in that code system; its dates are then checked like any member's."""
        system = c.get("system")
        if not vs.whole or not isinstance(system, str) or system not in vs.whole:
            return False
        cs = self._code_system(run, system)
        return cs is not None and c.get("code") in cs.codes

    @staticmethod
    def _member(vs: ValueSetView, c: dict) -> bool:
        key = (c.get("system"), c.get("code"))
        if key in vs.members:
            return True
        return bool(vs.by_oid) and c.get("code") in vs.by_oid and str(c.get("system", "")).startswith(NOS_BASE)

    @staticmethod
    def _code_dates(cs, c: dict, what: str, source: str, expr: str, run: _Run, required: bool) -> None:
        info = cs.codes.get(c.get("code"))
        if info is None:
            if required:
                run.add("error", "code-invalid", f"{what}: code '{c.get('code')}' does not exist in {cs.name} "
                        f"(version {cs.version})", expr)
            return
        v = validity(info, run.at)
        if v.period is not None:
            run.narrow(*v.period)
        if v.state == "retired":
            run.add("error", "code-invalid", f"{what}: code '{c.get('code')}' ({info.display}) of {cs.name} was "
                    f"retired on {(v.date or '')[:10]}, before the resource date {run.at[:10]}", expr)
        elif v.state == "not-yet-valid":
            run.add("error", "code-invalid", f"{what}: code '{c.get('code')}' of {cs.name} is only valid from "
                    f"{(v.date or '')[:10]}, after the resource date {run.at[:10]}", expr)
        elif v.retired_since is not None:
            run.add("warning", "code-invalid", f"{what}: code '{c.get('code')}' ({info.display}) of {cs.name} was "
                    f"retired on {v.retired_since[:10]}, after the resource date {run.at[:10]} ({source})", expr)

    # -- identifiers and references ----------------------------------------------------------------
    @staticmethod
    def _identifiers(resource: dict, rtype: str, run: _Run) -> None:
        idents = resource.get("identifier")
        if not isinstance(idents, list):
            return
        for i, ident in enumerate(idents):
            if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
                continue
            check = CHECKS.get(ident.get("system"))
            found = check(ident["value"]) if check else None
            if found:
                run.add(found[0], "value", found[1], f"{rtype}.identifier[{i}].value")

    @staticmethod
    def _references(resource: dict, run: _Run) -> dict[tuple[str, str], list[str]]:
        """The stored resources the references name ((type, id) -> FHIRPaths); malformed references, wrong
        target types and unknown contained ids are reported at once."""
        wanted: dict[tuple[str, str], list[str]] = {}
        contained = {c.get("id") for c in resource.get("contained") or [] if isinstance(c, dict)}
        for expr, ref, targets in run.refs:
            if ref.startswith("#"):
                if ref[1:] not in contained:
                    run.add("error", "not-found", f"{expr}: no contained resource with id '{ref[1:]}'", expr)
                continue
            if "://" in ref or ref.startswith("urn:"):
                continue  # absolute: not resolvable in this store
            parts = ref.split("/")
            if len(parts) not in (2, 4) or (len(parts) == 4 and parts[2] != "_history"):
                run.add("error", "value", f"{expr}: '{ref}' is not a reference of the form Type/id", expr)
                continue
            rtype, rid = parts[0], parts[1]
            if targets and rtype not in targets and "Resource" not in targets:
                run.add("error", "value", f"{expr}: a reference to {rtype} is not allowed here "
                        f"(allowed: {', '.join(targets)})", expr)
                continue
            if rtype not in STORED_TYPES:
                run.add("error", "not-found", f"{expr}: {rtype} resources are not held by ROR national", expr)
                continue
            if (rtype, rid) == (resource.get("resourceType"), resource.get("id")):
                continue
            wanted.setdefault((rtype, rid), []).append(expr)
        return wanted


def _existing(conn: Connection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (type, id) exist: one indexed look-up (uq_resource_type_id) per 500 keys."""
    ordered = sorted(keys)
    found: set[tuple[str, str]] = set()
    for i in range(0, len(ordered), 500):
        found.update(tuple(r) for r in conn.execute(_EXISTS, {"keys": ordered[i:i + 500]}))
    return found


def _short_json(value) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def raise_if_errors(issues: list[Issue]) -> None:
    """422 with every issue (errors, warnings, information) when at least one is an error."""
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        first = errors[0].diagnostics
        more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
        raise UnprocessableResource(f"The resource does not conform to its ROR profile: {first}{more}",
                                    issues=list(issues))


__all__ = ["MISSING_TARGET", "Checked", "Validator", "raise_if_errors"]
