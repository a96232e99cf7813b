"""``callcenter serve`` (the console behind gunicorn) and ``callcenter console ...`` (its upkeep:
demo calls, the transcript search index, tag corrections for retraining).

The console is never served by Flask's development server: ``serve`` runs gunicorn's threaded
workers in this process (the master) and builds one application per worker after the fork, so
that database engines and Redis connections are never shared across processes.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from callcenter.cli.context import echo_json, load_settings, open_database


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 32), default=None,
              help="Worker processes (default CALLCENTER_WEB_WORKERS, 2).")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Threads per worker (default CALLCENTER_WEB_THREADS, 16); each live view holds one.")
def serve(host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Serve the console (gunicorn with threaded workers)."""
    from gunicorn.app.base import BaseApplication

    from callcenter.config import ConfigError

    settings = load_settings()
    settings = settings.replace(web_workers=workers or settings.web_workers, web_threads=threads or settings.web_threads)
    db = open_database(settings)  # fails clearly when the schema is not at head
    db.dispose()
    from web import create_app

    try:
        create_app(settings).extensions["callcenter"].database.dispose()  # configuration errors surface here
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None

    class Console(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                "workers": settings.web_workers,
                "threads": settings.web_threads,
                "worker_class": "gthread",
                # A request may take long (a cold report, an SSE stream of 5 minutes): the worker
                # heartbeat, not a request deadline, keeps the master from killing it.
                "timeout": 120,
                "graceful_timeout": 20,
                "keepalive": 5,
                # Request logging is ours (web.views), through the phone-masking log filter.
                "accesslog": None,
                "errorlog": "-",
                "loglevel": settings.log_level.lower(),
                "proc_name": "callcenter-console",
                "logger_class": gunicorn_logger_class(),
                "forwarded_allow_ips": (",".join(settings.trusted_proxy_addresses) if settings.trusted_proxies
                                        else "127.0.0.1"),
            }
            # One control socket per user would be shared by every console on the host (gunicorn >= 25).
            if "control_socket_disable" in self.cfg.settings:
                options["control_socket_disable"] = True
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(settings)

    click.echo(f"console on http://{host}:{port} ({settings.web_workers} workers x {settings.web_threads} threads)")
    Console().run()


def gunicorn_logger_class():
    """gunicorn's logger with our filter on its own lines too (worker errors may quote a request
    path): control characters escaped and phone numbers masked, as in every other log line."""
    from gunicorn.glogging import Logger

    from callcenter.logs import PhoneMaskingFilter

    class FilteredLogger(Logger):
        def setup(self, cfg) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.addFilter(PhoneMaskingFilter())

    return FilteredLogger


@click.group("console")
def console() -> None:
    """Console upkeep: demo calls, the transcript search index, tag corrections."""


@console.command("demo-calls")
@click.option("--calls", "count", type=click.IntRange(1, 5_000_000), default=3000, show_default=True)
@click.option("--months", type=click.IntRange(1, 36), default=6, show_default=True)
@click.option("--recordings", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="How many of the newest answered calls get a stand-in recording.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def demo_calls(count: int, months: int, recordings: int, seed: int, as_json: bool) -> None:
    """Add months of demo revisit calls to the demo dealer group (for a console with content)."""
    from web.demo_calls import generate

    settings = load_settings()
    db = open_database(settings)
    try:
        result = generate(db, calls=count, end=dt.date.today(), months=months, seed=seed, tz=settings.timezone,
                          recordings=recordings, data_dir=settings.data_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    from callcenter.storage.search import TranscriptIndex

    result["indexed"] = TranscriptIndex(db.engine).catch_up(limit=10_000_000)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"demo calls added: {result['calls']:,} calls, {result['tags']:,} tags, "
                   f"{result['tickets']:,} tickets; {result['indexed']:,} transcripts indexed")


@console.command("reindex")
def reindex() -> None:
    """Rebuild the transcript search index from the stored utterances."""
    from callcenter.storage.search import TranscriptIndex

    db = open_database(load_settings())
    index = TranscriptIndex(db.engine)
    done = index.rebuild(progress=lambda n, total: click.echo(f"\r{n:,}/{total:,}", nl=False, err=True))
    click.echo(f"\n{done:,} calls indexed")


@console.command("corrections")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JSONL here (default: standard output).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), default=None)
def corrections(out: Path | None, since: dt.datetime | None) -> None:
    """Supervisors' tag corrections as training JSONL: the customer's words with the corrected
    categories, one call per line (``{"text", "categories", "call_id", "source"}``)."""
    from web.corrections import corrected_examples

    db = open_database(load_settings())
    with db.session() as s:
        rows = corrected_examples(s, since=since)
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if out is None:
        sys.stdout.writelines(lines)
    else:
        out.write_text("".join(lines), encoding="utf-8")
        click.echo(f"{len(rows)} corrected calls written to {out}", err=True)
