"""Schema migrations (Alembic), run programmatically: no alembic.ini to find at run time."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

_MIGRATIONS = resources.files("ror.store") / "migrations"


@lru_cache(maxsize=1)
def _head() -> str:
    """The last revision, read from the migration files (importing Alembic costs ~0.3 s at every command)."""
    revisions, parents = set(), set()
    for f in (_MIGRATIONS / "versions").iterdir():
        if f.name.endswith(".py"):
            source = f.read_text(encoding="utf-8")
            revisions |= set(re.findall(r'^revision = "([^"]+)"', source, re.M))
            parents |= set(re.findall(r'^down_revision = "([^"]+)"', source, re.M))
    (head,) = revisions - parents
    return head


def _current(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no table yet: a new database
        return None


def upgrade(engine: Engine, revision: str = "head") -> None:
    if revision == "head" and _current(engine) == _head():
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
