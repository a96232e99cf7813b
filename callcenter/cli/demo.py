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
def run(workers: int, channels: int, min_calls: int, port: int, trunk_port: int, simulator_rtp_port: int,
        simulator_processes: int, runner: str | None, exit_when_done: bool) -> None:
    """Create the demo group, start simulated customers, workers and console, run a revisit campaign.

    Starts from a fresh demo database every time (it refuses a database holding anything but the
    demo group). Prints each call as the console shows it, the progress, and the figures (also in
    <data dir>/demo-figures.json); then keeps the console running until Ctrl-C. Ctrl-C at any
    point stops every process it started.
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
        run_demo(settings, options, make_token=_console_token, stop=stop, force=force)
    except Interrupted:
        click.echo("演示已中断 demo interrupted", err=True)
        sys.exit(130)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    if stop.is_set():
        sys.exit(0)  # Ctrl-C after the figures: the normal way to leave the console


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
