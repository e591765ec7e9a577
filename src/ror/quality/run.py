"""``ror quality run``: one scan of the store, the anomalies it finds raised as ``Task`` (ror-task) through
the normal write path, and the indicator counts stored per (region, department, sector) cell.

The scan reads the current resources in batches by primary key inside one read transaction (one
snapshot). Each anomaly has a deterministic Task id (rule, focus, element), so a re-run finds the Task it
raised: nothing is written when nothing changed (no new version), a Task whose anomaly disappeared is
closed (``completed``/businessStatus ``08`` Corrigé; ``cancelled`` when its focus is gone), and a Task closed
as corrected whose anomaly comes back is reopened. Tasks a person closed otherwise (rejected: judged
unfounded, spec §2.4 of the IG notes) are left closed.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, Engine, insert, select

from ror.fhirdates import now_stamp, parse_range, stamp
from ror.geo import load_communes
from ror.profiles.validation import Validator
from ror.quality import rules
from ror.quality.schema import quality_indicator, quality_run
from ror.store import repository
from ror.store.engine import current_tx, write_transaction
from ror.store.schema import resource
from ror.terminology.cache import Terminology

CHECKED_TYPES = ("Organization", "HealthcareService", "Location")
TASK_PREFIX = "rq-"
REQUESTER = "ROR national - contrôle qualité"
TASK_PROFILE = rules.SD + "ror-task"
R350 = "https://mos.esante.gouv.fr/NOS/TRE_R350-ThematiqueAnomalie/FHIR/TRE-R350-ThematiqueAnomalie"
R349 = "https://mos.esante.gouv.fr/NOS/TRE_R349-ActionAnomalie/FHIR/TRE-R349-ActionAnomalie"
R352 = "https://mos.esante.gouv.fr/NOS/TRE_R352-StatutMetierAnomalie/FHIR/TRE-R352-StatutMetierAnomalie"
INPUT_CS = "https://interop.esante.gouv.fr/ig/fhir/ror/CodeSystem/input-task-ror-codesystem"
THEMES = {"01": "Complétude", "05": "Structuration"}
ACTIONS = {"AJO": "Ajout", "COR": "Correction"}
OPEN_STATUSES = frozenset({"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"})
# Rules (Task input ruleErrorId): NOS conformity (spec §3.5) and the offer completeness criterion (spec §4.2).
RULES = {"NOS-RETIRED": ("05", "COR"), "NOS-UNKNOWN": ("05", "COR"), "CPL-OFFER": ("01", "AJO")}
_ORG_PERIOD = "http://hl7.org/fhir/StructureDefinition/organization-period"
_INSEE = "http://interopsante.org/fhir/StructureDefinition/FrAddressInseeCode"


@dataclass
class Org:
    parent: str | None
    category: str | None  # J55 category when the organisation is an EG
    commune: str | None
    region: str | None
    closed: bool


@dataclass
class Place:
    pk: int
    region: str | None
    commune: str | None
    address_ok: bool
    has_capacity: bool
    updated: str | None  # latest capacityUpdateDate (stamp)
    manager: str | None


@dataclass
class Offer:
    pk: int
    rid: str
    region: str | None
    org: str | None
    champ: str | None
    places: list[str]
    body: dict  # kept for the flags until the places are all known


@dataclass
class Anomaly:
    rule: str
    focus: str  # Type/id
    region: str | None
    description: str
    path: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        digest = hashlib.sha256(f"{self.rule}|{self.focus}|{self.path or ''}".encode()).hexdigest()[:32]
        return TASK_PREFIX + digest


@dataclass
class RunResult:
    run_id: int
    counts: Counter
    anomalies: list[Anomaly]
    cells: dict[tuple[str, str, str], Counter]


def _commune_of(address_list) -> str | None:
    for a in address_list or []:
        if not isinstance(a, dict):
            continue
        for e in a.get("extension") or []:
            if isinstance(e, dict) and e.get("url") == _INSEE:
                code = (e.get("valueCoding") or {}).get("code")
                if code:
                    return code
    return None


def _fhir_now(now: datetime) -> str:
    return now.astimezone(ZoneInfo("Europe/Paris")).isoformat(timespec="seconds")


def _resolve(body: dict, path: str):
    """The element at a validator FHIRPath such as ``HealthcareService.characteristic[0].coding[1]``."""
    node = body
    for seg in path.split(".")[1:]:
        m = re.fullmatch(r"([A-Za-z0-9_]+)(?:\[(\d+)\])?", seg)
        if not m or not isinstance(node, dict):
            return None
        node = node.get(m.group(1))
        if m.group(2) is not None:
            node = node[int(m.group(2))] if isinstance(node, list) and int(m.group(2)) < len(node) else None
        elif isinstance(node, list):
            node = node[0] if len(node) == 1 else None
    return node


class Scan:
    def __init__(self, conn: Connection, *, region: str | None, now: datetime, stale_after_h: float,
                 validator: Validator, batch: int):
        self.conn, self.region, self.now, self.batch = conn, region, now, batch
        self.validator = validator
        self.resolver = rules.Resolver(conn, validator.terminology)
        self.cut = stamp(now - timedelta(hours=stale_after_h))
        self.today = now.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d")
        self.at = now.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%dT%H:%M:%S")
        self.orgs: dict[str, Org] = {}
        self.places: dict[str, Place] = {}
        self.offers: list[Offer] = []
        self.nos: dict[tuple[str, str], list[rules.CodeProblem]] = {}  # (type, id) -> problems
        self.regions: dict[tuple[str, str], str | None] = {}
        self.tasks: dict[str, dict] = {}  # all stored Tasks
        self.cell_index: dict[tuple[str, str], tuple[str, str, str]] = {}

    def mine(self, region: str | None) -> bool:
        return self.region is None or region == self.region

    def run(self) -> None:
        last = 0
        while True:
            rows = self.conn.execute(select(resource.c.pk, resource.c.rtype, resource.c.rid, resource.c.region,
                                            resource.c.body).where(resource.c.pk > last)
                                     .order_by(resource.c.pk).limit(self.batch)).all()
            if not rows:
                return
            checked = []
            for r in rows:
                body = orjson.loads(r.body)
                if r.rtype == "Task":
                    self.tasks[r.rid] = body
                    continue
                self.regions[(r.rtype, r.rid)] = r.region
                if r.rtype == "Organization":
                    self._org(r.rid, r.region, body)
                elif r.rtype == "Location":
                    self._place(r.pk, r.rid, r.region, body)
                elif r.rtype == "HealthcareService":
                    self.offers.append(Offer(r.pk, r.rid, r.region, _ref(body.get("providedBy"), "Organization"),
                                             rules.first_code(body.get("type"), rules.R227),
                                             [x for x in (_ref(loc, "Location") for loc in body.get("location") or [])
                                              if x], body))
                if r.rtype in CHECKED_TYPES and self.mine(r.region):
                    checked.append(body)
            for body, issues in zip(checked, self.validator.validate_many(checked, self.conn, at=self.at),
                                    strict=True):
                problems = []
                for i in issues:
                    if i.code != "code-invalid" or i.severity not in ("error", "warning"):
                        continue
                    path = i.expression[0] if i.expression else body["resourceType"]
                    c = _resolve(body, path)
                    system, code = (c.get("system", ""), c.get("code", "")) if isinstance(c, dict) else \
                        ("", c if isinstance(c, str) else "?")
                    kind = rules.classify(i.diagnostics)
                    if kind == "unknown" and self.resolver.retired(system, str(code)):
                        kind = "retired"  # dropped from the JDV because retired from its TRE
                    problems.append(rules.CodeProblem(path, system, str(code), kind))
                self.nos[(body["resourceType"], body["id"])] = problems
            last = rows[-1].pk

    def _org(self, rid: str, region: str | None, body: dict) -> None:
        category = rules.first_code(body.get("type"), rules.R66) or rules.first_code(body.get("type"), rules.R02)
        closed = False
        for e in rules.ext(body, _ORG_PERIOD):
            end = (e.get("valuePeriod") or {}).get("end")
            if isinstance(end, str) and end[:10] < self.today:
                closed = True
        self.orgs[rid] = Org(_ref(body.get("partOf"), "Organization"), category, _commune_of(body.get("address")),
                             region, closed)

    def _place(self, pk: int, rid: str, region: str | None, body: dict) -> None:
        commune = None
        for e in rules.ext(body, rules.SD + "ror-commune-cog"):
            commune = rules.first_code(e.get("valueCodeableConcept"), rules.R13) or commune
        commune = commune or _commune_of([body.get("address")])
        updated, has_capacity = None, False
        for cap in rules.ext(body, rules.SD + "ror-location-supported-capacity"):
            has_capacity = True
            for e in rules.ext(cap, "capacityUpdateDate"):
                rng = parse_range(e.get("valueDateTime", ""), "UTC") if e.get("valueDateTime") else None
                if rng and (updated is None or rng[1] > updated):
                    updated = rng[1]
        self.places[rid] = Place(pk, region, commune, rules.address_complete(body.get("address")), has_capacity,
                                 updated, _ref(body.get("managingOrganization"), "Organization"))

    # -- derived -----------------------------------------------------------------------------------
    def establishment(self, org: str | None) -> str | None:
        """The EG on the providedBy/partOf chain (an Organization with a J55 category), if any."""
        for _ in range(10):
            if org is None or org not in self.orgs:
                return None
            if self.orgs[org].category is not None:
                return org
            org = self.orgs[org].parent
        return None


def _ref(ref, rtype: str) -> str | None:
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        parts = ref["reference"].split("/")
        if len(parts) >= 2 and parts[-2] == rtype:
            return parts[-1]
    return None


def _task(a: Anomaly, now: str) -> dict:
    theme, action = RULES[a.rule]
    inputs = [{"type": {"coding": [{"system": INPUT_CS, "code": "systemRequester"}]}, "valueString": REQUESTER},
              {"type": {"coding": [{"system": INPUT_CS, "code": "ruleErrorId"}]}, "valueString": a.rule}]
    inputs += [{"type": {"coding": [{"system": INPUT_CS, "code": "errorValue"}]}, "valueString": v} for v in a.errors]
    if a.path:
        inputs.append({"type": {"coding": [{"system": INPUT_CS, "code": "pathElementError"}]},
                       "valueExpression": {"language": "text/fhirpath", "expression": a.path}})
    meta = {"profile": [TASK_PROFILE]}
    if a.region:
        meta["tag"] = [{"system": repository.REGION_SYSTEM, "code": a.region}]
    return {"resourceType": "Task", "id": a.task_id, "meta": meta,
            "status": "requested",
            "businessStatus": {"coding": [{"system": R352, "code": "02", "display": "A traiter"}]},
            "intent": "order",
            "code": {"coding": [{"system": R350, "code": theme, "display": THEMES[theme]}]},
            "description": a.description,
            "focus": {"reference": a.focus},
            "authoredOn": now, "lastModified": now,
            "reasonCode": {"coding": [{"system": R349, "code": action, "display": ACTIONS[action]}]},
            "input": inputs}


_PROBLEM_KEYS = ("code", "description", "focus", "reasonCode", "input", "meta")


def _same_problem(old: dict, new: dict) -> bool:
    def norm(t):
        meta = {k: v for k, v in (t.get("meta") or {}).items() if k in ("profile", "tag")}
        return orjson.dumps({**{k: t.get(k) for k in _PROBLEM_KEYS}, "meta": meta}, option=orjson.OPT_SORT_KEYS)
    return norm(old) == norm(new)


def _status_code(t: dict) -> str | None:
    return rules.first_code(t.get("businessStatus"), R352)


def run(engine: Engine, *, region: str | None = None, now: datetime | None = None, stale_after_h: float = 24,
        validator: Validator | None = None, batch: int = 1000) -> RunResult:
    """Scan, reconcile the quality Tasks, store the indicators; returns the run's figures."""
    now = now or datetime.now(UTC)
    started = now_stamp()
    validator = validator or Validator(Terminology(), check_references=False)
    conn = engine.connect()
    try:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            snap = current_tx(conn)
            scan = Scan(conn, region=region, now=now, stale_after_h=stale_after_h, validator=validator, batch=batch)
            scan.run()
            anomalies, cells = _evaluate(scan)
    finally:
        conn.close()
    fhir_now = _fhir_now(now)
    counts: Counter = Counter()
    writes: list[dict] = []
    wanted = {a.task_id: a for a in anomalies}
    for tid, a in sorted(wanted.items()):
        new = _task(a, fhir_now)
        old = scan.tasks.get(tid)
        if old is None:
            writes.append(new)
            counts["created"] += 1
            continue
        reopen = old.get("status") == "completed" and _status_code(old) == "08"
        if old.get("status") not in OPEN_STATUSES and not reopen:
            counts["unchanged"] += 1  # closed by a person (e.g. judged unfounded): left alone
            continue
        if _same_problem(old, new) and not reopen:
            counts["unchanged"] += 1
            continue
        body = {k: v for k, v in old.items() if k != "meta"}
        body.update({k: new[k] for k in _PROBLEM_KEYS if k != "meta"})
        body["meta"] = {**{k: v for k, v in (old.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")},
                        **new["meta"]}
        body["lastModified"] = fhir_now
        if reopen:
            body["status"], body["businessStatus"] = new["status"], new["businessStatus"]
        writes.append(body)
        counts["updated"] += 1
    for tid, old in sorted(scan.tasks.items()):
        if not tid.startswith(TASK_PREFIX) or tid in wanted or old.get("status") not in OPEN_STATUSES:
            continue
        focus = (old.get("focus") or {}).get("reference", "")
        ftype, _, fid = focus.partition("/")
        if not scan.mine(scan.regions.get((ftype, fid), repository.region_of(old))):
            continue
        body = {k: v for k, v in old.items() if k != "meta"}
        body["meta"] = {k: v for k, v in (old.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
        body["lastModified"] = fhir_now
        if (ftype, fid) in scan.regions:
            body["status"] = "completed"
            body["businessStatus"] = {"coding": [{"system": R352, "code": "08", "display": "Corrigé"}]}
        else:
            body["status"] = "cancelled"
        writes.append(body)
        counts["closed"] += 1
    final = dict(scan.tasks)
    final.update({t["id"]: t for t in writes})
    for t in final.values():
        if t.get("status") not in OPEN_STATUSES:
            continue
        ftype, _, fid = ((t.get("focus") or {}).get("reference") or "").partition("/")
        cell = _cell_of(scan, ftype, fid, repository.region_of(t))
        if cell is not None and scan.mine(cell[0] if cell[0] != "unknown" else None):
            cells[cell]["openAnomalies"] += 1
    with write_transaction(engine) as wconn:
        if writes:
            repository.write_batch(wconn, [repository.prepare(t) for t in writes])
        run_id = wconn.execute(insert(quality_run).values(
            started_at=started, finished_at=now_stamp(), region=region, snapshot_tx=snap,
            created=counts["created"], updated=counts["updated"], closed=counts["closed"],
            unchanged=counts["unchanged"])).inserted_primary_key[0]
        if cells:
            wconn.execute(insert(quality_indicator), [
                {"run_id": run_id, "region": k[0], "department": k[1], "sector": k[2],
                 "counts": orjson.dumps(dict(sorted(v.items()))).decode()} for k, v in sorted(cells.items())])
    return RunResult(run_id, counts, anomalies, cells)


def _cell_of(scan: Scan, rtype: str, rid: str, fallback_region: str | None) -> tuple[str, str, str] | None:
    return scan.cell_index.get((rtype, rid)) or (fallback_region or "unknown", "unknown", "non-defini")


def _evaluate(scan: Scan) -> tuple[list[Anomaly], dict[tuple[str, str, str], Counter]]:
    communes = load_communes()

    def dept(commune: str | None) -> str:
        c = communes.get(commune or "")
        return c.department if c else "unknown"

    def sector_of_eg(eg: str | None) -> str | None:
        if eg is None:
            return None
        return rules.DOMAIN_OF_CATEGORY.get(scan.orgs[eg].category or "", "non-defini")

    cells: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    index: dict[tuple[str, str], tuple[str, str, str]] = {}
    anomalies: list[Anomaly] = []
    place_offers: dict[str, list[Offer]] = defaultdict(list)
    for o in sorted(scan.offers, key=lambda o: o.pk):
        for p in o.places:
            place_offers[p].append(o)
    eg_statuses: dict[str, list[str]] = defaultdict(list)
    # Offers (spec §4.2): population = not definitively closed, with a region, attached to an EG.
    for o in scan.offers:
        eg = scan.establishment(o.org)
        places = [scan.places[p] for p in o.places if p in scan.places]
        commune = next((p.commune for p in places if p.commune), None) or (scan.orgs[eg].commune if eg else None)
        sector = sector_of_eg(eg)
        if sector in (None, "non-defini"):
            sector = rules.SECTOR_OF_CHAMP.get(o.champ or "", "non-defini")
        cell = (o.region or "unknown", dept(commune), sector)
        index[("HealthcareService", o.rid)] = cell
        if not scan.mine(o.region):
            continue
        closed = o.body.get("active") is False or any(
            rules.first_code(c, rules.R286) == "DEF" for c in o.body.get("characteristic") or [])
        if closed or o.region is None or eg is None:
            cells[cell]["offersOutsidePopulation"] += 1
            continue
        flags = rules.offer_flags(o.body, scan.resolver, any(p.address_ok for p in places),
                                  scan.orgs[eg].category)
        status = rules.offer_status(flags)
        eg_statuses[eg].append(status)
        cells[cell]["offers"] += 1
        cells[cell][{"complete": "offersComplete", "in-progress": "offersInProgress",
                     "to-do": "offersToDo"}[status]] += 1
        if status != "complete":
            missing = [f for f in rules.FLAGS if flags[f] is False]
            anomalies.append(Anomaly("CPL-OFFER", f"HealthcareService/{o.rid}", o.region,
                                     "Offer not complete (ANS completeness criterion): "
                                     + "; ".join(rules.FLAG_TEXT[f] for f in missing), errors=missing))
    # Organisations: EG status (spec §4.3) over their offers.
    for rid, org in scan.orgs.items():
        eg = scan.establishment(rid)
        sector = sector_of_eg(eg) or "non-defini"
        cell = (org.region or "unknown", dept(org.commune or (scan.orgs[eg].commune if eg else None)), sector)
        index[("Organization", rid)] = cell
        if org.category is None or org.closed or not scan.mine(org.region):
            continue
        status = rules.establishment_status(eg_statuses.get(rid, []))
        cells[cell]["establishments"] += 1
        cells[cell][{"complete": "establishmentsComplete", "in-progress": "establishmentsInProgress",
                     "to-do": "establishmentsToDo"}[status]] += 1
    # Places: capacities up to date (capacity_stale_after_h).
    for rid, p in scan.places.items():
        offers = place_offers.get(rid, [])
        if offers:
            sector = index[("HealthcareService", offers[0].rid)][2]
        else:
            sector = sector_of_eg(scan.establishment(p.manager)) or "non-defini"
        cell = (p.region or "unknown", dept(p.commune), sector)
        index[("Location", rid)] = cell
        if not scan.mine(p.region):
            continue
        cells[cell]["locations"] += 1
        if p.has_capacity:
            cells[cell]["locationsWithCapacity"] += 1
            if p.updated is not None and p.updated >= scan.cut:
                cells[cell]["locationsCapacityUpToDate"] += 1
    # NOS conformity (spec §3.5): every checked resource, each faulty coding one anomaly.
    for (rtype, rid), problems in sorted(scan.nos.items()):
        cell = index.get((rtype, rid), (scan.regions.get((rtype, rid)) or "unknown", "unknown", "non-defini"))
        cells[cell]["nosChecked"] += 1
        if not problems:
            cells[cell]["nosConform"] += 1
        for pb in problems:
            cells[cell]["codesRetired" if pb.kind == "retired" else "codesUnknown"] += 1
            anomalies.append(Anomaly("NOS-RETIRED" if pb.kind == "retired" else "NOS-UNKNOWN", f"{rtype}/{rid}",
                                     scan.regions.get((rtype, rid)), pb.text(), path=pb.path,
                                     errors=[f"{pb.system}|{pb.code}"]))
    scan.cell_index = index
    return anomalies, cells
