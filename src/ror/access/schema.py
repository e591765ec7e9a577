"""Tables of the trust space, on the store's ``metadata`` (created by migration 0004).

- ``access_app``: one row per registered application; ``rev`` is bumped by every change so that each
  worker reloads its cached copy on the next request (changes take effect immediately).
- ``access_app_cert``: the client certificates of an application (several during a rotation).
- ``access_app_write``: the establishments (EG) an application may modify.
- ``access_token``: every token issued (no token text, only its id): revocation and the proof that a
  token was issued here.
- ``access_signing_key``: the token signing keys; retired keys verify until their tokens expire.
- ``access_audit``: one row per request.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from ror.store.schema import Key, PkType, Stamp, metadata

Hex = String(64).with_variant(String(64, collation="C"), "postgresql")

access_app = Table(
    "access_app",
    metadata,
    Column("app_id", Key, primary_key=True),  # the OAuth2 client_id
    Column("name", String(200), nullable=False),
    Column("contact", String(320), nullable=False),
    Column("profile", Integer, nullable=False),  # access profile 0-5
    Column("user_profile_code", String(64), nullable=False),  # Ror-Profil-Utilisateur-Code it must send
    Column("user_profile_system", String(64), nullable=False),
    Column("role_code", String(64), nullable=False),  # Ror-Role-Metier-Code it must send
    Column("role_system", String(64), nullable=False),
    Column("secret_hash", String(200)),  # profile 0 only: scrypt hash of the client secret
    Column("status", String(16), nullable=False),  # active | suspended | revoked
    Column("status_reason", String(500)),
    Column("rev", Integer, nullable=False),
    Column("created_at", Stamp, nullable=False),
    Column("updated_at", Stamp, nullable=False),
)

access_app_cert = Table(
    "access_app_cert",
    metadata,
    Column("thumbprint", Hex, primary_key=True),  # SHA-256 of the DER certificate, lowercase hex
    Column("app_id", Key, nullable=False),
    Column("subject", String(500), nullable=False),
    Column("not_after", Stamp),  # known when the certificate itself was registered
    Column("added_at", Stamp, nullable=False),
    Index("ix_access_app_cert_app", "app_id"),
)

access_app_write = Table(
    "access_app_write",
    metadata,
    Column("app_id", Key, nullable=False),
    Column("establishment", String(32), nullable=False),  # FINESS or idNatStruct of the EG
    PrimaryKeyConstraint("app_id", "establishment", name="pk_access_app_write"),
    Index("ix_access_app_write_establishment", "establishment"),
)

access_token = Table(
    "access_token",
    metadata,
    Column("jti", Key, primary_key=True),
    Column("app_id", Key, nullable=False),
    Column("thumbprint", Hex),  # certificate the token is bound to; None for profile 0
    Column("issued_at", Stamp, nullable=False),
    Column("expires_at", Stamp, nullable=False),
    Column("revoked_at", Stamp),
    Index("ix_access_token_app", "app_id", "expires_at"),
)

access_signing_key = Table(
    "access_signing_key",
    metadata,
    Column("kid", Key, primary_key=True),
    Column("private_pem", Text, nullable=False),
    Column("created_at", Stamp, nullable=False),
    Column("retired_at", Stamp),  # no longer signs; still verifies and is published until its tokens expire
)

access_audit = Table(
    "access_audit",
    metadata,
    Column("id", PkType, primary_key=True, autoincrement=True),
    Column("at", Stamp, nullable=False),
    Column("app_id", Key),  # None: the caller could not be authenticated
    Column("profile", Integer),
    Column("client_ip", String(45)),
    Column("cert_thumbprint", Hex),
    Column("method", String(10), nullable=False),
    Column("path", String(500), nullable=False),
    Column("query", Text),  # credentials scrubbed
    Column("operation", String(32), nullable=False),
    Column("resource_type", String(40)),
    Column("user_profile_code", String(64)),
    Column("role_code", String(64)),
    Column("status", Integer, nullable=False),
    Column("outcome", String(64), nullable=False),  # "ok", or the error code
    Column("returned", Text),  # JSON object: resource type -> count
    Column("duration_ms", Float, nullable=False),
    Index("ix_access_audit_at", "at"),
    Index("ix_access_audit_app_at", "app_id", "at"),
)

TABLES = [access_app, access_app_cert, access_app_write, access_token, access_signing_key, access_audit]
