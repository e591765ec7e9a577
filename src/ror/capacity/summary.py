"""Available beds and places, summed by region, department, activity, establishment or temporary
assignment, from the current search index (so a PATCH shows in the very next summary), and the
places whose capacities are stale.

Only what the caller's access profile may read is counted: capacity rows carry the profiles that
may see them, and places hanging under a sensitive offer are left out for profiles 0, 2, 3 and 5.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, and_, literal, select

from ror.fhirdates import stamp
from ror.geo import load_communes
from ror.profiles.access import bit
from ror.search.visibility import Visibility
from ror.store.engine import current_tx
from ror.store.schema import LIVE_TX, idx_date, idx_number, idx_ref, idx_token, resource

GROUPINGS = ("region", "department", "activity", "establishment", "temporary-assignment")
REGIONS = {  # INSEE region codes (TRE_R30-RegionOM)
    "01": "Guadeloupe", "02": "Martinique", "03": "Guyane", "04": "La Réunion", "06": "Mayotte",
    "11": "Île-de-France", "24": "Centre-Val de Loire", "27": "Bourgogne-Franche-Comté", "28": "Normandie",
    "32": "Hauts-de-France", "44": "Grand Est", "52": "Pays de la Loire", "53": "Bretagne",
    "75": "Nouvelle-Aquitaine", "76": "Occitanie", "84": "Auvergne-Rhône-Alpes",
    "93": "Provence-Alpes-Côte d'Azur", "94": "Corse",
}
_DIMENSIONS = {"capacity-type": "nature", "capacity-status": "status", "temporality-capacity": "temporality",
               "temporary-assignement": "assignment"}


@dataclass
class Record:
    nature: str | None = None
    status: str | None = None
    temporality: str | None = None
    assignment: str | None = None
    nb: int = 0


@dataclass
class Place:
    pk: int
    rid: str
    commune: str | None = None
    records: dict[int, Record] = field(default_factory=lambda: defaultdict(Record))
    updated: str | None = None  # latest capacityUpdateDate (stamp)
    offers: list[int] = field(default_factory=list)


def _places(conn: Connection, profile: int) -> dict[int, Place]:
    """Current places with their capacity records, as ``profile`` may read them."""
    vis = Visibility(profile, literal(current_tx(conn)))
    live = [idx_token.c.until_tx == LIVE_TX]
    places: dict[int, Place] = {}
    for pk, rid in conn.execute(select(resource.c.pk, resource.c.rid).where(resource.c.rtype == "Location")):
        places[pk] = Place(pk, rid)
    hidden = vis.hidden("Location")
    if hidden is not None:
        for (pk,) in conn.execute(hidden):
            places.pop(pk, None)
    seen_by = [] if profile == 1 else [idx_token.c.vis.op("&")(bit(profile)) != 0]
    keys = [f"Location.{k}" for k in _DIMENSIONS]
    for pk, param, grp, code in conn.execute(select(idx_token.c.pk, idx_token.c.param, idx_token.c.grp,
                                                    idx_token.c.code)
                                             .where(idx_token.c.param.in_(keys), *live, *seen_by)):
        if pk in places:
            setattr(places[pk].records[grp], _DIMENSIONS[param.split(".", 1)[1]], code)
    num_seen = [] if profile == 1 else [idx_number.c.vis.op("&")(bit(profile)) != 0]
    for pk, grp, value in conn.execute(select(idx_number.c.pk, idx_number.c.grp, idx_number.c.value).where(
            idx_number.c.param == "Location.nb-capacity", idx_number.c.until_tx == LIVE_TX, *num_seen)):
        if pk in places and grp in places[pk].records:
            places[pk].records[grp].nb = int(value)
    for pk, high in conn.execute(select(idx_date.c.pk, idx_date.c.high).where(
            idx_date.c.param == "Location.capacity-update-date", idx_date.c.until_tx == LIVE_TX)):
        if pk in places and (places[pk].updated is None or high > places[pk].updated):
            places[pk].updated = high
    for pk, code in conn.execute(select(idx_token.c.pk, idx_token.c.code).where(
            idx_token.c.param == "Location.commune-cog", *live)):
        if pk in places:
            places[pk].commune = code
    if profile == 3:  # capacities of medico-social places only
        ms = {pk for (pk,) in conn.execute(vis.medico_social_places_and_roles()[0])}
        for pk, p in places.items():
            if pk not in ms:
                p.records.clear()
    return places


def _offers_by_place(conn: Connection, places: dict[int, Place]) -> dict[int, list[int]]:
    by_rid = {p.rid: pk for pk, p in places.items()}
    out: dict[int, list[int]] = defaultdict(list)
    for offer_pk, target in conn.execute(select(idx_ref.c.pk, idx_ref.c.target_id).where(
            idx_ref.c.param == "HealthcareService.location", idx_ref.c.until_tx == LIVE_TX)):
        if target in by_rid:
            out[by_rid[target]].append(offer_pk)
    return out


def _activities(conn: Connection) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for pk, code in conn.execute(select(idx_token.c.pk, idx_token.c.code).where(
            idx_token.c.param == "HealthcareService.specialty", idx_token.c.until_tx == LIVE_TX,
            idx_token.c.system.like("%TRE_R211%"))):
        out[pk].add(code)
    return out


def _establishments(conn: Connection) -> dict[int, str]:
    """Offer pk -> id of its establishment: the Organization just below the legal entity on the
    providedBy/partOf chain (the offer's own organisation when it has no parent)."""
    parent: dict[str, str] = {}
    for child, target in conn.execute(select(resource.c.rid, idx_ref.c.target_id).join(
            idx_ref, and_(idx_ref.c.pk == resource.c.pk, idx_ref.c.param == "Organization.partof",
                          idx_ref.c.until_tx == LIVE_TX))):
        parent[child] = target

    def establishment(org: str) -> str:
        for _ in range(8):
            up = parent.get(org)
            if up is None or up not in parent:
                return org
            org = up
        return org

    return {pk: establishment(org) for pk, org in conn.execute(select(idx_ref.c.pk, idx_ref.c.target_id).where(
        idx_ref.c.param == "HealthcareService.organization", idx_ref.c.until_tx == LIVE_TX))}


def summary(conn: Connection, by: str, *, profile: int = 1, status: str = "02", temporality: str = "01",
            stale_after_h: float = 24, now: datetime | None = None) -> dict:
    """Beds (nature 01) and places (nature 02) of ``status``/``temporality``, grouped ``by``."""
    if by not in GROUPINGS:
        raise ValueError(by)
    now = now or datetime.now(UTC)
    cut = stamp(now - timedelta(hours=stale_after_h))
    places = _places(conn, profile)
    offers = _offers_by_place(conn, places) if by in ("activity", "establishment") else {}
    activities = _activities(conn) if by == "activity" else {}
    establishments = _establishments(conn) if by == "establishment" else {}
    communes = load_communes()
    groups: dict[str, dict] = {}
    for pk, place in places.items():
        recs = [r for r in place.records.values() if r.status == status and r.temporality == temporality]
        if not recs:
            continue
        commune = communes.get(place.commune or "")
        if by == "region":
            keys = {commune.region if commune else "unknown"}
        elif by == "department":
            keys = {commune.department if commune else "unknown"}
        elif by == "activity":
            keys = {a for o in offers.get(pk, ()) for a in activities.get(o, ())} or {"unknown"}
        elif by == "establishment":
            keys = {establishments[o] for o in offers.get(pk, ()) if o in establishments} or {"unknown"}
        else:
            keys = {r.assignment or "unknown" for r in recs}
        stale = place.updated is None or place.updated < cut
        for key in keys:
            g = groups.setdefault(key, {"key": key, "beds": 0, "places": 0, "locations": 0, "staleLocations": 0})
            if by == "region" and key in REGIONS:
                g["label"] = REGIONS[key]
            mine = [r for r in recs if by != "temporary-assignment" or (r.assignment or "unknown") == key]
            g["beds"] += sum(r.nb for r in mine if r.nature == "01")
            g["places"] += sum(r.nb for r in mine if r.nature == "02")
            g["locations"] += 1
            g["staleLocations"] += stale
    return {"by": by, "capacityStatus": status, "temporalityCapacity": temporality,
            "generatedAt": now.isoformat(timespec="seconds"), "staleAfterHours": stale_after_h,
            "groups": sorted(groups.values(), key=lambda g: g["key"])}


def stale_places(conn: Connection, *, profile: int = 1, stale_after_h: float = 24,
                 now: datetime | None = None) -> list[dict]:
    """Places with capacities whose latest capacityUpdateDate is older than ``stale_after_h``."""
    cut = stamp((now or datetime.now(UTC)) - timedelta(hours=stale_after_h))
    return [{"location": f"Location/{p.rid}", "lastCapacityUpdate": p.updated}
            for p in sorted(_places(conn, profile).values(), key=lambda p: (p.updated or "", p.rid))
            if p.records and (p.updated is None or p.updated < cut)]

