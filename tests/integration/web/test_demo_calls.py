"""Demo calls: months of plausible revisit work that every page can show."""

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Call, CallTag, Customer, Utterance
from callcenter.storage.search import TranscriptIndex
from web.demo_calls import generate

pytestmark = pytest.mark.integration


def test_generated_calls_are_consistent_and_searchable(console, db, settings, client_for):
    app, world = console
    with db.session() as s:
        for i in range(80):
            s.add(Customer(external_id=f"D{i}", store_id=world.stores["S1" if i % 2 else "S2"], name=f"张{i}",
                           phone=f"1390000{i:04d}"))
    result = generate(db, calls=600, end=dt.date.today(), months=3, seed=3, recordings=2, data_dir=settings.data_dir)
    assert 250 < result["calls"] <= 600 and result["tags"] > 0 and result["recordings"] == 2
    with db.session() as s:
        # Each tag's evidence is a piece of the customer's words in the line it names.
        for tag in s.scalars(sa.select(CallTag).where(CallTag.source == "model").limit(50)):
            ev = tag.evidence[0]
            text = s.scalar(sa.select(Utterance.text).where(Utterance.call_id == tag.call_id,
                                                            Utterance.seq == ev["utterance"]))
            assert text[ev["start"]:ev["end"]] == ev["text"]
        # Ids were given explicitly; new rows still get fresh ones (PostgreSQL sequences moved on).
        call = Call(store_id=world.stores["S1"], started_at=dt.datetime(2026, 1, 1))
        s.add(call)
        s.flush()
        assert call.id > result["calls"]
    assert TranscriptIndex(db.engine).catch_up() >= 200
    page = client_for("sup_all").get("/calls/?q=洗得不干净").get_data(as_text=True)
    assert "洗得不干净" in page
    recorded = client_for("sup_all").get("/calls/?score=").get_data(as_text=True)
    assert recorded.count('<td class="nowrap">') == 25
