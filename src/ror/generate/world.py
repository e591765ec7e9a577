"""One region's data, generated in one pass and written as it is made (bounded memory).

Legal entities of the catalog's kinds are drawn in proportion to their national counts until the region's
resource budget is spent; each brings its sites, their internal organisation, places with capacities,
offers and professionals. Every entity is written at once to the region's FHIR NDJSON files and CSD parts;
the region's FINESS and RPPS records are kept as short byte strings, sorted and written to part files that
the parent merges into the national files (``ror.generate.runner``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson
from unidecode import unidecode

from ror.generate import catalog as cat
from ror.generate import dirty, keys
from ror.generate.catalog import Group, Service, SiteKind, Unit
from ror.generate.csd import Csd
from ror.generate.fhir import IDNATPS, Fhir
from ror.generate.flat import Finess, Rpps, upper
from ror.generate.model import Capacity, Contact, Internal, Legal, Offer, Person, Place, Role, Site
from ror.generate.names import ASSOCIATION_NAMES, CLINIC_NAMES, FEMALE, HOME_NAMES, MALE, SURNAMES
from ror.generate.nos import Nos
from ror.generate.places import Address, Region, finess_prefix
from ror.generate.rand import Clock, Weighted, between, stream

TYPES = ("Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole")
_REFERENCE = re.compile(rb'"reference":"([A-Za-z]+/[^"]+)"')
RPPS_PROFESSIONS = frozenset({"10", "21", "40", "50", "60", "70", "80"})
# Share of women by profession (DREES), for civility and first names.
WOMEN = {"10": 0.5, "21": 0.68, "40": 0.48, "50": 0.97, "60": 0.87, "70": 0.5, "80": 0.7, "91": 0.97, "92": 0.9}
SURGICAL_POLES = frozenset({"Chirurgie", "Femme-Enfant", "Anesthésie-Réanimation", "Médico-technique", "Urgences"})
# Identifier blocks (7 digits after the region code) per kind of functional identifier.
IDENT_BASE = {"oi": 100_000, "offer": 1_000_000, "place": 4_000_000, "role": 6_000_000}
# Public-law legal statuses (SIREN starting with 2, as public bodies' do).
PUBLIC_STATUTS = frozenset({"03", "11", "13", "14", "15", "17", "19", "21", "22"})
CLOSING_SOON = 0.02   # share of offers with a closing period
CLOSED_SITES = 0.01   # share of establishments closed for good (still in the regional extract)


@dataclass
class SharedPerson:
    """A physician working in two regions: same identity in both extracts and in RPPS."""

    number: str
    regions: tuple[str, str]
    specialty: str
    civility: str
    family: str
    given: str


@dataclass
class RegionJob:
    region: str
    index: int                  # position of the region, used in identifier blocks
    seed: int
    budget: int                 # resources to generate (about)
    as_of: date
    dirty: float
    out: Path
    parts: Path
    shared_legals: dict[str, list[Legal]] = field(default_factory=dict)
    shared_persons: list[SharedPerson] = field(default_factory=list)


class Sink:
    """The region's FHIR NDJSON files, with counts and dirty-record injection."""

    def __init__(self, job: RegionJob, nos: Nos):
        self.dir = job.out / "fhir" / job.region
        self.dir.mkdir(parents=True, exist_ok=True)
        self.files = {t: (self.dir / f"{t}.ndjson").open("wb") for t in TYPES}
        self.lines = dict.fromkeys(TYPES, 0)
        self.bytes = dict.fromkeys(TYPES, 0)
        self.hashes = {t: hashlib.sha256() for t in TYPES}  # hashed as written: no second read for the manifest
        self.share = job.dirty
        self.rng = stream(job.seed, "dirty", job.region, "fhir")
        self.nos = nos
        self.region = job.region
        self.dirty: list[dict] = []
        self.dependents: list[dict] = []
        self.rejected: set[bytes] = set()  # "Type/id" of the resources a reader rejects (dirty or dependent)

    def write(self, resource: dict) -> None:
        """Write one resource, made dirty at the dirty share. Resources only reference resources written
        before them, so a resource naming a rejected one (dirty, or itself a dependent) is known here: it is
        listed as a dependent and never made dirty itself. A reader rejects a dependent when it cannot
        resolve that reference otherwise (the regional feed does not when a registry brought the target's
        national key, or owns the element: an EG's partOf from FINESS, a city offer pre-filled from RPPS)."""
        rtype = resource["resourceType"]
        line = None
        name = f"{rtype}/{resource['id']}"
        clean = orjson.dumps(resource)
        if self.rejected:
            of = next((r for r in _REFERENCE.findall(clean) if r in self.rejected), None)
            if of is not None:
                self.rejected.add(name.encode())
                self.dependents.append({"file": f"fhir/{self.region}/{rtype}.ndjson", "line": self.lines[rtype] + 1,
                                        "key": name, "of": of.decode()})
                self._out(rtype, clean)
                return
        if self.share and self.rng.random() < self.share:
            kind = self.rng.choice(dirty.KINDS[rtype])
            try:
                line = dirty.fhir(kind, resource, self.rng, self.nos.url)
            except ValueError:
                line = None
            else:
                number = next((i["value"] for i in resource.get("identifier", ())
                               if i.get("system") in ("https://finess.esante.gouv.fr", IDNATPS)), "")
                expect = dirty.expect("fhir", kind, number)
                if expect == "reject":
                    self.rejected.add(name.encode())
                self.dirty.append({"file": f"fhir/{self.region}/{rtype}.ndjson", "line": self.lines[rtype] + 1,
                                   "kind": kind, "key": name, "expect": expect})
        self._out(rtype, line if line is not None else clean)

    def _out(self, rtype: str, line: bytes) -> None:
        data = line + b"\n"
        self.files[rtype].write(data)
        self.hashes[rtype].update(data)
        self.bytes[rtype] += len(data)
        self.lines[rtype] += 1

    def close(self) -> dict[str, dict]:
        """Close the files; returns their manifest entries (bytes, lines, sha256)."""
        for f in self.files.values():
            f.close()
        return {f"fhir/{self.region}/{t}.ndjson": {"bytes": self.bytes[t], "lines": self.lines[t],
                                                   "sha256": self.hashes[t].hexdigest()} for t in TYPES}


class Flat:
    """FINESS and RPPS records of the region, kept as (sort key, dirty kind, bytes) until the end."""

    def __init__(self, job: RegionJob):
        self.records: dict[str, list[bytes]] = {"structureet": [], "geolocalisation": [], "structureej": [],
                                                "rpps": []}
        self.share = job.dirty
        self.rng = stream(job.seed, "dirty", job.region, "flat")
        self.count = 0

    def add(self, record: str, key: str, line: str) -> None:
        """Keep a record; the sort key is its identifier then its rank, so that a professional's lines stay
        in generation order whatever the dirty records."""
        kind = "-"
        utf8 = record == "rpps"
        if self.share and self.rng.random() < self.share:
            chosen = self.rng.choice(dirty.KINDS[record])
            try:
                line, as_utf8 = dirty.flat(chosen, record, line, self.rng)
            except ValueError:
                pass
            else:
                kind = chosen
                utf8 = utf8 or as_utf8
        payload = line.encode("utf-8") if utf8 else line.translate(_LATIN1).encode("latin-1")
        self.count += 1
        self.records[record].append(f"{key}\x1e{self.count:010d}\x1f{kind}\x1f".encode() + payload + b"\n")

    def write(self, parts: Path, region: str) -> None:
        for record, lines in self.records.items():
            lines.sort()
            with (parts / f"{region}.{record}").open("wb") as f:
                f.writelines(lines)


_LATIN1 = str.maketrans({"œ": "oe", "Œ": "OE", "’": "'", "–": "-", "…": "..."})


class RegionGenerator:
    def __init__(self, job: RegionJob):
        self.job = job
        self.code = job.region
        self.nos = Nos()
        self.rng = stream(job.seed, "region", job.region)
        self.geo = Region(job.region, self.nos.current_communes)
        self.clock = Clock(job.as_of)
        self.fhir = Fhir(self.nos, job.region)
        self.sink = Sink(job, self.nos)
        self.flat = Flat(job)
        job.parts.mkdir(parents=True, exist_ok=True)
        self.csd = Csd(self.nos, job.region, job.parts / f"{job.region}.csd")
        self.finess = Finess(self.nos)
        self.rpps = Rpps(self.nos)
        self.seq: dict[str, int] = {}
        self.department = ""                          # department of the site being built (ADELI numbers)
        self.resources = 0
        self.capacities = 0
        self.persons_made = 0
        self.city_pool: dict[str, list[Person]] = {}
        self.providers: dict[str, list] = {}          # person rid -> [person, mode, [(facility, service)], sites]
        self.shared_here: dict[str, Legal] = {}       # FINESS of a multi-region EJ -> the region's copy
        self.pending = [self._shared_person(p) for p in job.shared_persons if self.code in p.regions]
        self.reservoir: list[Offer] = []
        self.by_department: dict[str, list] = {}
        for c in self.geo.communes:
            self.by_department.setdefault(c.department, []).append(c)
        self.groups = Weighted((g, g.national) for g in cat.GROUPS)
        self.city_units = Weighted(cat.CITY_UNITS)
        self.city_by_key = {u.key: u for u, _ in cat.CITY_UNITS}
        self.mix = {k: Weighted((self.city_by_key[key], w) for key, w in v) for k, v in cat.CITY_MIX.items()}
        self.surnames = Weighted((s, 1 / (i + 8)) for i, s in enumerate(SURNAMES))
        self.male = Weighted((s, 1 / (i + 5)) for i, s in enumerate(MALE))
        self.female = Weighted((s, 1 / (i + 5)) for i, s in enumerate(FEMALE))

    # --- identifiers --------------------------------------------------------------------------------
    def _next(self, name: str) -> int:
        n = self.seq.get(name, 0) + 1
        self.seq[name] = n
        return n

    def rid(self, prefix: str) -> str:
        return f"{prefix}-{self.code}-{self._next('rid:' + prefix):06d}"

    def ident(self, kind: str) -> str:
        return f"{self.code}/{IDENT_BASE[kind] + self._next('ident:' + kind):07d}"

    def finess_number(self, address: Address) -> str:
        prefix = finess_prefix(address.commune)
        return keys.finess(prefix, self._next("finess:" + prefix))

    def siren(self, statut: str) -> str:
        first = 2 if statut in PUBLIC_STATUTS else (7 if statut in ("60", "61", "62", "63", "47", "80") else
                                                    self.rng.choice((3, 4, 5, 8)))
        return keys.siren(first * 10_000_000 + self.job.index * 100_000 + self._next(f"siren:{first}"))

    # --- dates --------------------------------------------------------------------------------------
    def stamps(self) -> tuple[datetime, datetime]:
        created = self.clock.instant(self.rng, 0.7)
        return created, self.clock.after(self.rng, created) if self.rng.random() < 0.8 else created

    def day(self, first: int, last: int) -> date:
        return date(first, 1, 1) + timedelta(days=self.rng.randrange((date(last, 12, 31) - date(first, 1, 1)).days))

    # --- names --------------------------------------------------------------------------------------
    def words(self, address: Address) -> dict[str, str]:
        rng = self.rng
        return {"city": address.commune.name, "saint": rng.choice(HOME_NAMES),
                "home": rng.choice(HOME_NAMES), "clinic": rng.choice(CLINIC_NAMES),
                "association": rng.choice(ASSOCIATION_NAMES), "company": rng.choice(("SAS", "SA", "Groupe")),
                "surname": self.surnames(rng).title(), "street": f"{address.street_label.lower()} {address.street}",
                "region": self.nos.label("TRE_R30-RegionOM", self.code), "society": ""}

    @staticmethod
    def short(pattern: str, words: dict[str, str]) -> str:
        return upper(pattern.format(**{k.upper(): upper(v, 30) for k, v in words.items()}), 38)

    # --- the run ------------------------------------------------------------------------------------
    def run(self) -> dict:
        for templates in self.job.shared_legals.values():
            for t in templates:
                if t.home == self.code and t.finess:
                    self.flat.add("structureej", t.finess, self.finess.legal(t))
        budget = self.job.budget
        while self.resources < budget:
            g = self.groups(self.rng)
            if g.in_ror and expected_size(g) > max(1.2 * (budget - self.resources), 15):
                continue
            self.group(g)
        self.place_pending()
        self.rpps_only()
        for person, mode, offers, _ in self.providers.values():
            self.csd.person(person, offers, mode)
        files = self.sink.close()
        files[f"csd/ror-csd-{self.code}.xml"] = self.csd.close(self.job.out / "csd" / f"ror-csd-{self.code}.xml")
        self.flat.write(self.job.parts, self.code)
        return {"region": self.code, "resources": dict(self.sink.lines), "capacity_records": self.capacities,
                "files": files, "dirty": self.sink.dirty, "dependents": self.sink.dependents}

    def emit(self, resource: dict) -> None:
        self.sink.write(resource)
        self.resources += 1

    # --- legal entities and sites ------------------------------------------------------------------------
    def group(self, g: Group) -> None:
        rng = self.rng
        plan: list[SiteKind] = []
        for kind, count, prob in g.sites:
            if rng.random() < prob:
                plan.extend([kind] * between(rng, count))
        if not plan:
            plan = [g.sites[0][0]]
        first = self.geo.address(rng, urban=plan[0].urban)
        owner = None
        if plan[0].city == "individual":  # the professional is the legal entity (statut 70, personne physique)
            self.department = first.commune.department
            unit = self.city_units(rng)
            owner = (unit, self.city_person(unit, fresh=True))
        legal = self.legal(g, first, owner[1] if owner else None)
        # the EJ's first site is at its seat; the others mostly in the same department
        department = first.commune.department
        sites = [self.site(kind, legal, first if i == 0 and legal.home == self.code else
                           self.geo.address(rng, kind.urban, department if rng.random() < 0.8 else ""), owner)
                 for i, kind in enumerate(plan)]
        for unit, prob in g.offers:
            if rng.random() < prob:
                self.unit_offers(unit, legal, sites[0], None)

    def legal(self, g: Group, address: Address, owner: Person | None) -> Legal:
        rng = self.rng
        pool = self.job.shared_legals.get(g.key)
        if pool and rng.random() < g.shared:
            template = rng.choice(pool)
            local = self.shared_here.get(template.finess)
            if local is None:
                local = self.shared_here[template.finess] = replace(template, rid=self.rid("ej"))
                self.emit(self.fhir.legal(local))
                self.csd.legal(local)
            return local
        statut = Weighted(g.statuts)(rng)
        words = self.words(address)
        if g.key == "cab_society":
            words["society"] = {"85": "SELARL", "88": "SCP", "91": "SELAS"}[statut]
        name = f"{owner.family} {owner.given}" if owner else g.name.format(**words)
        finess = self.finess_number(address) if g.finess else ""
        siren = self.siren(statut)
        created, updated = self.stamps()
        legal = Legal(self.rid("ej"), "1" + finess if finess else "2" + siren, finess, siren, name, upper(name, 38),
                      statut, address, self.geo.phone(rng), created, updated, self.day(1950, 2020), g.ape,
                      g.ej_category, self.code)
        if g.in_ror:
            self.emit(self.fhir.legal(legal))
            self.csd.legal(legal)
        if finess:
            self.flat.add("structureej", finess, self.finess.legal(legal))
        return legal

    def site(self, kind: SiteKind, legal: Legal, a: Address, owner: tuple[Unit, Person] | None = None) -> Site:
        rng = self.rng
        self.department = a.commune.department
        words = self.words(a)
        finess = siret = rank = ""
        if kind.city in ("individual",):
            # the holder's RPPS (or ADELI) number and a rang: the rangs of the samples (016, 066, 005, 00)
            # count the holder's earlier practice situations; drawn from the number, not from ``rng``
            number = owner[1].number
            rang = 1 + int(number[-5:-1]) % 69 if owner[1].id_type == "8" else int(number[-5:-1]) % 20
            rank = keys.cabinet(number, rang)
            idnat = ("4" if owner[1].id_type == "8" else "0") + rank
        elif kind.city in ("group", "society"):
            siret = keys.siret(legal.siren, self.job.index * 500 + self._next("nic:" + legal.siren))
            idnat = "3" + siret
        else:
            finess = self.finess_number(a)
            idnat = "1" + finess
            if rng.random() < 0.85:
                siret = keys.siret(legal.siren, self.job.index * 500 + self._next("nic:" + legal.siren))
        # city practices are named after the professions present (city_practice)
        name = "" if kind.city in ("individual", "group", "society") else kind.name.format(**words)
        created, updated = self.stamps()
        public = legal.statut in PUBLIC_STATUTS
        sector, mode = site_sector(kind, public)
        short = self.short(kind.short, words) if kind.short else ""
        site = Site(self.rid("eg"), idnat, finess, siret, rank, name, short,
                    kind, legal, a, self.geo.phone(rng), self.geo.phone(rng) if rng.random() < 0.6 else "",
                    self.day(1965 if public else 1980, 2022), created, updated, sector, mode)
        if kind.in_ror and not kind.city and rng.random() < CLOSED_SITES:
            site.closed = self.day(2019, self.job.as_of.year - 1)
            self._site_org(site)
            return site  # a closed site keeps its record but has no offer, and leaves the FINESS stock
        if kind.in_ror:
            if kind.city:
                self.city_practice(site, words, owner)
            else:
                self.establishment(site)
        elif kind.key == "pharmacy":
            self.pharmacists(site)
        if finess:
            self.finess_records(site)
        return site

    def finess_records(self, site: Site) -> None:
        rng = self.rng
        updated = self.day(2019, self.job.as_of.year - 1)
        self.flat.add("structureet", site.finess, self.finess.establishment(site, updated))
        if rng.random() < 0.985:
            r = rng.random()
            method, score = ("BAN", rng.randint(80, 100)) if r < 0.85 else (
                ("IGN", rng.randint(50, 95)) if r < 0.95 else ("ADMIN-EXPRESS-2023", 0))
            placed = site
            if method == "ADMIN-EXPRESS-2023":  # geocoded at the commune centre
                c = site.address.commune
                placed = replace(site, address=replace(site.address, lat=c.latitude, lon=c.longitude))
            self.flat.add("geolocalisation", site.finess,
                          self.finess.geolocation(placed, self.code, score, method, updated))

    def _site_org(self, site: Site) -> None:
        rng = self.rng
        contacts = [Contact("06", "1", "2", site.phone, "Standard")]
        if not site.kind.city and rng.random() < 0.7:
            contacts.append(Contact("10", "2", "2", self.geo.phone(rng), "Direction", function="01"))
        if site.kind.tiers and rng.random() < 0.8:
            contacts.append(Contact("08", "3", "8", self.geo.phone(rng), "Alerte SSE"))
        drop = (rng.random() < site.kind.drop_zone) if site.kind.drop_zone else None
        prices = []
        if site.kind.prices:
            start = date(self.job.as_of.year, 1, 1)
            base = round(rng.uniform(58, 95), 2)
            prices.append(self.fhir.price("02", base, start, residential="02", special="01", welcome="02"))
            if rng.random() < 0.6:
                prices.append(self.fhir.price("02", round(base * 0.92, 2), start, residential="02", special="02",
                                              welcome="02"))
            if site.kind.key == "ehpad":
                for gir, low, high in (("01", 20, 26), ("02", 13, 17), ("03", 5, 8)):  # GIR 1-2, 3-4, 5-6
                    amount = rng.uniform(low, high)
                    prices.append(self.fhir.price("03", round(amount, 2), start, welcome="02", dependency=gir))
        self.emit(self.fhir.site(site, drop, prices, contacts))
        self.csd.site(site, contacts, drop)

    # --- establishments -----------------------------------------------------------------------------
    def establishment(self, site: Site) -> None:
        rng = self.rng
        kind = site.kind
        self._site_org(site)
        services: list[Service] = []
        if kind.tiers:
            for s in cat.MCO_SERVICES:
                if kind.surgical_only and s.pole not in SURGICAL_POLES:
                    continue
                if rng.random() < kind.tiers[s.tier - 1]:
                    services.append(s)
        for s in cat.PSY_SERVICES:
            if rng.random() < kind.psy * (1.0 if s.tier == 1 else 0.6):
                services.append(s)
        for s in cat.SMR_SERVICES:
            if rng.random() < kind.smr[s.tier - 1]:
                services.append(s)
        if rng.random() < kind.usld:
            services.append(cat.USLD)
        organised = len(services) >= 4
        poles: dict[str, Internal] = {}
        for s in services:
            provider: Site | Internal = site
            if organised:
                if s.pole not in poles:
                    poles[s.pole] = self.internal(site, "1", f"Pôle {s.pole}")
                provider = self.internal(site, "2", s.name)
            team: list[Person] = []
            for unit, prob in s.units:
                if rng.random() < prob:
                    # in organised hospitals, bed units are functional units (OI type 3) of the service
                    unit_provider = provider
                    if organised and unit.capacity and rng.random() < 0.4:
                        unit_provider = self.internal(site, "3", f"UF {unit.name}")
                    self.unit_offers(unit, unit_provider, site, team)
        team = []
        for unit, prob in kind.units:
            if rng.random() < prob:
                self.unit_offers(unit, site, site, team)

    def internal(self, site: Site, oi_type: str, name: str) -> Internal:
        created, updated = self.stamps()
        oi = Internal(self.rid("oi"), self.ident("oi"), oi_type, name, site, created, updated)
        self.emit(self.fhir.internal(oi))
        self.csd.internal(oi)
        return oi

    def unit_offers(self, unit: Unit, provider, site: Site, team: list[Person] | None) -> None:
        """The offers of one unit (one per activity drawn), their shared places and their professionals."""
        rng = self.rng
        if unit.capacity:  # large units are split into hosting zones (one place each)
            installed = between(rng, unit.capacity)
            zones = max(1, round(installed / rng.randint(10, 24)))
            places = [self.place(unit, site, installed // zones + (1 if i < installed % zones else 0), i + 1)
                      for i in range(zones)]
        else:
            places = [self.place(unit, site, 0, 1)]
        for activity, prob in unit.activities:
            if prob < 1.0 and rng.random() >= prob:
                continue
            offer = self.offer(unit, activity, provider, site, places)
            # professionals are attached to the unit's main activity, and to half of the others
            if team is not None and unit.staff[1] and (prob >= 1.0 or rng.random() < 0.5):
                self.staff(offer, site, unit, team)

    def place(self, unit: Unit, site: Site, installed: int, n: int) -> Place:
        """Zone ``n`` of a unit (its idExterneSynchro is ``{idNatStruct of the EG}/ZH-{unit}-{n}``)."""
        rng = self.rng
        created, updated = self.stamps()
        a = site.address
        a = replace(a, lat=round(a.lat + rng.gauss(0, 0.0004), 5), lon=round(a.lon + rng.gauss(0, 0.0005), 5))
        external = f"{site.idnat}/ZH-{unit.key}-{n}" if unit.capacity else ""
        place = Place(self.rid("loc"), self.ident("place") if rng.random() < 0.6 else "", external,
                      f"ZH {unit.key} {n}" if external else "", f"{site.name} - {unit.name}"[:120], a,
                      created, updated)
        if installed:
            place.capacities = self.capacities_of(unit, installed, updated)
            place.updated = max([updated, *(k.updated for k in place.capacities)])
            if unit.residential:
                installed = place.capacities[0].number
                single = int(installed * rng.uniform(0.6, 0.95))
                place.residential = [("02", single), ("01", max(0, (installed - single) // 2))]
            if unit.nature == "01" and rng.random() < 0.04:
                place.equipment = [(rng.choice(("089", "090", "091")), rng.randint(1, 3), rng.choice((250, 300, 350)))]
            if rng.random() < 0.3:
                place.phone = self.geo.phone(rng)
        self.emit(self.fhir.place(place))
        return place

    def capacities_of(self, unit: Unit, installed: int, updated: datetime) -> list[Capacity]:
        """The capacity records of a place: installed, then per temporality (now, 24 h, 48 h, 7 days) the
        available beds by gender when rooms are not mixed, occupied and reserved beds, and sometimes
        closed, additional or crisis beds; places (medico-social) have fewer records."""
        rng = self.rng
        nature = unit.nature
        source = rng.choice(("01", "01", "02", "03", "04"))
        installed_at = updated - timedelta(days=rng.randrange(30, 900))
        now = updated - timedelta(minutes=rng.randrange(0, 600))
        closed = installed // rng.randint(6, 12) if rng.random() < 0.2 else 0
        out = [Capacity(nature, "01", "01", installed, source, installed_at, gender="03" if nature == "01" else "")]
        split = nature == "01" and rng.random() < 0.6
        horizons = ("01", "03", "04", "05") if nature == "01" else ("01", "03", "05")
        for temporality in horizons[: rng.randint(3, len(horizons))] if nature == "01" else horizons:
            free = max(0, int((installed - closed) * rng.uniform(0.0, 0.2)))
            if split:
                women = rng.randint(0, free)
                out.append(Capacity(nature, "02", temporality, women, source, now, gender="01"))
                out.append(Capacity(nature, "02", temporality, free - women, source, now, gender="02"))
            else:
                out.append(Capacity(nature, "02", temporality, free, source, now, gender="03"))
            if temporality == "01":
                out.append(Capacity(nature, "03", "01", installed - closed - free, source, now))
        if rng.random() < 0.5:
            out.append(Capacity(nature, "04", "01", rng.randint(0, 3), source, now))
        if closed:
            out.append(Capacity(nature, "05", "01", closed, source, now, closing=rng.choice(("01", "01", "02", "03"))))
        if nature == "01" and rng.random() < 0.25:
            out.append(Capacity(nature, "06", "01", rng.randint(1, 4), source, now,
                                extra_bed=rng.choice(("01", "02", "03")),
                                crisis="02" if rng.random() < 0.1 else ""))
        if rng.random() < 0.02:
            out.append(Capacity(nature, "02", "01", rng.randint(0, 3), source, now, gender="03", assignment="02"))
        self.capacities += len(out)
        return out

    def offer(self, unit: Unit, activity: str, provider, site: Site | None, places: list[Place]) -> Offer:
        rng = self.rng
        created, updated = self.stamps()
        updated = max([updated, *(p.updated for p in places)])
        label = self.nos.label("TRE_R211-ActiviteOperationnelle", activity)
        name = unit.name if activity == unit.activities[0][0] else f"{unit.name} - {label}"
        phone_site = site or provider
        contacts = [Contact(rng.choice(("07", "01", "02", "03")), "1", "2", phone_site.phone)]
        if unit.staff[1] and rng.random() < 0.35:
            contacts.append(Contact("14", "3", "2", self.geo.phone(rng), description="Garde ou astreinte médicale"))
        if unit.champ in ("01", "02", "03") and rng.random() < 0.2:
            function, title = rng.choice((("03", "Cadre de santé"), ("05", "Secrétariat médical"),
                                          ("10", "Chef de service")))
            contacts.append(Contact("05" if function == "03" else "07", "2", "2", self.geo.phone(rng),
                                    f"{title} - {self.surnames(rng).title()}", function=function))
        mailbox = ""
        if unit.champ in ("01", "02", "03") and site is not None and rng.random() < 0.1:
            town = unidecode(site.address.commune.name).lower().replace(" ", "-").replace("'", "")
            mailbox = f"{unit.key.lower()}.{site.rid}@{town}.mssante.fr"
        ages = unit.ages
        if ages == (18, 150) and rng.random() < 0.2:
            ages = (15, 150) if rng.random() < 0.5 else (16, 150)
        sector = ""
        if unit.sector:
            dept = (site or provider).address.commune.department
            sector = f"{dept}{'I' if ages[0] < 16 else 'G'}{rng.randint(1, 20):02d}"
        zone = []
        if unit.mobile:
            candidates = self.by_department[(site or provider).address.commune.department]
            zone = sorted(rng.sample(candidates, min(len(candidates), rng.randint(3, 6))), key=lambda c: c.cog)
        closed = None
        if rng.random() < CLOSING_SOON:
            start = self.job.as_of + timedelta(days=rng.randint(-200, 120))
            closed = (start, start + timedelta(days=rng.randint(7, 60)) if rng.random() < 0.85 else None)
        hours = None
        if unit.champ == "05" or (unit.mode == "32" and rng.random() < 0.3):
            hours = (rng.choice(("08:00:00", "08:30:00", "09:00:00")), rng.choice(("17:30:00", "18:30:00", "19:00:00")))
        offer = Offer(self.rid("hs"), self.ident("offer"), name, unit, activity, provider, site, places, contacts,
                      created, updated, ages, sector, zone, closed, hours,
                      no_consent=unit.sector and unit.mode == "28" and rng.random() < 0.6, mailbox=mailbox)
        self.emit(self.fhir.offer(offer))
        self.csd.offer(offer)
        if unit.profession == "10" and site is not None and len(self.reservoir) < 64:
            self.reservoir.append(offer)
        return offer

    # --- professionals ---------------------------------------------------------------------------------
    def staff(self, offer: Offer, site: Site, unit: Unit, team: list[Person]) -> None:
        rng = self.rng
        k = between(rng, unit.staff)
        chosen: list[Person] = []
        for _ in range(k):
            free = [p for p in team if p.profession == unit.profession and all(p is not c for c in chosen)]
            if free and rng.random() < 0.9:
                person = rng.choice(free)
            else:
                person = self.hospital_person(unit)
                team.append(person)
            chosen.append(person)
            self.role(person, offer, site, site.mode)

    def hospital_person(self, unit: Unit) -> Person:
        rng = self.rng
        if unit.profession == "10" and self.pending and rng.random() < 0.5:
            return self.pending.pop()
        pool = self.city_pool.get(unit.specialty or "")
        if pool and rng.random() < cat.MIXED_ACTIVITY:
            return rng.choice(pool)
        return self.person(unit.profession, unit.specialty or "")

    def person(self, profession: str, specialty: str) -> Person:
        rng = self.rng
        woman = rng.random() < WOMEN.get(profession, 0.75)
        given = (self.female if woman else self.male)(rng)
        family = self.surnames(rng)
        if profession == "40" and not specialty:  # ordinal specialties of dentists (ONCD: ODF ~5 %, CO ~1 %)
            draw = rng.random()
            specialty = "SCD01" if draw < 0.05 else "SCD02" if draw < 0.06 else ""
        if profession in RPPS_PROFESSIONS:
            id_type, number = "8", keys.rpps(self.job.index * 1_000_000 + self._next("rpps"))
        else:  # ADELI: registered in the department of practice
            dept = "20" if self.department in ("2A", "2B") else self.department[:2]
            id_type, number = "0", keys.adeli(dept, profession, self._next(f"adeli:{dept}{profession}"))
        return self._new_person(id_type, number, "MME" if woman else "M", family, given, profession, specialty)

    def _new_person(self, id_type: str, number: str, civility: str, family: str, given: str, profession: str,
                    specialty: str) -> Person:
        rng = self.rng
        title = "DR" if profession == "10" or (profession == "40" and rng.random() < 0.6) else ""
        created, updated = self.stamps()
        email = ""
        if profession in ("10", "40", "50") and rng.random() < 0.3:
            email = f"{unidecode(given).lower().replace(' ', '-')}.{unidecode(family).lower().replace(' ', '-')}" \
                    f"@{'medecin' if profession == '10' else 'sante'}.mssante.fr"
        p = Person(self.rid("pra"), id_type, number, civility, title, family, given, profession, specialty, created,
                   updated, email)
        self.emit(self.fhir.person(p))
        self.persons_made += 1
        return p

    def _shared_person(self, s: SharedPerson) -> Person:
        created, updated = self.stamps()
        return Person("", "8", s.number, s.civility, "DR", s.family, s.given, "10", s.specialty, created, updated)

    def role(self, person: Person, offer: Offer, site: Site, mode: str) -> None:
        rng = self.rng
        if not person.rid:  # a multi-region professional, first used in this region
            person.rid = self.rid("pra")
            self.emit(self.fhir.person(person))
            self.persons_made += 1
        created, updated = self.stamps()
        role = Role(self.rid("pr"), self.ident("role"), person, offer, site, mode, created, updated,
                    site.phone if mode == "L" and rng.random() < 0.5 else "")
        self.emit(self.fhir.role(role))
        entry = self.providers.get(person.rid)
        if entry is None:
            entry = self.providers[person.rid] = [person, mode, [], set()]
        entry[2].append((offer.rid, f"{offer.rid}_{offer.activity}"))
        if site.rid not in entry[3]:
            entry[3].add(site.rid)
            self.flat.add("rpps", person.idnat, self.rpps.activity(person, site, mode))

    def place_pending(self) -> None:
        """Multi-region professionals not yet placed get a role in one of the region's physician offers."""
        while self.pending and self.reservoir:
            offer = self.rng.choice(self.reservoir)
            self.role(self.pending.pop(), offer, offer.site, offer.site.mode)

    def rpps_only(self) -> None:
        """Professionals of the RPPS file with no role in the ROR (no current activity)."""
        for _ in range(int(self.persons_made * cat.RPPS_ONLY)):
            profession = self.city_units(self.rng).profession
            p = self.person_without_role(profession)
            self.flat.add("rpps", p.idnat, self.rpps.activity(p, None, ""))

    def person_without_role(self, profession: str) -> Person:
        rng = self.rng
        woman = rng.random() < WOMEN.get(profession, 0.75)
        number = keys.rpps(self.job.index * 1_000_000 + self._next("rpps"))
        return Person("", "8", number, "MME" if woman else "M", "DR" if profession == "10" else "",
                      self.surnames(rng), (self.female if woman else self.male)(rng), profession,
                      "SM54" if profession == "10" else "", self.clock.end, self.clock.end)

    def pharmacists(self, site: Site) -> None:
        for i in range(between(self.rng, (1, 3))):
            p = self.person_without_role("21")
            p.title = "DR" if self.rng.random() < 0.3 else ""
            self.flat.add("rpps", p.idnat, self.rpps.activity(p, site, "L" if i == 0 else "S", "A" if i == 0 else "D"))

    # --- city practices --------------------------------------------------------------------------------
    def city_practice(self, site: Site, words: dict[str, str], owner: tuple[Unit, Person] | None) -> None:
        rng = self.rng
        kind = site.kind.city
        size = between(rng, cat.CITY_SIZE[kind])
        if owner:
            members = [owner[0]]
        elif kind in cat.CITY_MIX:
            members = [self.mix[kind](rng) for _ in range(size)]
        else:
            main = self.city_units(rng)
            members = [main if kind == "society" or i == 0 or rng.random() < 0.6 else self.city_units(rng)
                       for i in range(size)]
        units = list(dict.fromkeys(members))
        label = units[0].name.lower()
        if owner:
            site.name = f"Cabinet de {label} {owner[1].family.title()}"
        elif kind in ("group", "society"):
            lead = words["society"] or "Cabinet"
            site.name = f"{lead} de {label} {words['street']}" if kind == "group" else \
                f"{site.legal.name} - {site.address.commune.name}"
        self._site_org(site)
        places = [self.place(_CABINET, site, 0, 1)]
        offers = {u.key: self.offer(u, u.activities[0][0], site, site, places) for u in units}
        for extra, base, prob in cat.CITY_EXTRA:
            if base in offers and rng.random() < prob:
                offers[extra.key] = self.offer(extra, extra.activities[0][0], site, site, places)
        for i, unit in enumerate(members):
            person = owner[1] if owner and i == 0 else self.city_person(unit)
            self.role(person, offers[unit.key], site, site.mode)
            for extra, base, _ in cat.CITY_EXTRA:
                if base == unit.key and extra.key in offers and rng.random() < 0.5:
                    self.role(person, offers[extra.key], site, site.mode)

    def city_person(self, unit: Unit, fresh: bool = False) -> Person:
        """A professional for a city practice: sometimes one already practising elsewhere (second practice)."""
        rng = self.rng
        pool = self.city_pool.setdefault(unit.specialty or unit.key, [])
        if pool and not fresh and rng.random() < cat.SECOND_PRACTICE:
            return rng.choice(pool)
        person = self.person(unit.profession, unit.specialty or "")
        if len(pool) < 2000:
            pool.append(person)
        else:
            pool[rng.randrange(len(pool))] = person
        return person


_CABINET = Unit("CAB", "Cabinet", "05", None, "32", (("437", 1.0),))


def site_sector(kind: SiteKind, public: bool) -> tuple[str, str]:
    """TRE_R02 activity sector and TRE_R23 exercise mode of the professionals working at a site."""
    if kind.city == "individual":
        return "SA07", "L"
    if kind.city in ("group", "msp"):
        return "SA08", "L"
    if kind.city == "society":
        return "SA09", "L"
    if kind.city == "cds":
        return "SA05", "S"
    if kind.key == "pharmacy":
        return "SA33", "L"
    if kind.key == "lab":
        return "SA25", "S"
    if kind.tiers is not None or kind.psy or any(kind.smr) or kind.key in ("cmp", "cattp", "dialysis", "had",
                                                                          "autodialysis", "usld"):
        if public:
            return "SA01", "S"
        return ("SA03", "S") if kind.sph == "6" else ("SA04", "L")
    if kind.key in ("ehpad", "residence", "ssiad", "sad"):
        return "SA17", "S"
    return "SA16", "S"


def expected_size(g: Group) -> float:
    """Rough number of resources a legal entity of this kind brings (to keep small scales near budget)."""
    size = 1.0
    for kind, (lo, hi), prob in g.sites:
        per_site = 2.0
        services = 0.0
        if kind.tiers:
            services += sum(kind.tiers[s.tier - 1] for s in cat.MCO_SERVICES)
        services += kind.psy * len(cat.PSY_SERVICES) + sum(kind.smr[s.tier - 1] for s in cat.SMR_SERVICES)
        per_site += services * 24 + len(kind.units) * 5
        if kind.city:
            per_site += 3 * sum(cat.CITY_SIZE[kind.city]) / 2
        size += prob * (lo + hi) / 2 * per_site
    return size
