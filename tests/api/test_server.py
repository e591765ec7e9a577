"""How the API is served (ror.api.server): ``ror serve`` itself, over a socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ror.cli.main import app

ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``ror serve`` on the bundled examples, as the README runs it."""
    folder = tmp_path_factory.mktemp("served")
    env = {**os.environ, "ROR_DATABASE_URL": f"sqlite:///{folder}/ror.db", "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-m", "ror.cli.main", "load", "--examples"], env=env, check=True,
                   capture_output=True)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ror.cli.main", "serve", "--port", str(port), "--log-level",
                             "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/fhir/metadata", timeout=2)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ror serve did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(15)


def raw_exchange(port: int, request: bytes, responses: int) -> list[tuple[bytes, bytes]]:
    """Send ``request`` (several pipelined) on one connection; the ``responses`` answers, as (head, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data, out = b"", []
        while len(out) < responses:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            data += chunk
            while True:
                head, sep, rest = data.partition(b"\r\n\r\n")
                if not sep:
                    break
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                if len(rest) < length:
                    break
                out.append((head, rest[:length]))
                data = rest[length:]
        return out


def test_ror_serve_answers_pipelined_reads_in_order_without_a_server_header(served):
    read = b"GET /fhir/HealthcareService/1234564 HTTP/1.1\r\nHost: t\r\n\r\n"
    missing = b"GET /fhir/HealthcareService/nope HTTP/1.1\r\nHost: t\r\n\r\n"
    answers = raw_exchange(served, read + missing + read, responses=3)
    assert [head.split(b" ")[1] for head, _ in answers] == [b"200", b"404", b"200"]
    assert not any(b"\r\nserver:" in head.lower() for head, _ in answers)
    assert [b'"id":"1234564"' in body for _, body in answers] == [True, False, True]


def test_ror_serve_writes_links_with_the_scheme_the_trusted_proxy_forwards(served):
    search = "/fhir/HealthcareService?_count=1"
    links = httpx.get(f"http://127.0.0.1:{served}{search}", headers={"X-Forwarded-Proto": "https"}).json()["link"]
    assert links[0]["url"] == f"https://127.0.0.1:{served}{search}"  # 127.0.0.1: ROR_TRUSTED_PROXY_IPS' default
    links = httpx.get(f"http://127.0.0.1:{served}{search}", headers={"X-Forwarded-Proto": "gopher"}).json()["link"]
    assert links[0]["url"].startswith("http://")  # only http or https is believed


def test_ror_serve_refuses_an_unknown_log_level_before_touching_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("ROR_DATABASE_URL", f"sqlite:///{tmp_path}/ror.db")
    result = CliRunner().invoke(app, ["serve", "--log-level", "loud"])
    assert result.exit_code == 1
    assert "--log-level 'loud': one of critical, error, warning, info, debug, trace" in result.output
    assert not (tmp_path / "ror.db").exists()
