"""Several files imported as ONE extract, in one run: a ``$export`` writes one NDJSON file per resource type
(and our generator one per type and region), and consolidation and disappearance need the whole extract.

``collect(paths)`` turns what the command line names into the input of a run:

- one file: that file (a ``Path``);
- a directory: its Bulk Data manifest ``manifest.json`` when there is one (the files of ``output[].url``,
  relative to the manifest; an absolute URL is taken by its last path segment, as saved next to the
  manifest), else every ``*.ndjson`` file in it (then ``*.json`` Bundles if there is no NDJSON);
- several files and/or directories: all of their files.

Files are read in sorted name order; references across files resolve whatever the order (the regional
reader maps every regional id of the whole set before writing). The run records one checksum for the
set: SHA-256 over the sorted ``<name> <sha256>`` lines of its files, and their total size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import orjson

from ror.errors import InputFileError

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FileSet:
    """The files of one extract, read in order as one input."""

    files: tuple[Path, ...]
    label: str

    def __str__(self) -> str:
        return self.label

    @property
    def name(self) -> str:
        return self.label

    def digest(self) -> tuple[int, str]:
        """(total bytes, SHA-256 over the sorted ``name sha256`` lines): one checksum for the set."""
        size = 0
        lines = []
        for p in self.files:
            n, sha = one_digest(p)
            size += n
            lines.append(f"{p.name} {sha}\n")
        return size, hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def one_digest(path: Path) -> tuple[int, str]:
    try:
        with path.open("rb") as f:
            h = hashlib.file_digest(f, "sha256")
        return path.stat().st_size, h.hexdigest()
    except OSError as e:
        raise InputFileError(f"{path}: cannot be read ({e.strerror})") from None


def _from_manifest(manifest: Path) -> list[Path]:
    try:
        data = orjson.loads(manifest.read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise InputFileError(f"{manifest}: not a readable Bulk Data manifest ({e})") from None
    outputs = data.get("output") if isinstance(data, dict) else None
    if not isinstance(outputs, list):
        raise InputFileError(f"{manifest}: not a Bulk Data manifest (no 'output' list)")
    root = manifest.parent.resolve()
    files: list[Path] = []
    for i, out in enumerate(outputs):
        url = out.get("url") if isinstance(out, dict) else None
        if not isinstance(url, str) or not url:
            raise InputFileError(f"{manifest}: output[{i}] has no url")
        parsed = urlparse(url)
        rel = unquote(parsed.path).rsplit("/", 1)[-1] if parsed.scheme in ("http", "https") else unquote(
            parsed.path if parsed.scheme == "file" else url)
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise InputFileError(f"{manifest}: output[{i}] url '{url}' points outside the manifest's folder")
        if not path.is_file():
            raise InputFileError(f"{manifest}: output[{i}] file '{rel}' is missing next to the manifest")
        files.append(path)
    if not files:
        raise InputFileError(f"{manifest}: the manifest lists no output file")
    return files


def _from_directory(d: Path) -> list[Path]:
    if (d / MANIFEST).is_file():
        found = _from_manifest(d / MANIFEST)
        if found:
            return found
    files = sorted(p for p in d.glob("*.ndjson") if p.is_file()) or sorted(
        p for p in d.glob("*.json") if p.is_file() and p.name != MANIFEST)
    if not files:
        raise InputFileError(f"{d}: no {MANIFEST}, *.ndjson or *.json file in this folder")
    return files


def collect(paths: list[Path]) -> Path | FileSet:
    """What a run reads: one file, or the FileSet of several files / directories (see the module doc)."""
    if not paths:
        raise InputFileError("no input file")
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(_from_directory(p))
        elif p.is_file():
            files.append(p)
        else:
            raise InputFileError(f"{p}: no such file or folder")
    unique = list(dict.fromkeys(f.resolve() for f in files))
    if len(paths) == 1 and len(unique) == 1 and not paths[0].is_dir():
        return paths[0]
    names = [f.name for f in unique]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputFileError(f"several files are named {', '.join(sorted(dup))}: give them distinct names "
                             f"(problems are reported by file name)")
    ordered = tuple(sorted(unique, key=lambda f: f.name))
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} paths"
    return FileSet(ordered, f"{where} ({len(ordered)} file{'s' if len(ordered) > 1 else ''}: "
                            f"{', '.join(f.name for f in ordered[:6])}"
                            f"{', …' if len(ordered) > 6 else ''})")
