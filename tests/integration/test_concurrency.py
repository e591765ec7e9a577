"""Concurrent writers never lose one another's change (row lock on PostgreSQL, write lock on SQLite)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from ror.fhir.rights import FULL_ACCESS
from tests.integration.test_store import location


def test_parallel_patches_on_one_resource_all_land(service):
    loc = location()
    service.update("Location", loc["id"], orjson.dumps(loc), "http://t/fhir")
    n = 40

    def add_alias(i: int) -> int:
        ops = [{"op": "add", "path": "/alias/-", "value": f"alias-{i}"}] if i else \
              [{"op": "add", "path": "/alias", "value": ["alias-0"]}]
        return service.patch("Location", loc["id"], json.dumps(ops).encode(), "application/json-patch+json",
                             "http://t/fhir").status

    assert add_alias(0) == 200
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(add_alias, range(1, n)))
    assert statuses == [200] * (n - 1)
    final = orjson.loads(service.read("Location", loc["id"]).body)
    assert sorted(final["alias"]) == sorted(f"alias-{i}" for i in range(n))
    assert final["meta"]["versionId"] == str(n + 1)
    history = orjson.loads(service.history("Location", loc["id"], "http://t/fhir").body)
    assert [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]] == list(range(n + 1, 0, -1))


class _Conflict(Exception):
    """What the driver raises when PostgreSQL picks a transaction as a deadlock's victim."""

    sqlstate = "40P01"


def test_a_deadlock_victim_is_run_again_and_other_failures_are_not(service):
    loc = location()
    attempts = []

    def work(conn):
        attempts.append(1)
        if len(attempts) < 3:
            raise _Conflict
        return service._update(conn, "Location", loc["id"], loc, "http://t/fhir", None, FULL_ACCESS)

    assert service._write(work).status == 201 and len(attempts) == 3
    assert service.read("Location", loc["id"]).status == 200

    def fails(conn):
        attempts.append(1)
        raise ValueError("not a conflict")

    attempts.clear()
    with pytest.raises(ValueError):
        service._write(fails)
    assert len(attempts) == 1
