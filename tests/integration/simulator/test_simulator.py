"""The simulated customers over real SIP: robot stand-ins (pjsua2, through callcenter.telephony)
dial ``callcenter simulate`` on 127.0.0.1 and play the shipped post_service prompts in order.

One batch of 16 concurrent calls (4 stand-in processes x 4 calls) against a simulator of exactly
4 phones x 4 calls runs once for the module (``campaign``): 16 calls through one address with no
slot to spare proves the front balances exactly (a full pjsua would answer "486" itself); the
tests then check each persona's behaviour in it. Busy, ring-out and a killed phone process are
separate calls.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from callcenter.telephony.audio import load_prompt
from campaigns.personas import load_personas

from .conftest import RunningSimulator, run_stand_ins

pytestmark = [pytest.mark.integration, pytest.mark.sip, pytest.mark.slow]

FULL = ["identity", "satisfaction", "improvement", "advisor", "car_wash", "on_time", "anything_else", "end_thanks"]
SHORT = ["identity", "satisfaction", "end_thanks"]
BOOK = load_personas()
BATCHES = [
    [{"number": "13900000001", "prompts": FULL}, {"number": "13900000002", "prompts": FULL},
     {"number": "13900000005", "prompts": FULL}, {"number": "13900000010",
                                                   "prompts": ["identity", "callback_time", "end_callback"]}],
    [{"number": "13900000003", "prompts": SHORT}, {"number": "13900000004", "prompts": SHORT},
     {"number": "13900000008", "prompts": ["identity", "satisfaction", "advisor"]},
     {"number": "13900000009", "prompts": ["identity", "end_wrong_number"]}],
    [{"number": "13900000011", "prompts": ["identity", "end_opt_out"]},
     {"number": "13900000012", "prompts": ["identity", "transfer"]},
     {"number": "13900000013", "prompts": ["identity"]}, {"number": "13712345678", "prompts": SHORT}],
    [{"number": "13712340001", "prompts": SHORT}, {"number": "13712340002", "prompts": SHORT},
     {"number": "913900000001", "prompts": SHORT}, {"number": "13712340003", "prompts": SHORT}],
]


def speech_seconds(path) -> float:
    pcm = load_prompt(path, 8000)
    x = np.frombuffer(pcm[: len(pcm) // 320 * 320], dtype="<i2").astype(float).reshape(-1, 160)
    voiced = np.nonzero(10 * np.log10((x ** 2).mean(axis=1) / 32768 ** 2 + 1e-12) > -40)[0]
    return (voiced[-1] - voiced[0] + 1) * 0.02 if len(voiced) else 0.0


@pytest.fixture(scope="module")
def campaign(simulator: RunningSimulator, tmp_path_factory):
    results = run_stand_ins(simulator, tmp_path_factory.mktemp("robots"), BATCHES)
    by_number = {r["number"]: r for r in results}
    assert all("error" not in r for r in results), [r for r in results if "error" in r]
    logs = {r["number"]: simulator.log_for(r["sip_call_id"]) for r in results}
    return by_number, logs


def test_sixteen_concurrent_calls_through_one_address(campaign):
    results, logs = campaign
    assert len(results) == 16
    assert {r["disposition"] for r in results.values()} == {"answered"}, \
        {n: (r["disposition"], r["reason"]) for n, r in results.items()}
    # All 16 were up at the same time, 4 on each phone process: the front filled every slot, none twice.
    spans = sorted((log["answered_at"], log["ended_at"]) for log in logs.values())
    latest_start = max(s for s, _e in spans)
    assert all(e > latest_start for _s, e in spans), "not all 16 calls overlapped"
    workers = [log["worker"] for log in logs.values()]
    assert sorted(workers.count(w) for w in set(workers)) == [4, 4, 4, 4]


@pytest.mark.parametrize("number", ["13900000001", "13900000002", "13900000003", "13900000004", "13712345678"])
def test_each_prompt_is_answered_after_the_robot_stops(campaign, number):
    results, logs = campaign
    result, log = results[number], logs[number]
    persona = BOOK.for_number(number)
    questions = [t["prompt"] for t in result["turns"] if not t["prompt"].startswith("end_")]
    assert log["persona"] == persona.id and log["questions"] == questions
    for turn in result["turns"]:
        if turn["prompt"].startswith("end_"):
            assert turn["reply_start"] is None  # nobody answers a goodbye
            continue
        gap = turn["reply_start"] - turn["prompt_end"]
        assert 0.2 < gap < 1.8, (turn["prompt"], gap)  # after the robot stopped, like a person
        expected = speech_seconds(persona.answers[turn["prompt"]].audio)
        assert turn["reply_end"] - turn["reply_start"] == pytest.approx(expected, abs=0.5), turn["prompt"]
    said = {a["question"]: a["text"] for a in log["answers"] if a["question"]}
    assert said == {q: persona.answers[q].text for q in questions}
    assert log["script"] == "post_service" and log["error"] is None


def test_the_angry_customer_barges_in(campaign):
    results, logs = campaign
    turns = [t for t in results["13900000005"]["turns"] if not t["prompt"].startswith("end_")]
    assert len(turns) == 7
    for turn in turns:
        assert turn["reply_start"] < turn["prompt_end"], turn  # talks over the end of every question
        assert turn["prompt_end"] - turn["reply_start"] < 2.2, turn
    assert {a["reason"] for a in logs["13900000005"]["answers"] if a["question"]} == {"barge-in"}


def test_hangs_up_early_after_the_first_answer(campaign):
    results, logs = campaign
    result, log = results["13900000008"], logs["13900000008"]
    assert log["questions"] == ["identity"] and log["hangup_by"] == "local"
    assert result["hangup_by"] == "remote" and result["hung_up_by_customer_at"] is not None
    first = result["turns"][0]
    assert result["hung_up_by_customer_at"] - first["reply_end"] < 1.5


def test_goodbye_personas_answer_once_and_leave(campaign):
    results, logs = campaign
    for number, persona in (("13900000009", "wrong_number"), ("13900000011", "opt_out"), ("13900000010", "callback")):
        log = logs[number]
        assert log["persona"] == persona
        heard = [e["prompt"] for e in log["events"] if e["kind"] == "heard"]
        assert heard[-1].startswith("post_service.end_"), heard
        assert results[number]["turns"][-1]["reply_start"] is None
    assert logs["13900000010"]["questions"] == ["identity", "callback_time"]
    assert [a["text"] for a in logs["13900000010"]["answers"] if a["question"]] == \
        ["是我，不过我现在在开会，不太方便，你晚点再打吧。", "明天下午三点以后吧。"]


def test_answering_machine_plays_its_greeting_and_never_answers(campaign):
    results, logs = campaign
    result, log = results["13900000013"], logs["13900000013"]
    start, end = result["greeting"]
    assert end - start > 5.0  # a monologue, not a "喂"
    assert result["turns"][0]["reply_start"] is None
    assert [a["key"] for a in log["answers"]] == ["greeting"]


def test_unlisted_numbers_and_dial_prefixes(campaign):
    _results, logs = campaign
    assert logs["13712345678"]["persona"] == "satisfied"  # the file's default
    assert logs["913900000001"]["persona"] == "satisfied"  # 13900000001 behind a "9" prefix
    assert logs["913900000001"]["number"] == "913*****0001"  # masked as dialled


def test_busy_number_gets_486_through_the_front(robot_phone):
    call = robot_phone.dial("13900000006")
    result = call.wait_ended(10)
    assert (result.disposition.value, result.sip_code) == ("busy", 486)


def test_no_answer_rings_until_the_caller_gives_up(robot_phone, simulator):
    call = robot_phone.dial("13900000007", ring_timeout=4)
    result = call.wait_ended(15)
    assert (result.disposition.value, result.hangup_by.value) == ("no_answer", "local")
    assert 3.5 < result.ring_seconds < 6 and result.ringing_at is not None
    log = simulator.log_for(call.sip_call_id)
    assert (log["persona"], log["disposition"], log["hangup_by"], log["reason"]) == \
        ("no_answer", "no_answer", "remote", "caller cancelled")


def test_a_killed_phone_process_is_replaced_and_calls_go_on(robot_phone, simulator):
    pids = simulator.phone_pids()
    assert len(pids) == 4
    os.kill(pids[0], signal.SIGKILL)
    call = robot_phone.dial("13900000006")  # routed to a live phone at once
    assert call.wait_ended(10).sip_code == 486
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = simulator.phone_pids()
        new = set(now) - set(pids)
        # The replacement logs "started (pid N)", then "... fingerprinted" once it can answer (the
        # front's "restarted (pid old -> N)" line may come before or after that one).
        log, marker = simulator.stderr.read_text(), f"started (pid {new.pop()})" if new else None
        if len(now) == 4 and pids[0] not in now and marker in log and "fingerprinted" in log.split(marker)[-1]:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"phone {pids[0]} was not replaced: {simulator.stderr.read_text()[-2000:]}")
    calls = [robot_phone.dial("13900000006") for _ in range(4)]
    assert [c.wait_ended(10).sip_code for c in calls] == [486] * 4


@pytest.fixture(scope="module")
def robot_phone(simulator, tmp_path_factory):
    from callcenter.telephony import SipConfig, open_phone

    from .conftest import free_ports

    sip = SipConfig(bind_address="127.0.0.1", sip_port=free_ports(1), rtp_port=free_ports(40), rtp_port_range=40,
                    trunk=simulator.trunk, ring_timeout=10, recordings_dir=tmp_path_factory.mktemp("rec"))
    phone = open_phone(sip, name="robot")
    yield phone
    phone.close()
