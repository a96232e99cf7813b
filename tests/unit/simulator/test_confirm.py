"""Confirmations and re-asks (issue 11 contract): the robot restates an answer ("跟您确认一下,……,对吗?",
prompt id ``{script}.{step}.confirm.{label}``); the persona says 对 when the label is what it meant,
else 不是, and answers the question again with its next line.

The shipped scripts have no confirmation prompts yet, so this builds a synthetic prompt library:
post_service plus three confirmations, whose audio is shipped prompt audio played backwards (speech
spectra, but no window of it matches any real prompt's).
"""

from __future__ import annotations

import wave

import numpy as np
import pytest

from campaigns.personas import load_personas
from campaigns.simulator.fingerprint import PromptIndex, PromptKind, prompt_refs
from tests.unit.simulator.conftest import g711
from tests.unit.simulator.test_turns import Line, taker

CONFIRMS = {
    "post_service.satisfaction.confirm.5": ("跟您确认一下,您打的是五分,对吗?", "advisor"),
    "post_service.satisfaction.confirm.3": ("跟您确认一下,您打的是三分,对吗?", "car_wash"),
    "post_service.on_time.confirm.no": ("跟您确认一下,车没有按约定时间交给您,对吗?", "anything_else"),
    # One sentence for every step, as the shipped scripts' confirm_opt_out.
    "post_service.identity.confirm.opt_out": ("跟您确认一下,您以后不想再接到我们的电话,对吗?", "improvement"),
    "post_service.satisfaction.confirm.opt_out": ("跟您确认一下,您以后不想再接到我们的电话,对吗?", "improvement"),
}


class _WithConfirms:
    """post_service as the lead's confirmations will make it: the same script, more prompts."""

    def __init__(self, script) -> None:
        self._script = script

    def __getattr__(self, name):
        return getattr(self._script, name)

    def all_prompts(self) -> dict[str, str]:
        return {**self._script.all_prompts(), **{pid: text for pid, (text, _src) in CONFIRMS.items()}}


@pytest.fixture(scope="module")
def confirm_world(tmp_path_factory, scripts):
    from dialog.prompts import PromptLibrary, read_wav

    shipped = PromptLibrary()
    overlay = tmp_path_factory.mktemp("confirm-audio")
    manifest = {}
    for i, (text, source) in enumerate(dict(CONFIRMS.values()).items()):
        pcm = read_wav(shipped.path(scripts["post_service"].steps[source].say), 8000)[::-1].copy()
        name = f"confirm{i}.wav"
        with wave.open(str(overlay / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm.astype("<i2").tobytes())
        manifest[text] = name
    import json

    (overlay / "manifest.json").write_text(json.dumps({"fragments": manifest}, ensure_ascii=False))
    library = PromptLibrary(overlay=overlay)
    script = _WithConfirms(scripts["post_service"])
    index = PromptIndex.build({"post_service": script}, library)

    def robot(key: str) -> bytes:
        text = CONFIRMS[key][0] if key in CONFIRMS else script.steps[key].say if key in script.steps \
            else script.prompt(key)
        from dialog.prompts import render
        from tests.unit.simulator.conftest import VALUES

        return g711(library.pcm(render(text, VALUES, script.variables, library)[1], 8000))

    return script, index, robot


def test_confirmation_prompts_are_classified_by_their_id(confirm_world):
    script, _index, _robot = confirm_world
    refs = {ref.prompt_id: ref for ref, _t in prompt_refs(script)}
    ref = refs["post_service.satisfaction.confirm.5"]
    assert (ref.kind, ref.step, ref.label, ref.context) == (PromptKind.CONFIRM, "satisfaction", "5", "sat")
    assert refs["post_service.on_time.confirm.no"].label == "no"


def _said(line: Line) -> list[tuple[str, str]]:
    return [(a.key, a.line.text) for _t, a in line.speaks() if a.key != "hello"]


def test_yes_when_the_robot_restates_what_the_persona_meant(book, confirm_world):
    _script, index, robot = confirm_world
    line = Line(taker(book, index, "satisfied")).answer().silence(0.5).until_quiet()
    for key in ("satisfaction", "post_service.satisfaction.confirm.5"):
        line.robot(robot(key)).silence(1.0).until_quiet()
    said = _said(line)
    assert said[-1] == ("confirm_yes", "对，是的。")
    assert line.turns.questions[-1] == "satisfaction.confirm.5"


def test_no_then_the_question_again(book, confirm_world):
    _script, index, robot = confirm_world
    line = Line(taker(book, index, "complains_wait")).answer().silence(0.5)
    for key in ("satisfaction", "post_service.satisfaction.confirm.5", "no_match_score5", "satisfaction"):
        line.robot(robot(key)).silence(1.0).until_quiet()
    said = _said(line)
    first = book.personas["complains_wait"].answers["satisfaction"].text
    # 三分 meant: "五分, 对吗?" gets 不是; the score re-prompt and the question again get the answer again.
    assert said == [("satisfaction", first), ("confirm_no", "不是。"), ("satisfaction", first), ("satisfaction", first)]


def test_a_yes_no_reprompt_after_a_confirmation_repeats_the_confirmation_answer(book, confirm_world):
    _script, index, robot = confirm_world
    for persona, reply in (("satisfied", "confirm_no"), ("complains_wait", "confirm_yes")):
        line = Line(taker(book, index, persona)).answer().silence(0.5).until_quiet()
        for key in ("on_time", "post_service.on_time.confirm.no", "no_match_yes_no"):
            line.robot(robot(key)).silence(1.0).until_quiet()
        # "车没有按约定时间交给您,对吗?": satisfied was on time (不是), complains_wait means "no" (对).
        assert [k for k, _t in _said(line)] == ["on_time", reply, reply], persona


def test_means_and_answer_lists_from_a_personas_file(tmp_path, confirm_world):
    _script, index, _robot = confirm_world
    (tmp_path / "p.yaml").write_text("""
version: 1
questions:
  satisfaction: {context: sat}
  on_time: {context: yn}
personas:
  asks_first:
    answers:
      satisfaction: [五分是最高吗？, 那就五分。, 五分。]
      on_time: 晚了一个钟头。
    means: {on_time: "no"}
    confirm: {yes: 对对对。}
    expect: {outcome: completed, score5: 5}
""", encoding="utf-8")
    book = load_personas(tmp_path / "p.yaml")
    p = book.personas["asks_first"]
    assert [a.audio.name for a in p.answer_lists["satisfaction"]] == [
        "asks_first__satisfaction.wav", "asks_first__satisfaction__2.wav", "asks_first__satisfaction__3.wav"]
    assert book.means(p, "satisfaction") == {"5"} and book.means(p, "on_time") == {"no"}
    assert [book.answer(p, "satisfaction", attempt=i).text for i in range(4)] == [
        "五分是最高吗？", "那就五分。", "五分。", "五分。"]  # the last repeats
    assert p.confirm_yes.text == "对对对。" and p.confirm_no.text == "不是。"
    assert {line["id"] for line in book.render_lines()} >= {"asks_first__confirm_yes", "asks_first__satisfaction__3"}
    # The turn-taker asks the book for the next line on each re-ask, and says yes to "没有按时, 对吗?".
    from campaigns.simulator.turns import TurnTaker

    turns = TurnTaker(p, book, index)
    assert turns._answer(0.0, "satisfaction", "sat")[0].line.text == "五分是最高吗？"
    turns.state = turns.state.LISTEN
    assert turns._answer(1.0, "satisfaction", "sat")[0].line.text == "那就五分。"
    turns.state = turns.state.LISTEN
    assert turns._confirm(2.0, "on_time", "yn", "no")[0].key == "confirm_yes"


def test_a_sentence_that_confirms_any_step_is_taken_for_the_step_just_answered(book, confirm_world):
    _script, index, robot = confirm_world
    line = Line(taker(book, index, "opt_out")).answer().silence(0.5)
    for key in ("identity", "post_service.identity.confirm.opt_out"):
        line.robot(robot(key)).silence(1.0).until_quiet()
    assert [k for k, _t in _said(line)] == ["identity", "confirm_yes"]  # opt_out means it at identity
    assert line.turns.questions == ["identity", "identity.confirm.opt_out"]
    line = Line(taker(book, index, "satisfied")).answer().silence(0.5).until_quiet()
    for key in ("satisfaction", "post_service.satisfaction.confirm.opt_out"):
        line.robot(robot(key)).silence(1.0).until_quiet()
    assert [k for k, _t in _said(line)] == ["satisfaction", "confirm_no"]
    assert line.turns.questions[-1] == "satisfaction.confirm.opt_out"


@pytest.mark.parametrize("bad, message", [
    ("means: {on_time: maybe}", "not a score 0-10"),
    ("means: {nowhere: \"no\"}", "not a question"),
    ("answers: {on_time: []}", "an empty list"),
    ("confirm: {perhaps: 嗯}", "confirm"),
])
def test_malformed_persona_keys_are_named(tmp_path, bad, message):
    from campaigns.personas import PersonaError

    (tmp_path / "p.yaml").write_text(f"""
version: 1
questions: {{on_time: {{context: yn}}}}
personas:
  x:
    answers: {{on_time: 准时。}}
    {bad}
""", encoding="utf-8")
    with pytest.raises(PersonaError, match=message):
        load_personas(tmp_path / "p.yaml")


def test_reversed_audio_is_not_mistaken_for_a_real_prompt(confirm_world, robot):
    _script, index, _robot = confirm_world
    from campaigns.simulator.fingerprint import features

    match = index.locate(features(np.frombuffer(robot("post_service", "advisor"), dtype="<i2")))
    assert match is not None and any(r.key == "advisor" for r in match.fragment.final)


def test_an_unplaced_prompt_after_a_low_score_is_taken_for_the_low_score_branch(book, index):
    from campaigns.simulator.turns import TurnTaker

    for persona, expected in (("complains_parts", "improvement"), ("satisfied", "advisor")):
        turns = TurnTaker(book.personas[persona], book, index)
        turns._question, turns._context = "satisfaction", "sat"
        assert turns._guess_next() == (expected, "open"), persona  # score 2 -> improvement; 5 -> advisor


def test_a_yes_no_question_without_a_line_gets_yes_unless_the_persona_meant_no():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    tune = load_personas(root / "bench" / "data" / "calls" / "personas-tune.yaml")
    # "……只需要一分钟,可以吗?" (identity_explain, a yes/no step) to a customer who said 是我，什么事:
    hedger = tune.personas["hedge_probably_five"]
    assert tune.answer(hedger, "identity_explain", "yn").key == "confirm_yes"
    # ... to one who declined: its own refusal again, never a yes.
    refuser = tune.personas["refused_not_interested"]
    assert tune.answer(refuser, "identity_explain", "yn").text == refuser.answers["identity"].text
    # A persona with its own line says it.
    which = tune.personas["question_which_store"]
    assert tune.answer(which, "identity_explain", "yn").text == which.answers["identity_explain"].text
