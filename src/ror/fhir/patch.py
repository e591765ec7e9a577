"""FHIRPath Patch (FHIR R4 ``fhirpatch.html``) and JSON Patch (RFC 6902) on a resource held as a JSON dict.

Both entry points work on a deep copy and return it, so a failed patch leaves nothing half-applied.

FHIRPath paths are evaluated by a small evaluator that returns *locations* (the parent dict, the key and,
for array items, the index) rather than values, so that an operation can change the parent. The subset:
a leading resource type name, member navigation (arrays flattened, ``value`` reaching ``valueX`` choice
keys, ``.extension`` of a primitive reaching its ``_name`` companion), indexers, ``where``, ``exists``,
``empty``, ``first``, ``last``, ``not``, ``ofType``/``as``, ``extension(url)``, ``=``, ``!=``, ``and``,
``or``, parentheses, ``$this`` and string/integer/decimal/boolean literals. Anything else is refused.

Reading of the spec's cardinality rules ("the FHIRPath statement must return a single element"; "except
for the delete operation, it is an error if no element matches"):
- ``add`` and ``replace`` need exactly one element; none is a 404 ``PatchTargetNotFound`` whose expression
  is the path as sent (the ROR bed protocol falls back from ``replace`` to ``add`` on it), several a 422.
- ``insert`` and ``move`` name a *collection*: every selected item must belong to one and the same array,
  and the path must select that whole array (a filtered subset would make the index ambiguous).
- ``delete`` of nothing is a no-op. ``delete`` of several elements deletes them all: the spec's "only a
  single element can be deleted" is relaxed because the ROR IG's bed-management scenario 3 and §5.4 of our
  spec delete every capacity record of a temporary assignment with one operation.
``replace`` replaces the whole element: a primitive loses the extensions of its ``_name`` companion unless
the part sends new ones as ``_valueX``.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from typing import Any

import orjson

from ror.errors import InvalidRequest, PatchError, PatchTargetNotFound

__all__ = ["apply_fhirpath_patch", "apply_json_patch"]

# Suffixes of choice keys (``valueCodeableConcept``) and of a Parameters part's ``value[x]``: the R4 open
# types, plus Extension because the ROR bed protocol sends ``valueExtension``. A closed list keeps
# ``Task.status`` from matching ``statusReason`` and rejects typos such as ``valueInt``.
_PRIMITIVE_JSON: dict[str, tuple[type, ...]] = {
    "Boolean": (bool,), "Integer": (int,), "PositiveInt": (int,), "UnsignedInt": (int,),
    "Decimal": (int, float),
    **dict.fromkeys(("Base64Binary", "Canonical", "Code", "Date", "DateTime", "Id", "Instant", "Markdown",
                     "Oid", "String", "Time", "Uri", "Url", "Uuid"), (str,)),
}
_COMPLEX = frozenset((
    "Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactPoint", "Count",
    "Distance", "Duration", "HumanName", "Identifier", "Money", "Period", "Quantity", "Range", "Ratio",
    "Reference", "SampledData", "Signature", "Timing", "ContactDetail", "Contributor", "DataRequirement",
    "Expression", "ParameterDefinition", "RelatedArtifact", "TriggerDefinition", "UsageContext", "Dosage",
    "Meta", "Extension"))
_TYPES = frozenset(_PRIMITIVE_JSON) | _COMPLEX

# Whether ``add`` creates an array needs the element's cardinality. The IG only allows patching first-level
# elements, so the repeating first-level elements of the ROR resources are listed (from the R4 definitions);
# below the first level only names that repeat wherever they occur are known.
_ALWAYS_REPEATING = frozenset(("extension", "modifierExtension", "contained", "coding", "line", "given",
                               "prefix", "suffix", "telecom"))
_TOP_LEVEL_REPEATING = {
    "Location": frozenset(("identifier", "alias", "type", "endpoint", "hoursOfOperation")),
    "HealthcareService": frozenset((
        "identifier", "category", "type", "specialty", "location", "coverageArea", "serviceProvisionCode",
        "eligibility", "program", "characteristic", "communication", "referralMethod", "availableTime",
        "notAvailable", "endpoint")),
    "Organization": frozenset(("identifier", "type", "alias", "address", "contact", "endpoint")),
    "Practitioner": frozenset(("identifier", "name", "address", "photo", "qualification", "communication")),
    "PractitionerRole": frozenset(("identifier", "specialty", "code", "location", "healthcareService",
                                   "availableTime", "notAvailable", "endpoint")),
    "Task": frozenset(("identifier", "basedOn", "partOf", "performerType", "insurance", "note",
                       "relevantHistory", "input", "output")),
}

# Parts each operation type requires (``type`` aside); any other part is refused.
_OPERATIONS = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_PART_NAMES = frozenset(("type", "path", "name", "value", "index", "source", "destination"))
_ELEMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_MAX_PATH_LENGTH = 4096
_MAX_TOKENS = 400  # bounds the evaluator's recursion: a capacity indicator path takes about 150
_MAX_NESTING = 32


# --- FHIRPath: tokens and syntax ---------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`)
  | (?P<this>\$this)
  | (?P<op>!=|[.()\[\],=])
""", re.VERBOSE)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_BINARY_LEVELS = ({("ident", "or"): "or"}, {("ident", "and"): "and"}, {("op", "="): "eq", ("op", "!="): "ne"})
_FUNCTION_ARITY = {"where": (1,), "exists": (0, 1), "empty": (0,), "first": (0,), "last": (0,), "not": (0,),
                   "ofType": (1,), "as": (1,), "extension": (1,)}


def _unescape(text: str) -> str:
    def one(match: re.Match) -> str:
        esc = match.group(1)
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        if re.fullmatch(r"u[0-9A-Fa-f]{4}", esc):
            return chr(int(esc[1:], 16))
        raise ValueError(f"unknown escape '\\{esc[0]}'")
    return re.sub(r"\\(u[0-9A-Fa-f]{4}|.)", one, text, flags=re.DOTALL)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"unsupported character {text[pos]!r} at position {pos}")
        kind, raw = match.lastgroup, match.group()
        pos = match.end()
        if kind == "str":
            tokens.append(("lit", _unescape(raw[1:-1])))
        elif kind == "num":
            tokens.append(("lit", float(raw) if "." in raw else int(raw)))
        elif kind == "ident" and raw.startswith("`"):
            tokens.append(("ident", _unescape(raw[1:-1])))
        elif kind == "ident" and raw in ("true", "false"):
            tokens.append(("lit", raw == "true"))
        elif kind != "ws":
            tokens.append((kind, raw))
    return tokens


class _Parser:
    """Recursive descent over the subset; the AST is nested tuples tagged by their first item."""

    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        if len(self.tokens) > _MAX_TOKENS:
            raise ValueError("expression too long")
        self.pos = 0
        self.depth = 0

    def parse(self) -> tuple:
        tree = self.logical()
        if self.pos < len(self.tokens):
            raise ValueError(f"unsupported or unexpected {self.tokens[self.pos][1]!r}")
        return tree

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (value is not None and token != ("op", value)):
            raise ValueError(f"expected {value!r}" if value else "unexpected end of expression")
        self.pos += 1
        return token

    def logical(self, level: int = 0) -> tuple:
        """One precedence level of the binary operators per call, loosest (``or``) first."""
        if level == len(_BINARY_LEVELS):
            return self.term()
        self.depth += level == 0
        if self.depth > _MAX_NESTING:
            raise ValueError("expression nested too deeply")
        tree = self.logical(level + 1)
        while (tag := _BINARY_LEVELS[level].get(self.peek())) is not None:
            self.pos += 1
            tree = (tag, tree, self.logical(level + 1))
        self.depth -= level == 0
        return tree

    def term(self) -> tuple:
        tree = self.primary()
        while (token := self.peek()) in (("op", "."), ("op", "[")):
            self.pos += 1
            if token[1] == "[":
                tree = ("index", tree, self.logical())
                self.take("]")
                continue
            kind, name = self.take()
            if kind != "ident":
                raise ValueError(f"expected a name after '.', got {name!r}")
            tree = self.call(tree, name) if self.peek() == ("op", "(") else ("member", tree, name)
        return tree

    def primary(self) -> tuple:
        kind, value = self.take()
        if kind == "lit":
            return ("lit", value)
        if kind == "this":
            return ("this",)
        if (kind, value) == ("op", "("):
            tree = self.logical()
            self.take(")")
            return tree
        if kind == "ident" and value not in ("and", "or"):
            return self.call(None, value) if self.peek() == ("op", "(") else ("ident", value)
        raise ValueError(f"unexpected {value!r}")

    def call(self, target: tuple | None, name: str) -> tuple:
        if name not in _FUNCTION_ARITY:
            raise ValueError(f"unsupported function '{name}()'")
        self.take("(")
        args = []
        while self.peek() != ("op", ")"):
            if args:
                self.take(",")
            args.append(self.logical())
        self.take(")")
        if len(args) not in _FUNCTION_ARITY[name]:
            raise ValueError(f"wrong number of arguments to '{name}()'")
        if name in ("ofType", "as"):
            return ("type", target, _type_name(args[0]))
        return ("call", target, name, tuple(args))


def _type_name(tree: tuple) -> str:
    if tree[0] == "ident":
        return tree[1]
    if tree[0] == "member" and tree[1] in (("ident", "FHIR"), ("ident", "System")):
        return tree[2]
    raise ValueError("ofType()/as() take a type name")


# --- FHIRPath: evaluation to locations ---------------------------------------------------------------------

@dataclass(slots=True)
class _Node:
    """One selected item and where it lives: ``parent[key]`` or ``parent[key][index]``.

    ``element`` is the name navigated to; it differs from ``key`` for a choice (``value`` / ``valueString``).
    Literals and function results have no parent and cannot be the target of an operation.
    """

    value: Any
    parent: dict | None = None
    key: str | None = None
    index: int | None = None
    element: str | None = None


def _is_choice_key(key: str, name: str) -> bool:
    return key.startswith(name) and key[len(name):] in _TYPES


def _children(node: _Node, name: str) -> list[_Node]:
    value = node.value
    if not isinstance(value, dict):
        companion = _companion(node) if name in ("extension", "id") else None
        return _children(_Node(companion), name) if companion else []
    if name == "resourceType" or name.startswith("_"):
        return []
    keys = [name] if name in value else [k for k in value if _is_choice_key(k, name)]
    out = []
    for key in keys:
        item = value[key]
        if isinstance(item, list):
            out += [_Node(v, value, key, i, name) for i, v in enumerate(item) if v is not None]
        else:
            out.append(_Node(item, value, key, None, name))
    return out


def _companion(node: _Node, create: bool = False) -> Any:
    """The ``_name`` object carrying the id and extensions of a primitive (FHIR JSON), made on demand."""
    if node.parent is None:
        return None
    ckey = "_" + node.key
    if node.index is None:
        if create and node.parent.get(ckey) is None:
            node.parent[ckey] = {}
        return node.parent.get(ckey)
    companions = _aligned_companions(node.parent, node.key, create=True) if create else node.parent.get(ckey)
    if create and companions[node.index] is None:
        companions[node.index] = {}
    return companions[node.index] if isinstance(companions, list) and node.index < len(companions) else None


def _aligned_companions(parent: dict, key: str, create: bool = False) -> list | None:
    """``parent['_key']`` padded with nulls to the length of ``parent[key]``, as FHIR JSON requires."""
    companions = parent.get("_" + key)
    if not isinstance(companions, list):
        if not create:
            return None
        companions = parent["_" + key] = []
    companions += [None] * (len(parent[key]) - len(companions))
    return companions


def _truth(nodes: list[_Node]) -> bool | None:
    if not nodes:
        return None
    if len(nodes) > 1:
        raise ValueError("several items where a single boolean is expected")
    value = nodes[0].value
    return value if isinstance(value, bool) else True


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality that does not take ``true`` for ``1`` (Python's ``True == 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    return type(a) is type(b) and a == b


def _equal(left: list[_Node], right: list[_Node]) -> list[_Node]:
    if not left or not right:
        return []
    return [_Node(_json_equal([n.value for n in left], [n.value for n in right]))]


def _has_type(node: _Node, type_name: str) -> bool:
    if node.key is not None and node.element is not None and node.key != node.element:
        return node.key[len(node.element):] == type_name[:1].upper() + type_name[1:]
    if isinstance(node.value, dict) and "resourceType" in node.value:
        return node.value["resourceType"] == type_name
    raise ValueError("ofType()/as() only apply to choice elements and resources")


class _Evaluator:
    def __init__(self, resource: dict):
        self.root = _Node(resource)

    def select(self, tree: tuple) -> list[_Node]:
        return self.eval(tree, [self.root], top=True)

    def eval(self, tree: tuple, focus: list[_Node], top: bool = False) -> list[_Node]:
        """``top`` marks the navigation chain of the patch path itself, rooted at the resource."""
        tag = tree[0]
        if tag == "lit":
            return [_Node(tree[1])]
        if tag == "this":
            return focus
        if tag == "ident":  # the leading resource type name was checked when parsing
            return [self.root] if top else [c for n in focus for c in _children(n, tree[1])]
        if tag == "member":
            return [c for n in self.eval(tree[1], focus, top) for c in _children(n, tree[2])]
        if tag == "index":
            base = self.eval(tree[1], focus, top)
            index = self.eval(tree[2], focus)
            if len(index) != 1 or type(index[0].value) is not int:
                raise ValueError("an indexer must be a single integer")
            return base[index[0].value:index[0].value + 1] if index[0].value >= 0 else []
        if tag in ("eq", "ne"):
            result = _equal(self.eval(tree[1], focus), self.eval(tree[2], focus))
            return [_Node(not result[0].value)] if tag == "ne" and result else result
        if tag in ("and", "or"):
            decisive = tag == "or"  # the value that settles the result whatever the other side
            left = _truth(self.eval(tree[1], focus))
            if left is decisive:  # short-circuit: a capacity path's where() tests url first (profiled)
                return [_Node(decisive)]
            right = _truth(self.eval(tree[2], focus))
            if right is decisive:
                return [_Node(decisive)]
            return [] if left is None or right is None else [_Node(not decisive)]
        base = focus if tree[1] is None else self.eval(tree[1], focus, top)
        if tag == "type":
            return [n for n in base if _has_type(n, tree[2])]
        return self.function(tree[2], base, tree[3], focus)

    def function(self, name: str, base: list[_Node], args: tuple, focus: list[_Node]) -> list[_Node]:
        if name == "where" or (name == "exists" and args):
            test = _predicate(args[0])
            kept = []
            for n in base:
                truth = _NEEDS_LOCATIONS if test is None else test(n.value)
                if truth is _NEEDS_LOCATIONS:
                    truth = _truth(self.eval(args[0], [n]))
                if truth is True:
                    kept.append(n)
            base = kept
        if name == "where":
            return base
        if name in ("exists", "empty"):
            return [_Node(bool(base) == (name == "exists"))]
        if name == "first":
            return base[:1]
        if name == "last":
            return base[-1:]
        if name == "not":
            truth = _truth(base)
            return [] if truth is None else [_Node(not truth)]
        url = self.eval(args[0], focus)  # extension(url)
        if len(url) != 1 or not isinstance(url[0].value, str):
            raise ValueError("extension() takes a single url string")
        return [c for n in base for c in _children(n, "extension")
                if isinstance(c.value, dict) and c.value.get("url") == url[0].value]


# --- FHIRPath: evaluation to values, for the criteria of where() and exists() -----------------------------
# A criterion only needs the values it reads, not where they live: compiled once per expression into closures
# over plain JSON, it runs several times faster than the location evaluator (a capacity PATCH tests every
# record of the place against four sub-extension codes). Shapes that need locations (``ofType``, the
# ``_name`` companion of a primitive) fall back to the location evaluator.

class _NeedsLocations(Exception):
    pass


_NEEDS_LOCATIONS = object()  # a criterion's answer when it must be evaluated on locations


def _value_children(values: list, name: str) -> list:
    out = []
    for value in values:
        if not isinstance(value, dict):
            if name in ("extension", "id"):
                raise _NeedsLocations  # a primitive's extensions live in its ``_name`` companion
            continue
        for item in [value[name]] if name in value else [value[k] for k in value if _is_choice_key(k, name)]:
            if isinstance(item, list):
                out += [v for v in item if v is not None]
            else:
                out.append(item)
    return out


def _value_truth(values: list) -> bool | None:
    if not values:
        return None
    if len(values) > 1:
        raise ValueError("several items where a single boolean is expected")
    return values[0] if isinstance(values[0], bool) else True


def _compile_values(tree: tuple):
    """``tree`` as a function from the focus values to the result values."""
    tag = tree[0]
    if tag == "lit":
        value = tree[1]
        return lambda focus: [value]
    if tag == "this":
        return lambda focus: focus
    if tag in ("ident", "member"):
        base = None if tag == "ident" else _compile_values(tree[1])
        name = tree[-1]
        if name == "resourceType" or name.startswith("_"):
            return lambda focus: []
        if base is None:
            return lambda focus: _value_children(focus, name)
        return lambda focus: _value_children(base(focus), name)
    if tag == "index":
        base, index = _compile_values(tree[1]), _compile_values(tree[2])

        def at(focus):
            i = index(focus)
            if len(i) != 1 or type(i[0]) is not int:
                raise ValueError("an indexer must be a single integer")
            return base(focus)[i[0]:i[0] + 1] if i[0] >= 0 else []
        return at
    if tag in ("eq", "ne"):
        left, right, negate = _compile_values(tree[1]), _compile_values(tree[2]), tag == "ne"

        def equal(focus):
            a, b = left(focus), right(focus)
            if not a or not b:
                return []
            if len(a) == 1 == len(b) and type(a[0]) is str and type(b[0]) is str:  # most criteria: url='…'
                return [(a[0] == b[0]) != negate]
            return [_json_equal(a, b) != negate]
        field = _field_test(tree)
        if field is None:
            return equal
        name, text = field

        def field_equal(focus):
            """``url = '…'`` on one object holding the field as a string: ``equal``'s answer without building
            its operands."""
            if len(focus) == 1 and type(item := focus[0]) is dict and type(got := item.get(name)) is str:
                return [(got == text) != negate]
            return equal(focus)
        return field_equal
    if tag in ("and", "or"):
        left, right, decisive = _compile_values(tree[1]), _compile_values(tree[2]), tag == "or"

        def logic(focus):
            first = _value_truth(left(focus))
            if first is decisive:
                return [decisive]
            second = _value_truth(right(focus))
            if second is decisive:
                return [decisive]
            return [] if first is None or second is None else [not decisive]
        return logic
    if tag == "call":
        return _compile_call(tree)
    raise _NeedsLocations  # ofType()/as() test the key a value was found under


def _field_test(tree: tuple) -> tuple[str, str] | None:
    """(name, text) when ``tree`` is ``name = 'text'`` or ``name != 'text'`` (a capacity path tests every record
    and sub-extension so, by url), which an object holding ``name`` as a string answers by itself."""
    if tree[0] not in ("eq", "ne"):
        return None
    field, literal = tree[1], tree[2]
    if field[0] != "ident" or literal[0] != "lit" or type(literal[1]) is not str \
            or field[1] == "resourceType" or field[1].startswith("_"):
        return None
    return field[1], literal[1]


def _compile_call(tree: tuple):
    _, target, name, args = tree
    base = (lambda focus: focus) if target is None else _compile_values(target)
    if name == "where" or (name == "exists" and args):
        test = _compile_values(args[0])
        field = _field_test(args[0])
        if field is None:
            def kept(focus):
                return [v for v in base(focus) if _value_truth(test([v])) is True]
        else:  # ``where(url = '…')``: the items holding the field as a string tested inline, as ``test`` answers
            def kept(focus, name=field[0], text=field[1], same=args[0][0] == "eq"):
                out = []
                for v in base(focus):
                    if type(v) is dict and type(got := v.get(name)) is str:
                        if (got == text) == same:
                            out.append(v)
                    elif _value_truth(test([v])) is True:
                        out.append(v)
                return out
    else:
        kept = base
    if name == "where":
        return kept
    if name in ("exists", "empty"):
        return lambda focus: [bool(kept(focus)) == (name == "exists")]
    if name == "first":
        return lambda focus: base(focus)[:1]
    if name == "last":
        return lambda focus: base(focus)[-1:]
    if name == "not":
        def negate(focus):
            truth = _value_truth(base(focus))
            return [] if truth is None else [not truth]
        return negate
    url = _compile_values(args[0])  # extension(url)

    def extension(focus):
        wanted = url(focus)
        if len(wanted) != 1 or not isinstance(wanted[0], str):
            raise ValueError("extension() takes a single url string")
        return [e for e in _value_children(base(focus), "extension")
                if isinstance(e, dict) and e.get("url") == wanted[0]]
    return extension


@functools.lru_cache(maxsize=512)
def _predicate(tree: tuple):
    """The criterion ``tree`` as a test of one item's value (True, False, None or ``_NEEDS_LOCATIONS``), or None
    when it always needs locations."""
    try:
        values = _compile_values(tree)
    except _NeedsLocations:
        return None

    def test(value) -> object:
        try:
            return _value_truth(values([value]))
        except _NeedsLocations:
            return _NEEDS_LOCATIONS
    return test


# --- FHIRPath Patch ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Value:
    """A part's value: its JSON, the type suffix of its ``value[x]`` key (None for nested parts) and the
    ``_valueX`` companion carrying a primitive's extensions."""

    json: Any
    type: str | None = None
    companion: dict | None = None


@dataclass(slots=True)
class _Operation:
    type: str
    path: str
    tree: tuple
    name: str | None = None
    value: _Value | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


def _json_copy(value):
    """Deep copy of JSON data, ~10x faster than copy.deepcopy on a FHIR resource."""
    return orjson.loads(orjson.dumps(value))


def apply_fhirpath_patch(resource: dict, parameters: dict) -> dict:
    """Apply a FHIRPath Patch ``Parameters`` to ``resource``; return the patched copy.

    Every operation is validated before any is applied; operations then apply in order, each on the result
    of the previous one. Raises ``InvalidRequest`` for a malformed body or a path outside the supported
    subset, ``PatchTargetNotFound`` (404) when a path other than a delete's selects nothing and
    ``PatchError`` (422) when the patch cannot be applied to this resource.
    """
    operations = _parse_operations(parameters, resource.get("resourceType"))
    result = _json_copy(resource)
    for operation in operations:
        try:
            nodes = _Evaluator(result).select(operation.tree)
        except ValueError as exc:
            raise PatchError(f"cannot evaluate '{operation.path}': {exc}", expression=operation.path) from exc
        _apply(result, operation, nodes)
    _drop_empties(result)
    return result


def _parse_operations(parameters: dict, resource_type: str | None) -> list[_Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidRequest("a FHIRPath Patch body must be a Parameters resource", expression="Parameters")
    params = parameters.get("parameter", [])
    if not isinstance(params, list):
        raise InvalidRequest("Parameters.parameter must be an array", expression="Parameters.parameter")
    return [_parse_operation(p, f"Parameters.parameter[{i}]", resource_type) for i, p in enumerate(params)]


def _parse_operation(param: Any, where: str, resource_type: str | None) -> _Operation:
    if not isinstance(param, dict) or param.get("name") != "operation":
        raise InvalidRequest("each parameter of a FHIRPath Patch must be an 'operation'", expression=where)
    parts = param.get("part")
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest("the operation has no parts", expression=f"{where}.part")
    found: dict[str, tuple[dict, str]] = {}
    for j, part in enumerate(parts):
        name = part.get("name") if isinstance(part, dict) else None
        if name not in _PART_NAMES:
            raise InvalidRequest(f"unknown operation part {name!r}", expression=f"{where}.part[{j}]")
        if name in found:
            raise InvalidRequest(f"the part '{name}' appears twice", expression=f"{where}.part[{j}]")
        found[name] = (part, f"{where}.part[{j}]")
    if "type" not in found:
        raise InvalidRequest("the operation has no 'type' part", expression=f"{where}.part")
    kind = _control(*found["type"], ("valueCode", "valueString"))  # the IG's own examples send valueString
    if kind not in _OPERATIONS:
        raise InvalidRequest(f"unknown patch operation type {kind!r}", expression=found["type"][1])
    for name, (_, part_where) in found.items():
        if name != "type" and name not in _OPERATIONS[kind]:
            raise InvalidRequest(f"the part '{name}' does not apply to '{kind}'", expression=part_where)
    for name in _OPERATIONS[kind]:
        if name not in found:
            raise InvalidRequest(f"a '{kind}' operation needs a '{name}' part", expression=f"{where}.part")
    path = _control(*found["path"], ("valueString",))
    try:
        if not path.strip() or len(path) > _MAX_PATH_LENGTH:
            raise ValueError("empty or too long")
        tree = _parse_path(path)
        root = tree
        while root[0] in ("member", "index", "call", "type") and root[1] is not None:
            root = root[1]
        if root != ("ident", resource_type):
            raise ValueError(f"the path must be a navigation from the resource type '{resource_type}'")
    except ValueError as exc:
        raise InvalidRequest(f"unsupported path '{path[:200]}': {exc}", expression=found["path"][1]) from exc
    operation = _Operation(kind, path, tree)
    if "name" in found:
        operation.name = _control(*found["name"], ("valueString",))
        if not _ELEMENT_NAME.fullmatch(operation.name) or operation.name == "resourceType":
            raise InvalidRequest(f"{operation.name!r} is not an element name", expression=found["name"][1])
    if "value" in found:
        operation.value = _part_value(*found["value"])
    for name in ("index", "source", "destination"):
        if name in found:
            number = _control(*found[name], ("valueInteger",))
            if type(number) is not int or number < 0:
                raise InvalidRequest(f"'{name}' must be a non-negative integer", expression=found[name][1])
            setattr(operation, name, number)
    return operation


@functools.lru_cache(maxsize=512)
def _parse_path(path: str) -> tuple:
    """Parsed once per distinct path: suppliers send the same few capacity paths all day."""
    return _Parser(path).parse()


def _control(part: dict, where: str, allowed: tuple[str, ...]) -> Any:
    """The value of a part that takes one fixed type (type, path, name, index, source, destination)."""
    keys = [k for k in part if k.startswith("value")]
    if len(keys) != 1 or keys[0] not in allowed or "part" in part:
        raise InvalidRequest(f"the part '{part['name']}' must carry {' or '.join(allowed)}", expression=where)
    value = part[keys[0]]
    if allowed[0] != "valueInteger" and not isinstance(value, str):
        raise InvalidRequest(f"the part '{part['name']}' must be a string", expression=where)
    return value


def _part_value(part: dict, where: str) -> _Value:
    keys = [k for k in part if k.startswith("value")]
    if len(keys) + ("part" in part) != 1:
        raise InvalidRequest(f"the part '{part['name']}' must carry exactly one value[x] or nested parts",
                             expression=where)
    if "part" in part:
        return _Value(_value_from_parts(part["part"], f"{where}.part"))
    key = keys[0]
    kind, value = key[len("value"):], part[key]
    if kind not in _TYPES:
        raise InvalidRequest(f"'{key}' is not a FHIR data type", expression=where)
    expected = _PRIMITIVE_JSON.get(kind, (dict,))
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        raise InvalidRequest(f"'{key}' has a value of the wrong JSON type", expression=where)
    companion = part.get("_" + key)
    if companion is not None and not isinstance(companion, dict):
        raise InvalidRequest(f"'_{key}' must be an object", expression=where)
    return _Value(value, kind, companion)


def _value_from_parts(parts: Any, where: str) -> dict:
    """Build an anonymous element from nested parts (spec: "a set of parts that are values").

    Without the element definitions, a name given several times (or one that always repeats) becomes an
    array, and ``value`` next to a ``url`` part is taken as an extension's ``value[x]``.
    """
    if not isinstance(parts, list) or not parts:
        raise InvalidRequest("nested parts must be a non-empty array", expression=where)
    names = [p.get("name") for p in parts if isinstance(p, dict)]
    collected: dict[str, list] = {}
    for j, part in enumerate(parts):
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str) or not _ELEMENT_NAME.fullmatch(name):
            raise InvalidRequest("each nested part needs an element name", expression=f"{where}[{j}]")
        value = _part_value(part, f"{where}[{j}]")
        if value.companion is not None:
            raise InvalidRequest("'_value[x]' is only supported on the operation's own value",
                                 expression=f"{where}[{j}]")
        key = "value" + value.type if name == "value" and "url" in names and value.type else name
        collected.setdefault(key, []).append(value.json)
    return {k: v if len(v) > 1 or k in _ALWAYS_REPEATING else v[0] for k, v in collected.items()}


def _apply(resource: dict, op: _Operation, nodes: list[_Node]) -> None:
    if not nodes:
        if op.type == "delete":
            return
        raise PatchTargetNotFound(f"the {op.type} path '{op.path}' selects nothing", expression=op.path)
    if op.type == "delete":
        if any(n.parent is None for n in nodes):
            raise PatchError(f"'{op.path}' does not select deletable elements", expression=op.path)
        for node in sorted(nodes, key=lambda n: -1 if n.index is None else n.index, reverse=True):
            _remove(node)
        return
    if op.type in ("insert", "move"):
        items = _whole_array(op, nodes)
        size = len(items) if op.type == "move" else len(items) + 1
        for name in ("index", "source", "destination"):
            if getattr(op, name) is not None and getattr(op, name) >= size:
                raise PatchError(f"{name} {getattr(op, name)} is out of range for '{op.path}'",
                                 expression=op.path)
        _insert(nodes[0], op) if op.type == "insert" else _move(nodes[0], op)
        return
    if len(nodes) > 1:
        raise PatchError(f"the {op.type} path '{op.path}' selects {len(nodes)} elements, not one",
                         expression=op.path)
    if op.type == "replace":
        _replace(nodes[0], op)
    else:
        _add(resource, nodes[0], op)


def _remove(node: _Node) -> None:
    parent, key = node.parent, node.key
    if node.index is None:
        parent.pop(key, None)
        parent.pop("_" + key, None)
        return
    del parent[key][node.index]
    companions = parent.get("_" + key)
    if isinstance(companions, list) and node.index < len(companions):
        del companions[node.index]


def _place(parent: dict, key: str, index: int | None, value: _Value) -> None:
    """Store a value and its primitive companion (or drop a stale companion) at ``parent[key][index]``."""
    if index is None:
        parent[key] = value.json
        parent.pop("_" + key, None)
        if value.companion:
            parent["_" + key] = value.companion
        return
    parent[key][index] = value.json
    companions = _aligned_companions(parent, key, create=value.companion is not None)
    if companions is not None:
        companions[index] = value.companion


def _replace(node: _Node, op: _Operation) -> None:
    if node.parent is None:
        raise PatchError(f"'{op.path}' does not select a replaceable element", expression=op.path)
    key = node.key
    if key != node.element:  # a choice: valueString may become valueInteger
        if op.value.type is None:
            raise PatchError(f"replacing the choice element '{node.element}' needs a typed value[x]",
                             expression=op.path)
        _remove(node)
        key = node.element + op.value.type
    _place(node.parent, key, node.index, op.value)


def _add(resource: dict, node: _Node, op: _Operation) -> None:
    target = node.value
    if not isinstance(target, dict) and op.name == "extension":
        target = _companion(node, create=True)
    if not isinstance(target, dict):
        raise PatchError(f"'{op.path}' selects a primitive value: '{op.name}' cannot be added to it",
                         expression=op.path)
    name, value = op.name, op.value
    key = "value" + value.type if name == "value" and "url" in target and value.type else name
    existing = [k for k in target if k == name or _is_choice_key(k, name)]
    if existing:
        if existing != [key] or not isinstance(target[key], list):
            raise PatchError(f"'{name}' already exists at '{op.path}' and does not repeat: use replace",
                             expression=op.path)
        target[key].append(None)
        _place(target, key, len(target[key]) - 1, value)
        return
    repeats = name in _ALWAYS_REPEATING or (
        target is resource and name in _TOP_LEVEL_REPEATING.get(resource.get("resourceType"), ()))
    if repeats:
        target[key] = [None]
    _place(target, key, 0 if repeats else None, value)


def _whole_array(op: _Operation, nodes: list[_Node]) -> list:
    first = nodes[0]
    items = first.parent[first.key] if first.parent is not None and first.index is not None else None
    if items is None or any(n.parent is not first.parent or n.key != first.key or n.index is None
                            for n in nodes) or len(nodes) != sum(v is not None for v in items):
        raise PatchError(f"the {op.type} path '{op.path}' must select one whole array", expression=op.path)
    return items


def _insert(node: _Node, op: _Operation) -> None:
    parent, key = node.parent, node.key
    parent[key].insert(op.index, None)
    companions = parent.get("_" + key)
    if isinstance(companions, list):
        companions.insert(op.index, None)
    _place(parent, key, op.index, op.value)


def _move(node: _Node, op: _Operation) -> None:
    parent, key = node.parent, node.key
    for items in (parent[key], _aligned_companions(parent, key)):
        if items is not None:
            items.insert(op.destination, items.pop(op.source))


def _drop_empties(document: Any) -> None:
    """``_prune`` where it can change something: its serialisation shows every ``{}``, ``[]`` and array
    starting with null, the only things it drops (the same text inside a string only costs the walk). A patch
    rarely leaves any, and the walk cost 4x the serialisation on a place."""
    raw = orjson.dumps(document)
    if b"{}" in raw or b"[]" in raw or b"[null" in raw:
        _prune(document)


def _prune(value: Any) -> None:
    """Drop the ``[]`` and ``{}`` (and all-null ``_name`` arrays) that operations leave behind, bottom-up,
    so the result stays valid FHIR JSON. In ``_name`` arrays an emptied item becomes null to keep the
    alignment with its primitive array. Only containers are visited (a resource is mostly strings)."""
    if type(value) is list:
        for item in value:
            if type(item) in _CONTAINERS:
                _prune(item)
        return
    if type(value) is not dict:
        return
    for key in list(value):
        item = value[key]
        if type(item) not in _CONTAINERS:
            continue
        _prune(item)
        if type(item) is list and ({} in item or [] in item):  # compared in C: most lists hold no empty
            if key.startswith("_"):
                item[:] = [None if v == {} or v == [] else v for v in item]
            else:
                item[:] = [v for v in item if v != {} and v != []]
        if not item or (type(item) is list and item.count(None) == len(item)):
            del value[key]


_CONTAINERS = (dict, list)


# --- JSON Patch (RFC 6902) ---------------------------------------------------------------------------------

def apply_json_patch(resource: dict, operations: list) -> dict:
    """Apply an RFC 6902 JSON Patch document to ``resource``; return the patched copy.

    Raises ``InvalidRequest`` for a malformed document and ``PatchError`` (422) when an operation cannot
    be applied, a ``test`` fails or the result is no longer a resource of the same type; messages name the
    operation index.
    """
    if not isinstance(operations, list):
        raise InvalidRequest("a JSON Patch document must be an array of operations")
    document: Any = _json_copy(resource)
    for i, operation in enumerate(operations):
        document = _json_operation(document, operation, i)
    if not isinstance(document, dict) or document.get("resourceType") != resource.get("resourceType"):
        raise PatchError("a JSON Patch cannot change the resource type")
    _drop_empties(document)
    return document


def _json_operation(document: Any, operation: Any, i: int) -> Any:
    if not isinstance(operation, dict):
        raise InvalidRequest(f"JSON Patch operation {i} must be an object")
    op = operation.get("op")
    if op not in ("add", "remove", "replace", "move", "copy", "test"):
        raise InvalidRequest(f"JSON Patch operation {i}: unknown op {op!r}")
    path = _pointer(operation, "path", i)
    if op in ("add", "replace", "test") and "value" not in operation:
        raise InvalidRequest(f"JSON Patch operation {i} ({op}) has no 'value'")
    if op in ("move", "copy"):
        source = _pointer(operation, "from", i)  # moving into a child fails: the child went with the parent
        value = _pointer_remove(document, source, i) if op == "move" else copy.deepcopy(
            _pointer_get(document, source, i))
        return _pointer_add(document, path, value, i)
    if op == "add":
        return _pointer_add(document, path, copy.deepcopy(operation["value"]), i)
    if op == "remove":
        _pointer_remove(document, path, i)
    elif op == "replace":
        _pointer_get(document, path, i)
        if not path:
            return copy.deepcopy(operation["value"])
        parent = _pointer_get(document, path[:-1], i)
        parent[_step_key(parent, path[-1], i)] = copy.deepcopy(operation["value"])
    elif not _json_equal(_pointer_get(document, path, i), operation["value"]):
        raise PatchError(f"JSON Patch operation {i}: test failed at '{operation['path']}'")
    return document


def _pointer(operation: dict, member: str, i: int) -> list[str]:
    text = operation.get(member)
    if not isinstance(text, str):
        raise InvalidRequest(f"JSON Patch operation {i} has no '{member}' string")
    if text and not text.startswith("/"):
        raise InvalidRequest(f"JSON Patch operation {i}: '{text}' is not a JSON Pointer")
    if re.search(r"~(?![01])", text):
        raise InvalidRequest(f"JSON Patch operation {i}: bad '~' escape in '{text}'")
    return [t.replace("~1", "/").replace("~0", "~") for t in text.split("/")[1:]]


def _step_key(container: Any, token: str, i: int, end: bool = False) -> str | int:
    """The dict key or list index ``token`` names in ``container``; ``end`` allows one past the last item."""
    if isinstance(container, dict):
        if not end and token not in container:
            raise PatchError(f"JSON Patch operation {i}: no member '{token}'")
        return token
    if isinstance(container, list):
        if end and token == "-":
            return len(container)
        if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) > len(container) - (0 if end else 1):
            raise PatchError(f"JSON Patch operation {i}: '{token}' is not a valid index")
        return int(token)
    raise PatchError(f"JSON Patch operation {i}: cannot address '{token}' inside a primitive value")


def _pointer_get(document: Any, path: list[str], i: int) -> Any:
    for token in path:
        document = document[_step_key(document, token, i)]
    return document


def _pointer_add(document: Any, path: list[str], value: Any, i: int) -> Any:
    if not path:
        return value
    parent = _pointer_get(document, path[:-1], i)
    key = _step_key(parent, path[-1], i, end=True)
    if isinstance(parent, list):
        parent.insert(key, value)
    else:
        parent[key] = value
    return document


def _pointer_remove(document: Any, path: list[str], i: int) -> Any:
    if not path:
        raise PatchError(f"JSON Patch operation {i}: cannot remove the whole resource")
    parent = _pointer_get(document, path[:-1], i)
    key = _step_key(parent, path[-1], i)
    return parent.pop(key)
