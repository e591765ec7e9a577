"""Client secrets: generated here, shown once, stored only as a salted scrypt hash (stdlib ``hashlib``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# RFC 7914 recommends N=2^14, r=8, p=1 for interactive logins (16 MiB, tens of ms): slow enough to make
# an offline guess costly, cheap enough for a token request every few minutes per application.
_N, _R, _P = 2**14, 8, 1


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of ``secret`` against a ``hash_secret`` value (parameters read from it)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)
