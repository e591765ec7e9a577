"""FHIR Bulk Data ``$export`` (system level, IG §3.6): request parsing, the snapshot-consistent
runner, the NDJSON writer and the persisted jobs run in background threads (docs/export.md)."""
