"""``ror terminology``: load NOS tables, list them, and find stored resources using retired codes."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ror.errors import RorError
from ror.settings import Settings

terminology_app = typer.Typer(help="NOS terminologies (TRE code systems, JDV value sets).", no_args_is_help=True)
console = Console(stderr=True)
out = Console()


def _engine():
    from ror.store.engine import make_engine
    from ror.store.migrate import upgrade
    engine = make_engine(Settings.from_env().database_url)
    upgrade(engine)
    return engine


def bundled_path() -> Path:
    """The NOS set shipped with ROR national (see ror/data/nos/SOURCES.md)."""
    return Path(str(resources.files("ror") / "data" / "nos"))


@terminology_app.command("load")
def load(path: Path = typer.Argument(None, help="A NOS zip, a folder, or a .tabs / .json file."),
         bundled: bool = typer.Option(False, "--bundled", help="Load the NOS set shipped with ROR national."),
         as_json: bool = typer.Option(False, "--json", help="Print the full change report as JSON."),
         limit: int = typer.Option(20, help="Codes shown per table and change kind.")):
    """Load or update NOS tables, keeping every version, and report what changed."""
    from ror.store.engine import write_transaction
    from ror.terminology.store import load_path
    if path is None and not bundled:
        console.print("[red]error:[/red] give a PATH, or --bundled")
        raise typer.Exit(1)
    target = bundled_path() if bundled else path
    started = time.perf_counter()
    try:
        with write_transaction(_engine()) as conn:
            report = load_path(conn, target)
    except RorError as e:
        console.print(f"[red]error:[/red] {e.message}")
        raise typer.Exit(1) from None
    elapsed = time.perf_counter() - started
    if as_json:
        out.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    t = report.totals()
    console.print(f"{target}: {t['new_tables']} new table(s) ({t['new_codes']} codes), {t['changed_tables']} "
                  f"changed; codes added {t['added']}, retired {t['retired']}, reactivated {t['reactivated']}, "
                  f"relabelled {t['relabelled']}, removed {t['removed']}; {t['unchanged_versions']} version(s) "
                  f"already loaded, {t['older_versions']} older ignored, {t['skipped_files']} file(s) skipped "
                  f"({elapsed:.1f} s)")
    if report.changed:
        table = Table("table", "versions", "added", "retired", "reactivated", "relabelled", "removed")

        def few(codes):
            return ", ".join(codes[:limit]) + (f" (+{len(codes) - limit})" if len(codes) > limit else "")
        for c in report.changed:
            table.add_row(c.table, f"{c.from_version} -> {c.to_version}", few(c.added), few(c.retired),
                          few(c.reactivated), few([f"{r['code']}: {r['from']} -> {r['to']}" for r in c.relabelled]),
                          few(c.removed))
        out.print(table)
    for u in report.unresolved[:limit]:
        console.print(f"[yellow]note[/yellow] {u}")


@terminology_app.command("list")
def list_tables(name: str = typer.Argument("", help="Only tables whose NOS name starts with this.")):
    """The loaded tables, their current version and how many versions are kept."""
    from sqlalchemy import func, select

    from ror.terminology.schema import nos_table, nos_version
    with _engine().connect() as conn:
        rows = conn.execute(
            select(nos_table.c.kind, nos_table.c.name, nos_version.c.version,
                   select(func.count()).where(nos_version.c.table_pk == nos_table.c.pk).scalar_subquery())
            .join(nos_version, nos_version.c.pk == nos_table.c.current_version)
            .where(nos_table.c.name.startswith(name)).order_by(nos_table.c.name)).all()
    table = Table("kind", "name", "current version", "versions kept")
    for r in rows:
        table.add_row(r[0], r[1], r[2], str(r[3]))
    out.print(table)


@terminology_app.command("impact")
def impact(as_json: bool = typer.Option(False, "--json", help="One JSON object per line.")):
    """Stored resources whose codes are retired in the loaded NOS: the future anomalies."""
    from ror.terminology.cache import Terminology
    from ror.terminology.impact import retired_usage
    count = 0
    with _engine().connect() as conn:
        for u in retired_usage(conn, Terminology()):
            count += 1
            if as_json:
                out.print(json.dumps(u.__dict__, ensure_ascii=False), soft_wrap=True)
            else:
                out.print(f"{u.rtype}/{u.rid}  {u.path}  {u.system}|{u.code}  {u.reason}", soft_wrap=True)
    console.print(f"{count} coding(s) using retired codes")
