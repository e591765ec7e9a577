"""Writing IHE CSD documents of the ROR exposure model (``urn:ihe:iti:csd:2013`` + the ROR extensions of
``IHE_ProfilCSD-ExtensionROR_fr-v3.0.xsd``), shared by the dataset generator (``ror.generate.csd``) and the
open-data files (``ror.opendata.fhircsd``).

The four directories must appear in that order while entities come in another order (site by site, or type
by type): each directory is streamed to its own part file and the parts are joined at the end. Text is
written as escaped strings (no tree in memory): a region's document is hundreds of megabytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

NS = "urn:ihe:iti:csd:2013"
# Identifier authorities (PLATINES schematron rules): idNatStruct, FINESS, SIREN/SIRET, idNat_PS.
AUTH_IDNATST, AUTH_FINESS, AUTH_SIRENE, AUTH_IDNATPS = "1.2.250.1.71.4.2.2", "1.2.250.1.213.3.2", "1.3.2", \
    "1.2.250.1.71.4.2.1"
AUTH_OI = "https://oi.esante.gouv.fr"  # internal organisations: not an idNatStruct (no TRE_G07 type prefix)
EXT = ' type="ROR" urn="urn:asip:ror:2017"'
DIRECTORIES = ("organizationDirectory", "serviceDirectory", "facilityDirectory", "providerDirectory")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
# Characters XML 1.0 cannot carry at all (C0 controls but tab, CR, LF): dropped rather than written.
_INVALID = {c: None for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)}


def esc(text: str) -> str:
    return text.translate(_ESCAPES)


def esc_text(text: str) -> str:
    """Escaped text from any source (stored data may hold characters XML 1.0 forbids)."""
    return str(text).translate(_INVALID).translate(_ESCAPES)


class CsdParts:
    """One CSD document under construction: ``org``, ``service``, ``facility``, ``provider`` are the part
    files of the four directories; ``close(target)`` joins them into the document."""

    def __init__(self, parts: Path):
        self.parts = [parts.with_name(f"{parts.name}.{d}") for d in DIRECTORIES]
        self.files = [p.open("w", encoding="utf-8", newline="\n") for p in self.parts]
        self.org, self.service, self.facility, self.provider = self.files

    def close(self, target: Path) -> dict:
        """Join the parts into ``target``; returns its manifest entry (bytes, lines, sha256)."""
        for f in self.files:
            f.close()
        digest, lines = hashlib.sha256(), 0

        def put(data: bytes) -> None:
            nonlocal lines
            out.write(data)
            digest.update(data)
            lines += data.count(b"\n")

        with target.open("wb") as out:
            put(f'<?xml version="1.0" encoding="UTF-8"?>\n<CSD xmlns="{NS}">\n'.encode())
            for name, part in zip(DIRECTORIES, self.parts, strict=True):
                put(f"<{name}>\n".encode())
                with part.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        put(chunk)
                put(f"</{name}>\n".encode())
                part.unlink()
            put(b"<deviceDirectory/>\n</CSD>\n")
            return {"bytes": out.tell(), "lines": lines, "sha256": digest.hexdigest()}

    def discard(self) -> None:
        for f in self.files:
            f.close()
        for p in self.parts:
            p.unlink(missing_ok=True)
