"""The FINESS+ JSON "Structures" flux (``pmej[]`` with nested ``ege[]``), streamed object by object.

The published schema is still moving (two revisions rename keys, e.g. ``informationsGeneralesPmej`` /
``informationsGeneralesPMEJ``, ``pm_smsseId`` / ``pmSmsseId``), so keys are looked up under each known
spelling. Each ``pmej`` becomes one record (its position in the array is its "line") carrying the EJ
and its EGs, mapped by the same code as the etalab file.

Closing (never a deletion): an EJ or EG is closed when the flux says so — a closing date
(``dateFermeture`` of its general information), a closed or lapsed state (``etatObjet``: ``F``/``FERME``,
``CADUC``/``CADUQUE``), or a closing / lapsing event (``evenement[]`` whose ``codeEvenement`` or
``etatObjet1`` names a fermeture or a caducité, dated by ``dateEvenement``; a later (ré)ouverture event
reopens). As the IG expresses it: ``active`` false, ``organization-period.end`` = the closing date, and
``ror-organization-closing-type`` (TRE_R286) when the flux gives a ``typeFermeture``. TRE_R386 (the states)
and the event codes are not published offline: the words above are matched, an unknown state is
reported and changes nothing. FINESS owns these elements, so a later flux saying "open" reopens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import ijson
import orjson

from ror.errors import InputFileError
from ror.feeds.fhirmap import PERIOD_EXT, ROR
from ror.feeds.finess import EJ_FIELDS, ET_FIELDS, FinessFeed, to_wgs84
from ror.feeds.model import Entity, Problem, Record, concept, nos_code

CLOSING_TYPE = ROR + "ror-organization-closing-type"
R286 = "TRE_R286-TypeFermeture"
_OPEN_STATES = {"A", "ACTIF", "ACTIVE", "O", "OUVERT", "OUVERTE"}
_CLOSED_STATES = {"F": "fermeture", "FERME": "fermeture", "FERMEE": "fermeture", "CADUC": "caducité",
                  "CADUQUE": "caducité", "CADUCITE": "caducité"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")


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
    _close(n, mapped.entities[0], [info, pmej], pmej.get("etatObjet"), pmej.get("evenement"), mapped.warnings)
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
        _close(n, eg.entities[0], [ginfo, ege], ege.get("etatObjet") or _get(ginfo, "etatObjet", default=None),
               ege.get("evenement"), eg.warnings)
        mapped.entities.extend(eg.entities)
        mapped.warnings.extend(eg.warnings)
    yield mapped


def _word(value) -> str:
    text = unicodedata.normalize("NFKD", str(value or "")).encode("ascii", "ignore").decode().upper()
    return re.sub(r"[^A-Z]", "", text)


def _event_kind(ev: dict) -> str | None:
    words = _word(ev.get("codeEvenement")) + " " + _word(ev.get("etatObjet1"))
    if "CADUC" in words:
        return "caducité"
    if "FERM" in words:
        return "fermeture"
    if "OUV" in words or "ACTIV" in words:
        return "ouverture"
    return None


def _closing(infos: list, state, events, warnings: list[Problem], n: int) -> tuple[str | None, str | None]:
    """(why closed, closing date) — why is None when the flux says the structure is open."""
    date = next((str(_get(i, "dateFermeture")) for i in infos if _get(i, "dateFermeture")), "")
    why = "fermeture" if date else None
    code = _word(state.get("code") if isinstance(state, dict) else state)
    if code in _CLOSED_STATES:
        why = why or _CLOSED_STATES[code]
    elif code and code not in _OPEN_STATES:
        warnings.append(Problem(n, "etatObjet", f"unknown state '{code}' (TRE_R386): the status is left as it is",
                                "warning"))
    dated = sorted(((str(ev.get("dateEvenement") or ""), kind) for ev in events if isinstance(ev, dict)
                    and (kind := _event_kind(ev))), key=lambda x: x[0]) if isinstance(events, list) else []
    if dated:
        last_date, last_kind = dated[-1]
        if last_kind == "ouverture" and not date and code not in _CLOSED_STATES:
            return None, None
        if last_kind != "ouverture":
            why = why or last_kind
            date = date or last_date
    return why, (date[:10] if _DAY.match(date) else None)


def _close(n: int, entity: Entity, infos: list, state, events, warnings: list[Problem]) -> None:
    """Mark the EJ/EG closed as the IG says (active false, organization-period.end, closing type)."""
    why, date = _closing(infos, state, events, warnings, n)
    if why is None:
        return
    res = entity.resource
    res["active"] = False
    exts = [e for e in res.get("extension", []) if e.get("url") not in (PERIOD_EXT, CLOSING_TYPE)]
    old = next((e for e in res.get("extension", []) if e.get("url") == PERIOD_EXT), None)
    period = dict(old["valuePeriod"]) if old else {}
    if date:
        period["end"] = date
    if period:
        exts.append({"url": PERIOD_EXT, "valuePeriod": period})
    kind = next((_code(i, "typeFermeture") for i in infos if _code(i, "typeFermeture")), "")
    if kind:
        if nos_code(R286, kind):
            exts.append({"url": CLOSING_TYPE, "valueCodeableConcept": concept(R286, kind)})
        else:
            warnings.append(Problem(n, "typeFermeture", f"unknown closing type '{kind}' (NOS TRE_R286): left out",
                                    "warning"))
    res["extension"] = exts
