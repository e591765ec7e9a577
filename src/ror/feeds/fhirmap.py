"""FHIR building blocks shared by the source modules: identifier systems and slices of the ROR profiles,
addresses with their ISO 21090 parts, commune code, geolocation, region tag, profile extensions."""

from __future__ import annotations

import re

from ror.feeds.model import coding, nos_system
from ror.geo import load_communes
from ror.store.repository import REGION_SYSTEM

ROR = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
PROFILE = {t: ROR + p for t, p in (("Organization", "ror-organization"), ("Practitioner", "ror-practitioner"),
                                   ("PractitionerRole", "ror-practitionerrole"),
                                   ("HealthcareService", "ror-healthcareservice"), ("Location", "ror-location"))}

FINESS = "https://finess.esante.gouv.fr"
SIRENE = "https://sirene.fr"
IDNATST = "urn:oid:1.2.250.1.71.4.2.2"
RPPS_RANG = "https://rppsrang.esante.gouv.fr"
ADELI_RANG = "https://adelirang.esante.gouv.fr"
IDNATPS = "urn:oid:1.2.250.1.71.4.2.1"
OI = "https://oi.esante.gouv.fr"
# Our own namespace for the identifiers ROR national mints (pre-filled offers and roles).
ROR_OFFER = "https://ror.esante.gouv.fr/offre"
ROR_ROLE = "https://ror.esante.gouv.fr/situation-operationnelle"

G07 = "TRE_G07-TypeIdentifiantStructure"
_G07_CODE = {FINESS: "1", IDNATST: "40", RPPS_RANG: "4", ADELI_RANG: "0"}

INSEE_EXT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
GEOLOC_EXT = "http://hl7.org/fhir/StructureDefinition/geolocation"
PERIOD_EXT = "http://hl7.org/fhir/StructureDefinition/organization-period"
CREATION_EXT = ROR + "ror-meta-creation-date"
ADXP = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-"
LIEU_DIT_EXT = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-lieu-dit"
COMMUNE = "TRE_R13-CommuneOM"


def org_identifier(system: str, value: str) -> dict:
    """An Organization identifier in its ROR slice (type from TRE_G07); SIREN vs SIRET told by length."""
    code = _G07_CODE.get(system) or ("2" if len(value) == 9 else "3")
    return {"type": {"coding": [coding(G07, code)]}, "system": system, "value": value}


def region_tag(code: str | None) -> list[dict]:
    return [{"system": REGION_SYSTEM, "code": code}] if code else []


def region_of_commune(cog: str | None) -> str | None:
    commune = load_communes().get(cog) if cog else None
    return commune.region if commune and commune.region else None


def meta(rtype: str, region: str | None) -> dict:
    out: dict = {"profile": [PROFILE[rtype]]}
    tags = region_tag(region)
    if tags:
        out["tag"] = tags
    return out


def creation(date: str | None) -> list[dict]:
    return [{"url": CREATION_EXT, "valueDateTime": date}] if date else []


def period(start: str | None = None, end: str | None = None) -> list[dict]:
    p = {k: v for k, v in (("start", start), ("end", end)) if v}
    return [{"url": PERIOD_EXT, "valuePeriod": p}] if p else []


_BOX = re.compile(r"^(BP|CS|TSA|CP)\s*\d", re.IGNORECASE)


def address(*, additional: str = "", number: str = "", suffix: str = "", street_type: str = "",
            street: str = "", locality: str = "", postcode: str = "", city: str = "", cog: str = "",
            geolocation: dict | None = None) -> dict | None:
    """A French postal address with the ADXP parts the ROR profiles name; None when there is nothing."""
    lines: list[str] = []
    parts: list[dict | None] = []
    if additional:
        lines.append(additional)
        parts.append({"extension": [{"url": ADXP + "additionalLocator", "valueString": additional}]})
    street_line = " ".join(p for p in (number + suffix, street_type, street) if p)
    if street_line:
        ext = [{"url": ADXP + name, "valueString": v} for name, v in
               (("houseNumber", number), ("buildingNumberSuffix", suffix), ("streetNameType", street_type),
                ("streetNameBase", street)) if v]
        lines.append(street_line)
        parts.append({"extension": ext})
    if locality:
        lines.append(locality)
        url = ADXP + "postBox" if _BOX.match(locality) else LIEU_DIT_EXT
        parts.append({"extension": [{"url": url, "valueString": locality}]})
    out: dict = {"use": "work", "type": "physical"} if (lines or city or cog) else {}
    if not out:
        return None
    extensions = []
    if cog:
        extensions.append({"url": INSEE_EXT, "valueCoding": {"system": nos_system(COMMUNE), "code": cog}})
    if geolocation:
        extensions.append(geolocation)
    if extensions:
        out["extension"] = extensions
    if lines:
        out["line"] = lines
        out["_line"] = parts
    if city:
        out["city"] = city
    if postcode:
        out["postalCode"] = postcode
    out["country"] = "FR"
    return out


def geolocation(lat: float, lon: float, reliable: bool | None) -> dict:
    ext = [{"url": "latitude", "valueDecimal": lat}, {"url": "longitude", "valueDecimal": lon}]
    if reliable is not None:
        ext.append({"url": ROR + "ror-confidence-geolocation", "valueBoolean": reliable})
    return {"url": GEOLOC_EXT, "extension": ext}


def phone(value: str, channel: str = "2") -> dict | None:
    """A ContactPoint with the ROR telecom extensions (channel TRE_R200: 2 phone, 6 fax, 3 e-mail;
    confidentiality TRE_R283 1 = public, as registries publish these numbers openly)."""
    if channel != "3":
        value = value.replace(" ", "").replace(".", "")
    if not value:
        return None
    system = {"2": "phone", "3": "email", "6": "fax"}[channel]
    return {"extension": [
        {"url": ROR + "ror-telecom-communication-channel",
         "valueCodeableConcept": {"coding": [coding("TRE_R200-CanalCommunication", channel)]}},
        {"url": ROR + "ror-telecom-confidentiality-level",
         "valueCodeableConcept": {"coding": [coding("TRE_R283-NiveauConfidentialite", "1")]}}],
        "system": system, "value": value}


def prune(d: dict) -> dict:
    """Drop empty values so that absent source fields are absent elements (stable content hashes)."""
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}
