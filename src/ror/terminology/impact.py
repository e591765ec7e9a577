"""Which stored resources use codes that the loaded NOS now retire (future data-quality anomalies).

Every coding of every current resource is looked at (not only the searchable ones), against the
current state of its code system: a code whose last state is retired is reported with the FHIRPath of
the coding. Codes a code system does not hold are left out: a shipped TRE can be older than the value
set that admits the code (TRE_R244 2023 vs JDV_J238 2026), and write validation already judges them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, select

from ror.store.schema import resource
from ror.terminology.cache import Terminology


@dataclass(frozen=True)
class Usage:
    rtype: str
    rid: str
    path: str
    system: str
    code: str
    reason: str  # "retired on YYYY-MM-DD"


def _codings(node, path: str) -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
            yield path, node
        for k, v in node.items():
            if isinstance(v, (dict, list)):
                yield from _codings(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _codings(v, f"{path}[{i}]")


def retired_usage(conn: Connection, term: Terminology, batch: int = 2000) -> Iterator[Usage]:
    last = 0
    while True:
        rows = conn.execute(select(resource.c.pk, resource.c.rtype, resource.c.rid, resource.c.body)
                            .where(resource.c.pk > last).order_by(resource.c.pk).limit(batch)).all()
        if not rows:
            return
        for r in rows:
            for path, c in _codings(orjson.loads(r.body), r.rtype):
                cs = term.code_system(conn, c["system"])
                if cs is None:
                    continue
                info = cs.codes.get(c["code"])
                if info is not None and info.status == "retired":
                    end = info.periods[-1][1] if info.periods else None
                    yield Usage(r.rtype, r.rid, path, c["system"], c["code"], f"retired on {(end or '?')[:10]}")
        last = rows[-1].pk
