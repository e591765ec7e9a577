"""Validation tests: a database per module (SQLite and PostgreSQL) with the shipped NOS loaded."""

from __future__ import annotations

import json

import pytest

from ror.fhir.service import FhirService
from ror.settings import Settings
from ror.store.engine import make_engine
from ror.store.migrate import upgrade
from tests.terminology.conftest import NOS, load
from tests.validation.corpus import EX, ORGANIZATION


@pytest.fixture(scope="module")
def nos_engine(module_db_url):
    engine = make_engine(module_db_url)
    upgrade(engine)
    load(engine, NOS)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def stored(nos_engine):
    """The targets the HealthcareService example points to, written through the FHIR service."""
    svc = FhirService(nos_engine, Settings(database_url=str(nos_engine.url)))
    svc.update("Organization", "999999", json.dumps(ORGANIZATION).encode(), "http://x/fhir")
    location = {**EX["Location-ror-location-exemple.json"], "id": "888888"}
    svc.update("Location", "888888", json.dumps(location).encode(), "http://x/fhir")
    return nos_engine


