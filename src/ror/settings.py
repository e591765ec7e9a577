"""Settings, read from ``ROR_*`` environment variables. Units are in the names."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache


@dataclass(frozen=True)
class Settings:
    # SQLite file by default (embedded); a postgresql+psycopg:// URL in production.
    database_url: str = "sqlite:///var/ror.db"
    # SQLite page cache of each pooled connection of an API process (up to 16; its one reader of reads by id
    # keeps 256 MB). Kept small so that a process stays under 2 GiB at national scale: measured there, 8 MB or
    # 256 MB per connection answer searches in the same time (the OS page cache holds the file; docs/storage.md).
    api_sqlite_cache_mb: int = 16
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
    # Validate every REST/transaction write against the ROR profiles (422 on error).
    validate_writes: bool = True
    # Validate every resource a feed import writes (docs/feeds.md); off only for emergency loads.
    validate_feeds: bool = True
    # Places whose capacities were not updated for longer are flagged stale (bed availability).
    capacity_stale_after_h: float = 24.0
    # Trust space (issue 6, docs/security.md). Off for the embedded dev server; on in tests and production.
    auth_required: bool = False
    # Peers whose X-Ror-Client-* headers (verified client certificate) are believed: the TLS proxy.
    trusted_proxy_ips: str = "127.0.0.1"  # comma-separated addresses or CIDR networks
    # SHA-256 thumbprints (hex) of the client certificates allowed on /admin; comma-separated.
    admin_cert_thumbprints: str = ""
    token_issuer: str = "urn:ror-national"
    token_ttl_s: int = 300
    token_key_max_age_s: int = 30 * 86_400  # the signing key is rotated when older than this
    rate_limit_per_s: float = 17.0  # per application, all worker processes together (national gateway: 17 calls/s)
    rate_limit_burst: int = 17
    # The buckets shared by the worker processes of a server (a 512 KiB memory-mapped file, relative paths
    # from the working directory like the default database). Servers on other databases may share it.
    rate_limit_file: str = "var/ratelimit.bin"
    # Bulk Data $export (docs/export.md): files, expiry, background jobs per worker process.
    export_dir: str = "var/export"
    export_expiry_s: int = 86_400  # jobs and their files are deleted this long after they finish
    export_max_jobs: int = 2  # exports running at once in one worker process; the others wait queued
    export_file_max_resources: int = 100_000  # a type's output is split into files of at most this many
    export_file_max_bytes: int = 256 * 1024 * 1024  # ... and about this size
    export_batch_size: int = 1000  # resources read (as of the snapshot) per query
    export_stale_after_s: int = 120  # a job whose process stopped refreshing it for longer is failed
    export_retry_after_s: int = 2  # Retry-After of a poll while the job runs

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        values: dict = {}
        for f in fields(cls):
            raw = os.environ.get("ROR_" + f.name.upper())
            if raw is None:
                continue
            if isinstance(f.default, bool):  # bool("false") is True: parse the usual spellings
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = type(f.default)(raw) if not isinstance(f.default, str) else raw
        values.update(overrides)
        return cls(**values)

@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
