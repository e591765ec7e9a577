"""The bundled NOS set, read table by table in memory, against a database loaded with the same files."""

from __future__ import annotations

from sqlalchemy import select

from ror.profiles.validation import Validator
from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from ror.terminology.bundled import BundledTerminology, bundled
from ror.terminology.cache import Terminology
from ror.terminology.nos import canonical_url
from ror.terminology.schema import nos_table
from tests.terminology.conftest import NOS, load
from tests.validation.corpus import hs


def test_every_table_reads_as_from_a_loaded_database(nos_engine):
    fresh, term = BundledTerminology(), Terminology()
    with nos_engine.connect() as conn:
        tables = conn.execute(select(nos_table.c.url, nos_table.c.kind).order_by(nos_table.c.url)).all()
        differ = [url for url, kind in tables if
                  (fresh.code_system(None, url) != term.code_system(conn, url) if kind == "CodeSystem"
                   else fresh.value_set(None, url) != term.value_set(conn, url))]
    assert len(tables) == 318 and differ == []  # 306 + the 12 value sets of ig-nos-2023-07
    assert fresh.value_set(None, canonical_url("JDV_J999-Absent-ROR")) is None


def test_a_value_set_not_shipped_is_known_by_its_namesake_code_system():
    assert bundled().namesakes(canonical_url("JDV_J209-TypeSavoirFaire-ROR")) == {
        canonical_url("TRE_R04-TypeSavoirFaire")}
    assert bundled().namesakes(canonical_url("JDV_J19-ModePriseEnCharge-ROR")) == {
        canonical_url("TRE_R213-ModePriseEnCharge")}
    assert bundled().namesakes("https://interop.esante.gouv.fr/ig/fhir/ror/ValueSet/act-type-ror-valueset") == set()


def test_the_database_version_of_a_table_wins_over_the_bundled_one(db_url):
    """Care mode 60 joined JDV_J19 in 2026: accepted by the bundled set, refused by a database that
    holds only the 2023 version of JDV_J19 (what the operator loaded is what is enforced)."""
    engine = make_engine(db_url)
    upgrade(engine)
    for name in ("TRE_R213-ModePriseEnCharge.tabs", "JDV_J19-ModePriseEnCharge-ROR.tabs"):
        load(engine, NOS / "nos-2020-2023" / name)
    offer = hs()
    offer["characteristic"][-1]["coding"][0]["code"] = "60"
    validator = Validator(check_references=False)
    assert validator.validate(offer, None) == []
    with engine.connect() as conn:
        assert [i.diagnostics for i in validator.validate(offer, conn)] == [
            "HealthcareService.characteristic:careMode (modePriseEnCharge): "
            f"{canonical_url('TRE_R213-ModePriseEnCharge')}|60 is not in value set JDV_J19-ModePriseEnCharge-ROR "
            "(version 20230127120000), which this element requires"]
    engine.dispose()
