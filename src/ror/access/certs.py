"""Client certificates: SHA-256 thumbprints (RFC 8705 ``x5t#S256``) and the certificate nginx forwards."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ror.errors import InvalidRequest
from ror.fhirdates import stamp

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class CertInfo:
    thumbprint: str  # SHA-256 of the DER encoding, lowercase hex (what `openssl x509 -fingerprint -sha256` shows)
    subject: str  # RFC 4514
    not_after: str  # stamp


def parse_pem(pem: str | bytes) -> CertInfo:
    """The identity of a PEM certificate; ``InvalidRequest`` when it is not one."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise InvalidRequest(f"Not a PEM X.509 certificate: {e}") from None
    return CertInfo(hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(), cert.subject.rfc4514_string(),
                    stamp(cert.not_valid_after_utc))


@lru_cache(maxsize=1024)
def forwarded_certificate(escaped_pem: str) -> CertInfo:
    """The certificate in nginx's ``$ssl_client_escaped_cert`` (URL-encoded PEM); cached per value."""
    return parse_pem(unquote(escaped_pem))


def normalize_thumbprint(value: str) -> str:
    """Lowercase hex without separators; accepts ``AB:CD:…`` as printed by openssl."""
    hexa = value.replace(":", "").strip().lower()
    if not _HEX64.match(hexa):
        raise InvalidRequest(f"'{value}' is not a SHA-256 thumbprint (64 hexadecimal digits)")
    return hexa


def x5t_s256(thumbprint: str) -> str:
    """The RFC 8705 confirmation value: base64url (unpadded) of the SHA-256 digest."""
    return base64.urlsafe_b64encode(bytes.fromhex(thumbprint)).rstrip(b"=").decode()
