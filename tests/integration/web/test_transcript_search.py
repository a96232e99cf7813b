"""Transcript full-text search on SQLite and PostgreSQL (callcenter.storage.search)."""

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Call, Customer, Store, Utterance
from callcenter.storage.search import TranscriptIndex

pytestmark = pytest.mark.integration


def _call(s, store, customer, lines, ended=True):
    call = Call(customer_id=customer.id, store_id=store.id,
                ended_at=dt.datetime(2026, 11, 1, 10, 0) if ended else None)
    s.add(call)
    s.flush()
    for seq, (speaker, text) in enumerate(lines):
        s.add(Utterance(call_id=call.id, seq=seq, speaker=speaker, text=text, start=seq, end=seq + 1))
    return call.id


@pytest.fixture
def calls(db):
    with db.session() as s:
        store = Store(code="S1", name="一店")
        s.add(store)
        s.flush()
        cust = Customer(external_id="C1", store_id=store.id, name="王先生")
        s.add(cust)
        s.flush()
        ids = {
            "wash": _call(s, store, cust, [("robot", "您对洗车满意吗"), ("customer", "车洗得不干净，等了很久")]),
            "happy": _call(s, store, cust, [("robot", "请问您满意吗"), ("customer", "挺满意的")]),
            "price": _call(s, store, cust, [("customer", "不满意，价格太贵了"), ("agent", "我们会反馈给 4S 店")]),
            "running": _call(s, store, cust, [("customer", "价格还行")], ended=False),
        }
    return db, ids


def _search(db, index, query):
    with db.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(index.matching_ids(query)))


def test_catch_up_indexes_ended_calls_once_and_search_finds_substrings(calls):
    db, ids = calls
    index = TranscriptIndex(db.engine)
    assert index.catch_up() == 3
    assert index.catch_up() == 0
    assert _search(db, index, "满意") == sorted([ids["happy"], ids["price"]])
    assert _search(db, index, "不满意") == [ids["price"]]
    assert _search(db, index, "洗得 干净") == [ids["wash"]]
    assert _search(db, index, "4s") == [ids["price"]]  # agent lines are indexed, Latin folded
    assert _search(db, index, "洗车") == []  # robot lines are not: they are the script
    assert _search(db, index, "得干") == []  # no match across a gap: 得不干 is not 得干
    assert _search(db, index, "价格还行") == []  # the call has not ended


def test_a_call_that_ends_later_is_picked_up_and_reindexing_replaces(calls):
    db, ids = calls
    index = TranscriptIndex(db.engine)
    index.catch_up()
    with db.session() as s:
        s.get(Call, ids["running"]).ended_at = dt.datetime(2026, 11, 1, 10, 5)
    assert index.catch_up() == 1
    assert _search(db, index, "价格还行") == [ids["running"]]
    with db.session() as s:
        s.execute(sa.update(Utterance).where(Utterance.call_id == ids["running"]).values(text="服务很好"))
    with db.engine.begin() as conn:
        index.index_calls(conn, [ids["running"]])
    assert _search(db, index, "价格还行") == []
    assert _search(db, index, "服务很好") == [ids["running"]]
    assert index.rebuild() == 4
    assert _search(db, index, "服务很好") == [ids["running"]]
