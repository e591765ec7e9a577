"""Composition root: builds the engine, the services and the web app from settings."""

from __future__ import annotations

import gc
import logging
from importlib import resources

import orjson
from sqlalchemy.exc import SQLAlchemyError

from ror.settings import Settings, get_settings
from ror.store.engine import make_engine

log = logging.getLogger(__name__)


def build_app(settings: Settings | None = None, *, served: bool = False):
    """ASGI app for uvicorn (``ror.bootstrap:app_factory`` with ``--factory``). ``served``: a server process,
    settled (``settle``) before it answers; tests build the app without it."""
    from ror.api.app import create_app
    from ror.fhir.service import FhirService
    settings = settings or get_settings()
    engine = make_engine(settings.database_url, sqlite_cache_mb=settings.api_sqlite_cache_mb)
    service = FhirService(engine, settings)
    if served:
        settle(service)
    return create_app(service, settings)


def app_factory():
    return build_app(served=True)


def settle(service) -> None:
    """Load what the validator needs (profiles, the NOS tables of the bundled IG examples), then take every
    object alive out of the garbage collector's collections (``gc.freeze``): ~150,000 long-lived objects made
    each full collection of a server process ~110 ms, run every few seconds under write load."""
    examples = [orjson.loads(p.read_bytes()) for p in (resources.files("ror") / "data" / "examples").iterdir()
                if p.name.endswith(".json")]
    try:
        with service.engine.connect() as conn:
            service.validator.validate_many(examples, conn)
    except SQLAlchemyError as e:  # the database is not reachable or not upgraded yet: loaded by the first writes
        log.warning("validator not warmed up: %s", e)
    gc.collect()  # nothing collectable is frozen
    gc.freeze()
