"""Server-Sent Events relayed from Redis pub/sub (channels in :mod:`callcenter.storage.live`).

- ``/live/calls``: every call's state changes in the user's store scope (wallboard, campaign
  progress), supervisors.
- ``/live/calls/<id>``: one call's transcript lines and states (the agent's live transcript, a
  supervisor listening in). It starts with the lines already said.
- ``/live/agent``: state changes of calls handed to the current agent.

Each stream runs on one gunicorn worker thread for at most :data:`STREAM_SECONDS`; the browser's
EventSource then reconnects by itself, so a thread is never held forever by a tab left open and
the worker's threads bound the number of live views. The database session is released before
the stream starts. Runs on the request's worker thread.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from flask import Blueprint, Response, abort

from callcenter.domain import Role
from callcenter.storage import live as events
from callcenter.storage.models import Call
from web.security import current_user, ensure_in_scope, oversees, require, scoped_store_id
from web.services import REDIS_ERRORS, db, redis

logger = logging.getLogger(__name__)
bp = Blueprint("live", __name__, url_prefix="/live")

# Five minutes per stream, then the browser reconnects (EventSource retry 3 s).
STREAM_SECONDS = 300
# A comment line every 15 s keeps proxies from closing an idle stream and lets the server notice
# a closed tab (a write to a closed socket fails).
KEEPALIVE_SECONDS = 15


def format_event(event: events.Event) -> str:
    return f"event: {event.type}\ndata: {events.encode(event)}\n\n"


def stream(channels: list[str], keep: Callable[[events.Event], bool],
           first: Iterable[events.Event] = (), *, seconds: float = STREAM_SECONDS) -> Response:
    """An SSE response relaying ``channels`` (events that pass ``keep``), after ``first``."""
    try:
        pubsub = redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(*channels)
    except REDIS_ERRORS as exc:  # Redis down: the browser retries in a few seconds
        logger.warning("live stream unavailable: %s", exc)
        abort(503, description="live events are unavailable (Redis)")
    first = list(first)

    def generate() -> Iterator[str]:
        try:
            yield "retry: 3000\n\n"
            for event in first:
                yield format_event(event)
            deadline = time.monotonic() + seconds
            last_write = time.monotonic()
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    try:
                        event = events.decode(message["data"])
                    except ValueError as exc:
                        logger.warning("dropped a malformed live event: %s", exc)
                        continue
                    if keep(event):
                        yield format_event(event)
                        last_write = time.monotonic()
                if time.monotonic() - last_write > KEEPALIVE_SECONDS:
                    yield ": keepalive\n\n"
                    last_write = time.monotonic()
            yield "event: reconnect\ndata: {}\n\n"
        except (*REDIS_ERRORS, ValueError) as exc:
            logger.warning("live stream ended: %s", exc)
            yield f"event: error\ndata: {json.dumps({'message': 'live events interrupted'})}\n\n"
        finally:
            pubsub.close()

    # The request's database session is not needed while streaming: release its connection now.
    db().close()
    response = Response(generate(), mimetype="text/event-stream")
    # Also when the stream never starts (client gone at once): the subscription is released.
    response.call_on_close(pubsub.close)
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
    return response


def _scope_filter() -> Callable[[events.Event], bool]:
    store = scoped_store_id()

    def keep(event: events.Event) -> bool:
        return store is None or getattr(event, "store_id", None) == store

    return keep


@bp.get("/calls")
@require(Role.SUPERVISOR, managers=True)
def calls_stream():
    keep = _scope_filter()
    try:
        snapshot = [e for e in events.active_calls(redis()) if keep(e)]
    except REDIS_ERRORS as exc:
        logger.warning("live snapshot unavailable: %s", exc)
        abort(503, description="live events are unavailable (Redis)")
    return stream([events.CALLS_CHANNEL], keep, snapshot)


@bp.get("/calls/<int:call_id>")
@require(Role.AGENT, managers=True)
def call_stream(call_id: int):
    call = db().get(Call, call_id)
    if call is None:
        abort(404)
    ensure_in_scope(call.store_id)
    if not oversees() and call.agent_id != current_user().id:
        abort(404)
    try:
        first = events.recent_lines(redis(), call_id)
    except REDIS_ERRORS as exc:
        logger.warning("call %s: live transcript unavailable: %s", call_id, exc)
        abort(503, description="live events are unavailable (Redis)")
    return stream([events.call_channel(call_id)], lambda e: getattr(e, "call_id", None) == call_id, first)


@bp.get("/agent")
@require(Role.AGENT)
def agent_stream():
    me = current_user().id
    store = scoped_store_id()

    def keep(event: events.Event) -> bool:
        return (isinstance(event, events.CallStateEvent) and event.agent_id == me
                and (store is None or event.store_id == store))

    return stream([events.CALLS_CHANNEL], keep)
