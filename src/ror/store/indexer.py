"""Index rows of a resource, computed at write time from the search-parameter registry."""

from __future__ import annotations

import re
from functools import lru_cache

import orjson
from unidecode import unidecode

from ror.fhirdates import STAMP_MAX, STAMP_MIN, parse_range
from ror.geo import load_communes
from ror.profiles.access import (
    ALL,
    MASK_BY_CHARACTERISTIC,
    MASK_BY_GROUP,
    capacity_mask,
    characteristic_value_mask,
    is_sensitive,
    mask_rule,
)
from ror.profiles.paths import Program, chain_steps, expression_branches
from ror.profiles.searchparams import ROR, SPECIAL, Registry, registry
from ror.settings import get_settings

SENSITIVE_KEY = "HealthcareService.#sensitive"  # internal: drives what profiles 0, 2, 3, 5 may see
_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")
# Elements holding text a person wrote or reads, for _content search.
_CONTENT_KEYS = "name|alias|display|text|description|comment|valueString|city|line|family|given"
# Possessive (no backtracking): a JSON string or array of strings matches in one way only, so giving
# up backtracking changes no match, and halves the cost of the scan.
_JSON_STRING = r'"((?:[^"\\]++|\\.)*+)"'
_CONTENT_RE = re.compile(rf'"(?:{_CONTENT_KEYS})":(?:{_JSON_STRING}|\[((?:"(?:[^"\\]++|\\.)*+",?)*+)\])')
_JSON_STRING_RE = re.compile(_JSON_STRING)


@lru_cache(maxsize=1)
def _fold_table() -> tuple[str, ...]:
    """Latin letters with diacritics, ligatures and typographic signs -> ASCII (from Unidecode, once).
    Indexed by code point (ASCII maps to itself); ``str.translate`` leaves code points past its end
    as they are. A tuple rather than a dict: no failed lookup (an exception) for each ASCII letter."""
    return tuple(chr(cp) if cp < 0x80 else unidecode(chr(cp)) for cp in range(0x2070))


def fold(s: str) -> str:
    """Case-, accent- and spacing-insensitive form used by string search."""
    if not s.isascii():
        s = s.translate(_fold_table())
    # str.split() and re's \s agree on what is a space (Py_UNICODE_ISSPACE): runs of spaces -> one, trimmed
    return " ".join(s.lower().split())


# Indexed texts repeat (labels of codes, cities, names): fold each distinct one once.
_fold_cached = lru_cache(maxsize=1 << 16)(fold)


def _tokens(value, hint) -> list[tuple[str | None, str]]:
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, (str, int, float)):
        return [(None, str(value))]
    if not isinstance(value, dict):
        return []
    if "coding" in value:
        return [(c.get("system"), c["code"]) for c in value["coding"] if isinstance(c, dict) and c.get("code")]
    if "code" in value and isinstance(value["code"], str):
        return [(value.get("system"), value["code"])]
    if isinstance(value.get("value"), str):  # Identifier, ContactPoint
        return [(value.get("system"), value["value"])]
    return []


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    parts = _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
    out: list[str] = []
    for key in parts:
        v = value.get(key)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(x for x in v if isinstance(x, str))
    return out


def parse_reference(ref: str) -> tuple[str, str] | None:
    """'Organization/1', 'https://host/fhir/Organization/1/_history/2' -> ('Organization', '1')."""
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return parts[-2], parts[-1]
    return None


def _references(value) -> list[tuple[str, str]]:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        ref = parse_reference(value["reference"])
        return [ref] if ref else []
    return []


def _dates(value, tz: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        rng = parse_range(value, tz)
        return [rng] if rng else []
    if isinstance(value, dict) and ("start" in value or "end" in value):
        start = parse_range(value["start"], tz) if isinstance(value.get("start"), str) else None
        end = parse_range(value["end"], tz) if isinstance(value.get("end"), str) else None
        return [(start[0] if start else STAMP_MIN, end[1] if end else STAMP_MAX)]
    return []


def _numbers(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float)):
        return [float(value["value"])]
    return []


def _quantities(value) -> list[tuple[float, str | None, str | None]]:
    if isinstance(value, dict) and isinstance(value.get("value"), (int, float)) \
            and not isinstance(value.get("value"), bool):
        return [(float(value["value"]), value.get("system"), value.get("code") or value.get("unit"))]
    return []


def location_point(resource: dict) -> tuple[float, float] | None:
    """Where a place is: its position, else the centre of its commune (ror-commune-cog)."""
    pos = resource.get("position")
    if isinstance(pos, dict) and isinstance(pos.get("latitude"), (int, float)) \
            and isinstance(pos.get("longitude"), (int, float)):
        return float(pos["latitude"]), float(pos["longitude"])
    for ext in resource.get("extension", ()):
        if isinstance(ext, dict) and ext.get("url") == ROR + "ror-commune-cog":
            for _system, code in _tokens(ext.get("valueCodeableConcept"), None):
                commune = load_communes().get(code)
                if commune and commune.latitude is not None:
                    return commune.latitude, commune.longitude
    return None


_CONTACT_EXT = ROR + "ror-healthcareservice-contact"


def _content(resource: dict) -> str:
    """The human-readable text of a resource (names, labels, descriptions, comments, addresses), for
    ``_content``; contacts and telecoms are left out, since their visibility depends on the access
    profile. A regular expression over the serialised JSON: 30x faster than walking the dict."""
    public = resource
    if "contact" in resource or "telecom" in resource:
        public = {k: v for k, v in resource.items() if k not in ("contact", "telecom")}
    ext = public.get("extension")
    if isinstance(ext, list) and any(isinstance(e, dict) and e.get("url") == _CONTACT_EXT for e in ext):
        if public is resource:
            public = dict(resource)
        public["extension"] = [e for e in ext if not (isinstance(e, dict) and e.get("url") == _CONTACT_EXT)]
    raw = orjson.dumps(public).decode()
    words: list[str] = []
    for single, many in _CONTENT_RE.findall(raw):
        if single:
            words.append(single)
        elif many:
            words += _JSON_STRING_RE.findall(many)
    # fold works letter by letter, then trims and merges spaces: fold(" ".join(words)) is the folded
    # words, the empty ones left out, joined by a space
    folded = [_fold_cached(orjson.loads(f'"{s}"') if "\\" in s else s) for s in words]
    return " ".join(filter(None, folded))[:4000]


def _rows_for(ptype: str, key: str, value, hint, tz: str) -> tuple[str, list[tuple]] | None:
    """(table, rows without grp/vis) for one extracted value."""
    if ptype in ("token", "uri"):
        return "token", [(key, s, c[:128]) for s, c in _tokens(value, hint)]
    if ptype == "string":
        return "string", [(key, fold(s)[:200], s[:400]) for s in _strings(value) if s.strip()]
    if ptype == "reference":
        return "reference", [(key, t, i[:64]) for t, i in _references(value)]
    if ptype == "date":
        return "date", [(key, lo, hi) for lo, hi in _dates(value, tz)]
    if ptype == "number":
        return "number", [(key, n) for n in _numbers(value)]
    if ptype == "quantity":
        return "quantity", [(key, *q) for q in _quantities(value)]
    return None


def restamp(rows: dict[str, list[tuple]], rtype: str, stamp: str) -> dict[str, list[tuple]] | None:
    """``rows``, indexed before the write decided ``meta.lastUpdated``, with the ``_lastUpdated`` row of
    the write's ``stamp`` (the only row the server-managed meta changes); None if there is none. A stamp is
    an instant to the millisecond: its range is the stamp itself, to the stamp itself."""
    key = f"{rtype}._lastUpdated"
    dates = rows["date"]
    if not any(r[0] == key for r in dates):
        return None
    if all(r[1] == r[2] == stamp for r in dates if r[0] == key):
        return rows
    return {**rows, "date": [(k, stamp, stamp, *rest) if k == key else (k, a, b, *rest) for k, a, b, *rest in dates]}


# -- rows of extracted values, for each parameter type: (param, *values, grp, vis) ---------------------
# Each is ``_rows_for`` (above) over the values, with the grp and vis columns, written out flat.

def _token_rows(key: str, values: list, grp: int, vis: int, tz: str) -> list[tuple]:
    out: list[tuple] = []
    for value, _hint in values:
        if isinstance(value, bool):
            out.append((key, None, "true" if value else "false", grp, vis))
        elif isinstance(value, (str, int, float)):
            out.append((key, None, str(value)[:128], grp, vis))
        elif not isinstance(value, dict):
            continue
        elif "coding" in value:
            out += [(key, c.get("system"), c["code"][:128], grp, vis) for c in value["coding"]
                    if isinstance(c, dict) and c.get("code")]
        elif isinstance(code := value.get("code"), str):
            out.append((key, value.get("system"), code[:128], grp, vis))
        elif isinstance(v := value.get("value"), str):  # Identifier, ContactPoint
            out.append((key, value.get("system"), v[:128], grp, vis))
    return out


def _string_rows(key: str, values: list, grp: int, vis: int, tz: str) -> list[tuple]:
    out: list[tuple] = []
    for value, _hint in values:
        if isinstance(value, str):
            if value.strip():
                out.append((key, _fold_cached(value)[:200], value[:400], grp, vis))
        else:
            out += [(key, _fold_cached(s)[:200], s[:400], grp, vis) for s in _strings(value) if s.strip()]
    return out


def _reference_rows(key: str, values: list, grp: int, vis: int, tz: str) -> list[tuple]:
    out: list[tuple] = []
    for value, _hint in values:
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str):
                ref = parse_reference(ref)
                if ref:
                    out.append((key, ref[0], ref[1][:64], grp, vis))
    return out


def _date_rows(key: str, values: list, grp: int, vis: int, tz: str) -> list[tuple]:
    return [(key, lo, hi, grp, vis) for value, _hint in values for lo, hi in _dates(value, tz)]


def _number_rows(key: str, values: list, grp: int, vis: int, tz: str) -> list[tuple]:
    return [(key, n, grp, vis) for value, _hint in values for n in _numbers(value)]


def _quantity_rows(key: str, values: list, grp: int, vis: int, tz: str) -> list[tuple]:
    return [(key, *q, grp, vis) for value, _hint in values for q in _quantities(value)]


_ROW_MAKERS = {"token": ("token", _token_rows), "uri": ("token", _token_rows), "string": ("string", _string_rows),
               "reference": ("reference", _reference_rows), "date": ("date", _date_rows),
               "number": ("number", _number_rows), "quantity": ("quantity", _quantity_rows)}


class _TypePlan:
    """What ``index_rows`` does for one resource type, worked out once from the registry: the index
    parameters in registry order, the paths of those read on the resource as one :class:`Program`, and
    per record extension the paths read inside each of its instances as another."""

    def __init__(self, reg: Registry, rtype: str):
        root_paths: list[list[tuple]] = []
        group_paths: dict[str, list[list[tuple]]] = {}
        # (key, table, make, mask, group url or None, slots, the slot if only one)
        self.params: list[tuple] = []
        for p in reg.for_type(rtype):
            if p.type == SPECIAL or p.type not in _ROW_MAKERS:
                continue  # _rows_for gives nothing for an unknown type
            table, make = _ROW_MAKERS[p.type]
            if p.group is not None:
                paths = group_paths.setdefault(p.group, [])
                slots = (len(paths),)
                paths.append(chain_steps(p.group_path, root=None))
            else:
                branches = expression_branches(p.expression, rtype)
                slots = tuple(range(len(root_paths), len(root_paths) + len(branches)))
                root_paths.extend(branches)
            self.params.append((p.key, table, make, mask_rule(rtype, p.code, p.group), p.group, slots,
                                slots[0] if len(slots) == 1 else None))
        self.root = Program(root_paths)
        self.groups = {url: Program(paths) for url, paths in group_paths.items()}


_plans: dict[str, _TypePlan] = {}
_plans_registry: list[Registry] = []


def _plan(rtype: str) -> _TypePlan:
    reg = registry()
    if not _plans_registry or _plans_registry[0] is not reg:
        _plans.clear()
        _plans_registry[:] = [reg]
    plan = _plans.get(rtype)
    if plan is None:
        plan = _plans[rtype] = _TypePlan(reg, rtype)
    return plan


def _values(out: list, slots: tuple[int, ...]) -> list:
    values: list = []
    for s in slots:
        if out[s]:
            values.extend(out[s])
    return values


def index_rows(resource: dict) -> dict[str, list[tuple]]:
    """Rows per index table for one resource: ``(param, *values, grp, vis)``."""
    tz = get_settings().local_timezone
    rows: dict[str, list[tuple]] = {k: [] for k in ("token", "string", "reference", "date", "number",
                                                    "quantity", "geo", "text")}
    rtype = resource["resourceType"]
    plan = _plan(rtype)
    extensions = [e for e in resource.get("extension", ()) if isinstance(e, dict)]
    out = plan.root.run(resource)
    # Per record extension: its instances, numbered from 1, each with what its paths give.
    records: dict[str, list[tuple[int, dict, list]]] = {}
    if plan.groups:
        by_url: dict[str, list[dict]] = {url: [] for url in plan.groups}
        for e in extensions:
            url = e.get("url")
            if isinstance(url, str) and url in by_url:
                by_url[url].append(e)
        for url, instances in by_url.items():
            program = plan.groups[url]
            records[url] = [[i, inst, program.run(inst), None] for i, inst in enumerate(instances, 1)]
    for key, table, make, mask, group, slots, slot in plan.params:
        if group is None:
            values = out[slot] if slot is not None else _values(out, slots)
            if not values:
                continue
            if mask == MASK_BY_CHARACTERISTIC:
                made = []
                for item in values:
                    made += make(key, (item,), 0, characteristic_value_mask(resource, item[0]), tz)
            else:
                made = make(key, values, 0, mask, tz)
        else:
            made = []
            for record in records[group]:
                grp, inst, got, vis = record
                values = got[slot] if slot is not None else _values(got, slots)
                if not values:
                    continue
                if mask != MASK_BY_GROUP:
                    vis = mask
                elif vis is None:  # the record's mask, once
                    vis = record[3] = capacity_mask(inst)
                made += make(key, values, grp, vis, tz)
        if made:
            rows[table].extend(dict.fromkeys(made) if len(made) > 1 else made)
    if rtype == "HealthcareService":
        rows["token"].append((SENSITIVE_KEY, None, "true" if is_sensitive(resource) else "false", 0, ALL))
    if rtype == "Location":
        point = location_point(resource)
        if point:
            rows["geo"].append(("Location.near", *point, 0, ALL))
    rows["text"].append((f"{rtype}._content", _content(resource), 0, ALL))
    return rows
