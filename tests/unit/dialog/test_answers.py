"""Closed answers: the expected answers of a step and the decision among them (dialog.answers)."""

from __future__ import annotations

import pytest

from callcenter.domain import OTHER_CHOICE, AnswerChoice, ChoiceScore
from dialog.answers import Decision, choices_for, decide
from dialog.nlu import Nlu
from dialog.script import shipped_scripts


@pytest.fixture(scope="module")
def nlu():
    return Nlu()  # rules only: decide() must work without the statistical model


@pytest.fixture(scope="module")
def steps():
    post = shipped_scripts()["post_service"].steps
    nps = shipped_scripts()["nps"].steps
    return {"identity": post["identity"], "score5": post["satisfaction"], "yes_no": post["car_wash"],
            "nps": nps["nps"]}


def scores(**probs: float) -> tuple[ChoiceScore, ...]:
    return tuple(ChoiceScore(k.lstrip("_"), v) for k, v in probs.items())


def labels(choices: tuple[AnswerChoice, ...]) -> dict[str, tuple[str, ...]]:
    return {c.label: c.phrases for c in choices}


def test_choices_per_question_type(steps):
    assert list(labels(choices_for(steps["score5"]))) == ["1", "2", "3", "4", "5"]
    assert list(labels(choices_for(steps["nps"]))) == [str(n) for n in range(11)]
    assert list(labels(choices_for(steps["yes_no"]))) == ["yes", "no"]
    assert list(labels(choices_for(steps["identity"]))) == ["yes", "no", "busy"]
    five = labels(choices_for(steps["score5"]))["5"]
    assert {"五分", "五", "非常满意", "满分", "十分满意"} <= set(five)
    assert "两分" in labels(choices_for(steps["score5"]))["2"]
    assert {"满分", "十分"} <= set(labels(choices_for(steps["nps"]))["10"])
    assert {"是我", "方便"} <= set(labels(choices_for(steps["identity"]))["yes"])
    assert {"洗了", "没洗"} <= set(labels(choices_for(steps["yes_no"]))["yes"] + labels(choices_for(steps["yes_no"]))["no"])


def test_open_questions_have_no_choices():
    steps = shipped_scripts()["post_service"].steps
    assert choices_for(steps["improvement"]) is None  # expect: text


def test_the_steps_own_grammar_goes_under_the_label_it_means(steps):
    from dataclasses import replace

    step = replace(steps["yes_no"], grammar=("帮我洗过了", "没帮我洗", "[unk]"))
    got = labels(choices_for(step))
    assert "帮我洗过了" in got["yes"] and "没帮我洗" in got["no"]
    assert not any("[unk]" in p for ps in got.values() for p in ps)
    step = replace(steps["score5"], grammar=("四颗星", "非常非常满意"))
    got = labels(choices_for(step))
    assert "四颗星" in got["4"] and "非常非常满意" in got["5"]


def test_every_phrase_is_unique_to_its_label(steps):
    for step in steps.values():
        seen: dict[str, str] = {}
        for choice in choices_for(step):
            for phrase in choice.phrases:
                assert seen.setdefault(phrase, choice.label) == choice.label, (step.expect, phrase)


def test_answer_choice_validates():
    with pytest.raises(ValueError, match="other"):
        AnswerChoice(OTHER_CHOICE, ("x",))
    with pytest.raises(ValueError, match="phrase"):
        AnswerChoice("yes", ())


def test_bare_score_misheard_as_an_unrelated_word_is_decided_by_the_audio(nlu):
    # "五分。" came back as 舞蹈: no score in the text, but the model scored 五分 best on the audio.
    d = decide("score5", nlu.parse("舞蹈", "sat"), scores(**{"5": 0.7, "4": 0.1, OTHER_CHOICE: 0.2}))
    assert d == Decision("5", 0.7, "audio")


def test_text_and_audio_agree(nlu):
    d = decide("score5", nlu.parse("五分", "sat"), scores(**{"5": 0.9, "4": 0.05, OTHER_CHOICE: 0.05}))
    assert d.label == "5" and d.source == "both" and d.confidence > 0.9


def test_a_long_answer_that_means_a_label_takes_the_other_share(nlu):
    # "嗯，是我，你说吧，什么事" matches no phrase (the audio says "other"), the text says yes.
    d = decide("identity", nlu.parse("嗯,是我,你说吧", "id"), scores(yes=0.2, no=0.05, _other=0.75))
    assert d.label == "yes" and d.confidence > 0.5


def test_nothing_fits_is_unclear_with_a_confidence(nlu):
    d = decide("score5", nlu.parse("那个服务顾问姓什么来着", "sat"), scores(**{"3": 0.05, "5": 0.05, OTHER_CHOICE: 0.9}))
    assert d.label is None and d.confidence >= 0.9


def test_one_misheard_word_does_not_turn_yes_into_no(nlu):
    # "是我" heard as "不是": the text says no, the audio scores 是我 far above 不是.
    d = decide("identity", nlu.parse("不是", "id"), scores(yes=0.85, no=0.12, _other=0.03))
    assert d.label == "yes"
    # Audio and text split evenly: unclear (the dialog asks again or confirms), never a plain "no".
    d = decide("identity", nlu.parse("不是", "id"), scores(yes=0.45, no=0.4, _other=0.15))
    assert d.label != "no" or d.confidence < 0.6


def test_off_script_intents_are_left_to_the_dialog(nlu):
    d = decide("identity", nlu.parse("别再给我打电话了", "id"), scores(no=0.6, _other=0.4))
    assert d.label is None and d.source == "intent:opt_out"
    d = decide("score5", nlu.parse("转人工", "sat"), scores(**{"5": 0.3, OTHER_CHOICE: 0.7}))
    assert d.source == "intent:ask_human"


def test_busy_is_an_identity_answer(nlu):
    d = decide("identity", nlu.parse("我在开车呢", "id"), scores(busy=0.7, yes=0.1, _other=0.2))
    assert d.label == "busy"


def test_without_acoustic_scores_the_text_decides(nlu):
    assert decide("nps", nlu.parse("九分吧", "nps")).label == "9"
    assert decide("score5", nlu.parse("十分满意", "sat")).label == "5"
    assert decide("score5", nlu.parse("满分", "sat")).label == "5"
    unclear = decide("score5", nlu.parse("嗯", "sat"))
    assert unclear.label is None and unclear.confidence > 0.5


def test_scores_are_renormalised_and_bad_input_is_refused(nlu):
    d = decide("yes_no", nlu.parse("", "yn"), scores(yes=2.0, no=0.0, _other=0.0))
    assert d.label == "yes" and d.confidence == 1.0
    with pytest.raises(ValueError, match="closed question"):
        decide("text", nlu.parse("好", "open"))


def test_an_explicit_score_in_the_text_outweighs_a_lukewarm_audio_rival(nlu):
    # "二分" transcribed right, the audio slightly prefers 三: the words carry it.
    d = decide("score5", nlu.parse("二分", "sat"), scores(**{"3": 0.5, "2": 0.35, "4": 0.1, OTHER_CHOICE: 0.05}))
    assert d.label == "2"
    # The audio sure of another answer: not the text's answer on its own.
    d = decide("score5", nlu.parse("二分", "sat"), scores(**{"3": 0.995, "2": 0.004, OTHER_CHOICE: 0.001}))
    assert d.label != "2"


def test_words_the_recognizer_doubted_weigh_no_more_than_the_audio(nlu):
    # A bare 五分 on a bad line came back as "二分" at the decoder's own 0.12: words and audio that
    # disagree are no answer (the dialog restates the audio's score), where the same words heard with
    # confidence would have carried it; audio sure of its answer decides.
    audio = scores(**{"5": 0.6, "2": 0.3, OTHER_CHOICE: 0.1})
    assert decide("score5", nlu.parse("二分", "sat"), audio).label == "2"
    assert decide("score5", nlu.parse("二分", "sat"), audio, asr=0.7).label == "2"
    assert decide("score5", nlu.parse("二分", "sat"), audio, asr=0.12).label is None
    sure = decide("score5", nlu.parse("二分", "sat"), scores(**{"5": 0.85, "2": 0.1, OTHER_CHOICE: 0.05}), asr=0.12)
    assert sure.label == "5" and sure.source == "audio"
    # without audio scores the words still decide, doubted or not
    assert decide("score5", nlu.parse("二分", "sat"), (), asr=0.12).label == "2"
