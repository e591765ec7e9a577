"""FHIR REST interactions of the ROR server, independent of the web framework.

Each interaction takes parsed input and returns a ``Response`` (status, body bytes, headers) or
raises a ``RorError``. Writes run in one database transaction; ``transaction`` Bundles run all their
entries in one, so they are atomic.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Connection, Engine, literal

from ror.capacity import history as capacity_history
from ror.capacity import protocol as capacity_protocol
from ror.errors import (
    InvalidRequest,
    InvalidResource,
    MethodNotAllowed,
    MultipleMatches,
    NotFound,
    PreconditionFailed,
    RorError,
    UnsupportedMediaType,
    UnsupportedResourceType,
)
from ror.fhir import bundles
from ror.fhir.patch import apply_fhirpath_patch, apply_json_patch
from ror.fhir.rights import FULL_ACCESS, Caller, check_write, establishment_keys
from ror.fhirdates import now_stamp, stamp_to_instant
from ror.profiles.searchparams import RESOURCE_TYPES, registry
from ror.profiles.validation import Validator, raise_if_errors
from ror.search.execute import SearchResult, query_fingerprint, redacted, run_search
from ror.search.plan import SearchPlan, build_plan
from ror.search.visibility import Visibility, hidden_probe
from ror.settings import Settings
from ror.store import repository
from ror.store.engine import SNAPSHOT, compiled_params, current_tx, dbapi_rows, is_sqlite
from ror.store.group_commit import Prepare, Together, grouped_write, grouped_write_soon
from ror.store.indexer import index_rows
from ror.store.schema import LIVE_TX

FHIR_JSON = "application/fhir+json"
AUDIT_HEADER = "X-Ror-Audit"  # resource types and counts returned, for the trust space's audit trail
JSON_PATCH = "application/json-patch+json"
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# Interactions per type: those of the IG's ror-serveur CapabilityStatement, plus vread and
# history-instance (versions are kept anyway, and clients use them to audit a change).
INTERACTIONS = {
    "Location": ("read", "vread", "history-instance", "search-type", "create", "update", "patch"),
    "HealthcareService": ("read", "vread", "history-instance", "search-type", "create", "update", "patch"),
    "Organization": ("read", "vread", "history-instance", "search-type", "create", "update", "patch"),
    "Practitioner": ("read", "vread", "history-instance", "search-type", "create", "update", "patch"),
    "PractitionerRole": ("read", "vread", "history-instance", "search-type", "create", "update", "patch"),
    "Task": ("read", "vread", "history-instance", "search-type", "create", "update", "patch"),
}


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    last_updated: str | None = None  # stamp of the version returned, for Bundle responses


def check_type(rtype: str) -> None:
    if rtype not in RESOURCE_TYPES:
        raise UnsupportedResourceType(f"Resource type '{rtype}' is not served by ROR national "
                                      f"(served: {', '.join(RESOURCE_TYPES)})", expression=rtype)


def check_id(rid: str) -> None:
    if not _ID_RE.match(rid):
        raise InvalidRequest(f"'{rid}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})", expression="id")


def parse_json(raw: bytes, what: str = "body") -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"The {what} is not valid JSON: {e}") from None


def check_resource(res: object, rtype: str, rid: str | None = None, where: str = "") -> dict:
    """Structural checks every write needs (profile validation is in ror.profiles)."""
    if not isinstance(res, dict):
        raise InvalidResource(f"{where or 'The body'} must be a JSON object (a FHIR resource)")
    got = res.get("resourceType")
    if got != rtype:
        raise InvalidResource(f"{where or 'The body'} has resourceType '{got}' where {rtype} is expected",
                              expression=f"{rtype}.resourceType" if got else rtype)
    if rid is not None:
        if res.get("id") is None:
            raise InvalidResource(f"The resource must carry its id '{rid}' (FHIR update)", expression=f"{rtype}.id")
        if res.get("id") != rid:
            raise InvalidResource(f"The resource id '{res.get('id')}' does not match the URL id '{rid}'",
                                  expression=f"{rtype}.id")
    elif "id" in res and (not isinstance(res["id"], str) or not _ID_RE.match(res["id"])):
        raise InvalidResource(f"'{res['id']}' is not a valid FHIR id", expression=f"{rtype}.id")
    meta = res.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise InvalidResource("meta must be an object", expression=f"{rtype}.meta")
    for key, value in res.items():
        if value in (None, [], {}, ""):
            raise InvalidResource(f"Element '{key}' is empty: FHIR JSON omits absent elements",
                                  expression=f"{rtype}.{key}")
    return res


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.lru_cache(maxsize=4096)
def _http_day(day: str) -> str:
    """``Thu, 26 Nov 2026`` for ``2026-11-26``, once a day: resources share days (``http_date`` 1.24 → 0.42 µs)."""
    y, m, d = int(day[:4]), int(day[5:7]), int(day[8:10])
    return f"{_DAYS[date(y, m, d).weekday()]}, {day[8:10]} {_MONTHS[m - 1]} {day[:4]}"


def http_date(stamp: str) -> str:
    """RFC 9110 date of a store stamp (``2026-11-25T10:00:00.000Z``), formatted directly: it is on every
    read, and ``email.utils`` took a tenth of a read's CPU (profiled)."""
    if len(stamp) == 24 and stamp[-1] == "Z":
        return f"{_http_day(stamp[:10])} {stamp[11:19]} GMT"
    return format_datetime(datetime.fromisoformat(stamp.replace("Z", "+00:00")), usegmt=True)


def version_headers(version: int, stamp: str) -> dict[str, str]:
    return {"ETag": f'W/"{version}"', "Last-Modified": http_date(stamp)}


def _read_response(rtype: str, s: repository.Stored) -> Response:
    return Response(200, s.body, {**version_headers(s.version, s.last_updated), AUDIT_HEADER: f"{rtype}=1"},
                    s.last_updated)


def parse_if_match(value: str | None) -> int | None:
    if not value:
        return None
    m = re.fullmatch(r'\s*(?:W/)?"(\d+)"\s*', value)
    if not m:
        raise InvalidRequest(f"If-Match must be an ETag such as W/\"3\", not {value!r}", expression="If-Match")
    return int(m.group(1))


@dataclass
class _Patched:
    rid: str
    pk: int
    version: int  # the version the patch was applied to
    before: dict
    after: dict
    keys: set[str] | None  # establishments of ``after``, when the rights check looked them up
    prepared: repository.Prepared
    events: list | None  # capacity changes (Location)


@dataclass
class _AheadEntry:
    """A PATCH computed ahead of the write lock: a transaction's entry, or a single PATCH (``_PatchWrite``)."""

    index: int  # in the Bundle
    rtype: str
    pairs: list[tuple[str, str]] | None  # the conditional criteria, to match again under the lock
    expected: int | None  # If-Match
    patched: _Patched
    caller: Caller
    base: str


@dataclass
class _PatchWrite:
    """A single PATCH queued for the writer (``grouped_write``, or ``grouped_write_soon`` from the API). ``prepare``
    computes it ahead of the write lock (``ahead``: None if that failed, judged again under the lock), called by the
    thread leading its group (``_prepare_patches``); computed ahead, it can be written in one batch with the other
    PATCHes of its group (``_patches_together``), else ``alone`` applies it by itself, with ``ahead`` if still
    current."""

    alone: Callable[[Connection, _AheadEntry | None], Response]
    prepare: Callable[[Connection], _AheadEntry | None]
    ahead: _AheadEntry | None = None

    def __call__(self, conn: Connection) -> Response:
        return self.alone(conn, self.ahead)


class FhirService:
    def __init__(self, engine: Engine, settings: Settings, validator: Validator | None = None):
        self.engine = engine
        self.settings = settings
        # Every write is validated against the ROR profiles (issue 3); shared with $validate.
        self.validator = validator or Validator(local_timezone=settings.local_timezone)
        self._match_token = functools.lru_cache(maxsize=_MATCH_TOKENS)(self._token_of)

    def _validate(self, conn: Connection, res: dict, deferred: list | None) -> None:
        """422 with every issue if ``res`` breaks a profile rule. In a transaction the check waits for
        all entries to be written (``deferred``), so that entries may reference one another."""
        if not self.settings.validate_writes:
            return
        if deferred is not None:
            deferred.append(res)
        else:
            raise_if_errors(self.validator.validate(res, conn))

    def _write(self, work: Callable[[Connection], Response], together: Together | None = None,
               prepare: Prepare | None = None) -> Response:
        """``work`` in a write transaction, shared with the writes queued at the same time (``grouped_write``,
        ``prepare`` first); run again when PostgreSQL chose it as the victim of a deadlock or of a serialisation
        failure (two transactions locking the same resources in different orders)."""
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return grouped_write(self.engine, work, together, prepare)
            except Exception as e:
                time.sleep(_retry_delay(e, attempt))
        raise AssertionError("unreachable")

    async def _write_soon(self, work: Callable[[Connection], Response], together: Together | None = None,
                          prepare: Prepare | None = None) -> Response:
        """``_write`` from the event loop, without a thread per write (``grouped_write_soon``)."""
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                return await grouped_write_soon(self.engine, work, together, prepare)
            except Exception as e:
                await asyncio.sleep(_retry_delay(e, attempt))
        raise AssertionError("unreachable")

    @contextmanager
    def _reading(self, snapshot: bool = False):
        """A read transaction; with ``snapshot``, one whose statements all see the same state on PostgreSQL too
        (``one_snapshot``): a search's first page then reads the live index rows, as on SQLite."""
        with self.engine.connect() as conn:
            if snapshot and not is_sqlite(conn):
                conn.execution_options(**SNAPSHOT)
            with conn.begin():
                yield conn

    # -- reads ----------------------------------------------------------------------------------
    def _seen(self, conn: Connection, caller: Caller, rtype: str, rid: str, versions: list) -> list:
        """``versions`` as the caller's profile may see them; 404 when the resource is hidden to it
        (a hidden resource is not acknowledged to exist)."""
        if caller.profile == 1:
            return versions
        tx = current_tx(conn)
        probe = hidden_probe(conn.dialect, caller.profile, rtype)
        params = {"snap": tx, "pk": versions[0].pk}
        if probe is not None and conn.exec_driver_sql(probe.string, compiled_params(probe, params)).first():
            raise NotFound(f"{rtype}/{rid} is not known", expression=rtype)
        bodies = redacted(conn, Visibility(caller.profile, literal(tx)), [(v.pk, v.body) for v in versions])
        return [repository.Stored(v.pk, v.version, v.last_updated, b) for v, b in zip(versions, bodies, strict=True)]

    def read(self, rtype: str, rid: str, version: int | None = None, caller: Caller = FULL_ACCESS) -> Response:
        check_type(rtype)
        check_id(rid)
        if version is None and caller.profile == 1:  # the stored bytes as they are: one statement
            s = repository.read_now(self.engine, rtype, rid)
        else:
            with self._reading() as conn:
                s = repository.read(conn, rtype, rid) if version is None else \
                    repository.read_version(conn, rtype, rid, version)
                s = self._seen(conn, caller, rtype, rid, [s])[0]
        return _read_response(rtype, s)

    async def read_now_async(self, rtype: str, rid: str) -> Response:
        """``read`` of the current version by profile 1 (the stored bytes, one statement), its round trip awaited on
        the event loop: PostgreSQL (``repository.read_now_async``)."""
        check_type(rtype)
        check_id(rid)
        return _read_response(rtype, await repository.read_now_async(self.engine, rtype, rid))

    def history(self, rtype: str, rid: str, base: str, caller: Caller = FULL_ACCESS) -> Response:
        check_type(rtype)
        check_id(rid)
        with self._reading() as conn:
            versions = self._seen(conn, caller, rtype, rid, repository.history(conn, rtype, rid))
        return Response(200, bundles.history_bundle(base, rtype, rid, versions))

    def plan(self, rtype: str, pairs: list[tuple[str, str]], lenient: bool, profile: int = 1) -> SearchPlan:
        check_type(rtype)
        return build_plan(rtype, pairs, registry(), self.settings, lenient, profile)

    def search(self, rtype: str, pairs: list[tuple[str, str]], base: str, lenient: bool = False,
               caller: Caller = FULL_ACCESS) -> Response:
        plan = self.plan(rtype, pairs, lenient, caller.profile)
        with self._reading(snapshot=True) as conn:
            result = run_search(conn, plan, self.settings, query_fingerprint(rtype, pairs))
        return Response(200, bundles.searchset(base, rtype, pairs, result, plan.warnings),
                        {AUDIT_HEADER: result.audit_summary()})

    def search_result(self, conn: Connection, rtype: str, pairs: list[tuple[str, str]],
                      caller: Caller = FULL_ACCESS) -> SearchResult:
        plan = self.plan(rtype, pairs, lenient=False, profile=caller.profile)
        return run_search(conn, plan, self.settings, query_fingerprint(rtype, pairs))

    # -- writes ---------------------------------------------------------------------------------
    def create(self, rtype: str, raw: bytes, base: str, caller: Caller = FULL_ACCESS) -> Response:
        res = check_resource(parse_json(raw), rtype)
        return self._write(lambda conn: self._create(conn, rtype, res, base, caller))

    def _create(self, conn: Connection, rtype: str, res: dict, base: str, caller: Caller,
                rid: str | None = None, deferred: list | None = None) -> Response:
        check_type(rtype)
        res = {**res, "id": rid or str(uuid.uuid4())}
        keys = check_write(conn, caller, rtype, None, res)
        res = self._before_write(rtype, None, res)
        self._validate(conn, res, deferred)
        w = repository.write_batch(conn, [repository.prepare(res)])[0]
        self._after_write(conn, caller, rtype, None, res, w, keys)
        return self._written(w, base, 201)

    def update(self, rtype: str, rid: str, raw: bytes, base: str, if_match: str | None = None,
               caller: Caller = FULL_ACCESS) -> Response:
        check_type(rtype)
        check_id(rid)
        res = check_resource(parse_json(raw), rtype, rid)
        return self._write(lambda conn: self._update(conn, rtype, rid, res, base, parse_if_match(if_match), caller))

    def _update(self, conn: Connection, rtype: str, rid: str, res: dict, base: str, expected: int | None,
                caller: Caller, deferred: list | None = None) -> Response:
        cur = repository.fetch_current(conn, [(rtype, rid)], lock=True).get((rtype, rid))
        if expected is not None and (cur is None or cur.version != expected):
            raise PreconditionFailed(f"{rtype}/{rid} is at version {cur.version if cur else 'none'}, "
                                     f"not {expected} (If-Match)", expression=rtype)
        before = orjson.loads(repository.read(conn, rtype, rid).body) if cur else None
        keys = check_write(conn, caller, rtype, before, res)
        res = self._before_write(rtype, before, res)
        self._validate(conn, res, deferred)
        w = repository.write_batch(conn, [repository.prepare(res)], {(rtype, rid): cur} if cur else {})[0]
        self._after_write(conn, caller, rtype, before, res, w, keys)
        return self._written(w, base, 201 if w.outcome == "created" else 200, conn)

    def patch(self, rtype: str, rid: str, raw: bytes, content_type: str, base: str,
              if_match: str | None = None, caller: Caller = FULL_ACCESS) -> Response:
        return self._write(*self._patch_write(rtype, rid, raw, content_type, base, if_match, caller))

    async def patch_soon(self, rtype: str, rid: str, raw: bytes, content_type: str, base: str,
                         if_match: str | None = None, caller: Caller = FULL_ACCESS) -> Response:
        """``patch`` from the event loop, without a thread of its own (``_write_soon``)."""
        return await self._write_soon(*self._patch_write(rtype, rid, raw, content_type, base, if_match, caller))

    def conditional_patch(self, rtype: str, pairs: list[tuple[str, str]], raw: bytes, content_type: str,
                          base: str, if_match: str | None = None, caller: Caller = FULL_ACCESS) -> Response:
        return self._write(*self._conditional_patch_write(rtype, pairs, raw, content_type, base, if_match, caller))

    async def conditional_patch_soon(self, rtype: str, pairs: list[tuple[str, str]], raw: bytes, content_type: str,
                                     base: str, if_match: str | None = None, caller: Caller = FULL_ACCESS) -> Response:
        """``conditional_patch`` from the event loop, without a thread of its own (``_write_soon``)."""
        return await self._write_soon(*self._conditional_patch_write(rtype, pairs, raw, content_type, base, if_match,
                                                                     caller))

    def _patch_write(self, rtype: str, rid: str, raw: bytes, content_type: str, base: str, if_match: str | None,
                     caller: Caller) -> tuple[_PatchWrite, Together, Prepare]:
        check_type(rtype)
        check_id(rid)
        patcher = self._patcher(raw, content_type, rtype)
        return self._write_patch(rtype, lambda conn: rid, None, patcher, parse_if_match(if_match), caller, base)

    def _conditional_patch_write(self, rtype: str, pairs: list[tuple[str, str]], raw: bytes, content_type: str,
                                 base: str, if_match: str | None,
                                 caller: Caller) -> tuple[_PatchWrite, Together, Prepare]:
        check_type(rtype)
        if not pairs:
            raise InvalidRequest("A conditional patch needs search criteria (e.g. ?identifier=…)")
        patcher = self._patcher(raw, content_type, rtype)
        return self._write_patch(rtype, lambda conn: self._single_match(conn, rtype, pairs), pairs, patcher,
                                 parse_if_match(if_match), caller, base)

    def _write_patch(self, rtype: str, target: Callable[[Connection], str], pairs: list[tuple[str, str]] | None,
                     patcher, expected: int | None, caller: Caller, base: str) -> tuple[_PatchWrite, Together, Prepare]:
        """A single PATCH, as ``_write`` takes it: computed ahead by the thread leading its write group, then
        written with the others of the group in one batch, or alone (``_PatchWrite``)."""
        def prepare(conn: Connection) -> _AheadEntry | None:
            ahead = self._ahead(conn, rtype, target, patcher, caller)
            return None if ahead is None else _AheadEntry(0, rtype, pairs, expected, ahead, caller, base)

        def alone(conn: Connection, ahead: _AheadEntry | None) -> Response:
            return self._patch(conn, rtype, target(conn), patcher, base, expected, caller,
                               ahead=ahead.patched if ahead else None)

        return _PatchWrite(alone, prepare), self._patches_together, self._prepare_patches

    def _prepare_patches(self, writes: list[_PatchWrite]) -> None:
        """The PATCHes of a write group computed ahead, one after the other, in one read transaction. If the
        database fails there, the PATCHes not computed yet are computed under the write lock, each alone, where
        the error is reported to its own write."""
        try:
            with self._reading() as conn:
                for w in writes:
                    w.ahead = w.prepare(conn)
        except Exception:
            log.warning("PATCHes not computed ahead of the write lock", exc_info=True)

    def _patches_together(self, conn: Connection, writes: list[_PatchWrite]) -> list[Response | None]:
        """The PATCHes of a write group computed ahead, written in one batch (as a Bundle's are): those whose
        target is still the one matched, at the version patched, with If-Match holding, one per resource. None
        for the others, which the group applies alone afterwards (redone on the version they then find)."""
        computed = [i for i, w in enumerate(writes) if w.ahead is not None]
        current, fresh = self._still_current(conn, [writes[i].ahead for i in computed])
        batch: dict[tuple[str, str], int] = {}
        for i, ok in zip(computed, fresh, strict=True):
            a = writes[i].ahead
            if ok and (a.expected is None or a.expected == a.patched.version):
                batch.setdefault((a.rtype, a.patched.rid), i)
        out: list[Response | None] = [None] * len(writes)
        if batch:
            for i, response in zip(batch.values(), self._write_prepared(
                    conn, [writes[i].ahead for i in batch.values()], current), strict=True):
                out[i] = response
        return out

    def _ahead(self, conn: Connection, rtype: str, target: Callable[[Connection], str], patcher,
               caller: Caller) -> _Patched | None:
        """The patch computed on the current version before taking the write lock, so that the worker
        processes of a server patch, check and validate in parallel and hold the lock only to write;
        used if the version is still current under the lock (optimistic concurrency), else redone."""
        try:
            return self._patched(conn, rtype, target(conn), patcher, caller, None)
        except RorError:  # judged again under the lock, on the version it will be applied to
            return None

    def _single_match(self, conn: Connection, rtype: str, pairs: list[tuple[str, str]]) -> str:
        """The one resource a conditional write targets, looked up with full visibility: what the
        caller may write is decided by its write rights, not by its read profile."""
        token = self._match_token(rtype, tuple(pairs))
        if token is not None:
            rids = [rid for (rid,) in dbapi_rows(conn, _BY_TOKEN, (*token, rtype))]
        else:
            plan = self._match_plan(rtype, pairs)
            rids = [m.rid for m in run_search(conn, plan, self.settings, query_fingerprint(rtype, pairs)).matches]
        if not rids:
            raise NotFound(f"No {rtype} matches {'&'.join(f'{k}={v}' for k, v in pairs)}", expression=rtype)
        if len(rids) > 1:
            raise MultipleMatches(f"Several {rtype} resources match {'&'.join(f'{k}={v}' for k, v in pairs)}; "
                                  "a conditional patch needs exactly one", expression=rtype)
        return rids[0]

    def _match_plan(self, rtype: str, pairs: list[tuple[str, str]]) -> SearchPlan:
        return self.plan(rtype, [*pairs, ("_count", "2"), ("_total", "none")], lenient=False)

    def _token_of(self, rtype: str, pairs: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
        """The (parameter, code) of the indexed lookup that answers a conditional write's criteria
        (``_token_match``), None when the search engine must. Memoised per criteria (``_match_token``):
        building the plan was ~0.4 ms of each capacity PATCH, twice (ahead and under the lock)."""
        return _token_match(self._match_plan(rtype, list(pairs)))

    def _patcher(self, raw: bytes, content_type: str, rtype: str) -> Callable[[dict], dict]:
        mime = (content_type or "").split(";")[0].strip().lower()
        body = parse_json(raw, "patch")
        if mime == JSON_PATCH:
            if not isinstance(body, list):
                raise InvalidRequest("A JSON Patch body is an array of operations (RFC 6902)")
            return lambda res: apply_json_patch(res, body)
        if mime in (FHIR_JSON, "application/json"):
            if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
                raise InvalidRequest("A FHIRPath Patch body is a Parameters resource", expression="Parameters")
            return _fhirpath_patcher(rtype, body)
        raise UnsupportedMediaType(f"PATCH takes {FHIR_JSON} (FHIRPath Patch) or {JSON_PATCH}, not '{mime}'")

    def _patch(self, conn: Connection, rtype: str, rid: str, patcher, base: str, expected: int | None,
               caller: Caller, deferred: list | None = None, ahead: _Patched | None = None) -> Response:
        cur = repository.fetch_current(conn, [(rtype, rid)], lock=True).get((rtype, rid))
        if cur is None:
            raise NotFound(f"{rtype}/{rid} is not known", expression=rtype)
        if expected is not None and cur.version != expected:
            raise PreconditionFailed(f"{rtype}/{rid} is at version {cur.version}, not {expected} (If-Match)",
                                     expression=rtype)
        if ahead is None or (ahead.rid, ahead.version) != (rid, cur.version):
            ahead = self._patched(conn, rtype, rid, patcher, caller, deferred)
        w = repository.write_batch(conn, [ahead.prepared], {(rtype, rid): cur})[0]
        self._after_write(conn, caller, rtype, ahead.before, ahead.after, w, ahead.keys, ahead.events)
        return self._written(w, base, 200, conn)

    def _patched(self, conn: Connection, rtype: str, rid: str, patcher, caller: Caller,
                 deferred: list | None, stored: repository.Stored | None = None, live: bool = True) -> _Patched:
        """The patch applied to the stored version (read unless given), checked (rights, domain rules,
        profile); with the live index rows of that version unless ``live`` is false (read for many at once)."""
        stored = stored or repository.read(conn, rtype, rid)
        current = orjson.loads(stored.body)
        patched = patcher(current)
        check_resource(patched, rtype, rid)
        keys = check_write(conn, caller, rtype, current, patched)
        patched = self._before_write(rtype, current, patched)
        self._validate(conn, patched, deferred)
        # What the write needs that does not depend on its stamp, out of the write lock when computed ahead:
        prepared = repository.prepare(patched)
        prepared.rows = index_rows(patched)
        if live:
            prepared.live = repository.live_index_rows(conn, [stored.pk])[stored.pk]
        events = capacity_protocol.changes(current, patched) if rtype == "Location" else None
        return _Patched(rid, stored.pk, stored.version, current, patched, keys, prepared, events)

    @staticmethod
    def _before_write(rtype: str, before: dict | None, after: dict) -> dict:
        """Domain rules of a write: the capacity records a place gains or changes (issue 5)."""
        if rtype == "Location":
            return capacity_protocol.prepare_write(before, after, stamp_to_instant(now_stamp()))
        return after

    @staticmethod
    def _after_write(conn: Connection, caller: Caller, rtype: str, before: dict | None, after: dict,
                     w: repository.Written, keys: set[str] | None, events: list | None = None) -> None:
        """``keys``: the establishments of ``after`` if the rights check already looked them up;
        ``events``: the capacity changes from ``before`` to ``after`` if already computed."""
        if rtype == "Location" and w.outcome != "unchanged":
            keys = establishment_keys(conn, after) if keys is None else keys
            events = capacity_protocol.changes(before, after) if events is None else events
            capacity_history.record(conn, w.rid, keys, events, w.last_updated, caller.app_id)

    def _written(self, w: repository.Written, base: str, status: int, conn: Connection | None = None) -> Response:
        body = w.body
        if w.outcome == "unchanged":
            assert conn is not None
            body = repository.read(conn, w.rtype, w.rid).body
        headers = version_headers(w.version, w.last_updated)
        headers["Location"] = f"{base}/{w.rtype}/{w.rid}/_history/{w.version}"
        headers[AUDIT_HEADER] = f"{w.rtype}=1"
        return Response(status, body, headers, w.last_updated)

    # -- Bundles --------------------------------------------------------------------------------
    def bundle(self, raw: bytes, base: str, caller: Caller = FULL_ACCESS) -> Response:
        b = parse_json(raw)
        if not isinstance(b, dict) or b.get("resourceType") != "Bundle":
            raise InvalidRequest("POST [base] takes a Bundle of type transaction or batch", expression="Bundle")
        kind = b.get("type")
        if kind not in ("transaction", "batch"):
            raise InvalidRequest(f"Bundle.type must be transaction or batch, not '{kind}'", expression="Bundle.type")
        entries = b.get("entry") or []
        if not isinstance(entries, list):
            raise InvalidRequest("Bundle.entry must be an array", expression="Bundle.entry")
        if kind == "transaction":
            return self._transaction(entries, base, caller)
        return self._batch(entries, base, caller)

    def _transaction(self, entries: list, base: str, caller: Caller) -> Response:
        ids = _assign_ids(entries)
        entries = [_rewrite_refs(e, ids) for e in entries]
        order = sorted(range(len(entries)), key=lambda i: _METHOD_ORDER.get(_method(entries[i], i), 9))
        ahead = self._patches_ahead(entries, caller, base)

        def play(conn: Connection) -> Response:
            if ahead is not None:
                done = self._write_ahead(conn, ahead)
                if done is not None:
                    return Response(200, _response_bundle("transaction-response", done))
            results: list[Response | None] = [None] * len(entries)
            written: list[tuple[int, list[dict]]] = []
            for i in order:
                deferred: list[dict] = []
                with _blame(i):
                    results[i] = self._entry(conn, entries[i], i, base, ids, caller, deferred)
                written.append((i, deferred))
            # Validated once all entries are written, so that entries may reference one another;
            # one reference look-up for the whole Bundle. Empty unless validate_writes.
            pending = [(i, res) for i, resources in written for res in resources]
            outcomes = self.validator.validate_many([res for _, res in pending], conn)
            for (i, _), issues in zip(pending, outcomes, strict=True):
                with _blame(i):
                    raise_if_errors(issues)
            return Response(200, _response_bundle("transaction-response", results))
        return self._write(play)

    def _patches_ahead(self, entries: list, caller: Caller, base: str) -> list[_AheadEntry] | None:
        """A bed-management system's Bundle of PATCHes, each on a different resource, computed before taking
        the write lock (as ``_ahead`` does for one PATCH) so that the lock is held only to write them in one
        batch. None when the Bundle holds anything else, or when an entry fails: the Bundle is then played
        entry by entry under the lock, where the failure is reported on the version it applies to."""
        if not entries or any(_method(e, i) != "PATCH" for i, e in enumerate(entries)):
            return None
        out: list[_AheadEntry] = []
        deferred: list[dict] = []  # validated together: one reference look-up for the Bundle
        with self._reading() as conn:
            try:
                targets = []
                for i, entry in enumerate(entries):
                    rtype, rid, pairs, patcher, expected = self._patch_entry(entry, i)
                    targets.append((i, rtype, rid or self._single_match(conn, rtype, pairs),
                                    pairs if rid is None else None, patcher, expected))
                if len({(t[1], t[2]) for t in targets}) < len(targets):
                    return None  # a resource patched twice: entry by entry, one version each
                stored = repository.read_many(conn, [(t[1], t[2]) for t in targets])
                for i, rtype, rid, pairs, patcher, expected in targets:
                    if (rtype, rid) not in stored:
                        return None
                    out.append(_AheadEntry(i, rtype, pairs, expected, self._patched(
                        conn, rtype, rid, patcher, caller, deferred, stored[(rtype, rid)], live=False), caller, base))
                for issues in self.validator.validate_many(deferred, conn):
                    raise_if_errors(issues)
                live = repository.live_index_rows(conn, [a.patched.pk for a in out])
            except RorError:
                return None
        for a in out:
            a.patched.prepared.live = live[a.patched.pk]
        return out

    def _write_ahead(self, conn: Connection, ahead: list[_AheadEntry]) -> list[Response] | None:
        """A Bundle's ``ahead`` written in one batch if every target is still the one matched, at the version
        patched; None otherwise (another write came first: the caller plays the Bundle again under the lock)."""
        current, fresh = self._still_current(conn, ahead)
        if not all(fresh):
            return None
        for a in ahead:
            if a.expected is not None and a.patched.version != a.expected:
                with _blame(a.index):
                    raise PreconditionFailed(f"{a.rtype}/{a.patched.rid} is at version {a.patched.version}, not "
                                             f"{a.expected} (If-Match)", expression=a.rtype)
        return self._write_prepared(conn, ahead, current)

    def _still_current(self, conn: Connection, ahead: list[_AheadEntry]) -> tuple[dict, list[bool]]:
        """Under the write lock: the current versions of the targets of ``ahead``, and whether each is still
        the one its criteria match, at the version patched. On PostgreSQL the rows are locked one by one in one
        order whatever the entries' order: no deadlock between two such batches."""
        fresh = []
        for a in ahead:
            try:
                fresh.append(a.pairs is None or self._single_match(conn, a.rtype, a.pairs) == a.patched.rid)
            except RorError:  # no longer matched, or not alone: reported when the write is played again
                fresh.append(False)
        keys = [(a.rtype, a.patched.rid) for a in ahead]
        if is_sqlite(conn):  # one writer at a time: no row locks
            current = repository.fetch_current(conn, keys)
        else:
            current = {}
            for key in sorted(set(keys)):
                current |= repository.fetch_current(conn, [key], lock=True)
        return current, [ok and (cur := current.get(key)) is not None and cur.version == a.patched.version
                         for a, key, ok in zip(ahead, keys, fresh, strict=True)]

    def _write_prepared(self, conn: Connection, ahead: list[_AheadEntry], current: dict) -> list[Response]:
        """PATCHes computed ahead, each on a different resource still at the version patched, in one batch."""
        done = repository.write_batch(conn, [a.patched.prepared for a in ahead], current)
        for a, w in zip(ahead, done, strict=True):
            p = a.patched
            self._after_write(conn, a.caller, a.rtype, p.before, p.after, w, p.keys, p.events)
        return [self._written(w, a.base, 200, conn) for a, w in zip(ahead, done, strict=True)]

    def _batch(self, entries: list, base: str, caller: Caller) -> Response:
        results: list[Response] = []
        for i, entry in enumerate(entries):
            try:
                results.append(self._write(lambda conn, e=entry, i=i: self._entry(conn, e, i, base, {}, caller)))
            except RorError as e:
                results.append(Response(e.status, orjson.dumps(bundles.operation_outcome(e.issues))))
        return Response(200, _response_bundle("batch-response", results))

    def _entry(self, conn: Connection, entry: object, i: int, base: str, ids: dict, caller: Caller,
               deferred: list | None = None) -> Response:
        method = _method(entry, i)
        url = entry["request"]["url"]
        path, _, query = url.partition("?")
        parts = [p for p in path.split("/") if p]
        pairs = _parse_query(query)
        res = entry.get("resource")
        if method == "POST" and len(parts) == 1:
            check_type(parts[0])
            check_resource(res, parts[0], where=f"Bundle.entry[{i}].resource")
            full = entry.get("fullUrl")
            return self._create(conn, parts[0], res, base, caller, ids.get(full, (None, None))[1] if full else None,
                                deferred)
        if method == "PUT" and len(parts) == 2:
            check_type(parts[0])
            check_id(parts[1])
            check_resource(res, parts[0], parts[1], where=f"Bundle.entry[{i}].resource")
            return self._update(conn, parts[0], parts[1], res, base,
                                parse_if_match(entry["request"].get("ifMatch")), caller, deferred)
        if method == "PATCH" and len(parts) in (1, 2):
            rtype, rid, pairs, patcher, expected = self._patch_entry(entry, i)
            rid = rid or self._single_match(conn, rtype, pairs)
            return self._patch(conn, rtype, rid, patcher, base, expected, caller, deferred)
        if method == "GET" and len(parts) == 2:
            check_type(parts[0])
            s = self._seen(conn, caller, parts[0], parts[1], [repository.read(conn, parts[0], parts[1])])[0]
            return Response(200, s.body, version_headers(s.version, s.last_updated), s.last_updated)
        if method == "GET" and len(parts) == 1:
            check_type(parts[0])
            result = self.search_result(conn, parts[0], pairs, caller)
            return Response(200, bundles.searchset(base, parts[0], pairs, result, []))
        raise MethodNotAllowed(f"Bundle.entry[{i}]: {method} {url} is not supported in a Bundle "
                               "(POST Type, PUT Type/id, PATCH Type/id or Type?criteria, GET)",
                               expression=f"Bundle.entry[{i}].request")

    def _patch_entry(self, entry: dict, i: int) -> tuple[str, str | None, list[tuple[str, str]], Callable, int | None]:
        """A PATCH entry's type, id (None: conditional on the search pairs), patcher and If-Match version."""
        path, _, query = entry["request"]["url"].partition("?")
        parts = [p for p in path.split("/") if p]
        if len(parts) not in (1, 2):
            raise MethodNotAllowed(f"Bundle.entry[{i}]: PATCH {entry['request']['url']} is not supported in a "
                                   "Bundle (PATCH Type/id or Type?criteria)", expression=f"Bundle.entry[{i}].request")
        check_type(parts[0])
        if len(parts) == 2:
            check_id(parts[1])
        patcher = self._entry_patcher(entry.get("resource"), i, parts[0])
        return (parts[0], parts[1] if len(parts) == 2 else None, _parse_query(query), patcher,
                parse_if_match(entry["request"].get("ifMatch")))

    def _entry_patcher(self, res: object, i: int, rtype: str) -> Callable[[dict], dict]:
        if isinstance(res, dict) and res.get("resourceType") == "Parameters":
            return _fhirpath_patcher(rtype, res)
        if isinstance(res, dict) and res.get("resourceType") == "Binary" and \
                res.get("contentType", "").startswith(JSON_PATCH):
            ops = parse_json(base64.b64decode(res.get("data", "")), "JSON Patch")
            return lambda r: apply_json_patch(r, ops)
        raise InvalidRequest(f"Bundle.entry[{i}]: a PATCH entry carries a Parameters (FHIRPath Patch) or a "
                             "Binary of application/json-patch+json", expression=f"Bundle.entry[{i}].resource")


_WRITE_ATTEMPTS = 5
_MATCH_TOKENS = 8192  # conditional writes' criteria memoised per process (a place's identifier: ~0.3 kB each)
log = logging.getLogger(__name__)
_METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3}


def _retry_delay(error: Exception, attempt: int) -> float:
    """How long to wait before writing again after ``error``, a deadlock's or a serialisation failure's victim on
    PostgreSQL (apart from the transaction that won); ``error`` raised again if it is anything else, or if
    ``attempt`` was the last."""
    code = getattr(error, "sqlstate", None) or getattr(getattr(error, "orig", None), "sqlstate", None)
    if code not in ("40P01", "40001") or attempt == _WRITE_ATTEMPTS - 1:
        raise error
    log.warning("write retried after %s (attempt %d)", code, attempt + 1)
    return random.uniform(0, 0.01 * 2 ** attempt)


def _fhirpath_patcher(rtype: str, parameters: dict) -> Callable[[dict], dict]:
    """Places are patched under the capacity protocol (ANS shapes, its 404 contract)."""
    if rtype == "Location":
        return lambda res: capacity_protocol.apply_patch(res, parameters)
    return lambda res: apply_fhirpath_patch(res, parameters)


_BY_TOKEN = (f"SELECT DISTINCT r.rid FROM idx_token t JOIN resource r ON r.pk = t.pk WHERE t.param = {{p}} "
             f"AND t.code = {{p}} AND t.until_tx = {LIVE_TX} AND r.rtype = {{p}} LIMIT 2")


def _token_match(plan: SearchPlan) -> tuple[str, str] | None:
    """The capacity protocol's ``PATCH Location?identifier=…`` (every bed update) as one indexed lookup
    (``_BY_TOKEN``: parameter and code) instead of a whole search (~6 ms of CPU, profiled). None when the
    query is anything else than one plain token code: the search engine answers those."""
    if len(plan.criteria) != 1 or plan.filters:
        return None
    c = plan.criteria[0]
    if c.hops or c.modifier or c.param.type != "token" or c.param.code == "_id" or len(c.values) != 1 \
            or set(c.values[0]) & {"|", "\\"}:
        return None
    return c.param.key, c.values[0]


@contextmanager
def _blame(i: int):
    """Name the failing entry in every issue; nothing of the transaction is written."""
    try:
        yield
    except RorError as e:
        for issue in e.issues:
            issue.expression = [f"Bundle.entry[{i}]", *issue.expression]
            issue.diagnostics = f"Bundle.entry[{i}]: {issue.diagnostics} (transaction rolled back)"
        raise


def _method(entry: object, i: int) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict) \
            or not isinstance(entry["request"].get("url"), str):
        raise InvalidRequest(f"Bundle.entry[{i}] needs request.method and request.url",
                             expression=f"Bundle.entry[{i}].request")
    method = str(entry["request"].get("method", "")).upper()
    if method not in _METHOD_ORDER:
        raise InvalidRequest(f"Bundle.entry[{i}]: unknown request.method '{method}'",
                             expression=f"Bundle.entry[{i}].request.method")
    return method


def _assign_ids(entries: list) -> dict[str, tuple[str, str]]:
    """fullUrl of each POST entry -> (type, new id), so that references to it can be rewritten."""
    ids: dict[str, tuple[str, str]] = {}
    for i, e in enumerate(entries):
        if _method(e, i) == "POST" and isinstance(e.get("resource"), dict) and isinstance(e.get("fullUrl"), str):
            ids[e["fullUrl"]] = (str(e["resource"].get("resourceType")), str(uuid.uuid4()))
    return ids


def _rewrite_refs(node, ids: dict[str, tuple[str, str]]):
    if not ids:
        return node
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in ids:
                t, rid = ids[v]
                out[k] = f"{t}/{rid}"
            elif k == "fullUrl":
                out[k] = v
            else:
                out[k] = _rewrite_refs(v, ids)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, ids) for v in node]
    return node


def _parse_query(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def _response_bundle(kind: str, results: list) -> bytes:
    entries = []
    for r in results:
        resp: dict = {"status": str(r.status)}
        if "Location" in r.headers:
            resp["location"] = r.headers["Location"]
        if "ETag" in r.headers:
            resp["etag"] = r.headers["ETag"]
        if r.last_updated:
            resp["lastModified"] = stamp_to_instant(r.last_updated)
        if r.status >= 400:
            entries.append(b'{"response":' + orjson.dumps({**resp, "outcome": orjson.loads(r.body)}) + b"}")
        else:
            entries.append(b'{"resource":' + r.body + b',"response":' + orjson.dumps(resp) + b"}")
    return orjson.dumps({"resourceType": "Bundle", "type": kind})[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


