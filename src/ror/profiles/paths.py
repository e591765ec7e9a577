"""Compile the FHIRPath expressions of SearchParameters into fast extractor functions.

SearchParameter expressions in the ROR IG and core R4 only use a small subset of FHIRPath:
member navigation (through arrays and ``value[x]`` choices), ``where(path = 'literal')``,
``as(Type)``/``ofType(Type)``, ``first()`` and unions with ``|``. That subset is compiled once, at
registry build time, into closures over plain dicts: no FHIRPath interpretation on the write path.
The indexer evaluates all the paths of a resource type at once with a :class:`Program`: a prefix tree
of their steps, generated as one Python function.
Anything outside it raises at compile time, so an unsupported definition is seen at start-up.

``as(Type)`` is deliberately lenient: several ROR token parameters write ``.value.as(code)`` on
values that are CodeableConcepts (an IG defect, see docs/search.md); the intent is to index the
value whatever its type, so ``as``/``ofType`` only narrows a choice when the type is present.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from itertools import repeat

# An item is (value, type hint). The hint is the choice suffix (``CodeableConcept`` for
# ``valueCodeableConcept``) when the value came through a choice element, else None.
Item = tuple[object, str | None]
Extractor = Callable[[Iterable[Item]], list[Item]]

_STEP_RE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<arg>.*)\))?$", re.S)
_WHERE_RE = re.compile(r"^\s*(?P<path>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*'(?P<lit>(?:[^'\\]|\\.)*)'\s*$", re.S)


class PathSyntaxError(ValueError):
    pass


def _split_top(expr: str, sep: str) -> list[str]:
    parts, depth, quoted, cur = [], 0, False, []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quoted:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(expr):
                cur.append(expr[i + 1])
                i += 1
            elif ch == "'":
                quoted = False
        elif ch == "'":
            quoted = True
            cur.append(ch)
        elif ch == "(":
            depth += 1
            cur.append(ch)
        elif ch == ")":
            depth -= 1
            cur.append(ch)
        elif ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur).strip())
    return parts


_MISSING = object()


def _member(name: str) -> Extractor:
    n = len(name)

    def step(items: Iterable[Item]) -> list[Item]:
        out: list[Item] = []
        for value, _hint in items:
            if not isinstance(value, dict):
                continue
            v = value.get(name, _MISSING)
            if v is not _MISSING:
                if isinstance(v, list):
                    out += [(x, None) for x in v]
                else:
                    out.append((v, None))
                continue
            # value[x] choice: ``value`` matches ``valueCodeableConcept``, ``valueString``...
            if not any(map(str.startswith, value, repeat(name))):  # the common case, tested in C
                continue
            for key, v in value.items():
                if key.startswith(name) and len(key) > n and key[n].isupper():
                    hint = key[n:]
                    if isinstance(v, list):
                        out += [(x, hint) for x in v]
                    else:
                        out.append((v, hint))
        return out
    return step


def _as_type(type_name: str) -> Extractor:
    wanted = type_name.lower()

    def step(items: Iterable[Item]) -> list[Item]:
        items = list(items)
        narrowed = [it for it in items if it[1] is not None and it[1].lower() == wanted]
        return narrowed or items
    return step


def _first(items: Iterable[Item]) -> list[Item]:
    for it in items:
        return [it]
    return []


def _where_key(key: str, literal: str) -> Extractor:
    """``where(url='…')``, ``where(id='…')``: by far the common case, a plain key test."""
    def direct(items: Iterable[Item]) -> list[Item]:
        return [it for it in items if isinstance(it[0], dict) and it[0].get(key) == literal]
    return direct


def _where_path(path: str, literal: str) -> Extractor:
    sub = _compile_chain(path, root=None)

    def step(items: Iterable[Item]) -> list[Item]:
        return [it for it in items if any(v == literal for v, _ in sub([it]))]
    return step


def parse_step(token: str) -> tuple:
    """A path step as a descriptor: ``("member", name)``, ``("where", key, literal)`` (a plain key
    test, ``where(url='…')``), ``("where_path", path, literal)``, ``("as", type)`` or ``("first",)``."""
    m = _STEP_RE.match(token)
    if not m:
        raise PathSyntaxError(f"unsupported path step: {token!r}")
    name, arg = m.group("name"), m.group("arg")
    if arg is None:
        return ("member", name)
    if name == "where":
        w = _WHERE_RE.match(arg)
        if not w:
            raise PathSyntaxError(f"unsupported where() criterion: {arg!r}")
        literal = re.sub(r"\\(.)", r"\1", w.group("lit"))
        path = w.group("path")
        return ("where", path, literal) if "." not in path else ("where_path", path, literal)
    if name in ("as", "ofType"):
        return ("as", arg.strip())
    if name == "first" and not arg.strip():
        return ("first",)
    raise PathSyntaxError(f"unsupported function: {name}()")


def step_function(step: tuple) -> Extractor:
    kind = step[0]
    if kind == "member":
        return _member(step[1])
    if kind == "where":
        return _where_key(step[1], step[2])
    if kind == "where_path":
        return _where_path(step[1], step[2])
    if kind == "as":
        return _as_type(step[1])
    return _first


def chain_steps(expr: str, root: str | None) -> list[tuple]:
    """The step descriptors of one path (no union); a leading ``root`` type name is dropped."""
    tokens = _split_top(expr.strip(), ".")
    if root is not None and tokens and tokens[0] in (root, "Resource", "DomainResource"):
        tokens = tokens[1:]
    return [parse_step(t) for t in tokens if t]


def _compile_chain(expr: str, root: str | None) -> Extractor:
    return _chain_of(chain_steps(expr, root))


def compile_relative(expr: str) -> Callable[[object], list[Item]]:
    """Compile a path evaluated from an element (e.g. the tail of an expression, from an extension)."""
    chain = _compile_chain(expr, root=None)
    return lambda element: chain([(element, None)])


def expression_branches(expr: str, resource_type: str) -> list[list[tuple]]:
    """The step descriptors of each branch of ``expr`` (a union of paths) that applies to
    ``resource_type``: branches rooted at another resource type (core SearchParameters often share
    one expression across bases) are dropped."""
    branches = []
    for part in _split_top(expr, "|"):
        head = part.split(".", 1)[0].split("(", 1)[0]
        if head[:1].isupper() and head not in (resource_type, "Resource", "DomainResource"):
            continue
        branches.append(chain_steps(part, resource_type))
    if not branches:
        raise PathSyntaxError(f"expression has no branch for {resource_type}: {expr}")
    return branches


def compile_expression(expr: str, resource_type: str) -> Callable[[dict], list[Item]]:
    """Compile ``expr`` (a union of paths) for resources of ``resource_type``."""
    branches = [_chain_of(steps) for steps in expression_branches(expr, resource_type)]

    def extract(resource: dict) -> list[Item]:
        out: list[Item] = []
        for b in branches:
            out.extend(b([(resource, None)]))
        return out
    return extract


def _chain_of(steps: list[tuple]) -> Extractor:
    fns = [step_function(s) for s in steps]

    def run(items: Iterable[Item]) -> list[Item]:
        cur = list(items)
        for s in fns:
            if not cur:
                break
            cur = s(cur)
        return cur
    return run


class _Node:
    """A step of a :class:`Program`, shared by every path that goes through it."""

    __slots__ = ("by_key", "plain", "slots", "steps")

    def __init__(self, steps: tuple[tuple, ...]):
        self.steps = steps  # steps applied on entry ((): a where(key='…') child, filtered by its parent)
        self.slots: list[int] = []  # paths ending here
        self.plain: dict[tuple, _Node] = {}
        self.by_key: dict[str, dict[str, _Node]] = {}  # where(key='literal') children: key -> literal -> node


class Program:
    """Many paths evaluated together from one root value, each step computed once for all the paths
    that share it (as a prefix tree), and each family of ``where(url='…')`` siblings answered by one
    pass grouping the items by url. :meth:`run` gives, per path (in the order given), exactly what
    that path alone gives (``_chain_of``), as a list, or None when it is empty."""

    def __init__(self, paths: list[list[tuple]]):
        self.size = len(paths)
        self._root = _Node(())
        for slot, steps in enumerate(paths):
            node = self._root
            for step in steps:
                if step[0] == "where":
                    by_lit = node.by_key.setdefault(step[1], {})
                    node = by_lit.get(step[2]) or by_lit.setdefault(step[2], _Node(()))
                else:
                    node = node.plain.get(step) or node.plain.setdefault(step, _Node((step,)))
            node.slots.append(slot)
        self._freeze(self._root)
        self._run = _generate(self._root, self.size)

    def _freeze(self, node: _Node) -> None:
        # A run of steps no path ends in or branches at is one node applying them in turn.
        while not node.slots and not node.by_key and len(node.plain) == 1:
            (only,) = node.plain.values()
            node.steps += only.steps
            node.slots, node.plain, node.by_key = only.slots, only.plain, only.by_key
        node.plain = list(node.plain.values())  # type: ignore[assignment]
        node.by_key = [(key, list(by_lit.items())) for key, by_lit in node.by_key.items()]  # type: ignore
        for child in node.plain:
            self._freeze(child)
        for _key, by_lit in node.by_key:
            for _lit, child in by_lit:
                self._freeze(child)

    def run(self, root: object) -> list[list[Item] | None]:
        return self._run(root)


def _group(items: list[Item], key: str) -> dict[str, list[Item]]:
    """``items`` by their ``key`` (a string; the others are equal to no literal), in order."""
    groups: dict[str, list[Item]] = {}
    for it in items:
        value = it[0]
        if isinstance(value, dict):
            k = value.get(key)
            if isinstance(k, str):
                if k in groups:
                    groups[k].append(it)
                else:
                    groups[k] = [it]
    return groups


def _generate(root: _Node, size: int) -> Callable[[object], list]:
    """The tree as one Python function, each node a nested ``if`` (no interpretation per step)."""
    lines = ["def run(root):", f"    out = [None] * {size}", "    v0 = [(root, None)]",
             "    is_dict = isinstance(root, dict)"]
    consts: dict[str, object] = {"_group": _group, "MISSING": _MISSING}
    count = [0]

    def var() -> str:
        count[0] += 1
        return f"v{count[0]}"

    def emit(node: _Node, cur: str, ind: str) -> None:
        for step in node.steps:
            new = var()
            if step[0] == "member" and cur != "v0":  # the step, inlined: an item at a time, its choice scan too
                # An extension's ``value``, mostly: its two or three keys scanned here rather than through a call of
                # the step per item (a Location, whose capacity records have ~27 of them, indexed in 206 -> 175 µs
                # with ``as`` inlined too, alternated).
                n = len(step[1])
                lines.extend([f"{ind}{new} = []", f"{ind}for x, h in {cur}:", f"{ind}    if isinstance(x, dict):",
                              f"{ind}        y = x.get({step[1]!r}, MISSING)",
                              f"{ind}        if y is MISSING:",
                              f"{ind}            for k, y in x.items():",
                              f"{ind}                if k[:{n}] == {step[1]!r} and k[{n}:{n + 1}].isupper():",
                              f"{ind}                    if isinstance(y, list):",
                              f"{ind}                        {new} += [(z, k[{n}:]) for z in y]",
                              f"{ind}                    else:",
                              f"{ind}                        {new}.append((y, k[{n}:]))",
                              f"{ind}        elif isinstance(y, list):",
                              f"{ind}            {new} += [(z, None) for z in y]",
                              f"{ind}        else:", f"{ind}            {new}.append((y, None))"])
            elif step[0] == "as":  # the step, inlined (``_as_type``): a capacity record's values pass ~27 of them
                lines.append(f"{ind}{new} = [it for it in {cur} if it[1] is not None "
                             f"and it[1].lower() == {step[1].lower()!r}] or {cur}")
            else:
                name = f"F{len(consts)}"
                consts[name] = step_function(step)
                if step[0] == "member":  # a member of the root: the step, inlined, its choice scan left to it
                    lines.extend([f"{ind}{new} = root.get({step[1]!r}, MISSING) if is_dict else MISSING",
                                  f"{ind}if {new} is MISSING:", f"{ind}    {new} = {name}(v0)",
                                  f"{ind}elif isinstance({new}, list):", f"{ind}    {new} = [(x, None) for x in {new}]",
                                  f"{ind}else:", f"{ind}    {new} = [({new}, None)]"])
                else:
                    lines.append(f"{ind}{new} = {name}({cur})")
            lines.append(f"{ind}if {new}:")
            ind += "    "
            cur = new
        lines.append(f"{ind}pass")
        lines.extend(f"{ind}out[{slot}] = {cur}" for slot in node.slots)
        for child in node.plain:
            emit(child, cur, ind)
        for key, by_lit in node.by_key:
            if len(by_lit) == 1:
                (literal, child), = by_lit
                got = var()
                lines.extend([f"{ind}{got} = [it for it in {cur} if isinstance(it[0], dict) "
                              f"and it[0].get({key!r}) == {literal!r}]", f"{ind}if {got}:"])
                emit(child, got, ind + "    ")
                continue
            groups = var()
            lines.append(f"{ind}{groups} = _group({cur}, {key!r})")
            for literal, child in by_lit:
                got = var()
                lines.extend([f"{ind}{got} = {groups}.get({literal!r})", f"{ind}if {got}:"])
                emit(child, got, ind + "    ")

    emit(root, "v0", "    ")
    lines.append("    return out")
    namespace = dict(consts)
    exec(compile("\n".join(lines), "<ror.profiles.paths.Program>", "exec"), namespace)
    return namespace["run"]
