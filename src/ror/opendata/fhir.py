"""Reading FHIR resources of the ROR IG for the flat and CSD files: extensions, codes, NOS labels."""

from __future__ import annotations

from functools import lru_cache

from ror.feeds.fhirmap import CREATION_EXT
from ror.feeds.model import nos_code
from ror.profiles.access import CAPACITY, CONFIDENTIALITY_URLS, CONTACT_HS, SENSITIVE  # noqa: F401 (re-exported)
from ror.profiles.searchparams import ROR
from ror.profiles.structure import FR_ADDRESS_INSEE
from ror.store.repository import REGION_SYSTEM

NOS_PREFIX = "https://mos.esante.gouv.fr/NOS/"
CREATION = CREATION_EXT
RESIDENTIAL = ROR + "ror-location-residential-capacity"
PATIENT_TYPE = ROR + "ror-healthcareservice-patient-type"
CONTACT_TELECOM = ROR + "ror-healthcareservice-contact-telecom"
CHANNEL = ROR + "ror-telecom-communication-channel"
PSY_SECTOR = ROR + "ror-healthcareservice-psychiatric-sector"
COMMUNE = ROR + "ror-commune-cog"
INSEE_URLS = FR_ADDRESS_INSEE
CONFIDENTIALITY = CONFIDENTIALITY_URLS


def table_of(system: str | None) -> str | None:
    """``…/NOS/TRE_R211-ActiviteOperationnelle/FHIR/…`` -> ``TRE_R211-ActiviteOperationnelle``."""
    if system and system.startswith(NOS_PREFIX):
        return system[len(NOS_PREFIX):].split("/", 1)[0]
    return None


@lru_cache(maxsize=1)
def _generator_nos():
    from ror.generate.nos import Nos
    return Nos()


def label(system: str | None, code: str, display: str | None = None) -> str:
    """The NOS label of a code: the coding's display, else the bundled NOS tables' label."""
    if display:
        return display
    table = table_of(system)
    if not table:
        return ""
    nos = _generator_nos()
    if table in nos.tables and code in nos.tables[table]["codes"]:
        return nos.label(table, code)
    found = nos_code(table, code)
    return found.label if found else ""


@lru_cache(maxsize=512)
def oid_of(system: str | None) -> str | None:
    """The OID of a code system (the CSD ``codingScheme``): NOS tables by their table name, ``urn:oid:``."""
    if not system:
        return None
    if system.startswith("urn:oid:"):
        return system[8:]
    table = table_of(system)
    nos = _generator_nos()
    if table and table in nos.tables:
        return nos.oid(table)
    from ror.feeds.regional import OID_TABLES
    for oid, t in OID_TABLES.items():
        if t == table:
            return oid
    return None


def ext(node: dict, url: str) -> dict | None:
    for e in node.get("extension", ()) or ():
        if isinstance(e, dict) and e.get("url") == url:
            return e
    return None


def exts(node: dict, url: str) -> list[dict]:
    return [e for e in node.get("extension", ()) or () if isinstance(e, dict) and e.get("url") == url]


def codings(cc: dict | None) -> list[dict]:
    return [c for c in (cc or {}).get("coding", ()) if isinstance(c, dict) and c.get("code")]


def first(cc: dict | None) -> dict | None:
    found = codings(cc)
    return found[0] if found else None


def value_coding(e: dict | None) -> dict | None:
    if not e:
        return None
    return e.get("valueCoding") or first(e.get("valueCodeableConcept"))


def sub(e: dict, url: str) -> dict | None:
    return ext(e, url)


def codes_of(ccs, table_prefix: str | None = None) -> list[dict]:
    """The codings of a list of CodeableConcepts, optionally only those of one NOS table."""
    out = []
    for cc in ccs or ():
        for c in codings(cc):
            if table_prefix is None or (table_of(c.get("system")) or "").startswith(table_prefix):
                out.append(c)
    return out


def region_of(res: dict) -> str | None:
    for t in (res.get("meta") or {}).get("tag", ()):
        if t.get("system") == REGION_SYSTEM and t.get("code"):
            return t["code"]
    return None


def ref_id(ref: dict | None) -> str:
    r = (ref or {}).get("reference", "") or ""
    return r.rsplit("/", 1)[-1] if r else ""


def commune(res: dict) -> dict | None:
    """The commune (TRE_R13 coding) of a place (``ror-commune-cog``) or of an address (INSEE code)."""
    found = value_coding(ext(res, COMMUNE))
    if found:
        return found
    addresses = res.get("address")
    for a in addresses if isinstance(addresses, list) else [addresses] if addresses else []:
        for url in INSEE_URLS:
            found = value_coding(ext(a, url))
            if found:
                return found
    return None


def main_address(res: dict) -> dict | None:
    a = res.get("address")
    if isinstance(a, list):
        return a[0] if a else None
    return a


def position(res: dict) -> tuple[float, float] | None:
    p = res.get("position")
    if isinstance(p, dict) and p.get("latitude") is not None and p.get("longitude") is not None:
        return float(p["latitude"]), float(p["longitude"])
    a = main_address(res) or {}
    geo = ext(a, "http://hl7.org/fhir/StructureDefinition/geolocation")
    if geo:
        lat, lon = sub(geo, "latitude"), sub(geo, "longitude")
        if lat and lon and "valueDecimal" in lat and "valueDecimal" in lon:
            return float(lat["valueDecimal"]), float(lon["valueDecimal"])
    return None


def capacities(place: dict) -> list[dict]:
    """Capacity records of a place as {field: code or value} (IG sub-extension names)."""
    out = []
    for e in exts(place, CAPACITY):
        rec: dict = {}
        for s in e.get("extension", ()):
            c = value_coding(s)
            if c:
                rec[s["url"]] = c["code"]
            else:
                for k in ("valueInteger", "valueDateTime", "valueString"):
                    if k in s:
                        rec[s["url"]] = s[k]
        out.append(rec)
    return out
