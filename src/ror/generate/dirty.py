"""Dirty records: realistic defects injected on purpose, each one listed in the manifest so that tests can
check a reader rejects (``reject``) or reports (``flag``) exactly those records.

Kinds per output (``KINDS``):

- ``truncated``: the line is cut (fewer fields, or JSON cut in the middle);
- ``bad_key``: the record's own identifier has a wrong check digit (FINESS, RPPS/ADELI; on a FHIR
  Organization its FINESS and FINESS-based idNatStruct, the resource keeping its regional id);
- ``bad_siret``: the SIRET of an establishment fails the Luhn test;
- ``unknown_code``: a code that is not in its NOS table (category ``999``, profession ``99``, activity
  ``999``, capacity status ``09``);
- ``mojibake``: accents mangled by a wrong decoding - in the Latin-1 FINESS file the line is written in
  UTF-8 (``Ã©`` when read as Latin-1); in UTF-8 files the text was decoded as Windows-1252 and re-encoded
  (``MÃ©decin``).

What a reader must do with each (``EXPECT``, per output; the manifest's ``expect`` of each record): a record
it cannot read, whose own identifier is wrong, or (since every imported record is validated against the ROR
profiles, whose NOS bindings are required) that holds an unknown code is rejected; a bad SIRET is left out
with a warning and mangled text is kept (flag). A Corsican FINESS number (2A/2B) with a wrong key is only
flagged: its key rule is not official, the feeds and the validator do not reject it (``expect``); so is a
Corsican ADELI number (an ADELI number's key is Luhn too: ``ror.profiles.identifiers``).

A FHIR resource that references a rejected one (transitively) is listed in the manifest's
``dirty.dependents``: a reader rejects it too unless it resolves the reference through a national key a
registry brought (``ror.generate.world.Sink.write``); it is never made dirty itself.

The decisions come from their own random stream, so the share of dirty records never changes the clean
data.
"""

from __future__ import annotations

import random

import orjson

from ror.generate.fhir import IDNATPS
from ror.generate.keys import corrupt_key

_REJECT_FLAG = {"truncated": "reject", "bad_key": "reject", "bad_siret": "flag", "unknown_code": "reject",
                "mojibake": "flag"}
EXPECT = {"finess": _REJECT_FLAG, "rpps": _REJECT_FLAG, "fhir": _REJECT_FLAG}
_CORSICA = ("2A", "2B")


def expect(output: str, kind: str, number: str = "") -> str:
    """What a reader must do with a dirty record of ``output`` (finess, rpps, fhir): reject or flag.
    ``number``: what a ``bad_key`` corrupted, a FINESS number or an idNat_PS (``0`` + ADELI, ``8`` + RPPS). Corsican
    FINESS and ADELI numbers are only flagged: their key rule is not official."""
    if kind == "bad_key" and (number[:2] in _CORSICA or (number[:1] == "0" and number[1:3] in _CORSICA)):
        return "flag"
    return EXPECT[output][kind]


# Kinds that apply to each kind of record.
KINDS = {
    "structureet": ("truncated", "bad_key", "bad_siret", "unknown_code", "mojibake"),
    "geolocalisation": ("truncated",),
    "structureej": ("truncated", "bad_key"),
    "rpps": ("truncated", "bad_key", "unknown_code", "mojibake"),
    "Organization": ("bad_key",),
    "HealthcareService": ("unknown_code", "mojibake"),
    "Location": ("unknown_code",),
    "Practitioner": ("bad_key", "mojibake"),
    "PractitionerRole": ("truncated", "unknown_code"),
}


def mojibake(text: str) -> str:
    """UTF-8 text wrongly decoded as Windows-1252: ``é`` -> ``Ã©``."""
    return text.encode("utf-8").decode("cp1252", errors="replace")


def _cut(rng: random.Random, fields: list[str], sep: str) -> str:
    keep = rng.randrange(3, max(4, len(fields) - 3))
    return sep.join(fields[:keep])


def flat(kind: str, record: str, line: str, rng: random.Random) -> tuple[str, bool]:
    """The dirty version of a FINESS (``;``) or RPPS (``|``) line, and whether to write it as UTF-8.

    Raises ``ValueError`` when the kind cannot apply to this line (e.g. mojibake of a line without accents).
    """
    sep = "|" if record == "rpps" else ";"
    fields = line.split(sep)
    if kind == "truncated":
        return _cut(rng, fields, sep), False
    if kind == "bad_key":
        if record == "rpps":
            fields[1] = corrupt_key(fields[1])
            fields[2] = fields[2][:1] + fields[1]
        else:
            fields[1] = corrupt_key(fields[1])
        return sep.join(fields), False
    if kind == "bad_siret":
        if not fields[22]:
            raise ValueError("no SIRET")
        fields[22] = corrupt_key(fields[22])
        return sep.join(fields), False
    if kind == "unknown_code":
        if record == "rpps":
            fields[9], fields[10] = "99", "Profession inconnue"
        else:
            fields[18], fields[19] = "999", "Catégorie inconnue"
        return sep.join(fields), False
    if kind == "mojibake":
        if line.isascii():
            raise ValueError("nothing to mangle")
        if record == "rpps":
            return mojibake(line), False
        return line, True
    raise ValueError(kind)


def fhir(kind: str, resource: dict, rng: random.Random, nos_url) -> bytes:
    """The dirty serialisation of a FHIR resource. Shared sub-objects are replaced, never mutated."""
    rtype = resource["resourceType"]
    if kind == "truncated":
        data = orjson.dumps(resource)
        return data[: rng.randrange(len(data) // 3, len(data) - 1)]
    if kind == "bad_key":
        key_system = "https://finess.esante.gouv.fr" if rtype == "Organization" else IDNATPS
        ids = []
        found = False
        for ident in resource["identifier"]:
            value = ident["value"]
            if ident.get("system") == key_system:
                value = corrupt_key(value)
                found = True
            elif rtype == "Organization" and ident.get("system") == "urn:oid:1.2.250.1.71.4.2.2":
                value = corrupt_key(value)
            ids.append({**ident, "value": value})
        if not found:
            raise ValueError("no key to corrupt")
        resource["identifier"] = ids
    elif kind == "unknown_code":
        if rtype == "HealthcareService":
            resource["specialty"] = [{"coding": [{"system": nos_url("TRE_R211-ActiviteOperationnelle"), "code": "999",
                                                  "display": "Activité inconnue"}]}]
        elif rtype == "PractitionerRole":
            resource["code"] = [{"coding": [{"system": nos_url("TRE_G15-ProfessionSante"), "code": "99",
                                             "display": "Profession inconnue"}]}]
        else:  # Location: an unknown capacity status in the first capacity record
            ext = resource["extension"]
            for i, e in enumerate(ext):
                if e["url"].endswith("ror-location-supported-capacity"):
                    sub = [dict(s) for s in e["extension"]]
                    sub[1] = {"url": "capacityStatus", "valueCodeableConcept": {"coding": [
                        {"system": nos_url("TRE_R330-TypeStatutCapacite"), "code": "09"}]}}
                    ext[i] = {"extension": sub, "url": e["url"]}
                    break
            else:
                raise ValueError("no capacity record")
    elif kind == "mojibake":
        if rtype == "Practitioner":
            name = resource["name"][0]
            if name["family"].isascii() and name["given"][0].isascii():
                raise ValueError("nothing to mangle")
            resource["name"] = [{"family": mojibake(name["family"]), "given": [mojibake(name["given"][0])]}]
        else:
            if resource["name"].isascii():
                raise ValueError("nothing to mangle")
            resource["name"] = mojibake(resource["name"])
    return orjson.dumps(resource)
