"""Available beds and places summed by region, department, activity, establishment and temporary
assignment on the hand-built dataset; expected sums computed by hand from its README capacity table
(status 02 "disponible", temporality 01 "courant")."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from ror.capacity.summary import stale_places, summary
from ror.fhir.files import read_resources
from ror.store import bulk
from tests.capacity.test_protocol import FHIR, USP, capacity, op, path
from tests.conftest import FIXTURES, LiveServer

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)


@pytest.fixture
def loaded(service):
    bulk.upsert(service.engine, list(read_resources(FIXTURES / "small" / "bundle.json")), keep_last_updated=True)
    return service


def groups(svc, by, profile=1, hours=1e6):
    with svc.engine.connect() as conn:
        data = summary(conn, by, profile=profile, stale_after_h=hours, now=NOW)
    return {g["key"]: (g["beds"], g["places"], g["locations"]) for g in data["groups"]}


def test_by_region_and_department(loaded):
    assert groups(loaded, "region") == {"52": (10, 0, 6), "11": (6, 0, 1), "53": (0, 1, 1)}
    assert groups(loaded, "department") == {"44": (10, 0, 6), "78": (6, 0, 1), "35": (0, 1, 1)}


def test_by_temporary_assignment_activity_and_establishment(loaded):
    assert groups(loaded, "temporary-assignment") == {"01": (14, 1, 7), "02": (2, 0, 1)}
    assert groups(loaded, "activity") == {"022": (9, 0, 3), "100": (0, 0, 1), "094": (1, 0, 1), "170": (3, 0, 1),
                                          "354": (2, 0, 1), "229": (1, 0, 1), "293": (0, 1, 1), "325": (0, 1, 1)}
    assert groups(loaded, "establishment") == {"eg-hotel-dieu": (4, 0, 3), "eg-hopital-nord": (6, 0, 3),
                                               "eg-clinique-versailles": (6, 0, 1), "eg-ehpad-rennes": (0, 1, 1),
                                               "ej-asso-kerlann": (0, 1, 1)}


def test_profiles_count_only_what_they_read(loaded):
    assert groups(loaded, "region", profile=2) == {"52": (9, 0, 5), "11": (6, 0, 1), "53": (0, 1, 1)}  # no psy
    assert groups(loaded, "region", profile=0) == {}  # no capacity for open data
    assert groups(loaded, "region", profile=5) == {}  # installed capacity only
    assert groups(loaded, "region", profile=3) == {"53": (0, 1, 1)}  # medico-social places only


def test_stale_flags_and_a_patch_shows_in_the_next_summary(loaded):
    with loaded.engine.connect() as conn:
        data = summary(conn, "region", stale_after_h=24, now=NOW)
        assert {g["key"]: g["staleLocations"] for g in data["groups"]} == {"52": 6, "11": 1, "53": 1}
        assert len(stale_places(conn, stale_after_h=24, now=NOW)) == 9  # every place with capacities
    body = json.dumps(op("replace", path(), capacity(nb=5))).encode()
    assert loaded.conditional_patch("Location", [("identifier", USP)], body, FHIR, "http://t").status == 200
    with loaded.engine.connect() as conn:
        data = summary(conn, "region", stale_after_h=24)
        assert {g["key"]: g["beds"] for g in data["groups"]}["52"] == 13  # 2 -> 5 at loc-usp-nord
        stale = {p["location"] for p in stale_places(conn, stale_after_h=24)}
    assert "Location/loc-usp-nord" not in stale and "Location/loc-gyn-a" in stale


def test_http_endpoints(loaded):
    with LiveServer(loaded) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        r = http.get("/api/capacity/summary", params={"by": "department", "stale-after-hours": "1000000"})
        assert r.status_code == 200
        assert {g["key"]: g["beds"] for g in r.json()["groups"]} == {"44": 10, "78": 6, "35": 0}
        bad = http.get("/api/capacity/summary", params={"by": "planet"})
        assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
        assert http.get("/api/capacity/history").status_code == 400
        assert http.get("/api/capacity/history", params={"location": "loc-usp-nord"}).json() == {"events": []}
        assert http.get("/api/capacity/stale").json()["locations"]
