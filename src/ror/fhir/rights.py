"""Who may write what: write rights are granted per establishment (EG), as the ROR trust space
registers them (FINESS or idNatStruct of each EG an application may modify)."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from sqlalchemy import Connection

from ror.errors import Forbidden, NotFound
from ror.store import repository
from ror.store.engine import dbapi_rows
from ror.store.indexer import parse_reference
from ror.store.schema import LIVE_TX

_ESTABLISHMENT_SYSTEMS = ("https://finess.esante.gouv.fr", "urn:oid:1.2.250.1.71.4.2.2")
_MAX_DEPTH = 6


class Caller(Protocol):
    """What the service needs to know about who calls (``ror.access.principal.Principal``)."""

    app_id: str
    profile: int
    write_all: bool
    write_establishments: frozenset[str]


@dataclass(frozen=True)
class LocalCaller:
    """The embedded server without a trust space: everything visible, every write allowed."""

    app_id: str = "local"
    profile: int = 1
    write_all: bool = True
    write_establishments: frozenset[str] = field(default_factory=frozenset)


FULL_ACCESS = LocalCaller()


_OFFERS_AT_PLACE = ("SELECT r.body FROM resource r JOIN idx_ref i ON i.pk = r.pk WHERE "
                    f"i.param = 'HealthcareService.location' AND i.until_tx = {LIVE_TX} "
                    "AND i.target_type = 'Location' AND i.target_id = {p}")


def _org_chain_keys(conn: Connection, org_id: str) -> set[str]:
    """FINESS / idNatStruct identifiers of an Organization and of every Organization above it."""
    keys: set[str] = set()
    for _ in range(_MAX_DEPTH):
        try:
            org = orjson.loads(repository.read(conn, "Organization", org_id).body)
        except NotFound:
            return keys
        keys.update(i.get("value") for i in org.get("identifier", ())
                    if isinstance(i, dict) and i.get("system") in _ESTABLISHMENT_SYSTEMS and i.get("value"))
        parent = parse_reference((org.get("partOf") or {}).get("reference", ""))
        if not parent:
            return keys
        org_id = parent[1]
    return keys


def _ref_ids(value, rtype: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        ref = parse_reference(item.get("reference", "")) if isinstance(item, dict) else None
        if ref and ref[0] == rtype:
            out.append(ref[1])
    return out


def establishment_keys(conn: Connection, res: dict) -> set[str]:
    """Identifiers of the establishments (and legal entities) a resource belongs to."""
    rtype = res.get("resourceType")
    if rtype == "Organization":
        keys = {i.get("value") for i in res.get("identifier", ())
                if isinstance(i, dict) and i.get("system") in _ESTABLISHMENT_SYSTEMS and i.get("value")}
        for parent in _ref_ids(res.get("partOf"), "Organization"):
            keys |= _org_chain_keys(conn, parent)
        return keys
    if rtype == "HealthcareService":
        return set().union(*[_org_chain_keys(conn, o) for o in _ref_ids(res.get("providedBy"), "Organization")])
    if rtype == "PractitionerRole":
        keys: set[str] = set()
        for hs in _ref_ids(res.get("healthcareService"), "HealthcareService"):
            with suppress(NotFound):
                keys |= establishment_keys(conn, orjson.loads(repository.read(conn, "HealthcareService", hs).body))
        return keys
    if rtype == "Location":
        keys = set().union(*[_org_chain_keys(conn, o) for o in _ref_ids(res.get("managingOrganization"),
                                                                         "Organization")])
        # The offers that use the place (HealthcareService.location points at it).
        offers = dbapi_rows(conn, _OFFERS_AT_PLACE, (res.get("id"),))
        for (body,) in offers:
            keys |= establishment_keys(conn, orjson.loads(body))
        # idExterneSynchro is "{idNatStruct of the EG}/{external id}".
        for ident in res.get("identifier", ()):
            value = ident.get("value", "") if isinstance(ident, dict) else ""
            if "/" in value:
                keys.add(value.split("/", 1)[0])
        return keys
    return set()


def check_write(conn: Connection, caller: Caller, rtype: str, before: dict | None, after: dict) -> set[str] | None:
    """Refuse (403) a write the caller has no right to, judged on the resource as it is and as it
    would become (an application cannot move a resource out of, or into, an establishment it does
    not hold). Returns the establishments of ``after`` when it had to look them up."""
    if caller.write_all or rtype == "Task":  # anomalies may be reported by any registered application
        return None
    if rtype == "Practitioner":
        raise Forbidden(f"Application {caller.app_id} may not write professionals (national registries only)",
                        expression=rtype)
    for version in (v for v in (before, after) if v is not None):
        keys = establishment_keys(conn, version)
        if not keys & caller.write_establishments:
            which = ", ".join(sorted(keys)) or "no known establishment"
            raise Forbidden(f"Application {caller.app_id} has no write right on {rtype}/{version.get('id')} "
                            f"(establishment: {which})", expression=rtype)
    return keys
