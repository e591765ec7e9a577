"""The entities a region is made of, as plain records shared by the FHIR, CSD, FINESS and RPPS writers.

They hold what the four outputs have in common, so that the same establishment carries the same FINESS
number, name and address in the FINESS file, the RPPS activity lines, the FHIR extract and the CSD file
(that is what consolidation matches on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from ror.generate.catalog import SiteKind, Unit
from ror.generate.places import Address


@dataclass(slots=True)
class Legal:
    """Entité juridique (EJ)."""

    rid: str
    idnat: str
    finess: str              # "" when not a FINESS legal entity (city practices)
    siren: str
    name: str
    rs: str                  # FINESS short name, upper case, 38 characters at most
    statut: str              # TRE_R72
    address: Address
    phone: str
    created: datetime
    updated: datetime
    founded: date
    ape: str
    category: str            # ``categetab`` of the EJ record, "" when none
    home: str                # region whose extract writes the FINESS record


@dataclass(slots=True)
class Site:
    """Entité géographique (EG)."""

    rid: str
    idnat: str
    finess: str
    siret: str
    rank: str                # cabinet number of an individual practice (keys.cabinet: RPPS or ADELI + rang), else ""
    name: str
    rs: str
    kind: SiteKind
    legal: Legal
    address: Address
    phone: str
    fax: str
    opened: date
    created: datetime
    updated: datetime
    sector: str              # TRE_R02 activity sector of the professionals working there
    mode: str                # TRE_R23 exercise mode of those professionals: S or L
    closed: date | None = None   # definitively closed: no offer left, out of the FINESS stock

    @property
    def rank_type(self) -> str:
        """TRE_G07 type of the cabinet number: 4 RPPS-rang (14 digits), 0 ADELI-rang (11 digits)."""
        return "4" if len(self.rank) == 14 else "0"

    @property
    def technical_id(self) -> str:
        """RPPS ``Identifiant technique de la structure``: ``F`` + FINESS, ``C`` + SIRET, ``R`` + RPPS-rang,
        ``C`` + ADELI-rang (the sample's ``C01920057500``).

        In the samples the ``R`` number of an RPPS cabinet is an ANS sequence unrelated to the RPPS number
        (``R10100000240453`` for the cabinet ``410005929293016``), but the RPPS feed reads the RPPS-rang
        identifier from it (``ror.feeds.rpps``), so the generator writes the RPPS-rang there too."""
        if self.finess:
            return "F" + self.finess
        if self.siret:
            return "C" + self.siret
        return ("R" if self.rank_type == "4" else "C") + self.rank

    @property
    def old_id(self) -> str:
        """RPPS ``Ancien identifiant de la structure`` (TRE_G07 type + number), the site's idNatStruct."""
        if self.finess:
            return "1" + self.finess
        return "3" + self.siret if self.siret else self.rank_type + self.rank


@dataclass(slots=True)
class Internal:
    """Organisation interne (OI): pôle or service."""

    rid: str
    ident: str
    type: str                # TRE_R207
    name: str
    site: Site
    created: datetime
    updated: datetime


@dataclass(slots=True)
class Capacity:
    """One capacity record of a place (``ror-location-supported-capacity``)."""

    nature: str
    status: str
    temporality: str
    number: int
    source: str
    updated: datetime
    gender: str = ""
    closing: str = ""
    extra_bed: str = ""
    crisis: str = ""
    assignment: str = "01"


@dataclass(slots=True)
class Place:
    """Lieu de réalisation de l'offre (Location)."""

    rid: str
    ident: str               # functional id "52/4000001", "" when none
    external: str            # idExterneSynchro "{idNatStruct}/{ext}", "" when none
    external_name: str
    name: str
    address: Address
    created: datetime
    updated: datetime
    capacities: list[Capacity] = field(default_factory=list)
    residential: list[tuple[str, int]] = field(default_factory=list)
    equipment: list[tuple[str, int, int]] = field(default_factory=list)   # R212 code, in service, max kg
    phone: str = ""          # the ward's phone (nurses' station)


@dataclass(slots=True)
class Contact:
    purpose: str             # TRE_R287
    confidentiality: str     # TRE_R283
    channel: str             # TRE_R200
    value: str
    name: str = ""
    function: str = ""       # TRE_R251
    description: str = ""


@dataclass(slots=True)
class Offer:
    """Offre opérationnelle (HealthcareService)."""

    rid: str
    ident: str
    name: str
    unit: Unit
    activity: str
    provider: Site | Internal | Legal
    site: Site | None        # the EG of the offer (None for an offer of the EJ itself)
    places: list[Place]
    contacts: list[Contact]
    created: datetime
    updated: datetime
    ages: tuple[int, int]
    sector: str = ""
    zone: list = field(default_factory=list)             # communes of the intervention zone
    closed: tuple[date, date] | None = None
    hours: tuple[str, str] | None = None                 # opening hours, Monday to Friday
    no_consent: bool = False
    mailbox: str = ""                                    # MSSanté address of the unit


@dataclass(slots=True)
class Person:
    """Professionnel (Practitioner)."""

    rid: str
    id_type: str             # TRE_G08: 8 RPPS, 0 ADELI
    number: str
    civility: str            # TRE_R81: M, MME
    title: str               # TRE_R11: DR or ""
    family: str
    given: str
    profession: str          # TRE_G15
    specialty: str           # TRE_R38 or ""
    created: datetime
    updated: datetime
    email: str = ""

    @property
    def idnat(self) -> str:
        return self.id_type + self.number


@dataclass(slots=True)
class Role:
    """Situation opérationnelle (PractitionerRole)."""

    rid: str
    ident: str
    person: Person
    offer: Offer
    site: Site
    mode: str                # TRE_R23
    created: datetime
    updated: datetime
    phone: str = ""
