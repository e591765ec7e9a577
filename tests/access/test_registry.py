"""The application registry on SQLite and PostgreSQL: validation, secrets, certificates, status, writes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ror.access.certs import CertInfo
from ror.access.registry import Registry
from ror.access.schema import access_app, access_token
from ror.access.tokens import TokenService
from ror.errors import BusinessRule, Conflict, InvalidRequest, NotFound
from ror.settings import Settings
from ror.store.engine import make_engine
from ror.store.migrate import upgrade

CERT_A = CertInfo("a" * 64, "CN=alpha,O=Test", "2030-01-01T00:00:00.000Z")
CERT_B = CertInfo("b" * 64, "CN=beta,O=Test", "")
FINESS = "750000010"
COMMON = {"contact": "ops@example.test", "user_profile_code": "CU22", "role_code": "AUTOMATE"}


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def registry(engine) -> Registry:
    return Registry(engine)


def test_register_profile0_gets_a_secret_stored_hashed(registry, engine):
    app, secret = registry.register(app_id="opendata", name="Open data", profile=0, **COMMON)
    assert secret and len(secret) >= 40 and app.has_secret and app.status == "active"
    with engine.connect() as conn:
        stored = conn.execute(select(access_app.c.secret_hash)).scalar_one()
    assert secret not in stored and stored.startswith("scrypt$")
    assert registry.authenticate_secret("opendata", secret).app_id == "opendata"
    assert registry.authenticate_secret("opendata", secret + "x") is None
    assert registry.authenticate_secret("nobody", secret) is None
    assert "secret" not in str(app.to_json()).replace("has_secret", "")


def test_register_mtls_profiles_need_a_certificate(registry):
    with pytest.raises(BusinessRule, match="at least one client certificate"):
        registry.register(app_id="alpha", name="Alpha", profile=2, **COMMON)
    app, secret = registry.register(app_id="alpha", name="Alpha", profile=2, certificates=[CERT_A],
                                    write_establishments=[FINESS, "1" + FINESS], **COMMON)
    assert secret is None and not app.has_secret
    assert [c.thumbprint for c in app.certificates] == [CERT_A.thumbprint]
    assert app.write_establishments == {FINESS, "1" + FINESS}
    assert registry.authenticate_secret("alpha", "") is None
    principal = app.principal()
    assert (principal.app_id, principal.profile, principal.status, principal.write_all) == ("alpha", 2, "active", False)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("app_id", "a b", "Application id"),
    ("profile", 6, "0 to 5"),
    ("profile", True, "0 to 5"),
    ("user_profile_code", "CU 22", "user_profile_code"),
    ("user_profile_system", "not-an-oid", "user_profile_system"),
    ("name", " ", "name"),
    ("write_establishments", ["750000011"], "check key"),
    ("write_establishments", ["9ABC"], "idNatStruct"),
])
def test_register_refuses_bad_values(registry, field, value, message):
    values = {"app_id": "app1", "name": "App", "profile": 0, **COMMON, field: value}
    with pytest.raises(InvalidRequest, match=message):
        registry.register(**values)
    with pytest.raises(NotFound):
        registry.get("app1")


def test_duplicates_are_conflicts(registry):
    registry.register(app_id="alpha", name="Alpha", profile=1, certificates=[CERT_A], **COMMON)
    with pytest.raises(Conflict, match="already registered"):
        registry.register(app_id="alpha", name="Again", profile=0, **COMMON)
    with pytest.raises(Conflict, match="already registered to application 'alpha'"):
        registry.register(app_id="beta", name="Beta", profile=1, certificates=[CERT_A], **COMMON)


def test_certificate_rotation(registry):
    registry.register(app_id="alpha", name="Alpha", profile=1, certificates=[CERT_A], **COMMON)
    with pytest.raises(BusinessRule, match="add the new certificate before removing"):
        registry.remove_certificate("alpha", CERT_A.thumbprint)
    app = registry.add_certificate("alpha", CERT_B)
    assert {c.thumbprint for c in app.certificates} == {CERT_A.thumbprint, CERT_B.thumbprint}
    app = registry.remove_certificate("alpha", ":".join(CERT_A.thumbprint[i:i + 2].upper() for i in range(0, 64, 2)))
    assert [c.thumbprint for c in app.certificates] == [CERT_B.thumbprint]
    with pytest.raises(NotFound):
        registry.remove_certificate("alpha", CERT_A.thumbprint)
    with pytest.raises(InvalidRequest, match="SHA-256"):
        registry.remove_certificate("alpha", "abc")


def test_status_changes_revoke_tokens_and_revocation_is_final(registry, engine):
    app, _ = registry.register(app_id="alpha", name="Alpha", profile=1, certificates=[CERT_A], **COMMON)
    tokens = TokenService(engine, Settings(database_url=""))
    tokens.issue(app, CERT_A.thumbprint)
    app = registry.set_status("alpha", "suspended", "unpaid")
    assert (app.status, app.status_reason) == ("suspended", "unpaid")
    with engine.connect() as conn:
        assert conn.execute(select(access_token.c.revoked_at)).scalar_one() is not None
    assert registry.set_status("alpha", "active").status == "active"
    registry.set_status("alpha", "revoked")
    with pytest.raises(BusinessRule, match="final"):
        registry.set_status("alpha", "active")
    with pytest.raises(InvalidRequest):
        registry.set_status("alpha", "paused")


def test_update_profile_secret_and_writes(registry):
    registry.register(app_id="app1", name="App", profile=0, **COMMON)
    with pytest.raises(BusinessRule, match="add a client certificate first"):
        registry.update("app1", profile=2)
    registry.add_certificate("app1", CERT_A)
    app, secret = registry.update("app1", profile=2, name="Renamed", add_writes=[FINESS])
    assert (app.profile, app.name, app.has_secret, secret) == (2, "Renamed", False, None)
    assert app.write_establishments == {FINESS}
    app, secret = registry.update("app1", profile=0, remove_writes=[FINESS])
    assert app.profile == 0 and secret and app.has_secret and not app.write_establishments
    assert registry.authenticate_secret("app1", secret)
    new = registry.rotate_secret("app1")
    assert registry.authenticate_secret("app1", new) and not registry.authenticate_secret("app1", secret)


def test_every_change_bumps_the_revision_seen_by_workers(registry):
    app, _ = registry.register(app_id="app1", name="App", profile=0, **COMMON)
    cached = registry.current("app1", app.rev)
    assert registry.current("app1", app.rev) is cached  # no reload while nothing changed
    changed, _ = registry.update("app1", add_writes=[FINESS])
    assert changed.rev > app.rev
    assert registry.current("app1", changed.rev).write_establishments == {FINESS}


def test_principal_may_write_both_spellings_of_an_establishment():
    from ror.access.principal import LOCAL, Principal
    p = Principal("a", "A", 2, frozenset({FINESS}), "active")
    assert p.may_write(FINESS) and p.may_write("1" + FINESS) and p.may_write("x", FINESS)
    assert not p.may_write("750000028") and not p.may_write()
    p = Principal("a", "A", 2, frozenset({"1" + FINESS}), "active")
    assert p.may_write(FINESS)
    assert LOCAL.may_write("anything") and LOCAL.write_all and LOCAL.profile == 1
