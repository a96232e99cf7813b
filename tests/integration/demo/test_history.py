"""The demo history (``demo.history``): a year of revisit work that the product's own reports read
as a manager would, seeded into a temporary SQLite database with the demo group of ``make run``.

One seeding per module (the demo group and a year of calls take a few seconds); a fixed day so
the shape asserted here is the same whenever the tests run.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.demo import load_demo
from callcenter.domain import FeedbackCategory
from callcenter.domain.dates import add_months
from callcenter.storage import Database, upgrade_database
from callcenter.storage.models import (
    Call,
    Callback,
    CallbackStatus,
    CallOutcome,
    CallTag,
    CallTask,
    Campaign,
    CampaignStatus,
    CampaignType,
    Customer,
    Store,
    TaskState,
    Ticket,
    TicketStatus,
    Utterance,
)
from callcenter.storage.web_models import ImprovementPlan, PlanStatus
from demo.history import MARK, PLANS, REFUSED, _History, plan_dates, seed_history
from web import reporting

pytestmark = pytest.mark.integration

TODAY = dt.date(2026, 11, 20)
TZ = "Asia/Shanghai"
MONTH = TODAY.replace(day=1)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('history') / 'callcenter.db'}")
    upgrade_database(db)
    load_demo(db, as_of=TODAY, n_customers=5000)
    with db.session() as s:  # a live campaign's customer, still to be called
        store_id = s.scalar(sa.select(Store.id).where(Store.code == "JH01"))
        live = Campaign(name="演示 售后回访", type=CampaignType.POST_SERVICE, script="post_service", store_id=store_id,
                        status=CampaignStatus.RUNNING, as_of=TODAY)
        s.add(live)
        s.flush()
        customer = s.scalars(sa.select(Customer).where(Customer.store_id == store_id, Customer.phone.is_not(None))
                             .order_by(Customer.id).limit(1)).one()
        s.add(CallTask(campaign_id=live.id, customer_id=customer.id, store_id=store_id, phone=customer.phone,
                       state=TaskState.PENDING))
        live_customer = customer.id
    dry = _History(db, today=TODAY, tz=TZ, seed=2026, cycles=(3, 6))  # the same rows, not written
    dry.load()
    dry.generate()
    counts = seed_history(db, today=TODAY, tz=TZ, seed=2026)
    with db.session() as s:
        stores = dict(s.execute(sa.select(Store.code, Store.id)).all())
    yield db, counts, stores, live_customer, dry
    db.dispose()


def _plan(code: str | None, category: FeedbackCategory):
    return next(p for p in PLANS if p.store == code and p.category is category)


def _after_sales(session, month: dt.date, store_id: int) -> dict[str, int]:
    top = reporting.top_problems(session, month, tz=TZ, store_id=store_id, top=10)
    dept = next(d for d in top["departments"] if d["department"] == "after_sales")
    return {item["category"]: item["count"] for item in dept["items"]}


def _summed(session, months: list[dt.date], store_id: int) -> dict[str, int]:
    total: dict[str, int] = {}
    for month in months:
        for category, n in _after_sales(session, month, store_id).items():
            total[category] = total.get(category, 0) + n
    return total


def test_history_is_marked_and_left_out_of_the_live_campaign(seeded):
    db, counts, _stores, live_customer, _dry = seeded
    assert counts["calls"] > 10_000 and counts["tickets"] > 300 and counts["plans"] == len(PLANS)
    with db.session() as s:
        names = list(s.scalars(sa.select(Campaign.name).where(Campaign.id.in_(
            sa.select(Call.campaign_id).where(Call.campaign_id.is_not(None))))))
        assert names and all(name.startswith(f"{MARK} · ") for name in names)
        assert s.scalar(sa.select(sa.func.count()).select_from(Call).where(Call.worker != MARK)) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(Call).where(Call.customer_id == live_customer)) == 0
        first, last = s.execute(sa.select(sa.func.min(Call.started_at), sa.func.max(Call.started_at))).one()
        assert first.date() >= add_months(MONTH, -12) - dt.timedelta(days=1) and last.date() < TODAY
        # Every tag's evidence is the customer's own words in the line it names.
        for tag in s.scalars(sa.select(CallTag).order_by(CallTag.id).limit(300)):
            ev = tag.evidence[0]
            line = s.execute(sa.select(Utterance.text, Utterance.speaker).where(
                Utterance.call_id == tag.call_id, Utterance.seq == ev["utterance"])).one()
            assert line.speaker == "customer" and line.text[ev["start"]:ev["end"]] == ev["text"]
        outcomes = dict(s.execute(sa.select(Call.outcome, sa.func.count()).group_by(Call.outcome)).all())
        assert {CallOutcome.COMPLETED, CallOutcome.NOT_REACHED, CallOutcome.CALLBACK, CallOutcome.OPT_OUT,
                CallOutcome.TRANSFERRED, CallOutcome.PARTIAL} <= set(outcomes)
        if REFUSED is not None:  # 拒访, once the dialer records it
            assert outcomes[REFUSED] > 100


def test_a_second_seeding_adds_nothing(seeded):
    db, counts, _stores, _live, dry = seeded
    with db.session() as s:
        before = [s.scalar(sa.select(sa.func.count()).select_from(m)) for m in (Call, Ticket, Campaign, ImprovementPlan)]
    again = seed_history(db, today=TODAY, tz=TZ)
    assert again["skipped"] is True
    with db.session() as s:
        assert [s.scalar(sa.select(sa.func.count()).select_from(m))
                for m in (Call, Ticket, Campaign, ImprovementPlan)] == before
    assert before[0] == counts["calls"]
    # Deterministic: the same day and seed gave the same rows before anything was written.
    assert {k: len(v) for k, v in dry.rows.rows.items()} == {
        "campaigns": counts["campaigns"], "tasks": counts["tasks"], "calls": counts["calls"],
        "utterances": counts["utterances"], "tags": counts["tags"], "tickets": counts["tickets"],
        "events": len(dry.rows.rows["events"]), "callbacks": counts["callbacks"], "dnc": counts["do_not_call"],
        "plans": counts["plans"]}
    with db.session() as s:
        stored = list(s.scalars(sa.select(Call.started_at).order_by(Call.id).limit(50)))
    assert [c["started_at"] for c in dry.rows.rows["calls"][:50]] == stored


def test_feedback_rate_is_read_against_the_5_percent_benchmark(seeded):
    db, _counts, _stores, _live, _dry = seeded
    with db.session() as s:
        report = reporting.feedback_rate(s, add_months(MONTH, -12), add_months(MONTH, -1), tz=TZ)
    totals: dict[str, list[int]] = {}
    for row in report["rows"]:
        assert row["completed"] >= 100  # every month of both stores has its revisits
        completed, feedback = totals.setdefault(row["store_code"], [0, 0])
        totals[row["store_code"]] = [completed + row["completed"], feedback + row["feedback"]]
    toyota, bmw = (fb / n for n, fb in (totals["JH01"], totals["JH02"]))
    assert 0.05 <= toyota <= 0.10  # collects opinions: above the benchmark
    assert 0.025 <= bmw < 0.05  # below it


def test_top_problems_shift_after_the_improvement_plan(seeded):
    db, _counts, stores, _live, _dry = seeded
    source_month, start, _end = plan_dates(_plan("JH01", FeedbackCategory.WAIT_TIME), TODAY)
    with db.session() as s:
        source = _after_sales(s, source_month, stores["JH01"])
        before = _summed(s, [add_months(start, -i) for i in (1, 2, 3)], stores["JH01"])
        during = _summed(s, [add_months(start, i) for i in (1, 2)], stores["JH01"])
    assert max(source, key=source.get) == "wait_time"  # the month's top problem that became the plan
    assert max(before, key=before.get) == "wait_time"
    assert during.get("wait_time", 0) / 2 < before["wait_time"] / 3 / 2  # per month: less than half
    assert max(during, key=during.get) != "wait_time"  # another problem leads once the plan works


def test_improvement_plans_measure_the_change(seeded):
    db, _counts, stores, _live, _dry = seeded
    with db.session() as s:
        plans = {p.title: p for p in s.scalars(sa.select(ImprovementPlan))}
        closed = plans[_plan("JH01", FeedbackCategory.WAIT_TIME).title]
        assert closed.status is PlanStatus.CLOSED and closed.end_date < TODAY and closed.store_id == stores["JH01"]
        assert closed.result["improved"] and closed.result["significant"]
        assert closed.result["before"]["to"] < closed.start_date.isoformat() <= closed.result["after"]["from"]
        assert closed.result["before"]["calls"] > 1000 and closed.result["after"]["calls"] > 1000
        ended = plans[_plan("JH02", FeedbackCategory.PARTS_WAIT).title]
        assert ended.status is PlanStatus.ACTIVE and ended.end_date <= TODAY  # the manager closes it
        before = reporting.problem_rate(s, "parts_wait", add_months(ended.start_date, -ended.cycle_months),
                                        ended.start_date, tz=TZ, store_id=ended.store_id)
        after = reporting.problem_rate(s, "parts_wait", ended.start_date, ended.end_date, tz=TZ,
                                       store_id=ended.store_id)
        assert reporting.compare_rates(before, after)["significant"]
        running = plans[_plan("JH01", FeedbackCategory.PRICE).title]
        assert running.status is PlanStatus.ACTIVE and running.start_date < TODAY < running.end_date
        for plan in plans.values():  # the calls that raised a problem are its baseline, never "during"
            assert plan.source_month < f"{plan.start_date:%Y-%m}"


def test_nps_satisfaction_and_winback_have_enough_answers(seeded):
    db, _counts, stores, _live, _dry = seeded
    _source, start, _end = plan_dates(_plan("JH01", FeedbackCategory.WAIT_TIME), TODAY)
    with db.session() as s:
        group = reporting.satisfaction(s, add_months(MONTH, -12), add_months(MONTH, -1), tz=TZ)
        assert all(row["nps_answers"] >= 60 and row["answers"] >= 300 for row in group["rows"])
        for code in ("JH01", "JH02"):
            half = reporting.satisfaction(s, add_months(MONTH, -6), MONTH, tz=TZ, store_id=stores[code])["total"]
            assert half["nps_answers"] >= 150 and 4.0 < half["average"] < 4.7
        toyota_before = reporting.satisfaction(s, add_months(start, -6), add_months(start, -1), tz=TZ,
                                               store_id=stores["JH01"])["total"]
        toyota_after = reporting.satisfaction(s, start, add_months(start, 5), tz=TZ, store_id=stores["JH01"])["total"]
        assert toyota_after["nps"] > toyota_before["nps"] + 5  # the customers noticed
        winback = reporting.winback(s, add_months(MONTH, -12), MONTH, tz=TZ, today=TODAY)["total"]
    assert winback["reached"] > 300 and 0.11 <= winback["rate"] <= 0.30 and winback["open"] > 0


def test_tickets_and_callbacks_in_their_lifecycle(seeded):
    db, _counts, stores, _live, _dry = seeded
    with db.session() as s:
        statuses = dict(s.execute(sa.select(Ticket.status, sa.func.count()).group_by(Ticket.status)).all())
        assert set(statuses) == set(TicketStatus) and statuses[TicketStatus.VERIFIED] > statuses[TicketStatus.OPEN]
        for ticket in s.scalars(sa.select(Ticket).where(Ticket.status == TicketStatus.VERIFIED).limit(20)):
            assert ticket.resolved_at < ticket.verified_at <= dt.datetime.combine(TODAY, dt.time())
            assert ticket.resolution and ticket.call_id is not None
            assert s.scalar(sa.select(Callback.status).where(Callback.ticket_id == ticket.id)) is CallbackStatus.DONE
        robot_callbacks = list(s.scalars(sa.select(Callback).where(Callback.robot.is_(True))))
        assert robot_callbacks and all(cb.status is CallbackStatus.DONE and cb.done_call_id for cb in robot_callbacks
                                       if cb.done_at is not None)
        due_today = list(s.scalars(sa.select(Callback).where(Callback.robot.is_(False),
                                                             Callback.status == CallbackStatus.PENDING)))
        assert due_today and {cb.store_id for cb in due_today} == set(stores.values())
