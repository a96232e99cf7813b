"""``callcenter simulate``: simulated customers (模拟客户) behind one SIP address.

pjsua2, numpy and the personas are loaded only inside the command (``callcenter --help`` stays
fast); the phone processes import them in their own interpreters.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
from pathlib import Path

import click

from callcenter.cli.context import echo_json, load_settings


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:5070")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise click.BadParameter(f"{host!r}: expected an IPv4 address of this machine, e.g. 127.0.0.1") from None
    return host, int(port)


@click.command("simulate")
@click.option("--listen", "listen", default="127.0.0.1:5070", show_default=True, metavar="HOST:PORT",
              help="The address the robot dials: set CALLCENTER_SIP_TRUNK to it.")
@click.option("--personas", "personas", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Personas file (default: the shipped campaigns/personas/personas.yaml).")
@click.option("--processes", "-n", type=click.IntRange(1, 64), default=5, show_default=True,
              help="Phone processes, 4 calls each (5 x 4 = 20 calls: the robot's 16 and room for ring-outs).")
@click.option("--rtp-port", type=click.IntRange(1024, 65000), default=30000, show_default=True,
              help="First RTP port; phone i uses 200 ports from RTP_PORT + 200 i (keep clear of the robot's).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where each call's JSON log goes (default: <data dir>/simulator/calls).")
@click.option("--default", "default", default=None, metavar="PERSONA|MIX",
              help="Who answers numbers the file does not list: a persona or a mix of the file "
                   "(the shipped file has the mix 'demo'). Default: the file's own.")
@click.option("--scripts", "scripts", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="More script folders whose prompts to recognise (besides dialog/scripts and <data dir>/scripts).")
@click.option("--fallback-script", default="post_service", show_default=True,
              help="The script assumed until a prompt has been recognised.")
def simulate_command(listen: str, personas: Path | None, processes: int, rtp_port: int, log_dir: Path | None,
                     default: str | None, scripts: tuple[Path, ...], fallback_script: str) -> None:
    """Answer the robot's calls as simulated customers (busy, satisfied, complaining, ...).

    A bank of SIP phones (PROCESSES x 4 calls, restarted if one dies) behind one address: the
    dialled number picks the persona, each robot question gets the persona's recorded answer
    after the robot stops talking. Prints one JSON line when every phone is up; runs until
    SIGTERM or Ctrl-C. Each call writes LOG_DIR/<call id>.json (what was heard and said).
    """
    from campaigns.simulator.service import Simulator, SimulatorConfig, SimulatorError, with_defaults

    host, port = _listen(listen)
    settings = load_settings()
    from campaigns.personas import DEFAULT_FILE

    config = with_defaults(SimulatorConfig(
        host=host, port=port, personas=personas or DEFAULT_FILE, processes=processes, rtp_port=rtp_port,
        log_dir=log_dir, default=default, scripts=tuple(scripts), fallback_script=fallback_script), settings)
    try:
        simulator = Simulator(settings, config)
    except SimulatorError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def ready(summary: dict) -> None:
        echo_json({"ready": True, **summary})
        sys.stdout.flush()
        click.echo(f"simulator ready: CALLCENTER_SIP_TRUNK={summary['trunk']} ({summary['capacity']} calls); "
                   f"call logs in {summary['log_dir']}", err=True)

    try:
        simulator.run(stop, on_ready=ready)
    except SimulatorError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
