"""``ror generate``: a synthetic national dataset in the real input formats (docs/generator.md).

Mounted in ``ror.cli.main`` with ``app.command("generate")(generate)``.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)


def generate(out: Path = typer.Argument(..., help="Output folder (its fhir/, csd/, finess/, rpps/ are replaced)."),
             scale: str = typer.Option("10000", help="national (≈2.7M resources), region (1/17 of it) or a number "
                                                     "of resources."),
             seed: int = typer.Option(1, help="Same seed, same bytes."),
             regions: str = typer.Option("", help="Comma-separated TRE_R30 region codes (default: all; 52 for "
                                                  "--scale region)."),
             jobs: int = typer.Option(0, help="Worker processes, one region each (default: one per CPU)."),
             dirty: float = typer.Option(0.005, help="Share of records made dirty on purpose (0 for none)."),
             as_of: str = typer.Option("2026-11-02", help="Extraction date (YYYY-MM-DD): file names, dates.")):
    """Write a raw FINESS file, an RPPS extraction, per-region FHIR NDJSON and CSD XML, and manifest.json."""
    from ror.generate.runner import generate as run

    try:
        extraction = date.fromisoformat(as_of)
    except ValueError:
        console.print(f"[red]error:[/red] --as-of must be a date YYYY-MM-DD, not {as_of!r}")
        raise typer.Exit(1) from None
    chosen = [r.strip() for r in regions.split(",") if r.strip()] or None
    started = time.monotonic()
    try:
        manifest = run(out, scale, seed, chosen, jobs, dirty, extraction,
                       progress=lambda region: console.print(f"region {region} done"))
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    total = manifest["resources"]["total"]
    size = sum(f["bytes"] for f in manifest["files"].values())
    console.print(f"{total:,} resources ({manifest['capacity_records']:,} capacity records), "
                  f"{manifest['finess']['structureet']:,} FINESS establishments, {manifest['rpps']['lines']:,} RPPS "
                  f"lines, {manifest['dirty']['count']:,} dirty records, {size / 1e6:,.0f} MB in "
                  f"{time.monotonic() - started:,.0f} s -> {out / 'manifest.json'}")
