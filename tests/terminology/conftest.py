"""A database per module (SQLite and PostgreSQL) holding the NOS set shipped with ROR national."""

from __future__ import annotations

from pathlib import Path

import pytest

from ror.store.engine import WRITE, make_engine
from ror.store.migrate import upgrade
from ror.terminology.store import load_path

NOS = Path(__file__).resolve().parents[2] / "src" / "ror" / "data" / "nos"


def load(engine, path: Path):
    with engine.connect() as conn:
        conn.execution_options(**WRITE)
        with conn.begin():
            return load_path(conn, path)


@pytest.fixture(scope="module")
def nos_engine(module_db_url):
    engine = make_engine(module_db_url)
    upgrade(engine)
    load(engine, NOS)
    yield engine
    engine.dispose()
