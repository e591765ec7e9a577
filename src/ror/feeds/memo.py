"""What each record of a source gave, remembered from one run to the next: a reload maps only the records that changed.

A monthly reload of unchanged files found each entity a repeat (``Run._repeats``) only after reading, parsing and
mapping every record again: 90 % of the RPPS reader's time went to the mapping, for nothing. The feed digests each
record as it reads it (``Feed.mapped``: its text and what its mapping depends on); the run loads the digests its source
gave before into the feed (``Memo.known``, before a forked reader copies them), and the feed yields a record it knows
as a ``Known``, not mapped. The run recalls what that record gave (``recall``): each entity's national id and the
digest of what it said. Where every one of them is still a repeat (the source's contribution says the same, on the
version it left), the record is only marked as seen; else the run maps it after all (``Feed.again``) and merges it as
any other record. The rows of the records a complete full extract no longer has are deleted after it (``forget``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection

from ror.feeds.model import Entity
from ror.store.engine import dbapi_many, dbapi_rows

_CHUNK = 400


@dataclass(slots=True)
class Gave:
    """An entity a remembered record gave; ``rid``, ``said``: None if an earlier record of its file gave it first."""
    rtype: str
    key: str
    scope: str
    rid: str | None
    said: bytes | None


class Memo:
    def __init__(self, source: str):
        self.source = source
        self.known: dict[bytes, int] = {}  # digests of the records remembered when the run started -> entities
        self.read: set[bytes] = set()  # digests of the records this run read

    def load(self, conn: Connection) -> None:
        self.known = {bytes(d): n for d, n in dbapi_rows(
            conn, "SELECT digest, entities FROM feed_record WHERE source = {p}", (self.source,))}

    def recall(self, conn: Connection, digests: list[bytes]) -> dict[bytes, list[Gave]]:
        out: dict[bytes, list[Gave]] = {}
        for i in range(0, len(digests), _CHUNK):
            chunk = digests[i:i + _CHUNK]
            for digest, gave in dbapi_rows(conn, "SELECT digest, gave FROM feed_record WHERE source = {{p}} AND "
                                           "digest IN ({})".format(", ".join(["{p}"] * len(chunk))),
                                           (self.source, *chunk)):
                out[bytes(digest)] = [Gave(t, k, s, rid, bytes.fromhex(said) if said else None)
                                      for t, k, s, rid, said in orjson.loads(gave)]
        self.read.update(digests)
        return out

    def remember(self, conn: Connection, records: Iterable[tuple[bytes, list[Entity]]], rids: dict[int, str]) -> None:
        """``records``: (digest, entities) of the records mapped; ``rids``: the national id of each entity this
        batch took (by ``id``), the others an earlier record gave."""
        rows = []
        for digest, entities in records:
            self.read.add(digest)
            gave = [[e.rtype, e.keys[0], e.scope, rids.get(id(e)), e.said.hex() if id(e) in rids else None]
                    for e in entities]
            rows.append((self.source, digest, len(gave), orjson.dumps(gave)))
        if rows:
            dbapi_many(conn, "INSERT INTO feed_record (source, digest, entities, gave) VALUES ({p}, {p}, {p}, {p}) "
                       "ON CONFLICT (source, digest) DO UPDATE SET entities = excluded.entities, gave = excluded.gave",
                       rows)

    def forget(self, conn: Connection) -> None:
        """Delete the records remembered that this run did not read (after a complete full extract)."""
        gone = [(self.source, d) for d in self.known.keys() - self.read]
        dbapi_many(conn, "DELETE FROM feed_record WHERE source = {p} AND digest = {p}", gone)
