"""Calling windows, holidays, retries, outcome derivation and trunk back-off: pure rules."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from callcenter.config import Settings
from callcenter.domain import CallDisposition, Speaker
from callcenter.domain.calls import AddToDnc, CallEnd, CallResult, ScheduleCallback, Transfer, Turn
from callcenter.storage.models import CallOutcome, TaskState
from campaigns.rules import (
    AttemptFact,
    ChineseHolidays,
    DialPolicy,
    HolidayDataMissing,
    NoHolidays,
    RetryPolicy,
    Window,
    callable_at,
    decide,
    default_policy,
    derive_outcome,
    dial_policy,
    next_callable,
    parse_windows,
    store_callable,
    trunk_backoff,
    validate_dial_params,
)

SH = ZoneInfo("Asia/Shanghai")
DEFAULT = parse_windows("09:00-12:00,14:00-20:00")
NOW = dt.datetime(2026, 11, 23, 2, 0)  # naive UTC: Monday 10:00 in Shanghai


class FixedHolidays:
    """A calendar fake: the given days are holidays; others are not."""

    def __init__(self, *days: dt.date) -> None:
        self.days = set(days)

    def is_holiday(self, day: dt.date) -> bool:
        return day in self.days


def local(y, mo, d, h, mi=0, s=0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=SH)


# ----------------------------------------------------------------- windows


def test_parse_windows_sorts_and_formats():
    windows = parse_windows(" 14:00-20:00 , 09:00-12:00")
    assert windows == (Window(540, 720), Window(840, 1200))
    assert str(windows[0]) == "09:00-12:00"
    assert parse_windows("00:00-24:00") == (Window(0, 1440),)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("9-12", "expected HH:MM-HH:MM"),
    ("12:00-09:00", "ends before it starts"),
    ("09:00-12:00,11:00-13:00", "overlap"),
    ("25:00-26:00", "not a time of day"),
    ("09:61-10:00", "not a time of day"),
])
def test_parse_windows_rejects_junk_with_a_reason(text, message):
    with pytest.raises(ValueError, match=message):
        parse_windows(text)


@pytest.mark.parametrize("when, expected", [
    (local(2026, 11, 23, 8, 59), False),
    (local(2026, 11, 23, 9, 0), True),
    (local(2026, 11, 23, 11, 59, 59), True),
    (local(2026, 11, 23, 12, 0), False),  # lunch
    (local(2026, 11, 23, 14, 0), True),
    (local(2026, 11, 23, 19, 59), True),
    (local(2026, 11, 23, 20, 0), False),
])
def test_callable_at_respects_the_default_windows(when, expected):
    assert callable_at(when, DEFAULT, NoHolidays()) is expected


def test_no_calls_on_a_holiday_even_inside_the_window():
    holiday = FixedHolidays(dt.date(2026, 11, 23))
    assert callable_at(local(2026, 11, 23, 10), DEFAULT, holiday) is False
    assert callable_at(local(2026, 11, 24, 10), DEFAULT, holiday) is True


@pytest.mark.parametrize("start, expected", [
    (local(2026, 11, 23, 10, 30), local(2026, 11, 23, 10, 30)),  # inside: now
    (local(2026, 11, 23, 12, 30), local(2026, 11, 23, 14, 0)),  # lunch: afternoon window
    (local(2026, 11, 23, 20, 30), local(2026, 11, 24, 9, 0)),  # evening: tomorrow morning
    (local(2026, 11, 23, 6, 0), local(2026, 11, 23, 9, 0)),
    (local(2026, 11, 23, 11, 59, 30), local(2026, 11, 23, 11, 59, 30)),
])
def test_next_callable(start, expected):
    assert next_callable(start, DEFAULT, NoHolidays()) == expected


def test_next_callable_skips_holidays_and_gives_up_beyond_the_horizon():
    days = [dt.date(2026, 11, 24) + dt.timedelta(days=i) for i in range(3)]
    assert next_callable(local(2026, 11, 23, 21), DEFAULT, FixedHolidays(*days)) == local(2026, 11, 27, 9)
    every_day = FixedHolidays(*[dt.date(2026, 11, 23) + dt.timedelta(days=i) for i in range(60)])
    assert next_callable(local(2026, 11, 23, 10), DEFAULT, every_day, horizon_days=10) is None
    assert next_callable(local(2026, 11, 23, 10), (), NoHolidays()) is None


def test_chinese_holidays_follow_the_state_council_schedule():
    cal = ChineseHolidays()
    assert cal.is_holiday(dt.date(2026, 10, 1))  # National Day
    assert cal.is_holiday(dt.date(2026, 2, 17))  # Spring Festival
    assert not cal.is_holiday(dt.date(2026, 11, 22))  # an ordinary Sunday: customers are reachable
    assert not cal.is_holiday(dt.date(2026, 10, 10))  # a make-up working Saturday (调休)
    assert not cal.is_holiday(dt.date(2026, 10, 8))


def test_a_year_the_calendar_does_not_know_is_an_error_not_a_guess():
    with pytest.raises(HolidayDataMissing, match="no data for 2099"):
        ChineseHolidays().is_holiday(dt.date(2099, 5, 1))
    # ... and the store is reported as not callable, with the reason.
    policy = DialPolicy(windows=parse_windows("00:00-24:00"))
    ok, why = store_callable(dt.datetime(2099, 5, 3, 4, 0), "Asia/Shanghai", policy, ChineseHolidays())
    assert not ok and "chinesecalendar" in why


def test_national_day_holds_the_whole_golden_week_and_resumes_after():
    cal = ChineseHolidays()
    assert next_callable(local(2026, 9, 30, 20, 30), DEFAULT, cal) == local(2026, 10, 8, 9)


def test_store_callable_uses_the_store_time_zone():
    policy = DialPolicy(windows=DEFAULT)
    cal = NoHolidays()
    assert store_callable(dt.datetime(2026, 11, 23, 1, 30), "Asia/Shanghai", policy, cal) == (True, None)
    ok, why = store_callable(dt.datetime(2026, 11, 23, 13, 0), "Asia/Shanghai", policy, cal)
    assert not ok and "local time 21:00" in why
    # 01:30 UTC is 17:30 of the previous day in Los Angeles: inside the afternoon window there.
    assert store_callable(dt.datetime(2026, 11, 23, 1, 30), "America/Los_Angeles", policy, cal)[0] is True
    ok, why = store_callable(NOW, "Mars/Olympus", policy, cal)
    assert not ok and "not a known zone" in why


# ----------------------------------------------------------------- retries


def facts(*pairs) -> list[AttemptFact]:
    return [AttemptFact(d, o) for d, o in pairs]


NR = CallOutcome.NOT_REACHED


def test_busy_is_retried_after_30_minutes_no_answer_after_2_hours_unavailable_after_1_hour():
    policy = RetryPolicy()
    busy = decide(facts(("busy", NR)), policy, NOW)
    assert busy.state is TaskState.PENDING and busy.retry_at == NOW + dt.timedelta(minutes=30)
    assert decide(facts(("no_answer", NR)), policy, NOW).retry_at == NOW + dt.timedelta(hours=2)
    assert decide(facts(("unavailable", NR)), policy, NOW).retry_at == NOW + dt.timedelta(hours=1)


def test_after_three_unreached_attempts_the_task_fails():
    policy = RetryPolicy(max_attempts=3)
    history = facts(("busy", NR), ("no_answer", NR))
    assert decide(history, policy, NOW).state is TaskState.PENDING
    final = decide(history + facts(("busy", NR)), policy, NOW)
    assert final.state is TaskState.FAILED and final.outcome is NR and final.retry_at is None


def test_a_number_that_does_not_exist_fails_at_once():
    d = decide(facts(("not_found", NR)), RetryPolicy(), NOW)
    assert d.state is TaskState.FAILED and "does not exist" in d.reason


def test_configured_delays_override_the_defaults():
    policy = RetryPolicy(delays={"busy": 5})
    assert decide(facts(("busy", NR)), policy, NOW).retry_at == NOW + dt.timedelta(seconds=5)
    # keys not overridden keep their default
    assert decide(facts(("no_answer", NR)), policy, NOW).retry_at == NOW + dt.timedelta(hours=2)


def test_answering_machines_and_our_own_errors_are_retried_and_count_as_unreached():
    policy = RetryPolicy(max_attempts=2)
    machine = decide(facts(("answered", CallOutcome.ANSWERING_MACHINE)), policy, NOW)
    assert machine.state is TaskState.PENDING and machine.retry_at == NOW + dt.timedelta(hours=2)
    error = decide(facts((None, CallOutcome.ERROR)), policy, NOW)
    assert error.retry_at == NOW + dt.timedelta(minutes=15)
    final = decide(facts((None, CallOutcome.ERROR), ("answered", CallOutcome.ANSWERING_MACHINE)), policy, NOW)
    assert final.state is TaskState.FAILED


@pytest.mark.parametrize("outcome", [CallOutcome.COMPLETED, CallOutcome.PARTIAL, CallOutcome.HUNG_UP,
                                     CallOutcome.OPT_OUT, CallOutcome.WRONG_NUMBER, CallOutcome.TRANSFERRED])
def test_a_reached_customer_ends_the_task(outcome):
    d = decide(facts(("busy", NR), ("answered", outcome)), RetryPolicy(), NOW)
    assert d.state is TaskState.COMPLETED and d.outcome is outcome


def test_callbacks_are_called_at_the_customers_time_at_most_twice():
    policy = RetryPolicy(max_attempts=3, max_callbacks=2)
    at = NOW + dt.timedelta(hours=5)
    first = decide(facts(("answered", CallOutcome.CALLBACK)), policy, NOW, callback_at=at)
    assert first.state is TaskState.PENDING and first.retry_at == at
    unknown_time = decide(facts(("answered", CallOutcome.CALLBACK)), policy, NOW)
    assert unknown_time.retry_at == NOW + dt.timedelta(hours=2)
    past = decide(facts(("answered", CallOutcome.CALLBACK)), policy, NOW, callback_at=NOW - dt.timedelta(hours=1))
    assert past.retry_at > NOW
    three = facts(*[("answered", CallOutcome.CALLBACK)] * 3)
    assert decide(three, policy, NOW, callback_at=at).state is TaskState.COMPLETED
    # callbacks do not use up the attempts budget for unreached calls
    mixed = facts(("busy", NR), ("no_answer", NR), ("answered", CallOutcome.CALLBACK), ("busy", NR))
    assert decide(mixed, policy, NOW).state is TaskState.FAILED
    assert decide(mixed[:3], policy, NOW, callback_at=at).state is TaskState.PENDING


def test_decide_needs_the_attempt_that_finished():
    with pytest.raises(ValueError):
        decide([], RetryPolicy(), NOW)


# ----------------------------------------------------------------- outcomes


def result(disposition=CallDisposition.ANSWERED, **kw) -> CallResult:
    return CallResult(disposition=disposition, **kw)


@pytest.mark.parametrize("res, expected", [
    (result(CallDisposition.BUSY), CallOutcome.NOT_REACHED),
    (result(CallDisposition.NO_ANSWER), CallOutcome.NOT_REACHED),
    (result(end=CallEnd.COMPLETED), CallOutcome.COMPLETED),
    (result(end=CallEnd.CUSTOMER_HUNG_UP), CallOutcome.HUNG_UP),
    (result(end=CallEnd.ANSWERING_MACHINE), CallOutcome.ANSWERING_MACHINE),
    (result(end=CallEnd.WRONG_NUMBER), CallOutcome.WRONG_NUMBER),
    (result(end=CallEnd.COMPLETED, actions=(AddToDnc("不要再打了"),)), CallOutcome.OPT_OUT),
    (result(end=CallEnd.TRANSFERRED), CallOutcome.TRANSFERRED),
    (result(actions=(Transfer("8001"),)), CallOutcome.TRANSFERRED),
    # The hand-over failed and the robot ended the call promising a callback: not "transferred".
    (result(end=CallEnd.CALLBACK, actions=(Transfer("agents"), ScheduleCallback(
        dt.datetime(2026, 11, 24, 8, tzinfo=dt.UTC), robot=False))), CallOutcome.TRANSFER_FAILED),
    (result(actions=(ScheduleCallback(dt.datetime(2026, 11, 24, 8, tzinfo=dt.UTC)),)), CallOutcome.CALLBACK),
    (result(end=CallEnd.NO_INPUT), CallOutcome.PARTIAL),
    (result(), CallOutcome.PARTIAL),
    (result(error="media failed"), CallOutcome.ERROR),
    (result(CallDisposition.FAILED, end=CallEnd.ERROR, error="runner crashed"), CallOutcome.ERROR),
    (result(end=CallEnd.COMPLETED, turns=(Turn(Speaker.ROBOT, "您好", 0, 1),)), CallOutcome.COMPLETED),
])
def test_derive_outcome(res, expected):
    assert derive_outcome(res) is expected


# ----------------------------------------------------------------- trunk back-off


def test_trunk_backoff_holds_after_a_run_of_failures_and_doubles():
    fail = ["failed"] * 10
    assert trunk_backoff(fail[:9], 10, 60) == 0
    assert trunk_backoff(fail, 10, 60) == 60
    assert trunk_backoff(fail * 2, 10, 60) == 120
    assert trunk_backoff(fail * 3, 10, 60) == 240
    assert trunk_backoff(["network_error"] * 500, 10, 60) == 1800  # capped at 30 minutes
    # one answered call among the newest breaks the run: customers are being reached
    assert trunk_backoff(["answered"] + fail * 3, 10, 60) == 0
    # busy and no-answer are the customers, not the trunk
    assert trunk_backoff(["busy", "no_answer"] * 10, 10, 60) == 0


# ----------------------------------------------------------------- policy


def test_default_policy_from_settings():
    settings = Settings(dialer_windows="08:30-11:30", dialer_retry_busy_minutes=10, dialer_max_attempts=5,
                        dialer_frequency_cap_days=3, dialer_holidays=False)
    policy = default_policy(settings)
    assert policy.windows == (Window(510, 690),)
    assert policy.retry.delay("busy") == 600 and policy.retry.max_attempts == 5
    assert policy.frequency_cap_days == 3 and policy.holidays is False
    with pytest.raises(ValueError, match="ends before"):
        default_policy(Settings(dialer_windows="12:00-09:00"))


def test_campaign_params_override_the_defaults():
    defaults = default_policy(Settings())
    params = validate_dial_params({"windows": "10:00-11:00", "retry_seconds": {"busy": 2}, "holidays": False,
                                   "frequency_cap_days": 0, "trunk_failure_threshold": 3})
    policy = dial_policy(defaults, params, max_channels=8, max_attempts=2)
    assert policy.windows == (Window(600, 660),) and policy.max_channels == 8
    assert policy.retry.delay("busy") == 2 and policy.retry.delay("no_answer") == 7200
    assert policy.retry.max_attempts == 2 and policy.frequency_cap_days == 0 and not policy.holidays
    assert policy.trunk_failure_threshold == 3
    assert isinstance(policy.calendar(), NoHolidays)


@pytest.mark.parametrize("params, message", [
    ({"windows": "9-5"}, "HH:MM"),
    ({"holidays": "no"}, "true or false"),
    ({"retry_seconds": {"ringing": 5}}, "unknown key 'ringing'"),
    ({"retry_seconds": {"busy": 0}}, "busy"),
    ({"retry_seconds": [1]}, "mapping"),
    ({"frequency_cap_days": -1}, "frequency_cap_days"),
    ({"trunk_backoff_seconds": True}, "trunk_backoff_seconds"),
])
def test_bad_dial_params_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        validate_dial_params(params)
