"""NDJSON files per resource type, split at a maximum count and size: ``<Type>-<n>.ndjson``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson


@dataclass
class OutputFile:
    type: str
    name: str
    count: int
    size: int


class NdjsonWriter:
    def __init__(self, folder: Path, max_resources: int, max_bytes: int):
        self.folder = folder
        self.max_resources = max(1, max_resources)
        self.max_bytes = max(1, max_bytes)
        self.files: list[OutputFile] = []
        self._fh: BinaryIO | None = None
        self._current: OutputFile | None = None
        self._seq: dict[str, int] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, rtype: str, body: bytes) -> None:
        if b"\n" in body:  # stored bodies are compact JSON; never let one span two lines
            body = orjson.dumps(orjson.loads(body))
        cur = self._current
        if cur is None or cur.type != rtype or cur.count >= self.max_resources or cur.size >= self.max_bytes:
            cur = self._open(rtype)
        assert self._fh is not None
        self._fh.write(body)
        self._fh.write(b"\n")
        cur.count += 1
        cur.size += len(body) + 1

    def _open(self, rtype: str) -> OutputFile:
        self._close()
        n = self._seq[rtype] = self._seq.get(rtype, 0) + 1
        self._current = OutputFile(rtype, f"{rtype}-{n}.ndjson", 0, 0)
        self._fh = open(self.folder / self._current.name, "wb")  # noqa: SIM115 (closed by _close)
        self.files.append(self._current)
        return self._current

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._current = None

    def close(self) -> list[OutputFile]:
        self._close()
        return self.files
