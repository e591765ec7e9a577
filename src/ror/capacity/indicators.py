"""Capacity indicators: which combinations of nature, status, temporality, gender, closing type,
extra-bed type, crisis and temporary assignment make a valid ``ror-location-supported-capacity``
record. The rules are data (``ror/data/capacity-indicators.json``, with their provenance)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ror.errors import Issue
from ror.profiles.access import sub_extension
from ror.profiles.searchparams import ROR

CAPACITY_URL = ROR + "ror-location-supported-capacity"
CAPACITY_EXPR = f"Location.extension.where(url='{CAPACITY_URL}')"
# The dimensions that identify an indicator; nbCapacity, capacitySourceType, capacityUpdateDate and
# comment are its values.
KEY_DIMENSIONS = ("capacityType", "capacityStatus", "temporalityCapacity", "genderCapacityAvailable",
                  "capacityClosingType", "additionalBedType", "crisisType", "temporaryAssignement")
REQUIRED = ("capacityType", "capacityStatus", "temporalityCapacity", "nbCapacity", "capacitySourceType",
            "capacityUpdateDate", "temporaryAssignement")


@dataclass(frozen=True)
class Rules:
    systems: dict[str, str]
    codes: dict[str, dict[str, str]]
    by_status: dict[str, dict]


@lru_cache(maxsize=1)
def rules() -> Rules:
    data = json.loads((resources.files("ror") / "data" / "capacity-indicators.json").read_text(encoding="utf-8"))
    return Rules(data["systems"], data["codes"], data["by_status"])


def sub_code(ext: dict, url: str) -> str | None:
    return _code(sub_extension(ext, url))


def _code(sub: dict | None) -> str | None:
    cc = sub.get("valueCodeableConcept") if sub else None
    for c in (cc or {}).get("coding", ()):
        if isinstance(c, dict) and c.get("code"):
            return c["code"]
    return None


def indicator_key(ext: dict) -> tuple[str | None, ...]:
    subs: dict = {}
    for e in ext.get("extension", ()):
        if isinstance(e, dict):
            subs.setdefault(e.get("url"), e)  # the first one, as sub_extension finds it
    return tuple(_code(subs.get(d)) for d in KEY_DIMENSIONS)


def describe(key: tuple[str | None, ...]) -> str:
    return " / ".join(f"{d}: {v or 'null'}" for d, v in zip(KEY_DIMENSIONS, key, strict=True))


def nb_capacity(ext: dict) -> int | None:
    e = sub_extension(ext, "nbCapacity")
    value = e.get("valueInteger") if e else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check(ext: dict, expression: str = CAPACITY_EXPR) -> list[Issue]:
    """Every reason why ``ext`` is not a valid capacity indicator (400 business-rule issues)."""
    r = rules()
    issues: list[Issue] = []

    def bad(text: str, where: str = "") -> None:
        issues.append(Issue("error", "business-rule", text, [expression + where]))

    if not isinstance(ext, dict) or ext.get("url") != CAPACITY_URL:
        bad(f"A capacity record is an extension with url {CAPACITY_URL}")
        return issues
    for dim in REQUIRED:
        if sub_extension(ext, dim) is None:
            bad(f"Capacity record without '{dim}' (1..1)", f".extension('{dim}')")
    nb = sub_extension(ext, "nbCapacity")
    if nb is not None and (nb_capacity(ext) is None or nb_capacity(ext) < 0):
        bad("nbCapacity must be a non-negative integer", ".extension('nbCapacity')")
    for dim, system in r.systems.items():
        e = sub_extension(ext, dim)
        if e is None:
            continue
        codings = [c for c in (e.get("valueCodeableConcept") or {}).get("coding", ()) if isinstance(c, dict)]
        if not codings or codings[0].get("system") != system or codings[0].get("code") not in r.codes[dim]:
            got = f"{codings[0].get('system')}|{codings[0].get('code')}" if codings else "no coding"
            bad(f"{dim}: {got} is not a code of {system.rsplit('/', 1)[-1]} "
                f"({', '.join(sorted(r.codes[dim]))})", f".extension('{dim}')")
    if issues:
        return issues
    status = sub_code(ext, "capacityStatus")
    rule = r.by_status[status]
    temporality = sub_code(ext, "temporalityCapacity")
    if temporality not in rule["temporalityCapacity"]:
        bad(f"A capacity with status {status} ({r.codes['capacityStatus'][status]}) cannot have temporality "
            f"{temporality} (allowed: {', '.join(rule['temporalityCapacity'])})")
    for dim in ("genderCapacityAvailable", "capacityClosingType", "additionalBedType", "crisisType"):
        present = sub_extension(ext, dim) is not None
        if rule[dim] == "required" and not present:
            bad(f"A capacity with status {status} ({r.codes['capacityStatus'][status]}) needs '{dim}'")
        if rule[dim] == "forbidden" and present:
            bad(f"A capacity with status {status} ({r.codes['capacityStatus'][status]}) cannot have '{dim}'")
    if issues:
        issues.append(Issue("error", "business-rule", "The values do not make a valid indicator: "
                            + describe(indicator_key(ext)), [expression]))
    return issues
