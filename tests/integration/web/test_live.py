"""Server-Sent Events relayed from Redis pub/sub, in the user's scope."""

import datetime as dt
import json

import pytest

from callcenter.storage import live

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _events(response):
    """Yield (event, data) from an SSE response as chunks arrive."""
    for chunk in response.response:
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        if text.startswith("event:"):
            head, data = text.strip().split("\n", 1)
            yield head.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def test_a_call_stream_starts_with_what_was_said_and_relays_new_lines(console, client_for, redis_client):
    app, world = console
    call_id = world.calls["S1"]
    live.publish_transcript(redis_client, live.TranscriptLine(call_id, 0, "robot", "您好", True, 0.0, 1.0))
    response = client_for("sup_s1").get(f"/live/calls/{call_id}", buffered=False)
    assert response.mimetype == "text/event-stream" and response.headers["Cache-Control"].startswith("no-cache")
    events = _events(response)
    kind, first = next(events)
    assert kind == "transcript" and first["text"] == "您好" and first["is_final"]
    live.publish_transcript(redis_client, live.TranscriptLine(call_id, 1, "customer", "<b>挺满意的</b>", False, 1.5, 2.0))
    live.publish_call_state(redis_client, live.CallStateEvent(call_id, live.LiveCallState.ENDED,
                                                              store_id=world.stores["S1"], outcome="completed"))
    kind, line = next(events)
    assert kind == "transcript" and (line["seq"], line["speaker"], line["text"], line["is_final"]) == (
        1, "customer", "<b>挺满意的</b>", False)  # data stays data: the page writes it with textContent
    kind, state = next(events)
    assert kind == "call_state" and state["state"] == "ended"
    response.close()


def test_the_calls_stream_shows_active_calls_then_only_the_users_store(console, client_for, redis_client):
    app, world = console
    s1, s2 = world.stores["S1"], world.stores["S2"]
    live.publish_call_state(redis_client, live.CallStateEvent(101, live.LiveCallState.ANSWERED, store_id=s1))
    live.publish_call_state(redis_client, live.CallStateEvent(202, live.LiveCallState.ANSWERED, store_id=s2))
    response = client_for("sup_s1").get("/live/calls", buffered=False)
    events = _events(response)
    assert next(events)[1]["call_id"] == 101  # the snapshot: S1's active call only
    live.publish_call_state(redis_client, live.CallStateEvent(203, live.LiveCallState.RINGING, store_id=s2))
    live.publish_call_state(redis_client, live.CallStateEvent(102, live.LiveCallState.RINGING, store_id=s1))
    assert next(events)[1]["call_id"] == 102
    response.close()


def test_an_agent_is_told_about_calls_handed_to_them_only(console, client_for, redis_client):
    app, world = console
    response = client_for("agent_s1").get("/live/agent", buffered=False)
    events = _events(response)
    live.publish_call_state(redis_client, live.CallStateEvent(7, live.LiveCallState.BRIDGED, store_id=world.stores["S1"],
                                                              agent_id=world.users["sup_s1"]))
    live.publish_call_state(redis_client, live.CallStateEvent(8, live.LiveCallState.BRIDGED, store_id=world.stores["S1"],
                                                              agent_id=world.users["agent_s1"]))
    assert next(events)[1]["call_id"] == 8
    response.close()


def test_malformed_events_are_skipped(console, client_for, redis_client):
    app, world = console
    call_id = world.calls["S1"]
    response = client_for("sup_s1").get(f"/live/calls/{call_id}", buffered=False)
    events = _events(response)
    redis_client.publish(live.call_channel(call_id), b"{not json")
    live.publish_transcript(redis_client, live.TranscriptLine(call_id, 3, "customer", "好的", True, 3.0, 4.0))
    assert next(events)[1]["text"] == "好的"
    response.close()


def test_the_wallboard_counts_active_calls_and_workers_from_redis(console, client_for, redis_client, db,
                                                                  monkeypatch):
    app, world = console
    # "Today" is the store's day (Asia/Shanghai), not the machine's: pin the clock to the moment the
    # fixture's call ended, so the test does not depend on the hour it runs at.
    import web.campaigns
    from callcenter.storage.models import Call

    with db.session() as s:
        ended = s.get(Call, world.calls["S1"]).ended_at
    monkeypatch.setattr(web.campaigns, "utcnow", lambda: ended + dt.timedelta(seconds=1))
    live.publish_call_state(redis_client, live.CallStateEvent(world.calls["S1"], live.LiveCallState.ANSWERED,
                                                              store_id=world.stores["S1"],
                                                              customer_id=world.customers["S1"]))
    live.publish_heartbeat(redis_client, live.WorkerHeartbeat("host-a:100", active_calls=3, capacity=4))
    board = client_for("sup_s1").get("/campaigns/wallboard.json").json
    assert board["live"] is True
    assert [(a["call_id"], a["customer"], a["state_label"]) for a in board["active"]] == [
        (world.calls["S1"], "王S1", "通话中")]
    assert board["workers"][0]["worker"] == "host-a:100" and board["workers"][0]["alive"] and board["capacity"] == 4
    assert board["today_completed"] >= 1
