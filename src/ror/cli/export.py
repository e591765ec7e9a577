"""``ror export``: the Bulk Data export written to a folder offline, by the same code as the API jobs."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import orjson
import typer
from rich.console import Console

from ror.errors import RorError
from ror.settings import Settings

REGION_TAG = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
console = Console(stderr=True)


def export(out_dir: Path = typer.Argument(..., help="Folder to write the NDJSON files and manifest.json into."),
           types: list[str] = typer.Option(None, "--type", help="Resource type to export (repeatable; default: "
                                           "all, or HealthcareService with --complete)."),
           complete: bool = typer.Option(False, "--complete", help="includeAssociatedData=_myCompleteExtract: the "
                                         "offers with their organisations, places, roles and professionals."),
           region: str = typer.Option(None, "--region", help="Only the resources tagged with this TRE_R30 region "
                                      "code (e.g. 11); with --complete: that region's offers and what they link."),
           since: str = typer.Option(None, "--since", help="Only resources updated after this FHIR instant."),
           type_filter: list[str] = typer.Option(None, "--type-filter", help="A _typeFilter query, e.g. "
                                                 "'HealthcareService?service-type=...' (repeatable)."),
           profile: int = typer.Option(1, "--profile", min=0, max=5, help="Access profile the export is made for "
                                       "(0 = open data)."),
           ):
    """Export the directory (FHIR Bulk Data NDJSON, one file per type and split by size) into OUT_DIR."""
    from ror.export.jobs import manifest_outputs
    from ror.export.request import parse_export
    from ror.export.runner import run_export
    from ror.fhirdates import stamp_to_instant
    from ror.store.engine import make_engine
    from ror.store.migrate import upgrade
    settings = Settings.from_env()
    pairs: list[tuple[str, str]] = [("_type", t) for t in types or []]
    if complete:
        pairs.append(("includeAssociatedData", "_myCompleteExtract"))
    if since:
        pairs.append(("_since", since))
    pairs += [("_typeFilter", q) for q in type_filter or []]
    try:
        if region:
            own = parse_export(pairs, settings, profile).own
            filtered = {q.split("?", 1)[0] for q in type_filter or []}
            if filtered:
                raise typer.BadParameter("--region cannot be combined with --type-filter: add _tag to the filters")
            pairs += [("_typeFilter", f"{t}?_tag={REGION_TAG}|{region}") for t in own]
        req = parse_export(pairs, settings, profile)
        if out_dir.exists() and any(out_dir.iterdir()):
            console.print(f"[red]error:[/red] {out_dir} is not empty")
            raise typer.Exit(1)
        engine = make_engine(settings.database_url)
        upgrade(engine)
        result = run_export(engine, settings, req, profile, out_dir,
                            check=lambda progress: console.print(progress, highlight=False))
    except RorError as e:
        console.print(f"[red]error:[/red] {e.message}")
        raise typer.Exit(1) from None
    outputs = manifest_outputs(result)
    manifest = {"transactionTime": stamp_to_instant(result.snapshot.transaction_time),
                "request": "ror export " + shlex.join(sys.argv[2:]), "requiresAccessToken": False,
                "output": [{"type": o["type"], "url": o["file"], "count": o["count"]} for o in outputs["output"]],
                "error": []}
    (out_dir / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    counts = result.counts()
    console.print(f"{sum(counts.values())} resources in {len(result.files)} file(s): "
                  + ", ".join(f"{t} {n}" for t, n in counts.items()))
