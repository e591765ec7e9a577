"""Identity matching: which national resource a source record is about (docs/feeds.md, "Identity").

Keys are ``system|value`` strings, strongest first (FINESS, idNatStruct, SIREN/SIRET, RPPS/ADELI rang,
idNat_PS, then a source's technical id). A record is matched by its strongest key already known —
in ``feed_identity`` (everything the feeds wrote) or, for identifier keys, in the store's search index
(resources created through the API). A weaker key only matches a resource that has no other value for
a stronger key's system: two establishments sharing a SIRET stay two. Unmatched records get an id
derived from their strongest key, so the same entity gets the same id from any source and any run.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from ror.feeds.fhirmap import ADELI_RANG, FINESS, IDNATPS, IDNATST, OI, ROR_OFFER, ROR_ROLE, RPPS_RANG, SIRENE
from ror.feeds.schema import feed_identity
from ror.store.schema import LIVE_TX, idx_token, resource

_CHUNK = 400
_PREFIX = {FINESS: "fin", SIRENE: "sir", IDNATST: "st", RPPS_RANG: "rr", ADELI_RANG: "ar", IDNATPS: "ps",
           ROR_OFFER: "of", ROR_ROLE: "so", OI: "oi"}
_SAFE = re.compile(r"^[A-Za-z0-9.\-]{1,52}$")


def system_of(k: str) -> str:
    return k.rsplit("|", 1)[0]


def mint(k: str) -> str:
    """The national id of a new entity whose strongest key is ``k`` (FHIR id: [A-Za-z0-9.-]{1,64})."""
    system, _, value = k.rpartition("|")
    prefix = _PREFIX.get(system)
    if prefix is None:
        m = re.match(r"^urn:ror:feed:(region):(\w+):", system)
        prefix = f"r{m.group(2)}" if m else "x"
    if prefix != "x" and _SAFE.match(value):
        return f"{prefix}-{value}"
    return f"{prefix}-{hashlib.blake2b(k.encode(), digest_size=12).hexdigest()}"


def _insert_ignore(conn: Connection, rows: list[dict]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for i in range(0, len(rows), _CHUNK):
        conn.execute(dialect.insert(feed_identity).on_conflict_do_nothing(), rows[i:i + _CHUNK])


class Resolver:
    """Resolves the identity keys of one batch in a few queries, and registers the new keys."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.known: dict[tuple[str, str], str] = {}
        self.conflicts: list[str] = []
        self.pending: list[dict] = []  # new keys, inserted by ``flush``

    def load(self, wanted: Iterable[tuple[str, str]]) -> None:
        by_type: dict[str, set[str]] = defaultdict(set)
        for rtype, k in wanted:
            if (rtype, k) not in self.known:
                by_type[rtype].add(k)
        for rtype, ks in by_type.items():
            ks_list = sorted(ks)
            for i in range(0, len(ks_list), _CHUNK):
                chunk = ks_list[i:i + _CHUNK]
                for k, rid in self.conn.execute(select(feed_identity.c.key, feed_identity.c.rid).where(
                        feed_identity.c.rtype == rtype, feed_identity.c.key.in_(chunk))):
                    self.known[(rtype, k)] = rid
            self._from_index(rtype, [k for k in ks_list if (rtype, k) not in self.known])

    def _from_index(self, rtype: str, ks: list[str]) -> None:
        """Identifier keys of resources written outside the feeds (REST API, ``ror load``)."""
        by_value: dict[str, list[str]] = defaultdict(list)
        for k in ks:
            if not k.startswith("urn:ror:feed:"):
                by_value[k.rpartition("|")[2]].append(k)
        values = sorted(by_value)
        for i in range(0, len(values), _CHUNK):
            q = (select(idx_token.c.system, idx_token.c.code, resource.c.rid)
                 .join(resource, resource.c.pk == idx_token.c.pk)
                 .where(idx_token.c.param == "identifier", idx_token.c.until_tx == LIVE_TX,
                        idx_token.c.code.in_(values[i:i + _CHUNK]), resource.c.rtype == rtype))
            for system, code, rid in self.conn.execute(q):
                self.known.setdefault((rtype, f"{system}|{code}"), rid)

    def _keys_of(self, rtype: str, rids: set[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        rid_list = sorted(rids)
        for i in range(0, len(rid_list), _CHUNK):
            for k, rid in self.conn.execute(select(feed_identity.c.key, feed_identity.c.rid).where(
                    feed_identity.c.rtype == rtype, feed_identity.c.rid.in_(rid_list[i:i + _CHUNK]))):
                out[rid].add(k)
        for row in self.pending:
            if row["rtype"] == rtype and row["rid"] in rids:
                out[row["rid"]].add(row["key"])
        return out

    def assign(self, rtype: str, keys: list[str]) -> str:
        """The national id of the entity known by ``keys`` (strongest first); registers its keys."""
        rid = self.known.get((rtype, keys[0]))
        if rid is None:
            for i, k in enumerate(keys[1:], 1):
                cand = self.known.get((rtype, k))
                if cand is not None and self._compatible(rtype, cand, keys[:i]):
                    rid = cand
                    break
        if rid is None:
            rid = mint(keys[0])
        for k in keys:
            have = self.known.get((rtype, k))
            if have is None:
                self.known[(rtype, k)] = rid
                self.pending.append({"rtype": rtype, "key": k, "rid": rid})
            elif have != rid and system_of(k) in (FINESS, IDNATPS, IDNATST):
                self.conflicts.append(f"{rtype} key {k} belongs to {rtype}/{have}, not to {rtype}/{rid}")
        return rid

    def flush(self) -> None:
        if self.pending:
            _insert_ignore(self.conn, self.pending)
            self.pending = []

    def _compatible(self, rtype: str, cand: str, stronger: list[str]) -> bool:
        """``cand`` has no other value for the system of any of the stronger keys."""
        theirs = self._keys_of(rtype, {cand})[cand]
        for k in stronger:
            system = system_of(k)
            if any(system_of(t) == system and t != k and len(t) == len(k) for t in theirs):
                return False
        return True

    def reference(self, rtype: str, k: str) -> str:
        """The id a reference to the entity known by ``k`` points to (minted if not yet known)."""
        return self.known.get((rtype, k)) or mint(k)
