"""``ror apps …``: the application registry, tokens, signing keys and audit trail on the command line.

Changes are written to the database and take effect on the next request of every running server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ror.errors import InvalidRequest, RorError
from ror.settings import Settings

apps_app = typer.Typer(help="Trust space: registered applications, their certificates, tokens and the audit trail.",
                       no_args_is_help=True)
err = Console(stderr=True)
out = Console(highlight=False)


def _trust():
    from ror.access.trust import TrustSpace
    from ror.store.engine import make_engine
    from ror.store.migrate import upgrade
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return TrustSpace(engine, settings)


def _run(fn: Callable):
    """Run ``fn(trust)``, turning expected errors into one red line and exit code 1."""
    try:
        return fn(_trust())
    except RorError as e:
        err.print(f"[red]error:[/red] {escape(e.message)}", soft_wrap=True)
        raise typer.Exit(1) from None


def _print_json(data) -> None:
    out.print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode(), soft_wrap=True)


def _show(app, secret: str | None = None) -> None:
    _print_json(app.to_json())
    if secret:
        err.print("[bold]client secret (shown once, store it now):[/bold]")
        out.print(secret)


def _certificates(pem_files: list[Path], thumbprint: str | None, subject: str | None):
    from ror.access.certs import CertInfo, normalize_thumbprint, parse_pem
    from ror.errors import InputFileError
    certs = []
    for path in pem_files:
        try:
            certs.append(parse_pem(path.read_bytes()))
        except OSError as e:
            raise InputFileError(f"{path}: {e.strerror}") from None
    if thumbprint or subject:
        if not (thumbprint and subject):
            raise InvalidRequest("--thumbprint and --subject go together")
        certs.append(CertInfo(normalize_thumbprint(thumbprint), subject, ""))
    return certs


@apps_app.command("register")
def register(app_id: str = typer.Argument(..., help="Application id, also its OAuth2 client_id."),
             name: str = typer.Option(..., help="Application name."),
             contact: str = typer.Option(..., help="Technical contact (e-mail)."),
             profile: int = typer.Option(..., min=0, max=5, help="Access profile 0-5."),
             user_profile_code: str = typer.Option(..., help="Ror-Profil-Utilisateur-Code it must send (e.g. CU22)."),
             role_code: str = typer.Option(..., help="Ror-Role-Metier-Code it must send (e.g. AUTOMATE)."),
             cert: list[Path] = typer.Option([], help="Client certificate (PEM file); repeatable."),
             thumbprint: str = typer.Option(None, help="SHA-256 thumbprint of a certificate not at hand."),
             subject: str = typer.Option(None, help="Subject DN going with --thumbprint."),
             write: list[str] = typer.Option([], help="EG (FINESS or idNatStruct) it may modify; repeatable.")):
    """Register an application (profile 0: prints its client secret once)."""

    def go(trust):
        app, secret = trust.registry.register(
            app_id=app_id, name=name, contact=contact, profile=profile, user_profile_code=user_profile_code,
            role_code=role_code, certificates=_certificates(cert, thumbprint, subject), write_establishments=write)
        _show(app, secret)

    _run(go)


@apps_app.command("list")
def list_apps(as_json: bool = typer.Option(False, "--json", help="JSON instead of a table.")):
    """List the registered applications."""

    def go(trust):
        apps = trust.registry.applications()
        if as_json:
            _print_json([a.to_json() for a in apps])
            return
        table = Table("id", "name", "profile", "status", "certificates", "writes", "contact")
        for a in apps:
            table.add_row(a.app_id, a.name, str(a.profile), a.status, str(len(a.certificates)),
                          str(len(a.write_establishments)), a.contact)
        out.print(table)

    _run(go)


@apps_app.command("show")
def show(app_id: str):
    """Show one application's registration."""
    _run(lambda trust: _show(trust.registry.get(app_id)))


@apps_app.command("update")
def update(app_id: str,
           name: str = typer.Option(None), contact: str = typer.Option(None),
           profile: int = typer.Option(None, min=0, max=5, help="New access profile (to 0: prints a new secret)."),
           user_profile_code: str = typer.Option(None), role_code: str = typer.Option(None),
           add_write: list[str] = typer.Option([], help="Grant writes on this EG; repeatable."),
           remove_write: list[str] = typer.Option([], help="Withdraw writes on this EG; repeatable.")):
    """Change a registration."""

    def go(trust):
        app, secret = trust.registry.update(app_id, name=name, contact=contact, profile=profile,
                                            user_profile_code=user_profile_code, role_code=role_code,
                                            add_writes=add_write, remove_writes=remove_write)
        _show(app, secret)

    _run(go)


def _set_status(app_id: str, status: str, reason: str | None) -> None:
    def go(trust):
        app = trust.registry.set_status(app_id, status, reason)
        err.print(f"application {app.app_id} is {app.status}")

    _run(go)


@apps_app.command("suspend")
def suspend(app_id: str, reason: str = typer.Option(None, help="Why (kept with the registration).")):
    """Suspend an application: its tokens stop working at once."""
    _set_status(app_id, "suspended", reason)


@apps_app.command("activate")
def activate(app_id: str):
    """Reactivate a suspended application (it requests new tokens)."""
    _set_status(app_id, "active", None)


@apps_app.command("revoke")
def revoke(app_id: str, reason: str = typer.Option(None, help="Why (kept with the registration).")):
    """Revoke an application for good."""
    _set_status(app_id, "revoked", reason)


@apps_app.command("secret")
def secret(app_id: str):
    """Give a profile-0 application a new client secret (the old one stops working)."""

    def go(trust):
        value = trust.registry.rotate_secret(app_id)
        err.print("[bold]new client secret (shown once, store it now):[/bold]")
        out.print(value)

    _run(go)


@apps_app.command("cert-add")
def cert_add(app_id: str, pem: Path = typer.Argument(None, help="Certificate PEM file."),
             thumbprint: str = typer.Option(None), subject: str = typer.Option(None)):
    """Add a client certificate (rotation: add the new one, then remove the old one)."""

    def go(trust):
        certs = _certificates([pem] if pem else [], thumbprint, subject)
        if len(certs) != 1:
            raise InvalidRequest("give one certificate: a PEM file, or --thumbprint with --subject")
        _show(trust.registry.add_certificate(app_id, certs[0]))

    _run(go)


@apps_app.command("cert-remove")
def cert_remove(app_id: str, thumbprint: str):
    """Remove a client certificate; tokens bound to it are revoked."""
    _run(lambda trust: _show(trust.registry.remove_certificate(app_id, thumbprint)))


@apps_app.command("tokens")
def tokens(app_id: str = typer.Option(None, "--app", help="Only this application's.")):
    """Tokens not yet expired (ids and dates; the token text is never stored)."""

    def go(trust):
        table = Table("jti", "application", "issued", "expires", "revoked", "certificate")
        for t in trust.tokens.tokens(app_id):
            table.add_row(t["jti"], t["app_id"], t["issued_at"], t["expires_at"], t["revoked_at"] or "",
                          (t["thumbprint"] or "")[:16])
        out.print(table)

    _run(go)


@apps_app.command("token-revoke")
def token_revoke(jti: str):
    """Revoke one token by its id (jti)."""

    def go(trust):
        trust.tokens.revoke(jti)
        err.print(f"token {jti} revoked")

    _run(go)


@apps_app.command("keys")
def keys():
    """The token signing keys in use."""

    def go(trust):
        table = Table("kid", "created", "retired")
        for k in trust.tokens.signing_keys():
            table.add_row(k["kid"], k["created_at"], k["retired_at"] or "")
        out.print(table)

    _run(go)


@apps_app.command("keys-rotate")
def keys_rotate():
    """Sign new tokens with a new key now (the old key verifies until its tokens expire)."""

    def go(trust):
        err.print(f"new signing key {trust.tokens.rotate()}")

    _run(go)


@apps_app.command("audit")
def audit(app_id: str = typer.Option(None, "--app", help="Only this application's requests."),
          since: str = typer.Option(None, help="From this UTC time or prefix (2026-11-25, 2026-11-25T10:00)."),
          until: str = typer.Option(None, help="Before this UTC time or prefix."),
          status: int = typer.Option(None, help="Only this HTTP status."),
          operation: str = typer.Option(None, help="read, search-type, patch, token, admin…"),
          limit: int = typer.Option(100, help="Most recent N records."),
          as_json: bool = typer.Option(False, "--json", help="JSON instead of a table.")):
    """The audit trail, most recent first."""

    def go(trust):
        rows = trust.audit.query(app_id=app_id, since=since, until=until, status=status, operation=operation,
                                 limit=limit)
        if as_json:
            _print_json(rows)
            return
        table = Table("time (UTC)", "application", "profile", "operation", "type", "status", "outcome", "returned",
                      "ms", "client")
        for r in rows:
            returned = ", ".join(f"{k} {v}" for k, v in r["returned"].items())
            table.add_row(r["at"], r["app_id"] or "-", "" if r["profile"] is None else str(r["profile"]),
                          r["operation"], r["resource_type"] or "", str(r["status"]), r["outcome"], returned,
                          f"{r['duration_ms']:.1f}", r["client_ip"] or "")
        out.print(table)

    _run(go)
