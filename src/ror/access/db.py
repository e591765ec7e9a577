"""Transactions of the trust-space tables (writers take the SQLite write lock up front)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from ror.store.engine import write_transaction


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction, queued with the store's other writers (on SQLite, the audit writer would
    otherwise wait in SQLite's busy handler, and the API's writers behind it)."""
    with write_transaction(engine) as conn:
        yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


def plain(row) -> dict:
    """A result row as a dict with ``str`` keys (SQLAlchemy's are a ``str`` subclass orjson refuses)."""
    return {str(k): v for k, v in row.items()}
