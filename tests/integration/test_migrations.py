"""Migrations that rebuild what a store already holds: run on a store in the former state, on both databases."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from ror.feeds.finess import FinessFeed
from ror.feeds.reports import run_problems
from ror.feeds.runs import run_import
from ror.store import bulk, migrate
from ror.store.schema import INDEX_TABLES
from tests.api.test_http import capacity
from tests.feeds.conftest import FINESS_SAMPLE
from tests.integration.test_index_diff import copies_are_current
from tests.integration.test_paging import places


def _alembic(engine, step, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrate._MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        step(cfg, revision)


def _lookup_orders(engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        inspector = inspect(conn)
        return {ix["name"]: ix["column_names"] for table in INDEX_TABLES.values()
                for ix in inspector.get_indexes(table.name) if ix["name"].startswith(f"ix_{table.name}_lookup")}


def test_0012_puts_pk_before_since_tx_in_the_lookup_indexes_of_a_loaded_store(service):
    bulk.upsert(service.engine, places(5))
    pairs = [("_filter", 'name eq "unite 001" or name eq "unite 004"')]
    _alembic(service.engine, command.downgrade, "0011")
    before = _lookup_orders(service.engine)
    assert len(before) == 9 and all(columns[-2:] == ["since_tx", "pk"] for columns in before.values())
    assert service.search("Location", pairs, "http://t").status == 200
    _alembic(service.engine, command.upgrade, "head")
    after = _lookup_orders(service.engine)
    assert after.keys() == before.keys()
    assert all(columns == [*before[name][:-2], "pk", "since_tx"] for name, columns in after.items())
    assert b"\"total\":2" in service.search("Location", pairs, "http://t").body


def _offer(rid: str, place: str) -> dict:
    return {"resourceType": "HealthcareService", "id": rid, "location": [{"reference": f"Location/{place}"}],
            "specialty": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/"
                                                 "TRE-R211-ActiviteOperationnelle", "code": "022"}]}]}


def _pk_index(engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return {ix["name"]: ix["column_names"] for ix in inspect(conn).get_indexes(table)}[f"ix_{table}_pk"]


def test_0013_reads_reference_rows_by_pk_from_the_index_of_a_loaded_store(service):
    bulk.upsert(service.engine, [*places(3), _offer("hs-1", "p-001"), _offer("hs-2", "p-002")])
    pairs = [("location.name", "unite 001")]
    _alembic(service.engine, command.downgrade, "0012")
    assert _pk_index(service.engine, "idx_ref") == ["pk", "until_tx"]
    assert b'"total":1' in service.search("HealthcareService", pairs, "http://t").body
    _alembic(service.engine, command.upgrade, "head")
    assert _pk_index(service.engine, "idx_ref") == ["pk", "until_tx", "param", "target_type", "target_id"]
    assert b'"id":"hs-1"' in service.search("HealthcareService", pairs, "http://t").body


def test_0015_reads_token_and_number_rows_by_pk_from_the_index_of_a_loaded_store(service):
    full, empty = places(2)
    full.setdefault("extension", []).append(capacity("02", 3))
    empty.setdefault("extension", []).append(capacity("02", 0))
    bulk.upsert(service.engine, [full, empty, _offer("hs-1", full["id"]), _offer("hs-2", empty["id"])])
    # The specialty drives; each offer is tested for its places' capacity (on its copies) by pk.
    pairs = [("specialty", "022"), ("location.nb-capacity", "gt0"), ("location.capacity-status", "02")]
    _alembic(service.engine, command.downgrade, "0014")
    assert _pk_index(service.engine, "idx_token") == _pk_index(service.engine, "idx_number") == ["pk", "until_tx"]
    before = service.search("HealthcareService", pairs, "http://t").body
    _alembic(service.engine, command.upgrade, "head")
    assert _pk_index(service.engine, "idx_token") == ["pk", "until_tx", "param", "code"]
    assert _pk_index(service.engine, "idx_number") == ["pk", "until_tx", "param", "value"]
    after = service.search("HealthcareService", pairs, "http://t").body
    assert b'"total":1' in after and after.split(b'"link"')[1] == before.split(b'"link"')[1]


def test_0014_copies_the_rows_of_their_places_into_the_offers_of_a_loaded_store(service):
    bulk.upsert(service.engine, [*places(3), _offer("hs-1", "p-001"), _offer("hs-2", "p-002")])
    pairs = [("location.near-insee-code", "78646|1|km")]  # the places' commune (ror-commune-cog): its centre
    _alembic(service.engine, command.downgrade, "0013")
    assert b'"total":0' in service.search("HealthcareService", pairs, "http://t").body  # the copies are read
    _alembic(service.engine, command.upgrade, "head")
    with service.engine.connect() as conn:
        copies_are_current(conn)
    assert b'"total":2' in service.search("HealthcareService", pairs, "http://t").body


def test_0016_reads_geographic_rows_by_pk_from_one_index_of_a_loaded_store(service):
    bulk.upsert(service.engine, [*places(3), _offer("hs-1", "p-001"), _offer("hs-2", "p-002")])
    pairs = [("specialty", "022"), ("location.near-insee-code", "78646|1|km")]  # an offer's places tested by pk
    _alembic(service.engine, command.downgrade, "0015")
    with service.engine.connect() as conn:
        before = {ix["name"] for ix in inspect(conn).get_indexes("idx_geo")}
    assert {"ix_idx_geo_pk", "ix_idx_geo_pk_point"} <= before
    assert b'"total":2' in service.search("HealthcareService", pairs, "http://t").body
    _alembic(service.engine, command.upgrade, "head")
    with service.engine.connect() as conn:
        after = {ix["name"] for ix in inspect(conn).get_indexes("idx_geo")}
    assert after == before - {"ix_idx_geo_pk_point"}
    assert _pk_index(service.engine, "idx_geo") == ["pk", "until_tx", "param", "lat", "lon"]
    assert b'"total":2' in service.search("HealthcareService", pairs, "http://t").body


def test_0017_finds_the_contributions_of_a_resource_whatever_the_source(service):
    def indexes() -> set[str]:
        with service.engine.connect() as conn:
            return {ix["name"] for ix in inspect(conn).get_indexes("feed_contribution")}

    assert "ix_feed_contribution_resource" in indexes()  # a new store has it (0003 creates the table as defined)
    _alembic(service.engine, command.downgrade, "0016")
    assert "ix_feed_contribution_resource" not in indexes()
    _alembic(service.engine, command.upgrade, "head")
    assert "ix_feed_contribution_resource" in indexes()


def test_0018_remembers_what_each_source_said(service):
    def columns() -> set[str]:
        with service.engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("feed_contribution")}

    assert {"said", "said_version"} <= columns()  # a new store has them (0003 creates the table as defined)
    _alembic(service.engine, command.downgrade, "0017")
    assert not {"said", "said_version"} & columns()
    assert "ix_feed_contribution_resource" in {ix["name"] for ix in inspect(service.engine).get_indexes(
        "feed_contribution")}  # SQLite's copy of the table kept its indexes
    _alembic(service.engine, command.upgrade, "head")
    assert {"said", "said_version"} <= columns()


def test_0020_moves_the_record_of_each_problem_of_a_store_to_the_shared_records(service):
    def problem_columns() -> set[str]:
        with service.engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("feed_problem")}

    report = run_import(service.engine, FinessFeed(), FINESS_SAMPLE)
    before = run_problems(service.engine, report.run_id)
    assert len(before) > 100 and len({p["record"] for p in before}) < len(before)  # records shared
    _alembic(service.engine, command.downgrade, "0019")
    assert "record" in problem_columns() and not inspect(service.engine).has_table("feed_problem_record")
    with service.engine.connect() as conn:
        copies = conn.execute(text("SELECT record FROM feed_problem ORDER BY problem_id")).scalars().all()
    assert copies == [p["record"] for p in before]  # a copy each, as before 0020
    _alembic(service.engine, command.upgrade, "head")
    assert "record" not in problem_columns()
    assert run_problems(service.engine, report.run_id) == before
    with service.engine.connect() as conn:  # shared again, as the run booked them
        assert conn.execute(text("SELECT COUNT(*) FROM feed_problem_record")).scalar_one() == len(
            {p["record"] for p in before})
