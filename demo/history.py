"""Demo history: a year of revisit work for the demo dealer group, so that the console shows on
its first start what a manager sees after months of use (``make run`` seeds it).

What it writes, through the product's own tables, as the dialer and the console would have:

- **Post-service revisits** (售后回访) one to three days after the demo customers' service visits
  of the last twelve months and of this month up to yesterday, on working days (statutory
  holidays skipped by :class:`campaigns.rules.ChineseHolidays`), in the calling hours; unreached
  customers are tried again two hours later. Transcripts follow the shipped scripts step by step
  (the robot's lines are the scripts' prompts rendered with the customer's name, the store and
  the visit date; ``prompt_id`` names the step).
- **NPS surveys** every month and **win-back campaigns** every quarter for the lapsed customers
  (流失客户, as :func:`callcenter.customer_base.classes_query` classifies them on the day). Who
  comes back is the DMS's own later visits (about a fifth within four months: the seeds' 11-23 %);
  those customers are the ones who mostly accepted the booking on the call.
- Feedback **tags** with their evidence in the customer's words, complaint **tickets** in every
  state of their lifecycle (new ones open or assigned, older ones resolved, verified by a callback,
  a few closed as duplicates or left overdue), robot **callbacks** done by a second attempt, a few
  agents' callbacks due today, do-not-call requests, transfers: every outcome the dialer records,
  拒访 (``refused``) included where :class:`~callcenter.storage.models.CallOutcome` has it.
- The seeds' **monthly loop**: each store's top after-sales problem became an improvement plan and
  became rarer once the plan started, so the top-3 shifts: 锦华丰田's 等待/交车时间 (closed, with
  its recorded result), 锦华宝马's 等配件 (a parts shortage; its cycle has just ended and it waits to
  be closed), and 锦华丰田's 价格/收费, started two weeks ago.

The shape (the seeds' figures): the Toyota store collects opinions in about 8 % of its completed
revisits (above the 5 % benchmark), the BMW store in about 4 % (below it, but above it during its
parts shortage); seasons move the problems (a pre-Spring-Festival rush of waiting times,
rainy-season car washes, summer air-conditioning repairs); NPS about +20 at the Toyota store
before its plan and +35 after, about +45 at the BMW store, from about 130 answers a month.

Every campaign it creates is named ``演示历史数据 · ...`` with ``params.demo_history``, and every
call's worker is ``演示历史数据``: the call list, the call page and the campaign list show the history
as such, beside the live campaign's calls. The reports compute from these rows exactly as from
real calls. Deterministic for a seed and a day; idempotent (a second run finds the history
campaigns and adds nothing); customers with open tasks in other campaigns (the live demo
campaign's) are left out, so the history never defers or cancels a live call (frequency cap,
do-not-call). About 13,000 calls and 100,000 transcript lines in bulk inserts: about 4 s on SQLite
on the 2-core reference machine when it is otherwise idle.

Runs on the caller's thread.
"""
from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from callcenter.customer_base import classes_query
from callcenter.domain import CallDisposition, FeedbackCategory, Role, Sentiment
from callcenter.domain.dates import add_months
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
    DoNotCall,
    ServiceVisit,
    Store,
    TaskState,
    Ticket,
    TicketEvent,
    TicketStatus,
    User,
    Utterance,
    Vehicle,
)
from callcenter.storage.search import TranscriptIndex
from callcenter.storage.web_models import ImprovementPlan, PlanStatus
from campaigns.outcomes import CATEGORY_LABELS
from campaigns.rules import ChineseHolidays, HolidayDataMissing
from dialog.prompts import render
from dialog.script import Script, shipped_scripts
from web.reporting import compare_rates, problem_rate

MARK = "演示历史数据"  # the name prefix of every history campaign and the worker of every history call
MONTHS = 12  # full months before the current one; the current month runs to yesterday

F = FeedbackCategory

# An outcome the dialer may not have yet: a customer who declines the survey ("不用了"). Calls of
# an outcome the storage enum lacks are not generated; once the value exists they are.
_OPTIONAL_OUTCOMES = {o.value: o for o in CallOutcome}
REFUSED = _OPTIONAL_OUTCOMES.get("refused")

# Answered robot calls by outcome (weights; the dialer's order of precedence is campaigns.rules').
ANSWERED_OUTCOMES: tuple[tuple[CallOutcome | None, float], ...] = (
    (CallOutcome.COMPLETED, 80.0), (CallOutcome.PARTIAL, 5.0), (REFUSED, 4.5), (CallOutcome.CALLBACK, 3.5),
    (CallOutcome.HUNG_UP, 2.5), (CallOutcome.ANSWERING_MACHINE, 1.5), (CallOutcome.WRONG_NUMBER, 1.0),
    (CallOutcome.TRANSFERRED, 1.0), (CallOutcome.OPT_OUT, 0.6),
)
UNREACHED = ((CallDisposition.NO_ANSWER, 55), (CallDisposition.BUSY, 22), (CallDisposition.UNAVAILABLE, 12),
             (CallDisposition.REJECTED, 8), (CallDisposition.NOT_FOUND, 3))
SIP_CODE = {CallDisposition.ANSWERED: 200, CallDisposition.NO_ANSWER: 487, CallDisposition.BUSY: 486,
            CallDisposition.UNAVAILABLE: 480, CallDisposition.REJECTED: 603, CallDisposition.NOT_FOUND: 404}
ANSWER_RATE = 0.78  # first attempts; a second attempt 2 hours later reaches 60 % of the others
HOURS = ((9, 14), (10, 16), (11, 10), (14, 14), (15, 16), (16, 14), (17, 10), (18, 6))  # local hour, weight

# Per calendar month: how much more often customers report a problem, and which problems.
SEASON_FEEDBACK = {1: 1.25, 2: 1.1, 7: 1.15, 8: 1.15}
SEASON_CATEGORY: dict[FeedbackCategory, dict[int, float]] = {
    F.WAIT_TIME: {1: 1.6, 2: 1.3, 9: 1.2, 10: 1.3},  # the rush before Spring Festival and National Day
    F.CAR_WASH: {3: 1.5, 4: 1.7, 5: 1.6, 6: 1.3},  # Changsha's rainy spring
    F.REPAIR_QUALITY: {6: 1.4, 7: 1.9, 8: 1.8},  # air conditioning in the summer
    F.FACILITY: {7: 1.4, 8: 1.4},  # a hot waiting lounge
}


@dataclass(frozen=True)
class StoreStory:
    feedback: float  # share of completed post-service calls with a problem, before seasons and plans
    weights: Mapping[FeedbackCategory, float]  # which problem, before any plan
    nps: tuple[float, float, float]  # detractors (0-6), passives (7-8), promoters (9-10)
    nps_after_plan: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class PlanStory:
    store: str | None  # store code; None: the whole group
    category: FeedbackCategory
    # When it started: the first day of the month this many months back, or this many days ago.
    # It came from the top-3 of the month before its start's (a plan never measures the calls that raised it).
    start_months_back: int | None
    start_days_back: int | None
    cycle: int
    close: bool  # closed with its result recorded, or left for the manager
    effect: tuple[float, float]  # the category's weight in the plan's first month, and from then on
    title: str
    owner: str
    actions: str
    ramp_before: float = 1.0  # the category's weight in the three months before the plan (a rising problem)


STORIES: dict[str, StoreStory] = {
    "JH01": StoreStory(0.045, {F.WAIT_TIME: 30, F.PRICE: 16, F.CAR_WASH: 14, F.SERVICE_PROCESS: 12,
                               F.REPAIR_QUALITY: 10, F.SERVICE_ATTITUDE: 8, F.PARTS_WAIT: 5, F.FACILITY: 5,
                               F.SALES_PROCESS: 4, F.INSURANCE: 5},
                       nps=(0.24, 0.32, 0.44), nps_after_plan=(0.15, 0.35, 0.50)),
    "JH02": StoreStory(0.010, {F.PARTS_WAIT: 30, F.PRICE: 20, F.REPAIR_QUALITY: 12, F.SERVICE_PROCESS: 10,
                               F.WAIT_TIME: 9, F.FACILITY: 8, F.SERVICE_ATTITUDE: 6, F.CAR_WASH: 6,
                               F.SALES_PROCESS: 4, F.INSURANCE: 6},
                       nps=(0.10, 0.30, 0.60)),
}
DEFAULT_STORY = StoreStory(0.05, STORIES["JH01"].weights, nps=(0.2, 0.35, 0.45))

PLANS = (
    PlanStory("JH01", F.WAIT_TIME, start_months_back=6, start_days_back=None, cycle=3, close=True, effect=(0.6, 0.3),
              title="缩短保养等待与交车时间", owner="售后经理 刘洋", ramp_before=1.4,
              actions="1. 预约客户到店即开单，专设快保工位两个；\n2. 交车时间写入派工单，超时 15 分钟服务顾问主动致电说明；\n"
                      "3. CRM 每周抽查交车准时率，月底复盘。"),
    PlanStory("JH02", F.PARTS_WAIT, start_months_back=3, start_days_back=None, cycle=3, close=False, effect=(0.4, 0.2),
              title="常用配件备货与到货通知", owner="配件经理 马超", ramp_before=5.0,
              actions="1. 按近 12 个月出库频次调整常用件安全库存；\n2. 订货件下单当天告知客户预计到货日，到货当天短信通知；\n"
                      "3. 等件超过 7 天由服务经理回电说明。"),
    PlanStory("JH01", F.PRICE, start_months_back=None, start_days_back=14, cycle=3, close=False, effect=(0.75, 0.5),
              title="结算项目事先告知", owner="服务经理 陈静",
              actions="1. 开单时向客户逐项报价，增项须客户签字确认；\n2. 结算单打印工时与配件明细；\n"
                      "3. 每月公示常用保养项目价格。"),
)

# What customers say, by problem, where the script asks about it: (reply, evidence in the reply).
COMPLAINTS: dict[FeedbackCategory, tuple[tuple[str, str], ...]] = {
    F.WAIT_TIME: (("没有，说好一个小时，等了快三个小时", "等了快三个小时"), ("晚了一个多小时才交车", "晚了一个多小时"),
                  ("没有，预约了还是等了一上午", "等了一上午")),
    F.CAR_WASH: (("没有，车里还有灰，洗得不干净", "洗得不干净"), ("就随便冲了一下，轮毂都没洗", "随便冲了一下"),
                 ("洗是洗了，玻璃上全是水印", "全是水印")),
    F.SERVICE_ATTITUDE: (("那个接待的态度不太好，问什么都不耐烦", "态度不太好"), ("顾问说话挺冲的，感觉不受重视", "说话挺冲的")),
    F.REPAIR_QUALITY: (("异响还是没修好，回来第二天又响了", "没修好"), ("空调修完又不制冷了，还得再跑一趟", "又不制冷了"),
                       ("机油灯刚保养完又亮了", "又亮了")),
    F.PARTS_WAIT: (("配件等了一个多星期才到", "配件等了一个多星期"), ("说要订货，到现在还没通知我", "还没通知我"),
                   ("一个刹车片要等十天，太慢了", "要等十天")),
    F.PRICE: (("收费有点贵，工时费比外面高不少", "收费有点贵"), ("结算的时候多出来好几项，事先没说", "多出来好几项"),
              ("保养套餐太贵了，不太划算", "太贵了")),
    F.SERVICE_PROCESS: (("预约了到店还要排队，预约等于没约", "预约等于没约"), ("交车的时候没人给我讲做了什么项目", "没人给我讲"),
                        ("开单等了半天，流程太慢", "流程太慢")),
    F.FACILITY: (("休息区太吵了，也没有地方充电", "休息区太吵了"), ("停车位太少，转了好几圈", "停车位太少"),
                 ("休息室空调不凉，热得坐不住", "空调不凉")),
    F.SALES_PROCESS: (("买车时候说送的脚垫到现在还没给", "脚垫到现在还没给"), ("上牌的手续拖了快一个月", "拖了快一个月")),
    F.INSURANCE: (("理赔的手续太麻烦了，跑了好几次", "手续太麻烦了"), ("续保报价比别家贵，也没人解释", "续保报价比别家贵")),
}
PRAISES = (("服务顾问{advisor}很耐心，讲得很清楚", "很耐心"), ("技师挺专业的，还帮我检查了轮胎", "挺专业的"),
           ("挺好的，速度比上次快多了", "快多了"))
NEUTRAL = ("还可以", "挺好的", "没什么问题", "一般般吧，还行")
# Outcomes decided at the identity step: what the customer says, its intent, the script's next step.
EARLY_ENDS: dict[CallOutcome | None, tuple[tuple[str, ...], str, str]] = {
    CallOutcome.WRONG_NUMBER: (("你打错了吧，我不是", "这车我早就卖了"), "wrong_number", "end_wrong_number"),
    CallOutcome.OPT_OUT: (("以后别再给我打这种电话了",), "opt_out", "end_opt_out"),
    CallOutcome.CALLBACK: (("我在开车，晚点再打吧", "现在开会，不方便"), "busy_callback", "callback_time"),
    CallOutcome.TRANSFERRED: (("你帮我转一下人工吧，我想问问保养套餐",), "ask_human", "transfer"),
    REFUSED: (("不用了，没什么", "不方便，不用了"), "deny", "end_declined"),
}
SCORE_WORDS = {5: ("五分", "五分吧，挺满意的"), 4: ("四分吧", "打四分"), 3: ("三分吧", "就三分"), 2: ("两分", "两分吧"),
               1: ("一分", "一分，很不满意")}
NUMBERS = "零一二三四五六七八九十"
# Why lapsed customers stopped coming (weights): mostly reasons no department owns.
LAPSE_REASONS: tuple[tuple[str, FeedbackCategory | None, str | None, float], ...] = (
    ("搬到河西去了，离你们店太远", None, None, 25), ("车开得少，还没到保养里程", None, None, 22),
    ("在朋友开的修理厂做的，方便一些", None, None, 20), ("车子平时是我爱人在开，我不太清楚", None, None, 10),
    ("外面快修店便宜多了，你们收费太贵", F.PRICE, "收费太贵", 4), ("上次保养等太久了，就没再去", F.WAIT_TIME, "等太久了", 3),
    ("上次修完还是有异响，就换了一家", F.REPAIR_QUALITY, "还是有异响", 2),
)
NPS_REASONS = {  # without a problem: a detractor or passive with one says it in the complaints' words
    "promoter": (("服务挺周到的，顾问也专业", F.PRAISE, "挺周到的"), ("离家近，每次都挺快的", None, None),
                 ("用了好几年了，一直挺放心的", None, None)),
    "passive": (("总体可以，没什么特别的", None, None), ("还行吧，跟别的店差不多", None, None)),
    "detractor": (("说不上来，就是感觉一般", None, None),),
}
NPS_PROBLEM = {"detractor": 0.6, "passive": 0.2, "promoter": 0.0}  # share of answers that name a problem
RESOLUTIONS = {
    F.WAIT_TIME: "服务经理已致电道歉并说明延误原因，下次保养预约优先安排工位",
    F.CAR_WASH: "已邀请客户回店免费精洗一次，交车前增加洗车复检",
    F.SERVICE_ATTITUDE: "服务经理已致电道歉，相关顾问参加服务礼仪培训",
    F.REPAIR_QUALITY: "客户已回店复检，技术经理确认后免费返修",
    F.PARTS_WAIT: "配件已到货，已电话通知客户预约安装",
    F.PRICE: "服务经理已逐项解释结算明细，并赠送一次免费检测",
    F.SERVICE_PROCESS: "已向客户说明交车流程，交车时补充讲解施工项目",
    F.FACILITY: "已反馈行政部：休息区增加充电口，停车引导已改进",
    F.SALES_PROCESS: "销售经理已联系客户，赠品已补送到店",
    F.INSURANCE: "续保专员已回电说明理赔进度，协助客户补齐材料",
}
# Ticket history entries say what happened in ``data`` (the console words it in the reader's
# language) and keep ``note`` for what a person wrote; older schemas have only the note.
EVENT_DATA = "data" in TicketEvent.__table__.c
AGENT_CALLBACK_REASONS = ("客户想了解保养套餐价格，请人工回电", "客户询问延保政策，请人工回电", "客户想预约下周六上午保养，请人工确认")


def plan_dates(plan: PlanStory, today: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """(the first day of the top-3 month it came from, its start, its end) as of ``today``."""
    if plan.start_months_back is not None:
        start = add_months(today.replace(day=1), -plan.start_months_back)
    else:
        start = today - dt.timedelta(days=plan.start_days_back or 0)
    return add_months(start.replace(day=1), -1), start, add_months(start, plan.cycle)


class HistoryError(RuntimeError):
    """The history cannot be seeded (no demo customers); the message says what to do."""


# --------------------------------------------------------------------------- what is read first


@dataclass(frozen=True)
class _Customer:
    id: int
    store_id: int
    name: str
    gender: str | None
    phone: str
    vehicle_id: int | None


@dataclass(frozen=True)
class _Visit:
    id: int
    customer_id: int
    vehicle_id: int | None
    store_id: int
    day: dt.date
    advisor: str | None


@dataclass
class _StoreInfo:
    id: int
    code: str
    name: str
    story: StoreStory
    agents: list[tuple[int, str]] = field(default_factory=list)  # id, display name
    supervisor: int | None = None
    plans: list[tuple[PlanStory, dt.date, dt.date]] = field(default_factory=list)  # story, start, end


# --------------------------------------------------------------------------- rows, linked before their ids exist


class _Rows:
    """Rows per table; a value ``Ref(table, index)`` is replaced by that row's id at insert time."""

    ORDER = (("campaigns", Campaign), ("tasks", CallTask), ("calls", Call), ("utterances", Utterance),
             ("tags", CallTag), ("tickets", Ticket), ("events", TicketEvent), ("callbacks", Callback),
             ("dnc", DoNotCall), ("plans", ImprovementPlan))
    REFERENCED = frozenset({"campaigns", "tasks", "calls", "tickets", "plans"})  # ids other rows need

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {name: [] for name, _ in self.ORDER}

    def add(self, table: str, **row) -> Ref:
        self.rows[table].append(row)
        return Ref(table, len(self.rows[table]) - 1)

    def insert(self, conn) -> dict[str, list[int]]:
        ids: dict[str, list[int]] = {}
        for name, model in self.ORDER:
            rows = self.rows[name]
            for row in rows:
                for key, value in row.items():
                    if isinstance(value, Ref):
                        row[key] = ids[value.table][value.index]
                    elif isinstance(value, dict):  # JSON with an id in it (a ticket event's call)
                        row[key] = {k: ids[v.table][v.index] if isinstance(v, Ref) else v for k, v in value.items()}
            if not rows:
                ids[name] = []
            elif name in self.REFERENCED:
                result = conn.execute(sa.insert(model).returning(model.id, sort_by_parameter_order=True), rows)
                ids[name] = list(result.scalars())
            else:  # a plain executemany: the transcript lines are most of the rows
                conn.execute(sa.insert(model), rows)
        return ids


@dataclass(frozen=True)
class Ref:
    table: str
    index: int


# --------------------------------------------------------------------------- the generator


def seed_history(db, *, today: dt.date, tz: str = "Asia/Shanghai", seed: int = 2026, default_cycle_mid: int = 3,
                 default_cycle_premium: int = 6) -> dict:
    """Seed the demo group's history up to the day before ``today`` (see the module docstring).

    Returns counts of what was written, or ``{"skipped": True, ...}`` when the history is there.

    Raises:
        HistoryError: the database has no customers with a phone number (load the demo group first).
    """
    with db.session() as s:
        existing = s.scalar(sa.select(sa.func.count()).select_from(Campaign).where(Campaign.name.like(f"{MARK}%")))
    if existing:
        return {"skipped": True, "campaigns": existing}
    history = _History(db, today=today, tz=tz, seed=seed, cycles=(default_cycle_mid, default_cycle_premium))
    history.load()
    history.generate()
    counts = history.write()
    counts["indexed"] = TranscriptIndex(db.engine).catch_up(limit=10_000_000)
    return counts


class _History:
    def __init__(self, db, *, today: dt.date, tz: str, seed: int, cycles: tuple[int, int]) -> None:
        self.db = db
        self.today = today
        self.zone = ZoneInfo(tz)
        self.tz = tz
        self.rng = random.Random(seed)
        self.cycles = cycles
        self.first = add_months(today.replace(day=1), -MONTHS)
        # History ends with yesterday: nothing in it (calls, ticket work) happens after this.
        self.now = self._utc(today, dt.time())
        self.rows = _Rows()
        self.scripts: dict[str, Script] = shipped_scripts()
        self.holidays = ChineseHolidays()
        self.stores: dict[int, _StoreInfo] = {}
        self.customers: dict[int, _Customer] = {}
        self.visits: list[_Visit] = []
        self.admin: int | None = None
        self.last_winback: dict[int, dt.date] = {}
        self.paid_days: dict[int, list[dt.date]] = defaultdict(list)  # customer -> paid visit days, in order
        self.opted_out: dict[int, dt.date] = {}  # customer -> the day they asked not to be called again
        self.tasked: set[tuple[int, int]] = set()  # (campaign row, customer): one task each, as the dialer keeps

    # -- time ----------------------------------------------------------------------------------

    def _utc(self, day: dt.date, at: dt.time) -> dt.datetime:
        return dt.datetime.combine(day, at, tzinfo=self.zone).astimezone(dt.UTC).replace(tzinfo=None)

    def _local_day(self, utc: dt.datetime) -> dt.date:
        return utc.replace(tzinfo=dt.UTC).astimezone(self.zone).date()

    def _holiday(self, day: dt.date) -> bool:
        try:
            return self.holidays.is_holiday(day)
        except HolidayDataMissing:
            return False

    def _working_day(self, day: dt.date) -> dt.date:
        while self._holiday(day):
            day += dt.timedelta(days=1)
        return day

    def _call_time(self, day: dt.date) -> dt.datetime:
        hour = self.rng.choices([h for h, _ in HOURS], weights=[w for _, w in HOURS])[0]
        return self._utc(day, dt.time(hour, self.rng.randrange(60), self.rng.randrange(60)))

    # -- reading the demo group ----------------------------------------------------------------

    def load(self) -> None:
        with self.db.session() as s:
            for sid, code, name in s.execute(sa.select(Store.id, Store.code, Store.name).order_by(Store.id)):
                self.stores[sid] = _StoreInfo(sid, code, name, STORIES.get(code, DEFAULT_STORY))
            for uid, role, store_id, name in s.execute(
                    sa.select(User.id, User.role, User.store_id, sa.func.coalesce(User.display_name, User.username))
                    .where(User.active.is_(True)).order_by(User.id)):
                if store_id is None and role is Role.ADMIN and self.admin is None:
                    self.admin = uid
                elif store_id in self.stores and role is Role.AGENT:
                    self.stores[store_id].agents.append((uid, name))
                elif store_id in self.stores and role is Role.SUPERVISOR and self.stores[store_id].supervisor is None:
                    self.stores[store_id].supervisor = uid
            # Customers with open tasks elsewhere (the live campaign's) get no history: an answered
            # call in the last days would defer their live call (frequency cap), an opt-out cancel it.
            busy = set(s.scalars(sa.select(CallTask.customer_id).where(
                CallTask.state.in_([TaskState.PENDING, TaskState.QUEUED, TaskState.DIALING]))))
            dnc = set(s.scalars(sa.select(DoNotCall.phone)))
            first_vehicle = dict(s.execute(sa.select(Vehicle.customer_id, sa.func.min(Vehicle.id))
                                           .group_by(Vehicle.customer_id)).all())
            for cid, store_id, name, gender, phone in s.execute(
                    sa.select(Customer.id, Customer.store_id, Customer.name, Customer.gender, Customer.phone)
                    .where(Customer.phone.is_not(None)).order_by(Customer.id)):
                if cid in busy or phone in dnc or store_id not in self.stores:
                    continue
                self.customers[cid] = _Customer(cid, store_id, name, gender.value if gender else None, phone,
                                                first_vehicle.get(cid))
            called = set(s.scalars(sa.select(CallTask.visit_id).where(CallTask.visit_id.is_not(None))))
            for vid, cid, vehicle_id, store_id, day, advisor, paid in s.execute(
                    sa.select(ServiceVisit.id, ServiceVisit.customer_id, ServiceVisit.vehicle_id, ServiceVisit.store_id,
                              ServiceVisit.visit_date, ServiceVisit.advisor, ServiceVisit.paid)
                    .where(ServiceVisit.visit_date >= add_months(self.first, -3), ServiceVisit.visit_date < self.today)
                    .order_by(ServiceVisit.visit_date, ServiceVisit.id)):
                if cid not in self.customers:
                    continue
                if paid:
                    self.paid_days[cid].append(day)
                if vid not in called:
                    self.visits.append(_Visit(vid, cid, vehicle_id, store_id, day, advisor))
        if not self.customers:
            raise HistoryError("no customers with a phone number to call: load the demo group first "
                               "(`callcenter init --demo`)")
        for plan in PLANS:
            _source, start, end = plan_dates(plan, self.today)
            for store in self.stores.values():
                if plan.store is None or plan.store == store.code:
                    store.plans.append((plan, start, end))

    # -- the shape -----------------------------------------------------------------------------

    def _weights(self, store: _StoreInfo, day: dt.date) -> dict[FeedbackCategory, float]:
        weights = {}
        for category, w in store.story.weights.items():
            w *= SEASON_CATEGORY.get(category, {}).get(day.month, 1.0)
            for plan, start, _end in store.plans:
                if plan.category is not category:
                    continue
                if day >= start:
                    w *= plan.effect[0] if day < add_months(start, 1) else plan.effect[1]
                elif day >= add_months(start, -3):
                    w *= plan.ramp_before
            weights[category] = w
        return weights

    def _category(self, store: _StoreInfo, day: dt.date) -> FeedbackCategory:
        weights = self._weights(store, day)
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def _problems(self, store: _StoreInfo, day: dt.date) -> list[FeedbackCategory]:
        """The problems a reached customer reports on a post-service call (mostly none). Seasons and
        plans scale each problem's own rate, so a plan that works lowers the store's feedback rate too."""
        rate = store.story.feedback * sum(self._weights(store, day).values()) / sum(store.story.weights.values())
        if self.rng.random() >= rate * SEASON_FEEDBACK.get(day.month, 1.0):
            return []
        first = self._category(store, day)
        if self.rng.random() < 0.18:
            second = self._category(store, day)
            if second is not first:
                return [first, second]
        return [first]

    def _nps_mix(self, store: _StoreInfo, day: dt.date) -> tuple[float, float, float]:
        if store.story.nps_after_plan and any(day >= start for _p, start, _e in store.plans):
            return store.story.nps_after_plan
        return store.story.nps

    # -- campaigns -----------------------------------------------------------------------------

    def _campaign(self, ctype: CampaignType, script: str, store: _StoreInfo | None, month: dt.date, label: str,
                  params: dict | None = None) -> Ref:
        at = self._utc(month, dt.time(8, 0))
        done = add_months(month, 1) <= self.today
        name = f"{MARK} · {month:%Y-%m} {store.name if store else '全部门店'} {label}"
        return self.rows.add(
            "campaigns", name=name[:100], type=ctype, script=script, store_id=store.id if store else None,
            status=CampaignStatus.COMPLETED, as_of=month, params={"demo_history": True, **(params or {})},
            max_channels=8, max_attempts=2, robot=True, created_by=self.admin, created_at=at, started_at=at,
            finished_at=min(self.now, self._utc(add_months(month, 1), dt.time(8))) if done else self.now)

    def generate(self) -> None:
        months = [add_months(self.first, i) for i in range(MONTHS + 1)]
        post: dict[tuple[int, dt.date], Ref] = {}
        for month in months:
            for store in self.stores.values():
                post[(store.id, month)] = self._campaign(CampaignType.POST_SERVICE, "post_service", store, month,
                                                         "售后回访", {"window_days": [1, 3]})
        for visit in self.visits:
            if self.rng.random() < 0.06:
                continue  # not every visit is revisited: customers who asked not to be, fleet cars ...
            day = self._working_day(visit.day + dt.timedelta(days=self.rng.choice((1, 1, 2, 3))))
            if day < self.first or day >= self.today:
                continue
            store = self.stores[visit.store_id]
            self._task(post[(store.id, day.replace(day=1))], store, self.customers[visit.customer_id], day,
                       "post_service", visit=visit)
        for month in months:
            self._nps_month(month)
        for back in (11, 8, 5, 2):
            self._winback_quarter(add_months(self.today.replace(day=1), -back))
        self._agent_callbacks()
        self._plans_rows()

    def _nps_month(self, month: dt.date) -> None:
        campaign = self._campaign(CampaignType.NPS, "nps", None, month, "NPS 调研", {"sample": 0.08})
        recent = defaultdict(list)
        for visit in self.visits:
            if add_months(month, -3) <= visit.day < month:
                recent[visit.customer_id].append(visit)
        for cid in sorted(recent):
            if self.rng.random() >= 0.10:
                continue
            day = self._working_day(month + dt.timedelta(days=self.rng.randrange(2, 26)))
            if day >= self.today:
                continue
            customer = self.customers[cid]
            self._task(campaign, self.stores[customer.store_id], customer, day, "nps")

    def _winback_quarter(self, month: dt.date) -> None:
        as_of = month + dt.timedelta(days=4)
        if as_of >= self.today:
            return
        for store in self.stores.values():
            with self.db.session() as s:
                q = classes_query(s, as_of, store_id=store.id, default_cycle_mid=self.cycles[0],
                                  default_cycle_premium=self.cycles[1])
                lapsed = list(s.scalars(sa.select(q.c.customer_id).where(q.c.lapsed.is_(True))
                                        .order_by(q.c.customer_id)))
            lapsed = [c for c in lapsed if c in self.customers
                      and (c not in self.last_winback or (as_of - self.last_winback[c]).days > 90)]
            if not lapsed:
                continue
            campaign = self._campaign(CampaignType.WINBACK, "winback", store, month, "流失客户召回",
                                      {"recontact_days": 90})
            for cid in self.rng.sample(lapsed, min(len(lapsed), 90)):
                day = self._working_day(as_of + dt.timedelta(days=self.rng.randrange(0, 20)))
                if day >= self.today:
                    continue
                self.last_winback[cid] = day
                self._task(campaign, store, self.customers[cid], day, "winback")

    # -- one customer's task: attempts until one reaches a conclusion -----------------------------

    def _task(self, campaign: Ref, store: _StoreInfo, customer: _Customer, day: dt.date, script: str, *,
              visit: _Visit | None = None) -> None:
        rng = self.rng
        if (campaign.index, customer.id) in self.tasked or self.opted_out.get(customer.id, self.today) <= day:
            return
        self.tasked.add((campaign.index, customer.id))
        started = self._call_time(day)
        task = self.rows.add(
            "tasks", campaign_id=campaign, customer_id=customer.id, vehicle_id=visit.vehicle_id if visit else
            customer.vehicle_id, visit_id=visit.id if visit else None, store_id=store.id, phone=customer.phone,
            state=TaskState.FAILED, attempts=0, next_attempt_at=None, last_disposition=None, outcome=None,
            context={"demo_history": True}, created_at=started - dt.timedelta(hours=1), updated_at=started, finished_at=started)
        task_row = self.rows.rows["tasks"][task.index]
        attempt = 1
        while True:
            if rng.random() < (ANSWER_RATE if attempt == 1 else 0.6):
                outcome = rng.choices([o for o, _ in ANSWERED_OUTCOMES if o is not None],
                                      weights=[w for o, w in ANSWERED_OUTCOMES if o is not None])[0]
                if outcome is CallOutcome.CALLBACK and (attempt > 1 or day >= self.today - dt.timedelta(days=2)):
                    outcome = CallOutcome.COMPLETED  # a callback is fulfilled by a later attempt, before today
                if outcome is CallOutcome.OPT_OUT:
                    if customer.id in self.opted_out:  # asked on a later call already: this one went on
                        outcome = CallOutcome.COMPLETED
                    else:
                        self.opted_out[customer.id] = day
                disposition = CallDisposition.ANSWERED
            else:
                outcome, disposition = CallOutcome.NOT_REACHED, rng.choices(
                    [d for d, _ in UNREACHED], weights=[w for _, w in UNREACHED])[0]
            call, ended = self._call(task, attempt, campaign, store, customer, started, script, disposition, outcome,
                                     visit)
            task_row.update(attempts=attempt, last_disposition=disposition.value, outcome=outcome,
                            updated_at=ended, finished_at=ended,
                            state=TaskState.FAILED if outcome is CallOutcome.NOT_REACHED else TaskState.COMPLETED)
            if outcome is CallOutcome.CALLBACK:
                due = started + dt.timedelta(hours=rng.choice((3, 5, 24, 26)))
                callback = self.rows.add(
                    "callbacks", customer_id=customer.id, store_id=store.id, call_id=call, task_id=task, ticket_id=None,
                    due_at=due, reason="客户现在不方便，约定稍后再打", robot=True, assignee_id=None,
                    status=CallbackStatus.DONE, done_call_id=None, created_at=ended, done_at=None)
                started = due
            elif (outcome is CallOutcome.NOT_REACHED and disposition is not CallDisposition.NOT_FOUND
                  and attempt == 1 and rng.random() < 0.55):
                callback = None
                started = started + dt.timedelta(hours=2, minutes=rng.randrange(0, 30))
            else:
                return
            if self._local_day(started) >= self.today:
                return
            attempt += 1
            if callback is not None:
                # The robot's second attempt fulfils the callback (campaigns.outcomes does the same).
                self.rows.rows["callbacks"][callback.index].update(done_call_id=Ref("calls", len(self.rows.rows["calls"])),
                                                                   done_at=started)

    def _call(self, task: Ref, attempt: int, campaign: Ref, store: _StoreInfo, customer: _Customer,
              started: dt.datetime, script: str, disposition: CallDisposition, outcome: CallOutcome,
              visit: _Visit | None) -> tuple[Ref, dt.datetime]:
        rng = self.rng
        record = {
            "task_id": task, "attempt": attempt, "campaign_id": campaign, "customer_id": customer.id,
            "store_id": store.id, "agent_id": None, "robot": True, "script": script, "phone": customer.phone,
            "worker": MARK, "sip_call_id": None, "disposition": disposition.value, "sip_code": SIP_CODE[disposition],
            "sip_reason": None, "outcome": outcome, "hangup_by": "local", "started_at": started,
            "ringing_at": started + dt.timedelta(seconds=rng.randint(1, 3)), "answered_at": None, "ended_at": None,
            "talk_seconds": None, "recording": None, "score5": None, "nps": None, "sentiment": None, "answers": None,
            "actions": None, "error": None, "notes": None, "created_at": started,
        }
        call = self.rows.add("calls", **record)
        record = self.rows.rows["calls"][call.index]
        if disposition is not CallDisposition.ANSWERED:
            record["ended_at"] = started + dt.timedelta(seconds=rng.randint(20, 45))
            record["hangup_by"] = "remote" if disposition in (CallDisposition.BUSY, CallDisposition.REJECTED) else "local"
            return call, record["ended_at"]
        record["answered_at"] = started + dt.timedelta(seconds=rng.randint(5, 15))
        talk = _Talk(self.scripts[script], rng, {
            "customer": _salutation(customer), "store": store.name, "visit_date": visit.day if visit else None})
        day = self._local_day(started)
        first_question, conversation = {"post_service": ("satisfaction", self._post_service),
                                         "nps": ("nps", self._nps), "winback": ("winback_reason", self._winback)}[script]
        if self._opening(talk, outcome, first_question):
            conversation(talk, outcome, store, customer, day, visit)
        tags = talk.tags
        record.update(score5=talk.answers.get("overall_score"), nps=talk.answers.get("nps"),
                      answers=talk.answers or None, talk_seconds=round(talk.t, 1))
        record["ended_at"] = record["answered_at"] + dt.timedelta(seconds=talk.t)
        problems = [c for c, *_ in tags if c is not F.PRAISE]
        score = record["score5"]
        record["sentiment"] = (Sentiment.NEGATIVE if problems or (score is not None and score <= 2) or
                               (record["nps"] is not None and record["nps"] <= 6) else
                               Sentiment.POSITIVE if (score or record["nps"] or 0) >= 4 else Sentiment.NEUTRAL).value
        if outcome is CallOutcome.TRANSFERRED and store.agents:
            record["agent_id"] = rng.choice(store.agents)[0]
        if outcome is CallOutcome.OPT_OUT:
            self.rows.add("dnc", phone=customer.phone, customer_id=customer.id, reason="客户要求不再来电",
                          source="robot", call_id=call, created_by=None, created_at=record["ended_at"])
        for seq, speaker, text, start, end, intent, prompt in talk.turns:
            self.rows.add("utterances", call_id=call, seq=seq, speaker=speaker, text=text, start=start, end=end,
                          confidence=round(rng.uniform(0.82, 0.97), 2) if speaker == "customer" else None,
                          intent=intent, prompt_id=prompt)
        for category, evidence, seq, text in tags:
            at = text.find(evidence)
            self.rows.add("tags", call_id=call, category=category.value, department=category.department.value,
                          confidence=round(rng.uniform(0.74, 0.98), 2), source="model", created_at=record["ended_at"],
                          evidence=[{"utterance": seq, "text": evidence, "start": at, "end": at + len(evidence)}])
        if problems:
            for category, evidence, _seq, text in tags:
                if category is not F.PRAISE:
                    self._ticket(call, customer, store, category, evidence, talk.customer_words(),
                                 record["ended_at"], high=score is not None and score <= 2)
        return call, record["ended_at"]

    # -- conversations, step by step as the shipped scripts go -------------------------------------

    def _opening(self, talk: _Talk, outcome: CallOutcome, question: str) -> bool:
        """The identity step and the outcomes decided there, then the first ``question``; False when
        the call ends before its answer (a customer who hangs up hangs up on the first question)."""
        rng = self.rng
        if outcome is CallOutcome.ANSWERING_MACHINE:
            talk.customer("您好，您拨打的用户暂时无法接听，请在提示音后留言", None)
            return False
        talk.robot("identity")
        if outcome in EARLY_ENDS:
            replies, intent, step = EARLY_ENDS[outcome]
            talk.customer(rng.choice(replies), intent)
            talk.robot(step)
            if outcome is CallOutcome.CALLBACK:
                when = rng.choice(("下午三点以后吧", "明天上午吧"))
                talk.customer(when, None, record=("callback_time", when))
                talk.robot("end_callback")
            if outcome is REFUSED:
                talk.answers["consent"] = False
            return False
        talk.customer(rng.choice(("好的，你说", "可以，你说吧", "嗯，方便")), "affirm")
        talk.answers["consent"] = True
        talk.robot(question)
        return outcome is not CallOutcome.HUNG_UP

    # Each conversation goes on from the answer to its first question; the transcript, answers and
    # tags accumulate in ``talk``.

    def _post_service(self, talk: _Talk, outcome: CallOutcome, store: _StoreInfo, _customer: _Customer,
                      day: dt.date, visit: _Visit | None) -> None:
        rng = self.rng
        problems = self._problems(store, day)
        scores = (0.10, 0.20, 0.35, 0.27, 0.08) if problems else (0.004, 0.012, 0.08, 0.31, 0.594)
        score = rng.choices((1, 2, 3, 4, 5), weights=scores)[0]
        talk.customer(rng.choice(SCORE_WORDS[score]), "affirm", record=("overall_score", score))
        left = list(problems)

        def take(*wanted: FeedbackCategory) -> FeedbackCategory | None:
            for category in left:
                if not wanted or category in wanted:
                    left.remove(category)
                    return category
            return None

        if score <= 3:
            talk.robot("improvement")
            category = take(F.PRICE, F.REPAIR_QUALITY, F.SERVICE_PROCESS, F.PARTS_WAIT, F.FACILITY, F.INSURANCE,
                            F.SALES_PROCESS) or take()
            if category:
                talk.complaint(category, "improvement")
            else:
                talk.customer("说不上来，感觉一般", None, record=("improvement", "说不上来，感觉一般"))
        if outcome is CallOutcome.PARTIAL:
            talk.robot("advisor")
            return  # no answer after this: the robot said goodbye after its re-prompts
        talk.robot("advisor")
        category = take(F.SERVICE_ATTITUDE)
        if category:
            talk.complaint(category, "advisor")
        elif score == 5 and rng.random() < 0.18:
            reply, evidence = rng.choice(PRAISES)
            reply = reply.format(advisor=(visit.advisor if visit and visit.advisor else "小刘"))
            talk.customer(reply, "affirm", record=("advisor", reply), tag=(F.PRAISE, evidence))
        else:
            reply = rng.choice(NEUTRAL)
            talk.customer(reply, "affirm", record=("advisor", reply))
        for step, problem, record, fine in (("car_wash", F.CAR_WASH, "car_washed", ("洗了，挺干净的", "有的")),
                                            ("on_time", F.WAIT_TIME, "on_time", ("准时的", "是的，挺准时"))):
            talk.robot(step)  # the script's yes/no questions: a "no" is the step's problem
            category = take(problem)
            if category:
                talk.complaint(category, record, value=False, intent="deny")
            else:
                talk.customer(rng.choice(fine), "affirm", record=(record, True))
        talk.robot("anything_else")
        category = take()
        if category:
            talk.complaint(category, "suggestion", extra=take())
        else:
            talk.customer(rng.choice(("没有了", "暂时没有", "没什么了，挺好的")), "deny")
        talk.robot("end_thanks")

    def _nps(self, talk: _Talk, outcome: CallOutcome, store: _StoreInfo, _customer: _Customer, day: dt.date,
             _visit: _Visit | None) -> None:
        rng = self.rng
        if outcome is CallOutcome.PARTIAL:
            return
        group = rng.choices(("detractor", "passive", "promoter"), weights=self._nps_mix(store, day))[0]
        score = rng.choice({"detractor": (3, 5, 6, 6, 6), "passive": (7, 8, 8), "promoter": (9, 10, 10)}[group])
        talk.customer(f"{_number(score)}分吧", "affirm", record=("nps", score))
        talk.robot(group)
        if rng.random() < NPS_PROBLEM[group]:
            talk.complaint(self._category(store, day), "nps_reason")
        else:
            reply, category, evidence = rng.choice(NPS_REASONS[group])
            talk.customer(reply, "affirm", record=("nps_reason", reply),
                          tag=(category, evidence) if category else None)
        talk.robot("end_thanks")

    def _winback(self, talk: _Talk, outcome: CallOutcome, _store: _StoreInfo, customer: _Customer, day: dt.date,
                 _visit: _Visit | None) -> None:
        rng = self.rng
        reply, category, evidence, _w = rng.choices(LAPSE_REASONS, weights=[r[3] for r in LAPSE_REASONS])[0]
        talk.customer(reply, "complaint" if category else "affirm", record=("lapse_reason", reply),
                      tag=(category, evidence) if category else None)
        if outcome is CallOutcome.PARTIAL:
            return
        talk.robot("winback_offer")
        # The customers who book are mostly those the DMS shows back within a month. Returns are the
        # DMS's own visits: about a fifth come back within 4 months, the seeds' 11-23 %.
        back = next((d for d in self.paid_days[customer.id] if d > day), None)
        booked = rng.random() < (0.75 if back is not None and (back - day).days <= 30 else 0.12)
        if booked:
            talk.customer(rng.choice(("好啊，下周六上午吧", "行，这周末过来")), "affirm", record=("winback_booking", True))
            talk.robot("booked")
        else:
            talk.customer(rng.choice(("先不用了，有需要再说", "最近没时间，再说吧")), "deny", record=("winback_booking", False))
            talk.robot("booking_later")
        talk.robot("end_thanks")

    # -- tickets and callbacks -----------------------------------------------------------------

    def _ticket(self, call: Ref, customer: _Customer, store: _StoreInfo, category: FeedbackCategory, evidence: str,
                words: str, at: dt.datetime, *, high: bool) -> None:
        """A complaint ticket where it stands today: new ones open or assigned, older ones resolved and
        mostly verified by a callback to the customer, a few closed as duplicates or left overdue."""
        rng = self.rng
        age = (self.now - at).days
        weights = (2, 4, 13, 72, 9) if age > 10 else (5, 40, 40, 15, 0) if age > 3 else (55, 45, 0, 0, 0)
        status = rng.choices(list(TicketStatus), weights=weights)[0]
        agent, agent_name = rng.choice(store.agents) if store.agents else (None, None)
        manager = store.supervisor or self.admin
        assigned = at + dt.timedelta(hours=rng.randint(1, 5))
        resolved = assigned + dt.timedelta(hours=rng.randint(5, 40))
        verified = resolved + dt.timedelta(hours=rng.randint(20, 72))
        times = {TicketStatus.OPEN: at, TicketStatus.ASSIGNED: assigned, TicketStatus.RESOLVED: resolved,
                 TicketStatus.VERIFIED: verified, TicketStatus.CLOSED: resolved}
        while times[status] > self.now:  # not that far yet
            status = {TicketStatus.VERIFIED: TicketStatus.RESOLVED, TicketStatus.CLOSED: TicketStatus.ASSIGNED,
                      TicketStatus.RESOLVED: TicketStatus.ASSIGNED}.get(status, TicketStatus.OPEN)
        if not store.agents and status is TicketStatus.ASSIGNED:
            status = TicketStatus.OPEN
        last = times[status]
        done = status in (TicketStatus.RESOLVED, TicketStatus.VERIFIED)
        title = f"客户反馈：{CATEGORY_LABELS[category]}（{evidence}）"
        ticket = self.rows.add(
            "tickets", call_id=call, customer_id=customer.id, store_id=store.id,
            department=category.department.value, category=category.value, kind="complaint", title=title,
            description=words or None, status=status, priority="high" if high else "normal",
            assignee_id=agent if status is not TicketStatus.OPEN else None, due_at=at + dt.timedelta(hours=48),
            resolution=RESOLUTIONS[category] if done else None, verify_call_id=None, created_at=at,
            updated_at=last, resolved_at=resolved if done else None,
            verified_at=verified if status is TicketStatus.VERIFIED else None)
        events = [(None, at, "created", None, {"call_id": call, "department": category.department.value})]
        if status is not TicketStatus.OPEN and agent is not None:
            events.append((manager, assigned, "assigned", None, {"assignee_id": agent, "assignee": agent_name}))
        if status is TicketStatus.CLOSED:
            events.append((manager, resolved, "status", "与该客户的另一张工单重复，合并处理", {"status": "closed"}))
        if done:
            events.append((agent or manager, resolved, "status", RESOLUTIONS[category], {"status": "resolved"}))
        if status is TicketStatus.VERIFIED:
            self.rows.add("callbacks", customer_id=customer.id, store_id=store.id, call_id=None, task_id=None,
                          ticket_id=ticket, due_at=resolved + dt.timedelta(hours=20), reason="工单处理结果回访确认",
                          robot=False, assignee_id=agent, status=CallbackStatus.DONE, done_call_id=None,
                          created_at=resolved, done_at=verified)
            events.append((agent or manager, verified, "status", "客户电话确认问题已解决", {"status": "verified"}))
        for user_id, when, action, note, data in events:
            extra = {"data": data} if EVENT_DATA else {}
            self.rows.add("events", ticket_id=ticket, user_id=user_id, at=when, action=action, note=note, **extra)

    def _agent_callbacks(self) -> None:
        """A few callbacks for the agents today: customers who asked a person to call them."""
        recent = [(i, c) for i, c in enumerate(self.rows.rows["calls"]) if c["outcome"] is CallOutcome.COMPLETED
                  and (self.now - c["started_at"]).days < 3]
        for store in self.stores.values():
            mine = [(i, c) for i, c in recent if c["store_id"] == store.id]
            for (index, call), reason in zip(self.rng.sample(mine, min(3, len(mine))), AGENT_CALLBACK_REASONS):
                due = self._utc(self.today, dt.time(self.rng.choice((9, 10, 11, 14, 15)), self.rng.choice((0, 30))))
                self.rows.add("callbacks", customer_id=call["customer_id"], store_id=store.id,
                              call_id=Ref("calls", index), task_id=call["task_id"],
                              ticket_id=None, due_at=due, reason=reason, robot=False,
                              assignee_id=store.agents[0][0] if store.agents else None,
                              status=CallbackStatus.PENDING,
                              done_call_id=None, created_at=call["started_at"], done_at=None)

    def _plans_rows(self) -> None:
        seen: set[PlanStory] = set()
        for store in self.stores.values():
            for plan, start, end in store.plans:
                if plan in seen:
                    continue
                seen.add(plan)
                self.rows.add(
                    "plans", store_id=store.id if plan.store else None, department=plan.category.department,
                    category=plan.category, source_month=f"{plan_dates(plan, self.today)[0]:%Y-%m}",
                    title=plan.title, owner=plan.owner, actions=plan.actions, cycle_months=plan.cycle,
                    start_date=start, end_date=end, status=PlanStatus.ACTIVE,
                    created_by_id=store.supervisor if plan.store else self.admin,
                    created_at=self._utc(start - dt.timedelta(days=3), dt.time(10)), closed_at=None, result=None)

    # -- writing -------------------------------------------------------------------------------

    def write(self) -> dict:
        with self.db.engine.begin() as conn:
            ids = self.rows.insert(conn)
        self._close_plans(ids["plans"])
        rows = self.rows.rows
        return {"campaigns": len(rows["campaigns"]), "tasks": len(rows["tasks"]), "calls": len(rows["calls"]),
                "utterances": len(rows["utterances"]), "tags": len(rows["tags"]), "tickets": len(rows["tickets"]),
                "callbacks": len(rows["callbacks"]), "do_not_call": len(rows["dnc"]),
                "plans": len(rows["plans"])}

    def _close_plans(self, plan_ids: list[int]) -> None:
        """Close the plans whose story says so, recording the result as the console's Close does
        (the problem's rate in the cycle before the plan and during it)."""
        with self.db.session() as s:
            for plan_id in plan_ids:
                plan = s.get(ImprovementPlan, plan_id)
                story = next(p for p in PLANS if p.title == plan.title)
                if not story.close or plan.end_date > self.today:
                    continue
                before = problem_rate(s, plan.category.value, add_months(plan.start_date, -plan.cycle_months),
                                      plan.start_date, tz=self.tz, store_id=plan.store_id)
                after = problem_rate(s, plan.category.value, plan.start_date, plan.end_date, tz=self.tz,
                                     store_id=plan.store_id)
                plan.result = {"before": before, "after": after, **compare_rates(before, after), "complete": True}
                plan.status = PlanStatus.CLOSED
                plan.closed_at = self._utc(plan.end_date + dt.timedelta(days=2), dt.time(16))


# --------------------------------------------------------------------------- one conversation


class _Talk:
    """A call's transcript as it is built: the robot's lines from the script, the customer's replies,
    the answers recorded and the tags found (category, evidence, utterance seq, the line)."""

    def __init__(self, script: Script, rng: random.Random, values: Mapping) -> None:
        self.script = script
        self.rng = rng
        self.values = values
        self.t = 0.0
        self.turns: list[tuple[int, str, str, float, float, str | None, str | None]] = []
        self.answers: dict = {}
        self.tags: list[tuple[FeedbackCategory, str, int, str]] = []

    def _line(self, speaker: str, text: str, intent: str | None, prompt: str | None) -> int:
        length = max(1.2, len(text) * (0.22 if speaker == "robot" else 0.27))
        seq = len(self.turns)
        self.turns.append((seq, speaker, text, round(self.t, 2), round(self.t + length, 2), intent, prompt))
        self.t += length + self.rng.uniform(0.4, 1.3)
        return seq

    def robot(self, step: str) -> None:
        text, _fragments = render(self.script.steps[step].say, self.values, self.script.variables)
        self._line("robot", text, None, f"{self.script.id}.{step}")

    def customer(self, text: str, intent: str | None, *, record: tuple[str, object] | None = None,
                 tag: tuple[FeedbackCategory, str] | None = None) -> None:
        seq = self._line("customer", text, intent, None)
        if record:
            self.answers[record[0]] = record[1]
        if tag:
            self.tags.append((tag[0], tag[1], seq, text))

    def complaint(self, category: FeedbackCategory, question: str, *, value: object = None,
                  intent: str = "complaint", extra: FeedbackCategory | None = None) -> None:
        reply, evidence = self.rng.choice(COMPLAINTS[category])
        text = reply
        if extra is not None:
            reply2, evidence2 = self.rng.choice(COMPLAINTS[extra])
            text = f"{reply}，还有{reply2}"
        seq = self._line("customer", text, intent, None)
        self.answers[question] = text if value is None else value
        self.tags.append((category, evidence, seq, text))
        if extra is not None:
            self.tags.append((extra, evidence2, seq, text))

    def customer_words(self) -> str:
        return " / ".join(text for _s, speaker, text, *_ in self.turns if speaker == "customer")[:2000]


def _salutation(customer: _Customer) -> str:
    return customer.name[:1] + {"M": "先生", "F": "女士"}.get(customer.gender or "", "")


def _number(n: int) -> str:
    return NUMBERS[n] if n <= 10 else str(n)

