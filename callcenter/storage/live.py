"""Live events on Redis: what the dialer publishes and the console's Server-Sent Events relay.

Redis carries these events only; the database stays the record (a call's transcript is stored
in ``utterances`` when the call ends). Everything here takes an explicit Redis client and runs
on the caller's thread: the dialer's worker publishes, the console's SSE threads subscribe.

Channels (pub/sub) and keys, all named here and nowhere else:

``cc:live:calls``
    Every call's state changes (:class:`CallStateEvent`): the wallboard and the agents'
    workspaces listen here.
``cc:live:call:<call_id>``
    One call's state changes and transcript lines (:class:`TranscriptLine`): the call page
    and the agent's live transcript listen here.
``cc:live:call:<call_id>:lines`` (list)
    The final transcript lines of a call in progress, so that a page opened mid-call (or an
    SSE stream that reconnects) shows what was already said. Expires an hour after the last line.
``cc:live:active`` (hash call id -> CallStateEvent JSON)
    Calls in progress now; an entry goes when its call ends.
``cc:live:workers`` (hash worker id -> WorkerHeartbeat JSON)
    Dialer workers' heartbeats; an entry older than :data:`WORKER_STALE_SECONDS` is a dead worker.

Payloads are JSON objects with a ``type`` field (``call_state``, ``transcript``, ``worker``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from dataclasses import dataclass
from typing import Any

PREFIX = "cc:live:"
CALLS_CHANNEL = PREFIX + "calls"
ACTIVE_CALLS_KEY = PREFIX + "active"
WORKERS_KEY = PREFIX + "workers"
# A worker beats every few seconds; three missed beats at 5 s make it dead on the wallboard.
WORKER_STALE_SECONDS = 15
# Transcript lines of a call in progress kept for late joiners: 1 hour after the last line,
# at most 500 lines (a 30-minute call has about 300).
LINES_TTL_SECONDS = 3600
LINES_MAX = 500


def call_channel(call_id: int) -> str:
    return f"{PREFIX}call:{int(call_id)}"


def call_lines_key(call_id: int) -> str:
    return f"{PREFIX}call:{int(call_id)}:lines"


class LiveCallState(str, enum.Enum):
    DIALING = "dialing"  # INVITE sent
    RINGING = "ringing"
    ANSWERED = "answered"  # the robot (or an agent) is talking with the customer
    BRIDGED = "bridged"  # handed to an agent (agent_id says whom)
    ENDED = "ended"  # disposition and outcome say how


@dataclass(frozen=True, slots=True)
class CallStateEvent:
    call_id: int
    state: LiveCallState
    store_id: int | None = None
    campaign_id: int | None = None
    customer_id: int | None = None
    agent_id: int | None = None
    worker: str | None = None
    disposition: str | None = None  # CallDisposition value, with ENDED
    outcome: str | None = None  # CallOutcome value, with ENDED
    at: float = dataclasses.field(default_factory=time.time)  # unix seconds
    type: str = "call_state"


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    call_id: int
    seq: int  # order within the call; partial results reuse the seq of the line they become
    speaker: str  # Speaker value
    text: str
    is_final: bool
    start: float  # seconds from the answer
    end: float
    store_id: int | None = None
    at: float = dataclasses.field(default_factory=time.time)
    type: str = "transcript"


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    worker: str  # host:pid
    active_calls: int
    capacity: int
    campaigns: tuple[int, ...] = ()
    at: float = dataclasses.field(default_factory=time.time)
    type: str = "worker"


Event = CallStateEvent | TranscriptLine | WorkerHeartbeat
_TYPES: dict[str, type] = {"call_state": CallStateEvent, "transcript": TranscriptLine, "worker": WorkerHeartbeat}


def encode(event: Event) -> str:
    data = dataclasses.asdict(event)
    return json.dumps({k: (v.value if isinstance(v, enum.Enum) else v) for k, v in data.items()},
                      ensure_ascii=False, separators=(",", ":"))


def decode(raw: bytes | str) -> Event:
    """Parse a payload.

    Raises:
        ValueError: not JSON, an unknown ``type`` or fields that do not fit it.
    """
    try:
        data: dict[str, Any] = json.loads(raw)
        cls = _TYPES[data.pop("type")]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a live event: {str(raw)[:80]!r}") from exc
    try:
        if cls is CallStateEvent:
            data["state"] = LiveCallState(data["state"])
        if cls is WorkerHeartbeat:
            data["campaigns"] = tuple(data.get("campaigns") or ())
        return cls(**data)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"malformed {cls.__name__}: {exc}") from exc


def publish_call_state(redis, event: CallStateEvent) -> None:
    """Announce a call's new state and keep the active-calls snapshot in step."""
    payload = encode(event)
    pipe = redis.pipeline(transaction=False)
    if event.state is LiveCallState.ENDED:
        pipe.hdel(ACTIVE_CALLS_KEY, event.call_id)
        pipe.expire(call_lines_key(event.call_id), 300)  # late viewers have 5 minutes, then the DB
    else:
        pipe.hset(ACTIVE_CALLS_KEY, event.call_id, payload)
    pipe.publish(CALLS_CHANNEL, payload)
    pipe.publish(call_channel(event.call_id), payload)
    pipe.execute()


def publish_transcript(redis, line: TranscriptLine) -> None:
    """Send a transcript line (partial or final) to the call's listeners; keep final ones."""
    payload = encode(line)
    pipe = redis.pipeline(transaction=False)
    if line.is_final:
        key = call_lines_key(line.call_id)
        pipe.rpush(key, payload)
        pipe.ltrim(key, -LINES_MAX, -1)
        pipe.expire(key, LINES_TTL_SECONDS)
    pipe.publish(call_channel(line.call_id), payload)
    pipe.execute()


def publish_heartbeat(redis, beat: WorkerHeartbeat) -> None:
    redis.hset(WORKERS_KEY, beat.worker, encode(beat))


def remove_worker(redis, worker: str) -> None:
    """A worker that stops cleanly takes itself off the wallboard."""
    redis.hdel(WORKERS_KEY, worker)


def active_calls(redis) -> list[CallStateEvent]:
    out = []
    for raw in redis.hvals(ACTIVE_CALLS_KEY):
        try:
            event = decode(raw)
        except ValueError:
            continue
        if isinstance(event, CallStateEvent):
            out.append(event)
    return sorted(out, key=lambda e: e.call_id)


def workers(redis, *, now: float | None = None) -> list[tuple[WorkerHeartbeat, bool]]:
    """Known workers with whether each is alive (beat within :data:`WORKER_STALE_SECONDS`)."""
    now = time.time() if now is None else now
    out = []
    for raw in redis.hvals(WORKERS_KEY):
        try:
            beat = decode(raw)
        except ValueError:
            continue
        if isinstance(beat, WorkerHeartbeat):
            out.append((beat, now - beat.at <= WORKER_STALE_SECONDS))
    return sorted(out, key=lambda wb: wb[0].worker)


def recent_lines(redis, call_id: int) -> list[TranscriptLine]:
    out = []
    for raw in redis.lrange(call_lines_key(call_id), 0, -1):
        try:
            line = decode(raw)
        except ValueError:
            continue
        if isinstance(line, TranscriptLine):
            out.append(line)
    return out
