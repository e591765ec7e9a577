"""Compile the FHIRPath expressions of SearchParameters into fast extractor functions.

SearchParameter expressions in the ROR IG and core R4 only use a small subset of FHIRPath:
member navigation (through arrays and ``value[x]`` choices), ``where(path = 'literal')``,
``as(Type)``/``ofType(Type)``, ``first()`` and unions with ``|``. That subset is compiled once, at
registry build time, into closures over plain dicts: no FHIRPath interpretation on the write path.
Anything outside it raises at compile time, so an unsupported definition is seen at start-up.

``as(Type)`` is deliberately lenient: several ROR token parameters write ``.value.as(code)`` on
values that are CodeableConcepts (an IG defect, see docs/search.md); the intent is to index the
value whatever its type, so ``as``/``ofType`` only narrows a choice when the type is present.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

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


def _member(name: str) -> Extractor:
    def step(items: Iterable[Item]) -> list[Item]:
        out: list[Item] = []
        for value, _hint in items:
            if not isinstance(value, dict):
                continue
            if name in value:
                v = value[name]
                if isinstance(v, list):
                    out.extend((x, None) for x in v)
                else:
                    out.append((v, None))
                continue
            # value[x] choice: ``value`` matches ``valueCodeableConcept``, ``valueString``...
            for key, v in value.items():
                if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
                    hint = key[len(name):]
                    if isinstance(v, list):
                        out.extend((x, hint) for x in v)
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


def _where(arg: str) -> Extractor:
    m = _WHERE_RE.match(arg)
    if not m:
        raise PathSyntaxError(f"unsupported where() criterion: {arg!r}")
    literal = re.sub(r"\\(.)", r"\1", m.group("lit"))
    path = m.group("path")
    if "." not in path:  # where(url='…'), where(id='…'): by far the common case, a plain key test
        def direct(items: Iterable[Item]) -> list[Item]:
            return [it for it in items if isinstance(it[0], dict) and it[0].get(path) == literal]
        return direct
    sub = _compile_chain(path, root=None)

    def step(items: Iterable[Item]) -> list[Item]:
        return [it for it in items if any(v == literal for v, _ in sub([it]))]
    return step


def _compile_step(token: str) -> Extractor:
    m = _STEP_RE.match(token)
    if not m:
        raise PathSyntaxError(f"unsupported path step: {token!r}")
    name, arg = m.group("name"), m.group("arg")
    if arg is None:
        return _member(name)
    if name == "where":
        return _where(arg)
    if name in ("as", "ofType"):
        return _as_type(arg.strip())
    if name == "first" and not arg.strip():
        return _first
    raise PathSyntaxError(f"unsupported function: {name}()")


def _compile_chain(expr: str, root: str | None) -> Extractor:
    tokens = _split_top(expr.strip(), ".")
    if root is not None and tokens and tokens[0] in (root, "Resource", "DomainResource"):
        tokens = tokens[1:]
    steps = [_compile_step(t) for t in tokens if t]

    def run(items: Iterable[Item]) -> list[Item]:
        cur = list(items)
        for s in steps:
            if not cur:
                break
            cur = s(cur)
        return cur
    return run


def compile_relative(expr: str) -> Callable[[object], list[Item]]:
    """Compile a path evaluated from an element (e.g. the tail of an expression, from an extension)."""
    chain = _compile_chain(expr, root=None)
    return lambda element: chain([(element, None)])


def compile_expression(expr: str, resource_type: str) -> Callable[[dict], list[Item]]:
    """Compile ``expr`` (a union of paths) for resources of ``resource_type``.

    Union branches rooted at another resource type (core SearchParameters often share one
    expression across bases) are dropped.
    """
    branches = []
    for part in _split_top(expr, "|"):
        head = part.split(".", 1)[0].split("(", 1)[0]
        if head[:1].isupper() and head not in (resource_type, "Resource", "DomainResource"):
            continue
        branches.append(_compile_chain(part, resource_type))
    if not branches:
        raise PathSyntaxError(f"expression has no branch for {resource_type}: {expr}")

    def extract(resource: dict) -> list[Item]:
        out: list[Item] = []
        for b in branches:
            out.extend(b([(resource, None)]))
        return out
    return extract
