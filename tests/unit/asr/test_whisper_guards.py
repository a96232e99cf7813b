"""Whisper's hallucination guards and the lexicon correction (pure functions: no model)."""

from __future__ import annotations

from asr.lexicon import Lexicon
from asr.vocabulary import DOMAIN_TERMS, PROMPT
from asr.whisper_engine import WhisperOptions, collapse_repeats, compression_ratio, hallucination_reason

OPTIONS = WhisperOptions()


def reason(text, logprob=-0.3, no_speech=0.1, prompt=PROMPT):
    return hallucination_reason(text, logprob, no_speech, OPTIONS, prompt)


def test_plain_answers_pass():
    assert reason("满意，挺好的。") is None
    assert reason("对") is None
    assert reason("好的好的") is None


def test_echo_of_the_prompt_is_rejected():
    assert reason("请问您对这次保养、维修") == "prompt echo"
    assert reason("保养 续保 钣喷") == "prompt echo"  # the hotwords came back
    # Nothing but domain hotwords ("钣喷异响" for a short "顾问还可以"): decoded again without the
    # prompt and hotwords, and that second decode stands (a customer who says 保养 is heard then).
    assert reason("钣喷异响") == "prompt echo" and reason("保养") == "prompt echo"
    assert reason("保养", prompt=None) is None and reason("钣喷异响", prompt=None) is None
    assert reason("保养做得挺好") is None and reason("五分") is None


def test_no_speech_and_repetition_and_subtitle_artefacts():
    assert reason("嗯", logprob=-1.5, no_speech=0.9) == "no speech"
    assert reason("嗯", logprob=-0.2, no_speech=0.9) is None  # confident text overrides no-speech
    assert reason("费" * 40) == "repetitive"
    assert reason("请不吝点赞 订阅 转发 打赏支持明镜与点点栏目") == "subtitle artefact"
    assert reason("字幕由Amara.org社区提供") == "subtitle artefact"
    assert reason("，。") == "empty"


def test_collapse_repeats_keeps_natural_doubling():
    assert collapse_repeats("超位于货业费费费费费费费费") == "超位于货业费"
    assert collapse_repeats("好的好的") == "好的好的"
    assert collapse_repeats("对对对") == "对对对"
    assert compression_ratio("费" * 40) > 2.4 > compression_ratio("整体还算满意吧，就是等的时间有点长")


def test_lexicon_restores_homophones_of_domain_terms_only():
    lex = Lexicon(DOMAIN_TERMS)
    assert lex.correct("做个小宝养都要等两个小时") == "做个小保养都要等两个小时"
    assert lex.correct("你们师父不注意") == "你们师傅不注意"
    assert lex.correct("我想换一台图官，有没有补贴") == "我想换一台途观，有没有补贴"
    assert lex.correct("休了两次都没休好") == "休了两次都没休好"  # 修 is not a term: left alone
    assert lex.correct("交车太慢") == "交车太慢"
    assert lex.correct("") == ""


def test_lexicon_drops_terms_that_sound_alike():
    lex = Lexicon(["期中", "其中"])
    assert lex.correct("期中") == "期中" and lex.correct("其中") == "其中"
