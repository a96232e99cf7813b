"""The call-level evaluation's scoring (campaigns/personas/scoring.py): one call judged against its
persona's expectations, totals over calls, and what a recorded call concluded (SQLite)."""

from __future__ import annotations

import pytest

from campaigns.personas.scoring import Concluded, Expected, concluded, judge, summarize


def test_expectations_drop_praise_and_allow_the_departments_of_allowed_categories():
    e = Expected.from_expect({"outcome": "completed", "score5": 4, "categories": ["praise", "price"],
                              "allowed": ["sales_process", "praise"], "tickets": ["after_sales"]})
    assert e.categories == {"price"} and e.allowed == {"sales_process"}
    assert e.tickets_allowed == {"sales"} and e.complaint and not e.callback and not e.dnc
    assert Expected.from_expect({"outcome": "opt_out"}).dnc
    assert Expected.from_expect({"outcome": "callback"}).callback
    assert not Expected.from_expect({"outcome": "completed", "categories": ["praise"]}).complaint
    with pytest.raises(ValueError, match="unknown categories waiting"):
        Expected.from_expect({"outcome": "completed", "categories": ["waiting"]})


def test_a_call_concluded_as_expected_is_right_on_every_check():
    e = Expected.from_expect({"outcome": "completed", "score5": 2, "categories": ["parts_wait", "service_attitude"],
                              "tickets": ["after_sales"]})
    j = judge(e, Concluded("completed", 2, frozenset({"parts_wait", "service_attitude", "praise"}),
                           {"after_sales": 1}))
    assert j.ok and j.tags_true == ("parts_wait", "service_attitude")


def test_wrong_tags_false_missed_and_duplicate_tickets_are_named():
    e = Expected.from_expect({"outcome": "completed", "score5": 5, "categories": ["sales_process"],
                              "allowed": ["price"], "tickets": ["sales"]})
    got = Concluded("completed", 4, frozenset({"price", "insurance", "service_attitude"}),
                    {"after_sales": 1, "insurance": 2})
    j = judge(e, got)
    assert not j.score_ok and j.outcome_ok
    assert j.tags_false == ("insurance", "service_attitude")  # price is allowed
    assert j.tags_missed == ("sales_process",)
    assert j.tickets_false == ("insurance", "insurance")  # after_sales: the department of an allowed category
    assert j.tickets_missed == ("sales",) and j.tickets_duplicate == 1
    assert not j.ok and not j.tags_ok and not j.tickets_ok


def test_an_opt_out_off_the_do_not_call_list_is_wrong_even_if_expected_so():
    e = Expected.from_expect({"outcome": "opt_out", "dnc": True})
    assert not judge(e, Concluded("opt_out", dnc=False)).dnc_ok
    assert judge(e, Concluded("opt_out", dnc=True)).ok
    # A robot that put a satisfied customer on the list is wrong too.
    assert not judge(Expected.from_expect({"outcome": "completed"}), Concluded("completed", dnc=True)).dnc_ok


def test_summary_figures():
    rows = [
        ({"outcome": "completed", "score5": 5}, Concluded("completed", 5, tickets={"after_sales": 1})),
        ({"outcome": "completed", "score5": 3, "categories": ["wait_time"], "tickets": ["after_sales"]},
         Concluded("completed", 3, frozenset({"wait_time", "service_attitude"}), {"after_sales": 2})),
        ({"outcome": "completed", "score5": 2, "categories": ["price"], "tickets": ["after_sales"]},
         Concluded("partial", None)),
        ({"outcome": "opt_out"}, Concluded("opt_out", dnc=True)),
        ({"outcome": "transferred"}, Concluded("partial")),
        ({"outcome": "callback"}, Concluded("callback", callback=True)),
        ({"outcome": "refused"}, Concluded("opt_out", dnc=True)),
    ]
    pairs = []
    for expect, got in rows:
        e = Expected.from_expect(expect)
        pairs.append((e, got, judge(e, got)))
    s = summarize(pairs)
    assert s["calls"] == 7 and s["outcome_accuracy"] == round(4 / 7, 3)
    assert s["score_accuracy"] == round(2 / 3, 3) and s["scores_expected"] == 3 and s["scores_invented"] == 0
    assert s["tags"] == {"true": 1, "false": 1, "missed": 1, "precision": 0.5, "recall": 0.5, "calls_exact": 5}
    t = s["tickets"]
    assert (t["false"], t["on_satisfied_calls"], t["duplicates"], t["missed"]) == (1, 1, 1, 1)
    assert (t["complaint_calls"], t["complaint_calls_missing_a_ticket"]) == (2, 1)
    assert s["opt_out"] == {"n": 1, "of": 1, "recall": 1.0, "precision": 0.5, "flagged": 2}
    assert s["transfer"]["recall"] == 0.0 and s["callback"]["recall"] == 1.0
    assert s["opt_outs_on_dnc_list"] == {"n": 2, "of": 2}


def _database_with_a_customer(path, phone: str):
    """A fresh SQLite schema with one store and one customer: (db, store id, customer id)."""
    from callcenter.storage import Database, upgrade_database
    from callcenter.storage.models import Customer, Store

    db = Database(f"sqlite:///{path}")
    upgrade_database(db)
    with db.session() as s:
        store = Store(code="T1", name="测试店")
        s.add(store)
        s.flush()
        cust = Customer(external_id="T1-1", store_id=store.id, name="王", phone=phone)
        s.add(cust)
        s.flush()
        return db, store.id, cust.id


def test_concluded_reads_what_the_robot_recorded(tmp_path):
    from callcenter.storage.models import Call, Callback, CallOutcome, CallTag, DoNotCall, Ticket, utcnow

    db, store_id, cust_id = _database_with_a_customer(tmp_path / "c.db", "13900000001")
    try:
        with db.session() as s:
            a = Call(customer_id=cust_id, store_id=store_id, phone="13900000001", outcome=CallOutcome.COMPLETED,
                     score5=2, ended_at=utcnow())
            b = Call(customer_id=cust_id, store_id=store_id, phone="13900000002", outcome=CallOutcome.OPT_OUT)
            s.add_all([a, b])
            s.flush()
            s.add_all([CallTag(call_id=a.id, category="price", department="after_sales"),
                       CallTag(call_id=a.id, category="praise", department="crm")])
            for _ in range(2):
                s.add(Ticket(call_id=a.id, customer_id=cust_id, store_id=store_id, department="after_sales",
                             title="客户反馈：价格/收费", due_at=utcnow()))
            s.add(Callback(customer_id=cust_id, store_id=store_id, call_id=a.id, due_at=utcnow()))
            s.add(DoNotCall(phone="13900000002", reason="客户要求不再来电", source="robot", call_id=b.id))
            ids = (a.id, b.id)
        with db.session() as s:
            got = concluded(s, [*ids, 999])
    finally:
        db.dispose()
    assert set(got) == set(ids)
    first, second = got[ids[0]], got[ids[1]]
    assert (first.outcome, first.score5, first.categories) == ("completed", 2, {"price", "praise"})
    assert first.tickets == {"after_sales": 2} and first.callback and not first.dnc
    assert second.outcome == "opt_out" and second.dnc and not second.callback and second.tickets == {}


def test_the_demo_reports_tag_and_ticket_correctness_from_the_shipped_personas(tmp_path):
    from callcenter.storage.models import Call, CallOutcome, CallTag, Ticket, utcnow
    from campaigns.demo_run import _expectations, _judge_calls

    db, store_id, cust_id = _database_with_a_customer(tmp_path / "d.db", "13900000002")
    try:
        with db.session() as s:
            calls = []
            for phone in ("13900000002", "13900000001"):  # complains_wait, satisfied
                call = Call(customer_id=cust_id, store_id=store_id, phone=phone, outcome=CallOutcome.COMPLETED)
                s.add(call)
                s.flush()
                calls.append((call.id, phone))
            s.add(CallTag(call_id=calls[0][0], category="wait_time", department="after_sales"))
            s.add(CallTag(call_id=calls[1][0], category="service_attitude", department="after_sales"))
            s.add(Ticket(call_id=calls[1][0], customer_id=cust_id, store_id=store_id, department="after_sales",
                         title="客户反馈：服务态度", due_at=utcnow()))
        judged = _judge_calls(db, calls, _expectations())
    finally:
        db.dispose()
    assert (judged["calls"], judged["tags_exact"], judged["tickets_exact"]) == (2, 1, 0)
    assert judged["tickets"]["missed"] == 1 and judged["tickets"]["on_satisfied_calls"] == 1
    assert judged["tags"]["false"] == 1 and judged["tags"]["recall"] == 1.0


def test_a_hand_over_nobody_could_take_counts_as_the_transfer_asked_for():
    e = Expected.from_expect({"outcome": "transferred"})
    j = judge(e, Concluded("transfer_failed", callback=True))  # the agent's callback comes with it
    assert j.ok
    assert not judge(Expected.from_expect({"outcome": "completed"}), Concluded("transfer_failed", callback=True)).ok
    s = summarize([(e, Concluded("transfer_failed", callback=True), j)])
    assert s["transfer"]["recall"] == 1.0 and s["callback"]["flagged"] == 0
