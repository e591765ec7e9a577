"""Records of the two national flat files.

FINESS etalab stock file (notices cs1100501/502/507): header-less, ``;`` separated, one record type per
line (``structureet``: 32 fields ending with the empty ``numuai``, hence the trailing ``;``;
``geolocalisation``: 6 fields; ``structureej``: 23 fields), Latin-1, free text upper case without
accents, coded labels with accents as the files print them (``Centre Hospitalier (C.H.)``), ISO dates.

RPPS ``PS_LibreAcces_Personne_activite``: UTF-8, ``|`` separated, a header row, every line ending with
``|``; the header is the real 2021-12 one (52 columns, ``shared/data/rpps`` sample).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from unidecode import unidecode

from ror.generate.model import Legal, Person, Site
from ror.generate.nos import Nos
from ror.generate.places import Address, finess_commune, finess_department, project

RPPS_HEADER = (
    "Type d'identifiant PP|Identifiant PP|Identification nationale PP|Code civilité d'exercice|"
    "Libellé civilité d'exercice|Code civilité|Libellé civilité|Nom d'exercice|Prénom d'exercice|Code profession|"
    "Libellé profession|Code catégorie professionnelle|Libellé catégorie professionnelle|Code type savoir-faire|"
    "Libellé type savoir-faire|Code savoir-faire|Libellé savoir-faire|Code mode exercice|Libellé mode exercice|"
    "Numéro SIRET site|Numéro SIREN site|Numéro FINESS site|Numéro FINESS établissement juridique|"
    "Identifiant technique de la structure|Raison sociale site|Enseigne commerciale site|"
    "Complément destinataire (coord. structure)|Complément point géographique (coord. structure)|"
    "Numéro Voie (coord. structure)|Indice répétition voie (coord. structure)|Code type de voie (coord. structure)|"
    "Libellé type de voie (coord. structure)|Libellé Voie (coord. structure)|Mention distribution (coord. structure)|"
    "Bureau cedex (coord. structure)|Code postal (coord. structure)|Code commune (coord. structure)|"
    "Libellé commune (coord. structure)|Code pays (coord. structure)|Libellé pays (coord. structure)|"
    "Téléphone (coord. structure)|Téléphone 2 (coord. structure)|Télécopie (coord. structure)|"
    "Adresse e-mail (coord. structure)|Code Département (structure)|Libellé Département (structure)|"
    "Ancien identifiant de la structure|Autorité d'enregistrement|Code secteur d'activité|"
    "Libellé secteur d'activité|Code section tableau pharmaciens|Libellé section tableau pharmaciens|"
)
RPPS_COLUMNS = 52
# Registration authority by profession (RPPS professions: the professional order; others: ARS).
AUTHORITY = {"10": "CNOM", "21": "CNOP", "40": "CNOCD", "50": "CNOSF", "60": "CNOI", "70": "CNOMK", "80": "CNOPP"}
PHARMACIST_SECTION = {"A": "Pharmaciens titulaires d'officine", "D": "Pharmaciens adjoints et autres exercices"}


@lru_cache(maxsize=1 << 16)
def upper(text: str, limit: int) -> str:
    """Free text as FINESS prints it: upper case ASCII, no ``;`` or quote, cut to the field length."""
    return unidecode(text).upper().replace(";", " ").replace('"', " ")[:limit].rstrip()


def field(value: str) -> str:
    """One ``;`` separated field, quoted the CSV way when it holds a quote or a separator."""
    if '"' in value or ";" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


class Finess:
    def __init__(self, nos: Nos):
        self.nos = nos

    def _dept(self, a: Address) -> tuple[str, str]:
        c = a.commune
        return finess_department(c), upper(self.nos.tables["TRE_G09-DepartementOM"]["labels2"][c.department], 24)

    def _acheminement(self, a: Address) -> str:
        return f"{a.postcode} {upper(a.commune.name.replace('-', ' ').replace(chr(39), ' '), 26)}"

    def establishment(self, eg: Site, updated: date) -> str:
        """``structureet`` record (32 fields, trailing ``;``)."""
        n, k, a = self.nos, eg.kind, eg.address
        dept, dept_label = self._dept(a)
        aggregate = n.category_aggregate.get(k.category, "4301")
        mft = k.mft
        sph = k.sph
        values = [
            "structureet", eg.finess, eg.legal.finess, eg.rs, upper(eg.name, 60),
            "", "", a.number, a.street_code, upper(a.street, 27), "", "", finess_commune(a.commune), dept, dept_label,
            self._acheminement(a), eg.phone, eg.fax, k.category,
            n.long_label("TRE_R66-CategorieEtablissement", k.category), aggregate,
            n.long_label("TRE_R65-AgregatCategorieEtablissement", aggregate), eg.siret, k.ape, mft,
            n.long_label("TRE_R74-ModeFixationTarifaire", mft) if mft else "", sph,
            n.long_label("TRE_R73-ESPIC", sph) if sph else "", eg.opened.isoformat(), eg.opened.isoformat(),
            updated.isoformat(), ""]
        return ";".join(map(field, values))

    def geolocation(self, eg: Site, region: str, score: int, method: str, updated: date) -> str:
        """``geolocalisation`` record (6 fields, no trailing separator)."""
        x, y, crs = project(region, eg.address.lat, eg.address.lon)
        precision = "1" if score >= 90 else "2"
        shown = str(score) if method != "ADMIN-EXPRESS-2023" else "."
        return f"geolocalisation;{eg.finess};{x};{y};{precision},ATLASANTE,{shown},{method},{crs};{updated.isoformat()}"

    def legal(self, ej: Legal) -> str:
        """``structureej`` record (23 fields)."""
        n, a = self.nos, ej.address
        dept, dept_label = self._dept(a)
        values = [
            "structureej", ej.finess, ej.rs, upper(ej.name, 60), "", a.number, a.street_code, upper(a.street, 27), "",
            "", "", finess_commune(a.commune), self._acheminement(a), dept, dept_label, ej.phone, ej.statut,
            n.long_label("TRE_R72-FinessStatutJuridique", ej.statut), ej.category,
            n.long_label("TRE_R66-CategorieEtablissement", ej.category) if ej.category else "", ej.siren, ej.ape,
            ej.founded.isoformat()]
        return ";".join(map(field, values))


class Rpps:
    def __init__(self, nos: Nos):
        self.nos = nos
        self._g15 = nos.tables["TRE_G15-ProfessionSante"]["codes"]
        self._r38 = {c: label.removesuffix(" (SM)").removesuffix(" (SCD)")
                     for c, label in nos.tables["TRE_R38-SpecialiteOrdinale"]["codes"].items()}

    def _identity(self, p: Person) -> list[str]:
        n = self.nos
        title = [p.title, n.label("TRE_R11-CiviliteExercice", p.title)] if p.title else ["", ""]
        savoir = ["S", "Spécialité ordinale", p.specialty, self._r38[p.specialty]] if p.specialty else ["", "", "", ""]
        return [p.id_type, p.number, p.idnat, *title, p.civility, n.label("TRE_R81-Civilite", p.civility),
                p.family, p.given, p.profession, self._g15.get(p.profession, "Profession inconnue"), "C", "Civil",
                *savoir]

    def activity(self, p: Person, site: Site | None, mode: str, section: str = "") -> str:
        """One line: the person, and the site of one activity (``site`` None: no activity)."""
        values = self._identity(p)
        authority = AUTHORITY.get(p.profession, "ARS")
        if site is None:
            values += ["", ""] + [""] * 28 + [f"{authority}//", "", "", "", ""]
        else:
            a = site.address
            c = a.commune
            n = self.nos
            in_finess = bool(site.finess)
            authorities = (f"{authority}/{authority}/{authority}" if authority != "ARS"
                           else ("ARS/ARS/ARS" if mode == "S" else "ARS/CPAM/CPAM"))
            values += [
                mode, n.label("TRE_R23-ModeExercice", mode), site.siret,
                site.legal.siren if site.kind.city == "society" else "", site.finess, site.legal.finess,
                site.technical_id, site.rs or upper(site.name, 60), "" if in_finess else upper(site.name, 60), "", "",
                a.number, "", a.street_code, a.street_label, upper(a.street, 32), "",
                f"{a.postcode} {upper(c.name, 26)}", a.postcode, c.cog if in_finess else "",
                c.name if in_finess else "", "", "", site.phone, "", site.fax, "", "", "", site.old_id, authorities,
                site.sector,
                n.label("TRE_R02-SecteurActivite", site.sector), section, PHARMACIST_SECTION.get(section, "")]
        if len(values) != RPPS_COLUMNS:
            raise AssertionError(f"RPPS line has {len(values)} columns")
        line = "|".join(values)
        if line.count("|") != RPPS_COLUMNS - 1:  # a value held the separator
            line = "|".join(v.replace("|", " ") for v in values)
        return line + "|"
