"""``callcenter init``: create or migrate the database, optionally load the demo group."""

from __future__ import annotations

import datetime as dt

import click

from callcenter.cli.context import echo_json, load_settings, open_database


@click.command("init")
@click.option("--demo", is_flag=True, help="Load the demo dealer group (2 stores, ~5,000 customers).")
@click.option("--customers", "n_customers", type=click.IntRange(10, 2_000_000), default=5000, show_default=True,
              help="Demo size.")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Demo data ends the day before this date (default: today).")
@click.option("--seed", type=int, default=2026, show_default=True, help="Demo random seed.")
@click.option("--json", "as_json", is_flag=True)
def init_command(demo: bool, n_customers: int, as_of: dt.datetime | None, seed: int, as_json: bool) -> None:
    """Create or migrate the database (running it again is harmless)."""
    settings = load_settings()
    db = open_database(settings, migrate=True)
    from callcenter.storage.db import current_revision

    result: dict = {"database": _safe_url(db.url), "revision": current_revision(db)}
    if demo:
        from callcenter.demo import load_demo

        day = as_of.date() if as_of else dt.date.today()
        result["demo"] = load_demo(db, as_of=day, n_customers=n_customers, seed=seed,
                                   settings=settings)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"database ready: {result['database']} (schema {result['revision']})")
        if demo:
            d = result["demo"]
            if d.get("skipped"):
                click.echo("demo data already loaded")
            else:
                click.echo(f"demo loaded: {d['stores']} stores, {d['customers']} customers, "
                           f"{d['vehicles']} vehicles, {d['visits']} visits")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
