"""The dialer's task queue: one Redis Stream read by a consumer group of worker processes.

An entry says "dial attempt N of task T" (campaign C). The scheduler appends entries; each
worker reads new ones (XREADGROUP ``>``), claims entries that a dead or stuck consumer left
pending (XAUTOCLAIM after the claim timeout), and deletes an entry (XACK + XDEL) once the
attempt's outcome is in the database. The database decides whether an entry may be dialled
(``campaigns.attempts``), so a duplicate or stale entry is harmless: it is acknowledged and
dropped. The connection is passed in (rq style); every method runs on the caller's thread and
raises ``redis.RedisError`` when Redis is unreachable, for the caller to retry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis as redis_lib

from callcenter.storage import keys

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    task_id: int
    attempt: int
    campaign_id: int


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_entry(entry_id, fields) -> Message | None:
    """A stream entry as a :class:`Message`, or None for an entry that is not one of ours."""
    try:
        data = {_text(k): _text(v) for k, v in (fields or {}).items()}
        return Message(_text(entry_id), int(data["task"]), int(data["attempt"]), int(data["campaign"]))
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


class DialQueue:
    """The stream and its consumer group, on an explicit Redis connection."""

    def __init__(self, redis: redis_lib.Redis, *, stream: str = keys.STREAM, group: str = keys.GROUP) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group

    def ensure_group(self) -> bool:
        """Create the stream and the group (reading from the start) if missing. True if created."""
        try:
            # id 0, not $: entries added before the group existed (a rebuild) must be delivered.
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            return True
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return False
            raise

    def add(self, task_id: int, attempt: int, campaign_id: int) -> str:
        entry = self.redis.xadd(self.stream, {"task": task_id, "attempt": attempt, "campaign": campaign_id})
        return _text(entry)

    def _messages(self, entries) -> list[Message]:
        out = []
        for entry_id, fields in entries or ():
            msg = parse_entry(entry_id, fields)
            if msg is None:
                # Not ours (hand-written or corrupt): drop it so it cannot block the group.
                logger.warning("dialer stream: dropping malformed entry %s: %r", _text(entry_id), fields)
                self.done(_text(entry_id))
                continue
            out.append(msg)
        return out

    def read(self, consumer: str, count: int, block_ms: int) -> list[Message]:
        """New entries for ``consumer`` (at most ``count``), waiting up to ``block_ms``."""
        try:
            reply = self.redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count, block=block_ms)
        except redis_lib.ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis lost its data: recreate, the scheduler refills
                self.ensure_group()
                return []
            raise
        entries = []
        for _stream, items in reply or ():
            entries.extend(items)
        return self._messages(entries)

    def autoclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Message]:
        """Take over entries idle for ``min_idle_ms`` in any consumer's pending list."""
        try:
            reply = self.redis.xautoclaim(self.stream, self.group, consumer, min_idle_ms, "0-0", count=count)
        except redis_lib.ResponseError as exc:
            if "NOGROUP" in str(exc):
                self.ensure_group()
                return []
            raise
        # Redis 7: [next start id, [(id, fields)...], [deleted ids...]]
        claimed = reply[1] if len(reply) > 1 else []
        return self._messages([(eid, f) for eid, f in claimed if f is not None])

    def done(self, entry_id: str) -> None:
        """Acknowledge and delete an entry (harmless if Redis forgot it meanwhile)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, entry_id)
        pipe.xdel(self.stream, entry_id)
        try:
            pipe.execute()
        except redis_lib.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise

    def task_ids(self) -> set[int]:
        """Tasks with an entry in the stream (undelivered or in flight)."""
        out: set[int] = set()
        last = "-"
        while True:
            batch = self.redis.xrange(self.stream, min=last, max="+", count=1000)
            if not batch:
                break
            for entry_id, fields in batch:
                msg = parse_entry(entry_id, fields)
                if msg is not None:
                    out.add(msg.task_id)
            if len(batch) < 1000:
                break
            last = "(" + _text(batch[-1][0])
        return out

    def length(self) -> int:
        return int(self.redis.xlen(self.stream))

    def consumers(self) -> list[dict]:
        """``[{"name", "pending", "idle"}]`` of the group (empty if it does not exist)."""
        try:
            rows = self.redis.xinfo_consumers(self.stream, self.group)
        except redis_lib.ResponseError:
            return []
        return [{"name": _text(r["name"]), "pending": int(r["pending"]), "idle": int(r["idle"])} for r in rows]

    def remove_consumer(self, name: str) -> None:
        self.redis.xgroup_delconsumer(self.stream, self.group, name)
