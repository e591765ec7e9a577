"""Keyset paging over a pinned snapshot: following every `next` link returns each match of the first
page's moment exactly once, whatever is written between pages."""

from __future__ import annotations

import copy
import json
from unittest.mock import patch
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from ror.search import execute
from ror.store import bulk
from tests.conftest import FIXTURES
from tests.integration.test_search_semantics import matches
from tests.integration.test_store import location


def page(svc, rtype, pairs) -> dict:
    return orjson.loads(svc.search(rtype, pairs, "http://t/fhir").body)


def next_pairs(bundle: dict) -> list[tuple[str, str]] | None:
    for link in bundle["link"]:
        if link["relation"] == "next":
            return parse_qsl(urlsplit(link["url"]).query, keep_blank_values=True)
    return None


def walk(svc, rtype, pairs, between=None) -> list[dict]:
    """All match entries, following `next`; ``between(n)`` runs after page n."""
    out, n = [], 0
    bundle = page(svc, rtype, pairs)
    while True:
        out += [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
        nxt = next_pairs(bundle)
        if nxt is None:
            return out
        n += 1
        if between:
            between(n)
        bundle = page(svc, rtype, nxt)


def places(n: int, prefix="p") -> list[dict]:
    out = []
    for i in range(n):
        r = location()
        r["id"] = f"{prefix}-{i:03d}"
        r["name"] = f"Unité {i:03d}"
        out.append(r)
    return out


@pytest.mark.parametrize("sort", [None, "_lastUpdated", "-_lastUpdated", "name", "-name,_id"])
def test_each_match_exactly_once_while_data_changes(service, sort):
    data = places(60)
    bulk.upsert(service.engine, data)
    pairs = [("name", "unite"), ("_count", "7")] + ([("_sort", sort)] if sort else [])
    first_ids = {r["id"] for r in data}

    def churn(n):
        # Rename seen and unseen places (some out of the result, some with new sort keys), and add
        # new matching places: none of it may show in this walk.
        changed = []
        for i in (n * 3, 59 - n * 3, n * 5 % 60):
            r = copy.deepcopy(data[i])
            r["name"] = ("Autre " if i % 2 else "Unité zz ") + str(n)
            changed.append(r)
        changed += places(2, prefix=f"new{n}")
        bulk.upsert(service.engine, changed)

    got = walk(service, "Location", pairs, churn)
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)) == 60
    assert set(ids) == first_ids
    assert all(r["meta"]["versionId"] == "1" for r in got)  # the bodies as of the snapshot
    if sort in ("name", "-name,_id"):
        names = [r["name"] for r in got]
        assert names == sorted(names, reverse=sort.startswith("-"))
    # A new search sees the new state.
    now = {e["resource"]["id"] for e in page(service, "Location", [("name", "unite"), ("_count", "500")])["entry"]}
    assert now != first_ids and any(i.startswith("new") for i in now)


def test_total_is_stable_across_pages(service):
    bulk.upsert(service.engine, places(25))
    b1 = page(service, "Location", [("_count", "10")])
    bulk.upsert(service.engine, places(5, prefix="late"))
    b2 = page(service, "Location", next_pairs(b1))
    assert b1["total"] == b2["total"] == 25


@pytest.mark.parametrize("sort", [None, "name"])
def test_a_first_page_sees_the_state_of_its_snapshot_only(service, sort):
    """A first page reads the live index rows (``LiveRows``): its statements must all see the state its snapshot
    number was read from, on PostgreSQL too (a READ COMMITTED statement would see what commits meanwhile)."""
    bulk.upsert(service.engine, places(4))
    pinned = execute.current_tx

    def pinned_then_written(conn):
        snapshot = pinned(conn)
        bulk.upsert(service.engine, places(2, prefix="late"))  # another connection, committed at once
        return snapshot
    pairs = [("name", "unite"), ("_count", "3"), *([("_sort", sort)] if sort else [])]
    with patch.object(execute, "current_tx", pinned_then_written):
        b1 = page(service, "Location", pairs)
    b2 = page(service, "Location", next_pairs(b1))
    assert b1["total"] == 4 and matches(b1) + matches(b2) == [f"p-{i:03d}" for i in range(4)]


def test_next_link_of_another_search_is_refused(service):
    bulk.upsert(service.engine, places(5))
    b = page(service, "Location", [("_count", "2")])
    cursor = dict(next_pairs(b))["_cursor"]
    from ror.errors import InvalidSearch
    with pytest.raises(InvalidSearch):
        page(service, "Location", [("_count", "2"), ("name", "x"), ("_cursor", cursor)])


@pytest.fixture(scope="module")
def small_bundle():
    return [e["resource"] for e in json.loads((FIXTURES / "small" / "bundle.json").read_text())["entry"]]


@pytest.mark.parametrize("rtype", ["HealthcareService", "Location", "Organization"])
@pytest.mark.parametrize("count", [1, 2, 5])
def test_paging_any_page_size_equals_one_page(service, small_bundle, rtype, count):
    bulk.upsert(service.engine, small_bundle)
    for extra in ([], [("_sort", "-_lastUpdated")], [("_sort", "_id")]):
        single = [r["id"] for r in walk(service, rtype, [("_count", "1000"), *extra])]
        paged = [r["id"] for r in walk(service, rtype, [("_count", str(count)), *extra])]
        assert paged == single
        assert len(single) == len(set(single)) == sum(r["resourceType"] == rtype for r in small_bundle)
