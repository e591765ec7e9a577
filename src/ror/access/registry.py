"""The application registry: who may call the directory, how it authenticates, what it may do.

Profile 0 applications (open data) authenticate with a client secret, stored hashed and shown once;
profiles 1–5 authenticate with their registered client certificates (mutual TLS), several at a time
during a rotation. Every change bumps ``rev`` and takes effect on the next request of every worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from ror.access.certs import CertInfo, normalize_thumbprint
from ror.access.db import reading, writing
from ror.access.hashing import hash_secret, new_secret, verify_secret
from ror.access.principal import Principal
from ror.access.schema import access_app, access_app_cert, access_app_write, access_token
from ror.errors import BusinessRule, Conflict, InvalidRequest, NotFound
from ror.fhirdates import now_stamp
from ror.profiles.identifiers import check_finess, check_id_nat_struct

USER_PROFILE_SYSTEM = "1.2.250.1.213.1.6.1.66"  # Ror-Profil-Utilisateur-System (ANS consumer doc)
ROLE_SYSTEM = "1.2.250.1.213.1.1.4.6"  # Ror-Role-Metier-System
STATUSES = ("active", "suspended", "revoked")

_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
_CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


@dataclass(frozen=True, slots=True)
class Certificate:
    thumbprint: str
    subject: str
    not_after: str | None
    added_at: str


@dataclass(frozen=True, slots=True)
class Application:
    app_id: str
    name: str
    contact: str
    profile: int
    user_profile_code: str
    user_profile_system: str
    role_code: str
    role_system: str
    status: str
    status_reason: str | None
    rev: int
    created_at: str
    updated_at: str
    has_secret: bool
    certificates: tuple[Certificate, ...]
    write_establishments: frozenset[str]

    @property
    def needs_certificate(self) -> bool:
        return self.profile != 0

    def principal(self) -> Principal:
        return Principal(self.app_id, self.name, self.profile, self.write_establishments, self.status)

    def to_json(self) -> dict:
        """The registration as the admin API and CLI show it (never the secret hash)."""
        return {
            "app_id": self.app_id, "name": self.name, "contact": self.contact, "profile": self.profile,
            "user_profile": {"code": self.user_profile_code, "system": self.user_profile_system},
            "role": {"code": self.role_code, "system": self.role_system},
            "status": self.status, "status_reason": self.status_reason, "has_secret": self.has_secret,
            "certificates": [{"thumbprint": c.thumbprint, "subject": c.subject, "not_after": c.not_after,
                              "added_at": c.added_at} for c in self.certificates],
            "write_establishments": sorted(self.write_establishments),
            "created_at": self.created_at, "updated_at": self.updated_at, "rev": self.rev,
        }


def _check_profile(profile: int) -> None:
    if not isinstance(profile, int) or isinstance(profile, bool) or not 0 <= profile <= 5:
        raise InvalidRequest(f"Access profile must be an integer from 0 to 5, not {profile!r}", expression="profile")


def _check_code(what: str, value: str, pattern: re.Pattern) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidRequest(f"Invalid {what}: {value!r}", expression=what)


def _check_text(what: str, value: str, max_len: int) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise InvalidRequest(f"{what} must be a non-empty text of at most {max_len} characters", expression=what)


def check_establishment(value: str) -> str:
    """An EG identifier: a FINESS number (9 characters) or an idNatStruct; returned stripped."""
    value = value.strip() if isinstance(value, str) else ""
    found = check_finess(value) if len(value) == 9 else check_id_nat_struct(value)
    if found and found[0] == "error":
        raise InvalidRequest(f"Write right on '{value}': {found[1]}", expression="write_establishments")
    return value


class Registry:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._cache: dict[str, Application] = {}

    # -- reading ------------------------------------------------------------------------------------
    def get(self, app_id: str) -> Application:
        with reading(self.engine) as conn:
            return self._load(conn, app_id)

    def applications(self) -> list[Application]:
        with reading(self.engine) as conn:
            ids = conn.execute(select(access_app.c.app_id).order_by(access_app.c.app_id)).scalars().all()
            return [self._load(conn, i) for i in ids]

    def current(self, app_id: str, rev: int) -> Application:
        """The registration at revision ``rev``, from the worker's cache when it is that one."""
        cached = self._cache.get(app_id)
        if cached is None or cached.rev != rev:
            cached = self._cache[app_id] = self.get(app_id)
        return cached

    def _load(self, conn, app_id: str) -> Application:
        row = conn.execute(select(access_app).where(access_app.c.app_id == app_id)).mappings().first()
        if row is None:
            raise NotFound(f"No application '{app_id}' is registered", expression="app_id")
        certs = conn.execute(select(access_app_cert).where(access_app_cert.c.app_id == app_id)
                             .order_by(access_app_cert.c.added_at)).mappings().all()
        writes = conn.execute(select(access_app_write.c.establishment)
                              .where(access_app_write.c.app_id == app_id)).scalars().all()
        return Application(
            row["app_id"], row["name"], row["contact"], row["profile"], row["user_profile_code"],
            row["user_profile_system"], row["role_code"], row["role_system"], row["status"], row["status_reason"],
            row["rev"], row["created_at"], row["updated_at"], row["secret_hash"] is not None,
            tuple(Certificate(c["thumbprint"], c["subject"], c["not_after"], c["added_at"]) for c in certs),
            frozenset(writes))

    def authenticate_secret(self, app_id: str, secret: str) -> Application | None:
        """The profile-0 application with this id and secret, or None (no hint which part was wrong)."""
        with reading(self.engine) as conn:
            stored = conn.execute(select(access_app.c.secret_hash).where(access_app.c.app_id == app_id)).scalar()
        if stored is None or not verify_secret(secret, stored):
            return None
        return self.get(app_id)

    # -- writing ------------------------------------------------------------------------------------
    def register(self, *, app_id: str, name: str, contact: str, profile: int, user_profile_code: str,
                 role_code: str, user_profile_system: str = USER_PROFILE_SYSTEM, role_system: str = ROLE_SYSTEM,
                 certificates: Iterable[CertInfo] = (), write_establishments: Iterable[str] = (),
                 ) -> tuple[Application, str | None]:
        """Register an application; returns it with its client secret (profile 0 only, shown once)."""
        if not isinstance(app_id, str) or not _APP_ID.match(app_id):
            raise InvalidRequest(f"Application id {app_id!r} must be 3-64 characters among letters, digits, "
                                 "'.', '_' and '-'", expression="app_id")
        _check_text("name", name, 200)
        _check_text("contact", contact, 320)
        _check_profile(profile)
        _check_code("user_profile_code", user_profile_code, _CODE)
        _check_code("role_code", role_code, _CODE)
        _check_code("user_profile_system", user_profile_system, _OID)
        _check_code("role_system", role_system, _OID)
        certificates = list(certificates)
        if profile != 0 and not certificates:
            raise BusinessRule(f"Profile {profile} authenticates by mutual TLS: register at least one client "
                               "certificate", expression="certificates")
        writes = {check_establishment(e) for e in write_establishments}
        secret = new_secret() if profile == 0 else None
        now = now_stamp()
        with writing(self.engine) as conn:
            if conn.execute(select(access_app.c.app_id).where(access_app.c.app_id == app_id)).first():
                raise Conflict(f"Application '{app_id}' is already registered", expression="app_id")
            conn.execute(insert(access_app).values(
                app_id=app_id, name=name.strip(), contact=contact.strip(), profile=profile,
                user_profile_code=user_profile_code, user_profile_system=user_profile_system, role_code=role_code,
                role_system=role_system, secret_hash=hash_secret(secret) if secret else None, status="active",
                status_reason=None, rev=1, created_at=now, updated_at=now))
            for cert in certificates:
                self._insert_cert(conn, app_id, cert, now)
            if writes:
                conn.execute(insert(access_app_write), [{"app_id": app_id, "establishment": e} for e in writes])
            return self._load(conn, app_id), secret

    def update(self, app_id: str, *, name: str | None = None, contact: str | None = None,
               profile: int | None = None, user_profile_code: str | None = None, role_code: str | None = None,
               user_profile_system: str | None = None, role_system: str | None = None,
               write_establishments: Iterable[str] | None = None, add_writes: Iterable[str] = (),
               remove_writes: Iterable[str] = ()) -> tuple[Application, str | None]:
        """Change a registration; returns it with a new client secret when it has just become profile 0."""
        values: dict = {}
        for what, value, max_len in (("name", name, 200), ("contact", contact, 320)):
            if value is not None:
                _check_text(what, value, max_len)
                values[what] = value.strip()
        for what, value, pattern in (("user_profile_code", user_profile_code, _CODE), ("role_code", role_code, _CODE),
                                     ("user_profile_system", user_profile_system, _OID),
                                     ("role_system", role_system, _OID)):
            if value is not None:
                _check_code(what, value, pattern)
                values[what] = value
        secret = None
        with writing(self.engine) as conn:
            app = self._load(conn, app_id)
            if profile is not None and profile != app.profile:
                _check_profile(profile)
                if profile != 0 and not app.certificates:
                    raise BusinessRule(f"Profile {profile} authenticates by mutual TLS: add a client certificate "
                                       "first", expression="profile")
                values["profile"] = profile
                if profile == 0:
                    secret = new_secret()
                    values["secret_hash"] = hash_secret(secret)
                else:  # certificate-bound from now on: the secret must not open a door any more
                    values["secret_hash"] = None
            current = set(app.write_establishments)
            target = current if write_establishments is None else {check_establishment(e) for e in
                                                                   write_establishments}
            target = (target | {check_establishment(e) for e in add_writes}) - {e.strip() for e in remove_writes}
            if target != current:
                conn.execute(delete(access_app_write).where(access_app_write.c.app_id == app_id))
                if target:
                    conn.execute(insert(access_app_write), [{"app_id": app_id, "establishment": e} for e in target])
            self._touch(conn, app_id, values)
            return self._load(conn, app_id), secret

    def set_status(self, app_id: str, status: str, reason: str | None = None) -> Application:
        """Activate, suspend or revoke. Suspending or revoking also revokes every outstanding token;
        revocation is final."""
        if status not in STATUSES:
            raise InvalidRequest(f"Status must be one of {', '.join(STATUSES)}, not {status!r}", expression="status")
        if reason is not None and len(reason) > 500:
            raise InvalidRequest("The reason must be at most 500 characters", expression="reason")
        now = now_stamp()
        with writing(self.engine) as conn:
            app = self._load(conn, app_id)
            if app.status == "revoked" and status != "revoked":
                raise BusinessRule(f"Application '{app_id}' is revoked, which is final: register a new one",
                                   expression="status")
            if status != "active":
                conn.execute(update(access_token).where(access_token.c.app_id == app_id,
                                                        access_token.c.revoked_at.is_(None),
                                                        access_token.c.expires_at > now).values(revoked_at=now))
            self._touch(conn, app_id, {"status": status, "status_reason": reason})
            return self._load(conn, app_id)

    def rotate_secret(self, app_id: str) -> str:
        """A new client secret (the old one stops working at once); profile 0 only."""
        secret = new_secret()
        with writing(self.engine) as conn:
            app = self._load(conn, app_id)
            if app.profile != 0:
                raise BusinessRule(f"Application '{app_id}' has profile {app.profile}: it authenticates with its "
                                   "client certificate, not a secret", expression="profile")
            self._touch(conn, app_id, {"secret_hash": hash_secret(secret)})
        return secret

    def add_certificate(self, app_id: str, cert: CertInfo) -> Application:
        with writing(self.engine) as conn:
            self._load(conn, app_id)
            self._insert_cert(conn, app_id, cert, now_stamp())
            self._touch(conn, app_id, {})
            return self._load(conn, app_id)

    def remove_certificate(self, app_id: str, thumbprint: str) -> Application:
        """Remove a certificate; tokens bound to it are revoked. The last one of a profile 1–5
        application cannot go (add its successor first)."""
        thumbprint = normalize_thumbprint(thumbprint)
        with writing(self.engine) as conn:
            app = self._load(conn, app_id)
            if thumbprint not in {c.thumbprint for c in app.certificates}:
                raise NotFound(f"Application '{app_id}' has no certificate {thumbprint}", expression="thumbprint")
            if app.needs_certificate and len(app.certificates) == 1:
                raise BusinessRule(f"This is the last certificate of profile-{app.profile} application '{app_id}': "
                                   "add the new certificate before removing the old one", expression="thumbprint")
            conn.execute(delete(access_app_cert).where(access_app_cert.c.thumbprint == thumbprint))
            conn.execute(update(access_token).where(access_token.c.thumbprint == thumbprint,
                                                    access_token.c.revoked_at.is_(None)).values(revoked_at=now_stamp()))
            self._touch(conn, app_id, {})
            return self._load(conn, app_id)

    @staticmethod
    def _insert_cert(conn, app_id: str, cert: CertInfo, now: str) -> None:
        owner = conn.execute(select(access_app_cert.c.app_id)
                             .where(access_app_cert.c.thumbprint == cert.thumbprint)).scalar()
        if owner is not None:
            raise Conflict(f"Certificate {cert.thumbprint} is already registered to application '{owner}'",
                           expression="certificates")
        _check_text("subject", cert.subject, 500)
        conn.execute(insert(access_app_cert).values(thumbprint=cert.thumbprint, app_id=app_id, subject=cert.subject,
                                                    not_after=cert.not_after or None, added_at=now))

    @staticmethod
    def _touch(conn, app_id: str, values: dict) -> None:
        conn.execute(update(access_app).where(access_app.c.app_id == app_id)
                     .values(**values, rev=access_app.c.rev + 1, updated_at=now_stamp()))
