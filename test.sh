#!/usr/bin/env bash
# Installs ROR national with its test tools and runs the whole test suite on SQLite and, when a
# PostgreSQL server is installed here (or ROR_TEST_POSTGRES_URL names one), on PostgreSQL too.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

if [ -z "${ROR_TEST_POSTGRES_URL:-}" ]; then
  if command -v pg_lsclusters >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -1)
    pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main" || pg_createcluster "$version" main >/dev/null
    pg_ctlcluster "$version" main start 2>/dev/null || true
    port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
    su postgres -c "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='ror'\"" | grep -q 1 \
      || su postgres -c "psql -p $port -qc \"CREATE ROLE ror LOGIN PASSWORD 'ror' CREATEDB\""
    # Tests drop their databases WITH (FORCE), which must be able to end autovacuum workers.
    su postgres -c "psql -p $port -qc 'GRANT pg_signal_backend TO ror'"
    export ROR_TEST_POSTGRES_URL="postgresql://ror:ror@127.0.0.1:$port/postgres"
    echo "PostgreSQL $version on port $port: tests run on SQLite and PostgreSQL"
  else
    echo "No PostgreSQL server here (or not root to start it): PostgreSQL tests will be skipped"
  fi
fi
exec .venv/bin/python -m pytest -n 2 -q "$@"
