"""CSD ``facility`` (an offer) -> the places, capacities and opening hours of the ROR FHIR model.

Capacities (IG ``ror-location-supported-capacity``, one extension per capacity indicator) and housing
capacity (``ror-location-residential-capacity``) live on the Location (lieu de réalisation de l'offre)
that the HealthcareService references in ``location``:

- ME 3.0: each ``extension/locationRealizedOffer`` is a Location: ``location`` (identifier -> identifier
  type 25, name, description, status TRE_R203 -> ``operationalStatus``, address, ``geoCoordinates`` ->
  ``position``, ``functionLocation`` TRE_R343 -> ``type``, ``cityNumber`` -> ``ror-commune-cog``,
  ``contactPoint`` -> telecom), ``externalidSynchronization`` -> identifier type 26 (the key of
  bed-management systems), ``externalNameSynchronization`` -> ``alias``, ``residentialCapactity`` (sic) ->
  residential capacity, each ``capacitySupported/operationalAccommodationCapacity`` -> one supported
  capacity (its ``temporaryAssignment`` -> ``temporaryAssignement``, sic in the IG);
- ME 2.4: the offer has no place of its own; its ``accommodationCapacity`` (``beds`` = lits, ``space`` =
  places; ``total`` -> status 01 installé, ``avaible`` (sic) -> 02 disponible, temporality 01 courant, source
  01 saisie manuelle — 2.4 capacities were entered in the ROR —, assignment 01 aucune) and its
  ``residentialCapactity`` go to one Location per offer, in the commune of the providing organisation.
  ``crisisAccomodationCapacity`` (T0 / T60 crisis beds) has no equivalent in the IG: reported, not mapped.

Every capacity record is checked with the indicator rules of ``ror.capacity.indicators`` (the same ones
the API enforces); a record that is not a valid indicator is left out with a warning.

Opening hours (``operatingHours``, of the facility and of its services) -> ``HealthcareService.availableTime``
as in the IG example: one entry per day (``daysOfWeek`` max 1), with ``ror-available-time-number-days-of-week``
(1 = Monday … 7 = Sunday; CSD counts Sunday = 0), ``ror-available-time-effective-opening-closing-date``
(beginEffectiveDate / endEffectiveDate) and ``ror-available-time-type-of-time`` (``operatingHoursType``,
TRE_R252 restricted to JDV_J41: 01 ouverture, 02 fonctionnement). ME 2.4 hours with ``openFlag`` false are
closed hours, which the ROR model cannot express (ME 3.0 dropped the flag, JDV_J41 has no closed type): left
out with a warning. An ending hour of
00:00 is midnight at the end of the day: ``23:59:59`` (FHIR ``time`` has no 24:00).
"""

from __future__ import annotations

import re
from datetime import datetime
from xml.etree.ElementTree import Element
from zoneinfo import ZoneInfo

from ror.capacity.indicators import CAPACITY_URL, check
from ror.feeds.fhirmap import PROFILE, ROR, address, creation, nos_system, prune, region_tag
from ror.feeds.model import Entity, Problem, concept
from ror.feeds.regional import RegionalFeed, coded
from ror.geo import load_communes

CSD = "{urn:ihe:iti:csd:2013}"
R252, R203, R354 = "TRE_R252-TypeHoraire", "TRE_R203-StatutLieu", "TRE_R354-TypeIdentifiantRessourceOperationnelle"
RESIDENTIAL_URL = ROR + "ror-location-residential-capacity"
HOURS_TYPES = ("01", "02")  # JDV_J41-TypeHoraire-ROR: horaire d'ouverture, de fonctionnement
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
# ME 3.0 operationalAccommodationCapacity element -> IG sub-extension, in the order of the IG
_CAPACITY_CODED = (("capacityNature", "capacityType"), ("capacityStatus", "capacityStatus"),
                   ("capacityTemporality", "temporalityCapacity"))
_CAPACITY_OPTIONAL = (("capacityClosingType", "capacityClosingType"), ("capacityExtraBed", "additionalBedType"),
                      ("crisisType", "crisisType"))


def _t(e: Element | None, tag: str) -> str:
    found = e.find(CSD + tag) if e is not None else None
    return (found.text or "").strip() if found is not None else ""


_ZONES = {"01": "America/Guadeloupe", "02": "America/Martinique", "03": "America/Cayenne", "04": "Indian/Reunion",
          "06": "Indian/Mayotte"}


def datetime_of(value: str, region: str) -> str:
    """A FHIR dateTime: a time without offset (the ME 2.4 samples have some) is the region's local time."""
    value = value.strip()
    if "T" not in value or re.search(r"(Z|[+-]\d\d:\d\d)$", value):
        return value
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value
    return dt.replace(tzinfo=ZoneInfo(_ZONES.get(region, "Europe/Paris"))).isoformat()


def _record_date(e: Element | None, attr: str = "updated") -> str:
    r = e.find(CSD + "record") if e is not None else None
    return r.get(attr, "") if r is not None else ""


# --- opening hours ------------------------------------------------------------------------------------

def _time(value: str, end: bool) -> str | None:
    m = _TIME.match(value.strip())
    if not m:
        return None
    out = f"{m.group(1)}:{m.group(2)}:{m.group(3) or '00'}"
    return "23:59:59" if end and out == "00:00:00" else out


def available_time(n: int, e: Element, eid: str, warnings: list[Problem]) -> list[dict]:
    """``operatingHours`` of the facility and of its services -> availableTime entries (IG example shape)."""
    hours = list(e.findall(CSD + "operatingHours"))
    for s in e.iterfind(f"{CSD}organizations/{CSD}organization/{CSD}service"):
        hours.extend(s.findall(CSD + "operatingHours"))
    out: list[dict] = []
    for h in hours:
        type_el = h.find(f"{CSD}extension/{CSD}operatingHoursType")
        kind = None
        if type_el is not None:
            kind = coded(type_el.get("codingScheme", ""), type_el.get("code", ""))
            if kind is None or kind["coding"][0]["system"] != nos_system(R252):
                warnings.append(Problem(n, "operatingHoursType", f"'{type_el.get('code')}' of "
                                        f"'{type_el.get('codingScheme')}' is not a TRE_R252 code: left out",
                                        "warning", eid))
                kind = None
        if kind is not None and kind["coding"][0]["code"] not in HOURS_TYPES:
            warnings.append(Problem(n, "operatingHoursType", f"'{kind['coding'][0]['code']}' is not in "
                                    f"JDV_J41-TypeHoraire-ROR ({', '.join(HOURS_TYPES)}): left out", "warning", eid))
            kind = None
        if _t(h, "openFlag").lower() in ("0", "false"):
            warnings.append(Problem(n, "openFlag", "closed hours (openFlag false): the ROR model has no type for "
                                    "them (JDV_J41), left out", "warning", eid))
            continue
        period = prune({"start": _t(h, "beginEffectiveDate")[:10], "end": _t(h, "endEffectiveDate")[:10]})
        start, end = _t(h, "beginningHour"), _t(h, "endingHour")
        times = {}
        for name, value, is_end in (("availableStartTime", start, False), ("availableEndTime", end, True)):
            if value:
                t = _time(value, is_end)
                if t is None:
                    warnings.append(Problem(n, "operatingHours", f"'{value}' is not a time: left out", "warning",
                                            eid))
                else:
                    times[name] = t
        days: list[int | None] = []
        for d in h.findall(CSD + "dayOfTheWeek"):
            v = (d.text or "").strip()
            if v.isdigit() and 0 <= int(v) <= 7:
                days.append(7 if int(v) == 0 else int(v))  # CSD: Sunday = 0 (7 tolerated), Monday = 1
            else:
                warnings.append(Problem(n, "dayOfTheWeek", f"'{v}' is not a day (0 = Sunday … 6): left out",
                                        "warning", eid))
        for day in sorted(set(days)) or [None]:
            ext = [x for x in (
                {"url": ROR + "ror-available-time-number-days-of-week", "valueInteger": day} if day else None,
                {"url": ROR + "ror-available-time-effective-opening-closing-date", "valuePeriod": period}
                if period else None,
                {"url": ROR + "ror-available-time-type-of-time", "valueCodeableConcept": kind} if kind else None)
                if x]
            entry = prune({"extension": ext, "daysOfWeek": [DAYS[day - 1]] if day else None, **times})
            if entry and entry not in out:
                out.append(entry)
    return out


def not_available(ext: Element | None) -> list[dict]:
    """Closing period of the offer (ME 3.0 ``closingDate`` + ``ProvisionalReopeningDate``, ME 2.4
    ``finalClosingDate``) -> the IG ``notAvailable`` slice ``closingReopeningDate``."""
    start = _t(ext, "closingDate") or _t(ext, "finalClosingDate")
    if not start:
        return []
    during = prune({"start": start[:10], "end": _t(ext, "ProvisionalReopeningDate")[:10]})
    return [{"id": "closingReopeningDate", "description": "Période de fermeture et de réouverture prévisionnelle",
             "during": during}]


# --- capacities --------------------------------------------------------------------------------------

def _cc(n: int, eid: str, el: Element | None, field: str, warnings: list[Problem]) -> dict | None:
    if el is None:
        return None
    cc = coded(el.get("codingScheme", ""), el.get("code", ""))
    if cc is None or not cc["coding"][0]["system"].startswith("https://"):
        warnings.append(Problem(n, field, f"code '{el.get('code')}' of '{el.get('codingScheme')}' is unknown: "
                                f"left out", "warning", eid))
        return None
    return cc


def _valid(n: int, eid: str, capacity: dict, warnings: list[Problem]) -> dict | None:
    issues = check(capacity)
    if issues:
        warnings.append(Problem(n, "capacity", "capacity record left out: " + "; ".join(i.diagnostics for i in issues),
                                "warning", eid))
        return None
    return capacity


def _capacity(sub: list[tuple[str, dict | int | str | None]]) -> dict:
    value_key = {int: "valueInteger", str: "valueDateTime"}
    return {"extension": [{"url": url, value_key.get(type(v), "valueCodeableConcept"): v}
                          for url, v in sub if v not in (None, "")], "url": CAPACITY_URL}


def capacities_v3(n: int, eid: str, realized: Element, region: str, warnings: list[Problem]) -> list[dict]:
    out = []
    for cs in realized.findall(CSD + "capacitySupported"):
        assignment = _cc(n, eid, cs.find(CSD + "temporaryAssignment"), "temporaryAssignment", warnings)
        for oc in cs.findall(CSD + "operationalAccommodationCapacity"):
            coded_ = {ig: _cc(n, eid, oc.find(CSD + tag), tag, warnings) for tag, ig in _CAPACITY_CODED}
            number = _t(oc, "capacityNumber")
            sub = [*coded_.items(),
                   ("nbCapacity", int(number) if number.lstrip("-").isdigit() else None),
                   ("capacitySourceType", _cc(n, eid, oc.find(CSD + "capacitySourceType"), "capacitySourceType",
                                              warnings)),
                   ("genderCapacityAvailable", _cc(n, eid, oc.find(CSD + "capacityGenderAvailability"),
                                                   "capacityGenderAvailability", warnings)),
                   ("capacityUpdateDate", datetime_of(_t(oc, "cpacityUpdateDate") or _t(oc, "capacityUpdateDate"),
                                                    region)),
                   *((ig, _cc(n, eid, oc.find(CSD + tag), tag, warnings)) for tag, ig in _CAPACITY_OPTIONAL),
                   ("temporaryAssignement", assignment)]
            cap = _valid(n, eid, _capacity(sub), warnings)
            if cap and cap not in out:
                out.append(cap)
    return out


def capacities_v24(n: int, eid: str, e: Element, ext: Element, region: str,
                   warnings: list[Problem]) -> list[dict]:
    out = []
    ac = ext.find(CSD + "accommodationCapacity")
    if ac is not None:
        fallback = _record_date(ac) or _record_date(e)
        for tag, nature in (("beds", "01"), ("space", "02"), ("spaces", "02")):
            el = ac.find(CSD + tag)
            if el is None:
                continue
            for attr, status in (("total", "01"), ("avaible", "02"), ("available", "02")):
                v = (el.get(attr) or "").strip()
                if not v:
                    continue
                if not v.isdigit():
                    warnings.append(Problem(n, f"accommodationCapacity/{tag}@{attr}", f"'{v}' is not a number: "
                                            f"left out", "warning", eid))
                    continue
                sub = [("capacityType", concept("TRE_R329-NatureCapacite", nature)),
                       ("capacityStatus", concept("TRE_R330-TypeStatutCapacite", status)),
                       ("temporalityCapacity", concept("TRE_R331-TemporaliteCapacite", "01")),
                       ("nbCapacity", int(v)),
                       ("capacitySourceType", concept("TRE_R335-TypeSourceCapacite", "01")),
                       ("capacityUpdateDate", datetime_of(el.get("updateDate") or fallback, region)),
                       ("temporaryAssignement", concept("TRE_R337-AffectationTemporaire", "01"))]
                cap = _valid(n, eid, _capacity(sub), warnings)
                if cap and cap not in out:
                    out.append(cap)
    if ext.find(CSD + "crisisAccomodationCapacity") is not None:
        warnings.append(Problem(n, "crisisAccomodationCapacity", "crisis capacity T0/T60 of the ME 2.4 has no "
                                "equivalent in the ROR FHIR IG: not mapped", "warning", eid))
    return out


def residential(n: int, eid: str, parent: Element, warnings: list[Problem]) -> list[dict]:
    out = []
    for rc in parent.findall(CSD + "residentialCapactity"):
        kind = _cc(n, eid, rc.find(CSD + "residentialType"), "residentialType", warnings)
        number = _t(rc, "residentialNumber")
        if kind is None:
            continue
        sub = [{"url": "residentialType", "valueCodeableConcept": kind}]
        if number.isdigit():
            sub.append({"url": "residentialNumber", "valueInteger": int(number)})
        item = {"extension": sub, "url": RESIDENTIAL_URL}
        if item not in out:
            out.append(item)
    return out


# --- places ------------------------------------------------------------------------------------------

def _cog_ext(cog: str) -> list[dict]:
    if not cog:
        return []
    commune = load_communes().get(cog)
    c = {"system": nos_system("TRE_R13-CommuneOM"), "code": cog}
    if commune:
        c["display"] = commune.name
    return [{"url": ROR + "ror-commune-cog", "valueCodeableConcept": {"coding": [c]}}]


def _ident(code: str, value: str) -> dict:
    return {"type": concept(R354, code), "value": value}


def _location_entity(feed: RegionalFeed, rid: str, res: dict) -> Entity:
    return Entity("Location", [feed.technical("Location", rid)], prune(res), "Location")


def _place(feed: RegionalFeed, n: int, eid: str, loc: Element | None, fallback_cog: str, telecom,
           warnings: list[Problem]) -> tuple[dict, str]:
    """The Location elements of a CSD ``location`` (ME 2.4 and 3.0 share the type) and its identifier."""
    if loc is None:
        return {"status": "active", "extension": _cog_ext(fallback_cog)}, ""
    ident_el = loc.find(CSD + "identifier")
    ident = ident_el.get("entityID", "") if ident_el is not None else ""
    status = _cc(n, eid, loc.find(CSD + "status"), "location/status", warnings)
    line = loc.find(f"{CSD}address/{CSD}addressLine")
    city = loc.find(CSD + "cityNumber")
    cog = (city.get("code", "") if city is not None else "") or fallback_cog
    addr = address(number=line.get("buildingNumber", ""), street_type=line.get("streetType", ""),
                   street=line.get("streetName", ""), postcode=line.get("postCode", ""),
                   city=line.get("cityName", "")) if line is not None else None
    geo = loc.find(CSD + "geoCoordinates")
    position = None
    if geo is not None:
        try:
            position = {"longitude": float(_t(geo, "longitude")), "latitude": float(_t(geo, "latitude"))}
        except ValueError:
            warnings.append(Problem(n, "geoCoordinates", "coordinates are not numbers: left out", "warning", eid))
    function = _cc(n, eid, loc.find(CSD + "functionLocation"), "functionLocation", warnings)
    code = status["coding"][0]["code"] if status else "3"
    return {"extension": _cog_ext(cog), "identifier": [_ident("25", ident)] if ident else [],
            "status": {"1": "inactive", "2": "suspended"}.get(code, "active"),
            "operationalStatus": status["coding"][0] if status else None,
            "name": _t(loc, "name"), "description": _t(loc, "description"),
            "type": [function] if function else None, "telecom": telecom(loc), "address": addr,
            "position": position}, ident


def places(feed: RegionalFeed, n: int, e: Element, eid: str, org_communes: dict[str, str],
           provider_id: str, telecom, warnings: list[Problem]) -> list[Entity]:
    """The Locations of an offer, with their capacities (see the module doc)."""
    ext = e.find(CSD + "extension")
    if ext is None:
        return []
    meta = {"profile": [PROFILE["Location"]], "tag": region_tag(feed.region)}
    fallback = org_communes.get(provider_id, "")
    out: list[Entity] = []
    for i, lro in enumerate(ext.findall(CSD + "locationRealizedOffer"), 1):  # ME 3.0
        loc = lro.find(CSD + "location")
        fields, ident = _place(feed, n, eid, loc, "", telecom, warnings)
        sync_el = lro.find(CSD + "externalidSynchronization")
        sync = sync_el.get("entityID", "") if sync_el is not None else ""
        if sync:
            fields["identifier"].append(_ident("26", sync))
        alias = _t(lro, "externalNameSynchronization")
        created = datetime_of(_record_date(loc, "created") or _record_date(lro, "created"), feed.region)
        fields["extension"] = [*fields["extension"], *creation(created or None),
                               *capacities_v3(n, eid, lro, feed.region, warnings), *residential(n, eid, lro, warnings)]
        res = {"resourceType": "Location", "meta": meta, **fields, "alias": [alias] if alias else None}
        out.append(_location_entity(feed, ident or (f"sync/{sync}" if sync else f"{eid}/{i}"), res))
    caps = capacities_v24(n, eid, e, ext, feed.region, warnings)  # ME 2.4
    homes = residential(n, eid, ext, warnings)
    loc = ext.find(CSD + "location")
    if caps or homes or loc is not None:
        fields, ident = _place(feed, n, eid, loc, fallback, telecom, warnings)
        created = datetime_of(_record_date(loc, "created") or _record_date(e, "created"), feed.region)
        fields["extension"] = [*fields["extension"], *creation(created or None), *caps, *homes]
        fields["name"] = fields.get("name") or _t(e, "primaryName")
        res = {"resourceType": "Location", "meta": meta, **fields}
        out.append(_location_entity(feed, ident or f"facility/{eid}", res))
    for x in out:
        if not any(ext_["url"].endswith("ror-commune-cog") for ext_ in x.resource.get("extension", ())):
            warnings.append(Problem(n, "location/cityNumber", "place without commune (ror-commune-cog is 1..1)",
                                    "warning", eid))
    return out
