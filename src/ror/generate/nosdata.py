"""Build ``ror/generate/data/nos.json``: the NOS codes the data generator draws from, in one small file.

The generator must run anywhere the package is installed, without the shared NOS folders, so the codes,
labels, OIDs and canonical URLs it uses are snapshotted here. Run it again when the NOS files change::

    python -m ror.generate.nosdata --nos-dir /work/shared/data/nos \
        --nos-zip .../2023-06-14_NOS-Fichiers_Publics.zip

Sources per table (``SOURCES``): the 2023 ``.tabs`` of the NOS folder, its 2026 FHIR resources
(``terminologies-v1.12.0/``) and the complete public NOS zip of 2023-06-14 for the tables the folder
lacks. The first source of a table gives its codes; later sources only add codes the first lacks (e.g.
TRE_G07 #40, only listed by JDV_J236). Retired codes (``Date fin`` filled, or ``deprecated``) are left out.
The ``ASS_X10`` association gives the FINESS aggregate (TRE_R65) of each category (TRE_R66).
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

NOS_URL = "https://mos.esante.gouv.fr/NOS/"
V2026 = "terminologies-v1.12.0/"

# table -> [(where, file, kind)]; where: "nos" (folder) | "zip"; kind: tre | jdv | vs | cs
SOURCES: dict[str, list[tuple[str, str, str]]] = {
    "TRE_G07-TypeIdentifiantStructure": [("zip", "TRE_G07-TypeIdentifiantStructure.tabs", "tre"),
                                         ("nos", "JDV_J236_TypeIdentifiant_ROR.json", "vs")],
    "TRE_G08-TypeIdentifiantPersonne": [("zip", "TRE_G08-TypeIdentifiantPersonne.tabs", "tre"),
                                        ("nos", "JDV_J236_TypeIdentifiant_ROR.json", "vs")],
    "TRE_G09-DepartementOM": [("zip", "TRE_G09-DepartementOM.tabs", "tre")],
    "TRE_G15-ProfessionSante": [("zip", "TRE_G15-ProfessionSante.tabs", "tre")],
    "TRE_R02-SecteurActivite": [("zip", "TRE_R02-SecteurActivite.tabs", "tre")],
    "TRE_R04-TypeSavoirFaire": [("zip", "TRE_R04-TypeSavoirFaire.tabs", "tre")],
    "TRE_R11-CiviliteExercice": [("zip", "TRE_R11-CiviliteExercice.tabs", "tre")],
    "TRE_R13-CommuneOM": [("zip", "TRE_R13-CommuneOM.tabs", "tre")],
    "TRE_R23-ModeExercice": [("zip", "TRE_R23-ModeExercice.tabs", "tre")],
    "TRE_R30-RegionOM": [("zip", "TRE_R30-RegionOM.tabs", "tre")],
    "TRE_R38-SpecialiteOrdinale": [("zip", "TRE_R38-SpecialiteOrdinale.tabs", "tre")],
    "TRE_R65-AgregatCategorieEtablissement": [("zip", "TRE_R65-AgregatCategorieEtablissement.tabs", "tre")],
    "TRE_R66-CategorieEtablissement": [("nos", "TRE_R66-CategorieEtablissement.tabs", "tre")],
    "TRE_R72-FinessStatutJuridique": [("zip", "TRE_R72-FinessStatutJuridique.tabs", "tre")],
    "TRE_R73-ESPIC": [("zip", "TRE_R73-ESPIC.tabs", "tre")],
    "TRE_R74-ModeFixationTarifaire": [("zip", "TRE_R74-ModeFixationTarifaire.tabs", "tre")],
    "TRE_R81-Civilite": [("zip", "TRE_R81-Civilite.tabs", "tre")],
    "TRE_R200-CanalCommunication": [("zip", "TRE_R200-CanalCommunication.tabs", "tre")],
    "TRE_R201-TypeDivisionTerritoriale": [("zip", "TRE_R201-TypeDivisionTerritoriale.tabs", "tre")],
    "TRE_R203-StatutLieu": [("zip", "TRE_R203-StatutLieu.tabs", "tre")],
    "TRE_R207-TypeOrganisationInterne": [("nos", "TRE_R207-TypeOrganisationInterne.tabs", "tre")],
    "TRE_R211-ActiviteOperationnelle": [("nos", "JDV_J17-ActiviteOperationnelle-ROR.tabs", "jdv")],
    "TRE_R212-Equipement": [("nos", "JDV_J18-EquipementSpecifique-ROR.tabs", "jdv")],
    "TRE_R213-ModePriseEnCharge": [("nos", V2026 + "ValueSet-JDV-J19-ModePriseEnCharge-ROR.json", "vs")],
    "TRE_R227-ChampActivite": [("nos", V2026 + "CodeSystem-TRE-R227-ChampActivite.json", "cs")],
    "TRE_R228-UnitePrix": [("zip", "TRE_R228-UnitePrix.tabs", "tre")],
    "TRE_R238-OuvertureAnnuelle": [("nos", "TRE_R238-OuvertureAnnuelle.tabs", "tre")],
    "TRE_R239-PublicPrisEnCharge": [("nos", V2026 + "ValueSet-JDV-J29-PublicPrisEnCharge-ROR.json", "vs")],
    "TRE_R240-TemporaliteAccueil": [("nos", "TRE_R240-TemporaliteAccueil.tabs", "tre")],
    "TRE_R242-TypeHabitation": [("zip", "TRE_R242-TypeHabitation.tabs", "tre")],
    "TRE_R244-CategorieOrganisation": [("nos", V2026 + "ValueSet-JDV-J238-TypeOffre-ROR.json", "vs")],
    "TRE_R237-GroupeTarifaireDependance": [("zip", "TRE_R237-GroupeTarifaireDependance.tabs", "tre")],
    "TRE_R245-SpecialisationDePriseEnCharge": [("nos", "JDV_J35-SpecialisationDePriseEnCharge-ROR.tabs", "jdv")],
    "TRE_R246-TypeTarif": [("zip", "TRE_R246-TypeTarif.tabs", "tre")],
    "TRE_R247-UcumUniteMesure": [("zip", "TRE_R247-UcumUniteMesure.tabs", "tre")],
    "TRE_R250-ConditionTarifaire": [("zip", "TRE_R250-ConditionTarifaire.tabs", "tre")],
    "TRE_R251-FonctionContact": [("nos", "JDV_J220-FonctionContact-ROR.tabs", "jdv")],
    "TRE_R253-TypeMaternite": [("nos", "TRE_R253-TypeMaternite.tabs", "tre")],
    "TRE_R283-NiveauConfidentialite": [("zip", "TRE_R283-NiveauConfidentialite.tabs", "tre")],
    "TRE_R286-TypeFermeture": [("nos", "TRE_R286-TypeFermeture.tabs", "tre")],
    "TRE_R287-NatureContact": [("nos", "JDV_J221-NatureContact-ROR.tabs", "jdv")],
    "TRE_R329-NatureCapacite": [("nos", "TRE_R329-NatureCapacite.tabs", "tre")],
    "TRE_R330-TypeStatutCapacite": [("nos", "TRE_R330-TypeStatutCapacite.tabs", "tre")],
    "TRE_R331-TemporaliteCapacite": [("nos", "TRE_R331-TemporaliteCapacite.tabs", "tre")],
    "TRE_R332-GenreCapacite": [("zip", "TRE_R332-GenreCapacite.tabs", "tre")],
    "TRE_R333-TypeFermetureCapacite": [("zip", "TRE_R333-TypeFermetureCapacite.tabs", "tre")],
    "TRE_R334-TypeLitSupplementaire": [("zip", "TRE_R334-TypeLitSupplementaire.tabs", "tre")],
    "TRE_R335-TypeSourceCapacite": [("zip", "TRE_R335-TypeSourceCapacite.tabs", "tre")],
    "TRE_R336-TypeCrise": [("zip", "TRE_R336-TypeCrise.tabs", "tre")],
    "TRE_R337-AffectationTemporaire": [("zip", "TRE_R337-AffectationTemporaire.tabs", "tre")],
    "TRE_R340-TypeCaracteristiqueEquipement": [("zip", "TRE_R340-TypeCaracteristiqueEquipement.tabs", "tre")],
    "TRE_R343-FonctionLieu": [("nos", "JDV_J198-FonctionLieu-ROR.tabs", "jdv")],
    "TRE_R345-TypeIdentifiantAutre": [("nos", "JDV_J236_TypeIdentifiant_ROR.json", "vs")],
    "TRE_R354-TypeIdentifiantRessourceOperationnelle": [("nos", "JDV_J236_TypeIdentifiant_ROR.json", "vs")],
    "TRE_R355-TypeIdentifiantOffre": [("nos", "JDV_J236_TypeIdentifiant_ROR.json", "vs")],
}
# Tables whose codes are kept without labels (only "is this code current?" is asked of them).
CODES_ONLY = {"TRE_R13-CommuneOM"}
# Tables whose other labels are kept too: the FINESS file prints the "libellé long" of its codes
# (``355;Centre Hospitalier (C.H.)``) and the "libellé court" of departments.
EXTRA_LABELS = {"TRE_R65-AgregatCategorieEtablissement": 4, "TRE_R66-CategorieEtablissement": 4,
                "TRE_R72-FinessStatutJuridique": 4, "TRE_R73-ESPIC": 4, "TRE_R74-ModeFixationTarifaire": 4,
                "TRE_G09-DepartementOM": 3}


def canonical_url(table: str) -> str:
    return f"{NOS_URL}{table}/FHIR/{table.replace('_', '-', 1)}"


class _Reader:
    def __init__(self, nos_dir: Path, nos_zip: Path):
        self.nos_dir = nos_dir
        self.zip = zipfile.ZipFile(nos_zip)

    def text(self, where: str, name: str) -> str:
        raw = (self.nos_dir / name).read_bytes() if where == "nos" else self.zip.read(name)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:  # the 2019 tables of the zip are Latin-1
            return raw.decode("cp1252")


def _tabs(text: str, column: int = 2) -> tuple[str | None, dict[str, str], dict[str, str]]:
    """(file OID, active code -> label of ``column``, code -> row OID) of a TRE or JDV ``.tabs`` export."""
    lines = text.splitlines()
    file_oid = lines[1].split(";")[0] if len(lines) > 1 else None
    codes: dict[str, str] = {}
    oids: dict[str, str] = {}
    for line in lines[3:]:
        cols = line.split(";")
        if len(cols) <= column or not cols[1]:
            continue
        if len(cols) > 6 and cols[6].strip():  # TRE row with a ``Date fin``: retired
            continue
        codes[cols[1]] = cols[column]
        oids[cols[1]] = cols[0]
    return file_oid, codes, oids


def _fhir(text: str, table: str, kind: str) -> dict[str, str]:
    doc = json.loads(text)
    out: dict[str, str] = {}
    if kind == "cs":
        for c in doc.get("concept", []):
            props = {p.get("code"): p for p in c.get("property", [])}
            status = props.get("status", {}).get("valueCode", "active")
            if "dateFin" not in props and status not in ("retired", "deprecated"):
                out[c["code"]] = c.get("display", "")
        return out
    for inc in doc.get("compose", {}).get("include", []):
        if inc.get("system") != canonical_url(table):
            continue
        for c in inc.get("concept", []):
            out[c["code"]] = c.get("display", "")
    return out


def _tre_oid(reader: _Reader, table: str) -> str | None:
    """OID of a TRE, read from its own ``.tabs`` in the folder or the zip."""
    name = f"{table}.tabs"
    for where in ("nos", "zip"):
        try:
            text = reader.text(where, name)
        except (FileNotFoundError, KeyError):
            continue
        return text.splitlines()[1].split(";")[0]
    return None


def build(nos_dir: Path, nos_zip: Path) -> dict:
    """The snapshot as a plain dict (sorted, so the JSON file is stable)."""
    reader = _Reader(nos_dir, nos_zip)
    tables: dict[str, dict] = {}
    for table, sources in SOURCES.items():
        oid = _tre_oid(reader, table)
        codes: dict[str, str] = {}
        for where, name, kind in sources:
            text = reader.text(where, name)
            if kind in ("tre", "jdv"):
                file_oid, found, rows = _tabs(text)
                if kind == "tre":
                    oid = oid or file_oid
                else:  # a JDV mixes tables: keep the rows of this table's OID (or the only OID used)
                    wanted = oid or (next(iter(rows.values())) if len(set(rows.values())) == 1 else None)
                    found = {c: label for c, label in found.items() if rows[c] == wanted}
                    oid = oid or wanted
            else:
                found = _fhir(text, table, kind)
            for code, label in found.items():
                codes.setdefault(code, label)
        if not codes:
            raise ValueError(f"{table}: no code found in {sources}")
        entry = {"url": canonical_url(table), "oid": oid}
        entry["codes"] = " ".join(sorted(codes)) if table in CODES_ONLY else dict(sorted(codes.items()))
        if table in EXTRA_LABELS:
            where, name, _ = sources[0]
            entry["labels2"] = dict(sorted(_tabs(reader.text(where, name), EXTRA_LABELS[table])[1].items()))
        tables[table] = entry
    aggregates = {}
    for line in reader.text("zip", "ASS_X10-AgregatCategorieEtablissement.tabs").splitlines()[3:]:
        cols = line.split(";")
        if len(cols) >= 4 and cols[3]:
            aggregates[cols[3]] = cols[2]
    return {"tables": dict(sorted(tables.items())), "category_aggregate": dict(sorted(aggregates.items()))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nos-dir", type=Path, required=True)
    parser.add_argument("--nos-zip", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "nos.json")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(build(args.nos_dir, args.nos_zip), ensure_ascii=False, indent=0) + "\n",
                        encoding="utf-8")


if __name__ == "__main__":
    main()
