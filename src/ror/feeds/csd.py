"""IHE CSD XML of the ROR exposure model (v2.4 / v3.0): directory entries -> FHIR resources.

Mapping (checked against ``IHE_ProfilCSD-ExtensionROR_fr-v2.4/v3.0.xsd`` and the PLATINES sample
responses): ``organization`` -> Organization (EJ without ``parent``, EG with it, ``parent`` -> partOf);
``facility`` (unit, organisation interne) -> HealthcareService provided by its organisation, with the
activities of the ``service`` entries it offers; ``provider`` -> Practitioner. Entries are streamed
and cleared once mapped; "line" is the position of the entry in its directory order.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from ror.errors import InputFileError
from ror.feeds.csd_places import available_time, datetime_of, not_available, places
from ror.feeds.fhirmap import IDNATPS, PROFILE, ROR, address, creation, prune, region_tag
from ror.feeds.model import Entity, Problem, Record, concept, key, ref
from ror.feeds.regional import RegionalFeed, coded, identifier_of

CSD = "{urn:ihe:iti:csd:2013}"
_DIRECTORIES = {CSD + "organizationDirectory": "organization", CSD + "facilityDirectory": "facility",
                CSD + "providerDirectory": "provider", CSD + "serviceDirectory": "service"}
_RTYPE = {"organization": "Organization", "facility": "HealthcareService", "provider": "Practitioner"}


def _entries(path: Path) -> Iterator[tuple[str, Element]]:
    """Directory entries in document order, each cleared after use; refuses any DTD."""
    stack: list[str] = []
    try:
        for event, elem in iterparse(str(path), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                stack.append(elem.tag)
                continue
            stack.pop()
            if elem.tag == CSD + "error" and elem.get("code"):
                raise InputFileError(f"{path}: the file is a CSD error response ({elem.get('code')}: "
                                     f"{elem.get('message', '')}), not an extract")
            kind = _DIRECTORIES.get(stack[-1]) if stack else None
            if kind and elem.tag == CSD + kind:
                yield kind, elem
                elem.clear()
    except DefusedXmlException as e:
        raise InputFileError(f"{path}: refused, the XML declares a document type or entities ({type(e).__name__}); "
                             f"regional extracts must not (this is how external-entity (XXE) and entity-expansion "
                             f"attacks are carried)") from None
    except ParseError as e:
        raise InputFileError(f"{path}: not well-formed XML ({e})") from None


def _text(e: Element | None, tag: str) -> str:
    found = e.find(CSD + tag) if e is not None else None
    return (found.text or "").strip() if found is not None else ""


def _org_ids(e: Element) -> tuple[list[dict], list[dict]]:
    """(identifiers, those that are identity keys). A cabinet identifier given under the professionals'
    authority (``identifier_of``) is the professional's: the EJ and its EGs all carry it (the PLATINES
    sample does), so it is kept on each but is no identity key (it would merge the EJ and its EG)."""
    ids, keyed = [], []
    for o in e.findall(CSD + "otherID"):
        i = identifier_of(o.get("assigningAuthorityName", ""), o.get("code", ""))
        if i:
            ids.append(i)
            if o.get("assigningAuthorityName") != IDNATPS.removeprefix("urn:oid:"):
                keyed.append(i)
    return ids, keyed


def _org_keys(feed: RegionalFeed, eid: str, ids: list[dict]) -> list[str]:
    return feed._keys({"resourceType": "Organization", "id": eid, "identifier": ids})


def read_csd(feed: RegionalFeed, path: Path) -> Iterator[Record | Problem]:
    feed.notes.append("CSD XML: 'line' is the position of the directory entry")
    strongest: dict[tuple[str, str], str] = {}
    services: dict[str, dict] = {}
    communes: dict[str, str] = {}  # organisation entityID -> its commune (for the places of ME 2.4 offers)
    for kind, e in _entries(path):  # pass 1: identities, activity codes of services
        eid = e.get("entityID", "")
        if kind == "organization":
            strongest[("Organization", eid)] = _org_keys(feed, eid, _org_ids(e)[1])[0]
            city = e.find(f"{CSD}extension/{CSD}location/{CSD}cityNumber")
            if city is not None and city.get("code"):
                communes[eid] = city.get("code", "")
        elif kind == "service":
            c = e.find(CSD + "codedType")
            if c is not None:
                services[eid] = coded(c.get("codingScheme", ""), c.get("code", "")) or {}
        elif kind in _RTYPE:
            strongest[(_RTYPE[kind], eid)] = feed.technical(_RTYPE[kind], eid)
    for n, (kind, e) in enumerate(_entries(path), 1):  # pass 2: resources
        if kind == "service":
            continue
        eid = e.get("entityID", "")
        if not eid:
            yield Problem(n, "entityID", f"{kind} without entityID", record=kind)
            continue
        warnings: list[Problem] = []
        if kind == "organization":
            entity = _organization(feed, n, e, eid, strongest, warnings)
        elif kind == "facility":
            yield Record(n, _facility(feed, n, e, eid, strongest, services, communes, warnings), warnings)
            continue
        else:
            entity = _provider(feed, e, eid)
        yield Record(n, [entity], warnings)


def _meta(rtype: str, region: str) -> dict:
    return {"profile": [PROFILE[rtype]], "tag": region_tag(region)}


def _created(e: Element, region: str) -> list[dict]:
    """The ROR creation date; a time without offset is the region's local time (FHIR dateTime needs one)."""
    record = e.find(CSD + "record")
    created = record.get("created", "") if record is not None else ""
    return creation(datetime_of(created, region) or None)


def _codes(n: int, e: Element, warnings: list[Problem], field: str) -> list[dict]:
    out = []
    for c in e.findall(CSD + "codedType"):
        cc = coded(c.get("codingScheme", ""), c.get("code", ""))
        if cc is None:
            warnings.append(Problem(n, field, f"code '{c.get('code')}' is not in the table of {c.get('codingScheme')}: "
                                    f"left out", "warning", e.get("entityID", "")))
        else:
            out.append(cc)
    return out


def _telecom(ext: Element | None) -> list[dict]:
    out = []
    for cp in ext.iter(CSD + "contactPoint") if ext is not None else ():
        channel = cp.find(CSD + "codedType")
        value = _text(cp, "equipment")
        level = cp.find(f"{CSD}extension/{CSD}confidentialityLevel")
        if channel is None or not value:
            continue
        exts = [{"url": ROR + "ror-telecom-communication-channel",
                 "valueCodeableConcept": concept("TRE_R200-CanalCommunication", channel.get("code", ""))},
                {"url": ROR + "ror-telecom-confidentiality-level",
                 "valueCodeableConcept": concept("TRE_R283-NiveauConfidentialite",
                                                 level.get("code", "1") if level is not None else "1")}]
        systems = {"1": "phone", "2": "phone", "3": "email", "4": "url", "6": "fax"}
        system = systems.get(channel.get("code", ""), "other")
        out.append({"extension": exts, "system": system, "value": value})
    return out


def _organization(feed: RegionalFeed, n: int, e: Element, eid: str, strongest: dict,
                  warnings: list[Problem]) -> Entity:
    ids, keyed = _org_ids(e)
    ext = e.find(CSD + "extension")
    loc = ext.find(CSD + "location") if ext is not None else None
    line = loc.find(f"{CSD}address/{CSD}addressLine") if loc is not None else None
    city = loc.find(CSD + "cityNumber") if loc is not None else None
    parent = e.find(CSD + "parent")
    addr = address(number=line.get("buildingNumber", ""), street_type=line.get("streetType", ""),
                   street=line.get("streetName", ""), postcode=line.get("postCode", ""),
                   city=line.get("cityName", ""), cog=city.get("code", "") if city is not None else "") \
        if line is not None else None
    partof = None
    if parent is not None:
        pid = parent.get("entityID", "")
        partof = ref("Organization", strongest.get(("Organization", pid)) or feed.technical("Organization", pid))
    res = prune({
        "resourceType": "Organization", "meta": _meta("Organization", feed.region),
        "extension": _created(e, feed.region),
        "identifier": ids, "active": True, "type": _codes(n, e, warnings, "codedType"),
        "name": _text(e, "primaryName"), "telecom": _telecom(ext), "address": [addr] if addr else None,
        "partOf": partof})
    return Entity("Organization", _org_keys(feed, eid, keyed), res, "Organization")


def _facility(feed: RegionalFeed, n: int, e: Element, eid: str, strongest: dict, services: dict,
              communes: dict[str, str], warnings: list[Problem]) -> list[Entity]:
    """The offer (HealthcareService) and its places with their capacities (Locations, ``csd_places``)."""
    ext = e.find(CSD + "extension")
    org = e.find(f"{CSD}organizations/{CSD}organization")
    provider = None
    oid = ""
    activities: list[dict] = []
    if org is not None:
        oid = org.get("entityID", "")
        provider = ref("Organization", strongest.get(("Organization", oid)) or feed.technical("Organization", oid))
        activities = [services[s.get("entityID", "")] for s in org.findall(CSD + "service")
                      if services.get(s.get("entityID", ""))]
    characteristic, extensions, htype = [], [], []
    if ext is not None:
        for tag, target in (("typeActivity", htype), ("careMode", characteristic)):
            c = ext.find(CSD + tag)
            if c is not None:
                cc = coded(c.get("codingScheme", ""), c.get("code", ""))
                if cc:
                    target.append(cc)
                else:
                    warnings.append(Problem(n, tag, f"code '{c.get('code')}' is unknown: left out", "warning", eid))
        for p in ext.findall(f"{CSD}resourcesSkills/{CSD}profession"):
            cc = coded(p.get("codingScheme", ""), p.get("code", ""))
            if cc:
                characteristic.append(cc)
        low, high = _text(ext.find(f"{CSD}patientsType/{CSD}patientTypeAgeMin"), "value"), \
            _text(ext.find(f"{CSD}patientsType/{CSD}patientTypeAgeMax"), "value")
        if low or high:
            rng = {k: {"value": int(v), "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}
                   for k, v in (("low", low), ("high", high)) if v.isdigit()}
            extensions.append({"url": ROR + "ror-healthcareservice-patient-type",
                               "extension": [{"url": "ageRange", "valueRange": rng}]})
        sensitive = _text(ext, "sensitiveUnit")
        if sensitive in ("true", "false"):
            extensions.append({"url": ROR + "ror-healthcareservice-sensitive-unit",
                               "valueBoolean": sensitive == "true"})
    locations = places(feed, n, e, eid, communes, oid, _telecom, warnings)
    # ROR 3 has one operational activity per offer (HealthcareService.specialty:operationalActivity 1..1)
    # where a ROR 2.4 unit offers several services: one offer per activity. The first keeps the unit's id
    # (what a one-activity unit maps to, so adding an activity later does not move it); the others are
    # "<entityID>.<activity code>".
    offers = [(eid, [a]) for a in activities[:1]] + [(f"{eid}.{a['coding'][0]['code']}", [a])
                                                      for a in activities[1:]]
    if len(offers) > 1:
        warnings.append(Problem(n, "organizations/organization/service",
                                f"unit {eid} offers {len(offers)} operational activities, one per offer in ROR 3: "
                                f"split into offers {', '.join(o for o, _ in offers)}", "warning", eid))
    common = {
        "extension": [*_created(e, feed.region), *extensions],
        "active": True, "providedBy": provider, "name": _text(e, "primaryName"), "type": htype,
        "characteristic": characteristic, "location": [ref("Location", x.keys[0]) for x in locations],
        "availableTime": available_time(n, e, eid, warnings), "notAvailable": not_available(ext)}
    out = []
    for oid_, specialty in offers or [(eid, [])]:
        res = prune({
            "resourceType": "HealthcareService", "meta": _meta("HealthcareService", feed.region),
            "identifier": [{"type": concept("TRE_R355-TypeIdentifiantOffre", "35"),
                            "value": f"{feed.region}/{oid_}"}],
            **copy.deepcopy(common), "specialty": specialty})
        out.append(Entity("HealthcareService", [feed.technical("HealthcareService", oid_)], res, "HealthcareService"))
    return [*out, *locations]


def _provider(feed: RegionalFeed, e: Element, eid: str) -> Entity:
    ids = [{"system": IDNATPS, "value": o.get("code", "")} for o in e.findall(CSD + "otherID")
           if o.get("assigningAuthorityName") == IDNATPS.removeprefix("urn:oid:") and o.get("code")]
    name = e.find(f"{CSD}demographic/{CSD}name")
    quals = [{"code": cc} for c in e.findall(CSD + "codedType")
             if (cc := coded(c.get("codingScheme", ""), c.get("code", "")))]
    res = prune({
        "resourceType": "Practitioner", "meta": _meta("Practitioner", feed.region),
        "extension": _created(e, feed.region),
        "identifier": ids, "active": True,
        "name": [prune({"family": _text(name, "commonName"),
                        "given": [_text(name, "forename")] if _text(name, "forename") else None})]
        if name is not None else None,
        "qualification": quals})
    keys = [key(IDNATPS, i["value"]) for i in ids] + [feed.technical("Practitioner", eid)]
    return Entity("Practitioner", keys, res, "Practitioner")
