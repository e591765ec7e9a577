"""``ror apps …`` on a real database: every command, and errors as one line with exit code 1."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ror.cli.apps import apps_app

FINESS = "750000010"


@pytest.fixture
def ror(tmp_path):
    runner = CliRunner()
    env = {"ROR_DATABASE_URL": f"sqlite:///{tmp_path / 'ror.db'}"}

    def run(*args: str, code: int = 0):
        result = runner.invoke(apps_app, list(args), env=env)
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return run


def test_register_list_show_and_status(ror, pki):
    r = ror("register", "open", "--name", "Open data", "--contact", "x@y.test", "--profile", "0",
            "--user-profile-code", "CU22", "--role-code", "AUTOMATE")
    assert "client secret (shown once" in r.output
    ror("register", "alpha", "--name", "Alpha", "--contact", "a@y.test", "--profile", "2", "--user-profile-code",
        "CU22", "--role-code", "AUTOMATE", "--cert", str(pki.clients["alpha"].cert_path), "--write", FINESS)
    apps = json.loads(ror("list", "--json").stdout)
    assert [(a["app_id"], a["profile"], a["write_establishments"]) for a in apps] == [("alpha", 2, [FINESS]),
                                                                                      ("open", 0, [])]
    assert "Open data" in ror("list").stdout
    shown = json.loads(ror("show", "alpha").stdout)
    assert shown["certificates"][0]["thumbprint"] == pki.clients["alpha"].info.thumbprint
    assert "suspended" in ror("suspend", "alpha", "--reason", "test").output
    assert "active" in ror("activate", "alpha").output
    ror("revoke", "alpha")
    r = ror("activate", "alpha", code=1)
    assert r.output.startswith("error:") and "final" in r.output and "Traceback" not in r.output


def test_certificates_writes_secret_tokens_keys_audit(ror, pki):
    ror("register", "beta", "--name", "Beta", "--contact", "b@y.test", "--profile", "1", "--user-profile-code",
        "CU22", "--role-code", "AUTOMATE", "--thumbprint", pki.clients["beta"].info.thumbprint, "--subject", "CN=b")
    ror("cert-add", "beta", str(pki.clients["gamma"].cert_path))
    shown = json.loads(ror("cert-remove", "beta", pki.clients["beta"].info.thumbprint).stdout)
    assert [c["thumbprint"] for c in shown["certificates"]] == [pki.clients["gamma"].info.thumbprint]
    shown = json.loads(ror("update", "beta", "--add-write", FINESS, "--name", "Beta 2").stdout)
    assert shown["write_establishments"] == [FINESS] and shown["name"] == "Beta 2"
    assert "error:" in ror("secret", "beta", code=1).output  # certificate-authenticated: no secret
    r = ror("update", "beta", "--profile", "0")
    assert "client secret" in r.output
    assert "new client secret" in ror("secret", "beta").output
    assert "new signing key" in ror("keys-rotate").output
    assert "kid" in ror("keys").stdout
    ror("tokens")
    assert json.loads(ror("audit", "--json").stdout) == []
    ror("audit", "--app", "beta", "--since", "2026-01-01")


@pytest.mark.parametrize("args", [
    ("show", "ghost"),
    ("register", "xyz", "--name", "X", "--contact", "c", "--profile", "1", "--user-profile-code", "A", "--role-code",
     "B"),
    ("register", "xyz", "--name", "X", "--contact", "c", "--profile", "1", "--user-profile-code", "A", "--role-code",
     "B", "--cert", "/nonexistent.pem"),
    ("register", "xyz", "--name", "X", "--contact", "c", "--profile", "1", "--user-profile-code", "A", "--role-code",
     "B", "--thumbprint", "ab"),
    ("token-revoke", "nope"),
    ("cert-add", "ghost"),
    ("audit", "--limit", "0"),
])
def test_errors_are_one_line(ror, args):
    r = ror(*args, code=1)
    assert r.output.startswith("error:") and r.output.count("\n") == 1, r.output
