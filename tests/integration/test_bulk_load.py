"""Loads of more than one batch (issue 7): into an empty store, one transaction whose lookup indexes are
built at the end; lines prepared by worker processes when the process may use more than one CPU. Whatever
the path, every resource's live index rows must be exactly what the indexer yields from its stored body,
and a reload must find every line known."""

from __future__ import annotations

import os
import threading

import orjson
import pytest
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from ror.cli.main import app
from ror.errors import InputFileError
from ror.fhir.files import Rejected, read_items
from ror.store import bulk, derived, repository
from ror.store.engine import current_tx
from ror.store.schema import INDEX_TABLES, load_fingerprint, resource, resource_version
from tests.conftest import FIXTURES
from tests.integration.test_index_diff import copies_are_current, expected, rows_at


def _resources() -> list[dict]:
    bundle = orjson.loads((FIXTURES / "small" / "bundle.json").read_bytes())
    out = [e["resource"] for e in bundle["entry"]]
    # Members in another order than the stored one, and no meta.lastUpdated: the rows prepared ahead of the
    # write must still be those of the body as stored (its meta first, its stamp).
    first = out[0]
    out[0] = {**{k: v for k, v in first.items() if k not in ("resourceType", "id", "meta")},
              "id": first["id"], "resourceType": first["resourceType"]}
    return out


@pytest.fixture
def ndjson(tmp_path):
    path = tmp_path / "extract.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in _resources()) + b"\n")
    return path


@pytest.fixture(params=[1, 2], ids=["1cpu", "2cpus"])
def cpus(request, monkeypatch):
    """Lines prepared here (1 CPU) or by worker processes (2 CPUs), whatever this machine has."""
    monkeypatch.setattr(bulk.os, "sched_getaffinity", lambda _pid: set(range(request.param)))
    return request.param


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def indexes(engine) -> list[tuple]:
    """The index tables' and the fingerprints' indexes as the database has them (a first load drops, then builds
    them again)."""
    with engine.connect() as conn:
        inspector = inspect(conn)
        tables = (*INDEX_TABLES.values(), load_fingerprint)
        return sorted((table.name, ix["name"], *ix["column_names"]) for table in tables
                      for ix in inspector.get_indexes(table.name))


def reading_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ror-load-reader"]


@pytest.fixture
def schema_indexes(service):
    return indexes(service.engine)


def check_store(service, resources: list[dict], schema_indexes: list[tuple]) -> None:
    with service.engine.connect() as conn:
        tx = current_tx(conn)
        for res in resources:
            body = orjson.loads(service.read(res["resourceType"], res["id"]).body)
            assert rows_at(conn, res["resourceType"], res["id"], tx) == expected(body), res["id"]
        copies_are_current(conn)
    assert indexes(service.engine) == schema_indexes
    assert count(service.engine, resource_version) == 0


@pytest.mark.parametrize("keep_last_updated", [True, False])
def test_a_first_load_in_batches_indexes_every_body_as_stored(service, ndjson, cpus, keep_last_updated, monkeypatch,
                                                              schema_indexes):
    ahead = []
    finalise = repository.Prepared.finalise
    monkeypatch.setattr(repository.Prepared, "finalise",
                        lambda p, version, stamp: ahead.append(p.ready is not None) or finalise(p, version, stamp))
    done = bulk.upsert(service.engine, read_items(ndjson), batch_size=7, keep_last_updated=keep_last_updated)
    assert done == {"created": 51}
    assert ahead == [cpus > 1] * 51  # prepared by the workers, with 2 CPUs
    check_store(service, _resources(), schema_indexes)
    assert count(service.engine, load_fingerprint) == 51
    assert bulk.upsert(service.engine, read_items(ndjson), batch_size=7) == {"unchanged": 51}
    assert count(service.engine, resource_version) == 0


def test_a_first_load_builds_the_indexes_it_would_insert_into_at_random_at_its_end(service):
    """Those not led by pk: the index tables' lookup indexes, and the fingerprints' digest index (no line of a first
    load is looked up)."""
    with service.engine.connect() as conn:
        deferred = set(bulk._lookup_indexes(conn))
    assert {"ix_idx_token_lookup", "ix_idx_date_lookup2", "ix_load_fingerprint_digest"} <= deferred
    assert not deferred & {"ix_idx_token_pk", "ix_resource_content", "uq_resource_type_id"}


def test_a_first_load_copies_the_offers_rows_before_building_the_indexes_they_go_into(service, ndjson, monkeypatch,
                                                                                      schema_indexes):
    """Only the index by which the offers' places are found is built when the copies are made: the copies' rows are
    sorted into the others with the loaded ones."""
    built = []
    copy_all = derived.copy_all

    def watched(conn, tx):
        built.extend(ix["name"] for table in INDEX_TABLES.values() for ix in inspect(conn).get_indexes(table.name)
                     if ix["column_names"][:1] != ["pk"])
        copy_all(conn, tx)

    monkeypatch.setattr(derived, "copy_all", watched)
    assert bulk.upsert(service.engine, read_items(ndjson), batch_size=7, keep_last_updated=True) == {"created": 51}
    assert built == ["ix_idx_ref_lookup"]
    check_store(service, _resources(), schema_indexes)


def test_the_workers_are_scheduled_after_the_writer(monkeypatch):
    """The writer is a load's bottleneck: the workers preparing lines ahead of it run at a lower priority."""
    monkeypatch.setattr(bulk.os, "sched_getaffinity", lambda _pid: {0, 1})
    with bulk._Preparer(many=True, first_load=True, keep_last_updated=False) as preparer:
        assert preparer.pool.apply(os.nice, (0,)) == min(os.nice(0) + bulk.WORKER_NICENESS, 19)


def test_resources_and_lines_mixed_over_batches(service, ndjson, cpus, schema_indexes):
    items = [*_resources()[:20], *list(read_items(ndjson))[20:]]
    assert bulk.upsert(service.engine, items, batch_size=6, keep_last_updated=True) == {"created": 51}
    check_store(service, _resources(), schema_indexes)
    assert count(service.engine, load_fingerprint) == 31


def test_a_second_load_in_batches_writes_what_changed(service, ndjson, cpus):
    bulk.upsert(service.engine, read_items(ndjson), batch_size=7, keep_last_updated=True)
    changed = _resources()
    changed[3]["name"] = "Renommé"
    ndjson.write_bytes(b"\n".join(orjson.dumps(r) for r in changed) + b"\n")
    assert bulk.upsert(service.engine, read_items(ndjson), batch_size=7, keep_last_updated=True) == {
        "unchanged": 50, "updated": 1}
    with service.engine.connect() as conn:
        tx = current_tx(conn)
        body = orjson.loads(service.read(changed[3]["resourceType"], changed[3]["id"]).body)
        assert body["name"] == "Renommé"
        assert rows_at(conn, changed[3]["resourceType"], changed[3]["id"], tx) == expected(body)


def test_loads_plan_each_statement_for_its_values_on_postgresql(service, ndjson, monkeypatch):
    """A load's look-ups and writes run with PostgreSQL planning each statement for its values: the generic plan of
    a statement psycopg prepared while the tables were small scanned them whole once they had grown (the first
    load of 270,000 resources: each batch's look-up by id a sequential scan). A first load and a later one."""
    if service.engine.dialect.name == "sqlite":
        pytest.skip("PostgreSQL's plan cache")
    seen: list[tuple[str, str]] = []
    write_batch, unchanged = repository.write_batch, bulk._unchanged

    def mode(conn) -> str:
        return conn.exec_driver_sql("SELECT current_setting('plan_cache_mode')").scalar_one()

    monkeypatch.setattr(repository, "write_batch", lambda conn, *a, **k: seen.append(("write", mode(conn)))
                        or write_batch(conn, *a, **k))
    monkeypatch.setattr(bulk, "_unchanged", lambda conn, digests: seen.append(("look-up", mode(conn)))
                        or unchanged(conn, digests))
    bulk.upsert(service.engine, read_items(ndjson), batch_size=7)  # a first load: one transaction
    assert seen and {m for _, m in seen} == {"force_custom_plan"}
    seen.clear()
    changed = _resources()
    changed[3]["name"] = "Renommé"
    ndjson.write_bytes(b"\n".join(orjson.dumps(r) for r in changed) + b"\n")
    assert bulk.upsert(service.engine, read_items(ndjson), batch_size=7) == {"unchanged": 50, "updated": 1}
    assert {kind for kind, _ in seen} == {"write", "look-up"}  # batch by batch, each in its own transactions
    assert {m for _, m in seen} == {"force_custom_plan"}
    with service.engine.connect() as conn:  # for those transactions only
        assert mode(conn) == "auto"


def test_rejected_lines_are_reported_in_file_order(service, ndjson, cpus):
    lines = ndjson.read_bytes().splitlines()
    lines[9:9] = [b'{"resourceType": "Location"', b'{"resourceType": "Patient", "id": "p"}']
    ndjson.write_bytes(b"\n".join(lines) + b"\n")
    rejected: list[Rejected] = []
    assert bulk.upsert(service.engine, read_items(ndjson), batch_size=7, on_rejected=rejected.append) == {
        "created": 51}
    assert [r.where.rsplit(":", 1)[1] for r in rejected] == ["10", "11"]
    assert "invalid JSON" in rejected[0].reason and "not served" in rejected[1].reason


@pytest.mark.parametrize("name", ["extract.ndjson", "extract.JSONL"])
def test_an_ndjson_file_whose_first_line_is_cut_loses_that_line_only(service, ndjson, cpus, name):
    """The generator's dirty records cut a line, sometimes the first one: by its name the file is still NDJSON,
    not one JSON document that is invalid as a whole."""
    lines = ndjson.read_bytes().splitlines()
    cut = ndjson.with_name(name)
    cut.write_bytes(b"\n".join([lines[0][:70], *lines[1:]]) + b"\n")
    rejected: list[Rejected] = []
    assert bulk.upsert(service.engine, read_items(cut), batch_size=7, on_rejected=rejected.append) == {"created": 50}
    assert [(r.where.rsplit(":", 1)[1], r.reason[:12]) for r in rejected] == [("1", "invalid JSON")]


def test_a_failed_first_load_leaves_the_store_empty_and_indexed(service, ndjson, cpus, schema_indexes):
    lines = ndjson.read_bytes().splitlines()
    lines.insert(30, b"not json")
    ndjson.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputFileError, match=":31: invalid JSON"):
        bulk.upsert(service.engine, read_items(ndjson), batch_size=7)
    assert not reading_threads()  # stopped while it had lines left to read
    assert count(service.engine, resource) == 0
    assert indexes(service.engine) == schema_indexes


def test_an_error_reading_the_items_is_raised_in_its_turn_and_ends_the_reading_thread(service, ndjson, cpus):
    """A load's batches are read, and their lines digested, by a thread ahead of the look-ups and writes
    (``bulk._threaded``): an error it meets is raised to the caller after the batches read before it."""
    items = list(read_items(ndjson))
    assert bulk.upsert(service.engine, items[:5]) == {"created": 5}  # not a first load: batch by batch

    def failing():
        yield from items[5:40]  # five batches of 7
        raise InputFileError("second.ndjson: cannot be read (Permission denied)")

    with pytest.raises(InputFileError, match="Permission denied"):
        bulk.upsert(service.engine, failing(), batch_size=7)
    written = count(service.engine, resource)
    # in one process, every batch before the error was written; with workers, those not yet handed to the writer
    # were not (as before the thread: a batch is written whole or not at all)
    assert written == 40 if cpus == 1 else (written - 5) % 7 == 0 and 5 <= written <= 40
    assert not reading_threads()
    assert bulk.upsert(service.engine, items, batch_size=7)["created"] == len(items) - written  # the re-run ends it


def test_the_load_command_over_files_in_batches(db_url, ndjson, cpus, tmp_path):
    lines = ndjson.read_bytes().splitlines()
    second = tmp_path / "second.ndjson"
    second.write_bytes(b"\n".join([*lines[30:], b"[1]"]) + b"\n")
    ndjson.write_bytes(b"\n".join(lines[:30]) + b"\n")
    args = ["load", "--batch-size", "7", "--keep-last-updated", str(ndjson), str(second)]
    first = CliRunner().invoke(app, args, env={"ROR_DATABASE_URL": db_url})
    assert first.exit_code == 1, first.output
    assert "created 51, updated 0, unchanged 0, rejected 1" in first.output
    # The console wraps lines anywhere, even in a word, at its width
    assert "second.ndjson:22:notaJSONobject" in "".join(first.output.split())
    again = CliRunner().invoke(app, args, env={"ROR_DATABASE_URL": db_url})
    assert "created 0, updated 0, unchanged 51, rejected 1" in again.output
