"""Helpers of the feed tests: a migrated engine per database backend, reading stored resources."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from ror.store.schema import resource

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"  # real samples, see SOURCES.md there
FINESS_SAMPLE = SAMPLES / "etalab_small_20201231.csv"
RPPS_SAMPLE = SAMPLES / "PS_LibreAcces_Personne_activite_small.txt"
CSD_SAMPLE = SAMPLES / "reponse.xml"


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def stored(engine, rtype: str, rid: str) -> dict:
    with engine.connect() as conn:
        body = conn.execute(select(resource.c.body).where(resource.c.rtype == rtype, resource.c.rid == rid)).scalar()
    assert body is not None, f"{rtype}/{rid} is not stored"
    return orjson.loads(body)


def all_stored(engine, versions: bool = False) -> dict[tuple[str, str], dict]:
    """Every current resource without its server meta (lastUpdated; versionId unless ``versions``)."""
    dropped = ("lastUpdated",) if versions else ("versionId", "lastUpdated")
    out = {}
    with engine.connect() as conn:
        for rtype, rid, body in conn.execute(select(resource.c.rtype, resource.c.rid, resource.c.body)):
            res = orjson.loads(body)
            res["meta"] = {k: v for k, v in res["meta"].items() if k not in dropped}
            out[(rtype, rid)] = res
    return out


def ext(res: dict, url_end: str):
    return [e for e in res.get("extension", []) if e["url"].endswith(url_end)]
