"""Formats and check keys of the national identifiers carried by ROR resources.

The rule applied depends on ``Identifier.system`` (the IG's identifier slices fix it):

- FINESS (``https://finess.esante.gouv.fr``): 9 characters, a 2-character département (digits, or
  2A/2B for Corsica) then 7 digits; the 9th is a Luhn key over the whole number. Verified on the 188
  distinct FINESS numbers of the FINESS open-data sample (all pass). For Corsica, the substitution used
  to compute the key is not stated in the material we have: the key is computed with 2A/2B read as 20,
  and a mismatch there is only a warning.
- SIREN / SIRET (``https://sirene.fr``): 9 / 14 digits, Luhn (python-stdnum, which also knows La Poste's
  SIRET exception).
- idNat_PS (``urn:oid:1.2.250.1.71.4.2.1``): ``8`` + RPPS (11 digits, Luhn key) or ``0`` + ADELI.
- ADELI: 9 characters, the département as in a FINESS number (2 digits, or 2A/2B) then 7 digits; the 9th is a Luhn
  key over the whole number. Verified on the 21 ADELI numbers of the real RPPS open-data sample (all pass; by chance,
  one in ten would). For Corsica, as for FINESS: computed with 2A/2B read as 20, and a mismatch is only a warning.
- idNatStruct (``urn:oid:1.2.250.1.71.4.2.2``): its first character is the TRE_G07 identifier type of
  what follows: ``1`` + FINESS, ``2`` + SIREN, ``3`` + SIRET, ``4`` + RPPS + rang, ``0`` + ADELI + rang.
"""

from __future__ import annotations

import re

from stdnum import luhn
from stdnum.fr import siren, siret

FINESS = "https://finess.esante.gouv.fr"
SIRENE = "https://sirene.fr"
ID_NAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
ID_NAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"
RPPS_RANG = "https://rppsrang.esante.gouv.fr"
ADELI_RANG = "https://adelirang.esante.gouv.fr"

_FINESS_RE = re.compile(r"^(?:\d{2}|2A|2B)\d{7}$")


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) key check, the key of FINESS, SIREN/SIRET and RPPS numbers."""
    try:
        return luhn.is_valid(digits)
    except Exception:  # stdnum raises its own ValidationError subclasses on bad input
        return False


def _departmental(kind: str, value: str) -> tuple[str, str] | None:
    """(severity, message) when ``value`` is not a valid number of ``kind`` (FINESS, ADELI: a département, 7 digits
    of which the last is a Luhn key), else None."""
    if not _FINESS_RE.match(value):
        return "error", (f"{kind} number '{value}' must have 9 characters: a département (2 digits, or 2A/2B) "
                         "then 7 digits")
    if value[:2] in ("2A", "2B"):
        if not luhn_ok("20" + value[2:]):
            return "warning", (f"{kind} number '{value}': check key not verified for a Corsican number "
                               "(computed with 2A/2B read as 20, it does not match)")
        return None
    if not luhn_ok(value):
        return "error", f"{kind} number '{value}' has a wrong check key (Luhn)"
    return None


def check_finess(value: str) -> tuple[str, str] | None:
    """(severity, message) when ``value`` is not a valid FINESS number, else None."""
    return _departmental("FINESS", value)


def check_adeli(value: str) -> tuple[str, str] | None:
    """(severity, message) when ``value`` is not a valid ADELI number, else None."""
    return _departmental("ADELI", value)


def check_siren(value: str) -> tuple[str, str] | None:
    if not re.fullmatch(r"\d{9}", value):
        return "error", f"SIREN '{value}' must be 9 digits"
    if not siren.is_valid(value):
        return "error", f"SIREN '{value}' has a wrong check key (Luhn)"
    return None


def check_siret(value: str) -> tuple[str, str] | None:
    if not re.fullmatch(r"\d{14}", value):
        return "error", f"SIRET '{value}' must be 14 digits"
    if not siret.is_valid(value):
        return "error", f"SIRET '{value}' has a wrong check key (Luhn)"
    return None


def check_rpps(value: str) -> tuple[str, str] | None:
    if not re.fullmatch(r"\d{11}", value):
        return "error", f"RPPS number '{value}' must be 11 digits"
    if not luhn_ok(value):
        return "error", f"RPPS number '{value}' has a wrong check key (Luhn)"
    return None


def check_id_nat_ps(value: str) -> tuple[str, str] | None:
    if value.startswith("8") and len(value) == 12:
        found = check_rpps(value[1:])
        return (found[0], f"idNat_PS '{value}': {found[1]}") if found else None
    if value.startswith("0") and len(value) == 10:
        found = check_adeli(value[1:])
        return (found[0], f"idNat_PS '{value}': {found[1]}") if found else None
    return "error", f"idNat_PS '{value}' must be '8' followed by an RPPS number, or '0' followed by an ADELI number"


def check_id_nat_struct(value: str) -> tuple[str, str] | None:
    prefix, rest = value[:1], value[1:]
    checks = {"1": check_finess, "2": check_siren, "3": check_siret}
    if prefix in checks:
        found = checks[prefix](rest)
        return (found[0], f"idNatStruct '{value}': {found[1]}") if found else None
    if prefix == "4" and re.fullmatch(r"\d{12,15}", rest):
        found = check_rpps(rest[:11])
        return (found[0], f"idNatStruct '{value}': {found[1]}") if found else None
    if prefix == "0" and 10 <= len(rest) <= 13 and rest[9:].isdigit():
        found = check_adeli(rest[:9])
        return (found[0], f"idNatStruct '{value}': {found[1]}") if found else None
    return "error", (f"idNatStruct '{value}' must start with its identifier type (TRE_G07): 1 + FINESS, "
                     "2 + SIREN, 3 + SIRET, 4 + RPPS and rang, 0 + ADELI and rang")


def check_sirene(value: str) -> tuple[str, str] | None:
    return check_siren(value) if len(value) == 9 else check_siret(value)


def check_rang(kind: str, digits: int):
    number = check_rpps if kind == "RPPS" else check_adeli

    def check(value: str) -> tuple[str, str] | None:
        if not (digits < len(value) <= digits + 4 and value[digits:].isdigit()):
            return "error", f"{kind} cabinet identifier '{value}' must be the {kind} number followed by its rang"
        return number(value[:digits])
    return check


CHECKS = {
    FINESS: check_finess,
    SIRENE: check_sirene,
    ID_NAT_PS: check_id_nat_ps,
    ID_NAT_STRUCT: check_id_nat_struct,
    RPPS_RANG: check_rang("RPPS", 11),
    ADELI_RANG: check_rang("ADELI", 9),
}
