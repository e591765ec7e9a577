"""The rules of docs/quality.md, taken from the research note ``nos-and-completeness.md`` (cited "spec §x"):
sectors (§4.4), the offer completeness flags (§4.2), establishment status (§4.3), NOS conformity (§3.5)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from ror.terminology.bundled import bundled
from ror.terminology.cache import Terminology
from ror.terminology.nos import canonical_url

SD = "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/"
R227 = canonical_url("TRE_R227-ChampActivite")
R213 = canonical_url("TRE_R213-ModePriseEnCharge")
R211 = canonical_url("TRE_R211-ActiviteOperationnelle")
R244 = canonical_url("TRE_R244-CategorieOrganisation")
R251 = canonical_url("TRE_R251-FonctionContact")
R287 = canonical_url("TRE_R287-NatureContact")
R286 = canonical_url("TRE_R286-TypeFermeture")
R66 = canonical_url("TRE_R66-CategorieEtablissement")
R02 = canonical_url("TRE_R02-SecteurActivite")
R13 = canonical_url("TRE_R13-CommuneOM")
# The ROR value set of each coded field of the criterion: a code the shipped TRE is too old to hold (2023 R244
# vs 2026 J238) still resolves when its JDV lists it.
JDV = {R227: canonical_url("JDV_J20-ChampActivite-ROR"), R213: canonical_url("JDV_J19-ModePriseEnCharge-ROR"),
       R211: canonical_url("JDV_J17-ActiviteOperationnelle-ROR"), R244: canonical_url("JDV_J238-TypeOffre-ROR"),
       R251: canonical_url("JDV_J220-FonctionContact-ROR"), R287: canonical_url("JDV_J221-NatureContact-ROR")}

# spec §4.4 DomaineROR of the J55 establishment categories.
_DOMAINS = {
    "sanitaire": "101 106 109 114 122 127 128 129 131 141 146 156 161 166 292 355 362 365 366 412 415 425 430 444 "
                 "696 697 698 638",
    "medico-social": "165 178 180 182 183 186 188 189 190 192 194 195 196 197 198 202 207 209 213 221 228 231 238 "
                     "246 249 252 253 255 354 370 377 379 381 382 390 395 396 402 437 445 446 448 449 460 500 501 "
                     "502 608",
    "coordination": "604 606",
    "ville": "124 603 617 618 SA05 SA07 SA08 SA09",
}
DOMAIN_OF_CATEGORY = {code: d for d, codes in _DOMAINS.items() for code in codes.split()}
SECTORS = ("sanitaire", "medico-social", "coordination", "ville", "non-defini")
# Offers with no establishment: the sector of their champ d'activité (TRE_R227).
SECTOR_OF_CHAMP = {"01": "sanitaire", "02": "sanitaire", "03": "sanitaire", "04": "medico-social",
                   "05": "ville", "06": "medico-social"}
HOME_CARE_CATEGORIES = frozenset({"209", "354", "460"})  # spec §4.2 FG_CategorieOrga

FLAGS = ("champActivite", "modePriseEnCharge", "patientele", "activiteOperationnelle", "adresse", "contact",
         "categorieOrganisation")
FLAG_TEXT = {
    "champActivite": "champ d'activité (type, TRE_R227) missing or not in the NOS",
    "modePriseEnCharge": "mode de prise en charge (characteristic, TRE_R213) missing or not in the NOS",
    "patientele": "patientèle age minimum and maximum (ror-healthcareservice-patient-type ageRange) not both filled",
    "activiteOperationnelle": "no activité opérationnelle (specialty, TRE_R211) in the NOS",
    "adresse": "no place (location) of the offer with a street or lieu-dit, a city and a postal code",
    "contact": "no contact with a function or nature and a complete telecom (channel, address, confidentiality)",
    "categorieOrganisation": "catégorie d'organisation (category, TRE_R244/JDV_J238) missing or not in the NOS, "
                             "required for home-care establishments (FINESS 209, 354, 460)",
}


class Resolver:
    """"Resolvable" codes of spec §4.2: the code exists in the NOS table (any state) or in the field's JDV."""

    def __init__(self, conn: Connection, term: Terminology):
        self.conn, self.term, self.fallback = conn, term, bundled()
        self._cache: dict[tuple[str, str], bool] = {}

    def ok(self, system: str | None, code: str | None) -> bool:
        if not system or not code:
            return False
        key = (system, code)
        if key not in self._cache:
            cs = self.term.code_system(self.conn, system) or self.fallback.code_system(None, system)
            hit = cs is not None and code in cs.codes
            if not hit and system in JDV:
                vs = self.term.value_set(self.conn, JDV[system]) or self.fallback.value_set(None, JDV[system])
                hit = vs is not None and key in vs.members
            self._cache[key] = hit
        return self._cache[key]


    def retired(self, system: str, code: str) -> bool:
        cs = self.term.code_system(self.conn, system) or self.fallback.code_system(None, system)
        info = cs.codes.get(code) if cs is not None else None
        return info is not None and info.status == "retired"


def codings(cc) -> list[dict]:
    if isinstance(cc, dict):
        return [c for c in cc.get("coding") or [] if isinstance(c, dict)]
    return []


def ext(node: dict, url: str) -> list[dict]:
    return [e for e in node.get("extension") or [] if isinstance(e, dict) and e.get("url") == url]


def first_code(ccs, system: str) -> str | None:
    for cc in ccs if isinstance(ccs, list) else [ccs]:
        for c in codings(cc):
            if c.get("system") == system and isinstance(c.get("code"), str):
                return c["code"]
    return None


def address_complete(address) -> bool:
    """spec §4.2 FG_Adresse: (libellé de voie or lieu-dit) and localité and code postal."""
    if not isinstance(address, dict):
        return False
    street = any(isinstance(x, str) and x.strip() for x in address.get("line") or []) or any(
        "lieu" in str(e.get("url", "")).lower() and "dit" in str(e.get("url", "")).lower()
        for e in address.get("extension") or [] if isinstance(e, dict))
    return bool(street and str(address.get("city") or "").strip() and str(address.get("postalCode") or "").strip())


def contact_complete(hs: dict, res: Resolver) -> bool:
    """spec §4.2 FG_Contact."""
    for contact in ext(hs, SD + "ror-healthcareservice-contact"):
        function = any(res.ok(c.get("system"), c.get("code"))
                       for e in ext(contact, SD + "ror-contact-function-contact")
                       for c in codings(e.get("valueCodeableConcept")))
        nature = any(res.ok(c.get("system"), c.get("code")) for e in ext(contact, "purposeContact")
                     for c in codings(e.get("valueCodeableConcept")))
        if not (function or nature):
            continue
        for tel in ext(contact, SD + "ror-healthcareservice-contact-telecom"):
            channel = any(codings(e.get("valueCodeableConcept"))
                          for e in ext(tel, SD + "ror-telecom-communication-channel"))
            conf = any(codings(e.get("valueCodeableConcept"))
                       for e in ext(tel, SD + "ror-telecom-confidentiality-level"))
            value = any(str(e.get("valueString") or "").strip() for e in ext(tel, "telecomAddress"))
            if channel and conf and value:
                return True
    return False


def patientele_complete(hs: dict) -> bool:
    """spec §4.2 FG_Patientele: both age minimum and age maximum filled."""
    for pt in ext(hs, SD + "ror-healthcareservice-patient-type"):
        for e in ext(pt, "ageRange"):
            rng = e.get("valueRange") or {}
            low, high = (rng.get("low") or {}).get("value"), (rng.get("high") or {}).get("value")
            if isinstance(low, (int, float)) and isinstance(high, (int, float)):
                return True
    return False


def offer_flags(hs: dict, res: Resolver, addresses_ok: bool, eg_category: str | None) -> dict[str, bool | None]:
    """The seven flags of spec §4.2 (``None``: not applicable)."""
    def any_ok(ccs, system):
        return any(c.get("system") == system and res.ok(system, c.get("code"))
                   for cc in (ccs if isinstance(ccs, list) else [ccs]) for c in codings(cc))
    return {
        "champActivite": any_ok(hs.get("type"), R227),
        "modePriseEnCharge": any_ok(hs.get("characteristic"), R213),
        "patientele": patientele_complete(hs),
        "activiteOperationnelle": any_ok(hs.get("specialty"), R211),
        "adresse": addresses_ok,
        "contact": contact_complete(hs, res),
        "categorieOrganisation": any_ok(hs.get("category"), R244) if eg_category in HOME_CARE_CATEGORIES else None,
    }


def offer_status(flags: dict[str, bool | None]) -> str:
    """spec §4.2: Finalise / EnCours / AFaire."""
    mandatory = [flags[f] for f in FLAGS[:6]]
    cat = flags["categorieOrganisation"]
    if all(mandatory) and cat in (None, True):
        return "complete"
    if any(mandatory) or cat is True:
        return "in-progress"
    return "to-do"


def establishment_status(statuses: list[str]) -> str:
    """spec §4.3 eg_line_status, one line per ROR EG (no FINESS perimeter here)."""
    if statuses and all(s == "complete" for s in statuses):
        return "complete"
    if any(s == "in-progress" for s in statuses):
        return "in-progress"
    return "to-do"


@dataclass(frozen=True)
class CodeProblem:
    path: str
    system: str
    code: str
    kind: str  # retired | unknown

    def text(self) -> str:
        name = self.system.rstrip("/").rsplit("/", 1)[-1] if self.system else "no system"
        what = ("is retired from the NOS" if self.kind == "retired"
                else "is not in the NOS value set the element requires")
        return f"NOS code '{self.code}' ({name}) at {self.path} {what}"


def classify(diagnostics: str) -> str:
    low = diagnostics.lower()
    return "retired" if ("retired" in low or "left value set" in low) else "unknown"
