"""Supervisors' calls: search, the call page, recordings through the authorized route only,
tag corrections kept for retraining, QA scoring."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from callcenter.storage.models import Call, CallTag, Utterance, utcnow
from callcenter.storage.web_models import AuditLog, QaForm, QaReview, TagCorrection
from web.corrections import corrected_examples

pytestmark = pytest.mark.integration


def _rows(page: str) -> int:
    return page.count('<td class="nowrap"><a href="/calls/')


def test_full_text_search_finds_what_customers_said_in_scope(console, client_for):
    app, world = console
    client = client_for("sup_s1")
    page = client.get("/calls/?q=洗得不干净").get_data(as_text=True)
    assert _rows(page) == 1 and f'/calls/{world.calls["S1"]}' in page
    assert "车洗得不干净" in page  # the matching line is quoted in the list
    assert _rows(client.get("/calls/?q=您对这次服务").get_data(as_text=True)) == 0  # robot lines are not searched
    group = client_for("sup_all").get("/calls/?q=等了很久").get_data(as_text=True)
    assert _rows(group) == 2


def test_a_one_character_search_says_why_instead_of_scanning(console, client_for):
    page = client_for("sup_s1").get("/calls/?q=洗").get_data(as_text=True)
    assert "请至少输入两个连续的汉字" in page


def test_filters_combine(console, client_for, db):
    app, world = console
    client = client_for("sup_all")
    assert _rows(client.get("/calls/?category=car_wash&sentiment=negative&score=low").get_data(as_text=True)) == 2
    assert _rows(client.get("/calls/?category=wait_time").get_data(as_text=True)) == 0
    assert _rows(client.get(f"/calls/?store={world.stores['S2']}&outcome=completed").get_data(as_text=True)) == 1
    from web.services import settings

    with db.session() as s:
        started = s.get(Call, world.calls["S1"]).started_at
    with app.app_context():
        zone = ZoneInfo(settings().timezone)
    # the day the calls were made, in the store's time zone (Asia/Shanghai), not the machine's: the
    # fixture's calls are two hours old, so between 00:00 and 02:00 there that is yesterday
    day = (started if started.tzinfo else started.replace(tzinfo=dt.UTC)).astimezone(zone).date().isoformat()
    assert _rows(client.get(f"/calls/?from={day}&to={day}&disposition=answered").get_data(as_text=True)) == 2
    assert _rows(client.get("/calls/?from=2001-01-01&to=2001-01-31").get_data(as_text=True)) == 0


def test_the_transcript_is_escaped_and_the_evidence_highlighted(console, client_for):
    app, world = console
    page = client_for("sup_s1").get(f"/calls/{world.calls['S1']}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<mark class="evidence" title="洗车/清洁">车洗得不干净</mark>' in page
    assert 'data-start="3.0"' in page


def test_recordings_play_through_the_route_once_audited_per_playback(console, client_for, db):
    app, world = console
    client = client_for("sup_s1")
    url = f"/calls/{world.calls['S1']}/recording"
    full = client.get(url)
    assert full.status_code == 200 and full.mimetype == "audio/wav" and full.data[:4] == b"RIFF"
    part = client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and len(part.data) == 1000
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.action == "recording.play")) == 1


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "recordings/missing.wav", "callcenter.db"])
def test_a_recording_path_outside_the_data_dir_or_not_audio_is_never_served(console, client_for, db, path):
    app, world = console
    with db.session() as s:
        s.get(Call, world.calls["S1"]).recording = path
    assert client_for("sup_s1").get(f"/calls/{world.calls['S1']}/recording").status_code == 404


def test_tag_corrections_change_the_tags_and_are_kept_for_training(console, client_for, csrf, db):
    app, world = console
    client = client_for("sup_s1")
    url = f"/calls/{world.calls['S1']}/tags"
    client.post(url, data={"action": "add", "category": "wait_time", "evidence": "等了很久", "csrf_token": csrf})
    client.post(url, data={"action": "remove", "category": "car_wash", "csrf_token": csrf})
    assert client.post(url, data={"action": "remove", "category": "price", "csrf_token": csrf}).status_code == 400
    assert client.post(url, data={"action": "add", "category": "nonsense", "csrf_token": csrf}).status_code == 400
    with db.session() as s:
        tags = {t.category: t for t in s.scalars(sa.select(CallTag).where(CallTag.call_id == world.calls["S1"]))}
        assert set(tags) == {"wait_time"}
        assert tags["wait_time"].source == "supervisor" and tags["wait_time"].department == "after_sales"
        assert tags["wait_time"].evidence == [{"utterance": 1, "text": "等了很久", "start": 11, "end": 15}]
        corrections = list(s.scalars(sa.select(TagCorrection).order_by(TagCorrection.id)))
        assert [(c.action, c.category.value) for c in corrections] == [("add", "wait_time"), ("remove", "car_wash")]
        assert corrections[1].model_confidence == 0.9
        examples = corrected_examples(s)
    assert examples == [{"text": "不满意，车洗得不干净，等了很久。<script>alert(1)</script> 没了",
                         "categories": ["wait_time"], "sentiment": "negative", "call_id": world.calls["S1"],
                         "source": "correction"}]


def test_qa_scores_are_checked_and_one_review_per_reviewer_is_kept(console, client_for, csrf, db):
    app, world = console
    client = client_for("sup_s1")
    page = client.get(f"/calls/{world.calls['S1']}").get_data(as_text=True)
    assert "开场白与身份确认" in page  # the standard form is created on first use
    with db.session() as s:
        form = s.scalar(sa.select(QaForm))
        items = form.items
    scores = {f"score_{item['key']}": str(item["max"]) for item in items}
    url = f"/calls/{world.calls['S1']}/qa"
    bad = client.post(url, data={**scores, f"score_{items[0]['key']}": "99", "form_id": form.id, "csrf_token": csrf})
    assert bad.status_code == 400
    client.post(url, data={**scores, "form_id": form.id, "comment": "规范", "csrf_token": csrf})
    client.post(url, data={**scores, f"score_{items[0]['key']}": "0", "form_id": form.id, "csrf_token": csrf})
    with db.session() as s:
        reviews = list(s.scalars(sa.select(QaReview)))
        assert len(reviews) == 1
        assert reviews[0].total == 100 - items[0]["max"] and reviews[0].max_total == 100


def test_the_search_index_catches_up_with_calls_that_end_later(console, client_for, db):
    app, world = console
    client = client_for("sup_s1")
    assert _rows(client.get("/calls/?q=价格太贵").get_data(as_text=True)) == 0
    with db.session() as s:
        call = Call(customer_id=world.customers["S1"], store_id=world.stores["S1"], started_at=utcnow(),
                    ended_at=utcnow(), disposition="answered")
        s.add(call)
        s.flush()
        s.add(Utterance(call_id=call.id, seq=0, speaker="customer", text="价格太贵了", start=0, end=1))
    # Searches within CATCH_UP_EVERY seconds of the last catch-up do not look for new calls.
    assert _rows(client.get("/calls/?q=价格太贵").get_data(as_text=True)) == 0
    app.extensions["callcenter"]._search_checked_at -= 60
    assert _rows(client.get("/calls/?q=价格太贵").get_data(as_text=True)) == 1
