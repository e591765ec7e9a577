"""RPPS / Annuaire Santé ``PS_LibreAcces_Personne_activite``: professionals, their practice sites,
and pre-filled city offers with the professionals' roles.

The file is ``|`` separated with a trailing ``|`` on every line, one line per professional × activity,
grouped by professional. Columns are read by header name (their number changed across years: 52 in
2021, 56 later). Per group of lines: one Practitioner (identity, professions, savoir-faire); per
activity with a site, the site Organization — the FINESS establishment when the site has a FINESS
number (RPPS only fills gaps there), else a city practice or health centre identified by its national
structure id (``Ancien identifiant``) and technical id; and for activities in a city sector (TRE_R02,
``CITY_SECTORS``) a pre-filled offer (HealthcareService, one per site and profession) with the
PractitionerRole linking the professional to it. Pre-filled elements are only filled, never forced:
what the professional enters afterwards is kept (``ror.feeds.precedence``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from ror.errors import InputFileError
from ror.feeds.fhirmap import (
    ADELI_RANG,
    FINESS,
    IDNATPS,
    IDNATST,
    ROR,
    ROR_OFFER,
    ROR_ROLE,
    RPPS_RANG,
    SIRENE,
    address,
    creation,
    meta,
    org_identifier,
    phone,
    prune,
    region_of_commune,
)
from ror.feeds.model import (
    DecodedLines,
    Entity,
    Feed,
    Known,
    Problem,
    Record,
    coding,
    concept,
    decode_line,
    finess_problem,
    key,
    nos_code,
    read_line,
    ref,
    separator_error,
    siret_problem,
)
from ror.geo import load_communes
from ror.profiles.identifiers import check_adeli, check_rpps

G15, R95, R23, R04, R38, R11, R81, R02, R227 = (
    "TRE_G15-ProfessionSante", "TRE_R95-UsagerTitre", "TRE_R23-ModeExercice", "TRE_R04-TypeSavoirFaire",
    "TRE_R38-SpecialiteOrdinale", "TRE_R11-CiviliteExercice", "TRE_R81-Civilite", "TRE_R02-SecteurActivite",
    "TRE_R227-ChampActivite")
# Sectors of activity (TRE_R02) that are city care: offers are pre-filled there. Establishments'
# offers are described by the regions, not pre-filled from RPPS.
CITY_SECTORS = frozenset({"SA05", "SA07", "SA08", "SA09", "SA25", "SA29", "SA33", "SA38", "SA39", "SA42", "SA52",
                          "SA56", "SA59"})
# The TRE_R02 sectors that are establishment categories in the ROR (JDV_J55-CategorieEG-ROR: centre de santé,
# cabinets, exercice en société): only those go to Organization.type (slice categorieEtablissement).
CATEGORY_SECTORS = frozenset({"SA05", "SA07", "SA08", "SA09"})
AMBULATORY = "05"  # TRE_R227 champ d'activité of city offers
STRUCTURE = "urn:ror:feed:rpps:structure"  # technical structure id: a source-local identity key

C = {  # column names, as in the 2021-12 header and later ones
    "type": "Type d'identifiant PP", "id": "Identifiant PP", "idnat": "Identification nationale PP",
    "title_code": "Code civilité d'exercice", "civility": "Code civilité", "family": "Nom d'exercice",
    "given": "Prénom d'exercice", "profession": "Code profession", "sf_type": "Code type savoir-faire",
    "sf": "Code savoir-faire", "mode": "Code mode exercice", "siret": "Numéro SIRET site",
    "siren": "Numéro SIREN site", "finess": "Numéro FINESS site", "finess_ej": "Numéro FINESS établissement juridique",
    "tech": "Identifiant technique de la structure", "name": "Raison sociale site",
    "sign": "Enseigne commerciale site", "care_of": "Complément destinataire (coord. structure)",
    "additional": "Complément point géographique (coord. structure)", "number": "Numéro Voie (coord. structure)",
    "suffix": "Indice répétition voie (coord. structure)", "street_type": "Code type de voie (coord. structure)",
    "street": "Libellé Voie (coord. structure)", "distribution": "Mention distribution (coord. structure)",
    "cedex": "Bureau cedex (coord. structure)", "postcode": "Code postal (coord. structure)",
    "cog": "Code commune (coord. structure)", "phone": "Téléphone (coord. structure)",
    "phone2": "Téléphone 2 (coord. structure)", "fax": "Télécopie (coord. structure)",
    "email": "Adresse e-mail (coord. structure)", "old_id": "Ancien identifiant de la structure",
    "sector": "Code secteur d'activité",
}
REQUIRED = ("type", "id", "idnat", "family", "profession")


@lru_cache(maxsize=1)
def _postcode_regions() -> dict[str, str]:
    out: dict[str, str] = {}
    for c in load_communes().values():
        for p in c.postcodes:
            out.setdefault(p, c.region)
    return out


def _region(cog: str, postcode: str) -> str | None:
    return region_of_commune(cog) or _postcode_regions().get(postcode) or None


class RppsFeed(Feed):
    source = kind = "rpps"
    closable = frozenset({"practitioner", "site", "offer", "role"})

    # The header's columns, which the mapping of a record remembered needs if it is mapped in the run's process.
    FILE_FACTS = (*Feed.FILE_FACTS, "columns", "width")

    def __init__(self) -> None:
        super().__init__()
        self.columns: dict[str, int] = {}
        self.width = 0

    def read(self, path: Path) -> Iterator[Record | Known | Problem]:
        m = re.search(r"_(20\d{2})(\d{2})(\d{2})\d*\.", path.name)
        if m:
            self.extraction_date = "-".join(m.groups())
            self.notes.append(f"extraction of {self.extraction_date}")
        lines = DecodedLines(path)
        header = b""
        group: list[tuple[int, str, tuple[int, int]]] = []
        idnat = ""
        for n, line in lines:
            if n == 1:
                header = hashlib.blake2b(f"{line}|{bool(self.extraction_date)}".encode(), digest_size=16).digest()
                self.columns, self.width = self._header(path, line)
                continue
            if not line.strip():
                continue
            fields = self._fields(line)
            if len(fields) != self.width:
                if len(fields) < self.width and lines.unterminated:
                    self.complete = False
                    yield Problem(n, "(line)", f"the file ends in the middle of this record: {len(fields)} fields "
                                  f"instead of {self.width} (download cut short?)", record=line)
                else:
                    yield Problem(n, "(line)", f"{len(fields)} fields instead of {self.width}: "
                                  f"{'truncated line' if len(fields) < self.width else 'extra fields'}", record=line)
                continue
            if group and fields[self.columns["idnat"]] != idnat:
                yield from self._mapped(path, header, group)
                group = []
            idnat = fields[self.columns["idnat"]]
            group.append((n, line, lines.span))
        if group:
            yield from self._mapped(path, header, group)
        self.notes.append(lines.note())

    def _mapped(self, path: Path, header: bytes, group: list[tuple[int, str, tuple[int, int]]]
                ) -> Iterator[Record | Known | Problem]:
        """A professional's lines, mapped unless remembered: its lines and ``header`` say it all (the header's digest
        with whether the file is dated; the date itself is the creation date's, written once)."""
        yield from self.mapped(group[0][0], (header, *(line for _, line, _ in group)),
                               lambda: self._professional([(n, line) for n, line, _ in group]),
                               ("_professional_at", (str(path), [(n, span) for n, _, span in group])))

    def _professional_at(self, path: str, lines: list[tuple[int, tuple[int, int]]]) -> Iterator[Record | Problem]:
        """``_professional`` of the lines at these places of the file."""
        yield from self._professional([(n, decode_line(read_line(path, span))[0]) for n, span in lines])

    def _fields(self, line: str) -> list[str]:
        fields = line.split("|")
        if len(fields) == self.width + 1 and fields[-1] == "":  # the trailing separator
            fields.pop()
        return fields

    @staticmethod
    def _header(path: Path, line: str) -> tuple[dict[str, int], int]:
        if "|" not in line:
            raise separator_error(path, line, "|")
        names = line.split("|")
        if names[-1] == "":
            names.pop()
        index = {name.strip(): i for i, name in enumerate(names)}
        missing = [C[k] for k in REQUIRED if C[k] not in index]
        if missing:
            raise InputFileError(f"{path}: not a PS_LibreAcces_Personne_activite file: header lacks "
                                 f"{', '.join(repr(m) for m in missing)}")
        return {k: index[name] for k, name in C.items() if name in index}, len(names)

    def _professional(self, group: list[tuple[int, str]]) -> Iterator[Record | Problem]:
        cols = self.columns

        def get(fields: list[str], name: str) -> str:
            i = cols.get(name)
            return fields[i].strip() if i is not None else ""

        group = [(n, line, self._fields(line)) for n, line in group]
        first_n, _, first = group[0]
        idnat, kind, ident = get(first, "idnat"), get(first, "type"), get(first, "id")
        why = _pp_problem(kind, ident, idnat)
        if why:
            for n, line, _ in group:
                yield Problem(n, C["idnat"], why, record=line)
            return
        entities: list[Entity] = []
        warnings: list[Problem] = []
        qualifications: list[dict] = []
        pp_key = key(IDNATPS, idnat)
        for n, line, f in group:
            profession = _profession(get(f, "profession"))
            if profession is None:
                yield Problem(n, C["profession"], f"unknown profession code '{get(f, 'profession')}' (neither "
                              f"NOS TRE_G15 nor TRE_R95)", record=line)
                continue
            sf_kind, sf_code = get(f, "sf_type"), get(f, "sf")
            sf = _savoir_faire(sf_kind, sf_code)
            why = savoir_faire_problem(sf_kind, sf_code)
            if why:
                warnings.append(Problem(n, C["sf"], why, "warning", line))
            for q in (profession, sf):
                if q and {"code": q} not in qualifications:
                    qualifications.append({"code": q})
            mode = get(f, "mode")
            if mode and nos_code(R23, mode) is None:
                warnings.append(Problem(n, C["mode"], f"unknown mode of practice '{mode}' (NOS TRE_R23): left out",
                                        "warning", line))
                mode = ""
            if not get(f, "tech"):
                continue
            site = self._site(n, line, f, get, warnings)
            if site is None:
                continue
            entities.append(site)
            sector = get(f, "sector")
            if sector not in CITY_SECTORS:
                continue
            offer_value = f"{site.keys[0].rpartition('|')[2]}.{profession['coding'][0]['code']}"
            region = (site.resource.get("meta") or {}).get("tag", [{}])[0].get("code")
            entities.append(self._offer(offer_value, site, profession, region))
            entities.append(self._role(idnat, offer_value, site, profession,
                                       (sf_kind, sf) if sf and sf_kind in IN_ROLE else None, mode,
                                       get(f, "title_code"), get(f, "family"), get(f, "given"), region))
        civility = get(first, "civility")
        practitioner = prune({
            "resourceType": "Practitioner",
            "meta": meta("Practitioner", None),
            "extension": creation(self.extraction_date),
            "identifier": [{"system": IDNATPS, "value": idnat}],
            "active": True,
            "name": [prune({"use": "official", "family": get(first, "family"),
                            "given": [get(first, "given")] if get(first, "given") else None,
                            "prefix": [civility] if civility and nos_code(R81, civility) else None})],
            "qualification": sorted(qualifications, key=lambda q: (q["code"]["coding"][0]["system"],
                                                                   q["code"]["coding"][0]["code"])),
        })
        yield Record(first_n, [Entity("Practitioner", [pp_key], practitioner, "practitioner"), *entities], warnings)

    def _site(self, n: int, line: str, f: list[str], get, warnings: list[Problem]) -> Entity | None:
        tech, fin, old = get(f, "tech"), get(f, "finess"), get(f, "old_id")
        cog, postcode = get(f, "cog"), get(f, "postcode")
        city = get(f, "cedex")[6:] if get(f, "cedex")[:5].isdigit() else ""
        ids: list[dict] = []
        keys: list[str] = []
        if fin:
            why = finess_problem(fin)
            if why:
                warnings.append(Problem(n, C["finess"], why + ": activity kept without its site", "warning", line))
                return None
            ids.append(org_identifier(FINESS, fin))
            keys.append(key(FINESS, fin))
        elif old:
            ids.append(org_identifier(IDNATST, old))
            keys.append(key(IDNATST, old))
        siret = get(f, "siret")
        if siret:
            why = siret_problem(siret)
            if why:
                warnings.append(Problem(n, C["siret"], why + "; SIRET left out", "warning", line))
            else:
                ids.append(org_identifier(SIRENE, siret))
                keys.append(key(SIRENE, siret))
        if fin:  # the FINESS registry describes this establishment: only what is needed before it loads
            return Entity("Organization", keys[:1], prune({
                "resourceType": "Organization", "meta": meta("Organization", _region(cog, postcode)),
                "extension": creation(self.extraction_date), "identifier": ids[:1], "active": True,
                "name": get(f, "name"),
                "partOf": ref("Organization", key(FINESS, get(f, "finess_ej"))) if get(f, "finess_ej") else None,
            }), "finess-site")
        # The cabinet's number is in its legacy national id (TRE_G07 type 4: RPPS + rang, 0: ADELI + rang):
        # the `R…` technical id is an unrelated ANS key (R10100000240453 belongs to cabinet 410005929293016
        # in the ANS samples), kept only as the structure's technical key.
        cabinet = {"4": RPPS_RANG, "0": ADELI_RANG}.get(old[:1]) if old[1:].isdigit() else None
        if cabinet:
            ids.append(org_identifier(cabinet, old[1:]))
            keys.append(key(cabinet, old[1:]))
        keys.append(key(STRUCTURE, tech))
        sector = get(f, "sector")
        types = []
        if sector:
            if sector in CATEGORY_SECTORS:
                types.append(concept(R02, sector))
            elif not nos_code(R02, sector):
                warnings.append(Problem(n, C["sector"], f"unknown sector of activity '{sector}' (NOS TRE_R02): "
                                        f"left out", "warning", line))
        region = _region(cog, postcode)
        res = prune({
            "resourceType": "Organization",
            "meta": meta("Organization", region),
            "extension": creation(self.extraction_date),
            "identifier": ids,
            "active": True,
            "type": types,
            "name": get(f, "name") or get(f, "sign") or get(f, "care_of"),
            "alias": [get(f, "sign")] if get(f, "sign") else None,
            "telecom": [t for t in (phone(get(f, "phone")), phone(get(f, "phone2")), phone(get(f, "fax"), "6"),
                                    phone(get(f, "email"), "3")) if t],
            "address": [a for a in (address(
                additional=get(f, "additional"), number=get(f, "number"), suffix=get(f, "suffix"),
                street_type=get(f, "street_type"), street=get(f, "street"), locality=get(f, "distribution"),
                postcode=postcode, city=city, cog=cog if cog in load_communes() else ""),) if a],
        })
        return Entity("Organization", keys, res, "site")

    def _offer(self, value: str, site: Entity, profession: dict, region: str | None) -> Entity:
        label = profession["coding"][0].get("display", "")
        res = prune({
            "resourceType": "HealthcareService",
            "meta": meta("HealthcareService", region),
            "extension": [*creation(self.extraction_date),
                          {"url": ROR + "ror-healthcareservice-sensitive-unit", "valueBoolean": False}],
            "identifier": [{"system": ROR_OFFER, "value": value}],
            "active": True,
            "providedBy": ref("Organization", site.keys[0]),
            "type": [concept(R227, AMBULATORY)],
            "name": f"{label} – {site.resource.get('name', '')}".strip(" –"),
        })
        return Entity("HealthcareService", [key(ROR_OFFER, value)], res, "offer")

    def _role(self, idnat: str, offer_value: str, site: Entity, profession: dict, sf: tuple[str, dict] | None,
              mode: str, title: str, family: str, given: str, region: str | None) -> Entity:
        value = f"{idnat}.{offer_value}"
        name_ext = [e for e in (
            {"url": "exerciseTitle", "valueCodeableConcept": concept(R11, title)} if nos_code(R11, title) else None,
            {"url": "exerciseLastName", "valueString": family} if family else None,
            {"url": "exerciseFirstName", "valueString": given} if given else None) if e]
        # the expertiseType slice (TRE_R04), then the slice of that type (specialty TRE_R38, competence TRE_R39 …)
        specialty = [concept(R04, sf[0]), sf[1]] if sf else []
        res = prune({
            "resourceType": "PractitionerRole",
            "meta": meta("PractitionerRole", region),
            "extension": [*creation(self.extraction_date),
                          *([{"url": ROR + "ror-practitionerrole-unit-exercise-mode",
                              "valueCodeableConcept": concept(R23, mode)}] if mode else []),
                          *([{"url": ROR + "ror-practitionerrole-name", "extension": name_ext}] if name_ext else [])],
            "identifier": [{"system": ROR_ROLE, "value": value}],
            "active": True,
            "practitioner": ref("Practitioner", key(IDNATPS, idnat)),
            "organization": ref("Organization", site.keys[0]),
            "healthcareService": [ref("HealthcareService", key(ROR_OFFER, offer_value))],
            "code": [profession],
            "specialty": specialty,
        })
        return Entity("PractitionerRole", [key(ROR_ROLE, value)], res, "role")


def _pp_problem(kind: str, ident: str, idnat: str) -> str | None:
    """Why the professional's identifier rejects the record, or None: the profile validator's own rules (a Corsican
    ADELI number whose key is not verified is kept, and the validator warns about it)."""
    if idnat != kind + ident:
        return f"'{idnat}' is not the identifier type '{kind}' followed by the identifier '{ident}'"
    check = {"8": check_rpps, "0": check_adeli}.get(kind)
    if check is None:
        return f"identifier type '{kind}' is neither 8 (RPPS) nor 0 (ADELI)"
    found = check(ident)
    return found[1] if found and found[0] == "error" else None


def _profession(code: str) -> dict | None:
    """Profession as a CodeableConcept: TRE_G15, or TRE_R95 for the titles (ostéopathe 71 -> 171 …)."""
    if nos_code(G15, code):
        return concept(G15, code)
    if nos_code(R95, "1" + code):
        return concept(R95, "1" + code)
    return None


# Savoir-faire type (TRE_R04) -> the NOS table of its codes (NOS .tabs of 2023-06-14). The IG slices of
# PractitionerRole.specialty: S specialty (J210), C competence (J232), CEX exclusiveCompetence (J211),
# OP specificOrientation (J212), CAPA expertiseCapacity (J213), PAC qualificationPAC (J214),
# DNQ nonQualifyingDESC (J215), DEC supplementaryExerciseRight (J216); FQ and SH have no slice.
SAVOIR_FAIRE = {"S": R38, "C": "TRE_R39-Competence", "CEX": "TRE_R40-CompetenceExclusive",
                "OP": "TRE_G13-OrientationParticuliere", "CAPA": "TRE_R43-CapaciteSavoirFaire",
                "PAC": "TRE_R44-QualificationPAC", "DNQ": "TRE_R42-DESCnonQualifiant",
                "DEC": "TRE_R97-DroitExerciceCompl", "FQ": "TRE_R45-FonctionQualifiee",
                "SH": "TRE_R46-SpecialiteConcoursHospitalier"}
IN_ROLE = frozenset(SAVOIR_FAIRE) - {"FQ", "SH"}  # the kinds PractitionerRole.specialty has a slice for


def savoir_faire_problem(kind: str, code: str) -> str | None:
    if not kind and not code:
        return None
    if kind not in SAVOIR_FAIRE:
        return f"unknown savoir-faire type '{kind}' (NOS TRE_R04): savoir-faire left out"
    if nos_code(SAVOIR_FAIRE[kind], code) is None:
        return f"savoir-faire '{code}' is not in NOS {SAVOIR_FAIRE[kind]} (type {kind}): left out"
    return None


def _savoir_faire(kind: str, code: str) -> dict | None:
    """A savoir-faire in the NOS table of its type (TRE_R38 ordinal specialty, TRE_R39 competence …)."""
    if savoir_faire_problem(kind, code) is None and kind:
        return {"coding": [coding(SAVOIR_FAIRE[kind], code)]}
    return None
