"""The contract every source module follows, and the reading helpers they share.

A source module provides a ``Feed``: ``read(path)`` streams ``Record``s (what one source record says,
as FHIR resources with their identity keys) and ``Problem``s (a rejected record, or a warning about a
kept one), in file order, never holding the file in memory; an item is final once yielded (it may be read in
another process: ``ror.feeds.readahead``). References between resources are written
as ``ref(rtype, key)`` placeholders and resolved to national ids by the run (``ror.feeds.identity``).

A record the source gave in the same words last time (its text and what its mapping depends on, ``Feed.mapped``) is
not mapped again: ``read`` yields a ``Known`` in its place, which the run resolves from what that record gave
(``ror.feeds.memo``), or maps after all (``Feed.again``) if any of its resources changed since.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ror.errors import InputFileError
from ror.profiles.identifiers import check_siren, check_siret, luhn_ok

REPLACEMENT = "\ufffd"  # what a wrong upstream decoding leaves where an accented letter was
RECORD_TEXT_MAX = 4000  # characters of a raw record kept with its problem


@dataclass(slots=True)
class Entity:
    """One national resource as a source describes it. ``keys``: identity keys, strongest first."""

    rtype: str
    keys: list[str]
    resource: dict | None  # None while only ``raw`` holds it (from a reader in another process; references resolved)
    scope: str  # kind of record, the unit of disappearance handling (ej, eg, practitioner, ...)
    said: bytes = b""  # digest of what is said, references resolved (set by the run: ``Run._repeats``)
    raw: bytes = b""  # ``resource`` serialised (the run decodes it only for what it merges: not the repeats)


@dataclass(slots=True)
class Problem:
    line: int
    field: str
    reason: str
    severity: str = "error"  # error: the record is rejected; warning: it is kept
    record: str = ""


@dataclass(slots=True)
class Record:
    line: int
    entities: list[Entity]
    warnings: list[Problem] = field(default_factory=list)
    digest: bytes = b""  # what the record said, as ``Feed.mapped`` knows it (none: it is mapped at every run)


@dataclass(slots=True)
class Known:
    """A record whose digest the run remembers (``Feed.known``), not mapped: ``mapping`` (a method of the feed and its
    arguments) maps it if what it gave last time changed since (``Feed.again``)."""
    line: int
    digest: bytes
    mapping: tuple[str, tuple]
    entities: int  # how many it gave


def weight(item: Record | Known | Problem) -> int:
    """What an item counts for in a batch (whose size is in entities or problems): a record remembered, as much as
    when it is mapped, so that a run's batches are the same whatever it remembers."""
    if isinstance(item, Record):
        return len(item.entities)
    return item.entities if isinstance(item, Known) else 1


class Feed:
    """Base of the source modules. ``closable``: scopes this source may close when they disappear."""

    source = ""  # finess | rpps | region:<code>
    kind = ""  # finess | rpps | region
    closable: frozenset[str] = frozenset()
    # What reading a file teaches a feed about it (set by ``read``): a reader in another process sends them along
    # (``ror.feeds.readahead``).
    FILE_FACTS = ("complete", "notes", "extraction_date")

    def __init__(self) -> None:
        self.known: dict[bytes, int] = {}  # digests of the records remembered -> entities each gave (set by the run)
        self.complete = True  # False when the file ended mid-record: no disappearance handling then
        self.notes: list[str] = []  # facts about the file for the run message (encoding, dates, ...)
        self.extraction_date: str | None = None

    def read(self, path: Path) -> Iterator[Record | Known | Problem]:
        raise NotImplementedError

    def mapped(self, line: int, said: tuple[bytes | str, ...], now: Callable[[], Iterable[Record | Problem]],
               later: tuple[str, tuple]) -> Iterator[Record | Known | Problem]:
        """What ``now()`` maps of the record at ``line``, unless ``said`` (everything the mapping depends on but line
        numbers and set-once values: the record's text, the header, what its references name) is known: then a
        ``Known``, which maps it ``later`` (a method of the feed and its arguments: where the record is in the file,
        not its text, which would cross the reader's pipe again) if it must. Only a record mapped into one ``Record``
        without warnings is remembered: a reload reports the problems of the others again."""
        digest = hashlib.sha256(b"\0".join(  # SHA-256 (the CPU's instructions): twice as fast as BLAKE2b here
            (mapping_version(), self.source.encode(), *(p.encode() if isinstance(p, str) else p for p in said)))
        ).digest()[:16]
        entities = self.known.get(digest)
        if entities is not None:
            yield Known(line, digest, later, entities)
            return
        yield from _remembered(list(now()), digest)

    def again(self, known: Known) -> list[Record | Problem]:
        """``known``'s record mapped (its resources changed since it was remembered)."""
        method, args = known.mapping
        return _remembered(list(getattr(self, method)(*args)), known.digest)


def _remembered(items: list[Record | Problem], digest: bytes) -> list[Record | Problem]:
    if len(items) == 1 and isinstance(items[0], Record) and not items[0].warnings:
        items[0].digest = digest
    return items


# Modules of ror.feeds that do not map records: what they do to a record comes after its digest.
_NOT_MAPPING = frozenset({"__init__.py", "fileset.py", "identity.py", "memo.py", "precedence.py", "readahead.py",
                          "reports.py", "runs.py", "schema.py", "validation.py"})


@lru_cache(maxsize=1)
def mapping_version() -> bytes:
    """A digest of what maps records, in every record digest (``Feed.mapped``): the feeds' mapping code and tables,
    the commune table and the identifier checks. A release that changes any of them maps every record again once (the
    merge rules are in each entity's own digest: ``runs._said``)."""
    ror = Path(__file__).parent.parent
    files = sorted(p for p in (ror / "feeds").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.name not in _NOT_MAPPING)
    files += [ror / "geo.py", ror / "data" / "communes.csv", ror / "profiles" / "identifiers.py"]
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(f.relative_to(ror).as_posix().encode() + b"\0" + f.read_bytes())
    return h.digest()


def key(system: str, value: str) -> str:
    return f"{system}|{value}"


def ref(rtype: str, identity_key: str) -> dict:
    """A reference to the entity known by ``identity_key``, resolved when the batch is written."""
    return {"reference": f"@{rtype}|{identity_key}"}


def clip(text: str) -> str:
    return text if len(text) <= RECORD_TEXT_MAX else text[:RECORD_TEXT_MAX] + "…"


# --- text files --------------------------------------------------------------------------------------

# UTF-8 text decoded as Windows-1252 and encoded again: each accented letter became "Ã" or "Â" followed by what
# Windows-1252 makes of a UTF-8 continuation byte (0x80-0xBF): "MÃ©decin".
_MOJIBAKE = re.compile("[ÂÃ][\u0080-\u00bf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]")
_MOJIBAKE_UTF8 = re.compile(b"\xc3[\x82\x83]")  # "Â", "Ã" in UTF-8: one pass, 4x faster than two `in` tests


def maybe_mojibake(raw: bytes) -> bool:
    """Whether UTF-8 ``raw`` holds "Â" or "Ã": lines without either have nothing to repair (``repair_mojibake``)."""
    return _MOJIBAKE_UTF8.search(raw) is not None


def repair_mojibake(text: str) -> str | None:
    """``text`` as it was before UTF-8 was read as Windows-1252 and encoded again, or None if it was not: it must
    show the pattern, and the whole of it must go back (a line also holding a right "é" does not, and is kept)."""
    if not _MOJIBAKE.search(text):
        return None
    try:
        return text.encode("cp1252").decode("utf-8")
    except UnicodeError:
        return None


def repair_strings(value: object) -> tuple[object, bool]:
    """``value`` (parsed JSON) with each of its strings ``repair_mojibake`` repairs replaced, and whether any was."""
    if isinstance(value, str):
        fixed = repair_mojibake(value)
        return (value, False) if fixed is None else (fixed, True)
    if isinstance(value, list):
        pairs = [repair_strings(v) for v in value]
        return [v for v, _ in pairs], any(changed for _, changed in pairs)
    if isinstance(value, dict):
        pairs = {k: repair_strings(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(changed for _, changed in pairs.values())
    return value, False


def repaired_note(lines: list[int]) -> str:
    """The run message's account of the lines ``repair_mojibake`` repaired."""
    shown = ", ".join(map(str, lines[:10])) + (", …" if len(lines) > 10 else "")
    return (f"{len(lines)} line(s) double-encoded (UTF-8 read as Windows-1252 and encoded again), read as they were "
            f"meant: line(s) {shown}")


def decode_line(raw: bytes) -> tuple[str, str]:
    """A line's text, without its line end, and how it was decoded: "ascii", "utf-8", "repaired" (UTF-8
    double-encoded, ``repair_mojibake``) or "legacy" (Windows-1252, Latin-1 for the five bytes cp1252 leaves
    undefined)."""
    try:
        text = raw.decode("utf-8")
        how = "ascii" if raw.isascii() else "utf-8"
        if maybe_mojibake(raw) and (fixed := repair_mojibake(text)) is not None:
            text, how = fixed, "repaired"
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        how = "legacy"
    return text.rstrip("\r\n"), how


def read_line(path: str | Path, span: tuple[int, int]) -> bytes:
    """The bytes of the line at ``span`` (offset, length) of ``path``, line end included: a record remembered is
    sent as where it is (``Known``), and read again only if it must be mapped."""
    with open(path, "rb") as f:
        f.seek(span[0])
        raw = f.read(span[1])
    return raw[3:] if span[0] == 0 and raw.startswith(b"\xef\xbb\xbf") else raw


class DecodedLines:
    """Lines of a text file decoded one by one: UTF-8 when valid, else Windows-1252 (Latin-1 for the
    five bytes cp1252 leaves undefined). Per line, so a file that mixes both still reads right and a
    several-hundred-MB file never sits in memory. A UTF-8 line double-encoded is repaired (``repair_mojibake``).
    Counts what was used, for the run report."""

    def __init__(self, path: Path):
        self.path = path
        self.utf8 = 0
        self.legacy = 0
        self.repaired: list[int] = []  # line numbers
        self.unterminated = False  # the last line has no line end: the file may have been cut
        self.span = (0, 0)  # of the last line read: offset and length in bytes

    def __iter__(self) -> Iterator[tuple[int, str]]:
        """(line number, text); ``span`` is then where the line is in the file (``read_line``)."""
        try:
            f = self.path.open("rb")
        except OSError as e:
            raise InputFileError(f"{self.path}: cannot be read ({e.strerror})") from None
        offset = 0
        with f:
            for n, raw in enumerate(f, 1):
                self.span = (offset, len(raw))
                offset += len(raw)
                if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                self.unterminated = not raw.endswith(b"\n")
                text, how = decode_line(raw)
                self.utf8 += how in ("utf-8", "repaired")  # an ASCII line is both: it would make a Latin-1 file "mixed"
                self.legacy += how == "legacy"
                if how == "repaired":
                    self.repaired.append(n)
                yield n, text

    def note(self) -> str:
        if self.legacy and self.utf8:
            note = f"encoding: mixed, {self.utf8} UTF-8 lines and {self.legacy} Windows-1252/Latin-1 lines"
        else:
            note = "encoding: Windows-1252/Latin-1" if self.legacy else "encoding: UTF-8"
        return f"{note}; {repaired_note(self.repaired)}" if self.repaired else note


def split_csv(line: str, sep: str) -> list[str]:
    """Fields of one line with the CSV quoting rules (a field holding quotes is quoted, quotes doubled)."""
    if '"' not in line:
        return line.split(sep)
    return next(csv.reader([line], delimiter=sep, quotechar='"'))


def separator_error(path: Path, line: str, expected: str) -> InputFileError:
    found = max(("\t", ";", "|", ","), key=line.count)
    names = {"\t": "TAB", ";": "';'", "|": "'|'", ",": "','"}
    return InputFileError(f"{path}: fields must be separated by {names[expected]}; line 1 looks separated by "
                          f"{names[found]} — is this the right file for this source?")


# --- identifiers -------------------------------------------------------------------------------------

_FINESS = re.compile(r"^[0-9][0-9AB][0-9]{7}$")


def finess_problem(value: str) -> str | None:
    """Why ``value`` is not a FINESS number, or None. The check key (9th digit) is Luhn over the
    number; Corsican numbers (2A/2B) have letters, so only their format is checked."""
    if not _FINESS.match(value):
        return f"'{value}' is not a FINESS number (9 characters: digit, digit or A/B, 7 digits)"
    if value[1] in "AB" or luhn_ok(value):
        return None
    return f"FINESS number '{value}' has an invalid check key"


def siret_problem(value: str, length: int = 14) -> str | None:
    """Why ``value`` is not a SIRET (or SIREN with ``length=9``), or None: the profile validator's own
    rule (a SIRET's SIREN part has its key too; La Poste's exception), so the feed leaves out what the
    validator would refuse instead of losing the whole establishment."""
    problem = (check_siret if length == 14 else check_siren)(value)
    return problem[1] if problem else None


# --- NOS code tables ---------------------------------------------------------------------------------

NOS = "https://mos.esante.gouv.fr/NOS/{t}/FHIR/{d}"


def nos_system(table: str) -> str:
    """Canonical FHIR system of a NOS table: TRE_R66-CategorieEtablissement -> .../TRE-R66-CategorieEtablissement."""
    return NOS.format(t=table, d=table.replace("_", "-", 1))


@dataclass(frozen=True, slots=True)
class Code:
    label: str
    retired: bool


@lru_cache(maxsize=1)
def _nos() -> dict[str, dict[str, Code]]:
    text = resources.files("ror.feeds").joinpath("data", "nos_codes.csv").read_text(encoding="utf-8")
    tables: dict[str, dict[str, Code]] = {}
    for row in csv.DictReader(text.splitlines()):
        tables.setdefault(row["table"], {})[row["code"]] = Code(row["label"], bool(row["retired"]))
    return tables


def nos_code(table: str, code: str) -> Code | None:
    return _nos().get(table, {}).get(code)


def coding(table: str, code: str) -> dict:
    """A Coding of a NOS table with its NOS label (never the label of the source file, which may be mangled)."""
    known = nos_code(table, code)
    out = {"system": nos_system(table), "code": code}
    if known:
        out["display"] = known.label
    return out


def concept(table: str, code: str) -> dict:
    return {"coding": [coding(table, code)]}


def file_head(path: Path) -> bytes:
    """The first bytes of a feed file, BOM and leading blanks removed, to tell its format."""
    try:
        with path.open("rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as e:
        raise InputFileError(f"{path}: cannot be read ({e.strerror})") from None
    if not head:
        raise InputFileError(f"{path}: the file is empty")
    return head
