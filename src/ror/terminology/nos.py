"""Readers of the public NOS files: ANS ``.tabs`` exports and FHIR JSON CodeSystem/ValueSet resources.

Both forms are turned into the same ``ParsedTable``, whatever the vintage: 2019 tabs are Latin-1 with
an obsolete ``mos.asipsante.fr`` URL, 2023 tabs are UTF-8, 2020-2023 FHIR exports carry ``dateValid``/
``dateMaj``/``dateFin`` properties, 2026 ones add ``status``/``deprecationDate``/``retirementDate``.
The canonical URL of a table is always rebuilt from its NOS name (``TRE_R213-ModePriseEnCharge`` ->
``https://mos.esante.gouv.fr/NOS/TRE_R213-ModePriseEnCharge/FHIR/TRE-R213-ModePriseEnCharge``), which is
the ``system`` every ROR resource uses, so a table keeps one identity across formats and years.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import orjson

from ror.errors import InputFileError

NOS_BASE = "https://mos.esante.gouv.fr/NOS/"
ALL_CODES = "*"  # value-set member code standing for every code of its code system (intensional include)
_NAME_RE = re.compile(r"^(TRE|JDV|ASS)[_-]([A-Z]\d+)[_-](.+)$")
_DATE14 = re.compile(r"^\d{14}$")


def canonical_name(name: str) -> str | None:
    """``JDV_J217_ModeExercice_ROR`` or ``JDV-J217-ModeExercice-ROR`` -> ``JDV_J217-ModeExercice-ROR``."""
    m = _NAME_RE.match(name.strip())
    if not m:
        return None
    return f"{m.group(1)}_{m.group(2)}-{m.group(3).replace('_', '-')}"


def canonical_url(name: str) -> str:
    return f"{NOS_BASE}{name}/FHIR/{name.replace('_', '-', 1)}"


@lru_cache(maxsize=8192)  # a table repeats a few dates over thousands of rows
def nos_date(value: str | None) -> str | None:
    """``20230127120000`` or ``2023-01-27T12:00:00+01:00`` -> ``2023-01-27T12:00:00`` (the NOS dates are local)."""
    if not value:
        return None
    value = value.strip()
    if _DATE14.match(value):
        return f"{value[0:4]}-{value[4:6]}-{value[6:8]}T{value[8:10]}:{value[10:12]}:{value[12:14]}"
    if re.match(r"^\d{4}-\d{2}-\d{2}", value):
        day = value[:10]
        time = value[11:19] if len(value) >= 19 and value[10] == "T" else "00:00:00"
        return f"{day}T{time}"
    return None


@dataclass
class Concept:
    code: str
    display: str
    short_label: str | None = None
    long_label: str | None = None
    date_valid: str | None = None
    date_end: str | None = None
    date_updated: str | None = None
    retired: bool = False


@dataclass
class Member:
    code: str
    display: str
    system: str | None  # None: to resolve from ``source_oid`` (tabs JDV rows name their TRE by OID)
    source_oid: str | None = None


@dataclass
class ParsedTable:
    kind: str  # CodeSystem | ValueSet
    name: str
    url: str
    oid: str | None
    title: str | None
    version: str
    version_date: str
    valid_from: str | None
    valid_to: str | None
    source: str
    concepts: list[Concept] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)


@dataclass
class Skipped:
    source: str
    reason: str


def _decode(raw: bytes) -> str:
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes anything")


def parse_tabs(raw: bytes, source: str) -> ParsedTable | Skipped:
    lines = [ln.rstrip("\r") for ln in _decode(raw).split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    if len(lines) < 3:
        return Skipped(source, "not an ANS tabs file (fewer than 3 lines)")
    head = lines[1].split(";")
    if len(head) < 8:
        return Skipped(source, "not an ANS tabs file (file header line has fewer than 8 fields)")
    oid, ftype, fname, descr, _url, d_valid, d_end, d_maj = (c.strip() for c in head[:8])
    if ftype not in ("TRE", "JDV"):
        return Skipped(source, f"{ftype or 'unknown'} table (only TRE code systems and JDV value sets are loaded)")
    name = canonical_name(fname.removesuffix(".tabs")) or canonical_name(Path(source).stem)
    if name is None:
        return Skipped(source, f"cannot read a NOS name from '{fname}'")
    version_date = nos_date(d_maj) or nos_date(d_valid)
    if version_date is None:
        return Skipped(source, "no publication date (Date MàJ) in the file header")
    cols = [c.strip().strip("<>").lower() for c in lines[2].split(";")]
    table = ParsedTable("CodeSystem" if ftype == "TRE" else "ValueSet", name, canonical_url(name), oid or None,
                        descr or None, d_maj or d_valid, version_date, nos_date(d_valid), nos_date(d_end), source)

    at: dict[str, list[int]] = {}  # column prefix -> matching column indexes (TRE_R13 has 39,000 rows)

    def col(row: list[str], prefix: str) -> str | None:
        where = at.get(prefix)
        if where is None:
            where = at[prefix] = [i for i, c in enumerate(cols) if c.startswith(prefix)]
        for i in where:
            if i < len(row):
                return row[i].strip() or None
        return None

    for ln in lines[3:]:
        row = ln.split(";")
        if len(row) < 3 or not row[1].strip():
            continue
        code = row[1].strip()
        label = col(row, "libellé adapté") or col(row, "libellé") or col(row, "libellã") or row[2].strip()
        if ftype == "JDV":
            table.members.append(Member(code, label, None, row[0].strip() or None))
        else:
            end = nos_date(col(row, "date fin"))
            table.concepts.append(Concept(code, label, col(row, "libellé court"), col(row, "libellé long"),
                                          nos_date(col(row, "date valid")), end, nos_date(col(row, "date m")),
                                          end is not None))
    return table


def _prop(concept: dict, code: str):
    for p in concept.get("property", []):
        if p.get("code") == code:
            for k, v in p.items():
                if k.startswith("value"):
                    return v
    return None


def _designation(concept: dict, *uses: str) -> str | None:
    for d in concept.get("designation", []):
        if (d.get("use") or {}).get("code") in uses:
            return d.get("value")
    return None


def parse_fhir(res: dict, source: str) -> ParsedTable | Skipped:
    rtype = res.get("resourceType")
    if rtype not in ("CodeSystem", "ValueSet"):
        return Skipped(source, f"{rtype or 'not a FHIR resource'} (only CodeSystem and ValueSet are loaded)")
    url = res.get("url")
    if not isinstance(url, str):
        return Skipped(source, f"{rtype} without url")
    name = canonical_name(str(res.get("name") or res.get("id") or ""))
    if url.startswith(NOS_BASE) and name:
        url = canonical_url(name)
    name = name or str(res.get("name") or res.get("id") or url.rsplit("/", 1)[-1])
    version = str(res.get("version") or "")
    last_updated = (res.get("meta") or {}).get("lastUpdated")
    version_date = nos_date(version) or nos_date(res.get("date")) or nos_date(last_updated)
    if not version or version_date is None:
        return Skipped(source, f"{rtype} {url} has no version or date")
    if nos_date(version) is None and nos_date(res.get("date")):
        version_date = nos_date(res.get("date"))
    oid = None
    for ident in res.get("identifier") or []:
        value = str(ident.get("value", ""))
        if value.startswith("urn:oid:"):
            oid = value[len("urn:oid:"):]
    period = next((e.get("valuePeriod") for e in res.get("extension", [])
                   if str(e.get("url", "")).endswith("resource-effectivePeriod")), None) or {}
    table = ParsedTable(rtype, name, url, oid, res.get("description") or res.get("title"), version, version_date,
                        nos_date(period.get("start")), nos_date(period.get("end")), source)
    if rtype == "CodeSystem":
        def walk(concepts: list[dict]) -> None:
            for c in concepts:
                status = _prop(c, "status")
                end = nos_date(_prop(c, "dateFin")) or nos_date(_prop(c, "deprecationDate")) \
                    or nos_date(_prop(c, "retirementDate"))
                retired = end is not None or status in ("deprecated", "retired", "inactive")
                table.concepts.append(Concept(
                    str(c["code"]), _designation(c, "LibelleAdapte") or str(c.get("display", c["code"])),
                    _designation(c, "LibelleCourt") or (c.get("designation") or [{}])[0].get("value"),
                    _designation(c, "LibelleLong"), nos_date(_prop(c, "dateValid")), end,
                    nos_date(_prop(c, "dateMaj")), retired))
                walk(c.get("concept", []))
        walk(res.get("concept", []))
    else:
        for inc in (res.get("compose") or {}).get("include", []):
            system = inc.get("system")
            if not system:
                continue
            sys_name = canonical_name(system.rsplit("/", 1)[-1])
            if system.startswith(NOS_BASE) and sys_name:
                system = canonical_url(sys_name)
            for c in inc.get("concept", []):
                table.members.append(Member(str(c["code"]), str(c.get("display", c["code"])), system))
            if not inc.get("concept") and _active_codes_filter(inc.get("filter")):
                # Intensional include (JDV_J124-Commune: every current TRE_R13 code): one member standing for
                # the whole code system, judged against the code system at validation time (``ALL_CODES``).
                table.members.append(Member(ALL_CODES, "every code of the code system that is valid at the date",
                                            system))
        for c in (res.get("expansion") or {}).get("contains", []):
            if c.get("system") and c.get("code"):
                table.members.append(Member(str(c["code"]), str(c.get("display", c["code"])), c["system"]))
    return table


def _active_codes_filter(filters) -> bool:
    """True for no filter, or only the NOS filter "no end date" (``dateFin exists false``): the whole code system,
    whose codes are then checked for validity at the resource's date."""
    for f in filters or []:
        if not (isinstance(f, dict) and f.get("property") == "dateFin" and f.get("op") == "exists"
                and str(f.get("value")).lower() == "false"):
            return False
    return True


def parse_file(name: str, raw: bytes) -> Iterator[ParsedTable | Skipped]:
    """Every table of one file (.tabs, .json, .zip), told by its name."""
    lower = name.lower()
    if lower.endswith(".tabs"):
        yield parse_tabs(raw, name)
    elif lower.endswith(".json"):
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            yield Skipped(name, f"invalid JSON: {e}")
            return
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            for i, entry in enumerate(doc.get("entry") or []):
                yield parse_fhir(entry.get("resource") or {}, f"{name}#entry[{i}]")
        elif isinstance(doc, dict):
            yield parse_fhir(doc, name)
        else:
            yield Skipped(name, "JSON that is not a resource")
    elif lower.endswith(".zip"):
        yield from read_zip(raw, name)


def read_zip(raw: bytes, source: str) -> Iterator[ParsedTable | Skipped]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as e:
        raise InputFileError(f"{source} is not a readable zip: {e}") from None
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if not info.is_dir():
                yield from parse_file(f"{source}!{info.filename}", zf.read(info))


def read_path(path: Path) -> Iterator[ParsedTable | Skipped]:
    """Every NOS table in a file (.tabs, .json, .zip) or a folder (recursively, in name order)."""
    if not path.exists():
        raise InputFileError(f"{path} does not exist")
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.suffix.lower() in (".tabs", ".json", ".zip"):
                yield from parse_file(str(p), p.read_bytes())
        return
    if path.suffix.lower() not in (".tabs", ".json", ".zip"):
        raise InputFileError(f"{path}: expected a .zip, a .tabs or a .json file, or a folder of them")
    yield from parse_file(str(path), path.read_bytes())
