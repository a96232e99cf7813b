"""``callcenter stores``: the stores of the dealer group."""

from __future__ import annotations

import click
import sqlalchemy as sa

from callcenter.cli.context import echo_json, load_settings, open_database
from callcenter.config import ConfigError, parse_timezone


@click.group("stores")
def stores() -> None:
    """List and add the group's stores (门店)."""


@stores.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--city")
@click.option("--timezone", default="Asia/Shanghai", show_default=True)
@click.option("--cycle-mid", type=click.IntRange(1, 24), help="Maintenance cycle in months, mid tier.")
@click.option("--cycle-premium", type=click.IntRange(1, 24), help="Maintenance cycle in months, premium tier.")
def add(code: str, name: str, city: str | None, timezone: str, cycle_mid: int | None,
        cycle_premium: int | None) -> None:
    """Add a store, or update it when CODE exists."""
    from callcenter.storage.models import Store

    try:
        parse_timezone("--timezone", timezone)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    if not code.strip() or len(code) > 32:
        raise click.BadParameter("store code must be 1-32 characters")
    db = open_database(load_settings())
    with db.session() as s:
        store = s.scalar(sa.select(Store).where(Store.code == code))
        created = store is None
        if created:
            store = Store(code=code)
            s.add(store)
        store.name, store.city, store.timezone = name, city, timezone
        store.cycle_months_mid, store.cycle_months_premium = cycle_mid, cycle_premium
    click.echo(f"store {code} {'added' if created else 'updated'}")


@stores.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_stores(as_json: bool) -> None:
    """List the stores."""
    from callcenter.storage.models import Store

    db = open_database(load_settings())
    with db.session() as s:
        rows = [
            {"code": st.code, "name": st.name, "city": st.city, "timezone": st.timezone,
             "cycle_months_mid": st.cycle_months_mid, "cycle_months_premium": st.cycle_months_premium}
            for st in s.scalars(sa.select(Store).order_by(Store.code))
        ]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['code']:<10} {r['name']:<24} {r['city'] or '':<8} {r['timezone']}")
