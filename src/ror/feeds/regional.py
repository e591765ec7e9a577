"""Regional extracts: a region's offer as FHIR (Bundle or NDJSON, as ``$export`` writes) or as the IHE CSD
XML of the ROR exposure model (v2.4 / v3.0, ``urn:ihe:iti:csd:2013``).

Regional ids are technical: each resource is matched nationally by its identifiers (FINESS, idNatStruct,
SIRET, idNat_PS, offer id…) and else by ``urn:ror:feed:region:<code>:<type>|<regional id>``. A first pass
over the file maps every regional id to its strongest key, so that a reference resolves to the same
national resource whatever the order of the file. The region code is set as ``meta.tag`` (TRE_R30).

XML is parsed with defusedxml and any document type declaration is refused: a regional file has no
use for one, and it is how external entities (XXE) and entity-expansion bombs get in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import ijson
import orjson

from ror.errors import InputFileError
from ror.feeds.fhirmap import ADELI_RANG, FINESS, IDNATPS, IDNATST, OI, RPPS_RANG, SIRENE, org_identifier, region_tag
from ror.feeds.fileset import FileSet
from ror.feeds.model import (
    Entity,
    Feed,
    Known,
    Problem,
    Record,
    clip,
    concept,
    file_head,
    key,
    luhn_ok,
    maybe_mojibake,
    nos_code,
    read_line,
    ref,
    repair_strings,
    repaired_note,
)
from ror.fhir.files import is_ndjson
from ror.profiles.identifiers import check_id_nat_ps
from ror.profiles.searchparams import RESOURCE_TYPES
from ror.store.repository import REGION_SYSTEM

IMPORTED = ("Organization", "Location", "HealthcareService", "Practitioner", "PractitionerRole")
# Each type after the types it references (an offer: its organization and places; a role: its practitioner and offer).
WRITE_ORDER = ("Organization", "Location", "Practitioner", "HealthcareService", "PractitionerRole")
_ORG_ORDER = (FINESS, IDNATST, SIRENE, RPPS_RANG, ADELI_RANG, OI)
_REF = re.compile(r"^(?:.*/)?(Organization|Location|HealthcareService|Practitioner|PractitionerRole)/([^/]+)$")
# OIDs of the code systems and identifier authorities used in the CSD extracts.
OID_TABLES = {
    "1.2.250.1.213.1.6.1.8": "TRE_R66-CategorieEtablissement",
    "1.2.250.1.213.1.6.1.44": "TRE_R72-FinessStatutJuridique",
    "1.2.250.1.213.3.3.12": "TRE_R211-ActiviteOperationnelle", "1.2.250.1.213.3.3.17": "TRE_R227-ChampActivite",
    "1.2.250.1.213.3.3.13": "TRE_R213-ModePriseEnCharge", "1.2.250.1.213.3.3.8": "TRE_R207-TypeOrganisationInterne",
    "1.2.250.1.71.1.2.7": "TRE_G15-ProfessionSante", "1.2.250.1.213.3.3.1": "TRE_R200-CanalCommunication",
    # places, capacities and opening hours (NOS .tabs OIDs)
    "1.2.250.1.213.3.3.50": "TRE_R252-TypeHoraire", "1.2.250.1.213.3.3.212": "TRE_R329-NatureCapacite",
    "1.2.250.1.213.3.3.213": "TRE_R330-TypeStatutCapacite", "1.2.250.1.213.3.3.214": "TRE_R331-TemporaliteCapacite",
    "1.2.250.1.213.3.3.215": "TRE_R332-GenreCapacite", "1.2.250.1.213.3.3.216": "TRE_R333-TypeFermetureCapacite",
    "1.2.250.1.213.3.3.217": "TRE_R334-TypeLitSupplementaire", "1.2.250.1.213.3.3.218": "TRE_R335-TypeSourceCapacite",
    "1.2.250.1.213.3.3.219": "TRE_R336-TypeCrise", "1.2.250.1.213.3.3.220": "TRE_R337-AffectationTemporaire",
    "1.2.250.1.213.3.3.35": "TRE_R242-TypeHabitation", "1.2.250.1.213.3.3.4": "TRE_R203-StatutLieu",
    "1.2.250.1.213.3.3.227": "TRE_R343-FonctionLieu", "1.2.250.1.213.2.23": "TRE_R13-CommuneOM"}


class RegionalFeed(Feed):
    kind = "region"
    closable = frozenset(IMPORTED)

    def __init__(self, region: str):
        super().__init__()
        if nos_code("TRE_R30-RegionOM", region) is None or nos_code("TRE_R30-RegionOM", region).retired:
            raise InputFileError(f"'{region}' is not a current region code (NOS TRE_R30, e.g. 84, 93, 11)")
        self.region = region
        self.source = f"region:{region}"

    def technical(self, rtype: str, rid: str) -> str:
        return key(f"urn:ror:feed:region:{self.region}:{rtype}", rid)

    def read(self, path: Path | FileSet) -> Iterator[Record | Problem]:
        files = list(path.files) if isinstance(path, FileSet) else [path]
        heads = [file_head(p)[:1] for p in files]
        for p, head in zip(files, heads, strict=True):
            if head not in (b"<", b"{"):
                raise InputFileError(f"{p}: not a regional extract (expected a FHIR Bundle, NDJSON or CSD XML)")
        if heads == [b"<"]:
            from ror.feeds.csd import read_csd
            yield from read_csd(self, files[0])
        elif b"<" in heads:
            raise InputFileError(f"{path}: a CSD XML extract is one document: import it alone, not with other files")
        else:
            yield from self._fhir(files)

    # FHIR

    def _resources(self, path: Path) -> Iterator[tuple[int, object]]:
        """(line or entry number, parsed JSON or the Problem of a line that is not JSON) — NDJSON line by line, a
        Bundle entry by entry (ijson)."""
        if is_ndjson(path):
            for n, line, _ in _lines(path):
                yield n, _parsed(n, line)[0]
            return
        if "Bundle: 'line' is the entry number" not in self.notes:
            self.notes.append("Bundle: 'line' is the entry number")
        try:
            with path.open("rb") as f:
                for n, entry in enumerate(ijson.items(f, "entry.item", use_float=True), 1):
                    yield n, entry.get("resource") if isinstance(entry, dict) else None
        except ijson.JSONError as e:
            self.complete = False
            raise InputFileError(f"{path}: invalid JSON ({e})") from None

    def _keys(self, res: dict) -> list[str]:
        """Identity keys: for an Organization only the national structure identifiers (any other system,
        e.g. a professional's id on a cabinet, may be shared by the EJ and its EGs); then the regional id."""
        rtype = res["resourceType"]
        ids = [i for i in res.get("identifier") or () if isinstance(i, dict) and i.get("value") and i.get("system")]
        if rtype == "Organization":
            order = {s: i for i, s in enumerate(_ORG_ORDER)}
            ids = sorted((i for i in ids if i["system"] in order), key=lambda i: (order[i["system"]], len(i["value"])))
        return [*(key(i["system"], i["value"]) for i in ids), self.technical(rtype, res["id"])]

    def _fhir(self, paths: list[Path]) -> Iterator[Record | Problem]:
        """One file, or the files of one extract: pass 1 maps the regional ids of ALL the files, so that a
        reference resolves whatever the order of the files; problems of a set name their file. Pass 2 reads the
        files in ``WRITE_ORDER`` of their first resource's type: a record whose reference names a resource not
        written yet is held back, in memory, until every batch is in, and validated again (``Run._deferred``). In
        the files' alphabetical order every offer waited for the Organization file: 1.1 GB of memory for a region of
        49,000 records."""
        strongest: dict[tuple[str, str], str] = {}
        first_type: dict[Path, str] = {}
        for path in paths:  # pass 1: identities
            for _, res in self._resources(path):
                if isinstance(res, dict) and res.get("resourceType") in IMPORTED and isinstance(res.get("id"), str):
                    strongest[(res["resourceType"], res["id"])] = self._keys(res)[0]
                    first_type.setdefault(path, res["resourceType"])
        if len(paths) > 1:
            self.notes.append(f"{len(paths)} files read as one extract; problems name their file (file: field)")
        rank = {rtype: i for i, rtype in enumerate(WRITE_ORDER)}
        for path in sorted(paths, key=lambda p: rank.get(first_type.get(p), len(rank))):  # pass 2: resources
            for item in self._fhir_file(path, strongest):
                if len(paths) > 1 and not isinstance(item, Known):
                    for p in (item.warnings if isinstance(item, Record) else [item]):
                        p.field = f"{path.name}: {p.field}"
                yield item

    def _fhir_file(self, path: Path, strongest: dict) -> Iterator[Record | Known | Problem]:
        if not is_ndjson(path):
            for n, res in self._resources(path):
                yield from self._resource(n, res, strongest)
            return
        repaired: list[int] = []
        for n, line, span in _lines(path):
            named = None if maybe_mojibake(line) else _named(line, strongest)
            if named is None:  # double-encoded (repaired, and noted, each time), or references not found in the text
                res, fixed = _parsed(n, line)
                if fixed:
                    repaired.append(n)
                yield from self._resource(n, res, strongest)
                continue
            said = (line, orjson.dumps(sorted([t, i, k or ""] for (t, i), k in named.items())))
            yield from self.mapped(n, said, lambda n=n, line=line, named=named: self._line(n, line, named),
                                   ("_line_at", (str(path), n, span, named)))
        if repaired:
            self.notes.append(f"{path.name}: {repaired_note(repaired)}")

    def _line(self, n: int, line: bytes, strongest: dict) -> Iterator[Record | Problem]:
        """An NDJSON line without double-encoded text, mapped."""
        yield from self._resource(n, _parsed(n, line)[0], strongest)

    def _line_at(self, path: str, n: int, span: tuple[int, int], strongest: dict) -> Iterator[Record | Problem]:
        yield from self._line(n, read_line(path, span).strip(), strongest)

    def _resource(self, n: int, res: object, strongest: dict) -> Iterator[Record | Problem]:
        if isinstance(res, Problem):
            yield res
            return
        text = orjson.dumps(res).decode() if res is not None else ""
        if not isinstance(res, dict):
            yield Problem(n, "resource", "not a JSON object", record=text)
            return
        rtype = res.get("resourceType")
        if rtype not in IMPORTED:
            served = "served but not part of a regional offer" if rtype in RESOURCE_TYPES else "not served"
            yield Problem(n, "resourceType", f"'{rtype}' is {served}: regional extracts bring "
                          f"{', '.join(IMPORTED)}", record=text)
            return
        if not isinstance(res.get("id"), str) or not res["id"]:
            yield Problem(n, "id", f"{rtype} without an id: references to it could not be followed", record=text)
            return
        keys = self._keys(res)
        body = {k: v for k, v in res.items() if k not in ("id", "text")}
        m = {k: v for k, v in (res.get("meta") or {}).items() if k not in ("versionId", "lastUpdated", "tag")}
        tags = [t for t in (res.get("meta") or {}).get("tag", ()) if t.get("system") != REGION_SYSTEM]
        m["tag"] = tags + region_tag(self.region)
        body["meta"] = m
        warnings: list[Problem] = []
        self._rewrite(body, strongest, n, text, warnings)
        yield Record(n, [Entity(rtype, keys, body, rtype)], warnings)

    def _rewrite(self, node, strongest: dict, n: int, text: str, warnings: list[Problem]) -> None:
        """Regional references -> placeholders on the referenced resource's strongest key."""
        if isinstance(node, dict):
            r = node.get("reference")
            if isinstance(r, str):
                m = _REF.match(r)
                if m:
                    rtype, rid = m.groups()
                    k = strongest.get((rtype, rid))
                    if k is None:
                        warnings.append(Problem(n, "reference", f"{r} is not in this extract: it is kept pointing "
                                                f"to the region's id", "warning", clip(text)))
                        k = self.technical(rtype, rid)
                    node.update(ref(rtype, k))
            for v in node.values():
                if isinstance(v, (dict, list)):
                    self._rewrite(v, strongest, n, text, warnings)
        elif isinstance(node, list):
            for v in node:
                self._rewrite(v, strongest, n, text, warnings)


def _lines(path: Path) -> Iterator[tuple[int, bytes, tuple[int, int]]]:
    """The lines of an NDJSON file that are not blank, stripped (a line cut short would end in its newline:
    "unexpected control character"), with where each is (offset, length: ``read_line``)."""
    offset = 0
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if line:
                yield n, line, (offset, len(raw))
            offset += len(raw)


def _parsed(n: int, line: bytes) -> tuple[object, bool]:
    """An NDJSON line parsed (a Problem if it is not JSON), double-encoded text repaired, and whether some was."""
    try:
        res = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return Problem(n, "(line)", f"invalid JSON: {e}", record=line.decode("utf-8", "replace")), False
    if maybe_mojibake(line):
        return repair_strings(res)
    return res, False


# Each "reference" key of a line, with its value if that is a plain string (else b"": ``_named``).
_REFERENCE_TEXT = re.compile(rb'"reference"(?:\s*:\s*"([^"\\]*)")?')


def _named(line: bytes, strongest: dict) -> dict[tuple[str, str], str | None] | None:
    """What the references of an NDJSON line name (``_REF``: type and regional id -> its strongest key, None if not
    in the extract), found in its text; None when some are not found so (escaped text, a reference not a string):
    the line is then not remembered (``Feed.mapped``), since what it says depends on those keys too."""
    named = {}
    for value in _REFERENCE_TEXT.findall(line):
        if not value:
            return None
        try:
            m = _REF.match(value.decode())
        except UnicodeDecodeError:
            return None
        if m:
            named[m.groups()] = strongest.get(m.groups())
    return named


# --- shared with the CSD reader -------------------------------------------------------------------

CSD_FINESS_AUTHORITY = "1.2.250.1.213.3.2"  # FINESS (PLATINES schematron validation_identifiants.sch)


def identifier_of(authority: str, code: str) -> dict | None:
    """An Organization identifier from a CSD ``otherID``: FINESS-based idNatStruct, SIREN/SIRET by shape.

    The professionals' authority (idNat_PS OID) on a *structure* carries the cabinet of a professional:
    an idNat_PS ('8' + RPPS, '0' + ADELI) is kept as such, but a value of an ADELI number and its rang
    (9 + 2 digits: the PLATINES sample's nurse cabinet '83602013100', ADELI 836020131 — Var, nurse — rang
    00) or of an RPPS number and its rang is the cabinet's own identifier (TRE_G07 0 / 4, as the RPPS
    feed maps the ADELI / RPPS cabinets), not an idNat_PS."""
    if not code:
        return None
    if authority == IDNATST.removeprefix("urn:oid:"):
        return org_identifier(IDNATST, code)
    if authority == CSD_FINESS_AUTHORITY:  # before the SIREN shape test: a FINESS number passes Luhn too
        return org_identifier(FINESS, code)
    if code.isdigit() and len(code) in (9, 14) and luhn_ok(code):
        return org_identifier(SIRENE, code)
    if authority == IDNATPS.removeprefix("urn:oid:") and check_id_nat_ps(code) is not None:
        if re.fullmatch(r"\d{11}", code):
            return org_identifier(ADELI_RANG, code)
        if re.fullmatch(r"\d{12,15}", code) and luhn_ok(code[:11]):
            return org_identifier(RPPS_RANG, code)
    return {"system": f"urn:oid:{authority}", "value": code} if authority else None


def coded(scheme: str, code: str) -> dict | None:
    table = OID_TABLES.get(scheme)
    if table is None:
        return {"coding": [{"system": f"urn:oid:{scheme}", "code": code}]} if scheme and code else None
    return concept(table, code) if nos_code(table, code) or table not in _VALIDATED else None


_VALIDATED = {"TRE_R66-CategorieEtablissement", "TRE_R72-FinessStatutJuridique", "TRE_G15-ProfessionSante",
              "TRE_R227-ChampActivite", "TRE_R200-CanalCommunication", "TRE_R252-TypeHoraire",
              "TRE_R329-NatureCapacite", "TRE_R330-TypeStatutCapacite", "TRE_R331-TemporaliteCapacite",
              "TRE_R332-GenreCapacite", "TRE_R333-TypeFermetureCapacite", "TRE_R334-TypeLitSupplementaire",
              "TRE_R335-TypeSourceCapacite", "TRE_R336-TypeCrise", "TRE_R337-AffectationTemporaire",
              "TRE_R242-TypeHabitation", "TRE_R203-StatutLieu", "TRE_R343-FonctionLieu"}

