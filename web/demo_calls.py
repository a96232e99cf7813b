"""Revisit calls for the demo, the browser tests and the benchmark: campaigns, calls with
transcripts, feedback tags with their evidence, scores, NPS, tickets and callbacks, as the dialer
would have stored them after months of work.

Until real calls exist the console would show empty pages; this fills a demo dealer group (the
customers of ``callcenter init --demo``) with plausible months of revisit work so that every
report, chart and workflow has something to show. Deterministic for a seed; bulk inserts through
SQLAlchemy Core so that 200,000 calls take about a minute. Runs on the caller's thread.

Customer replies come from a bank of phone-style Chinese answers per problem category, each with
the words that show the category (the evidence the call page highlights). Win-back calls that
"worked" get the paid visit that made them work, so the win-back report has returns to count.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from callcenter.domain import CallDisposition, FeedbackCategory, VisitType
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
    ServiceVisit,
    TaskState,
    Ticket,
    TicketEvent,
    TicketStatus,
    Utterance,
    utcnow,
)

# (category, reply, evidence): the evidence is a substring of the reply.
FEEDBACK: tuple[tuple[str, str, str], ...] = (
    ("wait_time", "等了快三个小时才交车，说好一个小时的", "等了快三个小时"),
    ("wait_time", "保养时间太长了，一上午都耗在店里", "时间太长了"),
    ("wait_time", "交车比约定的晚了一个多小时", "晚了一个多小时"),
    ("car_wash", "车洗得不干净，车里还有灰", "洗得不干净"),
    ("car_wash", "洗车就随便冲了一下，轮毂都没洗", "随便冲了一下"),
    ("repair_quality", "异响还是没修好，回来第二天又响了", "没修好"),
    ("repair_quality", "上次修的空调又不制冷了，又得跑一趟", "又不制冷了"),
    ("parts_wait", "配件等了一个多星期才到", "配件等了一个多星期"),
    ("parts_wait", "说要订货，到现在还没通知我", "还没通知我"),
    ("price", "收费有点贵，工时费比外面高不少", "收费有点贵"),
    ("price", "结算的时候多出来好几项，事先没说", "多出来好几项"),
    ("service_attitude", "那个接待的态度不太好，问什么都不耐烦", "态度不太好"),
    ("service_attitude", "顾问说话挺冲的，感觉不受重视", "说话挺冲的"),
    ("service_process", "预约了到店还要排队，预约等于没约", "预约等于没约"),
    ("service_process", "交车的时候没人给我讲做了什么项目", "没人给我讲"),
    ("facility", "休息区太吵了，也没有地方充电", "休息区太吵了"),
    ("facility", "停车位太少，转了好几圈", "停车位太少"),
    ("sales_process", "买车时候说送的脚垫到现在还没给", "脚垫到现在还没给"),
    ("insurance", "理赔的手续太麻烦了，跑了好几次", "手续太麻烦了"),
    ("insurance", "续保报价比别家贵，也没人解释", "续保报价比别家贵"),
)
PRAISE: tuple[tuple[str, str], ...] = (
    ("服务挺好的，顾问小刘很耐心", "很耐心"),
    ("挺满意的，车也洗得很干净", "洗得很干净"),
    ("速度很快，比上次快多了，表扬一下", "表扬一下"),
)
NEUTRAL = ("没有了，挺好的", "暂时没有", "就这样吧，没什么", "还行吧", "没什么意见")
SCORE_WORDS = {5: "非常满意", 4: "满意", 3: "一般吧", 2: "不太满意", 1: "非常不满意"}
ROBOT = {
    "hello": "您好，我是{store}的客服，请问是{surname}{title}吗？",
    "identity": "是的，你说",
    "purpose": "感谢您前几天到店保养，想耽误您一分钟做个回访。",
    "score": "您对这次的服务满意吗？可以说非常满意、满意、一般、不满意或非常不满意。",
    "better": "请问您觉得我们还有哪些地方可以做得更好？",
    "nps": "您有多大可能把我们店推荐给朋友？请说零到十分。",
    "bye": "好的，感谢您的宝贵意见，祝您用车愉快，再见。",
}
CAMPAIGN_MIX = ((CampaignType.POST_SERVICE, 0.70, "post_service"), (CampaignType.MAINTENANCE_DUE, 0.10, "maintenance_due"),
                (CampaignType.WINBACK, 0.10, "winback"), (CampaignType.NPS, 0.05, "nps"),
                (CampaignType.INSURANCE_RENEWAL, 0.05, "insurance_renewal"))
DISPOSITIONS = ((CallDisposition.ANSWERED, 0.72), (CallDisposition.NO_ANSWER, 0.14), (CallDisposition.BUSY, 0.07),
                (CallDisposition.UNAVAILABLE, 0.04), (CallDisposition.REJECTED, 0.02), (CallDisposition.FAILED, 0.01))
OUTCOMES = ((CallOutcome.COMPLETED, 0.76), (CallOutcome.PARTIAL, 0.09), (CallOutcome.CALLBACK, 0.05),
            (CallOutcome.HUNG_UP, 0.05), (CallOutcome.WRONG_NUMBER, 0.02), (CallOutcome.ANSWERING_MACHINE, 0.02),
            (CallOutcome.OPT_OUT, 0.01))
SCORES = ((5, 0.46), (4, 0.30), (3, 0.13), (2, 0.07), (1, 0.04))
SIP_CODE = {CallDisposition.ANSWERED: 200, CallDisposition.NO_ANSWER: 487, CallDisposition.BUSY: 486,
            CallDisposition.UNAVAILABLE: 480, CallDisposition.REJECTED: 603, CallDisposition.FAILED: 500}
BATCH = 5000


def _pick(rng: random.Random, table):
    x, acc = rng.random(), 0.0
    for value, p in table:
        acc += p
        if x < acc:
            return value
    return table[-1][0]


@dataclass
class _Store:
    id: int
    name: str
    customers: list[tuple[int, str, str | None, str | None]]  # id, name, gender, phone
    feedback_rate: float


def generate(db, *, calls: int, end: dt.date, months: int = 6, seed: int = 7, tz: str = "Asia/Shanghai",
             recordings: int = 0, data_dir: Path | None = None, progress=None) -> dict:
    """Add ``calls`` revisit calls over the ``months`` months up to ``end`` (inclusive).

    ``recordings``: how many of the newest answered calls get a WAV recording (a stand-in whose
    segments follow the transcript's timing) under ``data_dir/recordings``.

    Raises:
        ValueError: no customers to call (load the demo dealer group first).
    """
    rng = random.Random(seed)
    zone = ZoneInfo(tz)
    stores = _load_stores(db, rng)
    if not stores:
        raise ValueError("no customers: run `callcenter init --demo` (or import customers) first")
    first_month = add_months(end.replace(day=1), -(months - 1))
    campaign_ids = _campaigns(db, stores, first_month, end, zone)
    engine = db.engine
    meta = {"calls": 0, "utterances": 0, "tags": 0, "tickets": 0, "callbacks": 0, "winback_returns": 0}
    with engine.connect() as conn:
        next_call = (conn.execute(sa.select(sa.func.max(Call.id))).scalar() or 0) + 1
        next_task = (conn.execute(sa.select(sa.func.max(CallTask.id))).scalar() or 0) + 1
        next_ticket = (conn.execute(sa.select(sa.func.max(Ticket.id))).scalar() or 0) + 1
    days = (end - first_month).days + 1
    weights = [s.feedback_rate for s in stores]
    now = utcnow()
    buffers: dict[str, list[dict]] = {k: [] for k in ("tasks", "calls", "utts", "tags", "tickets", "events",
                                                       "callbacks", "visits")}
    seen_tasks: set[tuple[int, int]] = set()
    answered_for_recording: list[tuple[int, list[tuple[str, float, float]]]] = []
    # Times drawn first and sorted, so that call ids grow with time as they do when a dialer places them.
    times = []
    for _ in range(calls):
        day = first_month + dt.timedelta(days=rng.randrange(days))
        local = dt.datetime.combine(day, dt.time(rng.choice((9, 10, 11, 14, 15, 16, 17, 18, 19)), rng.randrange(60),
                                                 rng.randrange(60)), tzinfo=zone)
        started = local.astimezone(dt.UTC).replace(tzinfo=None)
        times.append(min(started, now - dt.timedelta(minutes=rng.randrange(1, 600))) if started > now else started)
    times.sort()
    for n, started in enumerate(times):
        store = rng.choices(stores, weights=[len(s.customers) for s in stores])[0]
        cust_id, cust_name, gender, phone = rng.choice(store.customers)
        day = started.replace(tzinfo=dt.UTC).astimezone(zone).date()
        ctype, script = _pick(rng, [((t, s), p) for t, p, s in CAMPAIGN_MIX])
        campaign_id = campaign_ids[(store.id, day.replace(day=1), ctype)]
        if (campaign_id, cust_id) in seen_tasks:
            continue  # one task per customer per campaign, as the dialer keeps it
        seen_tasks.add((campaign_id, cust_id))
        call_id, task_id = next_call, next_task
        next_call += 1
        next_task += 1
        disposition = _pick(rng, DISPOSITIONS)
        record = {
            "id": call_id, "task_id": task_id, "attempt": 1, "campaign_id": campaign_id, "customer_id": cust_id,
            "store_id": store.id, "agent_id": None, "robot": True, "script": script, "phone": phone,
            "worker": f"demo-worker-{rng.randrange(1, 5)}:{1000 + rng.randrange(9000)}", "sip_call_id": None,
            "disposition": disposition.value, "sip_code": SIP_CODE[disposition], "sip_reason": None, "outcome": None,
            "hangup_by": "local", "started_at": started, "ringing_at": started + dt.timedelta(seconds=1),
            "answered_at": None, "ended_at": None, "talk_seconds": None, "recording": None, "score5": None,
            "nps": None, "sentiment": None, "answers": None, "actions": None, "error": None, "notes": None,
            "created_at": started,
        }
        outcome = CallOutcome.NOT_REACHED
        turns: list[tuple[str, str, float, float, str | None]] = []
        tags: list[tuple[str, str, int, str]] = []  # category, evidence, utterance seq, reply
        if disposition is CallDisposition.ANSWERED:
            outcome = _pick(rng, OUTCOMES)
            record["answered_at"] = started + dt.timedelta(seconds=rng.randint(4, 20))
            turns, tags, score, nps = _conversation(rng, ctype, outcome, store, cust_name, gender, weights)
            record["score5"], record["nps"] = score, nps
            negative = bool([t for t in tags if t[0] != "praise"]) or (score is not None and score <= 2)
            record["sentiment"] = "negative" if negative else ("positive" if (score or 0) >= 4 else "neutral")
            talk = turns[-1][3] if turns else 5.0
            record["talk_seconds"] = round(talk, 1)
            record["ended_at"] = record["answered_at"] + dt.timedelta(seconds=talk)
            answered_for_recording.append((call_id, [(t[0], t[2], t[3]) for t in turns]))
        else:
            record["ended_at"] = started + dt.timedelta(seconds=rng.randint(20, 45))
        record["outcome"] = outcome.value
        buffers["calls"].append(record)
        buffers["tasks"].append({
            "id": task_id, "campaign_id": campaign_id, "customer_id": cust_id, "vehicle_id": None, "visit_id": None,
            "store_id": store.id, "phone": phone or "13800000000",
            "state": (TaskState.COMPLETED if outcome is not CallOutcome.NOT_REACHED else TaskState.FAILED).value,
            "attempts": 1, "next_attempt_at": None, "last_disposition": disposition.value, "outcome": outcome.value,
            "context": None, "created_at": started, "updated_at": record["ended_at"], "finished_at": record["ended_at"],
        })
        for seq, (speaker, text, start, stop, intent) in enumerate(turns):
            buffers["utts"].append({"call_id": call_id, "seq": seq, "speaker": speaker, "text": text, "start": start,
                                    "end": stop, "confidence": 0.9 if speaker == "customer" else None,
                                    "intent": intent, "prompt_id": None})
        for category, evidence, seq, reply in tags:
            at = reply.find(evidence)
            buffers["tags"].append({
                "call_id": call_id, "category": category, "department": FeedbackCategory(category).department.value,
                "confidence": round(rng.uniform(0.72, 0.99), 2), "source": "model", "created_at": record["ended_at"],
                "evidence": [{"utterance": seq, "text": evidence, "start": at, "end": at + len(evidence)}],
            })
        complaint = next((t for t in tags if t[0] != "praise"), None)
        if complaint and rng.random() < 0.5:
            _ticket(rng, buffers, next_ticket, call_id, cust_id, store.id, complaint, record["ended_at"], now)
            next_ticket += 1
        if outcome is CallOutcome.CALLBACK:
            due = record["ended_at"] + dt.timedelta(hours=rng.randint(2, 72))
            buffers["callbacks"].append({
                "customer_id": cust_id, "store_id": store.id, "call_id": call_id, "task_id": task_id, "ticket_id": None,
                "due_at": due, "reason": "客户要求稍后再打", "robot": rng.random() < 0.6, "assignee_id": None,
                "status": (CallbackStatus.PENDING if due > now else CallbackStatus.DONE).value, "done_call_id": None,
                "created_at": record["ended_at"], "done_at": None})
        if ctype is CampaignType.WINBACK and outcome in (CallOutcome.COMPLETED, CallOutcome.PARTIAL) and rng.random() < 0.22:
            visit_day = (record["ended_at"] + dt.timedelta(days=rng.randint(7, 110))).date()
            if visit_day < end:
                buffers["visits"].append({
                    "dedup_key": f"demo-winback-{call_id}", "customer_id": cust_id, "vehicle_id": None,
                    "store_id": store.id, "visit_date": visit_day, "visit_type": VisitType.MAINTENANCE.value,
                    "paid": True, "amount": 680, "advisor": None, "ro_number": None, "created_at": now})
        if len(buffers["calls"]) >= BATCH:
            _flush(engine, buffers, meta)
            if progress:
                progress(n + 1, calls)
    _flush(engine, buffers, meta)
    _fix_sequences(engine)
    meta["agent_tasks"] = _agent_work(db, stores, rng, now)
    if recordings and data_dir is not None:
        meta["recordings"] = _recordings(engine, data_dir, answered_for_recording[-recordings:])
    return meta


def _load_stores(db, rng: random.Random) -> list[_Store]:
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, name FROM stores ORDER BY id")).all()
        stores = []
        for i, (sid, name) in enumerate(rows):
            customers = [(c, n, g, p) for c, n, g, p in conn.execute(
                sa.select(Customer.id, Customer.name, Customer.gender, Customer.phone)
                .where(Customer.store_id == sid, Customer.phone.is_not(None)))]
            if customers:
                # Stores differ the way the seeds say they do: one collects opinions, another barely.
                stores.append(_Store(sid, name, [(c, n, g.value if g else None, p) for c, n, g, p in customers],
                                     (0.03, 0.008, 0.02)[i % 3]))
    return stores


def _campaigns(db, stores: list[_Store], first: dt.date, end: dt.date, zone) -> dict:
    ids = {}
    with db.session() as s:
        month = first
        while month <= end:
            for store in stores:
                for ctype, _p, script in CAMPAIGN_MIX:
                    local = dt.datetime.combine(month, dt.time(8), tzinfo=zone)
                    at = local.astimezone(dt.UTC).replace(tzinfo=None)
                    done = add_months(month, 1) <= end
                    c = Campaign(
                        name=f"{month:%Y-%m} {store.name} {script}", type=ctype, script=script, store_id=store.id,
                        status=CampaignStatus.COMPLETED if done else CampaignStatus.RUNNING, as_of=month,
                        params={"demo": True}, max_channels=8, max_attempts=3, robot=True, created_at=at,
                        started_at=at, finished_at=at + dt.timedelta(days=27) if done else None)
                    s.add(c)
                    s.flush()
                    ids[(store.id, month, ctype)] = c.id
            month = add_months(month, 1)
    return ids


def _conversation(rng, ctype, outcome, store: _Store, name: str, gender: str | None, weights):
    title = {"M": "先生", "F": "女士"}.get(gender or "", "")
    t = 0.0
    turns: list[tuple[str, str, float, float, str | None]] = []
    tags: list[tuple[str, str, int, str]] = []

    def say(speaker: str, text: str, intent: str | None = None) -> None:
        nonlocal t
        length = max(1.2, len(text) * (0.23 if speaker == "robot" else 0.28))
        turns.append((speaker, text, round(t, 2), round(t + length, 2), intent))
        t += length + rng.uniform(0.4, 1.2)

    say("robot", ROBOT["hello"].format(store=store.name, surname=name[:1], title=title))
    if outcome is CallOutcome.WRONG_NUMBER:
        say("customer", "打错了，我不是", "wrong_number")
        return turns, tags, None, None
    if outcome is CallOutcome.ANSWERING_MACHINE:
        turns[-1:] = [("customer", "您好，您拨打的用户暂时无法接听，请在提示音后留言", 0.0, 4.0, None)]
        return turns, tags, None, None
    say("customer", rng.choice(("是的，你说", "对，什么事", "嗯，是我")), "affirm")
    if outcome is CallOutcome.CALLBACK:
        say("customer", rng.choice(("我现在在开车，晚点再打吧", "现在不方便，下午三点以后再打")), "busy_callback")
        say("robot", "好的，我们稍后再联系您，再见。")
        return turns, tags, None, None
    if outcome is CallOutcome.OPT_OUT:
        say("customer", "以后别再给我打电话了", "opt_out")
        say("robot", "好的，以后不再打扰您，再见。")
        return turns, tags, None, None
    say("robot", ROBOT["purpose"])
    if outcome is CallOutcome.HUNG_UP:
        say("customer", "没时间", "deny")
        return turns, tags, None, None
    nps = None
    if ctype is CampaignType.NPS:
        say("robot", ROBOT["nps"])
        nps = rng.choices(range(11), weights=(1, 1, 1, 1, 2, 3, 4, 8, 15, 22, 30))[0]
        say("customer", f"{nps}分吧", "affirm")
    say("robot", ROBOT["score"])
    score = _pick(rng, SCORES)
    say("customer", SCORE_WORDS[score], "affirm")
    if outcome is CallOutcome.PARTIAL:
        return turns, tags, score, nps
    say("robot", ROBOT["better"])
    # Unhappy customers complain more; each store collects opinions at its own rate.
    p_feedback = min(0.95, store.feedback_rate * (1.0 if score >= 4 else 6.0))
    if rng.random() < p_feedback:
        category, reply, evidence = rng.choice(FEEDBACK)
        if rng.random() < 0.2:
            other = rng.choice(FEEDBACK)
            if other[0] != category:
                reply2 = reply + "，还有" + other[1]
                say("customer", reply2, "complaint")
                tags.append((category, evidence, len(turns) - 1, reply2))
                tags.append((other[0], other[2], len(turns) - 1, reply2))
            else:
                say("customer", reply, "complaint")
                tags.append((category, evidence, len(turns) - 1, reply))
        else:
            say("customer", reply, "complaint")
            tags.append((category, evidence, len(turns) - 1, reply))
        say("robot", "非常抱歉给您带来不便，我们会反馈给相关部门尽快改进。")
    elif score >= 4 and rng.random() < 0.25:
        reply, evidence = rng.choice(PRAISE)
        say("customer", reply, "affirm")
        tags.append(("praise", evidence, len(turns) - 1, reply))
    else:
        say("customer", rng.choice(NEUTRAL), "deny")
    say("robot", ROBOT["bye"])
    return turns, tags, score, nps


def _ticket(rng, buffers, ticket_id, call_id, customer_id, store_id, complaint, at, now):
    category = complaint[0]
    status = rng.choices(list(TicketStatus), weights=(20, 25, 20, 25, 10))[0]
    due = at + dt.timedelta(days=3)
    buffers["tickets"].append({
        "id": ticket_id, "call_id": call_id, "customer_id": customer_id, "store_id": store_id,
        "department": FeedbackCategory(category).department.value, "category": category, "kind": "complaint",
        "title": f"回访投诉：{complaint[1]}", "description": complaint[3], "status": status.value,
        "priority": rng.choice(("normal", "normal", "high", "low")), "assignee_id": None, "due_at": due,
        "resolution": "已联系客户并处理" if status in (TicketStatus.RESOLVED, TicketStatus.VERIFIED) else None,
        "verify_call_id": None, "created_at": at, "updated_at": at,
        "resolved_at": at + dt.timedelta(days=2) if status in (TicketStatus.RESOLVED, TicketStatus.VERIFIED) else None,
        "verified_at": at + dt.timedelta(days=5) if status is TicketStatus.VERIFIED else None,
    })
    buffers["events"].append({"ticket_id": ticket_id, "user_id": None, "at": at, "action": "created",
                              "note": "回访机器人创建"})


def _flush(engine, buffers: dict[str, list[dict]], meta: dict) -> None:
    order = (("tasks", CallTask), ("calls", Call), ("utts", Utterance), ("tags", CallTag), ("tickets", Ticket),
             ("events", TicketEvent), ("callbacks", Callback), ("visits", ServiceVisit))
    with engine.begin() as conn:
        for key, model in order:
            rows = buffers[key]
            if rows:
                conn.execute(model.__table__.insert(), rows)
    meta["calls"] += len(buffers["calls"])
    meta["utterances"] += len(buffers["utts"])
    meta["tags"] += len(buffers["tags"])
    meta["tickets"] += len(buffers["tickets"])
    meta["callbacks"] += len(buffers["callbacks"])
    meta["winback_returns"] += len(buffers["visits"])
    for rows in buffers.values():
        rows.clear()


def _agent_work(db, stores: list[_Store], rng: random.Random, now: dt.datetime) -> int:
    """Work for the stores' agents: a running preview-call campaign, callbacks due now, and some
    open complaint tickets assigned to them."""
    from callcenter.domain import Role
    from callcenter.storage.models import User

    made = 0
    with db.session() as s:
        for store in stores:
            agents = list(s.scalars(sa.select(User).where(User.role == Role.AGENT, User.store_id == store.id,
                                                          User.active.is_(True))))
            campaign = Campaign(name=f"{store.name} 人工回访（预览外呼）", type=CampaignType.POST_SERVICE,
                                script="post_service", store_id=store.id, status=CampaignStatus.RUNNING,
                                as_of=now.date(), params={"demo": True}, max_channels=4, max_attempts=3, robot=False,
                                created_at=now, started_at=now)
            s.add(campaign)
            s.flush()
            for cust_id, _name, _g, phone in rng.sample(store.customers, min(12, len(store.customers))):
                s.add(CallTask(campaign_id=campaign.id, customer_id=cust_id, store_id=store.id, phone=phone,
                               state=TaskState.PENDING, created_at=now, updated_at=now))
                made += 1
            for cust_id, _name, _g, _phone in rng.sample(store.customers, min(3, len(store.customers))):
                s.add(Callback(customer_id=cust_id, store_id=store.id, due_at=now - dt.timedelta(minutes=rng.randint(5, 90)),
                               reason="客户要求今天回电", robot=False, status=CallbackStatus.PENDING, created_at=now))
                made += 1
            if agents:
                open_tickets = list(s.scalars(sa.select(Ticket).where(
                    Ticket.store_id == store.id, Ticket.status == TicketStatus.OPEN).limit(4)))
                for t in open_tickets:
                    t.assignee_id = rng.choice(agents).id
                    t.status = TicketStatus.ASSIGNED
                    made += 1
    return made


def _fix_sequences(engine) -> None:
    """Rows were inserted with their ids; PostgreSQL's sequences must move past them."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in ("calls", "call_tasks", "tickets"):
            conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"(SELECT coalesce(max(id), 1) FROM {table}))"))


def _recordings(engine, data_dir: Path, calls: list[tuple[int, list[tuple[str, float, float]]]]) -> int:
    """Stereo-free 8 kHz WAVs whose tones follow the transcript (robot low, customer high), so
    that the player and the synchronised transcript can be tried on demo calls."""
    folder = Path(data_dir) / "recordings" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    done = 0
    with engine.begin() as conn:
        for call_id, turns in calls:
            path = folder / f"{call_id}.wav"
            write_tone_wav(path, turns)
            conn.execute(sa.update(Call.__table__).where(Call.__table__.c.id == call_id)
                         .values(recording=str(path.relative_to(data_dir))))
            done += 1
    return done


def write_tone_wav(path: Path, turns: list[tuple[str, float, float]], rate: int = 8000) -> None:
    total = (turns[-1][2] + 1.0) if turns else 2.0
    samples = bytearray()
    freq_by_speaker = {"robot": 330.0, "customer": 520.0, "agent": 440.0}
    for i in range(int(total * rate)):
        t = i / rate
        value = 0.0
        for speaker, start, end in turns:
            if start <= t < end:
                value = 0.25 * math.sin(2 * math.pi * freq_by_speaker.get(speaker, 440.0) * t)
                break
        samples += struct.pack("<h", int(value * 32767))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(samples))
