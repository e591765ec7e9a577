"""Settings, read from ``ROR_*`` environment variables. Units are in the names."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache


@dataclass(frozen=True)
class Settings:
    # SQLite file by default (embedded); a postgresql+psycopg:// URL in production.
    database_url: str = "sqlite:///var/ror.db"
    # Public base of the FHIR API as clients see it (behind a proxy). Empty: taken from the request.
    public_base_url: str = ""
    page_size_default: int = 200  # RG_RECH_52 of the IG
    page_size_max: int = 1000
    # Included resources per page, beyond which the request is refused as too costly.
    include_max: int = 5000
    # How long a `next` link stays valid: index rows superseded earlier than that are pruned.
    page_cursor_ttl_s: int = 86_400
    # Time zone for dates given without one in search values (FHIR: "server local time").
    local_timezone: str = "Europe/Paris"
    bulk_batch_size: int = 2000
    request_body_max_bytes: int = 20 * 1024 * 1024
    near_radius_max_km: float = 500.0

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        values: dict = {}
        for f in fields(cls):
            raw = os.environ.get("ROR_" + f.name.upper())
            if raw is None:
                continue
            values[f.name] = type(f.default)(raw) if not isinstance(f.default, str) else raw
        values.update(overrides)
        return cls(**values)

@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
