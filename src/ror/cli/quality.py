"""``ror quality …``: run the data-quality scan (anomalies as Task, indicators) and show the indicators."""

from __future__ import annotations

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ror.quality.indicators import GROUPINGS, indicators, runs
from ror.settings import Settings
from ror.store.engine import make_engine
from ror.store.migrate import upgrade

quality_app = typer.Typer(help="Data quality: NOS conformity, completeness, indicators, anomalies.",
                          no_args_is_help=True)
out = Console()


@quality_app.command("run")
def run_cmd(region: str = typer.Option(None, help="Only the resources of this region (TRE_R30 code)."),
            stale_after_hours: float = typer.Option(None, help="Default: ROR_CAPACITY_STALE_AFTER_H.")):
    """Scan the store: raise, update and close the anomaly Tasks; store the indicators of this run."""
    from ror.quality.run import run
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    hours = stale_after_hours if stale_after_hours is not None else settings.capacity_stale_after_h
    result = run(engine, region=region, stale_after_h=hours)
    c = result.counts
    out.print(f"run {result.run_id}: {len(result.anomalies)} anomalies; Tasks created {c['created']}, updated "
              f"{c['updated']}, closed {c['closed']}, unchanged {c['unchanged']}")


@quality_app.command("indicators")
def indicators_cmd(by: str = typer.Option("region", help=f"Grouping: {', '.join(GROUPINGS)}."),
                   region: str = typer.Option(None, help="Only this region (TRE_R30 code)."),
                   run_id: int = typer.Option(None, "--run", help="A past run (default: the latest)."),
                   history: bool = typer.Option(False, "--history", help="List the runs instead."),
                   as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Indicators of the latest run per region, department or sector."""
    if by not in GROUPINGS:
        raise typer.BadParameter(f"--by must be one of {', '.join(GROUPINGS)}")
    with make_engine(Settings.from_env().database_url).connect() as conn:
        data = runs(conn) if history else indicators(conn, by, region, run_id)
    if as_json or history:
        out.print_json(orjson.dumps(data).decode())
        return
    if data["run"] is None:
        out.print("no quality run yet: ror quality run")
        raise typer.Exit(1)
    cols = ("offers", "completenessRate", "establishments", "establishmentCompletenessRate", "locations",
            "capacityUpToDateRate", "nosConformityRate", "openAnomalies")
    table = Table(title=f"Quality indicators by {by} (run {data['run']['id']}, {data['run']['finishedAt']})")
    table.add_column(by)
    for col in cols:
        table.add_column(col, justify="right")
    for g in [*data["groups"], {"key": "total", **data["total"]}]:
        table.add_row(g["key"], *(f"{g[c]:.1%}" if c.endswith("Rate") else str(g[c]) for c in cols))
    out.print(table)
