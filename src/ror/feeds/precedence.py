"""Who wins when several sources describe the same resource (docs/feeds.md, "Precedence").

A resource is cut into *elements* ("facets"): top-level elements, with identifiers split by system and
type, ``type`` by code system, extensions by URL and ``meta.tag`` by system. Each import merges what
its source says into the stored resource, element by element, as a three-way merge whose base is what
the same source said last time (kept in ``feed_contribution``):

- an element the source *owns* takes the source's value;
- any other element takes the source's value only if the stored resource has none, or still has
  exactly what this source wrote last time (nobody changed it since) — so a pre-fill never
  overwrites what a professional or a region entered;
- an element the source said last time and no longer says is removed, unless someone changed it since;
- the creation date (``ror-meta-creation-date``) is written once, when the resource is created.

Several regions may describe one resource (a professional practising in several regions, a structure known to two
regions): an element another region wrote and still holds is not taken from it (``merge``'s ``others``), so the
first region to describe an element keeps it until it changes or drops it. That includes the region tag, which the
profiles allow once (``regionSource`` 0..1): the resource's source region is the first region that described it.
Without that rule each region's import overwrote the others', and every monthly reload of unchanged extracts wrote a
new version of each such resource (759 of the 396,634 records at 270,000 resources, benchmarks/pipeline.py).

Ownership: the registries own identification (FINESS for establishments, RPPS for professionals and
for the city practices it identifies); the regions own the operational description.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Sequence

import orjson

from ror.feeds.fhirmap import ADELI_RANG, CREATION_EXT, FINESS, IDNATPS, IDNATST, PERIOD_EXT, ROR, RPPS_RANG, SIRENE
from ror.store.repository import REGION_SYSTEM

# National identifier systems whose type is implied by the system: one facet per system, whether or not a
# source adds the type (a region's idNat_PS with its TRE_G08 type and RPPS's without are one identifier).
_SELF_TYPED = frozenset({IDNATPS, IDNATST, FINESS, SIRENE, RPPS_RANG, ADELI_RANG})


def _identifier_key(i: dict) -> str:
    system = i.get("system", "")
    return f"{system}|" if system in _SELF_TYPED else f"{system}|{_first_code(i.get('type'))}"


_SPLIT = {  # list elements cut into one facet per key
    "identifier": _identifier_key,
    "type": lambda c: _first_system(c),
    "extension": lambda e: e.get("url", ""),
}
_SERVER = {"resourceType", "id", "meta"}

# Identification elements of an Organization: what the registries own.
_ORG_REGISTRY_EXT = {PERIOD_EXT, ROR + "ror-organization-creation-date", ROR + "ror-organization-closing-type",
                     ROR + "ror-organization-additional-name"}
_ORG_REGISTRY_TYPES = ("TRE_R66-", "TRE_R72-", "TRE_R73-", "TRE_R74-", "TRE_R02-")
_PRACTITIONER_REGISTRY = {"name", "qualification", "active", "gender"}
SET_ONCE = {"extension|" + CREATION_EXT}  # the creation date in the ROR: written when created, then kept
# The value of a SET_ONCE element in an entity serialised by orjson (``without_set_once_values``).
_SET_ONCE_VALUE = re.compile(rb'(\{"url":"' + re.escape(CREATION_EXT.encode()) + rb'","valueDateTime":")[^"]*"')


def _first_code(cc) -> str:
    try:
        return cc["coding"][0].get("code", "")
    except (TypeError, KeyError, IndexError):
        return ""


def _first_system(cc) -> str:
    try:
        return cc["coding"][0].get("system", "")
    except (TypeError, KeyError, IndexError):
        return ""


def facets(res: dict) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in res.items():
        if k in _SERVER:
            continue
        split = _SPLIT.get(k)
        if split and isinstance(v, list):
            for item in v:
                out.setdefault(f"{k}|{split(item) if isinstance(item, dict) else ''}", []).append(item)
        else:
            out[k] = v
    m = res.get("meta") or {}
    for k, v in m.items():
        if k == "tag" and isinstance(v, list):
            for tag in v:
                out.setdefault(f"meta.tag|{tag.get('system', '') if isinstance(tag, dict) else ''}", []).append(tag)
        elif k not in ("versionId", "lastUpdated"):
            out[f"meta.{k}"] = v
    return out


def compose(rtype: str, rid: str, parts: dict[str, object]) -> dict:
    """The resource made of ``parts``; list elements in facet-key order, so the result is canonical."""
    res: dict = {"resourceType": rtype, "id": rid}
    meta: dict = {}
    lists: dict[str, list] = defaultdict(list)
    for f in sorted(parts):
        v = parts[f]
        head, sep, _ = f.partition("|")
        if head == "meta.tag":
            meta.setdefault("tag", []).extend(v)
        elif head.startswith("meta."):
            meta[head[5:]] = v
        elif sep:
            lists[head].extend(v)
        else:
            res[f] = v
    res.update(lists)
    if meta:
        res["meta"] = meta
    return res


def digest(value) -> str:
    return hashlib.blake2b(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


def without_set_once_values(raw: bytes) -> bytes:
    """An entity serialised by orjson, the values of its SET_ONCE elements blanked: a merge into a resource that has
    them changes nothing of them (a registry's monthly file dates every entity with its extraction)."""
    return _SET_ONCE_VALUE.sub(rb'\1"', raw)


def merge(rtype: str, rid: str, current: dict | None, base: dict[str, str] | None, incoming: dict,
          owns: Callable[[str], bool], others: Sequence[dict[str, str]] = ()) -> tuple[dict, dict[str, str]]:
    """(merged resource, new base for this source). See the module docstring for the rules. ``others``: the bases
    of the other sources of the same kind that describe the resource (the other regions)."""
    theirs = facets(incoming)
    ours = facets(current) if current else {}
    base = base or {}
    result = dict(ours)

    def takes(f: str) -> bool:
        """Whether this source's value of ``f`` replaces the stored one: rules 1 and 2, another region's kept."""
        if f not in ours:
            return True
        if f in SET_ONCE:
            return False
        if owns(f) and not others:
            return True
        held = digest(ours[f])
        if base.get(f) == held:  # still what this source wrote last time
            return True
        return owns(f) and not any(o.get(f) == held for o in others)

    for f, v in theirs.items():
        if takes(f):
            result[f] = v
    for f, h in base.items():
        if f not in theirs and f in ours and f not in SET_ONCE and digest(ours[f]) == h:
            del result[f]
    return compose(rtype, rid, result), {f: digest(v) for f, v in theirs.items()}


def _org_registry(f: str) -> bool:
    head, _, rest = f.partition("|")
    if head in ("identifier", "name", "_name", "address", "partOf", "active"):
        return True
    if head == "type":
        return any(t in rest for t in _ORG_REGISTRY_TYPES)
    return head == "extension" and rest in _ORG_REGISTRY_EXT


def _region_tag(f: str) -> bool:
    return f == "meta.tag|" + REGION_SYSTEM


def owner(kind: str, rtype: str, scope: str) -> Callable[[str], bool]:
    """Which elements of a ``rtype`` resource in ``scope`` a source of ``kind`` owns. The region tags belong to the
    regions: a registry's is set where the resource has none."""
    if kind == "region":
        if rtype == "Organization":
            return lambda f: _region_tag(f) or not _org_registry(f)
        if rtype == "Practitioner":
            return lambda f: _region_tag(f) or (f not in _PRACTITIONER_REGISTRY and not f.startswith("identifier|"))
        return lambda f: True
    if kind == "finess" and rtype == "Organization":
        return lambda f: _org_registry(f) and not _region_tag(f)
    if kind == "rpps":
        if rtype == "Practitioner":
            return lambda f: (f in _PRACTITIONER_REGISTRY or f.startswith("identifier|")) and not _region_tag(f)
        if rtype == "Organization" and scope == "site":  # a city practice: RPPS is its registry
            return lambda f: _org_registry(f) and not _region_tag(f)
        if rtype == "PractitionerRole":  # who, where, which profession; the rest is the professional's
            return lambda f: f in ("practitioner", "organization", "healthcareService", "code", "active")
        if rtype == "HealthcareService":
            return lambda f: f in ("providedBy", "active")
    return lambda f: False


def close(rtype: str, res: dict, date: str | None) -> dict:
    """The resource marked closed: inactive, and for an Organization an end to its period."""
    res = {k: v for k, v in res.items() if k != "meta"} | {"meta": res.get("meta", {})}
    if rtype == "Location":
        res["status"] = "inactive"
        return res
    res["active"] = False
    if rtype == "Organization" and date:
        exts = [e for e in res.get("extension", []) if e.get("url") != PERIOD_EXT]
        old = next((e for e in res.get("extension", []) if e.get("url") == PERIOD_EXT), None)
        p = dict(old.get("valuePeriod", {})) if old else {}
        p.setdefault("end", date)
        res["extension"] = [*exts, {"url": PERIOD_EXT, "valuePeriod": p}]
    return res
