"""``callcenter customers``: the customer base (保有/有效/流失/再保)."""

from __future__ import annotations

import datetime as dt

import click

from callcenter.cli.context import echo_json, load_settings, open_database

LABELS = {"base": "保有客户", "active": "有效客户", "lapsed": "流失客户", "insured": "再保客户"}
BREAKDOWNS = {"by_city": "城市", "by_model": "车型", "by_tier": "档次", "by_gender": "性别", "by_age_band": "年龄段"}


@click.group("customers")
def customers() -> None:
    """Customer-base statistics."""


@customers.command("stats")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Date of the snapshot, YYYY-MM-DD (default: today).")
@click.option("--store", "store_code", help="Only the customers of this store (code).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(as_of: dt.datetime | None, store_code: str | None, as_json: bool) -> None:
    """Counts of 保有/有效/流失/再保 customers, with breakdowns."""
    from callcenter.customer_base import customer_base_stats

    settings = load_settings()
    db = open_database(settings)
    day = as_of.date() if as_of else dt.date.today()
    with db.session() as s:
        try:
            result = customer_base_stats(
                s, day, store_code=store_code,
                default_cycle_mid=settings.cycle_months_mid,
                default_cycle_premium=settings.cycle_months_premium,
            )
        except LookupError as exc:
            raise click.ClickException(str(exc.args[0])) from None
    result.pop("store")
    if as_json:
        echo_json(result)
        return
    base = result["base"] or 1
    click.echo(f"客户基盘 / customer base as of {result['as_of']}" + (f" (store {store_code})" if store_code else ""))
    for key, label in LABELS.items():
        click.echo(f"  {label} {key:<8} {result[key]:>9,}  {100 * result[key] / base:5.1f}%")
    for key, label in BREAKDOWNS.items():
        click.echo(f"\n  {label} ({key}):   {'base':>8} {'active':>8} {'lapsed':>8} {'insured':>8}")
        for value, counts in list(result[key].items())[:12]:
            click.echo(f"    {value:<14}" + "".join(f"{counts[c]:>9,}" for c in LABELS))
        if len(result[key]) > 12:
            click.echo(f"    ... {len(result[key]) - 12} more (use --json)")
