"""Campaigns from the console: a dry run, a draft with its audience, start and pause, progress."""

import datetime as dt

import pytest
import sqlalchemy as sa

from callcenter.domain import VisitType
from callcenter.storage.models import Campaign, CampaignStatus, CallTask, Customer, ServiceVisit
from callcenter.storage.web_models import AuditLog

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def dialer_online(redis_client):
    """A dialer worker beating, as `callcenter worker` does (starting asks for confirmation without one)."""
    from callcenter.storage import live

    live.publish_heartbeat(redis_client, live.WorkerHeartbeat(worker="test-host:1", active_calls=0, capacity=4))
    yield
    live.remove_worker(redis_client, "test-host:1")


@pytest.fixture
def visit_two_days_ago(console, db, settings):
    app, world = console
    with db.session() as s:
        # A customer nobody called yet (the world's customers had a robot call today: frequency cap).
        new = Customer(external_id="C-NEW", store_id=world.stores["S1"], name="新客户", phone="13600000001")
        s.add(new)
        s.flush()
        world.customers["new"] = new.id
        s.add(ServiceVisit(dedup_key="recent", customer_id=new.id, store_id=world.stores["S1"],
                           visit_date=dt.date.today() - dt.timedelta(days=2), visit_type=VisitType.MAINTENANCE,
                           paid=True))
    scripts = settings.data_dir / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "post_service.yaml").write_text("id: post_service\n", encoding="utf-8")
    return world


def test_dry_run_then_draft_then_start_and_pause(console, visit_two_days_ago, client_for, csrf, db):
    world = visit_two_days_ago
    client = client_for("sup_s1")
    form = {"type": "post_service", "as_of": dt.date.today().isoformat(), "max_channels": "4", "csrf_token": csrf}
    dry = client.post("/campaigns/new", data={**form, "dry_run": "1"}).get_data(as_text=True)
    assert "待呼叫客户" in dry and "<strong>1</strong>" in dry
    with db.session() as s:
        before = s.scalar(sa.select(sa.func.count()).select_from(Campaign))
    created = client.post("/campaigns/new", data={**form, "name": "十一月售后回访"})
    assert created.status_code == 302
    with db.session() as s:
        campaign = s.scalar(sa.select(Campaign).where(Campaign.name == "十一月售后回访"))
        assert s.scalar(sa.select(sa.func.count()).select_from(Campaign)) == before + 1
        assert campaign.status is CampaignStatus.DRAFT and campaign.store_id == world.stores["S1"]
        assert s.scalar(sa.select(CallTask.customer_id).where(CallTask.campaign_id == campaign.id)) == \
            world.customers["new"]
    page = client.get(created.headers["Location"]).get_data(as_text=True)
    assert "新客户" in page and 'data-testid="campaign-start"' in page
    client.post(f"/campaigns/{campaign.id}/state", data={"action": "start", "csrf_token": csrf})
    client.post(f"/campaigns/{campaign.id}/state", data={"action": "pause", "csrf_token": csrf})
    progress = client.get(f"/campaigns/{campaign.id}/progress.json").json
    assert progress["status"] == "paused" and progress["tasks"]["pending"] == 1
    with db.session() as s:
        actions = [a.details.get("status") for a in s.scalars(sa.select(AuditLog).where(
            AuditLog.action == "campaign.state").order_by(AuditLog.id))]
    assert actions == ["running", "paused"]


def test_a_bad_request_says_why_and_stores_nothing(console, visit_two_days_ago, client_for, csrf, db):
    client = client_for("sup_s1")
    with db.session() as s:
        before = s.scalar(sa.select(sa.func.count()).select_from(Campaign))
    for data, why in (({"type": "post_service", "p_post_service_window_first": "三天"}, "0 到 30 之间的整数"),
                      ({"type": "post_service", "p_post_service_window_first": "5",
                        "p_post_service_window_last": "2"}, ""),
                      ({"type": "custom"}, "自定义活动必须选择话术"),
                      ({"type": "winback", "as_of": "2001-01-01"}, "")):
        response = client.post("/campaigns/new", data={**data, "csrf_token": csrf})
        assert response.status_code == 400 and why in response.get_data(as_text=True)
    with db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Campaign)) == before


def test_a_finished_campaign_cannot_be_restarted(console, client_for, csrf, db):
    app, world = console
    with db.session() as s:
        s.get(Campaign, world.campaigns["S1"]).status = CampaignStatus.CANCELLED
    page = client_for("sup_s1").post(f"/campaigns/{world.campaigns['S1']}/state",
                                     data={"action": "start", "csrf_token": csrf}, follow_redirects=True)
    assert "活动已取消：现在不能执行此操作" in page.get_data(as_text=True)


def test_without_a_dialer_worker_starting_warns_and_asks_first(console, client_for, csrf, db, redis_client):
    """No worker online: the campaign page and the wallboard say so, and starting needs a confirmation."""
    from callcenter.storage import live

    app, world = console
    live.remove_worker(redis_client, "test-host:1")
    live.publish_heartbeat(redis_client, live.WorkerHeartbeat(worker="dead:2", active_calls=0, capacity=4,
                                                              at=0.0))  # silent for long: dead
    cid = world.campaigns["S1"]
    with db.session() as s:
        s.get(Campaign, cid).status = CampaignStatus.DRAFT
    client = client_for("sup_s1")
    page = client.get(f"/campaigns/{cid}").get_data(as_text=True)
    assert "没有在线的外呼进程" in page and 'name="without_worker" value="1"' in page and "仍然启动吗" in page
    assert "没有在线的外呼进程" in client.get("/campaigns/wallboard").get_data(as_text=True)
    assert "没有在线的外呼进程" in client.get("/campaigns/").get_data(as_text=True)
    refused = client.post(f"/campaigns/{cid}/state", data={"action": "start", "csrf_token": csrf},
                          follow_redirects=True).get_data(as_text=True)
    assert "没有在线的外呼进程" in refused
    with db.session() as s:
        assert s.get(Campaign, cid).status is CampaignStatus.DRAFT
    client.post(f"/campaigns/{cid}/state", data={"action": "start", "without_worker": "1", "csrf_token": csrf})
    with db.session() as s:
        assert s.get(Campaign, cid).status is CampaignStatus.RUNNING
    # A worker comes online: no warning, no question.
    live.publish_heartbeat(redis_client, live.WorkerHeartbeat(worker="test-host:1", active_calls=0, capacity=4))
    page = client.get(f"/campaigns/{cid}").get_data(as_text=True)
    assert "没有在线的外呼进程" not in page
    assert 'id="wb-no-worker" data-testid="no-worker" hidden' in client.get("/campaigns/wallboard").get_data(as_text=True)
    live.remove_worker(redis_client, "dead:2")
