"""Tests of the patch engine: the ROR bed-management FHIRPath Patch scenarios, the FHIRPath subset, every
malformed-Parameters path, and RFC 6902 JSON Patch."""

import copy
import json
from pathlib import Path

import orjson
import pytest

from ror.errors import InvalidRequest, PatchError, PatchTargetNotFound
from ror.fhir.patch import (
    _NEEDS_LOCATIONS,
    _drop_empties,
    _Evaluator,
    _parse_path,
    _predicate,
    _prune,
    _truth,
    apply_fhirpath_patch,
    apply_json_patch,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "ror" / "data" / "examples"  # the IG examples, bundled
ROR = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
CAPACITY = ROR + "ror-location-supported-capacity"
HOUSE_NUMBER = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-houseNumber"
NOS = "https://mos.esante.gouv.fr/NOS/"


def coded(url: str, jdv: str, code: str) -> dict:
    system = f"{NOS}JDV_{jdv}/FHIR/JDV-{jdv}"
    return {"url": url, "valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


def capacity(kind: str, status: str, nb: int, assignment: str, **optional: str) -> dict:
    """A ror-location-supported-capacity extension, sub-extensions in the order of the profile."""
    parts = [
        coded("capacityType", "J187-NatureCapacite-ROR", kind),
        coded("capacityStatus", "J188-TypeStatutCapacite-ROR", status),
        coded("temporalityCapacity", "J189-TemporaliteCapacite-ROR", "01"),
        {"url": "nbCapacity", "valueInteger": nb},
        coded("capacitySourceType", "J193-TypeSourceCapacite-ROR", "01"),
    ]
    if "gender" in optional:
        parts.append(coded("genderCapacityAvailable", "J190-GenreCapacite-ROR", optional["gender"]))
    parts.append({"url": "capacityUpdateDate", "valueDateTime": "2024-01-10T08:00:00+01:00"})
    if "closing" in optional:
        parts.append(coded("capacityClosingType", "J191-TypeFermetureCapacite-ROR", optional["closing"]))
    parts.append(coded("temporaryAssignement", "J195-AffectationTemporaire-ROR", assignment))
    return {"url": CAPACITY, "extension": parts}


CAP_OPEN = capacity("01", "02", 12, "01", gender="03")  # available beds, no temporary assignment
CAP_CLOSED_COVID = capacity("01", "05", 3, "02", closing="01")  # closed, "Covid+" assignment
CAP_OPEN_COVID = capacity("01", "02", 2, "02", gender="03")  # available, "Covid+" assignment


@pytest.fixture
def location() -> dict:
    resource = json.loads((EXAMPLES / "Location-ror-location-exemple.json").read_text())
    resource["extension"] += copy.deepcopy([CAP_OPEN, CAP_CLOSED_COVID, CAP_OPEN_COVID])
    return resource


@pytest.fixture
def service() -> dict:
    return json.loads((EXAMPLES / "HealthcareService-1234564.json").read_text())


@pytest.fixture
def organization() -> dict:
    return {"resourceType": "Organization", "id": "eg1", "name": "CH de Versailles",
            "telecom": [{"system": "phone", "value": "0139639000"}]}


def op(kind: str, path: str | None = None, **parts) -> dict:
    """One ``operation`` parameter; keyword parts are ``name=...`` or ``value=(value key, json)``."""
    out = [{"name": "type", "valueCode": kind}]
    if path is not None:
        out.append({"name": "path", "valueString": path})
    for name, value in parts.items():
        if name == "name":
            out.append({"name": "name", "valueString": value})
        elif name in ("index", "source", "destination"):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": "value", value[0]: value[1]})
    return {"name": "operation", "part": out}


def patch(resource: dict, *operations: dict) -> dict:
    return apply_fhirpath_patch(resource, {"resourceType": "Parameters", "parameter": list(operations)})


def capacities(resource: dict) -> list[dict]:
    return [e for e in resource.get("extension", []) if e["url"] == CAPACITY]


def sub(ext: dict, url: str):
    (found,) = [e for e in ext["extension"] if e["url"] == url]
    return found.get("valueInteger", found.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code"))


def indicator(*criteria: tuple[str, str]) -> str:
    """The FHIRPath the bed-management protocol uses to select one capacity indicator."""
    tests = " and ".join(f"extension.where(url='{u}').value.coding.code='{c}'" for u, c in criteria)
    return f"Location.extension.where(url='{CAPACITY}' and {tests})"


OPEN_STANDARD = indicator(("capacityType", "01"), ("capacityStatus", "02"), ("temporaryAssignement", "01"))
BRIEF_PATH = indicator(("capacityType", "01"), ("capacityStatus", "02"))


# --- the bed-management protocol (IG §5.4) -----------------------------------------------------------------

def test_replace_the_capacity_selected_by_its_indicator(location):
    new = capacity("01", "02", 10, "01", gender="03")
    result = patch(location, op("replace", OPEN_STANDARD, value=("valueExtension", new)))
    assert capacities(result) == [new, CAP_CLOSED_COVID, CAP_OPEN_COVID]  # position kept
    assert result["extension"][:2] == location["extension"][:2]


def test_replace_without_match_is_a_404_whose_expression_is_the_path_as_sent(location):
    path = indicator(("capacityType", "01"), ("capacityStatus", "03"))
    with pytest.raises(PatchTargetNotFound) as caught:
        patch(location, op("replace", path, value=("valueExtension", CAP_OPEN)))
    assert caught.value.status == 404
    assert caught.value.issues[0].code == "not-found"
    assert caught.value.expression == [path]


def test_replace_selecting_several_capacities_is_refused(location):
    # capacityType 01 + capacityStatus 02 matches both the standard and the Covid+ capacity
    with pytest.raises(PatchError) as caught:
        patch(location, op("replace", BRIEF_PATH, value=("valueExtension", CAP_OPEN)))
    assert type(caught.value) is PatchError
    assert caught.value.status == 422
    assert caught.value.expression == [BRIEF_PATH]
    assert "2 elements" in caught.value.message


def test_add_a_capacity(location):
    new = capacity("02", "02", 4, "01")
    result = patch(location, op("add", "Location", name="extension", value=("valueExtension", new)))
    assert capacities(result) == [CAP_OPEN, CAP_CLOSED_COVID, CAP_OPEN_COVID, new]


def test_protocol_replace_first_then_add_on_not_found(location):
    location["extension"] = location["extension"][:2]  # no capacity yet
    new = capacity("01", "02", 7, "01")
    try:
        result = patch(location, op("replace", BRIEF_PATH, value=("valueExtension", new)))
    except PatchTargetNotFound as exc:
        assert exc.expression == [BRIEF_PATH]
        result = patch(location, op("add", "Location", name="extension", value=("valueExtension", new)))
    assert capacities(result) == [new]
    updated = capacity("01", "02", 5, "01")
    result = patch(result, op("replace", BRIEF_PATH, value=("valueExtension", updated)))
    assert capacities(result) == [updated]


def test_delete_every_capacity_of_a_temporary_assignment(location):
    path = f"Location.extension.where(url='{CAPACITY}' and extension.where(url='temporaryAssignement')" \
           ".value.coding.code='02')"
    result = patch(location, op("delete", path))
    assert capacities(result) == [CAP_OPEN]
    assert result["extension"][:2] == location["extension"][:2]


def test_delete_without_match_is_a_no_op(location):
    path = indicator(("temporaryAssignement", "99"))
    assert patch(location, op("delete", path)) == location


def test_delete_of_the_last_extensions_removes_the_array(location):
    result = patch(location, op("delete", "Location.extension"))
    assert "extension" not in result


def test_replace_the_number_of_beds_through_the_value_choice(location):
    path = OPEN_STANDARD + ".extension.where(url='nbCapacity').value"
    result = patch(location, op("replace", path, value=("valueInteger", 0)))
    assert sub(capacities(result)[0], "nbCapacity") == 0
    assert capacities(result)[1:] == [CAP_CLOSED_COVID, CAP_OPEN_COVID]


def test_replace_a_choice_with_another_type_swaps_the_json_key(location):
    path = f"Location.extension.where(url='{ROR}ror-commune-cog').value"
    result = patch(location, op("replace", path, value=("valueString", "Versailles")))
    assert result["extension"][0] == {"url": ROR + "ror-commune-cog", "valueString": "Versailles"}


def test_replace_a_choice_given_as_parts_is_refused(location):
    path = f"Location.extension.where(url='{ROR}ror-commune-cog').value"
    operation = op("replace", path)
    operation["part"].append({"name": "value", "part": [{"name": "text", "valueString": "x"}]})
    with pytest.raises(PatchError, match="typed value"):
        patch(location, operation)


def test_capacity_rules_validate_the_value_type(location):
    operation = op("add", "Location", name="extension", value=("valueInteger", "2"))
    with pytest.raises(InvalidRequest, match="wrong JSON type"):
        patch(location, operation)


# --- other IG scenarios ------------------------------------------------------------------------------------

def test_replace_the_first_address_line_replaces_the_whole_element(location):
    result = patch(location, op("replace", "Location.address.line[0]", value=("valueString", "9 rue de Buc")))
    # the element is replaced with its extensions, as the spec's "element" implies
    assert result["address"] == {"line": ["9 rue de Buc"], "city": "Versailles", "postalCode": "78000"}


def test_replace_an_address_line_with_its_extensions(location):
    operation = op("replace", "Location.address.line[0]", value=("valueString", "9 rue de Buc"))
    extension = {"extension": [{"url": HOUSE_NUMBER, "valueString": "9"}]}
    operation["part"][-1]["_valueString"] = extension
    result = patch(location, operation)
    assert result["address"]["line"] == ["9 rue de Buc"]
    assert result["address"]["_line"] == [extension]


def test_replace_only_the_house_number_of_the_first_line(location):
    path = f"Location.address.line[0].extension.where(url='{HOUSE_NUMBER}').value"
    result = patch(location, op("replace", path, value=("valueString", "9")))
    assert result["address"]["line"] == ["7 rue porte de Buc"]
    assert result["address"]["_line"][0]["extension"][0] == {"url": HOUSE_NUMBER, "valueString": "9"}
    assert result["address"]["_line"][0]["extension"][1:] == location["address"]["_line"][0]["extension"][1:]


def test_delete_a_primitive_deletes_its_extensions(location):
    location["address"]["_city"] = {"extension": [{"url": HOUSE_NUMBER, "valueString": "x"}]}
    result = patch(location, op("delete", "Location.address.city"))
    assert result["address"] == {key: location["address"][key] for key in ("line", "_line", "postalCode")}


def test_add_to_a_primitive_other_than_an_extension_is_refused(location):
    with pytest.raises(PatchError, match="primitive"):
        patch(location, op("add", "Location.address.city", name="id", value=("valueString", "c1")))


def test_add_an_extension_to_a_primitive_creates_its_companion(location):
    ext = {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
    operation = op("add", "Location.address.city", name="extension", value=("valueExtension", ext))
    result = patch(location, operation)
    assert result["address"]["city"] == "Versailles"
    assert result["address"]["_city"] == {"extension": [ext]}


def test_add_a_location_reference_to_a_healthcare_service(service):
    ref = {"reference": "Location/YYY"}
    result = patch(service, op("add", "HealthcareService", name="location", value=("valueReference", ref)))
    assert result["location"] == [{"reference": "Location/888888"}, ref]
    del service["location"]
    result = patch(service, op("add", "HealthcareService", name="location", value=("valueReference", ref)))
    assert result["location"] == [ref]  # a repeating element is created as an array


def test_add_a_value_given_as_nested_parts(service):
    operation = op("add", "HealthcareService", name="location")
    reference = {"name": "reference", "valueString": "Location/YYY"}
    operation["part"].append({"name": "value", "part": [reference]})
    assert patch(service, operation)["location"][-1] == {"reference": "Location/YYY"}


def test_add_an_extension_given_as_nested_parts(location):
    operation = op("add", "Location", name="extension")
    operation["part"].append({"name": "value", "part": [
        {"name": "url", "valueUri": CAPACITY},
        {"name": "extension", "part": [{"name": "url", "valueUri": "nbCapacity"},
                                       {"name": "value", "valueInteger": 2}]},
    ]})
    result = patch(location, operation)
    nb_capacity = {"url": "nbCapacity", "valueInteger": 2}
    assert result["extension"][-1] == {"url": CAPACITY, "extension": [nb_capacity]}


def test_delete_a_specialty_by_code(service):
    result = patch(service, op("delete", "HealthcareService.specialty.where(coding.code='022')"))
    assert "specialty" not in result  # the only specialty: the emptied array goes too


def test_replace_and_add_a_single_valued_element(organization):
    result = patch(organization, op("replace", "Organization.name", value=("valueString", "CHV")))
    assert result["name"] == "CHV"
    del organization["name"]
    result = patch(organization, op("add", "Organization", name="name", value=("valueString", "CHV")))
    assert result["name"] == "CHV"


def test_add_to_an_existing_single_valued_element_is_refused(organization):
    with pytest.raises(PatchError, match="already exists"):
        patch(organization, op("add", "Organization", name="name", value=("valueString", "CHV")))


def test_add_below_the_first_level(organization):
    operation = op("add", "Organization.telecom[0]", name="use", value=("valueCode", "work"))
    assert patch(organization, operation)["telecom"][0]["use"] == "work"


def test_add_to_a_path_selecting_nothing_is_not_found(organization):
    path = "Organization.contact"
    with pytest.raises(PatchTargetNotFound) as caught:
        patch(organization, op("add", path, name="name", value=("valueHumanName", {"text": "x"})))
    assert caught.value.expression == [path]


# --- insert and move ---------------------------------------------------------------------------------------

def test_insert_into_a_list(service):
    new = {"coding": [{"system": NOS + "x", "code": "01"}]}
    path = "HealthcareService.characteristic"
    result = patch(service, op("insert", path, value=("valueCodeableConcept", new), index=1))
    assert result["characteristic"] == [service["characteristic"][0], new, service["characteristic"][1]]
    result = patch(service, op("insert", path, value=("valueCodeableConcept", new), index=2))
    assert result["characteristic"][-1] == new


def test_insert_into_a_primitive_list_keeps_the_companion_aligned(location):
    operation = op("insert", "Location.address.line", value=("valueString", "Bâtiment A"), index=0)
    result = patch(location, operation)
    assert result["address"]["line"] == ["Bâtiment A", "7 rue porte de Buc"]
    assert result["address"]["_line"] == [None, location["address"]["_line"][0]]


def test_move_within_a_list(service):
    result = patch(service, op("move", "HealthcareService.availableTime", source=6, destination=0))
    days = [t["daysOfWeek"][0] for t in result["availableTime"]]
    assert days == ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def test_move_a_primitive_moves_its_companion(location):
    location["address"]["line"].append("BP 12")
    result = patch(location, op("move", "Location.address.line", source=0, destination=1))
    assert result["address"]["line"] == ["BP 12", "7 rue porte de Buc"]
    assert result["address"]["_line"] == [None, location["address"]["_line"][0]]


@pytest.mark.parametrize(("operation", "message"), [
    (op("insert", "HealthcareService.characteristic", value=("valueString", "x"), index=3), "out of range"),
    (op("move", "HealthcareService.characteristic", source=2, destination=0), "out of range"),
    (op("move", "HealthcareService.characteristic", source=0, destination=2), "out of range"),
    (op("insert", "HealthcareService.characteristic.where(coding.code='04')", value=("valueString", "x"),
        index=0), "whole array"),
    (op("insert", "HealthcareService.providedBy", value=("valueString", "x"), index=0), "whole array"),
    (op("move", "HealthcareService.extension.extension", source=0, destination=0), "whole array"),
])
def test_insert_and_move_refusals(service, operation, message):
    with pytest.raises(PatchError, match=message):
        patch(service, operation)


def test_insert_into_a_missing_list_is_not_found(organization):
    with pytest.raises(PatchTargetNotFound):
        patch(organization, op("insert", "Organization.alias", value=("valueString", "x"), index=0))


# --- the FHIRPath subset -----------------------------------------------------------------------------------

def select_count(resource: dict, path: str) -> int:
    """How many elements a path selects, observed through a delete."""
    before = json.dumps(resource)
    marker = {"url": "urn:marker", "valueBoolean": True}
    try:
        patch(resource, op("replace", path, value=("valueExtension", marker)))
    except PatchTargetNotFound:
        return 0
    except PatchError as exc:
        if "elements, not one" in exc.message:
            return int(exc.message.split(" selects ")[1].split()[0])
        raise
    assert json.dumps(resource) == before
    return 1


SUBSET = [
    (f"Location.extension.where(url='{CAPACITY}')", 3),
    (f"Location.extension('{CAPACITY}')", 3),
    (f"Location.extension.where(url='{CAPACITY}').first()", 1),
    (f"Location.extension.where(url='{CAPACITY}').last()", 1),
    (f"Location.extension.where(url='{CAPACITY}')[1]", 1),
    (f"Location.extension.where(url='{CAPACITY}')[3]", 0),
    (f"Location.extension.where(url != '{CAPACITY}')", 2),
    (f"Location.extension.where((url = '{CAPACITY}').not())", 2),
    ("Location.extension.where(extension.exists())", 3),
    ("Location.extension.where(extension.empty())", 2),
    ("Location.extension.where(extension.exists(url = 'capacityClosingType'))", 1),
    ("Location.extension.where(extension('capacityClosingType').exists())", 1),
    ("Location.extension.where(extension.where(url='capacityType').value.ofType(CodeableConcept)"
     ".coding.code = '01')", 3),
    ("Location.extension.where(extension.where(url='capacityType').value.as(FHIR.string) = '01')", 0),
    ("Location.extension.where(extension.where(url='nbCapacity').value = 12)", 1),
    ("Location.extension.where(extension.where(url='nbCapacity').value = '12')", 0),  # no implicit cast
    ("Location.extension.where(value.exists() and $this.url.exists())", 2),
    ("Location.extension.where(extension.where(url='comment').value = 'x' or true)", 5),  # empty or true
    ("Location.extension.where(extension.where(url='comment').value = 'x' and true)", 0),  # empty and true
    # `=` compares whole collections: seven urls never equal one string
    ("Location.extension.where(extension.url = 'capacityType')", 0),
    ("Location.`extension`.where(url = 'it\\'s')", 0),
]


@pytest.mark.parametrize(("path", "count"), SUBSET)
def test_fhirpath_subset(location, path, count):
    assert select_count(location, path) == count


def test_criteria_on_primitive_extensions_fall_back_to_locations(location):
    # `line` is a string: its extensions live in `_line`, which only the location evaluator reaches
    assert select_count(location, f"Location.address.line.where(extension('{HOUSE_NUMBER}').exists())") == 1
    assert select_count(location, f"Location.address.line.where(extension.where(url='{HOUSE_NUMBER}')"
                                  ".value = '8')") == 0
    assert select_count(location, "Location.address.where(line.extension.exists())") == 1


@pytest.mark.parametrize("path", [p for p, _ in SUBSET if "where(" in p] + [
    f"Location.address.where(line.extension('{HOUSE_NUMBER}').value = '7')",
    "Location.address.where(city = 'Versailles' and postalCode != '78000')",
])
def test_criteria_compiled_over_values_agree_with_the_location_evaluator(location, path):
    tree = _parse_path(path)
    while tree[0] != "call" or tree[2] != "where":  # the outermost where() of the path
        tree = tree[1]
    base = _Evaluator(location).eval(tree[1], [_Evaluator(location).root], top=True)
    assert base
    test = _predicate(tree[3][0])
    assert (test is None) == ("ofType(" in path or ".as(" in path)  # only these always need locations
    for node in base:
        by_locations = _truth(_Evaluator(location).eval(tree[3][0], [node]))
        if test is not None:
            assert test(node.value) in (by_locations, _NEEDS_LOCATIONS), (node.value, by_locations)


def test_injection_looking_criteria_are_just_expressions(location):
    path = "Location.extension.where(url='x' or 1=1)"
    assert select_count(location, path) == 5
    assert "extension" not in patch(location, op("delete", path))


@pytest.mark.parametrize("path", [
    "Location.extension.trace('x')",
    "Location.descendants()",
    "Location.managingOrganization.resolve().name",
    "Location.children()",
    "Location.extension.select(url)",
    "Location.extension.where(url='x' | 'y')",
    "Location.extension.where(url ~ 'x')",
    "Location.extension.where(%resource.id = 'x')",
    "Location.extension[0 + 1]",
    "Location.extension.where(url = 'x' xor true)",
    "Location.extension.where(url = 'unterminated)",
    "Location.extension.where(url = 'x' ')'",  # a string literal is no closing parenthesis
    "Location.extension.where(url = 'bad \\q escape')",
    "Location.extension.ofType(1)",
    "Location.extension.where()",
    "Location..extension",
    "Location.extension.where(url = 'x'",
    "Patient.extension",
    "extension",
    "where(url = 'x')",
    "Location.extension.exists() and true",
    "(" * 40 + "Location" + ")" * 40,
    "Location." + "a." * 3000 + "b",
    "Location" + ".a" * 300,  # short enough in characters, too many tokens
    " ",
])
def test_unsupported_or_malformed_paths_are_refused_cleanly(location, path):
    with pytest.raises(InvalidRequest) as caught:
        patch(location, op("delete", path))
    assert caught.value.expression == ["Parameters.parameter[0].part[1]"]


@pytest.mark.parametrize("path", [
    "Location.extension.where(extension)",  # several items in a boolean context
    "Location.address.ofType(Address)",  # ofType() on an element that is not a choice
    "Location.extension.where(url = 'x')['0']",
])
def test_evaluation_errors_are_patch_errors(location, path):
    with pytest.raises(PatchError) as caught:
        patch(location, op("delete", path))
    assert caught.value.expression == [path]


@pytest.mark.parametrize("path", ["Location", "Location.extension.exists()", "Location.id = 'x'"])
def test_paths_that_select_no_element_of_the_resource_cannot_be_deleted(location, path):
    with pytest.raises((PatchError, InvalidRequest)):
        patch(location, op("delete", path))


# --- Parameters validation ---------------------------------------------------------------------------------

def body_with(*parts: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": list(parts)}]}


TYPE_REPLACE = {"name": "type", "valueCode": "replace"}
PATH = {"name": "path", "valueString": "Location.address.city"}
VALUE = {"name": "value", "valueString": "Paris"}
PART_2 = "Parameters.parameter[0].part[2]"


@pytest.mark.parametrize(("body", "expression"), [
    ({"resourceType": "Bundle"}, "Parameters"),
    ([], "Parameters"),
    ({"resourceType": "Parameters", "parameter": {}}, "Parameters.parameter"),
    ({"resourceType": "Parameters", "parameter": [{"name": "op", "part": []}]}, "Parameters.parameter[0]"),
    ({"resourceType": "Parameters", "parameter": ["x"]}, "Parameters.parameter[0]"),
    ({"resourceType": "Parameters", "parameter": [{"name": "operation"}]}, "Parameters.parameter[0].part"),
    (body_with(TYPE_REPLACE, PATH, VALUE, {"name": "colour", "valueString": "x"}),
     "Parameters.parameter[0].part[3]"),
    (body_with(TYPE_REPLACE, PATH, VALUE, "x"), "Parameters.parameter[0].part[3]"),
    (body_with(TYPE_REPLACE, PATH, PATH, VALUE), PART_2),
    (body_with(PATH, VALUE), "Parameters.parameter[0].part"),
    (body_with({"name": "type", "valueCode": "remove"}, PATH), "Parameters.parameter[0].part[0]"),
    (body_with({"name": "type", "valueInteger": 1}, PATH), "Parameters.parameter[0].part[0]"),
    (body_with({"name": "type"}, PATH), "Parameters.parameter[0].part[0]"),
    (body_with(TYPE_REPLACE, VALUE), "Parameters.parameter[0].part"),
    (body_with(TYPE_REPLACE, PATH), "Parameters.parameter[0].part"),
    (body_with(TYPE_REPLACE, {"name": "path", "valueCode": "Location.address.city"}, VALUE),
     "Parameters.parameter[0].part[1]"),
    (body_with(TYPE_REPLACE, {"name": "path", "valueString": 3}, VALUE), "Parameters.parameter[0].part[1]"),
    (body_with(TYPE_REPLACE, PATH, VALUE, {"name": "index", "valueInteger": 0}),
     "Parameters.parameter[0].part[3]"),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "valueString": "a", "valueCode": "b"}),
     PART_2),
    (body_with(TYPE_REPLACE, PATH, {"name": "value"}), PART_2),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "valueInt": 2}), PART_2),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "value": 2}), PART_2),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "valueBoolean": "true"}), PART_2),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "valueInteger": True}), PART_2),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "valueAddress": "x"}), PART_2),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "valueString": "x", "_valueString": []}),
     PART_2),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "part": []}), "Parameters.parameter[0].part[2].part"),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "part": [{"name": "a", "valueString": "x",
                                                               "_valueString": {"id": "1"}}]}),
     "Parameters.parameter[0].part[2].part[0]"),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "part": [{"valueString": "x"}]}),
     "Parameters.parameter[0].part[2].part[0]"),
    (body_with(TYPE_REPLACE, PATH, {"name": "value", "part": [{"name": "a", "valueInt": 1}]}),
     "Parameters.parameter[0].part[2].part[0]"),
    (body_with({"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Location"}, VALUE),
     "Parameters.parameter[0].part"),
    (body_with({"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Location"},
               {"name": "name", "valueString": "bad name"}, VALUE), PART_2),
    (body_with({"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Location"},
               {"name": "name", "valueString": "resourceType"}, VALUE), PART_2),
    (body_with({"name": "type", "valueCode": "insert"}, PATH, VALUE), "Parameters.parameter[0].part"),
    (body_with({"name": "type", "valueCode": "insert"}, PATH, VALUE, {"name": "index", "valueInteger": -1}),
     "Parameters.parameter[0].part[3]"),
    (body_with({"name": "type", "valueCode": "insert"}, PATH, VALUE, {"name": "index", "valueString": "1"}),
     "Parameters.parameter[0].part[3]"),
    (body_with({"name": "type", "valueCode": "move"}, PATH, {"name": "source", "valueInteger": 0}),
     "Parameters.parameter[0].part"),
    (body_with({"name": "type", "valueCode": "delete"}, PATH, VALUE), PART_2),
])
def test_malformed_parameters_are_invalid_requests(location, body, expression):
    with pytest.raises(InvalidRequest) as caught:
        apply_fhirpath_patch(location, body)
    assert caught.value.status == 400
    assert caught.value.expression == [expression]


def test_type_given_as_value_string_like_the_ig_examples(location):
    body = body_with({"name": "type", "valueString": "replace"}, PATH, VALUE)
    assert apply_fhirpath_patch(location, body)["address"]["city"] == "Paris"


def test_an_empty_parameters_changes_nothing(location):
    assert apply_fhirpath_patch(location, {"resourceType": "Parameters"}) == location


# --- copy semantics ----------------------------------------------------------------------------------------

def test_operations_apply_in_order(location):
    first = op("add", "Location", name="extension", value=("valueExtension", capacity("02", "02", 1, "01")))
    then = op("delete", indicator(("capacityType", "02")).replace(f"url='{CAPACITY}' and ", ""))
    assert patch(location, first, then) == location


@pytest.mark.parametrize("operation", [
    op("replace", OPEN_STANDARD, value=("valueExtension", CAP_OPEN_COVID)),
    op("add", "Location", name="extension", value=("valueExtension", CAP_OPEN)),
    op("delete", "Location.extension"),
    op("insert", "Location.address.line", value=("valueString", "x"), index=0),
    op("move", f"Location.extension.where(url='{CAPACITY}').extension", source=0, destination=1),
    op("replace", "Location.address.line[0]", value=("valueString", "x")),
])
def test_the_input_is_never_mutated(location, operation):
    before = copy.deepcopy(location)
    try:
        result = patch(location, operation)
    except PatchError:  # the move above selects the sub-extensions of three capacities
        result = None
    assert location == before
    if result is not None:
        result["address"]["city"] = "changed"
        assert location == before


def test_a_failing_operation_leaves_the_input_untouched(location):
    before = copy.deepcopy(location)
    with pytest.raises(PatchTargetNotFound):
        patch(location, op("delete", "Location.extension"),
              op("replace", "Location.name", value=("valueString", "x")))
    assert location == before


# --- JSON Patch (RFC 6902) ---------------------------------------------------------------------------------

def test_json_patch_add(service):
    ref = {"reference": "Location/YYY"}
    result = apply_json_patch(service, [
        {"op": "add", "path": "/location/-", "value": ref},
        {"op": "add", "path": "/location/0", "value": {"reference": "Location/first"}},
        {"op": "add", "path": "/comment", "value": "new"},
    ])
    assert result["location"] == [{"reference": "Location/first"}, {"reference": "Location/888888"}, ref]
    assert result["comment"] == "new"


def test_json_patch_remove_prunes_empty_arrays(service):
    result = apply_json_patch(service, [{"op": "remove", "path": "/specialty/0"}])
    assert "specialty" not in result


def test_json_patch_replace_move_copy_test(service):
    result = apply_json_patch(service, [
        {"op": "test", "path": "/name", "value": service["name"]},
        {"op": "replace", "path": "/name", "value": "Gynécologie"},
        {"op": "move", "from": "/characteristic/1", "path": "/characteristic/0"},
        {"op": "copy", "from": "/location/0", "path": "/location/-"},
        {"op": "test", "path": "/location/1/reference", "value": "Location/888888"},
    ])
    assert result["name"] == "Gynécologie"
    assert result["characteristic"] == service["characteristic"][::-1]
    assert result["location"] == [{"reference": "Location/888888"}] * 2
    result["location"][1]["reference"] = "x"  # the copy is a copy
    assert result["location"][0] == {"reference": "Location/888888"}


def test_json_patch_pointer_escapes(organization):
    organization["a/b"] = 1
    organization["m~n"] = 2
    result = apply_json_patch(organization, [
        {"op": "remove", "path": "/a~1b"},
        {"op": "replace", "path": "/m~0n", "value": 3},
    ])
    assert "a/b" not in result
    assert result["m~n"] == 3


def test_json_patch_failing_test(service):
    with pytest.raises(PatchError) as caught:
        apply_json_patch(service, [{"op": "replace", "path": "/name", "value": "x"},
                                   {"op": "test", "path": "/name", "value": "y"}])
    assert caught.value.code == "ror.patch"
    assert caught.value.status == 422
    assert "operation 1" in caught.value.message


def test_json_patch_test_does_not_take_true_for_one(organization):
    organization["active"] = True
    with pytest.raises(PatchError, match="test failed"):
        apply_json_patch(organization, [{"op": "test", "path": "/active", "value": 1}])


@pytest.mark.parametrize(("operations", "error"), [
    ({"op": "add"}, InvalidRequest),
    (["add"], InvalidRequest),
    ([{"op": "upsert", "path": "/name", "value": 1}], InvalidRequest),
    ([{"op": "add", "value": 1}], InvalidRequest),
    ([{"op": "add", "path": "name", "value": 1}], InvalidRequest),
    ([{"op": "add", "path": "/name"}], InvalidRequest),
    ([{"op": "remove", "path": "/a~2b"}], InvalidRequest),
    ([{"op": "copy", "path": "/x"}], InvalidRequest),
    ([{"op": "remove", "path": "/nothing"}], PatchError),
    ([{"op": "replace", "path": "/nothing", "value": 1}], PatchError),
    ([{"op": "remove", "path": "/telecom/1"}], PatchError),
    ([{"op": "remove", "path": "/telecom/01"}], PatchError),
    ([{"op": "remove", "path": "/telecom/-"}], PatchError),
    ([{"op": "add", "path": "/telecom/2", "value": {}}], PatchError),
    ([{"op": "add", "path": "/name/x", "value": 1}], PatchError),
    ([{"op": "remove", "path": "/name/x"}], PatchError),
    ([{"op": "move", "from": "/name/x", "path": "/id"}], PatchError),
    ([{"op": "add", "path": "/nothing/x", "value": 1}], PatchError),
    ([{"op": "remove", "path": ""}], PatchError),
    ([{"op": "move", "from": "/telecom", "path": "/telecom/0/x"}], PatchError),
    ([{"op": "replace", "path": "", "value": {"resourceType": "Patient"}}], PatchError),
    ([{"op": "replace", "path": "/resourceType", "value": "Patient"}], PatchError),
])
def test_json_patch_errors(organization, operations, error):
    with pytest.raises(error) as caught:
        apply_json_patch(organization, operations)
    assert type(caught.value) is error


def test_json_patch_error_names_the_operation_index(organization):
    with pytest.raises(PatchError, match="operation 1"):
        apply_json_patch(organization, [{"op": "add", "path": "/active", "value": True},
                                        {"op": "remove", "path": "/telecom/5"}])


def test_json_patch_never_mutates_the_input(service):
    before = copy.deepcopy(service)
    apply_json_patch(service, [{"op": "remove", "path": "/location"},
                               {"op": "add", "path": "/characteristic/0/coding/-", "value": {"code": "x"}}])
    with pytest.raises(PatchError):
        apply_json_patch(service, [{"op": "remove", "path": "/specialty"},
                                   {"op": "test", "path": "/name", "value": "no"}])
    assert service == before


def test_json_patch_whole_document_replace_and_move_to_itself(organization):
    replacement = {"resourceType": "Organization", "id": "eg1", "name": "x"}
    result = apply_json_patch(organization, [{"op": "replace", "path": "", "value": replacement}])
    assert result == replacement
    result = apply_json_patch(organization, [{"op": "move", "from": "/name", "path": "/name"}])
    assert result == organization


# --- fast paths: the same answers as the general machinery ------------------------------------------------

def _places() -> list[dict]:
    """Every Location of the IG examples and of the hand-built dataset, with records whose fields break the
    fast paths' assumptions: a url that is no string, a list, absent, a choice key, an item that is no object."""
    bundle = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "small" / "bundle.json").read_text())
    places = [json.loads((EXAMPLES / "Location-ror-location-exemple.json").read_text())]
    places += [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Location"]
    odd = copy.deepcopy(CAP_OPEN)
    odd["extension"][1]["url"] = ["capacityStatus"]
    odd["extension"][2].pop("url")
    odd["extension"][2]["urlString"] = "temporalityCapacity"
    odd["extension"][3]["url"] = 7
    odd["extension"].append("capacityStatus")
    twin = copy.deepcopy(CAP_OPEN)
    twin["url"] = [CAPACITY]
    places.append({**places[0], "extension": [*places[0]["extension"], CAP_OPEN, CAP_CLOSED_COVID, odd, twin,
                                              {"urlUri": CAPACITY, "extension": CAP_OPEN["extension"]}, 3]})
    assert len(places) >= 10
    return places


FAST_CRITERIA = [
    f"url = '{CAPACITY}'",
    f"url != '{CAPACITY}'",
    f"'{CAPACITY}' = url",
    f"url = '{CAPACITY}' and extension.where(url = 'capacityStatus').value.coding.code = '02'",
    "extension.where(url = 'capacityStatus').value.coding.code = '05' or extension.where(url != 'nbCapacity').exists()",
    "extension.where(url = 'temporalityCapacity').exists()",
    "extension.where(url != 'capacityStatus').value.coding.code = '01'",
    "extension.exists(url = 'nbCapacity')",
    "resourceType = 'Location'",
    "url = 7",
]


@pytest.mark.parametrize("criteria", FAST_CRITERIA)
def test_compiled_criteria_agree_with_the_location_evaluator_on_every_place(criteria):
    tree = _parse_path(f"Location.extension.where({criteria})")
    test = _predicate(tree[3][0])
    seen = set()
    for place in _places():
        evaluator = _Evaluator(place)
        for node in evaluator.eval(tree[1], [evaluator.root], top=True):
            by_locations = _truth(_Evaluator(place).eval(tree[3][0], [node]))
            assert test(node.value) in (by_locations, _NEEDS_LOCATIONS), (criteria, node.value)
            seen.add(by_locations)
    assert True in seen or "7" in criteria or "resourceType" in criteria


def _with_empties(resource: dict) -> list[dict]:
    """``resource`` as it is, and with what ``_prune`` drops (or only looks like it) put at several depths."""
    out = [copy.deepcopy(resource)]
    for where, empty in [("top", {}), ("top", []), ("ext", {}), ("ext", []), ("list", {}), ("nulls", None),
                         ("text", "{} [] [null")]:
        r = copy.deepcopy(resource)
        if where == "top":
            r["implicitRules" if empty == {} else "alias"] = empty
        elif where == "ext":
            r.setdefault("extension", []).append({"url": "urn:x", "valueCodeableConcept": {"coding": empty}})
        elif where == "list":
            r.setdefault("extension", []).append(empty)
        elif where == "nulls":
            r["_alias"] = [None, None]
        else:
            r["name"] = empty
        out.append(r)
    return out


def test_dropping_empties_only_when_serialised_ones_show_is_the_full_prune():
    bundle = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "small" / "bundle.json").read_text())
    resources = [e["resource"] for e in bundle["entry"]]
    resources += [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    pruned = 0
    for resource in resources:
        for variant in _with_empties(resource):
            full, fast = copy.deepcopy(variant), copy.deepcopy(variant)
            _prune(full)
            _drop_empties(fast)
            assert orjson.dumps(fast) == orjson.dumps(full)
            pruned += full != variant
    assert pruned >= 5 * len(resources)
