"""The ``ror`` command: serve the API, manage the database, load resources."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ror.cli.apps import apps_app
from ror.cli.capacity import capacity_app
from ror.cli.export import export
from ror.cli.feeds import import_app
from ror.cli.generate import generate
from ror.cli.opendata import opendata
from ror.cli.quality import quality_app
from ror.cli.terminology import terminology_app
from ror.errors import RorError
from ror.settings import Settings

app = typer.Typer(help="ROR national: the national directory of the French health offer (FHIR R4).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema and maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(terminology_app, name="terminology")
app.add_typer(import_app, name="import")
app.add_typer(capacity_app, name="capacity")
app.add_typer(apps_app, name="apps")
app.add_typer(quality_app, name="quality")
app.command("generate")(generate)
app.command("export")(export)
app.command("opendata")(opendata)
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Address to bind."),
          port: int = typer.Option(8000, help="TCP port."),
          workers: int = typer.Option(1, help="Worker processes (PostgreSQL for more than one writer)."),
          log_level: str = typer.Option("info", help="uvicorn's log level (warning: no startup lines).")):
    """Serve the FHIR API at http://HOST:PORT/fhir (upgrades the schema first)."""
    from ror.api.server import LOG_LEVELS
    from ror.api.server import serve as serve_api
    if log_level not in LOG_LEVELS:
        _fail(f"--log-level {log_level!r}: one of {', '.join(LOG_LEVELS)}")
    from ror.store.engine import make_engine
    from ror.store.migrate import upgrade
    settings = Settings.from_env()
    upgrade(make_engine(settings.database_url))
    if not settings.auth_required:
        console.print("[yellow]trust space off (ROR_AUTH_REQUIRED=false): every caller has full access, the "
                      "admin API included — keep this server on 127.0.0.1 (docs/security.md)[/yellow]")
    serve_api(host, port, workers, log_level)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")):
    """Create or migrate the schema (Alembic)."""
    from ror.store.engine import make_engine
    from ror.store.migrate import upgrade
    settings = Settings.from_env()
    upgrade(make_engine(settings.database_url), revision)
    console.print(f"schema at revision {revision} on {settings.database_url.split('@')[-1]}")


@db_app.command("prune")
def db_prune():
    """Drop search-index rows that no `next` link can need any more (older than the cursor lifetime)."""
    from ror.store import repository
    from ror.store.engine import make_engine, write_transaction
    settings = Settings.from_env()
    with write_transaction(make_engine(settings.database_url)) as conn:
        n = repository.prune_index_history(conn, settings.page_cursor_ttl_s)
    console.print(f"{n} superseded index rows removed")


def example_files() -> list[Path]:
    folder = resources.files("ror") / "data" / "examples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".json"))


@app.command()
def load(files: list[Path] = typer.Argument(None, help="Bundle (.json) or NDJSON files."),
         examples: bool = typer.Option(False, "--examples", help="Load the IG examples bundled with ROR."),
         batch_size: int = typer.Option(0, help="Resources per transaction (default: settings)."),
         keep_last_updated: bool = typer.Option(
             False, help="Keep each resource's meta.lastUpdated (migrating an existing directory) instead of "
                         "stamping the time of the load."),
         ):
    """Load resources, keeping their ids; unchanged resources are skipped (no new version)."""
    from ror.fhir.files import Rejected, read_items
    from ror.store import bulk
    from ror.store.engine import make_engine
    from ror.store.migrate import upgrade
    settings = Settings.from_env()
    paths = list(files or []) + (example_files() if examples else [])
    if not paths:
        _fail("give files to load, or --examples")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    rejected: list[Rejected] = []
    total_size = sum(p.stat().st_size for p in paths if p.exists())
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("loading", total=None)
        counts = None

        def accepted():
            for path in paths:
                for item in read_items(path):
                    if isinstance(item, Rejected):
                        rejected.append(item)
                    else:
                        yield item

        try:
            counts = bulk.upsert(engine, accepted(), batch_size or settings.bulk_batch_size,
                                 on_batch=lambda done: progress.advance(task, sum(done.values())),
                                 keep_last_updated=keep_last_updated, on_rejected=rejected.append)
            if counts["created"] + counts["updated"] > 10_000:
                bulk.vacuum_analyze(engine)
        except RorError as e:
            _fail(e.message)
    for r in rejected[:50]:
        console.print(f"[yellow]rejected[/yellow] {r.where}: {r.reason}")
    console.print(f"{len(paths)} file(s), {total_size:,} bytes: created {counts['created']}, updated "
                  f"{counts['updated']}, unchanged {counts['unchanged']}, rejected {len(rejected)}")
    if rejected:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
