"""Fixtures of the trust-space tests: the secured app, a test PKI, uvicorn and a real nginx in front."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from ror.access.trust import TrustSpace
from ror.api.admin import admin_routes
from ror.api.app import create_app
from ror.api.security import SecureApp, secure
from ror.api.server import OPTIONS as SERVER_OPTIONS
from tests.access.pki import TestPki

DEPLOY = Path(__file__).parents[2] / "deploy" / "nginx"
ROR_HEADERS = {"Ror-Profil-Utilisateur-Code": "CU22", "Ror-Profil-Utilisateur-System": "1.2.250.1.213.1.6.1.66",
               "Ror-Role-Metier-Code": "AUTOMATE", "Ror-Role-Metier-System": "1.2.250.1.213.1.1.4.6"}


def secured_app(service) -> SecureApp:
    """The app as production serves it: the FHIR API and the /admin routes behind ``secure()``."""
    app = create_app(service, service.settings)
    if isinstance(app, SecureApp):  # create_app wires the trust space itself
        return app
    trust = TrustSpace(service.engine, service.settings)
    return secure(Starlette(routes=[*admin_routes(trust), Mount("/", app=app)]), trust)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Uvicorn:
    """An ASGI app on uvicorn at 127.0.0.1, in a thread, with its lifespan (the audit flush on exit)."""

    def __init__(self, app):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    **SERVER_OPTIONS))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def render_template(values: dict[str, str]) -> str:
    """deploy/nginx/ror.conf.template with its ${ROR_*} placeholders filled (what envsubst does)."""
    text = (DEPLOY / "ror.conf.template").read_text()
    missing = sorted(set(re.findall(r"\$\{(ROR_[A-Z_]+)\}", text)) - set(values))
    if missing:
        raise KeyError(f"template values missing: {missing}")
    return re.sub(r"\$\{(ROR_[A-Z_]+)\}", lambda m: values[m.group(1)], text)


class Nginx:
    """The Debian nginx, started as a child process on a free port with a temporary prefix."""

    def __init__(self, binary: str, folder: Path, pki: TestPki, upstream_port: int, body_max: str):
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        (folder / "snippets").mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / "snippets" / "ror_proxy_headers.conf", folder / "snippets")
        site = render_template({
            "ROR_LISTEN": f"127.0.0.1:{self.port}", "ROR_SERVER_NAME": "127.0.0.1",
            "ROR_TLS_CERT": str(pki.server_chain), "ROR_TLS_KEY": str(pki.server.key_path),
            "ROR_CLIENT_CA": str(pki.client_ca), "ROR_CLIENT_CRL": str(pki.crl), "ROR_BODY_MAX": body_max,
            "ROR_UPSTREAM": f"127.0.0.1:{upstream_port}"})
        (folder / "ror.conf").write_text(site)
        user = "user root root;\n" if os.geteuid() == 0 else ""  # the temp prefix is not readable by 'nobody'
        temp = "".join(f"    {kind}_temp_path {folder / kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                               "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {folder / 'nginx.pid'};\n"
            f"error_log {folder / 'error.log'} info;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    access_log {folder / 'access.log'};\n{temp}    include ror.conf;\n}}\n")
        self.process: subprocess.Popen | None = None

    def __enter__(self):
        self.process = subprocess.Popen([self.binary, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"),
                                         "-e", str(self.folder / "error.log")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode(errors="replace")
                log = (self.folder / "error.log").read_text() if (self.folder / "error.log").exists() else ""
                raise RuntimeError(f"nginx did not start: {out}\n{log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen within 10 s") from None
                time.sleep(0.05)

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def tls_client(url: str, pki: TestPki, cert: str | None = None, **kw) -> httpx.Client:
    """An HTTPS client trusting the test root, presenting the client certificate ``cert`` (a pki attribute
    or client name) when given."""
    ctx = ssl.create_default_context(cafile=str(pki.root.cert_path))
    if cert:
        issued = pki.clients.get(cert) or getattr(pki, cert)
        ctx.load_cert_chain(str(issued.cert_path), str(issued.key_path))
    return httpx.Client(base_url=url, verify=ctx, timeout=10, **kw)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if path is None:
        pytest.skip("nginx is not installed (apt-get install nginx): the end-to-end mTLS tests need it")
    return path
