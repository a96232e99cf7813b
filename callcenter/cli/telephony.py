"""``callcenter call`` (one call through the trunk) and ``callcenter worker`` (the media workers).

pjsua2 is imported only inside the commands (through ``callcenter.telephony.open_phone`` and the
worker processes), so ``callcenter --help`` stays fast.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from callcenter.cli.context import echo_json, load_settings


@click.command("call")
@click.argument("target")
@click.option("--play", "play", type=click.Path(dir_okay=False, path_type=Path),
              help="WAV prompt to play when answered (any rate/format); hang up when it ends.")
@click.option("--record", "record", type=click.Path(dir_okay=False, path_type=Path),
              help="Record the call here: stereo WAV, left the far end, right our side; metadata beside it.")
@click.option("--max-seconds", type=click.FloatRange(min=1, max=14400),
              help="Hang up after this much talk time (default: CALLCENTER_MAX_CALL_SECONDS).")
@click.option("--ring-timeout", type=click.FloatRange(min=1, max=300),
              help="Cancel if not answered in time (default: CALLCENTER_SIP_RING_TIMEOUT).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def call_command(target: str, play: Path | None, record: Path | None, max_seconds: float | None,
                 ring_timeout: float | None, as_json: bool) -> None:
    """Place one call to TARGET (a number, via CALLCENTER_SIP_TRUNK, or a sip: URI).

    Without --play the call lasts until the far end hangs up or --max-seconds. Exit status 0 when
    the call was placed, whatever its disposition; 1 on a setup error (bad target, unreadable WAV,
    trunk unusable at transport level).
    """
    from callcenter.config import ConfigError
    from callcenter.domain import CallDisposition
    from callcenter.telephony import SipConfig, TelephonyError, open_phone
    from callcenter.telephony.audio import load_prompt
    from callcenter.telephony.dialplan import request_uri

    settings = load_settings()
    try:
        sip = SipConfig.from_settings(settings)
    except ConfigError as exc:
        _fail(f"configuration: {exc}")
    try:
        request_uri(target, sip.trunk, transport=sip.transport, dial_prefix=sip.dial_prefix)
        if play is not None:
            load_prompt(play, sip.audio_rate)  # decode now: a bad WAV is a setup error, not a silent call
        if record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
    except (TelephonyError, ValueError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{record}: {exc.strerror or exc}")
    # A one-off call must not fight the workers for their SIP port: any free port; one call slot.
    sip = sip.replace(sip_port=0, max_calls=1)
    try:
        phone = open_phone(sip, name="cli")
    except TelephonyError as exc:
        _fail(str(exc))
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        try:
            handle = phone.dial(target, record=record or False, max_seconds=max_seconds, ring_timeout=ring_timeout)
        except TelephonyError as exc:
            _fail(str(exc))
        hung = False
        while not handle.ended:
            if handle.wait_answered(timeout=0.2):
                break
            if interrupted.is_set() and not hung:
                handle.hangup()
                hung = True
        if handle.answered and not handle.ended:
            playback = handle.play(play) if play is not None else None
            while not handle.ended:
                handle.wait_ended(timeout=0.2)
                if not hung and (interrupted.is_set() or (playback is not None and playback.done)):
                    handle.hangup()
                    hung = True
        result = handle.wait_ended(timeout=60)
    finally:
        phone.close()
        signal.signal(signal.SIGINT, previous)
    if result is None:
        _fail("the call did not end within 60 s of hanging up")
    if as_json:
        echo_json(result.summary())
    else:
        s = result.summary()
        click.echo(f"{result.target}: {s['disposition']} ({s['reason']}), SIP {s['sip_code']}, "
                   f"ring {s['ring_seconds']:.1f} s, talk {s['talk_seconds']:.1f} s, hung up by {s['hangup_by']}")
        if result.recording:
            click.echo(f"recording: {result.recording}")
    if result.disposition is CallDisposition.NETWORK_ERROR and result.reason.startswith("transport error"):
        sys.exit(1)  # the trunk is unreachable at transport level: a setup error, per the contract


@click.command("worker")
@click.option("--processes", "-n", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes; each holds up to 4 calls (the pjsua2 wheel's limit).")
@click.option("--job", "job_spec", default=None, metavar="MODULE:FUNCTION",
              help="What each worker runs: job(phone, stop, info). Default: the campaigns dialer.")
@click.option("--job-arg", "job_args", multiple=True, metavar="KEY=VALUE", help="Argument for the job (repeat).")
def worker_command(processes: int, job_spec: str | None, job_args: tuple[str, ...]) -> None:
    """Run the media workers: N processes with their own SIP/RTP ports, restarted when one dies.

    Worker i listens on CALLCENTER_SIP_PORT + i and uses RTP ports from CALLCENTER_RTP_PORT + 200*i.
    Stops on SIGTERM or Ctrl-C (calls in progress are hung up).
    """
    from callcenter.config import ConfigError
    from callcenter.telephony import SipConfig
    from callcenter.telephony.supervisor import DEFAULT_JOB, Supervisor, resolve

    settings = load_settings()
    try:
        sip = SipConfig.from_settings(settings)
    except ConfigError as exc:
        _fail(f"configuration: {exc}")
    args: dict[str, str] = {}
    for item in job_args:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--job-arg {item!r}: expected KEY=VALUE")
        args[key.strip()] = value
    spec = job_spec or DEFAULT_JOB
    try:
        resolve(spec)  # fail here, once, rather than in N crash-looping workers
    except ValueError as exc:
        hint = ""
        if job_spec is None:
            hint = ("; to run workers without the dialer, name a job, e.g. "
                    "--job callcenter.telephony.jobs:soak --job-arg target=<number>")
        _fail(f"{exc}{hint}")
    if spec == DEFAULT_JOB:
        _check_schema(settings)
    supervisor = Supervisor(settings, sip, processes=processes, job=spec, job_args=args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"starting {processes} worker(s) running {spec}", err=True)
    supervisor.run(stop)
    failed = [s for s in supervisor.status() if s["last_exit"] not in (0, None)]
    sys.exit(1 if failed and not stop.is_set() else 0)


def _check_schema(settings) -> None:
    """The dialer writes calls, utterances and tags: a database at another schema revision (an
    upgrade whose `callcenter init` has not run yet, or an older worker) fails here, once. An
    unreachable database is left to the workers, which wait for it and retry."""
    import sqlalchemy as sa

    from callcenter.storage import Database
    from callcenter.storage.db import current_revision, head_revision

    db = Database(settings.database_url)
    try:
        have, want = current_revision(db), head_revision()
    except sa.exc.OperationalError:
        return
    finally:
        db.dispose()
    if have != want:
        _fail(f"the database schema is at revision {have or 'none (not initialised)'}, this worker needs "
              f"{want}: run `callcenter init` (it migrates) before starting the dialer")


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)
