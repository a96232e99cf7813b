"""``callcenter campaign``: create campaigns from their audience rules, start/pause/resume/cancel, status.

The dialing itself happens in the worker processes (``campaigns.worker``); these commands only
read and write the database, so they work while Redis or the workers are down.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from callcenter.cli.context import echo_json, load_settings, open_database

TYPES = ("post_service", "new_car", "maintenance_due", "insurance_renewal", "warranty_expiry", "winback", "nps",
         "custom")
STATE_LABELS = {"pending": "待拨", "queued": "排队", "dialing": "通话中", "completed": "已完成", "failed": "未接通",
                "cancelled": "已取消"}
STATUS_LABELS = {"draft": "草稿", "running": "进行中", "paused": "已暂停", "completed": "已完成", "cancelled": "已取消"}


def _parse_params(pairs: tuple[str, ...], params_json: str | None) -> dict:
    import yaml

    params: dict = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc.msg}", param_hint="--params-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("expected a JSON object", param_hint="--params-json")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--param")
        try:
            # YAML scalars: 0.2, true, [1, 2], 09:00-12:00 stays a string.
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dt.date, dt.datetime)):
            value = raw
        params[key.strip()] = value
    return params


def _service_call(fn, *args, **kwargs):
    from campaigns.service import CampaignError

    try:
        return fn(*args, **kwargs)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("campaign")
def campaign() -> None:
    """Campaigns: who to call, when and why (回访活动)."""


@campaign.command("create")
@click.option("--type", "ctype", required=True, type=click.Choice(TYPES), help="Campaign type (audience rule).")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Date the audience is computed for, YYYY-MM-DD (default: today).")
@click.option("--store", "store", help="Only this store's customers (store code); default: every store.")
@click.option("--name", help="Campaign name (default: type and date).")
@click.option("--script", help="Dialog script id (default: the type's own script).")
@click.option("--filter", "filter_ref", help="custom campaigns: saved filter name, file, or inline JSON.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Audience or dialing parameter, e.g. window_days=[1,2], reason_sample=0.2, "
                   "windows=09:00-12:00,14:00-18:00 (repeatable).")
@click.option("--params-json", help="Parameters as one JSON object.")
@click.option("--max-channels", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Concurrent calls this campaign may hold.")
@click.option("--max-attempts", type=click.IntRange(1, 10), default=None,
              help="Attempts that may fail to reach a customer (default: CALLCENTER_DIALER_MAX_ATTEMPTS).")
@click.option("--dry-run", is_flag=True, help="Compute the audience, create nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(ctype: str, as_of: dt.datetime | None, store: str | None, name: str | None, script: str | None,
           filter_ref: str | None, params: tuple[str, ...], params_json: str | None, max_channels: int,
           max_attempts: int | None, dry_run: bool, as_json: bool) -> None:
    """Build a campaign's audience and store its tasks (status draft)."""
    from campaigns.filters import load_filter
    from campaigns.scripts import available_scripts
    from campaigns.service import CampaignError, CampaignSpec, EmptyAudience, create_campaign

    settings = load_settings()
    parsed = _parse_params(params, params_json)
    if filter_ref is not None:
        if ctype != "custom":
            raise click.BadParameter("only custom campaigns take a filter", param_hint="--filter")
        try:
            parsed["filter"] = load_filter(filter_ref, settings.data_dir)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    db = open_database(settings)
    spec = CampaignSpec(type=ctype, as_of=as_of.date() if as_of else None, store=store, name=name, script=script,
                        params=parsed, max_channels=max_channels, max_attempts=max_attempts)
    try:
        report = create_campaign(db, spec, settings, known_scripts=set(available_scripts(settings.data_dir)),
                                 dry_run=dry_run)
    except EmptyAudience as exc:
        if as_json:  # scripts still get the exclusion counts
            echo_json({"id": None, "audience": 0, "excluded": exc.report["excluded"]})
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except CampaignError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()
    if as_json:
        echo_json({"id": report["id"], "audience": report["audience"], "excluded": report["excluded"]})
        return
    ex = report["excluded"]
    what = "试算 / dry run" if dry_run else f"已创建活动 / created campaign #{report['id']}"
    click.echo(f"{what}: {report['name']} ({report['type']}, script {report['script']})")
    click.echo(f"  呼叫名单 audience: {report['audience']:,}")
    click.echo(f"  排除 excluded: 免打扰 dnc {ex['dnc']:,}, 频次限制 frequency cap {ex['frequency_cap']:,}, "
               f"无有效号码 no phone {ex['no_phone']:,}")
    if not dry_run:
        click.echo(f"  start it: callcenter campaign start {report['id']}")


def _transition(action: str, campaign_id: int, as_json: bool) -> None:
    from campaigns.service import change_status

    settings = load_settings()
    db = open_database(settings)
    try:
        result = _service_call(change_status, db, campaign_id, action)
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
    else:
        click.echo(f"活动 campaign #{campaign_id}: {STATUS_LABELS[result['previous']]} {result['previous']} -> "
                   f"{STATUS_LABELS[result['status']]} {result['status']}")


@campaign.command("start")
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def start(campaign_id: int, as_json: bool) -> None:
    """Start dialing a campaign (the workers pick it up)."""
    _transition("start", campaign_id, as_json)


@campaign.command("pause")
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def pause(campaign_id: int, as_json: bool) -> None:
    """Stop placing new calls; calls in progress finish."""
    _transition("pause", campaign_id, as_json)


@campaign.command("resume")
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def resume(campaign_id: int, as_json: bool) -> None:
    """Resume a paused campaign."""
    _transition("resume", campaign_id, as_json)


@campaign.command("cancel")
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cancel(campaign_id: int, as_json: bool) -> None:
    """Cancel a campaign: tasks not yet dialled end as cancelled."""
    _transition("cancel", campaign_id, as_json)


@campaign.command("status")
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(campaign_id: int, as_json: bool) -> None:
    """Progress: tasks by state, attempts by disposition, outcomes; why it is held, if it is."""
    from campaigns.service import campaign_status

    settings = load_settings()
    db = open_database(settings)
    try:
        result = _service_call(campaign_status, db, campaign_id, settings)
    finally:
        db.dispose()
    if as_json:
        echo_json(result)
        return
    click.echo(f"活动 campaign #{result['id']} {result['name']} [{STATUS_LABELS[result['status']]} {result['status']}]"
               f"  type {result['type']}, script {result['script']}, store {result['store'] or 'all'}")
    t = result["tasks"]
    click.echo("  任务 tasks: " + ", ".join(f"{STATE_LABELS[k]} {k} {t[k]:,}" for k in STATE_LABELS)
               + f"  (total {t['total']:,})")
    if result["dispositions"]:
        click.echo("  拨打结果 dispositions: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result["dispositions"].items())))
    if result["outcomes"]:
        click.echo("  任务结果 outcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result["outcomes"].items())))
    if result["degraded"]:
        d = result["degraded"]
        click.echo(f"  ! 线路异常 degraded: {d['reason']} ({d['consecutive_trunk_failures']} failures in a row, "
                   f"last {d['last_sip']}, held until {d['held_until']})")
    if result["closed_stores"]:
        for code, why in result["closed_stores"].items():
            click.echo(f"  - 门店 store {code} 暂不外呼 not calling now: {why}")


@campaign.command("list")
@click.option("--status", "status_filter", type=click.Choice(tuple(STATUS_LABELS)), help="Only this status.")
@click.option("--store", help="Only this store's campaigns (code).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(status_filter: str | None, store: str | None, as_json: bool) -> None:
    """Campaigns, newest first."""
    from campaigns.service import list_campaigns

    settings = load_settings()
    db = open_database(settings)
    try:
        rows = _service_call(list_campaigns, db, status=status_filter, store=store)
    finally:
        db.dispose()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("没有活动 / no campaigns")
        return
    for r in rows:
        click.echo(f"#{r['id']:<5} {STATUS_LABELS[r['status']]:<4} {r['status']:<10} {r['type']:<18} "
                   f"{r['done']:>7,}/{r['tasks']:<7,} {r['store'] or 'all':<6} {r['name']}")
