"""The ROR capacity protocol, as bed-management suppliers call it (ANS developer documentation,
``patch-capacitaire/location.md``):

- ``PATCH [base]/Location?identifier={idNatStruct of the EG}/{idExterneSynchro}`` with FHIRPath
  Patch ``Parameters``; ``replace`` first, and on 404 ``not-found`` with the expression
  ``Location.extension.where(url='…ror-location-supported-capacity')`` the client sends ``add``;
- the value may be sent as ``valueExtension`` or, as ANS's collection does, as a nameless ``part``
  holding ``{"extension": [<capacity>]}``; ``add`` may omit the element ``name``;
- a record that is not a valid indicator is refused with 400 ``business-rule``;
- ``capacityUpdateDate`` of every record that changed is the time of the update in the national
  store (the moment consumers can see it), whatever any write path sent.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import orjson

from ror.capacity.indicators import CAPACITY_EXPR, CAPACITY_URL, check, describe, indicator_key, nb_capacity
from ror.errors import BusinessRule, Issue, NotFound, PatchTargetNotFound
from ror.fhir.patch import apply_fhirpath_patch


def _capacities(location: dict | None) -> list[dict]:
    return [e for e in (location or {}).get("extension", ()) if isinstance(e, dict) and e.get("url") == CAPACITY_URL]


def _part(op: dict, name: str) -> dict | None:
    for p in op.get("part", ()):
        if isinstance(p, dict) and p.get("name") == name:
            return p
    return None


def normalise(parameters: dict) -> dict:
    """ANS's shapes -> standard FHIRPath Patch: the capacity carried in ``{"extension": [...]}`` becomes
    ``valueExtension``; an ``add`` without ``name`` adds ``extension`` to the Location."""
    out = orjson.loads(orjson.dumps(parameters))  # a deep copy
    for op in out.get("parameter", ()):
        if not isinstance(op, dict) or op.get("name") != "operation":
            continue
        value = _part(op, "value")
        if value is not None and "part" in value and not any(k.startswith("value") for k in value):
            wrapped = [p for p in value["part"] if isinstance(p, dict) and "extension" in p and "name" not in p]
            exts = [e for p in wrapped for e in p["extension"] if isinstance(e, dict) and e.get("url") == CAPACITY_URL]
            if len(exts) == 1:
                value.pop("part")
                value["valueExtension"] = exts[0]
        kind = _part(op, "type") or {}
        if (kind.get("valueCode") or kind.get("valueString")) == "add" and _part(op, "name") is None:
            path = _part(op, "path")
            if path is not None and (path.get("valueString") or "").startswith("Location.extension"):
                path["valueString"] = "Location"
            op["part"].append({"name": "name", "valueString": "extension"})
    return out


def apply_patch(location: dict, parameters: dict) -> dict:
    """FHIRPath Patch of a Location with the protocol's error contract."""
    params = normalise(parameters)
    try:
        return apply_fhirpath_patch(location, params)
    except PatchTargetNotFound as e:
        if any(CAPACITY_URL in x for x in e.expression):
            raise NotFound("The data sent do not identify the indicator to update: no capacity record of this "
                           "place matches; send it with 'add'", expression=CAPACITY_EXPR) from None
        raise


def _comparable(ext: dict) -> tuple:
    """A record's content, except its update date."""
    return tuple(sorted((str(e.get("url")), orjson.dumps(e)) for e in ext.get("extension", ())
                        if isinstance(e, dict) and e.get("url") != "capacityUpdateDate"))


def prepare_write(before: dict | None, after: dict, now_instant: str) -> dict:
    """Check the capacity records a write adds or changes, and stamp their ``capacityUpdateDate``.
    Unchanged records are left exactly as they were (a reload changes nothing)."""
    old = {_comparable(e) for e in _capacities(before)}
    issues: list[Issue] = []
    seen: dict[tuple, int] = {}
    result = copy.copy(after)
    extensions = []
    for i, ext in enumerate(after.get("extension", ()) if isinstance(after.get("extension"), list) else ()):
        if isinstance(ext, dict) and ext.get("url") == CAPACITY_URL:
            key = indicator_key(ext)
            if key in seen:
                issues.append(Issue("error", "business-rule",
                                    f"The indicator {describe(key)} appears twice: update it with 'replace'",
                                    [f"{CAPACITY_EXPR}[{i}]"]))
            seen[key] = i
            if _comparable(ext) not in old:
                issues += check(ext)
                ext = _stamped(ext, now_instant)
        extensions.append(ext)
    if issues:
        raise BusinessRule(issues[0].diagnostics, issues=issues)
    if "extension" in after:
        result["extension"] = extensions
    return result


def _stamped(ext: dict, now_instant: str) -> dict:
    subs = [e for e in ext.get("extension", ()) if not (isinstance(e, dict) and e.get("url") == "capacityUpdateDate")]
    return {**ext, "extension": [*subs, {"url": "capacityUpdateDate", "valueDateTime": now_instant}]}


@dataclass(frozen=True)
class Change:
    """One indicator of one place that appeared, changed value or disappeared."""

    key: tuple[str | None, ...]
    old: int | None  # nbCapacity before (None: the indicator did not exist)
    new: int | None  # nbCapacity after (None: the indicator was removed)


def changes(before: dict | None, after: dict | None) -> list[Change]:
    old = {indicator_key(e): nb_capacity(e) for e in _capacities(before)}
    new = {indicator_key(e): nb_capacity(e) for e in _capacities(after)}
    out = []
    for key in sorted(set(old) | set(new), key=lambda k: tuple(v or "" for v in k)):
        if key not in new:
            out.append(Change(key, old[key], None))
        elif key not in old:
            out.append(Change(key, None, new[key]))
        elif old[key] != new[key]:
            out.append(Change(key, old[key], new[key]))
    return out
