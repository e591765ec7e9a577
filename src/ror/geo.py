"""French communes reference table and great-circle helpers for the ``near-insee-code`` search.

The table ``ror/data/communes.csv`` (or ``communes.csv.gz``) is built by ``scripts/build_communes.py``; its
sources and coverage are in ``ror/data/SOURCES.md``. Nothing is read at import time: ``load_communes`` reads
the file on first call and caches the result.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

EARTH_RADIUS_KM = 6371.0088  # IUGG mean Earth radius
_DATA_FILES = ("communes.csv", "communes.csv.gz")
_MARGIN_DEG = 1e-9  # ~0.1 mm: keeps points exactly on the circle inside despite float rounding


@dataclass(frozen=True, slots=True)
class Commune:
    cog: str                       # INSEE COG code, e.g. "78646", "2A004", "75101"
    name: str
    department: str                # "78", "2A", "974"; a collectivity's own code for 975..988; "" for Monaco
    region: str                    # INSEE region code ("11"); a collectivity's own code for 975..988
    population: int | None         # municipal population; None for former communes
    postcodes: tuple[str, ...]
    latitude: float | None         # WGS84 degrees of the commune centre; None when no source gives one
    longitude: float | None

    @property
    def has_position(self) -> bool:
        return self.latitude is not None and self.longitude is not None


def _parse(text: str) -> dict[str, Commune]:
    communes: dict[str, Commune] = {}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        lat, lon, pop = row["latitude"], row["longitude"], row["population"]
        communes[row["cog"]] = Commune(
            cog=row["cog"],
            name=row["name"],
            department=row["department"],
            region=row["region"],
            population=int(pop) if pop else None,
            postcodes=tuple(row["postcodes"].split()),
            latitude=float(lat) if lat else None,
            longitude=float(lon) if lon else None,
        )
    return communes


def _read(data: bytes, gzipped: bool) -> str:
    return (gzip.decompress(data) if gzipped else data).decode("utf-8")


@lru_cache(maxsize=4)
def load_communes(path: str | Path | None = None) -> dict[str, Commune]:
    """COG code -> Commune. ``path`` defaults to the table packaged in ``ror/data``.

    The result is cached (per path) and shared: treat it as read-only.
    """
    if path is not None:
        path = Path(path)
        return _parse(_read(path.read_bytes(), path.suffix == ".gz"))
    data_dir = resources.files("ror").joinpath("data")
    for name in _DATA_FILES:
        resource = data_dir.joinpath(name)
        if resource.is_file():
            return _parse(_read(resource.read_bytes(), name.endswith(".gz")))
    raise FileNotFoundError("ror/data/communes.csv is missing: run scripts/build_communes.py")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two WGS84 points (spherical Earth, mean radius 6371.0088 km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def haversine_bound(km: float) -> float:
    """The haversine ``h`` (as in ``haversine_km``) of the points within ``km``: ``h <= haversine_bound(km)`` says
    ``haversine_km(...) <= km`` without an arcsine or a square root per point (a geographic search tests every point
    of its box)."""
    half = km / (2 * EARTH_RADIUS_KM)  # the angle's half, radians
    return 1.0 if half >= math.pi / 2 else math.sin(half) ** 2


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, float, float]:
    """``(min_lat, max_lat, min_lon, max_lon)`` holding every point within ``km`` of (lat, lon).

    Meant as a cheap SQL prefilter (``latitude BETWEEN ? AND ? AND longitude BETWEEN ? AND ?``) before the
    exact ``haversine_km`` test. The longitude half-width is the exact ``asin(sin(d) / cos(lat))`` (wider
    than ``d / cos(lat)``), and the box is widened by 1e-9 degree against float rounding. When the circle
    reaches a pole the box spans all longitudes; a box crossing the antimeridian comes back with
    ``min_lon > max_lon`` (then test ``longitude >= min_lon OR longitude <= max_lon``), which among French
    communes only happens around Wallis-and-Futuna.
    """
    if km < 0:
        raise ValueError("distance must be >= 0")
    d = km / EARTH_RADIUS_KM  # angular distance, radians
    dlat = math.degrees(d) + _MARGIN_DEG
    min_lat, max_lat = lat - dlat, lat + dlat
    if max_lat >= 90.0 or min_lat <= -90.0 or d >= math.pi / 2:
        return max(min_lat, -90.0), min(max_lat, 90.0), -180.0, 180.0
    s = math.sin(d) / math.cos(math.radians(lat))
    if s >= 1.0:
        return min_lat, max_lat, -180.0, 180.0
    dlon = math.degrees(math.asin(s)) + _MARGIN_DEG
    min_lon, max_lon = lon - dlon, lon + dlon
    if min_lon < -180.0:
        min_lon += 360.0
    if max_lon > 180.0:
        max_lon -= 360.0
    return min_lat, max_lat, min_lon, max_lon
