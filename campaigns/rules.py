"""Rules every dial obeys: calling windows, public holidays, retries by disposition, frequency cap.

Pure functions over plain values (no database, no Redis, no clock of their own), so the
scheduler, the worker and the tests apply exactly the same rules. Runs on whatever thread
calls it.

- Calling windows are local times of the customer's store (default 09:00-12:00 and
  14:00-20:00); no calls on China's statutory public holidays (``chinesecalendar``, which
  also knows the make-up working days, 调休, on which calls are allowed).
- Retries by disposition: busy after 30 minutes, no answer after 2 hours, unavailable after
  1 hour; at most 3 attempts that did not reach the customer; a customer who asks to be called
  back is called at the time they chose (at most twice per task).
- Frequency cap across campaigns: one answered robot call per customer per 7 days (the SQL
  lives with the scheduler and the audience rules; the number lives in :class:`DialPolicy`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callcenter.domain import CallDisposition
from callcenter.domain.calls import AddToDnc, CallEnd, CallResult, ScheduleCallback, Transfer
from callcenter.storage.models import CallOutcome, TaskState

MINUTES_PER_DAY = 24 * 60
DEFAULT_WINDOWS = "09:00-12:00,14:00-20:00"
# Seconds to wait before the next attempt, by how the last one ended. The three the seeds'
# practice names (busy 30 min, no answer 2 h, unavailable 1 h) are settings; the rest follow
# them: a decline (603) is treated like no answer, a failure anywhere else like unavailable,
# an answering machine like no answer, our own failure is retried sooner (15 min).
DEFAULT_RETRY_SECONDS: dict[str, int] = {
    CallDisposition.BUSY.value: 30 * 60,
    CallDisposition.NO_ANSWER.value: 2 * 3600,
    CallDisposition.UNAVAILABLE.value: 3600,
    CallDisposition.REJECTED.value: 2 * 3600,
    CallDisposition.FAILED.value: 3600,
    CallDisposition.NETWORK_ERROR.value: 3600,
    "answering_machine": 2 * 3600,
    "error": 15 * 60,
}
RETRY_KEYS = tuple(DEFAULT_RETRY_SECONDS)
# A callback request whose time the conversation could not pin down: two hours later.
DEFAULT_CALLBACK_SECONDS = 2 * 3600
FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})
OPEN_STATES = frozenset({TaskState.PENDING, TaskState.QUEUED, TaskState.DIALING})
# Outcomes after which the customer was not reached: these count against max_attempts.
UNREACHED = frozenset({CallOutcome.NOT_REACHED, CallOutcome.ANSWERING_MACHINE, CallOutcome.ERROR})
# Dispositions that say "the trunk or network failed", not "the customer did not pick up":
# a run of these across a campaign makes it back off (see trunk_backoff).
TRUNK_FAILURES = frozenset({CallDisposition.FAILED.value, CallDisposition.NETWORK_ERROR.value,
                            CallDisposition.UNAVAILABLE.value})


# --------------------------------------------------------------------------- calling windows


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """Minutes after local midnight, start inclusive, end exclusive (end 1440 = 24:00)."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


_WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_windows(text: str) -> tuple[Window, ...]:
    """``"09:00-12:00,14:00-20:00"`` -> windows, sorted.

    Raises:
        ValueError: a part is not ``HH:MM-HH:MM``, ends before it starts, or overlaps another.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("calling windows: empty (expected e.g. 09:00-12:00,14:00-20:00)")
    windows = []
    for part in text.split(","):
        m = _WINDOW_RE.match(part)
        if not m:
            raise ValueError(f"calling window {part.strip()!r}: expected HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(f"calling window {part.strip()!r}: not a time of day")
        window = Window(h1 * 60 + m1, h2 * 60 + m2)
        if window.end <= window.start:
            raise ValueError(f"calling window {part.strip()!r}: ends before it starts")
        windows.append(window)
    windows.sort()
    for a, b in itertools.pairwise(windows):
        if b.start < a.end:
            raise ValueError(f"calling windows {a} and {b} overlap")
    return tuple(windows)


def format_windows(windows: Sequence[Window]) -> str:
    return ",".join(str(w) for w in windows)


class HolidayDataMissing(LookupError):
    """The holiday calendar has no data for a year, so whether a day is a holiday is unknown."""

    def __init__(self, year: int, detail: str = "") -> None:
        super().__init__(
            f"the public-holiday calendar has no data for {year}: upgrade the chinesecalendar package "
            f"(pip install -U chinesecalendar) or set the campaign's holidays=false{detail}"
        )
        self.year = year


class HolidayCalendar(Protocol):
    def is_holiday(self, day: dt.date) -> bool:
        """Whether ``day`` is a public holiday.

        Raises:
            HolidayDataMissing: the calendar does not know ``day``'s year.
        """


class ChineseHolidays:
    """China's statutory holidays from the maintained ``chinesecalendar`` package.

    A day is a holiday when the State Council's schedule makes it a day off for a named
    festival (国庆节, 春节 ...). Ordinary weekends are not holidays (dealerships and their
    customers are reachable then), and make-up working days (调休) are working days.
    """

    def __init__(self) -> None:
        import chinese_calendar  # imported here: only dialing code needs it

        self._cc = chinese_calendar
        self._cache: dict[dt.date, bool] = {}

    def is_holiday(self, day: dt.date) -> bool:
        hit = self._cache.get(day)
        if hit is None:
            try:
                off, name = self._cc.get_holiday_detail(day)
            except NotImplementedError as exc:  # the package's way of saying "year not covered"
                raise HolidayDataMissing(day.year, f" ({exc})") from None
            hit = self._cache[day] = bool(off and name)
        return hit


class NoHolidays:
    """For campaigns that call on holidays too (``holidays=false``)."""

    def is_holiday(self, day: dt.date) -> bool:
        return False


def callable_at(local: dt.datetime, windows: Sequence[Window], holidays: HolidayCalendar) -> bool:
    """Whether a call may start at ``local`` (the store's local time).

    Raises:
        HolidayDataMissing: the calendar cannot say whether today is a holiday.
    """
    minute = local.hour * 60 + local.minute
    if not any(w.start <= minute < w.end for w in windows):
        return False
    return not holidays.is_holiday(local.date())


def next_callable(local: dt.datetime, windows: Sequence[Window], holidays: HolidayCalendar,
                  *, horizon_days: int = 40) -> dt.datetime | None:
    """The first moment at or after ``local`` when a call may start (same tzinfo), or None
    within ``horizon_days`` (no windows, or a holiday season longer than that).

    Raises:
        HolidayDataMissing: the calendar does not cover a day it had to look at.
    """
    if not windows:
        return None
    day = local.date()
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    for offset in range(horizon_days + 1):
        current = day + dt.timedelta(days=offset)
        if holidays.is_holiday(current):
            continue
        for w in windows:
            if offset == 0:
                if seconds >= w.end * 60:
                    continue
                if seconds >= w.start * 60:
                    return local  # inside the window now
            start = dt.datetime.combine(current, dt.time(w.start // 60, w.start % 60), tzinfo=local.tzinfo)
            return start
    return None


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3  # attempts that did not reach the customer
    max_callbacks: int = 2  # customer-requested callbacks per task
    delays: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RETRY_SECONDS))

    def delay(self, key: str) -> int:
        return int(self.delays.get(key, DEFAULT_RETRY_SECONDS.get(key, 3600)))


@dataclass(frozen=True, slots=True)
class AttemptFact:
    """One earlier or current attempt of a task, as the decision needs it."""

    disposition: str | None
    outcome: CallOutcome | None


@dataclass(frozen=True, slots=True)
class Decision:
    state: TaskState  # COMPLETED, FAILED or PENDING (retry)
    outcome: CallOutcome
    retry_at: dt.datetime | None = None  # naive UTC, with PENDING
    reason: str = ""


def derive_outcome(result: CallResult) -> CallOutcome:
    """The business outcome of an attempt from the facts the runner reported."""
    if result.end is CallEnd.ERROR or (
            result.error and result.disposition is CallDisposition.ANSWERED and result.end is None):
        return CallOutcome.ERROR  # our side failed: media, models, dialog or the runner itself
    if result.disposition is not CallDisposition.ANSWERED:
        return CallOutcome.NOT_REACHED
    kinds = {type(a) for a in result.actions}
    end = result.end
    if end is CallEnd.ANSWERING_MACHINE:
        return CallOutcome.ANSWERING_MACHINE
    if end is CallEnd.OPT_OUT or AddToDnc in kinds:
        return CallOutcome.OPT_OUT
    if end is CallEnd.WRONG_NUMBER:
        return CallOutcome.WRONG_NUMBER
    if end is CallEnd.TRANSFERRED or (Transfer in kinds and end is None):
        return CallOutcome.TRANSFERRED
    if Transfer in kinds:  # the hand-over failed and the conversation went on to end otherwise
        return CallOutcome.TRANSFER_FAILED
    if end is CallEnd.CALLBACK or ScheduleCallback in kinds:
        return CallOutcome.CALLBACK
    if end is CallEnd.COMPLETED:
        return CallOutcome.COMPLETED
    if end is CallEnd.REFUSED:
        return CallOutcome.REFUSED
    if end is CallEnd.CUSTOMER_HUNG_UP:
        return CallOutcome.HUNG_UP
    return CallOutcome.PARTIAL  # no input, maximum duration, or the runner did not say


def decide(history: Sequence[AttemptFact], policy: RetryPolicy, now: dt.datetime,
           callback_at: dt.datetime | None = None) -> Decision:
    """What happens to a task after its latest attempt (the last item of ``history``).

    Args:
        history: every attempt of the task so far, oldest first, the one just finished last.
        policy: retry delays and limits.
        now: naive UTC.
        callback_at: naive UTC time the customer asked to be called back, if they did.
    """
    if not history:
        raise ValueError("decide() needs at least the attempt that just finished")
    last = history[-1]
    outcome = last.outcome or CallOutcome.ERROR
    if outcome in UNREACHED:
        if last.disposition == CallDisposition.NOT_FOUND.value:
            return Decision(TaskState.FAILED, CallOutcome.NOT_REACHED, reason="the number does not exist (404/604)")
        unreached = sum(1 for a in history if a.outcome in UNREACHED or a.outcome is None)
        if unreached >= policy.max_attempts:
            return Decision(TaskState.FAILED, CallOutcome.NOT_REACHED if outcome is not CallOutcome.ERROR
                            else CallOutcome.ERROR,
                            reason=f"not reached after {unreached} attempt(s)")
        if outcome is CallOutcome.ANSWERING_MACHINE:
            key = "answering_machine"
        elif outcome is CallOutcome.ERROR:
            key = "error"
        else:
            key = last.disposition or "error"
        delay = policy.delay(key)
        return Decision(TaskState.PENDING, outcome, now + dt.timedelta(seconds=delay),
                        reason=f"{key}: retry in {delay} s")
    if outcome is CallOutcome.CALLBACK:
        callbacks = sum(1 for a in history if a.outcome is CallOutcome.CALLBACK)
        if callbacks > policy.max_callbacks:
            return Decision(TaskState.COMPLETED, outcome, reason="callback limit reached: left to an agent")
        at = callback_at if callback_at is not None and callback_at > now \
            else now + dt.timedelta(seconds=DEFAULT_CALLBACK_SECONDS)
        return Decision(TaskState.PENDING, outcome, at, reason="the customer asked to be called back")
    return Decision(TaskState.COMPLETED, outcome)


def trunk_backoff(recent_dispositions: Sequence[str | None], threshold: int, base_seconds: int,
                  max_seconds: int = 1800) -> int:
    """Seconds a campaign should hold off because its trunk rejects every call, or 0.

    ``recent_dispositions`` are its latest ended attempts, newest first. When the newest
    ``threshold`` or more all failed at the trunk, the hold is ``base_seconds`` and doubles with
    every further ``threshold`` failures in a row, up to ``max_seconds``: each probe round costs
    at most a campaign's channels in attempts, never a tight loop.
    """
    run = 0
    for d in recent_dispositions:
        if d in TRUNK_FAILURES:
            run += 1
        else:
            break
    if threshold <= 0 or run < threshold:
        return 0
    return int(min(max_seconds, base_seconds * 2 ** (run // threshold - 1)))


# --------------------------------------------------------------------------- per-campaign policy


@dataclass(frozen=True, slots=True)
class DialPolicy:
    """The rules for one campaign: the settings' defaults overridden by the campaign's params."""

    windows: tuple[Window, ...]
    holidays: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    frequency_cap_days: int = 7
    max_channels: int = 4
    trunk_failure_threshold: int = 10
    trunk_backoff_seconds: int = 60

    def calendar(self, chinese: HolidayCalendar | None = None) -> HolidayCalendar:
        return (chinese or ChineseHolidays()) if self.holidays else NoHolidays()


DIAL_PARAMS = ("windows", "holidays", "retry_seconds", "frequency_cap_days", "max_callbacks",
               "trunk_failure_threshold", "trunk_backoff_seconds")


def validate_dial_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check the dialing keys of a campaign's params; returns them normalised.

    Raises:
        ValueError: naming the key and what is wrong with it.
    """
    out: dict[str, Any] = {}
    for key in DIAL_PARAMS:
        if key not in params or params[key] is None:
            continue
        value = params[key]
        if key == "windows":
            out[key] = format_windows(parse_windows(value))
        elif key == "holidays":
            if not isinstance(value, bool):
                raise ValueError("holidays: expected true or false")
            out[key] = value
        elif key == "retry_seconds":
            if not isinstance(value, Mapping):
                raise ValueError(f"retry_seconds: expected a mapping of {', '.join(RETRY_KEYS)} to seconds")
            delays = {}
            for k, v in value.items():
                if k not in RETRY_KEYS:
                    raise ValueError(f"retry_seconds: unknown key {k!r} (known: {', '.join(RETRY_KEYS)})")
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 30 * 86400:
                    raise ValueError(f"retry_seconds.{k}: expected whole seconds between 1 and 2592000")
                delays[k] = v
            out[key] = delays
        else:
            bounds = {"frequency_cap_days": (0, 365), "max_callbacks": (0, 10),
                      "trunk_failure_threshold": (1, 1000), "trunk_backoff_seconds": (1, 86400)}[key]
            if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
                raise ValueError(f"{key}: expected a whole number between {bounds[0]} and {bounds[1]}")
            out[key] = value
    return out


def store_policy(policy: DialPolicy, params: Mapping[str, Any] | None, store_windows: str | None) -> DialPolicy:
    """``policy`` with a store's own calling windows (``stores.calling_windows``) in place of the
    default ones, unless the campaign set its own ``windows``; a malformed stored value is ignored
    (the stores page validates it, so only a hand-edited row can hold one)."""
    if not store_windows or (params or {}).get("windows"):
        return policy
    try:
        windows = parse_windows(store_windows)
    except ValueError:
        return policy
    return replace(policy, windows=windows)


def store_callable(now: dt.datetime, timezone: str, policy: DialPolicy,
                   calendar: HolidayCalendar) -> tuple[bool, str | None]:
    """Whether a store may be called at ``now`` (naive UTC): (True, None) or (False, why).

    ``calendar`` is consulted only when the policy keeps holidays free of calls.
    """
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return False, f"store time zone {timezone!r} is not a known zone"
    local = now.replace(tzinfo=dt.UTC).astimezone(tz)
    minute = local.hour * 60 + local.minute
    if not any(w.start <= minute < w.end for w in policy.windows):
        return False, f"outside the calling windows {format_windows(policy.windows)} (local time {local:%H:%M})"
    if not policy.holidays:
        return True, None
    try:
        if calendar.is_holiday(local.date()):
            return False, f"public holiday ({local.date().isoformat()})"
    except HolidayDataMissing as exc:
        return False, str(exc)
    return True, None


def default_policy(settings) -> DialPolicy:
    """The dialing rules from :class:`~callcenter.config.Settings` (before any campaign's params).

    Raises:
        ValueError: malformed calling windows.
    """
    delays = dict(DEFAULT_RETRY_SECONDS)
    delays[CallDisposition.BUSY.value] = settings.dialer_retry_busy_minutes * 60
    delays[CallDisposition.NO_ANSWER.value] = settings.dialer_retry_no_answer_minutes * 60
    delays[CallDisposition.UNAVAILABLE.value] = settings.dialer_retry_unavailable_minutes * 60
    return DialPolicy(
        windows=parse_windows(settings.dialer_windows),
        holidays=settings.dialer_holidays,
        retry=RetryPolicy(max_attempts=settings.dialer_max_attempts, delays=delays),
        frequency_cap_days=settings.dialer_frequency_cap_days,
    )


def dial_policy(defaults: DialPolicy, params: Mapping[str, Any] | None, *, max_channels: int,
                max_attempts: int) -> DialPolicy:
    """``defaults`` overridden by a campaign's (already validated) params and columns."""
    p = dict(params or {})
    retry = RetryPolicy(
        max_attempts=max_attempts,
        max_callbacks=p.get("max_callbacks", defaults.retry.max_callbacks),
        delays={**defaults.retry.delays, **(p.get("retry_seconds") or {})},
    )
    return DialPolicy(
        windows=parse_windows(p["windows"]) if p.get("windows") else defaults.windows,
        holidays=p.get("holidays", defaults.holidays),
        retry=retry,
        frequency_cap_days=p.get("frequency_cap_days", defaults.frequency_cap_days),
        max_channels=max_channels,
        trunk_failure_threshold=p.get("trunk_failure_threshold", defaults.trunk_failure_threshold),
        trunk_backoff_seconds=p.get("trunk_backoff_seconds", defaults.trunk_backoff_seconds),
    )
