"""FINESS import throughput and peak memory on a large generated raw etalab file.

    python benchmarks/feeds.py [--establishments 100000] [--database sqlite:///var/bench-feeds.db]

Writes a national-size raw file (manifest, ``structureet``, ``geolocalisation``, ``structureej`` lines, the
real layout, Windows-1252) with valid FINESS/SIRET check keys, real communes and Lambert-93 coordinates
at the commune centres, then times a first import (everything created), a reload (everything unchanged)
and reports the peak resident memory of the process (``ru_maxrss``); with ``--validate both`` (default)
each variant runs on its own database with and without profile validation (``ROR_VALIDATE_FEEDS``) and the
medians give the cost factor of validation. Results go to benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from pyproj import Transformer

from ror.feeds.finess import FinessFeed
from ror.feeds.model import _nos
from ror.feeds.runs import run_import
from ror.generate import keys
from ror.geo import load_communes
from ror.store.engine import make_engine
from ror.store.migrate import upgrade

J55 = (Path(__file__).resolve().parents[1] / "src/ror/data/nos/terminologies-v1.12.0"
       / "ValueSet-JDV-J55-CategorieEG-ROR.json")


def luhn_key(body: str) -> str:
    for d in "0123456789":
        digits = body + d
        total = sum((int(c) * 2 - 9 if int(c) > 4 else int(c) * 2) if i % 2 else int(c)
                    for i, c in enumerate(reversed(digits)))
        if total % 10 == 0:
            return digits
    raise AssertionError


def generate(path: Path, n_et: int, seed: int = 4) -> None:
    rnd = random.Random(seed)
    to_l93 = Transformer.from_crs(4326, 2154, always_xy=True)
    communes = [c for c in load_communes().values()
                if c.has_position and c.department[:2].isdigit() and c.department < "96" and c.postcodes]
    # Categories a site may carry (JDV_J55, the EG's bound value set) and that FINESS still uses.
    j55 = orjson.loads((J55).read_bytes())["compose"]["include"][0]["concept"]
    cats = sorted({c["code"] for c in j55} & {c for c, v in _nos()["TRE_R66-CategorieEtablissement"].items()
                                              if not v.retired})
    n_ej = max(1, n_et // 2)
    ejs = [luhn_key(f"{rnd.randrange(1, 95):02d}{i:06d}") for i in range(n_ej)]
    with path.open("w", encoding="cp1252", newline="\n") as f:
        f.write("finess;etalab;111;2026-05-12\n")
        geo = []
        for i in range(n_et):
            c = rnd.choice(communes)
            fin = luhn_key(f"{c.department[:2]}{500000 + i:06d}"[:8])
            siret = keys.siret(keys.siren(rnd.randrange(10**7, 10**8)), rnd.randrange(1, 10_000))
            f.write(f"structureet;{fin};{rnd.choice(ejs)};ETAB {i};ÉTABLISSEMENT GÉNÉRÉ NUMÉRO {i};;;{i % 999 + 1};R;"
                    f"DE LA RÉPUBLIQUE;;;{c.cog[2:]};{c.cog[:2]};DEP;{c.postcodes[0]} {c.name.upper()[:20]};"
                    f"0474454647;;{rnd.choice(cats)};LIB;1102;AGR;{siret};8610Z;03;MFT;1;SPH;1979-02-13;1979-02-13;"
                    f"2020-02-04;\n")
            x, y = to_l93.transform(c.longitude, c.latitude)
            geo.append(f"geolocalisation;{fin};{x:.1f};{y:.1f};1,ATLASANTE,100,IGN,BD_ADRESSE,V2.2,LAMBERT_93;"
                       f"2021-01-04\n")
        f.writelines(geo)
        for i, ej in enumerate(ejs):
            c = rnd.choice(communes)
            f.write(f"structureej;{ej};EJ {i};ENTITÉ JURIDIQUE {i};;1;R;DE PARIS;;;;{c.cog[2:]};"
                    f"{c.postcodes[0]} {c.name.upper()[:20]};{c.cog[:2]};DEP;0474454647;13;LIB;355;C.H.;"
                    f"{luhn_key(f'{rnd.randrange(10**7, 10**8)}')};8610Z;1965-01-01\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--establishments", type=int, default=100_000)
    ap.add_argument("--database", default="")
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--validate", choices=("on", "off", "both"), default="both",
                    help="profile validation of the imported resources (both: each, on separate databases)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each variant (medians are printed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-feeds-"))
    path = work / "etalab-cs1100507-stock-20260512-0400.csv"
    t = time.perf_counter()
    generate(path, args.establishments)
    print(f"generated {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rates: dict[tuple[bool, str], list[float]] = {}
    for rep in range(args.repeat):
        for validate in ((False, True) if args.validate == "both" else (args.validate == "on",)):
            url = args.database or f"sqlite:///{work / f'bench-{rep}-{int(validate)}.db'}"
            engine = make_engine(url)
            upgrade(engine)
            for label in ("first import", "reload"):
                t = time.perf_counter()
                report = run_import(engine, FinessFeed(), path, batch_size=args.batch_size, validate=validate)
                dt = time.perf_counter() - t
                c = report.counts
                rates.setdefault((validate, label), []).append(c["records"] / dt)
                print(f"{label} (validation {'on' if validate else 'off'}): {c['records']} records ({c['created']} "
                      f"created, {c['updated']} updated, {c['unchanged']} unchanged, {c['rejected']} rejected, "
                      f"{c['warnings']} warnings) in {dt:.1f} s = {c['records'] / dt:,.0f} records/s; "
                      f"peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
            engine.dispose()
    for label in ("first import", "reload"):
        off, on = rates.get((False, label)), rates.get((True, label))
        if off and on:
            print(f"{label}: median {statistics.median(off):,.0f} records/s unvalidated, {statistics.median(on):,.0f} "
                  f"validated: validation costs x{statistics.median(off) / statistics.median(on):.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB (before the imports: {base_rss:.0f} MB)")


if __name__ == "__main__":
    main()
