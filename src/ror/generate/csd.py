"""The region's offer as an IHE CSD document of the ROR exposure model (``urn:ihe:iti:csd:2013`` with the
ROR extensions of ``IHE_ProfilCSD-ExtensionROR_fr-v3.0.xsd``).

Mapping, as in the PLATINES sample responses: EJ, EG and internal organisations are ``organization``
entries (``parent`` = the level above); each offer is a ``facility`` of type ``4`` (unité élémentaire,
TRE_R207) whose ``organizations/organization`` points to the organisation providing it and whose
``service`` is its operational activity (``serviceDirectory``, TRE_R211); places and capacities are the
offer's ``locationRealizedOffer``; professionals are ``provider`` entries listing the offers they work
in. Identifier authorities follow the PLATINES schematron rules (idNatStruct ``1.2.250.1.71.4.2.2``,
FINESS ``1.2.250.1.213.3.2``, SIREN/SIRET ``1.3.2``, idNat_PS ``1.2.250.1.71.4.2.1``); coding schemes
are the OIDs of the NOS tables.

The four directories must appear in that order, while entities are produced site by site: the part files
and their joining are ``ror.opendata.csdxml.CsdParts``, shared with the open-data files.
"""

from __future__ import annotations

from pathlib import Path

from ror.generate.model import Contact, Internal, Legal, Offer, Person, Place, Site
from ror.generate.nos import Nos
from ror.generate.places import Address
from ror.generate.rand import local_iso
from ror.opendata.csdxml import (  # noqa: F401 (re-exported: the names this module has always offered)
    AUTH_FINESS,
    AUTH_IDNATPS,
    AUTH_IDNATST,
    AUTH_OI,
    AUTH_SIRENE,
    DIRECTORIES,
    EXT,
    NS,
    CsdParts,
    esc,
)


class Csd(CsdParts):
    def __init__(self, nos: Nos, region: str, parts: Path):
        super().__init__(parts)
        self.nos = nos
        self.region = region
        self.source = f"https://ror.example/region/{region}"
        self._coded: dict[tuple[str, str, str], str] = {}
        self._records: dict[tuple, str] = {}
        self._places: dict[str, str] = {}

    def coded(self, element: str, table: str, code: str) -> str:
        key = (element, table, code)
        found = self._coded.get(key)
        if found is None:
            found = self._coded[key] = f'<{element} code="{code}" codingScheme="{self.nos.oid(table)}"/>'
        return found

    def record(self, created, updated) -> str:
        key = (created, updated)
        found = self._records.get(key)
        if found is None:
            if len(self._records) > 4096:  # an entity's records are written together: a small cache is enough
                self._records.clear()
            found = self._records[key] = (
                f'<record created="{local_iso(self.region, created)}" updated="{local_iso(self.region, updated)}" '
                f'status="Ok" sourceDirectory="{self.source}"/>')
        return found

    def _address(self, a: Address) -> str:
        attrs = []
        if a.number:
            attrs.append(f'buildingNumber="{a.number}"')
        if a.street_code:
            attrs.append(f'streetType="{a.street_code}"')
        attrs.append(f'streetName="{esc(a.street)}" postCode="{a.postcode}" cityName="{esc(a.commune.name)}"')
        return f"<address><addressLine {' '.join(attrs)}/></address>"

    def _location(self, a: Address, created, updated, name: str = "", ident: str = "") -> str:
        out = ["<location>"]
        if ident:
            out.append(f'<identifier entityID="{esc(ident)}"/>')
        if name:
            out.append(f"<name>{esc(name)}</name>")
        out.append(self._address(a))
        out.append(f"<geoCoordinates><latitude>{a.lat}</latitude><longitude>{a.lon}</longitude>"
                   f"<coordinateSystem>WGS84</coordinateSystem>{self.record(created, updated)}</geoCoordinates>")
        out.append(self.coded("functionLocation", "TRE_R343-FonctionLieu", "001"))
        out.append(self.coded("cityNumber", "TRE_R13-CommuneOM", a.commune.cog))
        out.append(self.record(created, updated))
        out.append("</location>")
        return "".join(out)

    def _contact(self, c: Contact, created, updated) -> str:
        out = ["<contact>"]
        if c.name:
            out.append(f"<name>{esc(c.name)}</name>")
        if c.function:
            out.append(self.coded("function", "TRE_R251-FonctionContact", c.function))
        out.append(self.coded("nature", "TRE_R287-NatureContact", c.purpose))
        if c.description:
            out.append(f"<description>{esc(c.description)}</description>")
        out.append(self.coded("confidentialityLevel", "TRE_R283-NiveauConfidentialite", c.confidentiality))
        out.append(f"<contactPoint>{self.coded('codedType', 'TRE_R200-CanalCommunication', c.channel)}"
                   f"<equipment>{esc(c.value)}</equipment><extension{EXT}>"
                   f"{self.coded('confidentialityLevel', 'TRE_R283-NiveauConfidentialite', c.confidentiality)}"
                   f"{self.record(created, updated)}</extension></contactPoint>")
        out.append(self.record(created, updated))
        out.append("</contact>")
        return "".join(out)

    # --- organizations --------------------------------------------------------------------------
    def legal(self, ej: Legal) -> None:
        ids = [f'<otherID code="{ej.idnat}" assigningAuthorityName="{AUTH_IDNATST}"/>']
        if ej.finess:
            ids.append(f'<otherID code="{ej.finess}" assigningAuthorityName="{AUTH_FINESS}"/>')
        ids.append(f'<otherID code="{ej.siren}" assigningAuthorityName="{AUTH_SIRENE}"/>')
        self.org.write(
            f'<organization entityID="{ej.rid}">{"".join(ids)}'
            f'{self.coded("codedType", "TRE_R72-FinessStatutJuridique", ej.statut)}'
            f"<primaryName>{esc(ej.name)}</primaryName>"
            f"<extension{EXT}>{self._location(ej.address, ej.created, ej.updated)}"
            f"<creationDate>{ej.founded.isoformat()}</creationDate></extension>"
            f"{self.record(ej.created, ej.updated)}</organization>\n")

    def site(self, eg: Site, contacts: list[Contact], drop_zone: bool | None) -> None:
        ids = [f'<otherID code="{eg.idnat}" assigningAuthorityName="{AUTH_IDNATST}"/>']
        if eg.finess:
            ids.append(f'<otherID code="{eg.finess}" assigningAuthorityName="{AUTH_FINESS}"/>')
        if eg.siret:
            ids.append(f'<otherID code="{eg.siret}" assigningAuthorityName="{AUTH_SIRENE}"/>')
        table = "TRE_R02-SecteurActivite" if eg.kind.category.startswith("SA") else "TRE_R66-CategorieEtablissement"
        ext = [self._contact(c, eg.created, eg.updated) for c in contacts]
        ext.append(self._location(eg.address, eg.created, eg.updated))
        if drop_zone is not None:
            ext.append(f"<dropZone>{'true' if drop_zone else 'false'}</dropZone>")
        ext.append(f"<creationDate>{eg.opened.isoformat()}</creationDate>")
        if eg.closed:
            ext.append(f"<closingDate>{eg.closed.isoformat()}</closingDate>")
        self.org.write(
            f'<organization entityID="{eg.rid}">{"".join(ids)}{self.coded("codedType", table, eg.kind.category)}'
            f"<primaryName>{esc(eg.name)}</primaryName>"
            f'<parent entityID="{eg.legal.rid}"/><extension{EXT}>{"".join(ext)}</extension>'
            f"{self.record(eg.created, eg.updated)}</organization>\n")

    def internal(self, oi: Internal) -> None:
        self.org.write(
            f'<organization entityID="{oi.rid}"><otherID code="{oi.ident}" assigningAuthorityName="{AUTH_OI}"/>'
            f'{self.coded("codedType", "TRE_R207-TypeOrganisationInterne", oi.type)}'
            f"<primaryName>{esc(oi.name)}</primaryName>"
            f'<parent entityID="{oi.site.rid}"/>{self.record(oi.created, oi.updated)}</organization>\n')

    # --- offers ---------------------------------------------------------------------------------
    def offer(self, o: Offer) -> None:
        u = o.unit
        service_id = f"{o.rid}_{o.activity}"
        self.service.write(
            f'<service entityID="{service_id}">{self.coded("codedType", "TRE_R211-ActiviteOperationnelle", o.activity)}'
            f"{self.record(o.created, o.updated)}</service>\n")
        ext = [self._contact(c, o.created, o.updated) for c in o.contacts]
        if o.closed:
            ext.append(f"<closingDate>{o.closed[0].isoformat()}</closingDate>")
        ext.append(f"<creationDate>{o.created.date().isoformat()}</creationDate>")
        ext.append(self.coded("typeActivity", "TRE_R227-ChampActivite", u.champ))
        ext.append(self.coded("careMode", "TRE_R213-ModePriseEnCharge", u.mode))
        unit = self.coded("unit", "TRE_R247-UcumUniteMesure", "a")
        ext.append(f"<patientsType>{self.coded('supportedPatient', 'TRE_R239-PublicPrisEnCharge', u.public)}"
                   f"<patientTypeAgeMin><value>{o.ages[0]}</value>{unit}</patientTypeAgeMin>"
                   f"<patientTypeAgeMax><value>{o.ages[1]}</value>{unit}</patientTypeAgeMax>"
                   f"{self.record(o.created, o.updated)}</patientsType>")
        if u.reception:
            ext.append(self.coded("receptionType", "TRE_R240-TemporaliteAccueil", u.reception))
        if u.category:
            ext.append(self.coded("facilityType", "TRE_R244-CategorieOrganisation", u.category))
        if o.closed and o.closed[1]:
            ext.append(f"<ProvisionalReopeningDate>{o.closed[1].isoformat()}</ProvisionalReopeningDate>")
        for commune in o.zone:
            ext.append(f"<interventionZone>{self.coded('type', 'TRE_R201-TypeDivisionTerritoriale', '3')}"
                       f"{self.coded('codedType', 'TRE_R13-CommuneOM', commune.cog)}"
                       f"{self.record(o.created, o.updated)}</interventionZone>")
        if u.opening:
            ext.append(self.coded("annualOpenning", "TRE_R238-OuvertureAnnuelle", u.opening))
        if o.sector:
            ext.append(f"<psychiatricSector>{o.sector}</psychiatricSector>")
        ext.append(f"<sensitiveUnit>{'true' if u.sensitive else 'false'}</sensitiveUnit>")
        if o.no_consent:
            ext.append("<careWithoutPatientApproval>true</careWithoutPatientApproval>")
        ext.extend(self._realized(p) for p in o.places)
        if len(self._places) > 256:  # offers of one unit come together: a small cache of places suffices
            self._places.clear()
        hours = ""
        if o.hours:
            hours = "".join(f"<operatingHours><dayOfTheWeek>{d}</dayOfTheWeek><beginningHour>{o.hours[0]}"
                            f"</beginningHour><endingHour>{o.hours[1]}</endingHour><beginEffectiveDate>"
                            f"{o.created.date().isoformat()}</beginEffectiveDate></operatingHours>"
                            for d in range(1, 6))
        self.facility.write(
            f'<facility entityID="{o.rid}"><otherID code="{o.ident}" assigningAuthorityName="{AUTH_IDNATST}"/>'
            f'{self.coded("codedType", "TRE_R207-TypeOrganisationInterne", "4")}'
            f"<primaryName>{esc(o.name)}</primaryName>"
            f'<organizations><organization entityID="{o.provider.rid}"><service entityID="{service_id}"/>'
            f"</organization></organizations>{hours}<extension{EXT}>{''.join(ext)}</extension>"
            f"{self.record(o.created, o.updated)}</facility>\n")

    def _realized(self, p: Place) -> str:
        """The place as an offer's ``locationRealizedOffer``: built once, repeated in each offer using it."""
        found = self._places.get(p.rid)
        if found is None:
            found = self._places[p.rid] = self._realized_text(p)
        return found

    def _realized_text(self, p: Place) -> str:
        out = ["<locationRealizedOffer>"]
        if p.external:
            out.append(f'<externalidSynchronization entityID="{esc(p.external)}"/>')
        out.append(f"<externalNameSynchronization>{esc(p.external_name or p.name)}</externalNameSynchronization>")
        out.append(self._location(p.address, p.created, p.updated, p.name, p.ident))
        for code, number in p.residential:
            out.append(f"<residentialCapactity>{self.coded('residentialType', 'TRE_R242-TypeHabitation', code)}"
                       f"<residentialNumber>{number}</residentialNumber>{self.record(p.created, p.updated)}"
                       f"</residentialCapactity>")
        by_assignment: dict[str, list] = {}
        for k in p.capacities:
            by_assignment.setdefault(k.assignment, []).append(k)
        for assignment, records in by_assignment.items():
            out.append(f"<capacitySupported>"
                       f"{self.coded('temporaryAssignment', 'TRE_R337-AffectationTemporaire', assignment)}")
            for k in records:
                out.append(
                    f"<operationalAccommodationCapacity>"
                    f"{self.coded('capacityNature', 'TRE_R329-NatureCapacite', k.nature)}"
                    f"{self.coded('capacityStatus', 'TRE_R330-TypeStatutCapacite', k.status)}"
                    f"{self.coded('capacityTemporality', 'TRE_R331-TemporaliteCapacite', k.temporality)}"
                    f"<capacityNumber>{k.number}</capacityNumber>"
                    f"{self.coded('capacitySourceType', 'TRE_R335-TypeSourceCapacite', k.source)}"
                    f"<cpacityUpdateDate>{local_iso(self.region, k.updated)}</cpacityUpdateDate>"
                    + (self.coded("capacityGenderAvailability", "TRE_R332-GenreCapacite", k.gender) if k.gender else "")
                    + (self.coded("capacityClosingType", "TRE_R333-TypeFermetureCapacite", k.closing)
                       if k.closing else "")
                    + (self.coded("capacityExtraBed", "TRE_R334-TypeLitSupplementaire", k.extra_bed)
                       if k.extra_bed else "")
                    + (self.coded("crisisType", "TRE_R336-TypeCrise", k.crisis) if k.crisis else "")
                    + f"{self.record(k.updated, k.updated)}</operationalAccommodationCapacity>")
            out.append(f"{self.record(p.created, p.updated)}</capacitySupported>")
        out.append(f"{self.record(p.created, p.updated)}</locationRealizedOffer>")
        return "".join(out)

    # --- providers ------------------------------------------------------------------------------
    def person(self, p: Person, offers: list[tuple[str, str]], mode: str) -> None:
        """One provider with the offers (facility id, service id) where the person has a role."""
        honorific = self.coded("honorific", "TRE_R11-CiviliteExercice", p.title) if p.title else ""
        facilities = "".join(f'<facility entityID="{fid}"><service entityID="{sid}"/></facility>'
                             for fid, sid in offers)
        credential = ""
        if p.specialty:
            credential = (f"<credential>{self.coded('codedType', 'TRE_R04-TypeSavoirFaire', 'S')}"
                          f"<number>{p.specialty}</number><extension{EXT}>"
                          f"{self.coded('speciality', 'TRE_R38-SpecialiteOrdinale', p.specialty)}"
                          f"{self.record(p.created, p.updated)}</extension></credential>")
        self.provider.write(
            f'<provider entityID="{p.rid}"><otherID code="{p.idnat}" assigningAuthorityName="{AUTH_IDNATPS}"/>'
            f'{self.coded("codedType", "TRE_G15-ProfessionSante", p.profession)}'
            f"<demographic><name><commonName>{esc(p.given)} {esc(p.family)}</commonName>{honorific}"
            f"<forename>{esc(p.given)}</forename><surname>{esc(p.family)}</surname></name></demographic>"
            f"{'<facilities>' + facilities + '</facilities>' if facilities else ''}{credential}"
            f"<extension{EXT}><operationalStatus>{self.coded('exerciceModeInUnit', 'TRE_R23-ModeExercice', mode)}"
            f"{self.record(p.created, p.updated)}</operationalStatus></extension>"
            f"{self.record(p.created, p.updated)}</provider>\n")
