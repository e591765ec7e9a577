"""FINESS: legal entities (EJ) and establishments (EG) as ROR Organizations, linked by ``partOf``.

Three inputs, told apart by their first bytes:

- the raw etalab open-data file: a manifest line ``finess;etalab;<n>;<date>``, then ``structureet``,
  ``geolocalisation`` and ``structureej`` records, ``;`` separated, no header, positional, UTF-8 or
  Windows-1252 (per line). Read in two streaming passes: the first yields the EJs and keeps the
  coordinates (a small tuple per establishment), the second yields the EGs with their coordinates —
  the file itself is never held in memory;
- the enriched headered variant (``nofinesset;nofinessej;…``, geolocation merged in, full COG);
- the JSON "Structures" flux (``pmej[]`` with nested ``ege[]``), streamed with ijson.

Projected coordinates (Lambert-93, overseas UTM) become WGS84 with pyproj; the CRS is the last token
of the geocoding source. Coded labels come from NOS, never from the file (docs/feeds.md, encodings).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from ror.errors import InputFileError
from ror.feeds.fhirmap import (
    FINESS,
    IDNATST,
    SIRENE,
    address,
    creation,
    geolocation,
    meta,
    org_identifier,
    period,
    phone,
    prune,
    region_of_commune,
)
from ror.feeds.model import (
    REPLACEMENT,
    DecodedLines,
    Entity,
    Feed,
    Known,
    Problem,
    Record,
    concept,
    decode_line,
    file_head,
    finess_problem,
    key,
    nos_code,
    read_line,
    ref,
    separator_error,
    siret_problem,
    split_csv,
)
from ror.geo import haversine_km, load_communes

R66, R72, R73 = "TRE_R66-CategorieEtablissement", "TRE_R72-FinessStatutJuridique", "TRE_R73-ESPIC"
ADDITIONAL_NAME = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-organization-additional-name"

# Positional layouts of the etalab records (notices cs1100501 / cs1100502 / cs1100507), label excluded.
ET_FIELDS = ("nofinesset", "nofinessej", "rs", "rslongue", "complrs", "compldistrib", "numvoie", "typvoie", "voie",
             "compvoie", "lieuditbp", "commune", "departement", "libdepartement", "ligneacheminement", "telephone",
             "telecopie", "categetab", "libcategetab", "categagretab", "libcategagretab", "siret", "codeape",
             "codemft", "libmft", "codesph", "libsph", "dateouv", "dateautor", "datemaj", "numuai")
GEO_FIELDS = ("nofinesset", "coordxet", "coordyet", "sourcecoordet", "datemaj")
EJ_FIELDS = ("nofiness", "rs", "rslongue", "complrs", "numvoie", "typvoie", "voie", "compvoie", "compldistrib",
             "lieuditbp", "commune", "ligneacheminement", "departement", "libdepartement", "telephone",
             "statutjuridique", "libstatutjuridique", "categetab", "libcategetab", "siren", "codeape", "datecrea")
FREE_TEXT = ("rs", "rslongue", "complrs", "compldistrib", "voie", "lieuditbp", "ligneacheminement")
_OVERSEAS = {"9A": "97", "9B": "97", "9C": "97", "9D": "97", "9E": "97", "9F": "97", "9J": "98"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COORD_MAX_KM = 50.0  # an establishment farther than this from its commune centre has wrong coordinates


# --- coordinates -----------------------------------------------------------------------------------

_CRS_NAMES = {"LAMBERT_93": 2154, "L93_METROPOLE": 2154, "UTM_N20": 5490, "UTM_N21": 4467, "UTM_N22": 2972,
              "UTM_S38": 4471, "UTM_S40": 2975}


def crs_of(source: str) -> int | None:
    """EPSG code of the CRS named by the last token of a geocoding source, in any of its spellings."""
    last = source.rsplit(",", 1)[-1].strip()
    if last.upper() in _CRS_NAMES:
        return _CRS_NAMES[last.upper()]
    m = re.match(r"EPSG:(\d+)", last)
    if m:
        return int(m.group(1))
    m = re.search(r"WGS84\s*/\s*UTM zone (\d+)([NS])", last, re.IGNORECASE)
    if m:
        return (32600 if m.group(2).upper() == "N" else 32700) + int(m.group(1))
    return None


@lru_cache(maxsize=16)
def _transformer(epsg: int):
    from pyproj import Transformer
    return Transformer.from_crs(epsg, 4326, always_xy=True)


def to_wgs84(x: float, y: float, epsg: int) -> tuple[float, float]:
    """(latitude, longitude) rounded to 1e-6 degree (0.1 m), so results are stable across PROJ versions."""
    lon, lat = _transformer(epsg).transform(x, y)
    return round(lat, 6), round(lon, 6)


def reliable(source: str) -> bool | None:
    """Whether a geocoding is at the address: score >= 80 and not a commune-level reference (the
    ADMIN-EXPRESS rows sit on the commune centroid). Token meanings are inferred (docs/feeds.md)."""
    tokens = [t.strip() for t in source.split(",")]
    if len(tokens) < 4:
        return None
    score = tokens[2]
    if not score.isdigit():
        return False
    return int(score) >= 80 and not tokens[3].upper().startswith("ADMIN-EXPRESS")


# --- records -> resources -----------------------------------------------------------------------

class FinessFeed(Feed):
    source = kind = "finess"
    closable = frozenset({"ej", "eg"})

    def read(self, path: Path) -> Iterator[Record | Known | Problem]:
        head = file_head(path)
        if head[:1] in (b"{", b"["):
            from ror.feeds.finess_json import read_structures
            yield from read_structures(self, path)
            return
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
        if first.startswith(("finess;", "structureet;", "structureej;", "geolocalisation;")):
            yield from self._etalab(path, first)
        elif first.startswith("nofinesset;"):
            yield from self._enriched(path)
        elif ";" not in first:
            raise separator_error(path, first, ";")
        else:
            raise InputFileError(f"{path}: not a FINESS file: line 1 is neither the etalab manifest "
                                 f"'finess;etalab;…' nor the header 'nofinesset;…' of the enriched file")

    # raw etalab file

    def _etalab(self, path: Path, first: str) -> Iterator[Record | Known | Problem]:
        if first.startswith("finess;"):
            parts = first.split(";")
            if len(parts) >= 4 and _DATE.match(parts[3]):
                self.extraction_date = parts[3]
                self.notes.append(f"extraction of {parts[3]}")
        else:
            self.notes.append("no manifest line (finess;etalab;<n>;<date>)")
        geo: dict[str, tuple[str, str, str]] = {}
        dated = "dated" if self.extraction_date else ""  # the date itself is the creation date's, written once
        lines = DecodedLines(path)
        for n, line in lines:  # pass 1: legal entities, coordinates
            kind = line.split(";", 1)[0]
            if (n == 1 and kind == "finess") or kind == "structureet" or not line.strip():
                continue
            fields = split_csv(line, ";")[1:]
            if kind == "geolocalisation":
                if len(fields) not in (len(GEO_FIELDS), len(GEO_FIELDS) + 1):
                    yield self._count_problem(n, line, fields, len(GEO_FIELDS), lines)
                    continue
                g = dict(zip(GEO_FIELDS, fields, strict=False))
                geo[g["nofinesset"]] = (g["coordxet"], g["coordyet"], g["sourcecoordet"])
            elif kind == "structureej":
                if len(fields) not in (len(EJ_FIELDS), len(EJ_FIELDS) + 1):
                    yield self._count_problem(n, line, fields, len(EJ_FIELDS), lines)
                    continue
                yield from self.mapped(n, ("ej", dated, line), lambda n=n, line=line: self._ej_line(n, line),
                                       ("_ej_at", (str(path), n, lines.span)))
            else:
                yield Problem(n, "record type", f"unknown record type '{kind[:40]}' (expected structureet, "
                                                f"geolocalisation or structureej)", record=line)
        self.notes.append(lines.note())
        establishments = DecodedLines(path)
        for n, line in establishments:  # pass 2
            if not line.startswith("structureet;"):
                continue
            fields = split_csv(line, ";")[1:]
            if len(fields) not in (len(ET_FIELDS) - 1, len(ET_FIELDS)):
                yield self._count_problem(n, line, fields, len(ET_FIELDS), lines)
                continue
            place = geo.get(fields[0], ("", "", ""))  # nofinesset
            yield from self.mapped(n, ("eg", dated, line, *place),
                                   lambda n=n, line=line, place=place: self._et_line(n, line, place),
                                   ("_et_at", (str(path), n, establishments.span, place)))

    # A structureej or structureet line mapped, with the coordinates of an establishment (``Feed.mapped``); or read
    # again where it is in the file, if it was remembered and must be mapped after all

    def _ej_line(self, n: int, line: str) -> Iterator[Record | Problem]:
        yield self._ej(n, line, dict(zip(EJ_FIELDS, split_csv(line, ";")[1:], strict=False)))

    def _ej_at(self, path: str, n: int, span: tuple[int, int]) -> Iterator[Record | Problem]:
        yield from self._ej_line(n, decode_line(read_line(path, span))[0])

    def _et_at(self, path: str, n: int, span: tuple[int, int], place: tuple[str, str, str]
               ) -> Iterator[Record | Problem]:
        yield from self._et_line(n, decode_line(read_line(path, span))[0], place)

    def _et_line(self, n: int, line: str, place: tuple[str, str, str]) -> Iterator[Record | Problem]:
        et = dict(zip(ET_FIELDS, split_csv(line, ";")[1:], strict=False))
        et["cog"] = _cog(et["departement"], et["commune"])
        et["postcode"], _, et["city"] = et["ligneacheminement"].partition(" ")
        x, y, src = place
        et.update(coordx=x, coordy=y, geosource=src)
        yield self._eg(n, line, et)

    def _count_problem(self, n: int, line: str, fields: list[str], expected: int, lines: DecodedLines) -> Problem:
        truncated = len(fields) < expected - 1
        if truncated and lines.unterminated:
            self.complete = False
            return Problem(n, "(line)", f"the file ends in the middle of this record: {len(fields)} fields "
                                        f"instead of {expected} (download cut short?)", record=line)
        return Problem(n, "(line)", f"{len(fields)} fields instead of {expected}: "
                       f"{'truncated line' if truncated else 'extra fields (separator inside a value?)'}",
                       record=line)

    # enriched headered variant

    def _enriched(self, path: Path) -> Iterator[Record | Problem]:
        m = re.search(r"(20\d{2})(\d{2})(\d{2})", path.name)
        if m:
            self.extraction_date = "-".join(m.groups())
        lines = DecodedLines(path)
        header: list[str] = []
        for n, line in lines:
            if n == 1:
                header = line.split(";")
                missing = {"nofinesset", "nofinessej", "rs", "categetab", "cog"} - set(header)
                if missing:
                    raise InputFileError(f"{path}: header lacks the column(s) {', '.join(sorted(missing))}")
                continue
            if not line.strip():
                continue
            fields = split_csv(line, ";")
            if len(fields) != len(header):
                yield self._count_problem(n, line, fields, len(header), lines)
                continue
            row = dict(zip(header, fields, strict=True))
            et = {k: row.get(k, "") for k in ET_FIELDS}
            et.update(cog=row["cog"], postcode=row.get("codepostal", ""), city=row.get("libelle_routage", ""),
                      categagretab=row.get("categretab", ""), codemft=row.get("mft", ""), codesph=row.get("sph", ""),
                      dateouv=row.get("dateouvert", ""), numuai=row.get("numen", ""),
                      coordx=row.get("coordx", ""), coordy=row.get("coordy", ""),
                      geosource=row.get("sourcegeocod", ""), region=row.get("region", ""))
            yield self._eg(n, line, et)
        self.notes.append(lines.note())

    # mapping

    def _eg(self, n: int, line: str, et: dict) -> Record | Problem:
        fin = et["nofinesset"]
        why = finess_problem(fin)
        if why:
            return Problem(n, "nofinesset", why, record=line)
        why = finess_problem(et["nofinessej"])
        if why:
            return Problem(n, "nofinessej", why, record=line)
        cat = nos_code(R66, et["categetab"])
        if cat is None:
            return Problem(n, "categetab", f"unknown establishment category '{et['categetab']}' (not in NOS "
                           f"TRE_R66): the NOS table or the file is out of date", record=line)
        warnings: list[Problem] = _mangled(n, line, et)
        if cat.retired:
            warnings.append(Problem(n, "categetab", f"category '{et['categetab']}' is retired in NOS TRE_R66",
                                    "warning", line))
        ids = [org_identifier(FINESS, fin), org_identifier(IDNATST, "1" + fin)]
        keys = [key(FINESS, fin), key(IDNATST, "1" + fin)]
        if et["siret"]:
            why = siret_problem(et["siret"])
            if why:
                warnings.append(Problem(n, "siret", why + "; SIRET left out", "warning", line))
            else:
                ids.append(org_identifier(SIRENE, et["siret"]))
                keys.append(key(SIRENE, et["siret"]))
        cog = self._commune(n, line, et["cog"], warnings)
        geo = self._geolocation(n, line, et, cog, warnings)
        types = [concept(R66, et["categetab"])]
        if et["codesph"]:
            if nos_code(R73, et["codesph"]):
                types.append(concept(R73, et["codesph"]))
            else:
                warnings.append(Problem(n, "codesph", f"unknown code '{et['codesph']}' (not in NOS TRE_R73); "
                                        f"left out", "warning", line))
        res = prune({
            "resourceType": "Organization",
            "meta": meta("Organization", region_of_commune(cog) or et.get("region") or None),
            "extension": [*creation(self.extraction_date), *period(_date(et["dateouv"]))],
            "identifier": ids,
            "active": True,
            "type": types,
            "name": et["rslongue"] or et["rs"],
            "_name": {"extension": [{"url": ADDITIONAL_NAME, "valueString": et["complrs"]}]} if et["complrs"] else None,
            "alias": [et["rs"]] if et["rslongue"] and et["rs"] != et["rslongue"] else None,
            "telecom": [t for t in (phone(et["telephone"]), phone(et["telecopie"], "6")) if t],
            "address": _listed(address(additional=et["compldistrib"], number=et["numvoie"], suffix=et["compvoie"],
                                street_type=et["typvoie"], street=et["voie"], locality=et["lieuditbp"],
                                postcode=et["postcode"], city=et["city"], cog=cog or "", geolocation=geo)),
            "partOf": ref("Organization", key(FINESS, et["nofinessej"])),
        })
        return Record(n, [Entity("Organization", keys, res, "eg")], warnings)

    def _ej(self, n: int, line: str, ej: dict) -> Record | Problem:
        fin = ej["nofiness"]
        why = finess_problem(fin)
        if why:
            return Problem(n, "nofiness", why, record=line)
        if nos_code(R72, ej["statutjuridique"]) is None:
            return Problem(n, "statutjuridique", f"unknown legal status '{ej['statutjuridique']}' (not in NOS "
                           f"TRE_R72): the NOS table or the file is out of date", record=line)
        warnings = _mangled(n, line, ej)
        ids = [org_identifier(FINESS, fin), org_identifier(IDNATST, "1" + fin)]
        keys = [key(FINESS, fin), key(IDNATST, "1" + fin)]
        if ej["siren"]:
            why = siret_problem(ej["siren"], 9)
            if why:
                warnings.append(Problem(n, "siren", why + "; SIREN left out", "warning", line))
            else:
                ids.append(org_identifier(SIRENE, ej["siren"]))
                keys.append(key(SIRENE, ej["siren"]))
        cog = self._commune(n, line, ej.get("cog") or _cog(ej["departement"], ej["commune"]), warnings)
        geo = self._geolocation(n, line, ej, cog, warnings)
        postcode, _, city = ej["ligneacheminement"].partition(" ")
        res = prune({
            "resourceType": "Organization",
            "meta": meta("Organization", region_of_commune(cog)),
            "extension": [*creation(self.extraction_date), *_creation_date(ej["datecrea"])],
            "identifier": ids,
            "active": True,
            "type": [concept(R72, ej["statutjuridique"])],
            "name": ej["rslongue"] or ej["rs"],
            "_name": {"extension": [{"url": ADDITIONAL_NAME, "valueString": ej["complrs"]}]} if ej["complrs"] else None,
            "telecom": [t for t in (phone(ej["telephone"]),) if t],
            "address": _listed(address(additional=ej["compldistrib"], number=ej["numvoie"], suffix=ej["compvoie"],
                                street_type=ej["typvoie"], street=ej["voie"], locality=ej["lieuditbp"],
                                postcode=postcode, city=city, cog=cog or "", geolocation=geo)),
        })
        return Record(n, [Entity("Organization", keys, res, "ej")], warnings)

    @staticmethod
    def _commune(n: int, line: str, cog: str, warnings: list[Problem]) -> str | None:
        if cog in load_communes():
            return cog
        warnings.append(Problem(n, "commune", f"unknown commune code '{cog}' (COG): address kept without it",
                                "warning", line))
        return None

    @staticmethod
    def _geolocation(n: int, line: str, et: dict, cog: str | None, warnings: list[Problem]) -> dict | None:
        if et.get("wgs84"):
            lat, lon, rel = et["wgs84"]
            epsg = 4326
        elif et.get("coordx") and et.get("coordy"):
            epsg = crs_of(et["geosource"])
            if epsg is None:
                warnings.append(Problem(n, "sourcecoordet", f"unknown coordinate system in '{et['geosource']}': "
                                        f"coordinates left out", "warning", line))
                return None
            try:
                lat, lon = to_wgs84(float(et["coordx"]), float(et["coordy"]), epsg)
            except ValueError:
                warnings.append(Problem(n, "coordxet", f"coordinates '{et['coordx']}', '{et['coordy']}' are not "
                                        f"numbers: left out", "warning", line))
                return None
            rel = reliable(et["geosource"])
        else:
            return None
        centre = load_communes().get(cog) if cog else None
        if centre and centre.has_position:
            km = haversine_km(lat, lon, centre.latitude, centre.longitude)
            if km > _COORD_MAX_KM:
                warnings.append(Problem(n, "coordxet", f"coordinates fall {km:.0f} km from the commune centre "
                                        f"(EPSG:{epsg}): left out", "warning", line))
                return None
        return geolocation(lat, lon, rel)


def _cog(departement: str, commune: str) -> str:
    """INSEE commune code from FINESS département + 3-digit commune (overseas FINESS codes 9A… -> 97/98)."""
    return _OVERSEAS.get(departement, departement) + commune


def _listed(item: dict | None) -> list[dict]:
    return [item] if item else []


def _date(value: str) -> str | None:
    return value if _DATE.match(value or "") else None


def _creation_date(value: str) -> list[dict]:
    d = _date(value)
    url = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-organization-creation-date"
    return [{"url": url, "valueDate": d}] if d else []


def _mangled(n: int, line: str, rec: dict) -> list[Problem]:
    """Free-text fields whose accents were lost upstream (U+FFFD): kept as they are, reported."""
    bad = [k for k in FREE_TEXT if REPLACEMENT in rec.get(k, "")]
    if not bad:
        return []
    return [Problem(n, ",".join(bad), "accented letters lost upstream (U+FFFD) in free text: kept as received; "
                    "coded labels come from NOS and are not affected", "warning", line)]
