"""Validation of what a feed import stores: every merged resource against its ROR profile.

``Run._judge_and_write`` (``ror.feeds.runs``) hands each batch of merged resources — the resource as it
will be stored, after the precedence merge — to ``FeedValidation.judge`` before writing it (their profile
checks made ahead, out of the write transaction, by ``check_ahead``):

- **errors** reject the resource: it is not written, the stored version (if any) stays untouched, and
  every error becomes a ``feed_problem`` row (line of the record, field = FHIRPath of the issue,
  reason = the issue text, record = the merged resource). The run counts it in ``rejected``;
- **warnings** (a code retired after the extraction date, an identifier key warning...) are booked as
  warnings and the resource is written;
- **references**: a target is found in the store, among the resources this run already accepted
  (committed or not: dry runs too) or in the same batch. A resource whose only errors are targets not
  found yet is **held back** (``deferred``) and judged again after the last batch, when every record of
  the file is in: so neither the order of a regional extract nor a FINESS EG read before its EJ gives a
  false rejection. Still missing then: a regional record is rejected (a region's extract must hold what
  it references) unless the reference is not one it sent (a registry's EJ link kept by the merge: a
  warning); a registry record (FINESS, RPPS) is written with a warning, because its references are
  national keys (EJ FINESS number, RPPS id...) whose ids are derived, so they resolve as soon as the
  target's file is imported, and registries publish by department or in separate files (an EG whose EJ
  is in another department's extract must not be lost);
- **date**: codes must be valid on the feed's extraction date (the date the data describe) when the
  file says it, else today: a 2020 FINESS file loaded in 2026 is not rejected for a category retired in
  2023 (it is a warning), as for a REST write dated by ``meta.lastUpdated``;
- **creation date**: ``ror-meta-creation-date`` (required by the five profiles) is the date the ROR
  created the object: when neither the stored resource nor the source gives it, the run supplies it (the
  extraction date, else the day of the run). Written once, kept by later merges (precedence rule 4);
- **registry pre-fills** (FINESS, RPPS): a resource a registry creates is the identification part of an
  object the region or the professional completes (an RPPS pre-filled offer has no care mode, public or
  operational activity yet; that is what the completeness indicators measure). A *missing* element
  (issue code ``required``) that the registry does not own (``precedence.owner``) is therefore booked as a
  warning "incomplete pre-fill" instead of rejecting the record. Everything else (codes, formats, check
  keys, slices, references, elements the registry owns) stays an error. This is a documented deviation
  from a strict reading of the profiles (docs/feeds.md, "Validation");
- **registry codes NOS retired**: a code a registry still publishes (the real FINESS extract has sites
  in categories 437 and 379, retired from NOS before its date) is the registry's own data: the site must
  not vanish from the national directory for it. A code that *exists* in NOS but is retired or has left
  the value set is a warning "kept as the registry publishes it", a data-quality anomaly for the NOS
  and FINESS teams; a code NOS never knew stays an error (the feeds refuse those when reading).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, partial
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection

from ror.errors import Issue
from ror.feeds import precedence
from ror.feeds.fhirmap import CREATION_EXT
from ror.feeds.model import Entity, Feed, Problem
from ror.profiles.parallel import CheckPool
from ror.profiles.validation import MISSING_TARGET, Checked, Validator
from ror.store import repository
from ror.store.repository import Prepared, content_hash

REGISTRIES = frozenset({"finess", "rpps"})
_CREATION_TYPES = frozenset({"Organization", "HealthcareService", "Location", "Practitioner", "PractitionerRole"})
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_REF = re.compile(rb'"reference":"([A-Za-z]+)/([^"/\\]+)"')
DANGLING = (" yet: the reference is kept (its id derives from the target's national key) and resolves when the "
            "file that holds the target is imported")
INHERITED = (" yet: this source did not send the reference; it comes from another source (a registry) and "
             "resolves when the target is imported")
PREFILL = "incomplete pre-fill, to be completed by the region or the professional: "
REGISTRY_CODE = "kept as the registry publishes it (NOS anomaly): "
_RETIRED = re.compile(r"was retired on|left value set")


def _as_stored(res: dict, stamp: str) -> dict:
    """The resource as the store will hold it: ``meta.lastUpdated`` (required by the profiles) is set by the
    store when it writes, so a resource not written yet is judged with the time of the check."""
    meta = res.get("meta") if isinstance(res.get("meta"), dict) else {}
    if "lastUpdated" in meta:
        return res
    return {**res, "meta": {**meta, "lastUpdated": stamp}}


@cache
def feed_validator() -> Validator:
    """One validator per process (profiles compiled and NOS tables cached once for every run)."""
    return Validator()


@dataclass
class Verdict:
    problems: list[Problem] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)


class FeedValidation:
    """``pool``: where the profile checks are made (those of a large batch in worker processes, the others in this
    process)."""

    def __init__(self, feed: Feed, pool: CheckPool, validator: Validator | None = None, tz: str = "Europe/Paris"):
        self.feed = feed
        self.validator = validator or feed_validator()
        self.pool = pool
        self.tz = ZoneInfo(tz)
        self.accepted: set[tuple[str, str]] = set()  # (type, id) accepted by this run: references may name them

    def _day(self) -> str | None:
        d = self.feed.extraction_date
        return d[:10] if isinstance(d, str) and _DATE.match(d) else None

    def judge(self, conn: Connection, keys: list[tuple[str, str]], merged: dict[tuple[str, str], dict],
              entities: dict[tuple[str, str], tuple[str, Entity]], line_of: dict[tuple[str, str], int],
              final: bool, stored_hashes: dict[tuple[str, str], bytes], checked: dict | None = None,
              settled: frozenset | set = frozenset()) -> Verdict:
        """``stored_hashes``: content hashes of the stored versions; a resource the run leaves unchanged
        is not validated again (nothing is written: a no-op reload costs no validation). ``checked``: the profile
        checks made ahead (``check_ahead``) of the resources among ``settled`` that are to be checked."""
        ahead = checked or {}
        todo = self._todo(keys, merged, stored_hashes, ahead, settled)
        at, stamp = self._at(), self._now()
        verdict = Verdict()
        self.accepted.update(keys)  # the batch's own resources may reference one another
        while todo:
            rest = [k for k in todo if k not in ahead]
            fresh = dict(zip(rest, self._check(conn, rest, merged, at, stamp), strict=True))
            outcomes = self.validator.resolve_references(conn, [ahead.get(k) or fresh[k] for k in todo], self.accepted)
            ahead = {}  # checked ahead of the first round only: a later round judges resources again without others
            dropped: list[tuple[str, str]] = []
            for k, issues in zip(todo, outcomes, strict=True):
                _, e = entities[k]
                issues = self._relax(issues, k[0], e.scope, final, e.resource)
                errors = [i for i in issues if i.severity in ("error", "fatal")]
                missing = [i for i in errors if MISSING_TARGET in i.diagnostics]
                if errors and len(missing) == len(errors) and not final:
                    verdict.deferred.append(k)
                    dropped.append(k)
                    continue
                record = orjson.dumps(merged[k]).decode()
                if errors:
                    verdict.rejected.append(k)
                    dropped.append(k)
                for i in issues:
                    if i.severity in ("error", "fatal", "warning"):
                        verdict.problems.append(Problem(
                            line_of.get(k, 0), (i.expression or [k[0]])[0], f"{k[0]}/{k[1]}: {i.diagnostics}",
                            "warning" if i.severity == "warning" else "error", record))
            self.accepted.difference_update(dropped)
            # A resource of this batch that names a dropped one must be judged again without it.
            gone = {f"{t}/{r}".encode() for t, r in dropped}
            decided = set(verdict.rejected) | set(verdict.deferred)
            todo = [k for k in todo if k not in decided and gone and
                    any(b"/".join(m) in gone for m in _REF.findall(orjson.dumps(merged[k])))] if gone else []
            if todo:
                verdict.problems = [p for p in verdict.problems if not p.reason.startswith(
                    tuple(f"{t}/{r}: " for t, r in todo))]
        return verdict

    def check_ahead(self, conn: Connection, keys: list[tuple[str, str]], merged: dict[tuple[str, str], dict],
                    stored_hashes: dict[tuple[str, str], bytes]
                    ) -> Callable[[], tuple[dict[tuple[str, str], Checked], dict[tuple[str, str], Prepared]]]:
        """The profile checks ``judge`` would make first, started before it (out of the write transaction:
        docs/feeds.md, "Runs"): they depend on the merged resources alone. Their references' targets are looked up by
        ``judge``. With them, the resources checked (new or changed) prepared for their write
        (``repository.prepare_ahead``). What they give, when the returned function is called: in the pool's workers,
        they run meanwhile."""
        todo = self._todo(keys, merged, stored_hashes)
        view = partial(_as_stored, stamp=self._now())
        prepare = partial(repository.prepare_ahead, keep_last_updated=False)
        resources = [merged[k] for k in todo]
        started = self.pool.start(resources, conn, at=self._at(), view=view, prepare=prepare)

        def result() -> tuple[dict[tuple[str, str], Checked], dict[tuple[str, str], Prepared]]:
            checked, prepared = started()
            return dict(zip(todo, checked, strict=True)), dict(zip(todo, prepared, strict=True))

        return result

    def _todo(self, keys: list[tuple[str, str]], merged: dict[tuple[str, str], dict],
              stored_hashes: dict[tuple[str, str], bytes], ahead: dict | None = None,
              settled: frozenset | set = frozenset()) -> list[tuple[str, str]]:
        """The resources to check: the new and the changed ones, with their creation date (ror-meta-creation-date)
        when none is stored or given. Those of ``settled`` were sorted by ``check_ahead``: to check if in ``ahead``
        (their content hashes not computed again: a reload's every resource)."""
        day = self._day()
        created = day or datetime.now(self.tz).strftime("%Y-%m-%d")
        for k in keys:
            res = merged[k]
            if k[0] in _CREATION_TYPES and not any(isinstance(x, dict) and x.get("url") == CREATION_EXT
                                                    for x in res.get("extension") or []):
                # in the place ``precedence.compose`` gives it (extensions by url): a later merge of the
                # stored resource gives the same order, so a run and its re-run store the same resource
                stamp_ext = {"url": CREATION_EXT, "valueDateTime": created}
                res["extension"] = sorted([*(res.get("extension") or []), stamp_ext],
                                          key=lambda x: x.get("url", "") if isinstance(x, dict) else "")
        return [k for k in keys if (k in ahead if k in settled else
                                    k not in stored_hashes or stored_hashes[k] != content_hash(merged[k]))]

    def _at(self) -> str | None:
        """The instant the codes must be valid at: the end of the extraction day, when the file says it."""
        day = self._day()
        return f"{day}T23:59:59" if day else None

    def _now(self) -> str:
        return datetime.now(self.tz).isoformat(timespec="milliseconds")

    def _check(self, conn: Connection, keys: list[tuple[str, str]], merged: dict[tuple[str, str], dict],
               at: str | None, stamp: str) -> list[Checked]:
        if not keys:
            return []
        return self.pool.check_many([_as_stored(merged[k], stamp) for k in keys], conn, at=at)

    def _relax(self, issues: list[Issue], rtype: str, scope: str, final: bool, own: dict) -> list[Issue]:
        """Registry feeds: a missing element the registry does not own, a code NOS retired, and (after the
        last batch) a reference to a national key no file has brought yet, are warnings. Any feed: a missing
        target the record itself did not name (``own``: what this source said) but the stored resource had
        from another source — a registry's EJ link of a site whose EJ is in another file — is a warning
        too: the source is not blamed for it (module docstring)."""
        if self.feed.kind not in REGISTRIES:
            if not final:
                return issues
            said = {f"{t.decode()}/{i.decode()}" for t, i in _REF.findall(orjson.dumps(own))}
            return [Issue("warning", i.code, i.diagnostics + INHERITED, i.expression)
                    if i.severity == "error" and MISSING_TARGET in i.diagnostics
                    and not any(f" {target} {MISSING_TARGET}" in i.diagnostics for target in said) else i
                    for i in issues]
        if final:
            issues = [Issue("warning", i.code, i.diagnostics + DANGLING, i.expression)
                      if i.severity == "error" and MISSING_TARGET in i.diagnostics else i for i in issues]
        owns = precedence.owner(self.feed.kind, rtype, scope)
        out = []
        pattern = re.compile(rf"^(?:Slice '[^']*' of )?{rtype}\.([A-Za-z]+)(?![.A-Za-z])")
        for i in issues:
            if i.severity == "error" and i.code == "required":
                m = pattern.match(i.diagnostics)
                if m and not owns(m[1]):
                    i = Issue("warning", i.code, PREFILL + i.diagnostics, i.expression)
            elif i.severity == "error" and i.code == "code-invalid" and _RETIRED.search(i.diagnostics):
                i = Issue("warning", i.code, REGISTRY_CODE + i.diagnostics, i.expression)
            out.append(i)
        return out
