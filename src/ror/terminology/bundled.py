"""The NOS set shipped with ROR national (``ror/data/nos``), as the terminology of last resort.

A write must be judged the same on a fresh database as on one where ``ror terminology load --bundled``
ran: without the value sets, a care-mode or specialty slice (recognised by its value set) cannot be
found and every offer would fail. The validator therefore reads any table the database does not hold,
and every table when it has no connection, from ``bundled()``.

Tables are read on demand, once per process: the files that can hold a table are found by the NOS name
in their file name (``TRE_R213-…``), parsed, and their versions replayed in memory by the loader's own
rules (``concept_changes``, ``member_changes``, ``resolve_members`` of ``ror.terminology.store``) into
the views the database would give (``code_system_view``, ``value_set_view``). Nothing is written
anywhere, and a resource that uses a dozen tables does not pay for the 318 of the set (2 s to parse,
4 s to load into a database).
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import Connection

from ror.terminology.cache import CodeSystemView, Terminology, ValueSetView, code_system_view, value_set_view
from ror.terminology.nos import NOS_BASE, ParsedTable, canonical_name, canonical_url, parse_file
from ror.terminology.store import LoadReport, TableChange, concept_changes, member_changes, resolve_members

_KEY = re.compile(r"(TRE|JDV)[_-]([A-Z]\d+)")
_NAME = re.compile(r"(TRE|JDV)[_-][A-Z]\d+[_-].+$")
_SUFFIXES = (".tabs", ".json", ".zip")


def _key(name: str) -> str | None:
    """``TRE_R213`` for any file name or NOS URL of table R213 (the number identifies a NOS table)."""
    m = _KEY.search(name)
    return f"{m[1]}_{m[2]}" if m else None


def _topic(name: str) -> str:
    """What a table is about: ``TypeSavoirFaire`` for JDV_J209-TypeSavoirFaire-ROR and TRE_R04-TypeSavoirFaire."""
    return name.split("-", 1)[-1].removesuffix("-ROR")


def _versions(tables: list[ParsedTable]) -> list[ParsedTable]:
    """The versions a load applies, in order: by publication date, a version already applied is skipped."""
    out, seen = [], set()
    for t in sorted(tables, key=lambda t: (t.version_date, t.version)):
        if t.version not in seen:
            seen.add(t.version)
            out.append(t)
    return out


def _change(t: ParsedTable) -> TableChange:
    return TableChange(t.name, t.kind, t.url, None, t.version)  # the replay reports nothing


@dataclass(frozen=True)
class _Source:
    name: str  # as ``read_path`` names it: the file path, or ``zip!member``
    key: str | None  # NOS table the file name announces; None: may hold anything (the IG's own bundle)
    read: Callable[[], bytes]


class BundledTerminology(Terminology):
    """The bundled NOS set, table by table on first use. Thread-safe; the ``conn`` arguments are ignored."""

    def __init__(self):
        super().__init__()
        self.root = Path(str(resources.files("ror") / "data" / "nos"))
        self._build = threading.RLock()
        self._sources: list[_Source] | None = None
        self._keyless: dict[str, list[ParsedTable]] = {}  # parsed once: consulted for every table
        self._oid_keys: dict[str, set[str | None]] | None = None  # code-system OID -> keys of its files
        self._topics: dict[str, frozenset[str]] | None = None  # topic -> URLs of the TRE files named so
        self._namesakes: dict[str, frozenset[str]] = {}  # value-set URL -> code systems named like it

    def code_system(self, conn: Connection | None, url: str) -> CodeSystemView | None:
        if url not in self._cs:
            with self._build:
                if url not in self._cs:
                    self._cs[url] = self._replay_cs(url, self._tables(url))
        return self._cs[url]

    def value_set(self, conn: Connection | None, url: str) -> ValueSetView | None:
        url = url.split("|")[0]
        if url not in self._vs:
            with self._build:
                if url not in self._vs:
                    self._vs[url] = self._replay_vs(url, self._tables(url))
        return self._vs[url]

    def namesakes(self, value_set_url: str) -> frozenset[str]:
        """Code systems named like a value set that is not shipped: the NOS names a JDV after the TRE it
        draws from (``JDV_J209-TypeSavoirFaire-ROR`` holds TRE_R04-TypeSavoirFaire codes), which is all
        that is known here of JDV_J205–J216 and J232."""
        if value_set_url not in self._namesakes:
            name = canonical_name(value_set_url.rstrip("/").rsplit("/", 1)[-1])
            with self._build:
                self._namesakes[value_set_url] = frozenset() if name is None else \
                    self._tre_by_topic().get(_topic(name), frozenset())
        return self._namesakes[value_set_url]

    # -- replay ------------------------------------------------------------------------------------
    @staticmethod
    def _replay_cs(url: str, tables: list[ParsedTable]) -> CodeSystemView | None:
        versions = _versions([t for t in tables if t.kind == "CodeSystem"])
        if not versions:
            return None
        histories: dict[str, list[SimpleNamespace]] = {}
        current: dict[str, SimpleNamespace] = {}
        for t in versions:
            ended, opened = concept_changes(current, t, _change(t))
            for code in ended:
                del current[code]
            for row in opened:
                state = current[row["code"]] = SimpleNamespace(**row, version_date=t.version_date)
                histories.setdefault(state.code, []).append(state)
        return code_system_view(url, versions[-1].name, versions[-1].version, histories.items())

    def _replay_vs(self, url: str, tables: list[ParsedTable]) -> ValueSetView | None:
        versions = _versions([t for t in tables if t.kind == "ValueSet"])
        if not versions:
            return None
        by_oid, codes_of = self._named_code_systems(versions)
        rows: list[list] = []  # [system, code, display, date of the version that ended it]
        current: dict[tuple[str, str], SimpleNamespace] = {}
        for t in versions:
            ended, opened = member_changes(current, resolve_members(t, by_oid, codes_of, LoadReport(url)),
                                           _change(t))
            for key in ended:
                current.pop(key).row[3] = t.version_date
            for m in opened:
                row = [m["system"], m["code"], m["display"], None]
                rows.append(row)
                current[(m["system"], m["code"])] = SimpleNamespace(display=m["display"], row=row)
        return value_set_view(url, versions[-1].name, versions[-1].version, rows)

    def _named_code_systems(self, versions: list[ParsedTable]) -> tuple[dict[str, str], dict[str, set[str]]]:
        """The code systems that tabs rows name by OID, as a full load would have them (every code system is
        loaded before any value set): OID -> URL, and URL -> every code it ever held."""
        oids = {m.source_oid for t in versions for m in t.members if m.system is None and m.source_oid}
        by_oid: dict[str, str] = {}
        codes_of: dict[str, set[str]] = {}
        for oid in sorted(oids):
            tables = [t for key in sorted(self._code_system_oids().get(oid, ()), key=str)
                      for t in self._parsed(key) if t.kind == "CodeSystem"]
            urls = sorted({t.url for t in tables})
            for cs_url in urls:
                held = _versions([t for t in tables if t.url == cs_url])
                if next((t.oid for t in reversed(held) if t.oid), None) == oid:  # the table keeps its last OID
                    by_oid[oid] = cs_url
                    codes_of[cs_url] = set(self.code_system(None, cs_url).codes)
        return by_oid, codes_of

    # -- files -------------------------------------------------------------------------------------
    def _index(self) -> list[_Source]:
        """Every file of the set, in the order ``read_path`` reads them (which decides ties of versions)."""
        if self._sources is None:
            sources = []
            for p in sorted(self.root.rglob("*")):
                if not p.is_file() or p.suffix.lower() not in _SUFFIXES:
                    continue
                if p.suffix.lower() == ".zip":
                    zf = zipfile.ZipFile(io.BytesIO(p.read_bytes()))
                    for info in sorted(zf.infolist(), key=lambda i: i.filename):
                        if not info.is_dir():
                            sources.append(_Source(f"{p}!{info.filename}", _key(Path(info.filename).name),
                                                   lambda zf=zf, info=info: zf.read(info)))
                else:
                    sources.append(_Source(str(p), _key(p.name), p.read_bytes))
            self._sources = sources
        return self._sources

    def _parsed(self, key: str | None) -> list[ParsedTable]:
        """The tables of every file named after NOS table ``key``, and of the files named after none."""
        out = []
        for s in self._index():
            if s.key is None:
                if s.name not in self._keyless:
                    self._keyless[s.name] = [t for t in parse_file(s.name, s.read()) if isinstance(t, ParsedTable)]
                out.extend(self._keyless[s.name])
            elif s.key == key:
                out.extend(t for t in parse_file(s.name, s.read()) if isinstance(t, ParsedTable))
        return out

    def _tables(self, url: str) -> list[ParsedTable]:
        return [t for t in self._parsed(_key(url) if url.startswith(NOS_BASE) else None) if t.url == url]

    def _code_system_oids(self) -> dict[str, set[str | None]]:
        """OID -> keys of the files holding that code system: the header line of a TRE tabs file says it,
        FHIR JSON files (few and small) are parsed."""
        if self._oid_keys is None:
            oids: dict[str, set[str | None]] = defaultdict(set)
            parse: set[str | None] = {None}
            for s in self._index():
                if s.key is None or not s.key.startswith("TRE_"):
                    continue
                if not s.name.lower().endswith(".tabs"):
                    parse.add(s.key)
                    continue
                lines = [ln for ln in s.read()[:4096].decode("latin-1").splitlines() if ln.strip()]
                head = lines[1].split(";") if len(lines) > 1 else []
                if len(head) > 1 and head[1].strip() == "TRE" and head[0].strip():
                    oids[head[0].strip()].add(s.key)
            for key in parse:
                for t in self._parsed(key):
                    if t.kind == "CodeSystem" and t.oid:
                        oids[t.oid].add(_key(t.url) if t.url.startswith(NOS_BASE) else None)
            self._oid_keys = dict(oids)
        return self._oid_keys

    def _tre_by_topic(self) -> dict[str, frozenset[str]]:
        if self._topics is None:
            found: dict[str, set[str]] = defaultdict(set)
            for s in self._index():
                if s.key is not None and s.key.startswith("TRE_"):
                    m = _NAME.search(Path(s.name.rsplit("!", 1)[-1]).stem)
                    name = canonical_name(m[0]) if m else None
                    if name is not None:
                        found[_topic(name)].add(canonical_url(name))
            self._topics = {k: frozenset(v) for k, v in found.items()}
        return self._topics


@cache
def bundled() -> BundledTerminology:
    """The process-wide bundled set (nothing is read before the first look-up)."""
    return BundledTerminology()
