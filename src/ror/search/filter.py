"""Parser for the FHIR ``_filter`` search parameter (https://hl7.org/fhir/R4/search_filter.html).

``parse_filter`` turns the text into a small immutable AST (``Comparison``, ``And``, ``Or``, ``Not``) that
the SQL compiler walks; it checks syntax only, never whether a parameter, modifier or value makes sense for
a resource type. Positions in error messages are 1-based character offsets into the ``_filter`` value.

Deliberate choices, each visible to clients:

- ``and`` binds tighter than ``or`` (``a or b and c`` is ``a or (b and c)``), as in SQL and FHIRPath. The
  R4 page says instead that ``and``/``or`` have no precedence and are read left to right; clients that
  need one reading or the other must use parentheses, which mean the same under both rules.
- ``not`` must be followed by a parenthesised filter, as in the spec grammar (``not (a eq 1)``).
- A modifier (``:above``, ``:exact``...) is accepted on the last element of a path only.
- The ``param[filter].sub`` path form of the spec is refused with a clear error, not supported.
- Operators and ``and``/``or``/``not`` are case-insensitive; parameter names are case-sensitive.
- Input is capped at ``MAX_LENGTH`` characters and ``MAX_DEPTH`` nested parentheses, checked before and
  during lexing, so hostile input fails fast; the LALR parser never recurses.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ror.errors import InvalidSearch

MAX_LENGTH = 4000
MAX_DEPTH = 32

OPERATORS = ("eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "ap",
             "sa", "eb", "pr", "po", "ss", "sb", "in", "ni", "re")

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"

# A path is one terminal so that no whitespace can sneak in around its "." and ":". Modifiers are lexed on
# every element and refused on all but the last in the transformer, to give a precise message.
# Keywords and operators may not run into a following name character ("andx", "eq-1"), so that a
# misspelt word is reported as such instead of being split; the spec wants spaces around them anyway.
# No parameter is named and/or/not, so PATH refuses those words and "a eq 1 or or b eq 2" fails at the
# second "or" instead of reading it as a parameter name.
_GRAMMAR = rf"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: atom (_AND atom)*
?atom: comparison
     | negation
     | _LPAR or_expr _RPAR
negation: _NOT _LPAR or_expr _RPAR
comparison: PATH (OP | EQUALS) (STRING | TOKEN)

_OR.2: /or(?![\w-])/i
_AND.2: /and(?![\w-])/i
_NOT.2: /not(?![\w-])/i
_LPAR: "("
_RPAR: ")"
OP.2: /({"|".join(OPERATORS)})(?![\w-])/i
EQUALS: "="
PATH: /(?!(?i:and|or|not)(?![\w-])){_NAME}(:{_NAME})?(\.{_NAME}(:{_NAME})?)*/
STRING: /"(?:[^"\\\n]|\\.)*"/
TOKEN: /[^\s)\]"][^\s)\]]*/

%ignore /\s+/
"""

_EXPECTED_LABELS = {
    "PATH": "a search parameter name",
    "_NOT": "'not'",
    "_LPAR": "'('",
    "_RPAR": "')'",
    "_AND": "'and'",
    "_OR": "'or'",
    "OP": "an operator (" + ", ".join(OPERATORS) + ")",
    "EQUALS": "'='",
    "STRING": "a value",
    "TOKEN": "a value",
    "$END": "the end of the filter",
}

# After "=", a value such as "ge2020" could be the ordinary-search prefix syntax ("date=ge2020") or a
# literal; "==x" could be a mistyped operator. Both are refused rather than guessed.
_AMBIGUOUS_AFTER_EQUALS = re.compile(r"(?:eq|ne|gt|lt|ge|le|sa|eb|ap)\d|=", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Comparison:
    """``path[:modifier] op value``; ``path`` is the chain of parameter names (``subject.name``)."""

    path: tuple[str, ...]
    modifier: str | None
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node: TypeAlias = Comparison | And | Or | Not


def parse_filter(text: str) -> Node:
    """Parse a ``_filter`` value; raise ``InvalidSearch`` naming the position of the first error.

    ``=`` is accepted as a synonym of ``eq`` (the ROR IG writes ``_content=cardio``) when the value that
    follows is unambiguous: a value starting with ``=`` or with a search prefix followed by a digit
    (``date=ge2020``) is refused, since the client may have meant ordinary-search syntax.
    """
    if len(text) > MAX_LENGTH:
        raise _error(MAX_LENGTH + 1, f"the filter is {len(text)} characters long, the limit is {MAX_LENGTH}")
    if not text.strip():
        raise _error(1, "the filter is empty; expected a comparison such as 'name eq value'")
    interactive = _parser().parse_interactive(text)
    open_parens: list[int] = []
    last: Token | None = None
    try:
        for token in interactive.iter_parse():
            last = token
            if token.type == "_LPAR":
                open_parens.append(token.start_pos)
                if len(open_parens) > MAX_DEPTH:
                    raise _error(token.start_pos + 1, f"parentheses nest deeper than {MAX_DEPTH} levels")
            elif token.type == "_RPAR":
                if not open_parens:
                    raise _error(token.start_pos + 1, "unbalanced parentheses: this ')' has no matching '('")
                open_parens.pop()
        if open_parens:
            raise _error(len(text) + 1,
                         f"unbalanced parentheses: the '(' at position {open_parens[-1] + 1} is never closed")
        return interactive.feed_eof(last)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None


def iter_comparisons(node: Node) -> Iterator[Comparison]:
    """Yield the comparisons of ``node`` left to right (to resolve every parameter before compiling)."""
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Comparison):
            yield current
        elif isinstance(current, Not):
            stack.append(current.item)
        else:
            stack.extend(reversed(current.items))


class _ToAst(Transformer):
    """Builds the AST during the LALR parse; raises ``InvalidSearch`` for what the grammar lets through."""

    def or_expr(self, items: list[Node]) -> Or:
        return Or(_flatten(Or, items))

    def and_expr(self, items: list[Node]) -> And:
        return And(_flatten(And, items))

    def negation(self, items: list[Node]) -> Not:
        return Not(items[0])

    def comparison(self, items: list[Token]) -> Comparison:
        path_token, op, value = items
        path, modifier = _split_path(path_token)
        if value.type == "STRING":
            text = _decode_string(value)
        else:
            text = str(value)
            if op.type == "EQUALS" and _AMBIGUOUS_AFTER_EQUALS.match(text):
                raise _error(value.start_pos + 1, f"the value {text!r} after '=' is ambiguous; write the "
                                                  "operator, e.g. 'name eq value' or 'date ge 2020'")
        return Comparison(path, modifier, "eq" if op.type == "EQUALS" else op.lower(), text)


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", transformer=_ToAst())


def _flatten(kind: type[And] | type[Or], items: list[Node]) -> tuple[Node, ...]:
    out: list[Node] = []
    for item in items:
        out.extend(item.items if isinstance(item, kind) else (item,))
    return tuple(out)


def _split_path(token: Token) -> tuple[tuple[str, ...], str | None]:
    *chain, last = token.split(".")
    start = token.start_pos
    for element in chain:
        name, colon, modifier = element.partition(":")
        if colon:
            raise _error(start + len(name) + 1, f"the modifier ':{modifier}' is only supported on the last "
                                                "parameter of a chained path")
        start += len(element) + 1
    name, _, modifier = last.partition(":")
    return (*chain, name), modifier or None


def _decode_string(token: Token) -> str:
    try:
        return json.loads(token)
    except json.JSONDecodeError as exc:
        raise _error(token.start_pos + exc.pos + 1, f"invalid quoted string: {exc.msg}") from None


def _syntax_error(text: str, exc: UnexpectedInput) -> InvalidSearch:
    """Turn a lark error into a message naming the position, what was found and what was expected."""
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        pos, found = len(text), "the end of the filter"
    else:
        pos = exc.token.start_pos if isinstance(exc, UnexpectedToken) else exc.pos_in_stream
        found = repr(re.match(r"[^\s()]+|\S", text[pos:]).group())
    expected = (exc.expected if isinstance(exc, UnexpectedToken) else exc.allowed) or set()
    if "OP" in expected and text[pos:pos + 1] == "[":
        return _error(pos + 1, "the 'param[filter].param' path form is not supported")
    if isinstance(exc, UnexpectedCharacters) and text[pos] == '"':
        return _error(pos + 1, "unterminated quoted string")
    if "OP" in expected and text[pos:pos + 1].isalpha():
        return _error(pos + 1, f"unknown operator {found}; expected {_EXPECTED_LABELS['OP']}")
    labels = sorted({_EXPECTED_LABELS.get(name, name) for name in expected})
    return _error(pos + 1, f"found {found}, expected {' or '.join(labels)}")


def _error(position: int, detail: str) -> InvalidSearch:
    return InvalidSearch(f"Invalid _filter at position {position}: {detail}", expression="_filter")
