"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL tests use ``ROR_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and sets it); without it
they are skipped with a message saying so.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from ror.api.app import create_app
from ror.api.server import OPTIONS as SERVER_OPTIONS
from ror.fhir.service import FhirService
from ror.settings import Settings
from ror.store.engine import make_engine
from ror.store.migrate import upgrade

FIXTURES = Path(__file__).parent / "fixtures"
PG_URL = os.environ.get("ROR_TEST_POSTGRES_URL", "")


def _pg_database(tag: str) -> str:
    """A fresh PostgreSQL database for one test scope; returns its URL."""
    name = f"ror_t_{tag}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def _drop_pg_database(url: str) -> None:
    """Drop a test database; a backend of another role (autovacuum) may hold it for a moment."""
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    try:
        for attempt in range(10):
            try:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                return
            except DBAPIError:
                if attempt == 9:
                    warnings.warn(f"test database {name} could not be dropped", stacklevel=1)
                    return
                time.sleep(0.5)
    finally:
        admin.dispose()


def _database(request, tmp_path_factory, tag: str):
    backend = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'ror.db'}"
        yield url
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests skipped: set ROR_TEST_POSTGRES_URL (the CI script starts a server)")
    url = _pg_database(tag)
    try:
        yield url
    finally:
        _drop_pg_database(url)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path_factory):
    yield from _database(request, tmp_path_factory, "fn")


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request, tmp_path_factory):
    yield from _database(request, tmp_path_factory, "mod")


def make_service(url: str, **settings) -> FhirService:
    s = Settings(database_url=url, **settings)
    engine = make_engine(url)
    upgrade(engine)
    return FhirService(engine, s)


@pytest.fixture
def service(db_url) -> FhirService:
    svc = make_service(db_url)
    yield svc
    svc.engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The real app on uvicorn, on 127.0.0.1, in a background thread."""

    def __init__(self, service: FhirService):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base = self.url + "/fhir"
        app = create_app(service, service.settings)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    **SERVER_OPTIONS))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def live(service):
    with LiveServer(service) as srv:
        yield srv
