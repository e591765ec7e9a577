"""``ror opendata``: the public open-data files per region (CSD XML, CSV, NDJSON) and their manifest."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ror.errors import RorError
from ror.settings import Settings

console = Console(stderr=True)


def opendata(out_dir: Path = typer.Argument(..., help="Folder of the published set (replaced atomically)."),
             region: list[str] = typer.Option(None, "--region", help="TRE_R30 region code, or 'national' for the "
                                              "resources without region (repeatable; default: every region found)."),
             formats: str = typer.Option("csd,csv,json", "--format", help="Comma-separated among csd, csv, json."),
             source: str = typer.Option("", "--source", help="Source URL written in the files (default: "
                                        "ROR_PUBLIC_BASE_URL)."),
             ):
    """Write the open-data files (public data only: access profile 0) of every region into OUT_DIR."""
    from ror.opendata.build import publish
    from ror.store.engine import make_engine
    from ror.store.migrate import upgrade
    settings = Settings.from_env()
    try:
        engine = make_engine(settings.database_url)
        upgrade(engine)
        manifest = publish(engine, settings, out_dir, region or None,
                           tuple(f.strip() for f in formats.split(",") if f.strip()), source,
                           progress=lambda message: console.print(message, highlight=False))
    except RorError as e:
        console.print(f"[red]error:[/red] {e.message}")
        raise typer.Exit(1) from None
    files = sum(len(r["files"]) for r in manifest["regions"])
    console.print(f"{len(manifest['regions'])} region(s), {files} file(s) in {out_dir}: "
                  + ", ".join(f"{t} {n}" for t, n in manifest["counts"].items()))
