"""``ror capacity …``: bed availability summaries, stale places and history from the command line."""

from __future__ import annotations

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ror.capacity import history
from ror.capacity.summary import GROUPINGS, stale_places, summary
from ror.fhirdates import parse_range
from ror.settings import Settings
from ror.store.engine import make_engine

capacity_app = typer.Typer(help="Bed and place availability.", no_args_is_help=True)
out = Console()


def _engine():
    return make_engine(Settings.from_env().database_url)


@capacity_app.command("summary")
def summary_cmd(by: str = typer.Option("region", help=f"Grouping: {', '.join(GROUPINGS)}."),
                status: str = typer.Option("02", help="Capacity status (TRE_R330), 02 = available."),
                temporality: str = typer.Option("01", help="Temporality (TRE_R331), 01 = current."),
                stale_after_hours: float = typer.Option(None, help="Default: ROR_CAPACITY_STALE_AFTER_H."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Available beds and places by region, department, activity, establishment or temporary assignment."""
    if by not in GROUPINGS:
        raise typer.BadParameter(f"--by must be one of {', '.join(GROUPINGS)}")
    hours = stale_after_hours if stale_after_hours is not None else Settings.from_env().capacity_stale_after_h
    with _engine().connect() as conn:
        data = summary(conn, by, status=status, temporality=temporality, stale_after_h=hours)
    if as_json:
        out.print_json(orjson.dumps(data).decode())
        return
    table = Table(title=f"Capacity status {status}, temporality {temporality}, by {by}")
    for col in ("key", "label", "beds", "places", "locations", "stale"):
        table.add_column(col, justify="right" if col in ("beds", "places", "locations", "stale") else "left")
    for g in data["groups"]:
        table.add_row(g["key"], g.get("label", ""), str(g["beds"]), str(g["places"]), str(g["locations"]),
                      str(g["staleLocations"]))
    out.print(table)


@capacity_app.command("stale")
def stale_cmd(stale_after_hours: float = typer.Option(None, help="Default: ROR_CAPACITY_STALE_AFTER_H.")):
    """Places whose capacities were not updated for the given time."""
    hours = stale_after_hours if stale_after_hours is not None else Settings.from_env().capacity_stale_after_h
    with _engine().connect() as conn:
        for p in stale_places(conn, stale_after_h=hours):
            out.print(f"{p['location']}\t{p['lastCapacityUpdate'] or 'never'}")


@capacity_app.command("history")
def history_cmd(location: str = typer.Option(None, help="Location id."),
                establishment: str = typer.Option(None, help="FINESS or idNatStruct of an establishment."),
                since: str = typer.Option(None, help="FHIR date or dateTime."),
                until: str = typer.Option(None, help="FHIR date or dateTime.")):
    """Capacity changes of a place or an establishment over a period."""
    if not location and not establishment:
        raise typer.BadParameter("give --location or --establishment")
    bounds = []
    for name, value, high in (("since", since, False), ("until", until, True)):
        rng = parse_range(value) if value else None
        if value and rng is None:
            raise typer.BadParameter(f"--{name} must be a FHIR date or dateTime")
        bounds.append(rng[1 if high else 0] if rng else None)
    with _engine().connect() as conn:
        for e in history.query(conn, location_id=location, establishment=establishment, since=bounds[0],
                               until=bounds[1]):
            out.print_json(orjson.dumps(e.to_json()).decode())
