#!/usr/bin/env bash
# Installs ROR national, loads the bundled data into the embedded SQLite store (var/ror.db) and
# serves the FHIR API on http://127.0.0.1:8000/fhir (ROR_* environment variables override settings).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
.venv/bin/ror load --examples
exec .venv/bin/ror serve --host "${ROR_HOST:-127.0.0.1}" --port "${ROR_PORT:-8000}"
