"""Campaign lifecycle: create (audience -> tasks), start, pause, resume, cancel; status and listing.

What the CLI (``callcenter campaign ...``) and the console call. Creating a campaign runs its
audience rule once, as of its date, and stores one task per customer with the script's
variables; from then on the dialer works from those tasks. Status changes are conditional
updates, so two supervisors pausing and resuming at once cannot corrupt anything. Runs on the
caller's thread with the caller's :class:`~callcenter.storage.Database`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from callcenter.config import Settings
from callcenter.storage.db import Database
from callcenter.storage.models import (
    Call,
    CallTask,
    Campaign,
    CampaignStatus,
    CampaignType,
    Store,
    TaskState,
    utcnow,
)
from campaigns.audience import AudienceError, AudienceQuery, create_tasks, validate_audience_params
from campaigns.rules import (
    ChineseHolidays,
    HolidayCalendar,
    default_policy,
    dial_policy,
    store_callable,
    store_policy,
    validate_dial_params,
)
from campaigns.scheduler import trunk_health
from campaigns.scripts import DEFAULT_SCRIPT, check_script

logger = logging.getLogger(__name__)

TYPE_LABELS = {
    CampaignType.POST_SERVICE: "售后回访", CampaignType.NEW_CAR: "新车关怀", CampaignType.MAINTENANCE_DUE: "保养提醒",
    CampaignType.INSURANCE_RENEWAL: "续保提醒", CampaignType.WARRANTY_EXPIRY: "出保前免费检测",
    CampaignType.WINBACK: "流失客户召回", CampaignType.NPS: "NPS调研", CampaignType.CUSTOM: "自定义",
}
MAX_CHANNELS = 256


class CampaignError(ValueError):
    """A campaign request that cannot be carried out; the message says why."""


class EmptyAudience(CampaignError):
    """Nobody to call: the campaign is not created. ``report`` has the exclusion counts."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    type: str
    as_of: dt.date | None = None
    store: str | None = None  # store code; None: every store of the group
    name: str | None = None
    script: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    max_channels: int = 4
    max_attempts: int | None = None  # default: the settings' dialer_max_attempts
    created_by: int | None = None
    # A saved version of the script (``script_versions``, the console's editor): the campaign's
    # calls use that text. None: the installed file.
    script_version_id: int | None = None


def parse_type(value: str) -> CampaignType:
    try:
        return CampaignType(value)
    except ValueError:
        raise CampaignError(
            f"unknown campaign type {value!r} (known: {', '.join(t.value for t in CampaignType)})"
        ) from None


def create_campaign(db: Database, spec: CampaignSpec, settings: Settings, *, known_scripts: Collection[str],
                    now: dt.datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Build the audience of ``spec`` and store the campaign (status ``draft``) with its tasks.

    Returns:
        ``{"id", "audience", "excluded": {"dnc", "frequency_cap", "no_phone"}}`` plus ``name``,
        ``type``, ``script``, ``store``, ``as_of``, ``params`` (``id`` is None with ``dry_run``).

    Raises:
        CampaignError: unknown type, store or script, bad parameters, channels or attempts.
        EmptyAudience: nobody left to call (nothing is stored).
    """
    now = now or utcnow()
    ctype = parse_type(spec.type)
    as_of = spec.as_of or dt.date.today()
    try:
        script = check_script(spec.script or DEFAULT_SCRIPT.get(ctype, ""), frozenset(known_scripts)) \
            if (spec.script or ctype in DEFAULT_SCRIPT) else None
    except ValueError as exc:
        raise CampaignError(str(exc)) from None
    if script is None:
        raise CampaignError(f"{ctype.value} campaigns have no default script: name one with --script")
    if not 1 <= spec.max_channels <= MAX_CHANNELS:
        raise CampaignError(f"max channels must be between 1 and {MAX_CHANNELS}, got {spec.max_channels}")
    max_attempts = spec.max_attempts if spec.max_attempts is not None else settings.dialer_max_attempts
    if not 1 <= max_attempts <= 10:
        raise CampaignError(f"max attempts must be between 1 and 10, got {max_attempts}")
    try:
        params = {**validate_dial_params(spec.params), **validate_audience_params(ctype, spec.params)}
    except ValueError as exc:
        raise CampaignError(f"{ctype.value}: {exc}") from None
    try:
        defaults = default_policy(settings)
    except ValueError as exc:
        raise CampaignError(f"settings: {exc}") from None
    policy = dial_policy(defaults, params, max_channels=spec.max_channels, max_attempts=max_attempts)

    with db.session() as s:
        store_id = None
        store_name = None
        if spec.store is not None:
            row = s.execute(sa.select(Store.id, Store.name).where(Store.code == spec.store)).first()
            if row is None:
                codes = ", ".join(s.scalars(sa.select(Store.code).order_by(Store.code)).all()) or "none"
                raise CampaignError(f"unknown store {spec.store!r} (stores: {codes})")
            store_id, store_name = row
        query = AudienceQuery(type=ctype, as_of=as_of, store_id=store_id, params=params, now=now,
                              frequency_cap_days=policy.frequency_cap_days,
                              cycle_mid=settings.cycle_months_mid, cycle_premium=settings.cycle_months_premium)
        name = (spec.name or f"{TYPE_LABELS[ctype]} {as_of.isoformat()}" + (f" {store_name}" if store_name else ""))
        campaign = None
        if not dry_run:
            # The row first, so that the tasks can be INSERT ... SELECTed under its id; an empty
            # audience rolls the whole transaction back.
            campaign = Campaign(
                name=name[:100], type=ctype, script=script, store_id=store_id, status=CampaignStatus.DRAFT,
                as_of=as_of, params=params, max_channels=spec.max_channels, max_attempts=max_attempts,
                created_by=spec.created_by, created_at=now, script_version_id=spec.script_version_id,
            )
            s.add(campaign)
            s.flush()
        try:
            audience = create_tasks(s, query, params, campaign.id if campaign else None, now)
        except AudienceError as exc:
            raise CampaignError(f"{ctype.value}: {exc}") from None
        report: dict[str, Any] = {
            "id": None, "audience": audience.size, "excluded": dict(audience.excluded), "name": name[:100],
            "type": ctype.value, "script": script, "store": spec.store, "as_of": as_of.isoformat(), "params": params,
        }
        if audience.size == 0:
            ex = audience.excluded
            raise EmptyAudience(
                f"the audience is empty: no customer matches {ctype.value} as of {as_of.isoformat()}"
                + (f" in store {spec.store}" if spec.store else "")
                + f" (excluded: {ex['dnc']} on the do-not-call list, {ex['frequency_cap']} over the frequency cap, "
                  f"{ex['no_phone']} without a valid phone); nothing was created",
                report,
            )
        if campaign is None:
            return report
        campaign.params = {**params, "audience": {"size": audience.size, "excluded": audience.excluded,
                                                  "selected_at": now.isoformat() + "Z"}}
        report["id"] = campaign.id
    logger.info("campaign %s created: %s, %d customers (excluded %s)", report["id"], ctype.value, audience.size,
                audience.excluded)
    return report


# --------------------------------------------------------------------------- state changes

_TRANSITIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus]] = {
    "start": (frozenset({CampaignStatus.DRAFT, CampaignStatus.PAUSED}), CampaignStatus.RUNNING),
    "pause": (frozenset({CampaignStatus.RUNNING}), CampaignStatus.PAUSED),
    "resume": (frozenset({CampaignStatus.PAUSED}), CampaignStatus.RUNNING),
    "cancel": (frozenset({CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED}),
               CampaignStatus.CANCELLED),
}


_PAST = {"start": "started", "pause": "paused", "resume": "resumed", "cancel": "cancelled"}


def change_status(db: Database, campaign_id: int, action: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """``start``, ``pause``, ``resume`` or ``cancel`` a campaign.

    Pausing stops new dials (queued tasks go back to pending when a worker picks them up);
    calls in progress finish. Cancelling also ends every task that has not started.

    Returns:
        ``{"id", "status", "previous"}``.

    Raises:
        CampaignError: unknown campaign, or the action does not apply to its status.
    """
    now = now or utcnow()
    allowed, target = _TRANSITIONS[action]
    with db.session() as s:
        campaign = s.get(Campaign, campaign_id)
        if campaign is None:
            raise CampaignError(f"campaign {campaign_id} does not exist")
        previous = campaign.status
        if previous is target:  # asking twice is harmless
            return {"id": campaign_id, "status": target.value, "previous": previous.value}
        if previous not in allowed:
            raise CampaignError(f"campaign {campaign_id} is {previous.value}: it cannot be {_PAST[action]}")
        values: dict[str, Any] = {"status": target}
        if target is CampaignStatus.RUNNING and campaign.started_at is None:
            values["started_at"] = now
        if target is CampaignStatus.CANCELLED:
            values["finished_at"] = now
        moved = s.execute(
            sa.update(Campaign).where(Campaign.id == campaign_id, Campaign.status == previous).values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not moved:
            raise CampaignError(f"campaign {campaign_id} changed meanwhile; try again")
        if target is CampaignStatus.CANCELLED:
            s.execute(
                sa.update(CallTask)
                .where(CallTask.campaign_id == campaign_id, CallTask.state.in_([TaskState.PENDING, TaskState.QUEUED]))
                .values(state=TaskState.CANCELLED, finished_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    logger.info("campaign %s: %s -> %s", campaign_id, previous.value, target.value)
    return {"id": campaign_id, "status": target.value, "previous": previous.value}


# --------------------------------------------------------------------------- reading


def campaign_status(db: Database, campaign_id: int, settings: Settings, *, now: dt.datetime | None = None,
                    calendar: HolidayCalendar | None = None) -> dict[str, Any]:
    """Counts by task state, by attempt disposition and by task outcome, and why it may be held.

    Raises:
        CampaignError: no such campaign.
    """
    now = now or utcnow()
    with db.session() as s:
        c = s.get(Campaign, campaign_id)
        if c is None:
            raise CampaignError(f"campaign {campaign_id} does not exist")
        tasks = {st.value: 0 for st in TaskState}
        for state, n in s.execute(sa.select(CallTask.state, sa.func.count()).where(CallTask.campaign_id == c.id)
                                  .group_by(CallTask.state)):
            tasks[state.value] = n
        tasks["total"] = sum(tasks.values())
        dispositions: dict[str, int] = {}
        in_progress = 0
        for disposition, ended, n in s.execute(
            sa.select(Call.disposition, Call.ended_at.is_not(None), sa.func.count())
            .where(Call.campaign_id == c.id).group_by(Call.disposition, Call.ended_at.is_not(None))
        ):
            if not ended:
                in_progress += n
            else:
                key = disposition or "lost"  # written off: the worker died during the attempt
                dispositions[key] = dispositions.get(key, 0) + n
        outcomes = {o.value: n for o, n in s.execute(
            sa.select(CallTask.outcome, sa.func.count())
            .where(CallTask.campaign_id == c.id, CallTask.outcome.is_not(None))
            .group_by(CallTask.outcome)
        )}
        call_outcomes = {o.value: n for o, n in s.execute(
            sa.select(Call.outcome, sa.func.count())
            .where(Call.campaign_id == c.id, Call.outcome.is_not(None)).group_by(Call.outcome)
        )}
        next_at = s.scalar(sa.select(sa.func.min(CallTask.next_attempt_at))
                           .where(CallTask.campaign_id == c.id, CallTask.state == TaskState.PENDING))
        policy = dial_policy(default_policy(settings), c.params, max_channels=c.max_channels,
                             max_attempts=c.max_attempts)
        health = trunk_health(s, c.id, policy)
        store_q = sa.select(Store.code, Store.timezone, Store.calling_windows)
        if c.store_id is not None:
            store_q = store_q.where(Store.id == c.store_id)
        cal = calendar or ChineseHolidays()
        closed = {}
        for code, tz, windows in s.execute(store_q):
            ok, why = store_callable(now, tz, store_policy(policy, c.params, windows), cal)
            if not ok:
                closed[code] = why
        store_code = s.scalar(sa.select(Store.code).where(Store.id == c.store_id)) if c.store_id else None
    audience = (c.params or {}).get("audience", {})
    result: dict[str, Any] = {
        "id": c.id, "name": c.name, "type": c.type.value, "script": c.script, "store": store_code,
        "status": c.status.value, "as_of": c.as_of.isoformat(),
        "created_at": _iso(c.created_at), "started_at": _iso(c.started_at), "finished_at": _iso(c.finished_at),
        "max_channels": c.max_channels, "max_attempts": c.max_attempts,
        "audience": audience.get("size", tasks["total"]), "excluded": audience.get("excluded"),
        "tasks": tasks,
        "attempts": sum(dispositions.values()) + in_progress, "in_progress": in_progress,
        "dispositions": dispositions, "outcomes": outcomes, "call_outcomes": call_outcomes,
        "next_attempt_at": _iso(next_at) if tasks[TaskState.PENDING.value] else None,
        "degraded": None, "closed_stores": closed or None,
    }
    if health.degraded:
        result["degraded"] = {"reason": "the trunk rejects every call: holding off, tasks wait for their retries",
                              **health.as_dict()}
    return result


def list_campaigns(db: Database, *, status: str | None = None, store: str | None = None) -> list[dict[str, Any]]:
    """Campaigns, newest first, with their task counts.

    Raises:
        CampaignError: unknown status or store.
    """
    with db.session() as s:
        q = sa.select(Campaign, Store.code).outerjoin(Store, Store.id == Campaign.store_id).order_by(Campaign.id.desc())
        if status is not None:
            try:
                q = q.where(Campaign.status == CampaignStatus(status))
            except ValueError:
                raise CampaignError(f"unknown status {status!r} (known: "
                                    f"{', '.join(x.value for x in CampaignStatus)})") from None
        if store is not None:
            store_id = s.scalar(sa.select(Store.id).where(Store.code == store))
            if store_id is None:
                raise CampaignError(f"unknown store {store!r}")
            q = q.where(Campaign.store_id == store_id)
        rows = s.execute(q).all()
        counts: dict[int, dict[str, int]] = {}
        if rows:
            for cid, state, n in s.execute(
                sa.select(CallTask.campaign_id, CallTask.state, sa.func.count())
                .where(CallTask.campaign_id.in_([c.id for c, _ in rows]))
                .group_by(CallTask.campaign_id, CallTask.state)
            ):
                counts.setdefault(cid, {})[state.value] = n
    out = []
    for c, code in rows:
        by_state = counts.get(c.id, {})
        total = sum(by_state.values())
        done = sum(by_state.get(st.value, 0) for st in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED))
        out.append({"id": c.id, "name": c.name, "type": c.type.value, "script": c.script, "store": code,
                    "status": c.status.value, "as_of": c.as_of.isoformat(), "created_at": _iso(c.created_at),
                    "tasks": total, "done": done,
                    "completed": by_state.get(TaskState.COMPLETED.value, 0)})
    return out


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


__all__ = ["CampaignError", "CampaignSpec", "EmptyAudience", "campaign_status", "change_status",
           "create_campaign", "list_campaigns", "parse_type"]
