"""``callcenter users``: console accounts from the command line."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa

from callcenter.cli.context import echo_json, load_settings, open_database
from callcenter.domain import Role


@click.group("users")
def users() -> None:
    """Create and list console users."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--store", "store_code", help="Store scope (omit for group-wide access).")
@click.option("--name", "display_name", help="Display name.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create(username: str, role: str, store_code: str | None, display_name: str | None, password_stdin: bool) -> None:
    """Create USERNAME, or reset its role, scope and password when it exists."""
    from callcenter.accounts import AccountError, upsert_user

    if not password_stdin:
        raise click.UsageError("give the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    db = open_database(load_settings())
    with db.session() as s:
        try:
            user, created = upsert_user(s, username, password, Role(role), store_code=store_code,
                                        display_name=display_name)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
    scope = store_code or "all stores"
    click.echo(f"user {username} {'created' if created else 'updated'}: {role}, {scope}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_users(as_json: bool) -> None:
    """List users."""
    from callcenter.storage.models import Store, User

    db = open_database(load_settings())
    with db.session() as s:
        rows = [
            {"username": u.username, "role": u.role.value, "store": code, "active": u.active}
            for u, code in s.execute(
                sa.select(User, Store.code).outerjoin(Store, Store.id == User.store_id).order_by(User.username)
            )
        ]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['username']:<20} {r['role']:<11} {r['store'] or '*':<10} {'' if r['active'] else 'disabled'}")
