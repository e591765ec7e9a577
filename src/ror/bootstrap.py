"""Composition root: builds the engine, the services and the web app from settings."""

from __future__ import annotations

from ror.settings import Settings, get_settings
from ror.store.engine import make_engine


def build_app(settings: Settings | None = None):
    """ASGI app for uvicorn (``ror.bootstrap:app_factory`` with ``--factory``)."""
    from ror.api.app import create_app
    from ror.fhir.service import FhirService
    settings = settings or get_settings()
    engine = make_engine(settings.database_url, sqlite_cache_mb=settings.api_sqlite_cache_mb)
    return create_app(FhirService(engine, settings), settings)


def app_factory():
    return build_app()
