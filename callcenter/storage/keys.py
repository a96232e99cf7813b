"""Redis names of the dialer: its task stream, consumer group, leader lock and liveness keys.

Every Redis key the dialer (``campaigns/``) touches is named here and nowhere else (rq names
its ``rq:job:`` prefixes once in the same way). The console's live channels are in
:mod:`callcenter.storage.live`. Redis holds work in flight only: everything below can be lost
(``FLUSHALL``, a restart without persistence) and is rebuilt from the database by the
scheduler. Plain functions and constants; no thread of its own.

``cc:dialer:tasks`` (stream)
    Due call attempts: fields ``task``, ``attempt``, ``campaign`` (decimal strings). The
    scheduler appends (XADD), workers read through the consumer group :data:`GROUP`, and delete
    an entry (XACK + XDEL) once its attempt's outcome is in the database, so the stream only
    ever holds undelivered and in-flight entries.
``cc:dialer:epoch`` (string)
    Unix time (seconds, from the Redis server's clock) at which the queue was last rebuilt
    from the database. Its absence means Redis lost its data: the next scheduler tick rebuilds.
``cc:dialer:scheduler`` (string with expiry)
    The scheduler lock: the id of the worker process that currently runs the scheduler.
``cc:dialer:alive:<worker>`` (string with expiry)
    Set by each live worker process every few seconds with an expiry of the worker timeout;
    a worker whose key is gone is dead, and its unfinished attempts are written off.
"""

from __future__ import annotations

import re

PREFIX = "cc:dialer:"
STREAM = PREFIX + "tasks"
GROUP = "dialers"
EPOCH = PREFIX + "epoch"
SCHEDULER_LOCK = PREFIX + "scheduler"
ALIVE_PREFIX = PREFIX + "alive:"

# Worker ids are ``host:pid``; anything else in a key would be an injection vector.
_WORKER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,80}:[0-9]{1,10}(?:-[A-Za-z0-9]{1,16})?$")


def alive_key(worker: str) -> str:
    """The liveness key of worker ``host:pid``.

    Raises:
        ValueError: ``worker`` is not of the form ``host:pid``.
    """
    if not _WORKER_RE.match(worker):
        raise ValueError(f"not a worker id (host:pid): {worker[:100]!r}")
    return ALIVE_PREFIX + worker
