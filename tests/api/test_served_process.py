"""A served process (``ror.bootstrap:app_factory``, what uvicorn runs) loads what the validator needs before it
answers, then takes every object alive out of the garbage collector's collections; an app built by tests is not."""

from __future__ import annotations

import gc

from ror import bootstrap
from ror.settings import Settings
from ror.store.engine import make_engine
from ror.store.migrate import upgrade


def _tracked_ids() -> set[int]:
    return {id(o) for o in gc.get_objects()}  # generations 0-2: what collections visit, not the frozen


def test_a_served_process_loads_the_validator_then_freezes_what_is_alive(tmp_path):
    url = f"sqlite:///{tmp_path}/ror.db"
    upgrade(make_engine(url))
    assert gc.get_freeze_count() == 0
    bootstrap.build_app(Settings(database_url=url))
    assert gc.get_freeze_count() == 0  # tests build the app as before
    try:
        app = bootstrap.build_app(Settings(database_url=url), served=True)
        validator = app.app.api.service.validator
        views = [v for v in validator.fallback._vs.values() if v is not None]
        assert views  # the NOS tables of the IG examples (none in this database: the bundled ones)
        tracked = _tracked_ids()
        assert not any(id(v.members) in tracked for v in views)
        assert id(validator.profiles) not in tracked
    finally:
        gc.unfreeze()


def test_a_served_process_starts_on_a_database_not_upgraded_yet(tmp_path):
    try:
        bootstrap.build_app(Settings(database_url=f"sqlite:///{tmp_path}/empty.db"), served=True)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
