"""``callcenter dial``: one robot call, outside any campaign (commissioning, demos, tests).

The whole robot of a worker (campaigns.robot: telephony, speech recognition, the dialog script,
the classifier) on one call through ``CALLCENTER_SIP_TRUNK``; nothing is written to the database.
"""

from __future__ import annotations

import signal
import threading

import click

from callcenter.cli.context import echo_json, load_settings


@click.command("dial")
@click.argument("target")
@click.option("--script", "script_id", default="post_service", show_default=True,
              help="Dialog script id (dialog/scripts or <data dir>/scripts).")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A script variable (surname, title, store, visit_date, ...); repeat.")
@click.option("--customer", "customer_id", type=int, default=None,
              help="Fill the script from this customer (database id): name, store, car, last visit. "
                   "TARGET '-' dials the customer's own phone.")
@click.option("--timezone", "tz", default=None, help="The store's time zone (default CALLCENTER_TIMEZONE).")
@click.option("--json", "as_json", is_flag=True, help="Print the call (dispositions, transcript, actions) as JSON.")
def dial_command(target: str, script_id: str, variables: tuple[str, ...], customer_id: int | None, tz: str | None,
                 as_json: bool) -> None:
    """Call TARGET (a number, or a sip: URI) with the revisit robot and print what happened.

    Exit status 0 when the call was placed, whatever its disposition; 1 on a setup error
    (unknown script, models not installed, trunk unusable).
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from callcenter.config import ConfigError
    from callcenter.telephony import SipConfig, TelephonyError, open_phone
    from campaigns.robot import RobotModels, RobotRunner, default_context, describe
    from campaigns.runner import CallRequest, NullObserver

    settings = load_settings()
    values: dict[str, str] = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.ClickException(f"--var {item!r}: expected NAME=VALUE")
        values[name.strip()] = value
    context: dict = {}
    if customer_id is not None:
        phone, context, store_zone = _customer_context(settings, customer_id)
        if target == "-":
            target = phone
        tz = tz or store_zone
    elif target == "-":
        raise click.ClickException("TARGET '-' (the customer's own phone) needs --customer")
    context.update(values)
    zone = tz or settings.timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.ClickException(f"--timezone {zone!r}: unknown time zone") from None
    try:
        sip = SipConfig.from_settings(settings)
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    try:
        models = RobotModels.load(settings)
    except Exception as exc:  # noqa: BLE001 - model errors of every engine: one clear line
        raise click.ClickException(str(exc)) from None
    if script_id not in models.scripts:
        raise click.ClickException(f"unknown script {script_id!r} (installed: {', '.join(sorted(models.scripts))})")
    try:
        phone = open_phone(sip.replace(sip_port=0, max_calls=1), name="dial")
    except TelephonyError as exc:
        raise click.ClickException(str(exc)) from None
    runner = RobotRunner(phone, models, settings)
    runner.warm_up()
    request = CallRequest(call_id=0, task_id=0, attempt=1, campaign_id=0, customer_id=0, store_id=0,
                          phone=target, script=script_id, context=default_context(context), store_timezone=zone)
    result_box: list = []
    worker = threading.Thread(target=lambda: result_box.append(runner.run(request, NullObserver())), daemon=True)
    previous = signal.signal(signal.SIGINT, lambda *_: phone.hangup_all(timeout=5))
    try:
        worker.start()
        while worker.is_alive():
            worker.join(timeout=0.2)
    finally:
        signal.signal(signal.SIGINT, previous)
        runner.close()
        phone.close()
    if not result_box:
        raise click.ClickException("the call thread ended without a result (see the log)")
    out = describe(result_box[0])
    if as_json:
        echo_json(out)
        return
    click.echo(f"{target}: {out['disposition']} (SIP {out['sip_code']}), {out['end'] or '-'}, "
               f"talk {out['talk_seconds']:.1f} s, score5 {out['score5']}, sentiment {out['sentiment']}")
    for turn in out["turns"]:
        who = "机器人" if turn["speaker"] == "robot" else "客户"
        click.echo(f"  [{turn['start']:6.1f}] {who}: {turn['text']}" +
                   (f"  <{turn['intent']}>" if turn.get("intent") else ""))
    for action in out["actions"]:
        click.echo(f"  -> {action['kind']}: " + ", ".join(f"{k}={v}" for k, v in action.items() if k != "kind"))
    if out["error"]:
        click.echo(f"error: {out['error']}", err=True)


def _customer_context(settings, customer_id: int) -> tuple[str, dict, str]:
    """(phone, script variables, store time zone) of a customer, as a campaign would fill them."""
    import sqlalchemy as sa

    from callcenter.cli.context import open_database
    from callcenter.domain.phone import mask_phone
    from callcenter.storage.models import Customer, ServiceVisit, Store, Vehicle
    from campaigns.audience import surname_of, title_of

    db = open_database(settings)
    try:
        with db.session() as s:
            customer = s.get(Customer, customer_id)
            if customer is None:
                raise click.ClickException(f"--customer {customer_id}: no such customer")
            if not customer.phone:
                raise click.ClickException(f"--customer {customer_id}: has no phone number")
            store = s.get(Store, customer.store_id) if customer.store_id else None
            visit = s.scalars(sa.select(ServiceVisit).where(ServiceVisit.customer_id == customer_id)
                              .order_by(ServiceVisit.visit_date.desc(), ServiceVisit.id.desc()).limit(1)).first()
            vehicle = s.get(Vehicle, visit.vehicle_id) if visit is not None and visit.vehicle_id else \
                s.scalars(sa.select(Vehicle).where(Vehicle.customer_id == customer_id).limit(1)).first()
            context = {"customer_name": customer.name, "surname": surname_of(customer.name),
                       "title": title_of(customer.gender), "store": store.name if store else None,
                       "model": vehicle.model if vehicle else None, "plate": vehicle.plate if vehicle else None,
                       "visit_date": visit.visit_date.isoformat() if visit else None,
                       "advisor": visit.advisor if visit else None}
            click.echo(f"calling customer {customer_id} ({mask_phone(customer.phone)})", err=True)
            return customer.phone, context, (store.timezone if store and store.timezone else settings.timezone)
    finally:
        db.dispose()
