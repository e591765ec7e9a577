"""Plan a dataset, generate its regions in parallel processes, merge the national files, write the manifest.

Determinism: each region draws from its own seeded streams and writes its own files; the parent merges
the regions' sorted FINESS and RPPS parts with a k-way merge in a fixed order, so the bytes do not depend
on which process finished first. Nothing time- or path-dependent goes into the outputs or the manifest.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from multiprocessing import get_context
from pathlib import Path

from ror.generate import VERSION, keys
from ror.generate import catalog as cat
from ror.generate.dirty import expect
from ror.generate.flat import RPPS_HEADER, upper
from ror.generate.model import Legal
from ror.generate.names import ASSOCIATION_NAMES, CLINIC_NAMES, FEMALE, HOME_NAMES, MALE, SURNAMES
from ror.generate.nos import Nos
from ror.generate.places import Region, finess_prefix
from ror.generate.rand import Clock, Weighted, stream
from ror.generate.world import TYPES, RegionGenerator, RegionJob, SharedPerson

# The national ROR the generator is sized for (issue 7): 300k Organizations, 600k HealthcareServices,
# 400k Locations, 500k Practitioners, 900k PractitionerRoles.
NATIONAL_RESOURCES = 2_700_000
REGIONAL_EXTRACTS = 17          # ``--scale region`` is one seventeenth of the national volume
DEFAULT_REGION = "52"           # Pays de la Loire: 5.7 % of the population, the closest to 1/17
FINESS_MANIFEST_COUNT = 98      # third field of the FINESS first line (meaning undocumented; a value seen)
HOSPITAL_PHYSICIANS = 150_000   # national order of magnitude, for the multi-region professionals
SHARED_NAMES = {"clinic": "Groupe hospitalier privé {clinic}", "ehpad_company": "Groupe {home} Résidences seniors",
                "smr": "Groupe {home} Réadaptation", "psy_priv": "Groupe {clinic} Santé mentale"}


@dataclass(frozen=True)
class Plan:
    scale: str
    total: int
    regions: dict[str, int]     # region -> resource budget


def all_regions(nos: Nos) -> list[str]:
    """The 18 regions of JDV_J237 (TRE_R30 codes of the regions with communes in the COG)."""
    return [r for r in ("01", "02", "03", "04", "06", "11", "24", "27", "28", "32", "44", "52", "53", "75", "76",
                        "84", "93", "94") if nos.has("TRE_R30-RegionOM", r)]


def plan(scale: str, regions: list[str] | None, nos: Nos) -> Plan:
    """Resource budget per region: population shares of the national volume, of ``N``, or 1/17 each."""
    everywhere = all_regions(nos)
    unknown = [r for r in regions or [] if r not in everywhere]
    if unknown:
        raise ValueError(f"unknown region code(s): {', '.join(unknown)} (TRE_R30: {', '.join(everywhere)})")
    population = {r: Region(r, nos.current_communes).population for r in everywhere}
    if scale == "national":
        chosen = regions or everywhere
        france = sum(population.values())
        budgets = {r: round(NATIONAL_RESOURCES * population[r] / france) for r in chosen}
    elif scale == "region":
        chosen = regions or [DEFAULT_REGION]
        budgets = {r: NATIONAL_RESOURCES // REGIONAL_EXTRACTS for r in chosen}
    else:
        total = int(scale) if scale.isdigit() else 0
        if total <= 0:
            raise ValueError("the scale must be national, region or a positive number of resources")
        chosen = regions or everywhere
        selected = sum(population[r] for r in chosen)
        budgets = {r: max(1, round(total * population[r] / selected)) for r in chosen}
    return Plan(scale, sum(budgets.values()), dict(sorted(budgets.items())))


def shared_entities(p: Plan, seed: int, nos: Nos, as_of: date) -> tuple[dict[str, list[Legal]], list[SharedPerson]]:
    """Legal entities with sites in several regions (groups of clinics, EHPAD, national associations) and
    physicians working in two regions. Their identifiers come from blocks no region uses (index 99)."""
    rng = stream(seed, "shared")
    factor = p.total / NATIONAL_RESOURCES
    regions = list(p.regions)
    home = Weighted(p.regions.items())
    geo = {r: Region(r, nos.current_communes) for r in regions}
    clock = Clock(as_of)
    legals: dict[str, list[Legal]] = {}
    order: dict[str, int] = {}
    siren_seq = 0
    for g in cat.GROUPS:
        if not g.shared or len(regions) < 2:
            continue
        pool = []
        for i in range(max(1, round(g.national * factor * g.shared / 6))):
            region = home(rng)
            a = geo[region].address(rng, urban=True)
            statut = Weighted(g.statuts)(rng)
            name = SHARED_NAMES.get(g.key, "{association} - fédération {n}").format(
                clinic=rng.choice(CLINIC_NAMES), home=rng.choice(HOME_NAMES), association=rng.choice(ASSOCIATION_NAMES),
                n=i + 1)
            prefix = finess_prefix(a.commune)
            block = 9000 if len(prefix) == 4 else 90_000
            order[prefix] = order.get(prefix, 0) + 1
            number = keys.finess(prefix, block + order[prefix])
            siren_seq += 1
            siren = keys.siren((2 if statut in ("17",) else 7 if statut in ("60", "61", "63") else 5) * 10_000_000
                               + 99 * 100_000 + siren_seq)
            created = clock.instant(rng, 0.7)
            pool.append(Legal("", "1" + number, number, siren, name, upper(name, 38), statut, a,
                              geo[region].phone(rng), created, clock.after(rng, created),
                              date(1970 + rng.randrange(50), 1 + rng.randrange(12), 1 + rng.randrange(28)), g.ape,
                              g.ej_category, region))
        legals[g.key] = pool
    persons = []
    if len(regions) >= 2:
        surnames = Weighted((s, 1 / (i + 8)) for i, s in enumerate(SURNAMES))
        specialties = Weighted((u.specialty, 1) for s in cat.MCO_SERVICES for u, _ in s.units[:1])
        for i in range(max(1, round(cat.CROSS_REGION * HOSPITAL_PHYSICIANS * factor))):
            first = home(rng)
            second = home(rng)
            while second == first:
                second = home(rng)
            woman = rng.random() < 0.5
            persons.append(SharedPerson(keys.rpps(99 * 1_000_000 + i + 1), (first, second), specialties(rng),
                                        "MME" if woman else "M", surnames(rng), rng.choice(FEMALE if woman else MALE)))
    return legals, persons  # the home region of each legal entity writes its FINESS record


def _run_region(job: RegionJob) -> dict:
    return RegionGenerator(job).run()


def generate(out: Path, scale: str = "10000", seed: int = 1, regions: list[str] | None = None, jobs: int = 0,
             dirty: float = 0.005, as_of: date = date(2026, 11, 2), progress=None) -> dict:
    """Write the dataset under ``out`` and return the manifest (also written to ``out/manifest.json``)."""
    if not 0 <= dirty <= 0.5:
        raise ValueError("the dirty share must be between 0 and 0.5")
    nos = Nos()
    p = plan(scale, regions, nos)
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("fhir", "csd", "finess", "rpps", ".parts"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "csd").mkdir()
    parts = out / ".parts"
    legals, persons = shared_entities(p, seed, nos, as_of)
    index = {r: i for i, r in enumerate(all_regions(nos))}
    region_jobs = [RegionJob(r, index[r], seed, budget, as_of, dirty, out, parts, legals,
                             [s for s in persons if r in s.regions])
                   for r, budget in sorted(p.regions.items(), key=lambda kv: -kv[1])]
    workers = jobs or min(len(region_jobs), os.cpu_count() or 1)
    results: dict[str, dict] = {}
    if workers <= 1:
        for job in region_jobs:
            results[job.region] = _run_region(job)
            if progress:
                progress(job.region)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for job, result in zip(region_jobs, pool.map(_run_region, region_jobs), strict=True):
                results[job.region] = result
                if progress:
                    progress(job.region)
    ordered = [results[r] for r in sorted(results)]
    stamp = as_of.strftime("%Y%m%d")
    finess_path = out / "finess" / f"etalab-cs1100507-stock-{stamp}-0400.csv"
    rpps_path = out / "rpps" / f"PS_LibreAcces_Personne_activite_{stamp}0612.txt"
    dirty_records = [d for r in ordered for d in r["dirty"]]
    dependents = [d for r in ordered for d in r["dependents"]]
    finess_counts = _merge(parts, sorted(results), finess_path, ("structureet", "geolocalisation", "structureej"),
                           f"finess;etalab;{FINESS_MANIFEST_COUNT};{as_of.isoformat()}\n".encode("latin-1"),
                           dirty_records)
    rpps_counts = _merge(parts, sorted(results), rpps_path, ("rpps",), (RPPS_HEADER + "\n").encode(), dirty_records)
    shutil.rmtree(parts)
    manifest = _manifest(out, p, seed, dirty, as_of, ordered, finess_counts, rpps_counts, dirty_records, dependents)
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest


def _merge(parts: Path, regions: list[str], target: Path, sections: tuple[str, ...], head: bytes,
           dirty_records: list[dict]) -> dict[str, int]:
    """k-way merge of the regions' sorted parts, section after section; dirty records get their line number."""
    target.parent.mkdir(parents=True, exist_ok=True)
    counts = {}
    rel = f"{target.parent.name}/{target.name}"
    line = 1
    with target.open("wb") as out:
        out.write(head)
        for section in sections:
            files = [(parts / f"{r}.{section}").open("rb") for r in regions]
            n = 0
            for record in heapq.merge(*files):
                key, kind, payload = record.split(b"\x1f", 2)
                out.write(payload)
                line += 1
                n += 1
                if kind != b"-":
                    k = kind.decode()
                    number = key.split(b"\x1e")[0].decode()
                    dirty_records.append({"file": rel, "line": line, "kind": k, "key": number, "record": section,
                                          "expect": expect(target.parent.name, k, number)})
            for f in files:
                f.close()
            counts[section] = n
    return counts


def _digest(path: Path) -> dict:
    h, lines = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            lines += chunk.count(b"\n")
    return {"bytes": path.stat().st_size, "lines": lines, "sha256": h.hexdigest()}


def _manifest(out: Path, p: Plan, seed: int, dirty: float, as_of: date, results: list[dict],
              finess_counts: dict, rpps_counts: dict, dirty_records: list[dict], dependents: list[dict]) -> dict:
    files = {}
    for r in results:  # the regions hashed their files as they wrote them
        files.update(r["files"])
    for folder in ("finess", "rpps"):
        for path in (out / folder).iterdir():
            files[f"{folder}/{path.name}"] = _digest(path)
    files = dict(sorted(files.items()))
    totals = dict.fromkeys(TYPES, 0)
    for r in results:
        for t, n in r["resources"].items():
            totals[t] += n
    kinds: dict[str, int] = {}
    for d in dirty_records:
        label = f"{d['file'].split('/')[0]}:{d['kind']}"
        kinds[label] = kinds.get(label, 0) + 1
    dirty_records.sort(key=lambda d: (d["file"], d["line"]))
    return {
        "generator": {"name": "ror generate", "version": VERSION},
        "seed": seed, "scale": p.scale, "as_of": as_of.isoformat(), "dirty_share": dirty,
        "regions": {r["region"]: {"budget": p.regions[r["region"]], "resources": r["resources"],
                                  "capacity_records": r["capacity_records"]} for r in results},
        "resources": {**totals, "total": sum(totals.values())},
        "capacity_records": sum(r["capacity_records"] for r in results),
        "finess": finess_counts,
        "rpps": {"lines": rpps_counts["rpps"]},
        "files": files,
        "dirty": {"count": len(dirty_records), "by_kind": dict(sorted(kinds.items())), "records": dirty_records,
                  "dependents": sorted(dependents, key=lambda d: (d["file"], d["line"]))},
    }
