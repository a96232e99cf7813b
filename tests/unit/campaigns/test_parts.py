"""Small pure parts of the campaigns package: actions, filters, scripts, stream entries, keys, sanitising."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from callcenter.domain import CallDisposition, Department, FeedbackCategory, Speaker
from callcenter.domain.calls import (
    AddToDnc,
    CallResult,
    HangUp,
    OpenTicket,
    RecordAnswer,
    ScheduleCallback,
    Transfer,
    Turn,
    action_from_dict,
    action_to_dict,
)
from callcenter.storage import keys
from callcenter.storage.models import CampaignType
from campaigns.audience import AudienceError, sample_key_int, surname_of, title_of, validate_audience_params
from campaigns.filters import load_filter, validate_filter
from campaigns.outcomes import sanitize
from campaigns.queue import parse_entry
from campaigns.scripts import DEFAULT_SCRIPT, available_scripts, check_script

# ----------------------------------------------------------------- actions


@pytest.mark.parametrize("action", [
    RecordAnswer("satisfaction", 5, "非常满意"),
    OpenTicket("客户反馈：等待时间过长", category=FeedbackCategory.WAIT_TIME, priority="high"),
    OpenTicket("保险咨询", department=Department.INSURANCE, ticket_kind="follow_up"),
    ScheduleCallback(dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))), "下午三点以后"),
    AddToDnc("客户要求不再来电"),
    Transfer("8001", agent_id=3),
    HangUp("completed"),
])
def test_actions_survive_a_json_round_trip(action):
    data = json.loads(json.dumps(action_to_dict(action), ensure_ascii=False))
    assert data["kind"] == action.kind
    assert action_from_dict(data) == action


@pytest.mark.parametrize("data, message", [
    ({"kind": "sing"}, "unknown action kind"),
    ({"title": "x"}, "unknown action kind"),
    ({"kind": "open_ticket", "title": "x", "category": "weather"}, "malformed open_ticket"),
    ({"kind": "schedule_callback", "at": "2026-11-24T15:00:00"}, "time zone"),
    ({"kind": "transfer"}, "malformed transfer"),
])
def test_malformed_actions_are_named(data, message):
    with pytest.raises(ValueError, match=message):
        action_from_dict(data)


# ----------------------------------------------------------------- filters


def test_validate_filter_normalises():
    spec = validate_filter({"cities": "长沙市", "purchased_before": dt.date(2023, 1, 1), "classes": ["base", "lapsed"],
                            "customer_ids": [3, 1, 3], "age_min": 30, "age_max": 50})
    assert spec == {"cities": ["长沙市"], "purchased_before": "2023-01-01", "classes": ["lapsed"],
                    "customer_ids": [1, 3], "age_min": 30, "age_max": 50}


@pytest.mark.parametrize("spec, message", [
    ({}, "empty"),
    ({"colour": ["red"]}, "unknown key 'colour'"),
    ({"purchased_before": "last year"}, "not a date"),
    ({"tiers": ["luxury"]}, "'luxury' is not one of"),
    ({"age_min": 50, "age_max": 30}, "age_min is greater"),
    ({"gender": "male"}, "M or F"),
    ({"visited_after": "2026-05-01", "visited_before": "2026-01-01"}, "visited_after is after"),
    ({"customer_ids": [0]}, "customer ids"),
    ({"insured_here": "yes"}, "true or false"),
])
def test_validate_filter_rejects_with_the_key_named(spec, message):
    with pytest.raises(ValueError, match=message):
        validate_filter(spec)


def test_validate_filter_rejects_a_non_mapping():
    with pytest.raises(TypeError):
        validate_filter(["cities"])


def test_load_filter_inline_file_and_saved_name(tmp_path):
    assert load_filter('{"tiers": ["premium"]}', None) == {"tiers": ["premium"]}
    (tmp_path / "filters").mkdir()
    (tmp_path / "filters" / "zhuzhou-premium.yaml").write_text("cities: [株洲市]\ntiers: [premium]\n", encoding="utf-8")
    assert load_filter("zhuzhou-premium", tmp_path) == {"cities": ["株洲市"], "tiers": ["premium"]}
    other = tmp_path / "f.yaml"
    other.write_text("gender: F\n", encoding="utf-8")
    assert load_filter(str(other), tmp_path) == {"gender": "F"}
    with pytest.raises(ValueError, match="no saved filter 'nope'"):
        load_filter("nope", tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("cities: [长沙市\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON/YAML"):
        load_filter(str(bad), tmp_path)
    (tmp_path / "filters" / "wrong.yaml").write_text("colour: red\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"wrong\.yaml: filter: unknown key"):
        load_filter("wrong", tmp_path)


# ----------------------------------------------------------------- scripts


def test_scripts_from_the_data_dir_are_available(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "post_service.yaml").write_text("id: post_service\n")
    (tmp_path / "scripts" / "My Script.yaml").write_text("ignored: bad id\n")
    (tmp_path / "scripts" / "notes.txt").write_text("ignored\n")
    found = available_scripts(tmp_path)
    assert "post_service" in found and found["post_service"].parent == tmp_path / "scripts"
    assert "My Script" not in found and "notes" not in found


def test_check_script_names_what_is_available():
    assert check_script("post_service", {"post_service"}) == "post_service"
    with pytest.raises(ValueError, match=r"unknown script 'nps' \(available: post_service\)"):
        check_script("nps", {"post_service"})
    with pytest.raises(ValueError, match="none installed"):
        check_script("nps", set())
    with pytest.raises(ValueError, match="lower-case"):
        check_script("../etc/passwd", {"post_service"})


def test_every_type_but_custom_has_a_default_script():
    assert set(DEFAULT_SCRIPT) == set(CampaignType) - {CampaignType.CUSTOM}


# ----------------------------------------------------------------- stream entries and keys


def test_parse_entry_reads_bytes_or_text_and_rejects_junk():
    msg = parse_entry(b"1-0", {b"task": b"7", b"attempt": b"2", b"campaign": b"3"})
    assert (msg.id, msg.task_id, msg.attempt, msg.campaign_id) == ("1-0", 7, 2, 3)
    assert parse_entry("2-0", {"task": "8", "attempt": "1", "campaign": "3"}).task_id == 8
    assert parse_entry("3-0", {"task": "x", "attempt": "1", "campaign": "3"}) is None
    assert parse_entry("4-0", {"hello": "world"}) is None
    assert parse_entry("5-0", None) is None


def test_alive_key_accepts_worker_ids_only():
    assert keys.alive_key("dialer-01.lan:4242") == "cc:dialer:alive:dialer-01.lan:4242"
    for bad in ("", "host", "host:pid", "a b:1", "x:1\r\nFLUSHALL"):
        with pytest.raises(ValueError):
            keys.alive_key(bad)


# ----------------------------------------------------------------- audience helpers


@pytest.mark.parametrize("name, surname", [("王伟", "王"), ("欧阳娜娜", "欧阳"), ("欧阳", "欧"), ("", ""), (None, "")])
def test_surname_of(name, surname):
    assert surname_of(name) == surname


def test_title_of():
    assert title_of("M") == "先生" and title_of("F") == "女士" and title_of(None) == ""


def test_sample_key_is_stable_and_spreads():
    assert sample_key_int(42, 0) == sample_key_int(42, 0)
    assert sample_key_int(42, 0) != sample_key_int(42, 1)
    ranks = sorted(range(1, 1001), key=lambda i: sample_key_int(i, 7))
    assert ranks != list(range(1, 1001))
    # no clustering by id: the first tenth of the ranking comes from all over the id range
    first = ranks[:100]
    assert min(first) < 200 and max(first) > 800
    assert all(0 <= sample_key_int(i, 3) < 4294967291 for i in (1, 10**6, 10**9))


@pytest.mark.parametrize("ctype, params, message", [
    (CampaignType.POST_SERVICE, {"window_days": [3, 1]}, "window_days"),
    (CampaignType.POST_SERVICE, {"touches": ["day3"]}, "does not apply to post_service"),
    (CampaignType.NEW_CAR, {"touches": ["day99"]}, "touches"),
    (CampaignType.INSURANCE_RENEWAL, {"insured": "maybe"}, "insured"),
    (CampaignType.INSURANCE_RENEWAL, {"touch_days": [30, 30]}, "distinct"),
    (CampaignType.WINBACK, {"reason_sample": 15}, "share between 0 and 1"),
    (CampaignType.NPS, {"sample": 0.1, "sample_size": 10}, "either"),
    (CampaignType.CUSTOM, {}, "need a filter"),
    (CampaignType.CUSTOM, {"filter": {"colour": "red"}}, "unknown key"),
])
def test_audience_params_are_checked(ctype, params, message):
    with pytest.raises(AudienceError, match=message):
        validate_audience_params(ctype, params)


def test_audience_params_get_their_defaults():
    assert validate_audience_params(CampaignType.POST_SERVICE, {}) == {"window_days": [1, 3]}
    assert validate_audience_params(CampaignType.WINBACK, {})["reason_sample"] == 0.15
    assert validate_audience_params(CampaignType.INSURANCE_RENEWAL, {"touch_days": [7, 60, 30]})["touch_days"] \
        == [60, 30, 7]
    # dialing parameters are allowed beside the audience's
    assert validate_audience_params(CampaignType.NPS, {"windows": "10:00-11:00"})["sample"] == 0.1


# ----------------------------------------------------------------- sanitising a runner's result


def test_sanitize_keeps_what_can_be_stored_and_says_what_it_dropped():
    good = CallResult(disposition=CallDisposition.ANSWERED, score5=4, nps=9, recording="recordings/2026/11/1.wav",
                      turns=(Turn(Speaker.ROBOT, "您好", 0.0, 1.0),))
    assert sanitize(good) == (good, [])
    bad = CallResult(disposition="busy", score5=7, nps=11, recording="../../etc/passwd",
                     answered_at=dt.datetime(2026, 11, 23, 10, 0),
                     turns=(Turn(Speaker.CUSTOMER, "很" * 5000, 0.0, 1.0), "not a turn"))
    clean, problems = sanitize(bad)
    assert clean.disposition is CallDisposition.BUSY
    assert clean.score5 is None and clean.nps is None and clean.recording is None and clean.answered_at is None
    assert len(clean.turns) == 1 and len(clean.turns[0].text) == 4000
    text = " | ".join(problems)
    for needle in ("score5=7", "nps=11", "recording path", "answered_at", "truncated", "turn 1 is malformed"):
        assert needle in text
    assert sanitize(CallResult(disposition="ringing"))[0].disposition is CallDisposition.FAILED
    assert sanitize(CallResult(disposition=CallDisposition.ANSWERED, recording="/abs/x.wav"))[0].recording is None
