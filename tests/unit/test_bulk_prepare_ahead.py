"""A write prepared ahead by a bulk worker (``repository.prepare_ahead``) must give the writer exactly the body
and index rows that the same write gives from the resource itself, whatever version and stamp it decides."""

from __future__ import annotations

import copy

import orjson
import pytest

from ror.store import repository
from tests.conftest import FIXTURES

_BUNDLE = orjson.loads((FIXTURES / "small" / "bundle.json").read_bytes())


def _resources() -> list[dict]:
    out = [e["resource"] for e in copy.deepcopy(_BUNDLE)["entry"]]
    # Meta members in another order, a stale versionId, and no meta at all: the meta as served must not move.
    others = {k: v for k, v in out[0].get("meta", {}).items() if k not in ("lastUpdated", "versionId")}
    out[0]["meta"] = {"lastUpdated": "2024-03-05T10:00:00+01:00", "versionId": "7", **others}
    out[1].pop("meta", None)
    out[2] = {**{k: v for k, v in out[2].items() if k != "resourceType"}, "resourceType": out[2]["resourceType"]}
    return out


@pytest.mark.parametrize("keep_last_updated", [True, False])
@pytest.mark.parametrize(("version", "stamp"), [(1, None), (1, "2031-01-02T03:04:05.678Z"),
                                                (4, "2031-01-02T03:04:05.678Z")])
def test_a_write_prepared_ahead_has_the_body_and_rows_of_the_resource_written(keep_last_updated, version, stamp):
    for res in _resources():
        ahead = repository.prepare_ahead(copy.deepcopy(res), keep_last_updated)
        here = repository.prepare(copy.deepcopy(res))
        assert ahead.resource is None and ahead.ready is not None
        assert (ahead.content_hash, ahead.region) == (here.content_hash, here.region)
        assert ahead.submitted_stamp() == (here.submitted_stamp() if keep_last_updated else None)
        # The stamp write_batch would choose: the submitted one kept, or the time of the write.
        chosen = (keep_last_updated and here.submitted_stamp()) or stamp or "2030-06-07T08:09:10.111Z"
        assert ahead.finalise(version, chosen) == here.finalise(version, chosen), res["id"]
        assert ahead.index() == here.index() == repository.index_rows(here.resource), res["id"]


def test_the_rows_of_another_stamp_are_restamped_not_reused():
    res = _resources()[0]
    ahead = repository.prepare_ahead(copy.deepcopy(res), True)
    key = f"{res['resourceType']}._lastUpdated"
    ahead.finalise(2, "2032-12-31T23:59:59.999Z")
    assert [r[1:3] for r in ahead.index()["date"] if r[0] == key] == [("2032-12-31T23:59:59.999Z",) * 2]
    assert [r[1:3] for r in ahead.rows["date"] if r[0] == key] == [("2024-03-05T09:00:00.000Z",) * 2]
