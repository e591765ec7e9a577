"""The national flat files look like the real ones: the FINESS etalab stock file (manifest line, then
``structureet`` / ``geolocalisation`` / ``structureej`` records, ``;``, Latin-1, fields of the notices) and
the RPPS ``PS_LibreAcces_Personne_activite`` extraction (the real header, ``|`` with a trailing ``|``);
check keys are valid except on the records listed as dirty; FHIR, FINESS and RPPS agree with each other."""

from __future__ import annotations

import csv
import io
import math
import re

import pytest
from pyproj import Transformer

from ror.generate.keys import finess_ok, luhn_ok
from ror.generate.nos import Nos
from ror.geo import load_communes
from tests.generate.conftest import DATA, SAMPLES

FIELDS = {"structureet": 32, "geolocalisation": 6, "structureej": 23}
ET_NAMES = ("section", "nofinesset", "nofinessej", "rs", "rslongue", "complrs", "compldistrib", "numvoie", "typvoie",
            "voie", "compvoie", "lieuditbp", "commune", "departement", "libdepartement", "ligneacheminement",
            "telephone", "telecopie", "categetab", "libcategetab", "categagretab", "libcategagretab", "siret",
            "codeape", "codemft", "libmft", "codesph", "libsph", "dateouv", "dateautor", "datemaj", "numuai")
EJ_NAMES = ("section", "nofiness", "rs", "rslongue", "complrs", "numvoie", "typvoie", "voie", "compvoie",
            "compldistrib", "lieuditbp", "commune", "ligneacheminement", "departement", "libdepartement",
            "telephone", "statutjuridique", "libstatutjuridique", "categetab", "libcategetab", "siren", "codeape",
            "datecrea")
CRS = re.compile(r"EPSG:(\d+)")


def _finess_lines(dataset):
    path = next((dataset / "finess").iterdir())
    assert re.fullmatch(r"etalab-cs1100507-stock-\d{8}-\d{4}\.csv", path.name)
    return path.read_bytes().splitlines()


def _clean_records(dataset, manifest, dirty_lines) -> dict[str, list[dict]]:
    lines = _finess_lines(dataset)
    rel = f"finess/{next((dataset / 'finess').iterdir()).name}"
    out: dict[str, list[dict]] = {"structureet": [], "geolocalisation": [], "structureej": []}
    for number, raw in enumerate(lines[1:], 2):
        if (rel, number) in dirty_lines:
            continue
        fields = next(csv.reader(io.StringIO(raw.decode("latin-1")), delimiter=";", quotechar='"'))
        names = {"structureet": ET_NAMES, "structureej": EJ_NAMES}.get(fields[0])
        out[fields[0]].append(dict(zip(names, fields, strict=True)) if names else {"fields": fields})
    return out


def test_finess_layout(dataset, manifest, dirty_lines):
    lines = _finess_lines(dataset)
    assert re.fullmatch(rb"finess;etalab;\d+;\d{4}-\d{2}-\d{2}", lines[0])
    sections = [line.split(b";", 1)[0] for line in lines[1:]]
    assert sections == sorted(sections, key=lambda s: list(FIELDS).index(s.decode()))
    rel = f"finess/{next((dataset / 'finess').iterdir()).name}"
    for number, raw in enumerate(lines[1:], 2):
        text = raw.decode("latin-1")
        fields = next(csv.reader(io.StringIO(text), delimiter=";", quotechar='"'))
        if (rel, number) in dirty_lines:
            continue
        assert len(fields) == FIELDS[fields[0]], (number, text)
        assert text.endswith(";") == (fields[0] == "structureet")
    # free text is upper-case ASCII; Latin-1 shows up in NOS labels (real files print "Centre Hospitalier (C.H.)")
    assert any(b"\xe9" in line for line in lines)


def test_finess_fields_follow_the_notices(dataset, manifest, dirty_lines):
    records = _clean_records(dataset, manifest, dirty_lines)
    notice = DATA / "format_etalabcs1100502.csv"
    limits = {}
    ranks = []
    for row in csv.DictReader(io.StringIO(notice.read_bytes().decode("latin-1")), delimiter=";"):
        if row["name"]:  # the first row names the section
            limits[row["name"]] = (row["pattern"], int(row["maxLength"]) if row["maxLength"] else None)
            ranks.append((int(row["rang"]), row["name"]))
    assert [name for _, name in sorted(ranks)] == list(ET_NAMES[1:])  # the notice's fields, in its order
    # the real headered derivative carries the same fields, some renamed, plus derived ones
    header = (SAMPLES / "etalab_small_20201231.csv").read_text("utf-8", errors="replace").splitlines()[0].split(";")
    renamed = {"commune": "cog", "categagretab": "categretab", "libcategagretab": "libcategretab", "codemft": "mft",
               "libmft": "libmft", "codesph": "sph", "dateouv": "dateouvert", "numuai": "numen"}
    assert all(renamed.get(name, name) in header for name in ET_NAMES[1:])
    nos = Nos()
    for et in records["structureet"]:
        for name, (pattern, max_length) in limits.items():
            value = et[name]
            if value and pattern and name != "ligneacheminement":
                assert re.fullmatch(pattern, value), (name, value)
            if value and max_length:
                assert len(value) <= max_length, (name, value)
        assert re.fullmatch(r"\d{5} [A-Z0-9 ]{1,26}", et["ligneacheminement"]), et["ligneacheminement"]
        assert nos.has("TRE_R66-CategorieEtablissement", et["categetab"])
        assert et["libcategetab"] == nos.long_label("TRE_R66-CategorieEtablissement", et["categetab"])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", et["datemaj"])
    for ej in records["structureej"]:
        assert nos.has("TRE_R72-FinessStatutJuridique", ej["statutjuridique"])
        assert re.fullmatch(r"\d{9}", ej["siren"]) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", ej["datecrea"])


def test_finess_keys_and_links(dataset, manifest, dirty_lines):
    records = _clean_records(dataset, manifest, dirty_lines)
    ej_numbers = {ej["nofiness"] for ej in records["structureej"]}
    dirty_keys = {d["key"] for d in manifest["dirty"]["records"] if d["file"].startswith("finess/")}
    for et in records["structureet"]:
        assert finess_ok(et["nofinesset"]) and finess_ok(et["nofinessej"])
        assert et["nofinessej"] in ej_numbers or et["nofinessej"] in dirty_keys
        assert not et["siret"] or luhn_ok(et["siret"])
        prefix = {"9A": "9701", "9B": "9702", "9C": "9703", "9D": "9704", "9F": "9706"}.get(et["departement"],
                                                                                            et["departement"])
        assert et["nofinesset"].startswith(prefix)
    for ej in records["structureej"]:
        assert finess_ok(ej["nofiness"]) and luhn_ok(ej["siren"])
    assert any(et["departement"] in ("2A", "2B") for et in records["structureet"])  # Corsica: letters in the key


def test_geolocation_projections_land_in_the_commune(dataset, manifest, dirty_lines):
    records = _clean_records(dataset, manifest, dirty_lines)
    communes = load_communes()
    where = {et["nofinesset"]: et["departement"] + et["commune"] for et in records["structureet"]}
    seen = set()
    for geo in records["geolocalisation"]:
        _, number, x, y, source, _ = geo["fields"]
        if number not in where:  # its establishment record is a dirty one
            continue
        epsg = int(CRS.search(source.rsplit(",", 1)[-1]).group(1))
        seen.add(epsg)
        lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(float(x), float(y))
        code = where[number]
        c = communes["97" + code[-3:] if code.startswith("9") and code[1].isalpha() else code]  # 9D409 -> 97409
        distance = math.dist((lat, lon * math.cos(math.radians(lat))),
                             (c.latitude, c.longitude * math.cos(math.radians(lat)))) * 111.2
        assert distance < 15, (number, epsg, distance)
    assert {2154, 2975} <= seen  # Lambert-93 in metropolitan France, UTM 40S in La Réunion


def _rpps(dataset):
    path = next((dataset / "rpps").iterdir())
    assert re.fullmatch(r"PS_LibreAcces_Personne_activite_\d{12}\.txt", path.name)
    return path, path.read_text("utf-8").splitlines()


def test_rpps_layout_and_keys(dataset, manifest, dirty_lines):
    path, lines = _rpps(dataset)
    assert lines[0] == (SAMPLES / "PS_LibreAcces_Personne_activite_small.txt").read_text("utf-8").splitlines()[0]
    rel = f"rpps/{path.name}"
    for number, line in enumerate(lines[1:], 2):
        if (rel, number) in dirty_lines:
            continue
        fields = line.split("|")
        assert len(fields) == 53 and fields[-1] == "", number
        id_type, number_pp, idnat = fields[:3]
        assert idnat == id_type + number_pp
        assert (id_type, len(number_pp)) in (("8", 11), ("0", 9)) and luhn_ok(number_pp)
        if fields[21]:  # FINESS site: its technical id and legacy id derive from it
            assert fields[23] == "F" + fields[21] and fields[46] == "1" + fields[21]
        elif fields[23].startswith("C") and fields[19]:  # practice company: its SIRET
            assert fields[23] == "C" + fields[19] and luhn_ok(fields[19])
        elif fields[23].startswith("C"):  # ADELI cabinet: ADELI number (with its key) + 2-digit rang
            assert len(fields[23]) == 12 and luhn_ok(fields[23][1:10]) and fields[46] == "0" + fields[23][1:]
        elif fields[23].startswith("R"):  # RPPS cabinet: RPPS number (with its key) + 3-digit rang
            assert len(fields[23]) == 15 and luhn_ok(fields[23][1:12]) and fields[46] == "4" + fields[23][1:]
    ids = [line.split("|", 3)[2] for number, line in enumerate(lines[1:], 2) if (rel, number) not in dirty_lines]
    assert ids == sorted(ids)  # grouped by professional, as the real extraction


def test_fhir_finess_and_rpps_agree(dataset, manifest, dirty_lines, fhir):
    """What consolidation matches on: FINESS numbers, EJ links, idNat_PS and practice sites."""
    records = _clean_records(dataset, manifest, dirty_lines)
    ets = {et["nofinesset"]: et for et in records["structureet"]}
    ejs = {ej["nofiness"] for ej in records["structureej"]}
    dirty_keys = {d["key"] for d in manifest["dirty"]["records"]}
    _, lines = _rpps(dataset)
    rpps_sites: dict[str, set[str]] = {}
    for line in lines[1:]:
        fields = line.split("|")
        if len(fields) == 53:
            rpps_sites.setdefault(fields[2], set()).add(fields[21] or fields[23])
    finess_system = "https://finess.esante.gouv.fr"
    matched = 0
    for types in fhir.values():
        orgs = {o["id"]: o for o in types["Organization"]}
        finess_of = {oid: next((i["value"] for i in o["identifier"] if i.get("system") == finess_system), "")
                     for oid, o in orgs.items()}
        for oid, o in orgs.items():
            number = finess_of[oid]
            if not number or f"Organization/{oid}" in dirty_keys or number in dirty_keys:
                continue
            if oid.startswith("eg-"):
                parent = o["partOf"]["reference"]
                if parent in dirty_keys or number not in ets:  # dirty EJ resource, or the EG is closed
                    continue
                assert ets[number]["nofinessej"] == finess_of[parent.removeprefix("Organization/")]
                matched += 1
            elif oid.startswith("ej-"):
                assert number in ejs
        practitioners = {p["id"]: p["identifier"][0]["value"] for p in types["Practitioner"]}
        for role in types["PractitionerRole"]:
            idnat = practitioners.get(role["practitioner"]["reference"].removeprefix("Practitioner/"))
            if idnat is None or idnat not in rpps_sites:
                continue  # the practitioner or its RPPS line is a dirty record
            site = orgs[role["organization"]["reference"].removeprefix("Organization/")]
            if f"Organization/{site['id']}" in dirty_keys:
                continue
            site_key = finess_of[site["id"]] or next(
                {"3": "C", "4": "R", "0": "C"}[i["type"]["coding"][0]["code"]] + i["value"]
                for i in site["identifier"] if i["type"]["coding"][0]["code"] in ("3", "4", "0")
                and "TRE_G07" in i["type"]["coding"][0]["system"])
            assert site_key in rpps_sites[idnat] or site_key in dirty_keys, (idnat, site_key)
    assert matched


def test_entities_in_several_regions(fhir):
    """Multi-region groups and professionals appear in each region's extract with the same identifiers."""
    def regions_of(rtype: str, system: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for region, types in fhir.items():
            for r in types[rtype]:
                for ident in r.get("identifier", []):
                    if ident.get("system") == system:
                        out.setdefault(ident["value"], set()).add(region)
        return out

    people = regions_of("Practitioner", "urn:oid:1.2.250.1.71.4.2.1")
    assert any(len(regions) > 1 for regions in people.values())


@pytest.mark.parametrize("code", ["52", "94", "04"])
def test_sites_are_where_people_live(code):
    """Communes are drawn in proportion to their population."""
    import random

    from ror.generate.places import Region
    region = Region(code, Nos().current_communes)
    rng = random.Random(1)
    draws = [region.commune(rng).cog for _ in range(20000)]
    biggest = max(region.communes, key=lambda c: c.population)
    share = biggest.population / region.population
    observed = draws.count(biggest.cog) / len(draws)
    assert abs(observed - share) < 0.02 + 0.1 * share
