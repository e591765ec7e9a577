"""Where establishments are: real communes drawn in proportion to their population, addresses, phone
numbers and projected coordinates.

Communes come from ``ror/data/communes.csv`` (``ror.geo``), restricted to the codes current in the NOS
TRE_R13 snapshot (so every commune code the generator writes is one a NOS-validating reader accepts) and
to communes with a population, a postcode and a centre. A site is placed near its commune centre with a
spread that grows with the commune's size. FINESS ``geolocalisation`` records carry projected metres:
Lambert-93 for metropolitan France and Corsica, the local UTM systems overseas, each named the way the
2026 FINESS files name them in ``sourcecoordet``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

from unidecode import unidecode

from ror.generate.names import STREET_NAMES, STREET_TYPES
from ror.generate.rand import Weighted
from ror.geo import Commune, load_communes

# Region (TRE_R30) -> (EPSG code, CRS label used in FINESS ``sourcecoordet`` since 2026).
PROJECTION = {
    "01": (5490, "EPSG:5490 RGAF09/UTM Zone 20N (Antilles)"),
    "02": (5490, "EPSG:5490 RGAF09/UTM Zone 20N (Antilles)"),
    "03": (2972, "EPSG:2972 RGFG95/UTM zone 22N (Guyane)"),
    "04": (2975, "EPSG:2975 RGR92/UTM zone 40S (Réunion)"),
    "06": (4471, "EPSG:4471 RGM04/UTM zone 38S (Mayotte)"),
}
LAMBERT93 = (2154, "EPSG:2154 RGF93 / Lambert-93 (Métropole)")
# FINESS department codes of the overseas departments (the COG has 971..976).
FINESS_DEPARTMENT = {"971": "9A", "972": "9B", "973": "9C", "974": "9D", "976": "9F"}
# First digits of FINESS numbers overseas: ``97`` + the COG's third digit + ``0`` (``970100012``, Guadeloupe).
FINESS_PREFIX = {"971": "9701", "972": "9702", "973": "9703", "974": "9704", "976": "9706"}
# Geographic phone prefixes (ARCEP numbering plan).
PHONE_PREFIX = {"11": "01", "24": "02", "28": "02", "52": "02", "53": "02", "27": "03", "32": "03", "44": "03",
                "75": "05", "76": "05", "84": "04", "93": "04", "94": "04", "01": "0590", "02": "0596",
                "03": "0594", "04": "0262", "06": "0269"}


@dataclass(frozen=True, slots=True)
class Address:
    commune: Commune
    postcode: str
    number: str           # "" when none
    street_code: str      # TRE_R35 abbreviation, "" when none
    street_label: str     # "Avenue"
    street: str           # "de la Gare"
    lat: float
    lon: float

    @property
    def line(self) -> str:
        parts = [p for p in (self.number, self.street_label.lower(), self.street) if p]
        return " ".join(parts)

    @property
    def upper_street(self) -> str:
        """Street name as FINESS and RPPS print it: upper case, no accents (``DE LA GARE``)."""
        return unidecode(self.street).upper()

    @property
    def upper_city(self) -> str:
        return unidecode(self.commune.name).upper().replace("-", " ").replace("'", " ")


class Region:
    """The communes of one region and the means to place sites in them."""

    def __init__(self, code: str, current_codes: frozenset[str]):
        self.code = code
        communes = [c for c in load_communes().values()
                    if c.region == code and c.cog in current_codes and c.population and c.postcodes
                    and c.has_position]
        if not communes:
            raise ValueError(f"region {code}: no commune with population and position")
        communes.sort(key=lambda c: c.cog)
        self.communes = communes
        self._by_population = Weighted((c, c.population) for c in communes)
        self._by_department: dict[str, Weighted] = {}
        self._by_size = Weighted((c, c.population ** 1.5) for c in communes)
        self._streets = Weighted((t, w) for t, w in ((s[:2], s[2]) for s in STREET_TYPES))
        self.population = sum(c.population for c in communes)

    def commune(self, rng: random.Random, urban: bool = False, department: str = "") -> Commune:
        if department:
            found = self._by_department.get(department)
            if found is None:
                found = self._by_department[department] = Weighted(
                    (c, c.population) for c in self.communes if c.department == department)
            return found(rng)
        return (self._by_size if urban else self._by_population)(rng)

    def address(self, rng: random.Random, urban: bool = False, department: str = "") -> Address:
        """A street address in a commune drawn by population (or population^1.5 for ``urban`` sites, which
        puts hospitals in towns), within ``department`` when given."""
        c = self.commune(rng, urban, department)
        spread_km = min(3.0, max(0.3, 0.3 + 0.6 * math.log10(max(c.population, 100) / 1000 + 1)))
        lat = c.latitude + rng.gauss(0, spread_km) / 111.2
        lon = c.longitude + rng.gauss(0, spread_km) / (111.2 * math.cos(math.radians(c.latitude)))
        code, label = self._streets(rng)
        number = str(rng.randint(1, 120)) if rng.random() < 0.9 else ""
        return Address(c, rng.choice(c.postcodes), number, code, label, rng.choice(STREET_NAMES),
                       round(lat, 5), round(lon, 5))

    def phone(self, rng: random.Random) -> str:
        prefix = PHONE_PREFIX.get(self.code, "01")
        return prefix + "".join(str(rng.randrange(10)) for _ in range(10 - len(prefix)))


def finess_department(commune: Commune) -> str:
    return FINESS_DEPARTMENT.get(commune.department, commune.department)


def finess_prefix(commune: Commune) -> str:
    return FINESS_PREFIX.get(commune.department, commune.department)


def finess_commune(commune: Commune) -> str:
    """The 3-character commune code within the department, as FINESS prints it (01451 -> 451)."""
    return commune.cog[-3:]


@lru_cache(maxsize=8)
def _transformer(epsg: int):
    from pyproj import Transformer

    return Transformer.from_crs(4326, epsg, always_xy=True)


def project(region: str, lat: float, lon: float) -> tuple[float, float, str]:
    """(x, y, CRS label) of a WGS84 point in the FINESS projection of its region, to 0.1 m."""
    epsg, label = PROJECTION.get(region, LAMBERT93)
    x, y = _transformer(epsg).transform(lon, lat)
    return round(x, 1), round(y, 1), label
