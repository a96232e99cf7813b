"""``callcenter demo run``: the whole revisit flow on this machine (``make run`` ends with it).

The orchestration lives in :mod:`campaigns.demo_run`; this command wires the settings, Ctrl-C
and the console API token (the console's own token format, :mod:`web.security`).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from callcenter.cli.context import load_settings


@click.group("demo")
def demo() -> None:
    """The demo dealer group with simulated customers (演示)."""


@demo.command("run")
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Dialer worker processes (4 calls each).")
@click.option("--channels", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Concurrent calls of the demo campaign.")
@click.option("--min-calls", type=click.IntRange(1, 1000), default=30, show_default=True,
              help="The campaign takes the fewest days of service visits that give at least this many customers.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Console port.")
@click.option("--trunk-port", type=click.IntRange(1024, 65000), default=5070, show_default=True,
              help="UDP port of the simulated customers on 127.0.0.1 (the robot's trunk).")
@click.option("--simulator-rtp-port", type=click.IntRange(1024, 64000), default=30000, show_default=True,
              help="First RTP port of the simulated customers (the robot's start at CALLCENTER_RTP_PORT, 20000).")
@click.option("--simulator-processes", type=click.IntRange(1, 32), default=5, show_default=True,
              help="Simulated phones, 4 calls each.")
@click.option("--runner", default=None, metavar="MODULE:FUNCTION",
              help="Call runner factory(phone, settings) instead of the robot (campaigns.robot:make_runner).")
@click.option("--exit-when-done", is_flag=True,
              help="Stop everything after the figures instead of keeping the console running.")
@click.option("--no-history", is_flag=True,
              help="Skip the demo history (a year of past revisit work, marked 演示历史数据).")
def run(workers: int, channels: int, min_calls: int, port: int, trunk_port: int, simulator_rtp_port: int,
        simulator_processes: int, runner: str | None, exit_when_done: bool, no_history: bool) -> None:
    """Create the demo group, start simulated customers, workers and console, run a revisit campaign.

    Starts from a fresh demo database every time (it refuses a database holding anything but the
    demo group), with a year of past revisit work (calls, tickets, improvement plans) marked as
    演示历史数据 so that every report has months to show. Prints each call as the console shows it,
    the progress, and the figures (also in <data dir>/demo-figures.json); then keeps the console
    running until Ctrl-C. Ctrl-C at any point stops every process it started.
    """
    from campaigns.demo_run import DemoError, DemoOptions, Interrupted, run_demo

    settings = load_settings()
    if settings.log_level == "INFO":  # the demo's own lines are the progress; services log to files
        logging.getLogger().setLevel(logging.WARNING)
    options = DemoOptions(workers=workers, channels=channels, min_calls=min_calls, console_port=port,
                          trunk_port=trunk_port, simulator_rtp_port=simulator_rtp_port,
                          simulator_processes=simulator_processes, runner=runner, keep_console=not exit_when_done)
    stop, force = threading.Event(), threading.Event()

    def on_signal(_signum, _frame) -> None:
        (force if stop.is_set() else stop).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        run_demo(settings, options, make_token=_console_token, stop=stop, force=force,
                 history=None if no_history else _history(settings))
    except Interrupted:
        click.echo("演示已中断 demo interrupted", err=True)
        sys.exit(130)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    if stop.is_set():
        sys.exit(0)  # Ctrl-C after the figures: the normal way to leave the console


@demo.command("history")
@click.option("--json", "as_json", is_flag=True)
def history(as_json: bool) -> None:
    """Add the demo history to the demo group in the configured database (once; a second run adds
    nothing): a year of revisit calls, tickets, callbacks and improvement plans, marked 演示历史数据."""
    import datetime as dt

    from callcenter.cli.context import echo_json, open_database
    from demo.history import HistoryError, seed_history

    settings = load_settings()
    db = open_database(settings)
    try:
        result = seed_history(db, today=dt.date.today(), tz=settings.timezone,
                              default_cycle_mid=settings.cycle_months_mid,
                              default_cycle_premium=settings.cycle_months_premium)
    except HistoryError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
    else:
        click.echo(_history_line(result))


def _history(settings):
    """The demo run's history step: seed, then the line it prints."""
    from demo.history import seed_history

    def seed(db, today) -> str:
        return _history_line(seed_history(db, today=today, tz=settings.timezone,
                                          default_cycle_mid=settings.cycle_months_mid,
                                          default_cycle_premium=settings.cycle_months_premium))

    return seed


def _history_line(result: dict) -> str:
    if result.get("skipped"):
        return f"演示历史数据已存在 demo history already there ({result['campaigns']} 个历史活动)"
    return (f"演示历史数据已生成 demo history: {result['calls']:,} 通电话 ({result['campaigns']} 个历史活动, 近 12 个月), "
            f"{result['tags']:,} 个反馈标签, {result['tickets']:,} 张工单, {result['plans']} 个改善计划")


def _console_token(db) -> str:
    """A read token of the demo administrator for the console API (shown nowhere, valid one day)."""
    import datetime as dt

    import sqlalchemy as sa

    from callcenter.storage.models import User, utcnow
    from callcenter.storage.web_models import ApiToken
    from web.security import new_api_token

    token, digest = new_api_token()
    with db.session() as s:
        user_id = s.scalar(sa.select(User.id).where(User.username == "admin"))
        if user_id is None:
            raise click.ClickException("the demo group has no admin user")
        s.add(ApiToken(name="demo run", token_hash=digest, prefix=token[:10], user_id=user_id, can_write=False,
                       expires_at=utcnow() + dt.timedelta(days=1)))
    return token
