"""A test trust space shaped like IGC-Santé: root CA -> intermediate CA -> server and client certificates.

Real keys and certificates (``cryptography``); CRLs from both CAs, because nginx checks the CRL of
every CA in the chain once ``ssl_crl`` is set. Also an unrelated CA, an expired and a revoked client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ror.access.certs import CertInfo, parse_pem

NOW = dt.datetime.now(dt.UTC)


def _name(cn: str, ou: str = "IGC-SANTE TEST") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ANS TEST"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    cert_path: Path | None = None
    key_path: Path | None = None

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def info(self) -> CertInfo:
        return parse_pem(self.pem)

    def write(self, folder: Path, name: str) -> Issued:
        self.cert_path, self.key_path = folder / f"{name}.crt", folder / f"{name}.key"
        self.cert_path.write_bytes(self.pem)
        self.key_path.write_bytes(self.key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                                         serialization.NoEncryption()))
        return self


def _ca(cn: str, issuer: Issued | None, path_length: int) -> Issued:
    key = _key()
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def _leaf(cn: str, issuer: Issued, server: bool = False, expired: bool = False) -> Issued:
    key = _key()
    start, end = (NOW - dt.timedelta(days=400), NOW - dt.timedelta(days=35)) if expired else \
        (NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=730))
    builder = (x509.CertificateBuilder().subject_name(_name(cn, "ROR NATIONAL TEST" if server else "APPLICATIONS"))
               .issuer_name(issuer.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def _crl(ca: Issued, revoked: list[Issued]) -> bytes:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(NOW - dt.timedelta(hours=1)).next_update(NOW + dt.timedelta(days=7)))
    for leaf in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(leaf.cert.serial_number)
            .revocation_date(NOW - dt.timedelta(minutes=5)).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class TestPki:
    """Every file nginx and the clients need, written under ``folder``."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.root = _ca("TEST AC RACINE IGC-SANTE", None, 1).write(folder, "root")
        self.intermediate = _ca("TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS", self.root, 0).write(folder, "inter")
        self.server = _leaf("127.0.0.1", self.intermediate, server=True).write(folder, "server")
        self.clients = {name: _leaf(f"{name}.test.ror", self.intermediate).write(folder, name)
                        for name in ("alpha", "beta", "gamma", "delta", "admin")}
        self.expired = _leaf("expired.test.ror", self.intermediate, expired=True).write(folder, "expired")
        self.revoked = _leaf("revoked.test.ror", self.intermediate).write(folder, "revoked")
        other_root = _ca("OTHER ROOT CA", None, 1)
        self.foreign = _leaf("foreign.test.ror", other_root).write(folder, "foreign")
        # nginx: the trust anchors it verifies clients against, and one CRL per CA of the chain.
        self.client_ca = folder / "client-ca.pem"
        self.client_ca.write_bytes(self.intermediate.pem + self.root.pem)
        self.crl = folder / "crl.pem"
        self.crl.write_bytes(_crl(self.intermediate, [self.revoked]) + _crl(self.root, []))
        self.server_chain = folder / "server-chain.pem"
        self.server_chain.write_bytes(self.server.pem + self.intermediate.pem)
