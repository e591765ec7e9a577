"""Tests of the ``_filter`` parser: the ROR IG examples, the grammar corners, and every error path."""

import dataclasses

import pytest

from ror.errors import InvalidSearch
from ror.search.filter import (
    MAX_DEPTH,
    OPERATORS,
    And,
    Comparison,
    Not,
    Or,
    iter_comparisons,
    parse_filter,
)


def eq(name: str, value: str) -> Comparison:
    return Comparison((name,), None, "eq", value)


# --- the ROR Implementation Guide examples -----------------------------------------------------------------

def test_ig_service_category_or_specialty_and_age_range():
    text = ("(((service-category eq S|102) or (specialty eq S|233)) "
            "and (age-range-low le 35 and age-range-high ge 35))")
    assert parse_filter(text) == And((
        Or((Comparison(("service-category",), None, "eq", "S|102"),
            Comparison(("specialty",), None, "eq", "S|233"))),
        Comparison(("age-range-low",), None, "le", "35"),
        Comparison(("age-range-high",), None, "ge", "35"),
    ))


def test_ig_last_updated_with_chain_and_modifier():
    text = "(_lastUpdated ge 2022-11-06T15:00 or organization._lastUpdated:above ge 2022-11-06T15:00)"
    assert parse_filter(text) == Or((
        Comparison(("_lastUpdated",), None, "ge", "2022-11-06T15:00"),
        Comparison(("organization", "_lastUpdated"), "above", "ge", "2022-11-06T15:00"),
    ))


def test_ig_content_contains():
    assert parse_filter("(_content co cardio or location._content co cardio)") == Or((
        Comparison(("_content",), None, "co", "cardio"),
        Comparison(("location", "_content"), None, "co", "cardio"),
    ))


@pytest.mark.parametrize("text", ["(_content=cardio or location._content=cardio)",
                                  "(_content = cardio or location._content = cardio)"])
def test_ig_equals_sign_is_eq(text):
    assert parse_filter(text) == Or((
        Comparison(("_content",), None, "eq", "cardio"),
        Comparison(("location", "_content"), None, "eq", "cardio"),
    ))


# --- structure ----------------------------------------------------------------------------------------------

def test_single_comparison_is_not_wrapped():
    assert parse_filter("name eq peter") == eq("name", "peter")
    assert parse_filter("  ((name eq peter))  ") == eq("name", "peter")


def test_and_binds_tighter_than_or():
    a, b, c = eq("a", "1"), eq("b", "2"), eq("c", "3")
    assert parse_filter("a eq 1 or b eq 2 and c eq 3") == Or((a, And((b, c))))
    assert parse_filter("a eq 1 and b eq 2 or c eq 3") == Or((And((a, b)), c))


def test_parentheses_override_precedence():
    a, b, c = eq("a", "1"), eq("b", "2"), eq("c", "3")
    assert parse_filter("(a eq 1 or b eq 2) and c eq 3") == And((Or((a, b)), c))
    assert parse_filter("a eq 1 and (b eq 2 or c eq 3)") == And((a, Or((b, c))))


def test_same_operator_is_flattened():
    assert parse_filter("a eq 1 or (b eq 2 or (c eq 3)) or d eq 4") == Or(
        (eq("a", "1"), eq("b", "2"), eq("c", "3"), eq("d", "4")))
    assert parse_filter("(a eq 1 and b eq 2) and c eq 3") == And((eq("a", "1"), eq("b", "2"), eq("c", "3")))


def test_not():
    assert parse_filter("not (a eq 1)") == Not(eq("a", "1"))
    assert parse_filter("not(a eq 1 or b eq 2) and c eq 3") == And(
        (Not(Or((eq("a", "1"), eq("b", "2")))), eq("c", "3")))
    assert parse_filter("not (not (a eq 1))") == Not(Not(eq("a", "1")))


def test_keywords_and_operators_are_case_insensitive():
    assert parse_filter("NOT (a EQ 1) AnD b Eq 2 OR c eq 3") == Or(
        (And((Not(eq("a", "1")), eq("b", "2"))), eq("c", "3")))


def test_parameter_names_are_kept_verbatim():
    assert parse_filter("Note eq 1") == eq("Note", "1")  # 'not' prefix is not the keyword
    assert parse_filter("order eq 1 or andrew eq 2") == Or((eq("order", "1"), eq("andrew", "2")))


def test_whitespace_of_any_kind_separates():
    assert parse_filter("a\teq\n1\r\nand  b  eq  2") == And((eq("a", "1"), eq("b", "2")))


# --- paths and modifiers ------------------------------------------------------------------------------------

def test_chained_path():
    assert parse_filter("subject.organization.name co sant") == Comparison(
        ("subject", "organization", "name"), None, "co", "sant")


@pytest.mark.parametrize(("text", "path", "modifier"), [
    ("name:exact eq Dupont", ("name",), "exact"),
    ("organization._lastUpdated:above ge 2022", ("organization", "_lastUpdated"), "above"),
    ("code:not-in eq x", ("code",), "not-in"),
    ("subject:Patient eq Patient/1", ("subject",), "Patient"),
])
def test_modifier_on_last_element(text, path, modifier):
    node = parse_filter(text)
    assert (node.path, node.modifier) == (path, modifier)


# --- operators and values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator(op):
    assert parse_filter(f"x {op} v") == Comparison(("x",), None, op, "v")
    assert parse_filter(f"x {op.upper()} v") == Comparison(("x",), None, op, "v")


def test_operator_list_is_the_spec_list():
    assert set(OPERATORS) == {"eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "ap",
                              "sa", "eb", "pr", "po", "ss", "sb", "in", "ni", "re"}


@pytest.mark.parametrize("value", [
    "S|102", "2022-11-06T15:00", "2022-11-06T15:00:00+01:00", "35", "-1.5e3", "true",
    "http://loinc.org|1234-5", "Organization/123", "urn:oid:1.2.250.1.71.4.2.2|10", "a(b", "x=y", "and",
])
def test_token_values(value):
    assert parse_filter(f"p eq {value}") == eq("p", value)


def test_token_value_stops_at_closing_parenthesis():
    assert parse_filter("(specialty eq S|233)") == eq("specialty", "S|233")


@pytest.mark.parametrize(("quoted", "value"), [
    ('"peter"', "peter"),
    ('"Jean Dupont"', "Jean Dupont"),
    (r'"say \"hi\" (twice)"', 'say "hi" (twice)'),
    (r'"back\\slash"', "back\\slash"),
    (r'"a ] b"', "a ] b"),
    ('"and or not"', "and or not"),
    (r'"caf\u00e9"', "café"),
    ('""', ""),
])
def test_quoted_values(quoted, value):
    assert parse_filter(f"name eq {quoted}") == eq("name", value)
    assert parse_filter(f"(name eq {quoted} and b eq 1)") == And((eq("name", value), eq("b", "1")))


def test_quoted_value_after_equals_sign():
    assert parse_filter('name="ge2020"') == eq("name", "ge2020")


# --- helpers and AST properties -----------------------------------------------------------------------------

def test_iter_comparisons_in_source_order():
    node = parse_filter("a eq 1 or not (b eq 2 and (c eq 3 or d eq 4)) and e eq 5")
    assert [c.path[0] for c in iter_comparisons(node)] == ["a", "b", "c", "d", "e"]
    assert list(iter_comparisons(eq("a", "1"))) == [eq("a", "1")]


def test_nodes_are_frozen_and_hashable():
    node = parse_filter("a eq 1 and b eq 2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.items = ()
    assert hash(node) == hash(parse_filter("a eq 1 and b eq 2"))


# --- errors -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "position", "fragment"), [
    ("", 1, "empty"),
    ("   ", 1, "empty"),
    ("name xx peter", 6, "unknown operator 'xx'"),
    ("name equals peter", 6, "unknown operator 'equals'"),
    ("name eq-1 x", 6, "unknown operator 'eq-1'"),
    ("name eq", 8, "expected a value"),
    ("name", 5, "operator"),
    ("name eq peter and", 18, "expected"),
    ("name eq peter or or b eq 1", 18, "found 'or'"),
    ("name eq peter or and eq 1", 18, "found 'and'"),
    ("NOT eq 1", 5, "expected '('"),
    ("name eq peter b eq 1", 15, "found 'b'"),
    ("name eq peter andb eq 1", 15, "found 'andb'"),
    ("(name eq peter", 15, "'(' at position 1 is never closed"),
    ("((a eq 1) or (b eq 2)", 22, "'(' at position 1 is never closed"),
    ("name eq peter)", 14, "no matching '('"),
    ("(a eq 1)) or (b eq 2", 9, "no matching '('"),
    ("()", 2, "found ')'"),
    (")", 1, "found ')'"),
    ("(a)", 3, "operator"),
    ("not a eq 1", 5, "expected '('"),
    ("a eq 1 and not", 15, "expected '('"),
    ('name eq "peter', 9, "unterminated quoted string"),
    (r'name eq "bad \x escape"', 14, "invalid quoted string"),
    ("related[type eq has-component].target pr true", 8, "not supported"),
    ("subject:Patient.name eq x", 8, "modifier ':Patient'"),
    ("a. b eq 1", 2, "found '.'"),
    ("a .b eq 1", 3, "found '.b'"),
    ("1abc eq 1", 1, "search parameter name"),
    ("date=ge2020", 6, "ambiguous"),
    ("name==x", 6, "ambiguous"),
    ("a eq 1 & b eq 2", 8, "found '&'"),
])
def test_syntax_errors_name_the_position(text, position, fragment):
    with pytest.raises(InvalidSearch) as info:
        parse_filter(text)
    assert f"at position {position}:" in info.value.message
    assert fragment in info.value.message
    assert info.value.expression == ["_filter"]


def test_unknown_operator_message_lists_the_operators():
    with pytest.raises(InvalidSearch, match=r"at position 3: unknown operator 'is'; expected .*eq, ne, co"):
        parse_filter("a is 1")


def test_too_long_input_fails():
    text = " or ".join(["name eq peter"] * 300)
    assert len(text) > 4000
    with pytest.raises(InvalidSearch, match=r"at position 4001: .*limit is 4000"):
        parse_filter(text)


def test_five_thousand_characters_fail():
    with pytest.raises(InvalidSearch, match="at position 4001"):
        parse_filter("a eq " + "x" * 4995)


def test_deep_nesting_fails():
    with pytest.raises(InvalidSearch, match=f"at position {MAX_DEPTH + 1}: parentheses nest deeper than"):
        parse_filter("(" * 100 + "a eq 1" + ")" * 100)


def test_deep_nesting_of_not_fails():
    with pytest.raises(InvalidSearch, match="parentheses nest deeper than"):
        parse_filter("not (" * 100 + "a eq 1" + ")" * 100)


def test_nesting_at_the_limit_is_accepted():
    assert parse_filter("(" * MAX_DEPTH + "a eq 1" + ")" * MAX_DEPTH) == eq("a", "1")


def test_long_flat_chains_do_not_recurse():
    text = " and ".join(["a eq 1"] * 360)
    assert len(text) <= 4000
    assert len(parse_filter(text).items) == 360
