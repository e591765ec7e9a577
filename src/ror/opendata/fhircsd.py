"""FHIR resources (as an access profile sees them) -> a CSD document of the ROR exposure model v3.0.

Mapping (the generator's, ``ror.generate.csd``, which follows the PLATINES sample responses; read back by
``ror.feeds.csd``):

- Organization (EJ, EG, OI) -> ``organization`` (identifiers -> ``otherID``, type -> ``codedType``, ``partOf``
  -> ``parent``; telecoms and contacts -> ``extension/contact``, address -> ``extension/location``);
- HealthcareService -> ``facility`` of type 4 (TRE_R207) + a ``service`` for its activity (TRE_R211);
- Location -> the offer's ``locationRealizedOffer`` (place, housing, capacity records);
- Practitioner (+ its roles) -> ``provider`` with the offers of its roles.

The element-by-element table is in ``docs/opendata.md``.

Business rule RG_EXP_002 of the exposure model: an entity whose mandatory elements are missing is not
transmitted (an offer without ``typeActivity``, ``careMode`` or an age range; a place without commune;
a capacity record without nature, status, temporality, number, source or date). What is left out is
counted (``omitted``) and reported in the manifest; the CSV and NDJSON files still carry it.
"""

from __future__ import annotations

from pathlib import Path

from ror.opendata import fhir as F
from ror.opendata.csdxml import AUTH_FINESS, AUTH_IDNATPS, AUTH_IDNATST, AUTH_OI, AUTH_SIRENE, EXT, CsdParts, esc_text

_AUTHORITIES = {"urn:oid:1.2.250.1.71.4.2.2": AUTH_IDNATST, "https://finess.esante.gouv.fr": AUTH_FINESS,
                "https://sirene.fr": AUTH_SIRENE, "urn:oid:1.2.250.1.71.4.2.1": AUTH_IDNATPS,
                "https://oi.esante.gouv.fr": AUTH_OI}
_DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 0}
_CHANNELS = {"phone": "2", "email": "3", "url": "4", "fax": "6"}
_TABLE_OIDS = {"R13": "TRE_R13-CommuneOM", "R207": "TRE_R207-TypeOrganisationInterne",
               "R343": "TRE_R343-FonctionLieu", "R200": "TRE_R200-CanalCommunication",
               "R283": "TRE_R283-NiveauConfidentialite", "R247": "TRE_R247-UcumUniteMesure"}
# capacity record (IG sub-extension) -> CSD element, in the XSD's order; the first six are mandatory
_CAP_CODED = (("capacityType", "capacityNature", "TRE_R329-NatureCapacite"),
              ("capacityStatus", "capacityStatus", "TRE_R330-TypeStatutCapacite"),
              ("temporalityCapacity", "capacityTemporality", "TRE_R331-TemporaliteCapacite"))
_CAP_OPTIONAL = (("genderCapacityAvailable", "capacityGenderAvailability", "TRE_R332-GenreCapacite"),
                 ("capacityClosingType", "capacityClosingType", "TRE_R333-TypeFermetureCapacite"),
                 ("additionalBedType", "capacityExtraBed", "TRE_R334-TypeLitSupplementaire"),
                 ("crisisType", "crisisType", "TRE_R336-TypeCrise"))


def _system(table: str) -> str:
    return f"{F.NOS_PREFIX}{table}/FHIR/{table.replace('_', '-', 1)}"


def _datetime(value: str | None) -> str | None:
    return value if value and "T" in value else None


class FhirCsd(CsdParts):
    """One region's CSD document, written entity by entity from FHIR resources."""

    def __init__(self, parts: Path, source: str):
        super().__init__(parts)
        self.source = source
        self.omitted: dict[str, int] = {}

    # -- small pieces ---------------------------------------------------------------------------------
    def _skip(self, what: str) -> None:
        self.omitted[what] = self.omitted.get(what, 0) + 1

    @staticmethod
    def coded(element: str, coding: dict | None) -> str:
        if not coding:
            return ""
        oid = F.oid_of(coding.get("system"))
        if not oid:
            return ""
        return f'<{element} code="{esc_text(coding["code"])}" codingScheme="{oid}"/>'

    def nos(self, element: str, table: str, code: str) -> str:
        return self.coded(element, {"system": _system(table), "code": code})

    def record(self, res: dict, updated: str | None = None) -> str:
        last = (res.get("meta") or {}).get("lastUpdated") or updated or "1970-01-01T00:00:00Z"
        created = _datetime((F.ext(res, F.CREATION) or {}).get("valueDateTime")) or last
        return (f'<record created="{created}" updated="{updated or last}" status="Ok" '
                f'sourceDirectory="{esc_text(self.source)}"/>')

    def _contact_point(self, channel: str, value: str, level: str, res: dict) -> str:
        return (f"<contactPoint>{self.nos('codedType', 'TRE_R200-CanalCommunication', channel)}"
                f"<equipment>{esc_text(value)}</equipment><extension{EXT}>"
                f"{self.nos('confidentialityLevel', 'TRE_R283-NiveauConfidentialite', level)}"
                f"{self.record(res)}</extension></contactPoint>")

    def _telecom_point(self, t: dict, res: dict) -> str:
        if not t.get("value"):
            return ""
        channel = F.value_coding(F.ext(t, F.CHANNEL))
        code = channel["code"] if channel else _CHANNELS.get(t.get("system", ""), "")
        if not code:
            return ""
        level = next((F.value_coding(F.ext(t, u)) for u in F.CONFIDENTIALITY if F.ext(t, u)), None)
        return self._contact_point(code, t["value"], level["code"] if level else "1", res)

    def _level(self, node: dict) -> str:
        level = next((F.value_coding(F.ext(node, u)) for u in F.CONFIDENTIALITY if F.ext(node, u)), None)
        return level["code"] if level else "1"

    def _contact(self, res: dict, points: list[str], level: str, name: str = "", function: dict | None = None,
                 nature: dict | None = None, description: str = "") -> str:
        if not points:
            return ""
        return ("<contact>" + (f"<name>{esc_text(name)}</name>" if name else "")
                + self.coded("function", function) + self.coded("nature", nature)
                + (f"<description>{esc_text(description)}</description>" if description else "")
                + self.nos("confidentialityLevel", "TRE_R283-NiveauConfidentialite", level)
                + "".join(points) + self.record(res) + "</contact>")

    def _address(self, a: dict | None) -> str:
        if not a:
            return ""
        attrs = []
        street = " ".join(x for x in a.get("line", ()) if x)
        if street:
            attrs.append(f'streetName="{esc_text(street)}"')
        if a.get("postalCode"):
            attrs.append(f'postCode="{esc_text(a["postalCode"])}"')
        if a.get("city"):
            attrs.append(f'cityName="{esc_text(a["city"])}"')
        return f"<address><addressLine {' '.join(attrs)}/></address>" if attrs else ""

    def _location(self, res: dict, place: dict | None = None) -> str:
        """A CSD ``location`` for an address (organisation) or a place; empty without commune (mandatory)."""
        node = place or res
        cog = F.commune(node)
        if not cog:
            return ""
        out = ["<location>"]
        if place is not None:
            ident = next((i.get("value") for i in place.get("identifier", ())
                          if (F.first(i.get("type")) or {}).get("code") == "25" and i.get("value")), None)
            if ident:
                out.append(f'<identifier entityID="{esc_text(ident)}"/>')
            if place.get("name"):
                out.append(f"<name>{esc_text(place['name'])}</name>")
            if place.get("description"):
                out.append(f"<description>{esc_text(place['description'])}</description>")
            status = place.get("operationalStatus")
            if status and F.table_of(status.get("system")) == "TRE_R203-StatutLieu":
                out.append(self.coded("status", status))
        out.append(self._address(F.main_address(node)))
        pos = F.position(node) if place is not None else None
        if pos:
            out.append(f"<geoCoordinates><latitude>{pos[0]!r}</latitude><longitude>{pos[1]!r}</longitude>"
                       f"<coordinateSystem>WGS84</coordinateSystem>{self.record(node)}</geoCoordinates>")
        function = next((c for c in F.codes_of(node.get("type") if place is not None else None, "TRE_R343")), None)
        out.append(self.coded("functionLocation", function) or self.nos("functionLocation", "TRE_R343-FonctionLieu",
                                                                         "001"))
        out.append(self.nos("cityNumber", "TRE_R13-CommuneOM", cog["code"]))
        if place is not None:
            point = next((p for p in (self._telecom_point(t, place) for t in place.get("telecom", ())) if p), "")
            out.append(point)
        out.append(self.record(node))
        out.append("</location>")
        return "".join(out)

    # -- organisations --------------------------------------------------------------------------------
    def organization(self, res: dict) -> None:
        ids = []
        for i in res.get("identifier", ()):
            authority = _AUTHORITIES.get(i.get("system", ""), (i.get("system") or "").removeprefix("urn:oid:"))
            if i.get("value") and authority:
                ids.append(f'<otherID code="{esc_text(i["value"])}" assigningAuthorityName="{esc_text(authority)}"/>')
        types = "".join(self.coded("codedType", c) for c in F.codes_of(res.get("type")))
        parent = F.ref_id(res.get("partOf"))
        ext = [self._contact(res, [p], self._level(t)) for t in res.get("telecom", ())
               if (p := self._telecom_point(t, res))]
        for c in res.get("contact", ()):
            points = [p for t in c.get("telecom", ()) if (p := self._telecom_point(t, res))]
            function = F.value_coding(F.ext(c, F.ROR + "ror-contact-function-contact"))
            ext.append(self._contact(res, points, self._level(c), (c.get("name") or {}).get("text", ""), function,
                                     F.first(c.get("purpose"))))
        ext.append(self._location(res))
        period = (F.ext(res, "http://hl7.org/fhir/StructureDefinition/organization-period") or {}).get("valuePeriod")
        start = (period or {}).get("start") or (F.ext(res, F.CREATION) or {}).get("valueDateTime")
        if start:
            ext.append(f"<creationDate>{start[:10]}</creationDate>")
        if (period or {}).get("end"):
            ext.append(f"<closingDate>{period['end'][:10]}</closingDate>")
        body = "".join(ext)
        self.org.write(
            f'<organization entityID="{esc_text(res["id"])}">{"".join(ids)}{types}'
            f"<primaryName>{esc_text(res.get('name', ''))}</primaryName>"
            + (f'<parent entityID="{esc_text(parent)}"/>' if parent else "")
            + (f"<extension{EXT}>{body}</extension>" if body else "")
            + f"{self.record(res)}</organization>\n")

    # -- offers ---------------------------------------------------------------------------------------
    def service_id(self, hs: dict) -> str | None:
        activity = next(iter(F.codes_of(hs.get("specialty"), "TRE_R211")), None)
        return f"{hs['id']}_{activity['code']}" if activity else None

    def offer(self, hs: dict, places: list[dict]) -> bool:
        """Writes the offer (facility, service); False when RG_EXP_002 leaves it out."""
        champs = F.codes_of(hs.get("type"), "TRE_R227")
        care = next(iter(F.codes_of(hs.get("characteristic"), "TRE_R213")), None)
        patient = F.ext(hs, F.PATIENT_TYPE) or {}
        ages = (F.ext(patient, "ageRange") or {}).get("valueRange") or {}
        low, high = (ages.get("low") or {}).get("value"), (ages.get("high") or {}).get("value")
        if not champs or not care or low is None or high is None:
            self._skip("offer")
            return False
        sid = self.service_id(hs)
        activity = next(iter(F.codes_of(hs.get("specialty"), "TRE_R211")), None)
        if sid and activity:
            self.service.write(f'<service entityID="{esc_text(sid)}">{self.coded("codedType", activity)}'
                               f"{self.record(hs)}</service>\n")
        ext = []
        for c in F.exts(hs, F.CONTACT_HS):
            points = []
            for t in F.exts(c, F.CONTACT_TELECOM):
                channel = F.value_coding(F.ext(t, F.CHANNEL))
                value = (F.ext(t, "telecomAddress") or {}).get("valueString")
                if channel and value:
                    points.append(self._contact_point(channel["code"], value, self._level(t), hs))
            name = (F.ext(c, "name") or {}).get("valueString", "")
            description = (F.ext(c, "description") or {}).get("valueString", "")
            ext.append(self._contact(hs, points, self._level(c), name,
                                     F.value_coding(F.ext(c, "functionContact")),
                                     F.value_coding(F.ext(c, "purposeContact")), description))
        closing = next((n.get("during") or {} for n in hs.get("notAvailable", ()) if (n.get("during") or {}).get(
            "start")), {})
        if closing:
            ext.append(f"<closingDate>{closing['start'][:10]}</closingDate>")
        created = (F.ext(hs, F.CREATION) or {}).get("valueDateTime")
        if created:
            ext.append(f"<creationDate>{created[:10]}</creationDate>")
        ext += [self.coded("typeActivity", c) for c in champs]
        ext.append(self.coded("careMode", care))
        unit = self.nos("unit", "TRE_R247-UcumUniteMesure", "a")
        publics = "".join(self.coded("supportedPatient", c)
                          for c in F.codes_of([(F.ext(patient, "supportedPatientInfo") or {}).get(
                              "valueCodeableConcept")], "TRE_R239"))
        ext.append(f"<patientsType>{publics}<patientTypeAgeMin><value>{low}</value>{unit}</patientTypeAgeMin>"
                   f"<patientTypeAgeMax><value>{high}</value>{unit}</patientTypeAgeMax>{self.record(hs)}"
                   f"</patientsType>")
        category = next(iter(F.codes_of(hs.get("category"), "TRE_R244")), None)
        ext.append(self.coded("facilityType", category))
        if closing.get("end"):
            ext.append(f"<ProvisionalReopeningDate>{closing['end'][:10]}</ProvisionalReopeningDate>")
        sector = (F.ext(hs, F.PSY_SECTOR) or {}).get("valueString")
        if sector:
            ext.append(f"<psychiatricSector>{esc_text(sector)}</psychiatricSector>")
        sensitive = (F.ext(hs, F.SENSITIVE) or {}).get("valueBoolean")
        if sensitive is not None:
            ext.append(f"<sensitiveUnit>{'true' if sensitive else 'false'}</sensitiveUnit>")
        ext += [self._realized(p) for p in places]
        hours = []
        for a in hs.get("availableTime", ()):
            start, end = a.get("availableStartTime"), a.get("availableEndTime")
            if not start or not end:
                continue
            period = (F.ext(a, F.ROR + "ror-available-time-effective-opening-closing-date") or {}).get(
                "valuePeriod") or {}
            begin = period.get("start") or (created or "")[:10]
            if not begin:
                continue
            for d in a.get("daysOfWeek", ()):
                if d in _DAYS:
                    hours.append(f"<operatingHours><dayOfTheWeek>{_DAYS[d]}</dayOfTheWeek><beginningHour>{start}"
                                 f"</beginningHour><endingHour>{end}</endingHour><beginEffectiveDate>{begin[:10]}"
                                 f"</beginEffectiveDate>"
                                 + (f"<endEffectiveDate>{period['end'][:10]}</endEffectiveDate>"
                                    if period.get("end") else "") + "</operatingHours>")
        ident = next((i.get("value") for i in hs.get("identifier", ()) if i.get("value")), None)
        provider = F.ref_id(hs.get("providedBy"))
        orgs = ""
        if provider:
            orgs = (f'<organizations><organization entityID="{esc_text(provider)}">'
                    + (f'<service entityID="{esc_text(sid)}"/>' if sid else "") + "</organization></organizations>")
        self.facility.write(
            f'<facility entityID="{esc_text(hs["id"])}">'
            + (f'<otherID code="{esc_text(ident)}" assigningAuthorityName="{AUTH_IDNATST}"/>' if ident else "")
            + self.nos("codedType", "TRE_R207-TypeOrganisationInterne", "4")
            + f"<primaryName>{esc_text(hs.get('name', ''))}</primaryName>{orgs}{''.join(hours)}"
            f"<extension{EXT}>{''.join(ext)}</extension>{self.record(hs)}</facility>\n")
        return True

    def _realized(self, place: dict) -> str:
        location = self._location(place, place)
        if not location:
            self._skip("place")
            return ""
        out = ["<locationRealizedOffer>"]
        sync = next((i.get("value") for i in place.get("identifier", ())
                     if (F.first(i.get("type")) or {}).get("code") == "26" and i.get("value")), None)
        if sync:
            out.append(f'<externalidSynchronization entityID="{esc_text(sync)}"/>')
        alias = (place.get("alias") or [place.get("name") or ""])[0]
        out.append(f"<externalNameSynchronization>{esc_text(alias)}</externalNameSynchronization>")
        out.append(location)
        for r in F.exts(place, F.RESIDENTIAL):
            kind = F.value_coding(F.ext(r, "residentialType"))
            number = (F.ext(r, "residentialNumber") or {}).get("valueInteger")
            if kind and number is not None:
                out.append(f"<residentialCapactity>{self.coded('residentialType', kind)}"
                           f"<residentialNumber>{number}</residentialNumber>{self.record(place)}"
                           f"</residentialCapactity>")
        by_assignment: dict[str, list[str]] = {}
        for cap in F.capacities(place):
            text = self._capacity(cap)
            if text:
                by_assignment.setdefault(cap.get("temporaryAssignement", "01"), []).append(text)
        for assignment, records in by_assignment.items():
            kind = self.nos("temporaryAssignment", "TRE_R337-AffectationTemporaire", assignment)
            out.append(f"<capacitySupported>{kind}{''.join(records)}{self.record(place)}</capacitySupported>")
        out.append(f"{self.record(place)}</locationRealizedOffer>")
        return "".join(out)

    def _capacity(self, cap: dict) -> str:
        updated = _datetime(cap.get("capacityUpdateDate"))
        if not all(cap.get(k) for k, _, _ in _CAP_CODED) or cap.get("nbCapacity") is None \
                or not cap.get("capacitySourceType") or not updated:
            self._skip("capacity")
            return ""
        out = [self.nos(element, table, cap[k]) for k, element, table in _CAP_CODED]
        out.append(f"<capacityNumber>{int(cap['nbCapacity'])}</capacityNumber>")
        out.append(self.nos("capacitySourceType", "TRE_R335-TypeSourceCapacite", cap["capacitySourceType"]))
        out.append(f"<cpacityUpdateDate>{updated}</cpacityUpdateDate>")  # (sic) the XSD's name
        out += [self.nos(element, table, cap[k]) for k, element, table in _CAP_OPTIONAL if cap.get(k)]
        return (f"<operationalAccommodationCapacity>{''.join(out)}"
                f'<record created="{updated}" updated="{updated}" status="Ok" '
                f'sourceDirectory="{esc_text(self.source)}"/></operationalAccommodationCapacity>')

    # -- professionals --------------------------------------------------------------------------------
    def practitioner(self, res: dict, offers: list[tuple[str, str | None]], professions: list[dict]) -> None:
        ids = "".join(f'<otherID code="{esc_text(i["value"])}" assigningAuthorityName="{AUTH_IDNATPS}"/>'
                      for i in res.get("identifier", ()) if i.get("system") == "urn:oid:1.2.250.1.71.4.2.1"
                      and i.get("value"))
        types = "".join(self.coded("codedType", c) for q in res.get("qualification", ())
                        for c in F.codes_of([q.get("code")])) \
            or "".join(self.coded("codedType", c) for c in professions)
        if not types:
            self._skip("practitioner")
            return
        name = (res.get("name") or [{}])[0]
        given = " ".join(name.get("given", ()))
        family = name.get("family", "")
        common = " ".join(x for x in (given, family) if x) or name.get("text", "")
        demographic = (f"<demographic><name><commonName>{esc_text(common)}</commonName>"
                       + (f"<forename>{esc_text(given)}</forename>" if given else "")
                       + (f"<surname>{esc_text(family)}</surname>" if family else "") + "</name></demographic>")
        facilities = "".join(f'<facility entityID="{esc_text(fid)}">'
                             + (f'<service entityID="{esc_text(sid)}"/>' if sid else "") + "</facility>"
                             for fid, sid in offers)
        self.provider.write(
            f'<provider entityID="{esc_text(res["id"])}">{ids}{types}{demographic}'
            + (f"<facilities>{facilities}</facilities>" if facilities else "")
            + f"{self.record(res)}</provider>\n")
