"""The FINESS+ JSON "Structures" flux (``pmej[]`` with nested ``ege[]``), streamed object by object.

The published schema is still moving (two revisions rename keys, e.g. ``informationsGeneralesPmej`` /
``informationsGeneralesPMEJ``, ``pm_smsseId`` / ``pmSmsseId``), so keys are looked up under each known
spelling. Each ``pmej`` becomes one record (its position in the array is its "line") carrying the EJ
and its EGs, mapped by the same code as the etalab file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ijson
import orjson

from ror.errors import InputFileError
from ror.feeds.finess import EJ_FIELDS, ET_FIELDS, FinessFeed, to_wgs84
from ror.feeds.model import Problem, Record


def _get(d: dict | None, *names: str, default=""):
    if isinstance(d, dict):
        for name in names:
            if d.get(name) not in (None, ""):
                return d[name]
    return default


def _code(d: dict | None, *names: str) -> str:
    v = _get(d, *names, default=None)
    return str(v.get("code", "")) if isinstance(v, dict) else str(v or "")


def _address(adresses) -> dict:
    a = adresses[0] if isinstance(adresses, list) and adresses and isinstance(adresses[0], dict) else {}
    cog = str(_get(a, "cogCommune"))
    acheminement = str(_get(a, "ligneAcheminement"))
    postcode = str(_get(a, "codePostal")) or acheminement[:5]
    return {"numvoie": str(_get(a, "numeroVoie")), "typvoie": str(_get(a, "typeVoie")),
            "voie": str(_get(a, "libelleVoie")), "compvoie": str(_get(a, "complementVoie")),
            "compldistrib": str(_get(a, "complementPointGeographique")), "lieuditbp": str(_get(a, "lieuDit")),
            "cog": cog, "postcode": postcode, "city": acheminement[6:] if acheminement[:5].isdigit() else acheminement,
            "ligneacheminement": acheminement, "departement": cog[:2], "commune": cog[2:],
            "wgs84": _position(_get(a, "coordonneesGeographique", default={}))}


def _position(c: dict) -> tuple[float, float, bool | None] | None:
    """WGS84 degrees when given; else Lambert-93 metres, which some files give with X and Y swapped."""
    score = str(_get(c, "scoreBAN"))
    rel = int(float(score)) >= 80 if score.replace(".", "", 1).isdigit() else None
    try:
        lat, lon = float(_get(c, "directionLatitude")), float(_get(c, "directionLongitude"))
        return round(lat, 6), round(lon, 6), rel
    except ValueError:
        pass
    try:
        x, y = float(_get(c, "coordonneeX")), float(_get(c, "coordonneeY"))
    except ValueError:
        return None
    if x > y:  # Lambert-93 northings (6.0-7.2 million) always exceed eastings (0.1-1.3 million)
        x, y = y, x
    lat, lon = to_wgs84(x, y, 2154)
    return lat, lon, rel


def _telecom(contacts) -> tuple[str, str]:
    for c in contacts if isinstance(contacts, list) else ():
        t = _get(c, "telecom", default={})
        if _get(t, "telephone") or _get(t, "telecopie"):
            return str(_get(t, "telephone")), str(_get(t, "telecopie"))
    return "", ""


def read_structures(feed: FinessFeed, path: Path) -> Iterator[Record | Problem]:
    feed.notes.append("FINESS JSON Structures flux")
    try:
        with path.open("rb") as f:
            for n, pmej in enumerate(ijson.items(f, "pmej.item", use_float=True), 1):
                if not isinstance(pmej, dict):
                    yield Problem(n, "pmej", "not a JSON object", record=str(pmej)[:200])
                    continue
                yield from _pmej(feed, n, pmej)
    except ijson.JSONError as e:
        feed.complete = False
        raise InputFileError(f"{path}: invalid JSON ({e}); records before the error were imported") from None


def _pmej(feed: FinessFeed, n: int, pmej: dict) -> Iterator[Record | Problem]:
    text = orjson.dumps(pmej).decode()
    info = _get(pmej, "informationsGeneralesPmej", "informationsGeneralesPMEJ", default={})
    tel = _telecom(pmej.get("contact"))[0]
    ej = {k: "" for k in EJ_FIELDS} | _address(pmej.get("adresse")) | {
        "nofiness": str(_get(info, "numFinessPm", "numFinessPM")), "rs": str(_get(info, "denominationPm")),
        "rslongue": str(_get(info, "denominationLonguePmSmsse")), "statutjuridique": _code(info, "statutJuridique"),
        "siren": str(_get(info, "siren")), "datecrea": str(_get(info, "dateCreation"))[:10], "telephone": tel}
    mapped = feed._ej(n, text, ej)
    if isinstance(mapped, Problem):
        yield mapped
        return
    for ege in pmej.get("ege") or []:
        ginfo = _get(ege, "informationsGeneralesEGE", "informationsGeneralesEge", default={})
        gtel, gfax = _telecom(ege.get("contact"))
        et = {k: "" for k in ET_FIELDS} | _address(ege.get("adresse")) | {
            "nofinesset": str(_get(ginfo, "numFinessEge", "numFinessEGE", "numFinessEg")),
            "nofinessej": ej["nofiness"],
            "rs": str(_get(ginfo, "nomEgeCourt", "denominationEge")),
            "rslongue": str(_get(ginfo, "nomEgeLong", "denominationLongueEge")),
            "siret": str(_get(ege, "siret") or _get(ginfo, "siret")),
            "categetab": _code(ege, "categorieEntiteGeographiqueExercice") or _code(
                ginfo, "categorieEntiteGeographiqueExercice"),
            "codesph": _code(ege, "espic") or _code(ginfo, "espic"),
            "dateouv": str(_get(ginfo, "dateOuverture"))[:10], "telephone": gtel, "telecopie": gfax,
            "coordx": "", "coordy": "", "geosource": ""}
        eg = feed._eg(n, text, et)
        if isinstance(eg, Problem):
            yield eg
            continue
        mapped.entities.extend(eg.entities)
        mapped.warnings.extend(eg.warnings)
    yield mapped
