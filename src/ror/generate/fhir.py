"""FHIR R4 resources shaped like ``tests/fixtures/small/bundle.json``: ROR IG 0.7.0 profiles, extension
URLs, NOS systems, identifier systems and types, region tag, creation date, capacity records.

Builders return plain dicts (serialised with orjson by the writer); constant parts are shared objects.
"""

from __future__ import annotations

from ror.generate.model import Capacity, Contact, Internal, Legal, Offer, Person, Place, Role, Site
from ror.generate.nos import Nos
from ror.generate.places import Address
from ror.generate.rand import local_iso, local_midnight

SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
PROFILE = {t: [SD + p] for t, p in (("Organization", "ror-organization"), ("Location", "ror-location"),
                                      ("HealthcareService", "ror-healthcareservice"),
                                      ("Practitioner", "ror-practitioner"),
                                      ("PractitionerRole", "ror-practitionerrole"))}
CREATION = SD + "ror-meta-creation-date"
INSEE = "http://interopsante.org/fhir/StructureDefinition/FrAddressInseeCode"
PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"
IDNATST = "urn:oid:1.2.250.1.71.4.2.2"
IDNATPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "https://finess.esante.gouv.fr"
SIRENE = "https://sirene.fr"
RPPS_RANG = "https://rppsrang.esante.gouv.fr"
ADELI_RANG = "https://adelirang.esante.gouv.fr"
OI_SYSTEM = "https://oi.esante.gouv.fr"
G07, G08 = "TRE_G07-TypeIdentifiantStructure", "TRE_G08-TypeIdentifiantPersonne"
R283, R200 = "TRE_R283-NiveauConfidentialite", "TRE_R200-CanalCommunication"
DAYS = ("mon", "tue", "wed", "thu", "fri")


class Fhir:
    def __init__(self, nos: Nos, region: str):
        self.nos = nos
        self.region = region
        self.tag = [{"system": nos.url("TRE_R30-RegionOM"), "code": region}]
        self._types = {"G07:0" if (table, code) == (G07, "0") else code: {"coding": [nos.coding(table, code)]}
                       for table, code in ((G07, "40"), (G07, "1"), (G07, "2"), (G07, "3"), (G07, "4"), (G07, "0"),
                                           (G08, "8"), (G08, "0"), (G08, "30"),
                                           ("TRE_R345-TypeIdentifiantAutre", "42"),
                                           ("TRE_R354-TypeIdentifiantRessourceOperationnelle", "25"),
                                           ("TRE_R354-TypeIdentifiantRessourceOperationnelle", "26"),
                                           ("TRE_R355-TypeIdentifiantOffre", "35"))}
        self._age = {"system": nos.url("TRE_R247-UcumUniteMesure"), "code": "a"}
        self._savoir_faire = nos.concept("TRE_R04-TypeSavoirFaire", "S")

    # --- common parts ------------------------------------------------------------------------------
    def _meta(self, rtype: str, updated) -> dict:
        return {"lastUpdated": local_iso(self.region, updated), "profile": PROFILE[rtype], "tag": self.tag}

    def _creation(self, created) -> dict:
        return {"url": CREATION, "valueDateTime": local_iso(self.region, created)}

    def _ident(self, type_code: str, value: str, system: str | None = None, official: bool = False) -> dict:
        out = {"type": self._types[type_code]}
        if system:
            out["system"] = system
        out["value"] = value
        if official:
            out["use"] = "official"
        return out

    def _telecom_ext(self, channel: str, confidentiality: str, usage: str = "") -> list[dict]:
        ext = [{"url": SD + "ror-telecom-communication-channel",
                "valueCodeableConcept": self.nos.concept(R200, channel)},
               {"url": SD + "ror-telecom-confidentiality-level",
                "valueCodeableConcept": self.nos.concept(R283, confidentiality)}]
        if usage:
            ext.append({"url": SD + "ror-telecom-usage", "valueString": usage})
        return ext

    def _contact_point(self, channel: str, confidentiality: str, value: str, usage: str = "") -> dict:
        system = {"3": "email", "6": "fax"}.get(channel, "phone")
        return {"extension": self._telecom_ext(channel, confidentiality, usage), "system": system, "value": value}

    def _insee(self, address: Address) -> dict:
        c = address.commune
        return {"url": INSEE, "valueCoding": {"system": self.nos.url("TRE_R13-CommuneOM"), "code": c.cog,
                                              "display": c.name}}

    def _address(self, address: Address) -> dict:
        out = {"extension": [self._insee(address)]}
        if address.line:
            out["line"] = [address.line]
        out["city"] = address.commune.name
        out["postalCode"] = address.postcode
        return out

    def _meta_head(self, rtype: str, rid: str, updated, created) -> dict:
        return {"resourceType": rtype, "id": rid, "meta": self._meta(rtype, updated),
                "extension": [self._creation(created)]}

    # --- Organization ------------------------------------------------------------------------------
    def legal(self, ej: Legal) -> dict:
        res = self._meta_head("Organization", ej.rid, ej.updated, ej.created)
        ids = [self._ident("40", ej.idnat, IDNATST, official=True)]
        if ej.finess:
            ids.append(self._ident("1", ej.finess, FINESS))
        ids.append(self._ident("2", ej.siren, SIRENE))
        res["identifier"] = ids
        res["type"] = [self.nos.concept("TRE_R72-FinessStatutJuridique", ej.statut)]
        res["name"] = ej.name
        res["telecom"] = [self._contact_point("2", "1", ej.phone, "Standard")]
        res["address"] = [self._address(ej.address)]
        return res

    def site(self, eg: Site, drop_zone: bool | None, prices: list[dict], contacts: list[Contact]) -> dict:
        res = self._meta_head("Organization", eg.rid, eg.updated, eg.created)
        ext = res["extension"]
        if drop_zone is not None:
            ext.append({"url": SD + "ror-organization-drop-zone", "valueBoolean": drop_zone})
        ext.extend(prices)
        period = {"start": eg.opened.isoformat()}
        if eg.closed:
            period["end"] = eg.closed.isoformat()
        ext.append({"url": PERIOD, "valuePeriod": period})
        if eg.closed:
            ext.append({"url": SD + "ror-organization-closing-type",
                        "valueCodeableConcept": self.nos.concept("TRE_R286-TypeFermeture", "DEF")})
        ids = [self._ident("40", eg.idnat, IDNATST, official=True)]
        if eg.finess:
            ids.append(self._ident("1", eg.finess, FINESS))
        if eg.siret:
            ids.append(self._ident("3", eg.siret, SIRENE))
        if eg.rank:
            if eg.rank_type == "4":
                ids.append(self._ident("4", eg.rank, RPPS_RANG))
            else:
                ids.append(self._ident("G07:0", eg.rank, ADELI_RANG))
        res["identifier"] = ids
        table = "TRE_R02-SecteurActivite" if eg.kind.category.startswith("SA") else "TRE_R66-CategorieEtablissement"
        res["type"] = [self.nos.concept(table, eg.kind.category)]
        res["name"] = eg.name
        res["telecom"] = [self._contact_point("2", "1", eg.phone, "Standard")]
        res["address"] = [self._address(eg.address)]
        res["partOf"] = {"reference": f"Organization/{eg.legal.rid}"}
        if contacts:
            res["contact"] = [self._org_contact(c) for c in contacts]
        return res

    def _org_contact(self, c: Contact) -> dict:
        ext = []
        if c.function:
            ext.append({"url": SD + "ror-contact-function-contact",
                        "valueCodeableConcept": self.nos.concept("TRE_R251-FonctionContact", c.function)})
        ext.append({"url": SD + "ror-contact-confidentiality-level",
                    "valueCodeableConcept": self.nos.concept(R283, c.confidentiality)})
        out = {"extension": ext, "purpose": self.nos.concept("TRE_R287-NatureContact", c.purpose)}
        if c.name:
            out["name"] = {"text": c.name}
        out["telecom"] = [self._contact_point(c.channel, c.confidentiality, c.value)]
        return out

    def price(self, price_type: str, amount: float, start, residential: str = "", special: str = "",
              welcome: str = "", dependency: str = "") -> dict:
        n = self.nos
        ext = [{"url": "priceType", "valueCodeableConcept": n.concept("TRE_R246-TypeTarif", price_type)},
               {"url": "priceUnit", "valueCodeableConcept": n.concept("TRE_R228-UnitePrix", "2")},
               {"url": "amount", "valueMoney": {"value": amount, "currency": "EUR"}},
               {"url": "startDate", "valueDateTime": local_midnight(self.region, start)}]
        for url, table, code in (("residentialType", "TRE_R242-TypeHabitation", residential),
                                 ("specialPrice", "TRE_R250-ConditionTarifaire", special),
                                 ("welcomeType", "TRE_R240-TemporaliteAccueil", welcome),
                                 ("dependencyLevel", "TRE_R237-GroupeTarifaireDependance", dependency)):
            if code:
                ext.append({"url": url, "valueCodeableConcept": n.concept(table, code)})
        return {"extension": ext, "url": SD + "ror-organization-price"}

    def internal(self, oi: Internal) -> dict:
        res = self._meta_head("Organization", oi.rid, oi.updated, oi.created)
        res["identifier"] = [self._ident("42", oi.ident, OI_SYSTEM)]
        res["type"] = [self.nos.concept("TRE_R207-TypeOrganisationInterne", oi.type)]
        res["name"] = oi.name
        res["partOf"] = {"reference": f"Organization/{oi.site.rid}"}
        return res

    # --- Location ----------------------------------------------------------------------------------
    def place(self, p: Place) -> dict:
        n = self.nos
        c = p.address.commune
        res = {"resourceType": "Location", "id": p.rid, "meta": self._meta("Location", p.updated)}
        ext = [{"url": SD + "ror-commune-cog", "valueCodeableConcept": {"coding": [
                   {"system": n.url("TRE_R13-CommuneOM"), "code": c.cog, "display": c.name}]}},
               self._creation(p.created)]
        ext.extend(self._capacity(k) for k in p.capacities)
        for code, in_service, max_kg in p.equipment:
            ext.append({"extension": [
                {"url": "equipmentType", "valueCodeableConcept": n.concept("TRE_R212-Equipement", code, False)},
                {"url": "nbInService", "valueInteger": in_service},
                {"extension": [
                    {"url": "equipmentFeature",
                     "valueCodeableConcept": n.concept("TRE_R340-TypeCaracteristiqueEquipement", "001", False)},
                    {"url": "limitValue", "valueQuantity": {"value": max_kg, "unit": "kg",
                                                            "system": "http://unitsofmeasure.org", "code": "kg"}}],
                 "url": SD + "ror-location-equipment-limit"}],
                "url": SD + "ror-location-equipment"})
        for code, number in p.residential:
            ext.append({"extension": [
                {"url": "residentialType", "valueCodeableConcept": n.concept("TRE_R242-TypeHabitation", code, False)},
                {"url": "residentialNumber", "valueInteger": number}],
                "url": SD + "ror-location-residential-capacity"})
        res["extension"] = ext
        ids = []
        if p.ident:
            ids.append(self._ident("25", p.ident))
        if p.external:
            ids.append(self._ident("26", p.external))
        if ids:
            res["identifier"] = ids
        res["status"] = "active"
        res["operationalStatus"] = {"system": n.url("TRE_R203-StatutLieu"), "code": "3",
                                    "display": n.label("TRE_R203-StatutLieu", "3")}
        res["name"] = p.name
        if p.external_name:
            res["alias"] = [p.external_name]
        if p.capacities:
            res["type"] = [n.concept("TRE_R343-FonctionLieu", "001")]
        if p.phone:
            res["telecom"] = [self._contact_point("2", "2", p.phone, "Poste de soins")]
        addr = self._address(p.address)
        res["address"] = addr
        res["position"] = {"longitude": p.address.lon, "latitude": p.address.lat}
        return res

    def _capacity(self, k: Capacity) -> dict:
        n = self.nos
        sub = [{"url": "capacityType", "valueCodeableConcept": n.concept("TRE_R329-NatureCapacite", k.nature, False)},
               {"url": "capacityStatus",
                "valueCodeableConcept": n.concept("TRE_R330-TypeStatutCapacite", k.status, False)},
               {"url": "temporalityCapacity",
                "valueCodeableConcept": n.concept("TRE_R331-TemporaliteCapacite", k.temporality, False)},
               {"url": "nbCapacity", "valueInteger": k.number},
               {"url": "capacitySourceType",
                "valueCodeableConcept": n.concept("TRE_R335-TypeSourceCapacite", k.source, False)}]
        if k.gender:
            sub.append({"url": "genderCapacityAvailable",
                        "valueCodeableConcept": n.concept("TRE_R332-GenreCapacite", k.gender, False)})
        sub.append({"url": "capacityUpdateDate", "valueDateTime": local_iso(self.region, k.updated)})
        for url, table, code in (("capacityClosingType", "TRE_R333-TypeFermetureCapacite", k.closing),
                                 ("additionalBedType", "TRE_R334-TypeLitSupplementaire", k.extra_bed),
                                 ("crisisType", "TRE_R336-TypeCrise", k.crisis)):
            if code:
                sub.append({"url": url, "valueCodeableConcept": n.concept(table, code, False)})
        sub.append({"url": "temporaryAssignement",
                    "valueCodeableConcept": n.concept("TRE_R337-AffectationTemporaire", k.assignment, False)})
        return {"extension": sub, "url": SD + "ror-location-supported-capacity"}

    # --- HealthcareService -------------------------------------------------------------------------
    def offer(self, o: Offer) -> dict:
        n = self.nos
        u = o.unit
        res = {"resourceType": "HealthcareService", "id": o.rid, "meta": self._meta("HealthcareService", o.updated)}
        patient = [{"url": "supportedPatientInfo",
                    "valueCodeableConcept": n.concept("TRE_R239-PublicPrisEnCharge", u.public)},
                   {"url": "ageRange", "valueRange": {"low": {"value": o.ages[0], **self._age},
                                                      "high": {"value": o.ages[1], **self._age}}}]
        ext = [{"url": SD + "ror-healthcareservice-sensitive-unit", "valueBoolean": u.sensitive},
               {"extension": patient, "url": SD + "ror-healthcareservice-patient-type"},
               self._creation(o.created)]
        if o.no_consent:
            ext.append({"url": SD + "ror-healthcareservice-no-consent-habilitation", "valueBoolean": True})
        if o.sector:
            ext.append({"url": SD + "ror-healthcareservice-psychiatric-sector", "valueString": o.sector})
        for commune in o.zone:
            ext.append({"extension": [
                {"url": "typeTerritorialDivision",
                 "valueCodeableConcept": n.concept("TRE_R201-TypeDivisionTerritoriale", "3")},
                {"url": "codeTerritorialDivision", "valueCodeableConcept": {"coding": [
                    {"system": n.url("TRE_R13-CommuneOM"), "code": commune.cog, "display": commune.name}]}}],
                "url": SD + "ror-territorial-division"})
        ext.extend(self._offer_contact(c) for c in o.contacts)
        res["extension"] = ext
        res["identifier"] = [self._ident("35", o.ident)]
        res["active"] = o.closed is None or o.closed[1] is not None
        ref = "Organization/" + o.provider.rid
        res["providedBy"] = {"reference": ref}
        if u.category:
            res["category"] = [n.concept("TRE_R244-CategorieOrganisation", u.category)]
        res["type"] = [n.concept("TRE_R227-ChampActivite", u.champ)]
        res["specialty"] = [n.concept("TRE_R211-ActiviteOperationnelle", o.activity)]
        if o.places:
            res["location"] = [{"reference": "Location/" + p.rid} for p in o.places]
        if o.mailbox:
            res["telecom"] = [self._contact_point("3", "2", o.mailbox, "MSSanté")]
        res["name"] = o.name
        chars = [n.concept("TRE_R213-ModePriseEnCharge", u.mode)]
        if u.reception:
            chars.append(n.concept("TRE_R240-TemporaliteAccueil", u.reception))
        if u.opening:
            chars.append(n.concept("TRE_R238-OuvertureAnnuelle", u.opening))
        res["characteristic"] = chars
        if o.hours:
            start, end = o.hours
            res["availableTime"] = [{"extension": [
                {"url": SD + "ror-available-time-number-days-of-week", "valueInteger": i + 1},
                {"url": SD + "ror-available-time-effective-opening-closing-date",
                 "valuePeriod": {"start": o.created.date().isoformat()}}],
                "daysOfWeek": [day], "availableStartTime": start, "availableEndTime": end}
                for i, day in enumerate(DAYS)]
        if o.closed:
            during = {"start": o.closed[0].isoformat()}
            if o.closed[1]:
                during["end"] = o.closed[1].isoformat()
            res["notAvailable"] = [{"id": "closingReopeningDate",
                                    "description": "Période de fermeture et de réouverture prévisionnelle",
                                    "during": during}]
        return res

    def _offer_contact(self, c: Contact) -> dict:
        n = self.nos
        ext = []
        if c.name:
            ext.append({"url": "name", "valueHumanName": {"text": c.name}})
        if c.function:
            ext.append({"url": SD + "ror-contact-function-contact",
                        "valueCodeableConcept": n.concept("TRE_R251-FonctionContact", c.function)})
        ext.append({"url": "purposeContact", "valueCodeableConcept": n.concept("TRE_R287-NatureContact", c.purpose)})
        if c.description:
            ext.append({"url": "description", "valueString": c.description})
        ext.append({"url": SD + "ror-confidentiality-level",
                    "valueCodeableConcept": n.concept(R283, c.confidentiality)})
        telecom = self._telecom_ext(c.channel, c.confidentiality)
        telecom.append({"url": "telecomAddress", "valueString": c.value})
        ext.append({"extension": telecom, "url": SD + "ror-healthcareservice-contact-telecom"})
        return {"extension": ext, "url": SD + "ror-healthcareservice-contact"}

    # --- Practitioner, PractitionerRole -------------------------------------------------------------
    def person(self, p: Person) -> dict:
        res = self._meta_head("Practitioner", p.rid, p.updated, p.created)
        res["identifier"] = [self._ident(p.id_type, p.idnat, IDNATPS)]
        res["name"] = [{"family": p.family.title() if p.family.isupper() else p.family, "given": [p.given]}]
        if p.email:
            res["telecom"] = [self._contact_point("3", "2", p.email, "MSSanté")]
        return res

    def role(self, r: Role) -> dict:
        n = self.nos
        p = r.person
        res = {"resourceType": "PractitionerRole", "id": r.rid, "meta": self._meta("PractitionerRole", r.updated)}
        name = []
        if p.title:
            name.append({"url": "exerciseTitle",
                         "valueCodeableConcept": n.concept("TRE_R11-CiviliteExercice", p.title)})
        name.append({"url": "exerciseLastName", "valueString": p.family.title()})
        name.append({"url": "exerciseFirstName", "valueString": p.given})
        res["extension"] = [
            {"url": SD + "ror-practitionerrole-unit-exercise-mode",
             "valueCodeableConcept": n.concept("TRE_R23-ModeExercice", r.mode)},
            {"extension": name, "url": SD + "ror-practitionerrole-name"},
            self._creation(r.created)]
        res["identifier"] = [self._ident("30", r.ident)]
        res["practitioner"] = {"reference": "Practitioner/" + p.rid}
        res["organization"] = {"reference": "Organization/" + r.site.rid}
        res["code"] = [n.concept("TRE_G15-ProfessionSante", p.profession)]
        # expertiseType (TRE_R04, 1..1 in the profile): S (spécialité ordinale) for every professional, as
        # in the IG examples; the specialty slice (TRE_R38) only for those who have one (physicians, some
        # dentists). The other professions have no savoir-faire in the RPPS.
        res["specialty"] = [self._savoir_faire, n.concept("TRE_R38-SpecialiteOrdinale", p.specialty)] \
            if p.specialty else [self._savoir_faire]
        res["healthcareService"] = [{"reference": "HealthcareService/" + r.offer.rid}]
        if r.phone:
            res["telecom"] = [self._contact_point("2", "1", r.phone, "Cabinet")]
        return res
