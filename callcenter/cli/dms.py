"""``callcenter import customers|visits FILE``: load a dealer's DMS exports."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from callcenter.cli.context import echo_json, load_settings, open_database


@click.group("import")
def import_group() -> None:
    """Import DMS exports (CSV in UTF-8/GBK, XLSX, XLS); see docs/import-format.md."""


def _options(func):
    func = click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")(func)
    func = click.option("--id-scope", type=click.Choice(["group", "store"]), default="group", show_default=True,
                        help="Whose customer numbers these are: the group's (one number, one person in every "
                             "store) or each store's own DMS numbering (the same number in two stores is two "
                             "people); see docs/import-format.md.")(func)
    func = click.option("--store", "store_code", help="Store for rows whose store column is blank or absent.")(func)
    func = click.option("--dry-run", is_flag=True, help="Validate only; change nothing.")(func)
    func = click.argument("file", type=click.Path(path_type=Path, dir_okay=True))(func)
    return func


@import_group.command("customers")
@_options
def customers(file: Path, dry_run: bool, store_code: str | None, id_scope: str, as_json: bool) -> None:
    """Import customers and their vehicles (one row per vehicle)."""
    from callcenter.dms.importer import import_customers

    _run(import_customers, file, dry_run, store_code, id_scope, as_json)


@import_group.command("visits")
@_options
def visits(file: Path, dry_run: bool, store_code: str | None, id_scope: str, as_json: bool) -> None:
    """Import service visits (customers must be imported first)."""
    from callcenter.dms.importer import import_visits

    _run(import_visits, file, dry_run, store_code, id_scope, as_json)


def _run(importer, file: Path, dry_run: bool, store_code: str | None, id_scope: str, as_json: bool) -> None:
    from callcenter.dms.importer import ImportFailed

    db = open_database(load_settings())
    bar = None
    show_bar = sys.stderr.isatty()

    def on_total(total):
        nonlocal bar
        if show_bar and total and total > 5000:
            bar = click.progressbar(length=total, label=f"importing {file.name}", file=sys.stderr)
            bar.__enter__()

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

    try:
        report = importer(db, file, dry_run=dry_run, store_code=store_code, id_scope=id_scope, progress=progress,
                          on_total=on_total)
    except ImportFailed as exc:
        if bar is not None:
            bar.__exit__(None, None, None)
        if as_json:
            echo_json({"imported": 0, "updated": 0, "rejected": 0, "errors": [], "error": str(exc)})
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    finally:
        db.dispose()
    if bar is not None:
        bar.__exit__(None, None, None)
    if as_json:
        echo_json(report.as_dict())
    else:
        verb = "would import" if dry_run else "imported"
        click.echo(f"{file.name}: {report.rows} rows; {verb} {report.imported}, updated {report.updated}, "
                   f"unchanged {report.unchanged}, rejected {report.rejected}")
        for e in report.errors[:50]:
            click.echo(f"  row {e.row}, {e.column} = {e.value!r}: {e.reason}")
        if len(report.errors) > 50:
            click.echo(f"  ... {len(report.errors) - 50} more errors (use --json for all)")
        for w in report.warnings:
            click.echo(f"  warning: {w}")
    sys.exit(report.exit_code)
