"""Prompt identification: the robot's rendered prompts in (through G.711), the question out."""

import numpy as np
import pytest

from campaigns.simulator.fingerprint import HOP, PromptKind, features, frame_db, prompt_refs
from campaigns.simulator.turns import TurnTaker

POST_SERVICE_QUESTIONS = ("identity", "satisfaction", "improvement", "advisor", "car_wash", "on_time",
                          "anything_else", "callback_time")


def voiced_end(pcm: bytes) -> bytes:
    """The audio up to its last frame of speech (what the customer has when the robot stops)."""
    n = len(pcm) // (2 * HOP)
    last = max(i for i in range(n) if frame_db(pcm[i * 2 * HOP:(i + 1) * 2 * HOP]) > -40)
    return pcm[: (last + 1) * 2 * HOP]


def locate(index, pcm: bytes, shift: int = 0):
    f = features(np.frombuffer(pcm, dtype="<i2")[shift:])
    return index.locate(f[-TurnTaker.BUFFER_FRAMES:])


@pytest.mark.parametrize("step", POST_SERVICE_QUESTIONS)
def test_each_post_service_question_is_recognised_when_it_ends(index, robot, step):
    pcm = voiced_end(robot("post_service", step))
    for shift in (0, 37, 113):  # the robot's frames do not line up with ours
        match = locate(index, pcm, shift)
        assert match is not None and match.ends_prompt(), (step, shift)
        ref = index.refs(match, "post_service")[0]
        assert (ref.script, ref.step, ref.kind) == ("post_service", step, PromptKind.QUESTION)
        assert match.score > 0.9 and match.windows >= 2


def test_every_prompt_of_every_shipped_script_is_found_by_its_last_fragment(index, robot, scripts):
    missed = []
    for script in scripts.values():
        for ref, template in prompt_refs(script):
            match = locate(index, voiced_end(robot(script.id, "", template=template)))
            if match is None or not match.ends_prompt() or ref not in index.refs(match, script.id):
                missed.append(ref.prompt_id)
    assert missed == []
    assert sum(len(prompt_refs(s)) for s in scripts.values()) > 150


def test_a_pause_inside_a_prompt_is_not_its_end(index, robot):
    # post_service.identity pauses 0.7 s after "……的客服专员。": the customer must keep waiting.
    match = locate(index, voiced_end(robot("post_service", "identity", upto="的客服专员")))
    assert match is not None and match.fragment.text.startswith("的客服专员")
    assert not match.fragment.final and not match.ends_prompt()
    assert "identity" in {r.step for r in match.fragment.inner}


def test_the_customers_own_words_match_no_prompt(index, book):
    from callcenter.telephony.audio import load_prompt

    false = []
    for persona, answer in book.all_answers():
        pcm = load_prompt(answer.audio, 8000)
        if len(pcm) < 2 * HOP * 40:
            continue
        match = locate(index, voiced_end(pcm))
        if match is not None:
            false.append((answer.audio.name, match.fragment.text, round(match.score, 3)))
    assert false == []


def test_part_of_a_question_tells_how_much_is_left(index, robot):
    pcm = voiced_end(robot("post_service", "advisor"))
    total = len(pcm) / 16000
    for fraction in (0.5, 0.7):
        head = pcm[: int(len(pcm) * fraction) // 320 * 320]
        match = locate(index, head)
        assert match is not None and match.fragment.final[0].step == "advisor"
        assert match.remaining == pytest.approx(total * (1 - fraction), abs=0.15)
        assert not match.ends_prompt()


def test_a_re_prompt_ends_with_the_question_it_repeats(index, robot):
    pcm = voiced_end(robot("post_service", "no_match", "car_wash"))
    match = locate(index, pcm)
    assert index.refs(match, "post_service")[0].step == "car_wash"
    pcm = voiced_end(robot("post_service", "no_match_score5"))
    ref = index.refs(locate(index, pcm), "post_service")[0]
    assert (ref.kind, ref.step) == (PromptKind.REPROMPT, None)  # "a number from 1 to 5": the current question


def test_goodbyes_and_statements_are_classified(index, robot):
    for script, key, kind in (("post_service", "end_thanks", PromptKind.END), ("post_service", "transfer", PromptKind.END),
                              ("new_car", "first_service", PromptKind.STATEMENT),
                              ("post_service", "goodbye_no_input", PromptKind.END)):
        ref = index.refs(locate(index, voiced_end(robot(script, key))), script)[0]
        assert ref.kind is kind, (script, key)
    ref = index.refs(locate(index, voiced_end(robot("post_service", "transfer"))), "post_service")[0]
    assert ref.action == "transfer"


def test_too_little_audio_is_not_guessed_at(index, robot):
    pcm = voiced_end(robot("post_service", "car_wash"))
    assert locate(index, pcm[: 2 * HOP * 60]) is None  # 1.2 s: two windows are needed
    assert index.locate(features(bytes(2 * HOP * 100))) is None  # silence


def test_frame_energy():
    assert frame_db(bytes(320)) == -100.0
    full = (np.ones(160) * 32767).astype("<i2").tobytes()
    assert frame_db(full) == pytest.approx(0.0, abs=0.01)
    assert features(b"").shape == (0, 16)
