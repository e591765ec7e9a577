"""Generate the open-data files: every region's offer as access profile 0 (public) sees it, in CSD XML, CSV and
NDJSON, with a manifest, taken as of one snapshot and published atomically.

How: one snapshot (``export.runner.pin_snapshot``) for the whole generation; for each region, the resources
tagged with it (``meta.tag`` TRE_R30) plus the export's associated data of its offers (their organisations up
to the EJ, places, roles, professionals: ``_myCompleteExtract``), selected as SQL over the temporal index as of
the snapshot with the profile's visibility (``search.visibility``), bodies read as of the snapshot and redacted
for the profile (``search.execute.redacted``) — the Bulk Data export's code, so the files hold exactly what
profile 0 gets from ``$export``. Those bodies are staged as NDJSON per type, then each format streams them
(places are found by file offset: memory holds offsets and role links, never bodies).

Output is deterministic (resources in primary-key order, no generation time in the data files): the same store
gives byte-identical files. Everything is written under a temporary folder next to ``OUT`` and swapped in by
renames at the end: readers see the previous set or the new one, never a half-written one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import uuid
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import Engine, literal, select

from ror.errors import InvalidRequest
from ror.export.request import ExportRequest
from ror.export.runner import Snapshot, _merge, _Sets, pin_snapshot
from ror.export.writer import NdjsonWriter
from ror.fhirdates import stamp_to_instant
from ror.opendata import fhir as F
from ror.opendata import flat
from ror.opendata.fhircsd import FhirCsd
from ror.search.execute import redacted
from ror.search.visibility import Visibility, visible
from ror.settings import Settings
from ror.store import repository
from ror.store.schema import idx_token

TYPES = ("Organization", "HealthcareService", "Location", "PractitionerRole", "Practitioner")
FORMATS = ("csd", "csv", "json")
NATIONAL = "national"  # resources tagged with no region
PUBLIC_PROFILE = 0
LICENCE = {"name": "Licence Ouverte / Open Licence 2.0",
           "url": "https://www.etalab.gouv.fr/wp-content/uploads/2017/04/ETALAB-Licence-Ouverte-v2.0.pdf"}
CSD_VERSION = "3.0"


@dataclass
class RegionFiles:
    code: str
    counts: dict[str, int] = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)
    csd_omitted: dict[str, int] = field(default_factory=dict)


class _RegionSets(_Sets):
    """The export's selection where a type's "own" resources are those tagged with the region (or with none)."""

    def __init__(self, req: ExportRequest, settings: Settings, profile: int, snap: int, dialect: str, region: str):
        super().__init__(req, settings, profile, snap, dialect)
        self.region = region

    def own(self, rtype: str):
        comp = self._compiler(rtype, [])
        sub = self._matches(comp).subquery()
        t = idx_token.alias()
        tagged = select(t.c.pk).where(t.c.param == f"{rtype}._tag", t.c.system == F.REGION_SYSTEM,
                                      visible(t, literal(self.snap)))
        cond = sub.c.pk.not_in(tagged) if self.region == NATIONAL else sub.c.pk.in_(tagged.where(
            t.c.code == self.region))
        return [(comp, select(sub.c.pk).where(cond))]


def regions_in_store(engine: Engine, snap: int) -> list[str]:
    """The region codes found on resources of the snapshot, then ``national`` if some resource has none."""
    t = idx_token.alias()
    params = [f"{r}._tag" for r in TYPES]
    with engine.connect() as conn, conn.begin():
        codes = sorted(c for (c,) in conn.execute(select(t.c.code).distinct().where(
            t.c.param.in_(params), t.c.system == F.REGION_SYSTEM, visible(t, literal(snap)))))
        vis = Visibility(1, literal(snap))
        untagged = False
        for rtype in TYPES:
            everything = vis.everything(rtype).subquery()
            tagged = select(t.c.pk).where(t.c.param == f"{rtype}._tag", t.c.system == F.REGION_SYSTEM,
                                          visible(t, literal(snap)))
            if conn.execute(select(everything.c.pk).where(everything.c.pk.not_in(tagged)).limit(1)).first():
                untagged = True
                break
    return codes + ([NATIONAL] if untagged else [])


def _stage(engine: Engine, settings: Settings, snap: Snapshot, region: str, profile: int, folder: Path) -> dict:
    """The region's resources as ``profile`` sees them, one NDJSON file per type: {type: (path, count)}."""
    req = ExportRequest(types=list(TYPES), own=list(TYPES), associated=True)
    sets = _RegionSets(req, settings, profile, snap.tx, engine.dialect.name, region)
    plan: list[tuple[str, array]] = []
    for rtype in TYPES:
        pks = array("q")
        with engine.connect() as conn, conn.begin():
            conn = conn.execution_options(yield_per=5000)
            pks.extend(_merge([iter(conn.execute(q).scalars()) for q in sets.components(rtype)]))
        plan.append((rtype, pks))
    writer = NdjsonWriter(folder, 1 << 62, 1 << 62)
    batch = max(1, settings.export_batch_size)
    try:
        with engine.connect() as conn:
            for rtype, pks in plan:
                for i in range(0, len(pks), batch):
                    part = pks[i:i + batch].tolist()
                    with conn.begin():
                        bodies = repository.bodies(conn, part, snap.tx)
                        items = [(pk, bodies[pk]) for pk in part if pk in bodies]
                        for body in redacted(conn, Visibility(profile, literal(snap.tx)), items):
                            writer.write(rtype, body)
    finally:
        files = writer.close()
    return {f.type: (folder / f.name, f.count) for f in files}


def _lines(path: Path | None) -> Iterator[dict]:
    if path is None:
        return
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


class _Places:
    """Places of the staged Location file, found by id through their byte offsets."""

    def __init__(self, path: Path | None):
        self.path = path
        self.offsets: dict[str, tuple[int, int]] = {}
        self.fh = path.open("rb") if path else None
        if self.fh:
            pos = 0
            for line in self.fh:
                if line.strip():
                    rid = orjson.loads(line)["id"]
                    self.offsets[rid] = (pos, len(line))
                pos += len(line)

    def get(self, hs: dict) -> list[dict]:
        out = []
        for ref in hs.get("location", ()):
            found = self.offsets.get(F.ref_id(ref))
            if found and self.fh:
                self.fh.seek(found[0])
                out.append(orjson.loads(self.fh.read(found[1])))
        return out

    def close(self) -> None:
        if self.fh:
            self.fh.close()


class _Hashing:
    """A binary file that hashes what is written to it."""

    def __init__(self, path: Path):
        self.path, self.fh, self.digest, self.size = path, path.open("wb"), hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> dict:
        self.fh.close()
        return {"bytes": self.size, "sha256": self.digest.hexdigest()}


def _write_csv(path: Path, columns: tuple[str, ...], rows: Iterator[list]) -> dict:
    out = _Hashing(path)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\n")
    w.writerow(columns)
    count = 0
    for row in rows:
        w.writerow(row)
        count += 1
        if buf.tell() > 1 << 20:
            out.write(buf.getvalue().encode("utf-8"))
            buf.seek(0)
            buf.truncate()
    out.write(buf.getvalue().encode("utf-8"))
    return {**out.close(), "count": count}


def _region_files(region: str, staged: dict, folder: Path, formats: tuple[str, ...], source: str) -> RegionFiles:
    rf = RegionFiles(region, {t: staged[t][1] if t in staged else 0 for t in TYPES})
    path = {t: staged[t][0] if t in staged else None for t in TYPES}
    base = f"ror-{region}"
    folder.mkdir(parents=True)

    def add(name: str, fmt: str, entry: dict, **more) -> None:
        rf.files.append({"path": f"{region}/{name}", "format": fmt, **more, **entry})

    if "json" in formats:
        out = _Hashing(folder / f"{base}.ndjson")
        for t in TYPES:
            if path[t]:
                with path[t].open("rb") as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
        add(f"{base}.ndjson", "application/fhir+ndjson", {**out.close(), "count": sum(rf.counts.values())})
    places = _Places(path["Location"])
    try:
        if "csv" in formats:
            add(f"{base}-organization.csv", "text/csv", _write_csv(
                folder / f"{base}-organization.csv", flat.ORG_COLUMNS,
                (flat.organization_row(r) for r in _lines(path["Organization"]))), type="Organization")
            add(f"{base}-offer.csv", "text/csv", _write_csv(
                folder / f"{base}-offer.csv", flat.OFFER_COLUMNS,
                (flat.offer_row(r, places.get(r)) for r in _lines(path["HealthcareService"]))),
                type="HealthcareService")
            add(f"{base}-place.csv", "text/csv", _write_csv(
                folder / f"{base}-place.csv", flat.PLACE_COLUMNS,
                (flat.place_row(r) for r in _lines(path["Location"]))), type="Location")
        if "csd" in formats:
            csd = FhirCsd(folder / f".{base}.xml", source)
            try:
                for r in _lines(path["Organization"]):
                    csd.organization(r)
                services: dict[str, str | None] = {}
                for r in _lines(path["HealthcareService"]):
                    if csd.offer(r, places.get(r)):
                        services[r["id"]] = csd.service_id(r)
                offers: dict[str, list[tuple[str, str | None]]] = {}
                professions: dict[str, list[dict]] = {}  # a professional's profession is on its roles
                for role in _lines(path["PractitionerRole"]):
                    who = F.ref_id(role.get("practitioner"))
                    for c in F.codes_of(role.get("code"), "TRE_G15"):
                        if who and c not in professions.setdefault(who, []):
                            professions[who].append(c)
                    for s in role.get("healthcareService", ()):
                        oid = F.ref_id(s)
                        if who and oid in services and (oid, services[oid]) not in offers.setdefault(who, []):
                            offers[who].append((oid, services[oid]))
                for r in _lines(path["Practitioner"]):
                    csd.practitioner(r, offers.get(r["id"], []), professions.get(r["id"], []))
            except BaseException:
                csd.discard()
                raise
            entry = csd.close(folder / f"{base}.xml")
            rf.csd_omitted = dict(sorted(csd.omitted.items()))
            add(f"{base}.xml", "application/xml", {"bytes": entry["bytes"], "sha256": entry["sha256"]},
                schema=f"IHE CSD (urn:ihe:iti:csd:2013) + IHE_ProfilCSD-ExtensionROR_fr-v{CSD_VERSION}.xsd")
    finally:
        places.close()
    return rf


def _check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "manifest.json").exists())):
        raise InvalidRequest(f"{out} exists and is not an open-data folder (no manifest.json): refusing to replace it")


def publish(engine: Engine, settings: Settings, out: Path, regions: list[str] | None = None,
            formats: tuple[str, ...] = FORMATS, source: str = "", profile: int = PUBLIC_PROFILE,
            progress: Callable[[str], None] = lambda message: None) -> dict:
    """Generate the open-data set into ``out`` (replaced atomically); returns the manifest."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InvalidRequest(f"unknown format(s) {', '.join(unknown) or '(none)'}: use {', '.join(FORMATS)}")
    out = out.resolve()
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    snap = pin_snapshot(engine)
    source = source or settings.public_base_url or "urn:ror:national"
    wanted = regions or regions_in_store(engine, snap.tx)
    staging = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    work = staging / ".work"
    try:
        made = []
        for region in wanted:
            progress(f"region {region}")
            staged = _stage(engine, settings, snap, region, profile, work / region)
            made.append(_region_files(region, staged, staging / region, formats, source))
            shutil.rmtree(work / region)
        shutil.rmtree(work, ignore_errors=True)
        manifest = {
            "generatedAt": stamp_to_instant(snap.transaction_time),
            "source": source,
            "publisher": "ROR national (Répertoire Opérationnel des Ressources)",
            "licence": LICENCE,
            "accessProfile": profile,
            "formats": [f for f in FORMATS if f in formats],
            "csdVersion": CSD_VERSION,
            "regions": [{"code": r.code, "label": F.label(F.REGION_SYSTEM, r.code) if r.code != NATIONAL
                         else "Sans région", "counts": r.counts, "csdOmitted": r.csd_omitted, "files": r.files}
                        for r in made],
        }
        manifest["counts"] = {t: sum(r.counts.get(t, 0) for r in made) for t in TYPES}
        (staging / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        _swap(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _swap(staging: Path, out: Path) -> None:
    """Put ``staging`` in place of ``out``: two renames on one filesystem (the old set is removed after)."""
    _check_target(out)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
