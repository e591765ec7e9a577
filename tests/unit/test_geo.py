"""Tests of ``ror.geo``: the packaged communes table (content, coverage, known centres), distance helpers."""

import csv
import dataclasses
import gzip
import io
import math
import re
import sqlite3
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from ror.geo import EARTH_RADIUS_KM, Commune, bounding_box, haversine_bound, haversine_km, load_communes
from ror.store.engine import ensure_math_functions

REPO = Path(__file__).resolve().parents[2]
NOS_ZIP = (REPO.parent / "shared/data/platines/ror-server-tests/lecture-eg-avec-date-sans-restriction-profil1"
           / "2023-06-14_NOS-Fichiers_Publics.zip")
HEADER = ["cog", "name", "department", "region", "population", "postcodes", "latitude", "longitude"]

# Town-centre coordinates (WGS84, from general knowledge: city hall / historic centre), COG -> (lat, lon, km).
# The table holds the centre of the commune's territory, so the tolerance is 5 km, more for the few
# communes whose territory stretches far from the town (Marseille's hills, Saint-Denis's uplands).
KNOWN_CENTRES = {
    "78646": (48.8049, 2.1204, 5),     # Versailles
    "44109": (47.2184, -1.5536, 5),    # Nantes
    "44162": (47.2122, -1.6497, 5),    # Saint-Herblain
    "75056": (48.8566, 2.3522, 5),     # Paris
    "75101": (48.8606, 2.3376, 5),     # Paris 1er arrondissement
    "69123": (45.7640, 4.8357, 5),     # Lyon
    "69381": (45.7676, 4.8344, 5),     # Lyon 1er arrondissement
    "13201": (43.2999, 5.3841, 5),     # Marseille 1er arrondissement
    "13055": (43.2965, 5.3698, 8),     # Marseille
    "31555": (43.6047, 1.4442, 5),     # Toulouse
    "33063": (44.8378, -0.5792, 5),    # Bordeaux
    "59350": (50.6292, 3.0573, 5),     # Lille
    "67482": (48.5734, 7.7521, 5),     # Strasbourg
    "35238": (48.1173, -1.6778, 5),    # Rennes
    "2A004": (41.9192, 8.7386, 5),     # Ajaccio
    "97209": (14.6161, -61.0588, 5),   # Fort-de-France
    "97302": (4.9224, -52.3135, 5),    # Cayenne
    "97411": (-20.8789, 55.4481, 8),   # Saint-Denis (La Réunion)
    "97611": (-12.7806, 45.2279, 5),   # Mamoudzou
    "97502": (46.7811, -56.1764, 5),   # Saint-Pierre (Saint-Pierre-et-Miquelon)
}
PARIS = (48.8566, 2.3522)
LYON = (45.7640, 4.8357)


def is_metropolitan(cog: str) -> bool:
    return cog[:2] not in ("97", "98", "99")


@pytest.fixture(scope="module")
def communes() -> dict[str, Commune]:
    return load_communes()


def destination(lat: float, lon: float, km: float, bearing_deg: float) -> tuple[float, float]:
    """The point at ``km`` from (lat, lon) on the given initial bearing (spherical Earth)."""
    d, b = km / EARTH_RADIUS_KM, math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def in_box(box, lat: float, lon: float) -> bool:
    min_lat, max_lat, min_lon, max_lon = box
    lon_ok = min_lon <= lon <= max_lon if min_lon <= max_lon else (lon >= min_lon or lon <= max_lon)
    return min_lat - 1e-9 <= lat <= max_lat + 1e-9 and lon_ok


def packaged_file():
    data = resources.files("ror").joinpath("data")
    return next(data.joinpath(n) for n in ("communes.csv", "communes.csv.gz") if data.joinpath(n).is_file())


# --- the packaged file --------------------------------------------------------------------------------------

def test_file_format():
    f = packaged_file()
    raw = f.read_bytes()
    text = (gzip.decompress(raw) if f.name.endswith(".gz") else raw).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == HEADER
    body = rows[1:]
    cogs = [r[0] for r in body]
    assert cogs == sorted(cogs) and len(set(cogs)) == len(cogs)
    for r in body:
        assert len(r) == len(HEADER)
        assert re.fullmatch(r"\d[\dAB]\d{3}", r[0]), r
        assert r[1], r
        assert r[4] == "" or r[4].isdigit(), r
        assert all(re.fullmatch(r"\d{5}", p) for p in r[5].split()), r
        assert (r[6] == "") == (r[7] == ""), r
        if r[6]:
            assert re.fullmatch(r"-?\d+\.\d{5}", r[6]) and re.fullmatch(r"-?\d+\.\d{5}", r[7]), r


def test_required_codes(communes):
    required = ["78646", "44162", "75056", "69123", "13055"]
    required += [f"751{i:02d}" for i in range(1, 21)]      # Paris arrondissements
    required += [f"6938{i}" for i in range(1, 10)]         # Lyon arrondissements
    required += [f"132{i:02d}" for i in range(1, 17)]      # Marseille arrondissements
    for cog in required:
        c = communes[cog]
        assert c.has_position and c.population and c.postcodes, c
    assert communes["78646"].name == "Versailles"
    assert communes["78646"].department == "78" and communes["78646"].region == "11"
    assert communes["78646"].postcodes == ("78000",)
    assert communes["44162"].name == "Saint-Herblain" and communes["44162"].department == "44"
    assert communes["75056"].name == "Paris" and len(communes["75056"].postcodes) >= 20
    assert communes["75101"].name == "Paris 1er Arrondissement" and communes["75101"].postcodes == ("75001",)
    assert communes["2A004"].department == "2A" and communes["97411"].department == "974"


def test_departments_match_codes(communes):
    for c in communes.values():
        if c.cog.startswith("99"):
            continue
        prefix = c.cog[:3] if c.cog[:2] in ("97", "98") else c.cog[:2]
        # a former commune absorbed across a department border keeps its own code (e.g. 75059 in 93)
        assert c.department == prefix or c.population is None, c


@pytest.mark.parametrize("cog", sorted(KNOWN_CENTRES))
def test_known_centres(communes, cog):
    lat, lon, tolerance_km = KNOWN_CENTRES[cog]
    c = communes[cog]
    assert haversine_km(lat, lon, c.latitude, c.longitude) <= tolerance_km, c


def test_positions_are_in_their_territory(communes):
    # coarse boxes: metropolitan France incl. Corsica, and a few overseas territories
    boxes = {
        "metro": (41.3, 51.2, -5.3, 9.6),
        "971": (15.8, 18.2, -63.2, -61.0),
        "972": (14.3, 14.9, -61.3, -60.8),
        "973": (2.1, 5.8, -54.7, -51.6),
        "974": (-21.4, -20.8, 55.2, 55.9),
        "976": (-13.1, -12.6, 45.0, 45.4),
    }
    for c in communes.values():
        if not c.has_position:
            continue
        key = "metro" if is_metropolitan(c.cog) else c.department
        if key in boxes:
            min_lat, max_lat, min_lon, max_lon = boxes[key]
            assert min_lat <= c.latitude <= max_lat and min_lon <= c.longitude <= max_lon, c


def test_metropolitan_coverage(communes):
    metro = [c for c in communes.values() if is_metropolitan(c.cog)]
    assert len(metro) > 34_000
    with_position = sum(c.has_position for c in metro)
    assert with_position / len(metro) >= 0.99
    current = [c for c in metro if c.population is not None]
    assert sum(c.has_position for c in current) / len(current) >= 0.99


def read_tre_r13_active() -> set[str]:
    with zipfile.ZipFile(NOS_ZIP) as z:
        raw = z.read(next(n for n in z.namelist() if n.endswith("TRE_R13-CommuneOM.tabs")))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return {f[1] for f in (line.split(";") for line in text.splitlines()[3:] if line) if not f[6].strip()}


@pytest.mark.skipif(not NOS_ZIP.is_file(), reason="NOS zip of shared/ not found beside the repository")
def test_tre_r13_coverage(communes):
    active = read_tre_r13_active()
    assert len(active) == 35_447
    assert active <= set(communes)  # every active TRE_R13 code is in the table
    metro = [cog for cog in active if is_metropolitan(cog)]
    with_position = sum(communes[cog].has_position for cog in metro)
    assert with_position / len(metro) >= 0.95
    assert with_position == len(metro)  # the figure achieved (SOURCES.md)


# --- load_communes ------------------------------------------------------------------------------------------

def test_load_is_cached_and_frozen(communes):
    assert load_communes() is communes
    with pytest.raises(dataclasses.FrozenInstanceError):
        communes["78646"].name = "x"  # type: ignore[misc]


def test_load_from_path(tmp_path):
    text = ("cog,name,department,region,population,postcodes,latitude,longitude\n"
            "78646,Versailles,78,11,84095,78000,48.80229,2.11741\n"
            "98403,Îles éparses,984,984,,,,\n")
    plain = tmp_path / "c.csv"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "c.csv.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    for path in (plain, str(packed)):
        got = load_communes(path)
        expected = Commune("78646", "Versailles", "78", "11", 84095, ("78000",), 48.80229, 2.11741)
        assert got["78646"] == expected
        assert got["98403"].name == "Îles éparses"
        assert got["98403"].population is None and got["98403"].postcodes == ()
        assert not got["98403"].has_position


def test_no_work_at_import():
    code = "import ror.geo as g; print(g.load_communes.cache_info().currsize)"
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src + ":" + ":".join(sys.path)})
    assert out.stdout.strip() == "0"


# --- haversine_km -------------------------------------------------------------------------------------------

def test_haversine_paris_lyon(communes):
    assert haversine_km(*PARIS, *LYON) == pytest.approx(392, abs=3)
    paris, lyon = communes["75056"], communes["69123"]
    distance = haversine_km(paris.latitude, paris.longitude, lyon.latitude, lyon.longitude)
    assert distance == pytest.approx(392, abs=3)


def test_haversine_properties():
    assert haversine_km(*PARIS, *PARIS) == 0.0
    assert haversine_km(*PARIS, *LYON) == haversine_km(*LYON, *PARIS)
    assert haversine_km(0, 0, 90, 0) == pytest.approx(math.pi / 2 * 6371.0088)       # equator to pole
    assert haversine_km(0, 0, 0, 180) == pytest.approx(math.pi * 6371.0088)          # antipodes
    assert haversine_km(-14.3, 179.9, -14.3, -179.9) == pytest.approx(21.55, abs=0.05)  # across 180°


# --- bounding_box -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("km", [0.5, 10, 50, 300])
@pytest.mark.parametrize("centre", [PARIS, (41.38, 9.17), (-20.88, 55.45), (4.92, -52.31), (0.0, 0.0),
                                    (-14.3, -178.1), (78.2, 15.6)])
def test_bounding_box_contains_the_circle(centre, km):
    lat, lon = centre
    box = bounding_box(lat, lon, km)
    for bearing in range(0, 360, 5):
        for fraction in (1.0, 0.999, 0.5):
            p = destination(lat, lon, km * fraction, bearing)
            assert haversine_km(lat, lon, *p) == pytest.approx(km * fraction, rel=1e-9, abs=1e-9)
            assert in_box(box, *p), (box, p)


def test_bounding_box_is_tight():
    min_lat, max_lat, min_lon, max_lon = bounding_box(*PARIS, 10)
    # north/south edges are reached exactly; east/west edges within a few metres
    assert haversine_km(*PARIS, max_lat, PARIS[1]) == pytest.approx(10, abs=1e-6)
    assert haversine_km(*PARIS, min_lat, PARIS[1]) == pytest.approx(10, abs=1e-6)
    assert 9.9 < haversine_km(*PARIS, PARIS[0], max_lon) <= 10.01
    assert min_lon < PARIS[1] < max_lon


def test_bounding_box_edges():
    box = bounding_box(*PARIS, 0)
    assert in_box(box, *PARIS) and box[1] - box[0] < 1e-8 and box[3] - box[2] < 1e-8
    assert bounding_box(89.9, 0, 50)[2:] == (-180.0, 180.0)          # covers the pole
    _, _, min_lon, max_lon = bounding_box(-14.3, -178.1, 300)          # Wallis-and-Futuna
    assert min_lon > max_lon                                           # wraps across the antimeridian
    with pytest.raises(ValueError):
        bounding_box(*PARIS, -1)


def test_haversine_bound_says_what_the_distance_says(communes):
    """``h <= haversine_bound(km)`` keeps exactly the points ``haversine_km <= km`` keeps: around Nantes, for radii
    just inside and just outside each commune's distance."""
    centre = communes["44109"]
    p1 = math.radians(centre.latitude)
    for c in (c for c in communes.values() if c.has_position):
        d = haversine_km(centre.latitude, centre.longitude, c.latitude, c.longitude)
        dlat, dlon = math.radians(c.latitude - centre.latitude), math.radians(c.longitude - centre.longitude)
        h = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(math.radians(c.latitude)) * math.sin(dlon / 2) ** 2
        for km in (d * (1 - 1e-9) - 1e-9, d * (1 + 1e-9) + 1e-9):
            if km < 0:  # the centre itself
                continue
            assert (h <= haversine_bound(km)) == (d <= km), (c, km)


def test_haversine_bound_beyond_half_the_globe():
    assert haversine_bound(0) == 0.0
    assert haversine_bound(math.pi * EARTH_RADIUS_KM) == 1.0       # the antipodes are within
    assert haversine_bound(1.5 * math.pi * EARTH_RADIUS_KM) == 1.0  # the sine's second half would shrink it


def test_math_functions_supplied_where_sqlite_lacks_them():
    """A SQLite build without its math functions gets Python's, which the geographic test then calls."""
    class WithoutMath:
        def __init__(self):
            self.given = {}

        def execute(self, sql):
            raise sqlite3.OperationalError("no such function: sin")

        def create_function(self, name, arity, fn, deterministic):
            self.given[name] = (arity, fn, deterministic)
    conn = WithoutMath()
    ensure_math_functions(conn)
    assert conn.given == {"sin": (1, math.sin, True), "cos": (1, math.cos, True), "power": (2, math.pow, True)}
    builtin = sqlite3.connect(":memory:")  # this build has them: nothing replaced
    ensure_math_functions(builtin)
    assert builtin.execute("SELECT power(sin(1), 2) + power(cos(1), 2)").fetchone()[0] == pytest.approx(1.0)


def test_prefilter_then_exact(communes):
    """The intended use: the box keeps every commune the exact test keeps."""
    centre = communes["44109"]
    box = bounding_box(centre.latitude, centre.longitude, 15)
    located = [c for c in communes.values() if c.has_position]
    near = {c.cog for c in located
            if haversine_km(centre.latitude, centre.longitude, c.latitude, c.longitude) <= 15}
    boxed = {c.cog for c in located if in_box(box, c.latitude, c.longitude)}
    assert near <= boxed
    assert {"44109", "44162", "44143"} <= near  # Nantes, Saint-Herblain, Rezé
    assert len(boxed) < 2 * len(near)
