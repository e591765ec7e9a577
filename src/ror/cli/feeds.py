"""``ror import finess|rpps FILE``, ``ror import region FILE|FOLDER...``, ``ror import runs``, ``ror import show``.

Mounted by the main CLI with ``app.add_typer(import_app, name="import")``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ror.errors import RorError
from ror.settings import Settings

import_app = typer.Typer(help="Automatic feeds: FINESS, RPPS and regional extracts.", no_args_is_help=True)
console = Console(stderr=True)

DRY_RUN = typer.Option(False, "--dry-run", help="Do everything, keep nothing (the run and its problems are recorded).")
LIMIT = typer.Option(0, "--limit", min=0, help="Stop after this many source records (no disappearance handling).")
BATCH = typer.Option(0, "--batch-size", min=0, help="Resources per transaction (default: settings).")
MASS = typer.Option(0.2, "--max-closure-ratio", min=0.0, max=1.0,
                    help="Close disappeared resources only if they are at most this share of what the source said.")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _run(feed_factory, path: Path, dry_run: bool, limit: int, batch_size: int, full: bool, ratio: float) -> None:
    from ror.feeds.runs import run_import
    from ror.store.engine import make_engine
    from ror.store.migrate import upgrade
    settings = Settings.from_env()
    try:
        feed = feed_factory()
        engine = make_engine(settings.database_url)
        upgrade(engine)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task(f"importing {path.name}", total=None)
            report = run_import(engine, feed, path, dry_run=dry_run, limit=limit or None,
                                batch_size=batch_size or settings.bulk_batch_size, full=full,
                                max_closure_ratio=ratio,
                                on_batch=lambda done: progress.advance(task, done["records"]))
    except RorError as e:
        _fail(e.message)
        return
    for p in report.problems[:50]:
        colour = "red" if p.severity == "error" else "yellow"
        console.print(f"[{colour}]{'rejected' if p.severity == 'error' else 'warning'}[/{colour}] "
                      f"line {p.line}, {p.field}: {p.reason}")
    c = report.counts
    console.print(f"run {report.run_id}{' (dry run, nothing kept)' if dry_run else ''}: {c['records']} records; "
                  f"created {c['created']}, updated {c['updated']}, unchanged {c['unchanged']}, closed {c['closed']}, "
                  f"rejected {c['rejected']}, warnings {c['warnings']}"
                  + (f" — {report.message}" if report.message else ""))
    if c["rejected"] > 50 or c["warnings"] > 50:
        console.print(f"all problems: ror import show {report.run_id}")


@import_app.command()
def finess(file: Path = typer.Argument(..., help="etalab file, enriched headered CSV or JSON Structures flux."),
           dry_run: bool = DRY_RUN, limit: int = LIMIT, batch_size: int = BATCH, max_closure_ratio: float = MASS):
    """Import FINESS establishments (EG) and legal entities (EJ)."""
    from ror.feeds.finess import FinessFeed
    _run(FinessFeed, file, dry_run, limit, batch_size, True, max_closure_ratio)


@import_app.command()
def rpps(file: Path = typer.Argument(..., help="PS_LibreAcces_Personne_activite_*.txt"),
         dry_run: bool = DRY_RUN, limit: int = LIMIT, batch_size: int = BATCH, max_closure_ratio: float = MASS):
    """Import RPPS professionals, their sites, and pre-filled city offers with their roles."""
    from ror.feeds.rpps import RppsFeed
    _run(RppsFeed, file, dry_run, limit, batch_size, True, max_closure_ratio)


@import_app.command()
def region(files: list[Path] = typer.Argument(..., help="The extract: a FHIR Bundle / NDJSON file, a CSD XML file "
                                              "(ME 2.4 / 3.0), or the files of one $export — a folder (its "
                                              "manifest.json, else its *.ndjson) or several files."),
           code: str = typer.Option(..., "--region", help="Region code (NOS TRE_R30), e.g. 84."),
           partial: bool = typer.Option(False, "--partial", help="Not a full extract: nothing is closed."),
           dry_run: bool = DRY_RUN, limit: int = LIMIT, batch_size: int = BATCH, max_closure_ratio: float = MASS):
    """Import a region's extract, all its files as one run (consolidation and disappearance see it whole)."""
    from ror.feeds.fileset import collect
    from ror.feeds.regional import RegionalFeed
    try:
        path = collect(files)
    except RorError as e:
        _fail(e.message)
        return
    _run(lambda: RegionalFeed(code), path, dry_run, limit, batch_size, not partial, max_closure_ratio)


@import_app.command()
def runs(source: str = typer.Option("", help="Only this source (finess, rpps, region:84)."),
         last: int = typer.Option(20, help="How many runs.")):
    """List the latest import runs."""
    from ror.feeds.reports import list_runs
    from ror.store.engine import make_engine
    table = Table("run", "source", "status", "started", "records", "created", "updated", "unchanged", "closed",
                  "rejected", "file")
    for r in list_runs(make_engine(Settings.from_env().database_url), source or None, last):
        table.add_row(str(r["run_id"]), r["source"], r["status"] + (" (dry)" if r["dry_run"] else ""),
                      r["started_at"], *(str(r[k]) for k in ("records", "created", "updated", "unchanged", "closed",
                                                              "rejected")), r["file_name"])
    Console().print(table)


@import_app.command()
def show(run_id: int = typer.Argument(..., help="Run number (see `ror import runs`)."),
         changes: bool = typer.Option(False, "--changes", help="Also list the resources created, updated, closed.")):
    """Every problem of a run (line, field, reason) and, with --changes, its change report."""
    from ror.feeds.reports import run_changes, run_problems
    from ror.store.engine import make_engine
    engine = make_engine(Settings.from_env().database_url)
    out = Console()
    for p in run_problems(engine, run_id):
        out.print(f"{p['severity']}\tline {p['line']}\t{p['field']}\t{p['reason']}")
    if changes:
        for c in run_changes(engine, run_id):
            out.print(f"{c['outcome']}\t{c['rtype']}/{c['rid']}")
