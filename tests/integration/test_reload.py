"""No-op reloads of NDJSON skip known lines without parsing them, and never skip a line whose
resource has changed since (by the API, a feed or another file)."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from sqlalchemy import func, select, update

from ror.errors import InputFileError
from ror.fhir.files import Line, Rejected, read_items
from ror.store import bulk
from ror.store.schema import load_fingerprint, resource_version
from tests.conftest import FIXTURES


@pytest.fixture
def ndjson(tmp_path):
    bundle = orjson.loads((FIXTURES / "small" / "bundle.json").read_bytes())
    path = tmp_path / "extract.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e["resource"]) for e in bundle["entry"]) + b"\n")
    return path


# One batch is looked up and prepared in this process; batches of 7 by worker processes, ahead of the writes.
BATCHES = [2000, 7]


@pytest.fixture(autouse=True, params=["looked up", "read at once"])
def known_lines(request, monkeypatch):
    """Known lines looked up batch by batch, or every valid fingerprint read at once (``bulk._Known``) from the
    load's first batch on."""
    monkeypatch.setattr(bulk, "_READ_AT_ONCE", 10**12 if request.param == "read at once" else 0)
    return request.param


def load(engine, path, rejected=None, batch_size=2000):
    return bulk.upsert(engine, read_items(path), keep_last_updated=True, batch_size=batch_size,
                       on_rejected=None if rejected is None else rejected.append)


@pytest.fixture
def parsed(monkeypatch, tmp_path):
    """Where each line parsed from now on was, in this process or a worker (they write to a file)."""
    log = tmp_path / "parsed.txt"
    log.touch()
    original = Line.parse

    def spy(self):
        with log.open("a") as f:
            f.write(self.where + "\n")
        return original(self)
    monkeypatch.setattr(Line, "parse", spy)
    return lambda: log.read_text().split()


def versions(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(resource_version)).scalar_one()


@pytest.mark.parametrize("batch_size", BATCHES)
def test_reload_skips_known_lines_unparsed(service, ndjson, parsed, batch_size):
    first = load(service.engine, ndjson, batch_size=batch_size)
    assert first["created"] == 51 and sum(first.values()) == 51 and len(parsed()) == 51
    again = load(service.engine, ndjson, batch_size=batch_size)
    assert again == {"unchanged": 51} and len(parsed()) == 51
    assert versions(service.engine) == 0


@pytest.mark.parametrize("batch_size", BATCHES)
def test_a_resource_changed_since_is_parsed_and_restored(service, ndjson, parsed, batch_size):
    load(service.engine, ndjson, batch_size=batch_size)
    place = orjson.loads(service.read("Location", "loc-usp-nord").body)
    place["name"] = "Renommé par l'API"
    service.update("Location", "loc-usp-nord", orjson.dumps(place), "http://x/fhir")
    before = len(parsed())
    again = load(service.engine, ndjson, batch_size=batch_size)
    assert again == {"unchanged": 50, "updated": 1}
    assert len(parsed()) == before + 1
    assert orjson.loads(service.read("Location", "loc-usp-nord").body)["name"] != "Renommé par l'API"
    # the fingerprint follows the restored content
    assert load(service.engine, ndjson, batch_size=batch_size) == {"unchanged": 51}


@pytest.mark.parametrize("batch_size", BATCHES)
def test_a_changed_line_updates_and_a_bad_line_is_reported(service, ndjson, batch_size):
    load(service.engine, ndjson, batch_size=batch_size)
    lines = ndjson.read_bytes().splitlines()
    res = orjson.loads(lines[0])
    res["name"] = res.get("name", "") + " (nouveau nom)"
    lines[0] = orjson.dumps(res)
    lines.append(b'{"resourceType": "Location", "id": "broken"')
    ndjson.write_bytes(b"\n".join(lines) + b"\n")
    rejected: list[Rejected] = []
    assert load(service.engine, ndjson, rejected, batch_size) == {"unchanged": 50, "updated": 1}
    assert len(rejected) == 1 and rejected[0].where.endswith(":52") and "invalid JSON" in rejected[0].reason
    with pytest.raises(InputFileError, match=":52: invalid JSON"):
        load(service.engine, ndjson, batch_size=batch_size)


def test_known_lines_are_looked_up_in_indexes_alone(service, ndjson):
    """A reload's look-up of a line reads the fingerprint's digest index and the resource's content index,
    never the resource's row (its page holds the body: the cold reads of a national reload)."""
    if service.engine.dialect.name != "sqlite":
        pytest.skip("the plan checked is SQLite's")
    load(service.engine, ndjson)
    seen = []
    real = bulk.dbapi_rows

    def spy(conn, sql, params=()):
        seen.append(conn.connection.driver_connection.execute(
            "EXPLAIN QUERY PLAN " + sql.replace("{p}", "?"), params).fetchall())
        return real(conn, sql, params)
    digests = {bytes(16)}
    with service.engine.connect() as conn, pytest.MonkeyPatch.context() as m:
        m.setattr(bulk, "dbapi_rows", spy)
        assert bulk._unchanged(conn, digests) == set()
    steps = [row[-1] for row in seen[0]]
    assert any(s.startswith("SEARCH f USING COVERING INDEX ix_load_fingerprint_digest") for s in steps), steps
    assert any(s.startswith("SEARCH r USING COVERING INDEX ix_resource_content") for s in steps), steps


@pytest.mark.parametrize("batch_size", BATCHES)
def test_fingerprints_recorded_with_blake2b_are_recognised_then_re_recorded(service, ndjson, parsed, batch_size):
    """Fingerprints recorded by the versions that digested lines with BLAKE2b: the first reload after the change
    still skips their lines unparsed, and records them under the SHA-256 digest the next reload looks up."""
    lines = [item.raw for item in read_items(ndjson)]
    load(service.engine, ndjson, batch_size=batch_size)
    with service.engine.begin() as conn:
        for raw in lines:
            conn.execute(update(load_fingerprint).where(load_fingerprint.c.digest == bulk._digest(raw))
                         .values(digest=hashlib.blake2b(raw, digest_size=16).digest()))
    with service.engine.connect() as conn:
        assert bulk._unchanged(conn, {bulk._digest(raw) for raw in lines}) == set()
    assert load(service.engine, ndjson, batch_size=batch_size) == {"unchanged": 51} and len(parsed()) == 51
    assert versions(service.engine) == 0
    with service.engine.connect() as conn:
        assert bulk._unchanged(conn, {bulk._digest(raw) for raw in lines}) == {bulk._digest(raw) for raw in lines}
    assert load(service.engine, ndjson, batch_size=batch_size) == {"unchanged": 51} and len(parsed()) == 51


def test_a_known_line_of_a_resource_the_load_changed_before_is_written(service, ndjson, parsed, monkeypatch,
                                                                         known_lines):
    """A line known when the load began, of a resource an earlier line of the same load changed: written again, the
    last word of the load (batches written one after the other: one CPU, no worker ahead)."""
    monkeypatch.setattr(bulk.os, "sched_getaffinity", lambda _pid: {0})
    load(service.engine, ndjson, batch_size=7)
    lines = ndjson.read_bytes().splitlines()
    res = orjson.loads(lines[0])
    renamed = orjson.dumps({**res, "name": "Nom provisoire"})
    ndjson.write_bytes(b"\n".join([renamed, *lines[1:], lines[0]]) + b"\n")  # 52 lines, the first one last again
    before = len(parsed())
    assert load(service.engine, ndjson, batch_size=7) == {"unchanged": 50, "updated": 2}
    assert len(parsed()) == before + 2
    assert orjson.loads(service.read(res["resourceType"], res["id"]).body).get("name") == res.get("name")
