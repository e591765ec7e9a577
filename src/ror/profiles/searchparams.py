"""The search-parameter registry: core R4 parameters the ROR IG declares + the 36 ROR custom ones.

The ROR parameters are read from the IG's SearchParameter resources (``ror/data/ig``); where an IG
expression is wrong, ``IG_DEVIATIONS`` substitutes the intended expression (each one is listed in
docs/search.md). Core parameters use the R4 expressions, restricted to the resource types served.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ror.profiles.paths import Item, compile_expression, compile_relative

ROR = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
CORE_SP = "http://hl7.org/fhir/SearchParameter/"

RESOURCE_TYPES = ("Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole", "Task")

# Parameter types that are not index lookups but handled by the query compiler itself.
SPECIAL = "special"


@dataclass(frozen=True)
class SearchParam:
    code: str
    base: str
    type: str  # token string reference date number quantity uri special
    expression: str
    url: str
    targets: tuple[str, ...] = ()  # reference parameters: target resource types
    note: str = ""  # deviation from the published definition, if any
    extract: Callable[[dict], list[Item]] = field(default=lambda r: [], compare=False, repr=False)
    # Record parameters: values are read inside each instance of the ``group`` extension, so that
    # index rows know which record they come from (same-record matching, per-record visibility).
    group: str | None = None
    extract_in_group: Callable[[object], list[Item]] | None = field(default=None, compare=False, repr=False)
    group_path: str | None = None  # the path read inside each ``group`` instance (``extract_in_group``)

    @property
    def key(self) -> str:
        """Name of the parameter in the index tables."""
        return f"{self.base}.{self.code}"


# (base, code, type, expression, targets) of the core R4 parameters declared by the IG's
# CapabilityStatements, plus the reference parameters its _include/_revinclude/chains need.
_CORE: list[tuple[str, str, str, str, tuple[str, ...]]] = []
for _t in RESOURCE_TYPES:
    _CORE += [
        (_t, "_lastUpdated", "date", f"{_t}.meta.lastUpdated", ()),
        (_t, "_tag", "token", f"{_t}.meta.tag", ()),
        (_t, "_profile", "uri", f"{_t}.meta.profile", ()),
        (_t, "identifier", "token", f"{_t}.identifier", ()),
    ]
_CORE += [
    ("Organization", "name", "string", "Organization.name | Organization.alias", ()),
    ("Organization", "type", "token", "Organization.type", ()),
    ("Organization", "partof", "reference", "Organization.partOf", ("Organization",)),
    ("Organization", "active", "token", "Organization.active", ()),
    ("Organization", "address", "string", "Organization.address", ()),
    ("Organization", "address-city", "string", "Organization.address.city", ()),
    ("Organization", "address-postalcode", "string", "Organization.address.postalCode", ()),
    ("HealthcareService", "name", "string", "HealthcareService.name", ()),
    ("HealthcareService", "service-category", "token", "HealthcareService.category", ()),
    ("HealthcareService", "service-type", "token", "HealthcareService.type", ()),
    ("HealthcareService", "specialty", "token", "HealthcareService.specialty", ()),
    ("HealthcareService", "characteristic", "token", "HealthcareService.characteristic", ()),
    ("HealthcareService", "active", "token", "HealthcareService.active", ()),
    ("HealthcareService", "organization", "reference", "HealthcareService.providedBy", ("Organization",)),
    ("HealthcareService", "location", "reference", "HealthcareService.location", ("Location",)),
    ("HealthcareService", "coverage-area", "reference", "HealthcareService.coverageArea", ("Location",)),
    ("Location", "name", "string", "Location.name | Location.alias", ()),
    ("Location", "type", "token", "Location.type", ()),
    ("Location", "status", "token", "Location.status", ()),
    ("Location", "operational-status", "token", "Location.operationalStatus", ()),
    ("Location", "address", "string", "Location.address", ()),
    ("Location", "address-city", "string", "Location.address.city", ()),
    ("Location", "address-postalcode", "string", "Location.address.postalCode", ()),
    ("Location", "organization", "reference", "Location.managingOrganization", ("Organization",)),
    ("Location", "partof", "reference", "Location.partOf", ("Location",)),
    ("Location", "near", SPECIAL, "Location.position", ()),
    ("Practitioner", "name", "string", "Practitioner.name", ()),
    ("Practitioner", "family", "string", "Practitioner.name.family", ()),
    ("Practitioner", "given", "string", "Practitioner.name.given", ()),
    ("Practitioner", "active", "token", "Practitioner.active", ()),
    ("PractitionerRole", "practitioner", "reference", "PractitionerRole.practitioner", ("Practitioner",)),
    ("PractitionerRole", "service", "reference", "PractitionerRole.healthcareService", ("HealthcareService",)),
    ("PractitionerRole", "organization", "reference", "PractitionerRole.organization", ("Organization",)),
    ("PractitionerRole", "location", "reference", "PractitionerRole.location", ("Location",)),
    ("PractitionerRole", "role", "token", "PractitionerRole.code", ()),
    ("PractitionerRole", "specialty", "token", "PractitionerRole.specialty", ()),
    ("PractitionerRole", "active", "token", "PractitionerRole.active", ()),
    ("Task", "focus", "reference", "Task.focus", RESOURCE_TYPES),
    ("Task", "status", "token", "Task.status", ()),
    ("Task", "business-status", "token", "Task.businessStatus", ()),
    ("Task", "code", "token", "Task.code", ()),
    ("Task", "authored-on", "date", "Task.authoredOn", ()),
    ("Task", "modified", "date", "Task.lastModified", ()),
    ("Task", "owner", "reference", "Task.owner", ("Organization", "Practitioner", "PractitionerRole",
                                                    "HealthcareService")),
    ("Task", "requester", "reference", "Task.requester", ("Organization", "Practitioner", "PractitionerRole")),
]

_PRICE = f"Organization.extension.where(url='{ROR}ror-organization-price')"
_EQUIPMENT = f"Location.extension.where(url='{ROR}ror-location-equipment')"
_LIMIT = f"{_EQUIPMENT}.extension.where(url='{ROR}ror-location-equipment-limit')"

# SearchParameter id -> (expression actually used, why). See docs/search.md, "Deviations".
IG_DEVIATIONS: dict[str, tuple[str, str]] = {
    "ror-sp-organization-special-price": (
        f"{_PRICE}.extension.where(url='specialPrice').value",
        "the IG expression reads dependencyLevel; the parameter is documented as the special price "
        "condition (ror-organization-price.specialPrice)"),
    "ror-sp-organization-price-validity-start-date": (
        f"{_PRICE}.extension.where(url='startDate').value",
        "the IG expression reads an extension 'ror-organization' that does not exist; intended: "
        "ror-organization-price.startDate"),
    "ror-sp-equipment-feature": (
        f"{_LIMIT}.extension.where(url='equipmentFeature').value",
        "the IG expression expects a top-level ror-location-equipment-limit extension; the profile "
        "nests it inside ror-location-equipment"),
    "ror-sp-limit-value": (
        f"{_LIMIT}.extension.where(url='limitValue').value",
        "same nesting as equipment-feature"),
    "ror-sp-location-near-insee-code": (
        "Location.position",
        "the IG expression names an address extension absent from RORLocation; the intended meaning "
        "(distance from a commune's centre) is computed on the place's position, or on the centre of "
        "its ror-commune-cog commune when it has no position"),
}

# Codes a client may use for a parameter whose IG code differs from its CapabilityStatement name.
CODE_ALIASES = {("Organization", "amount-value"): "price-amount-value"}

DEAD_PARAMETERS = {
    "ror-sp-healthcareservice-equipment-type": "its expression names the obsolete extension "
    "ror30/ror-healthcareservice-equipement, absent from IG 0.7.0; registered as defined, it matches nothing",
    "ror-sp-organization-oi-name": "its expression names the extension ror-organization-oi-name, not "
    "defined in IG 0.7.0; registered as defined, it matches nothing",
}


def _ig_definitions() -> list[dict]:
    folder = resources.files("ror") / "data" / "ig"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("SearchParameter-") and entry.name.endswith(".json"):
            out.append(json.loads(entry.read_text(encoding="utf-8")))
    return out


class Registry:
    """All search parameters by resource type and code."""

    def __init__(self, params: list[SearchParam]):
        self._by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in RESOURCE_TYPES}
        for p in params:
            self._by_type[p.base][p.code] = p

    def get(self, rtype: str, code: str) -> SearchParam | None:
        by_code = self._by_type.get(rtype, {})
        return by_code.get(code) or by_code.get(CODE_ALIASES.get((rtype, code), ""))

    def for_type(self, rtype: str) -> list[SearchParam]:
        return list(self._by_type.get(rtype, {}).values())

    def reference_targets(self, rtype: str, code: str) -> tuple[str, ...]:
        p = self.get(rtype, code)
        return p.targets if p and p.type == "reference" else ()


# Extensions whose instances are records: a capacity indicator, a price, an equipment, a housing capacity.
RECORD_EXTENSIONS = frozenset(ROR + n for n in ("ror-location-supported-capacity", "ror-organization-price",
                                                "ror-location-equipment", "ror-location-residential-capacity"))
_GROUP_RE = re.compile(r"^(\w+)\.extension\.where\(url\s*=\s*'([^']+)'\)\.(.+)$", re.S)


def _build(code: str, base: str, ptype: str, expression: str, url: str,
           targets: tuple[str, ...] = (), note: str = "") -> SearchParam:
    group, in_group, group_path = None, None, None
    m = _GROUP_RE.match(expression)
    if m and m.group(1) == base and m.group(2) in RECORD_EXTENSIONS:
        group, group_path = m.group(2), m.group(3)
        in_group = compile_relative(group_path)
    return SearchParam(code=code, base=base, type=ptype, expression=expression, url=url, targets=targets,
                       note=note, extract=compile_expression(expression, base), group=group,
                       extract_in_group=in_group, group_path=group_path)


@lru_cache(maxsize=1)
def registry() -> Registry:
    params = [_build(code, base, ptype, expr, f"{CORE_SP}{'Resource' if code.startswith('_') else base}-"
                     f"{code.lstrip('_')}", targets)
              for base, code, ptype, expr, targets in _CORE]
    for d in _ig_definitions():
        expr, note = IG_DEVIATIONS.get(d["id"], (d["expression"], DEAD_PARAMETERS.get(d["id"], "")))
        code = CODE_ALIASES.get((d["base"][0], d["code"]), d["code"])
        for base in d["base"]:
            params.append(_build(code, base, d["type"], expr, d["url"], note=note))
    return Registry(params)
