"""The personas file: the shipped one is complete and rendered; malformed ones are refused by key."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from campaigns.personas import DEFAULT_FILE, PersonaError, load_personas

REQUIRED = {"satisfied", "complains_wait", "complains_parts", "complains_price", "complains_quality", "busy",
            "no_answer", "hangs_up_early", "wrong_number", "callback", "opt_out", "asks_human", "answering_machine"}
POST_SERVICE = ("identity", "satisfaction", "improvement", "advisor", "car_wash", "on_time", "anything_else")


def wav_format(path: Path) -> tuple[int, int, int, float]:
    """(format tag, channels, sample rate, seconds) from a WAV header (7 = G.711 mu-law)."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", path
    pos, fmt, size = 12, None, 0
    while pos + 8 <= len(data):
        chunk, length = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"fmt ":
            fmt = struct.unpack("<HHIIHH", data[pos + 8:pos + 24])
        elif chunk == b"data":
            size = length
        pos += 8 + length + (length & 1)
    tag, channels, rate, byte_rate, _align, _bits = fmt
    return tag, channels, rate, size / byte_rate


def test_the_shipped_personas_cover_the_issue_and_are_all_rendered():
    book = load_personas(require_audio=True)
    assert set(book.personas) >= REQUIRED
    assert {book.personas[p].sip for p in ("busy", "no_answer")} == {"busy", "no_answer"}
    assert book.personas["busy"].sip_code == 486 and book.personas["no_answer"].sip_code is None
    assert book.personas["answering_machine"].greeting is not None
    assert book.personas["hangs_up_early"].hang_up_after == "identity"
    for name in ("satisfied", "complains_wait", "complains_parts", "complains_price", "complains_quality"):
        persona = book.personas[name]
        assert all(q in persona.answers for q in POST_SERVICE), name  # the post-service script matters most
        assert persona.expect["outcome"] == "completed"
    total = 0.0
    for _persona, answer in book.all_answers():
        tag, channels, rate, seconds = wav_format(answer.audio)
        assert (tag, channels, rate) == (7, 1, 8000), answer.audio  # 8 kHz mono G.711 mu-law
        assert 0.8 < seconds < 12, answer.audio
        total += seconds
    # small enough to ship in the repository: 8 kB per second of speech
    assert sum(a.audio.stat().st_size for _p, a in book.all_answers()) < 3_000_000
    assert total > 60


def test_numbers_pick_personas_and_others_get_the_default():
    book = load_personas()
    assert book.for_number("139 0000 0006").id == "busy"
    assert book.for_number("+86 13900000011").id == "opt_out"
    assert book.for_number("13712345678").id == book.default == "satisfied"


def test_a_question_without_its_own_answer_gets_one_of_the_same_context_or_the_default():
    book = load_personas()
    callback = book.personas["callback"]
    assert book.answer(callback, "callback_time").text == "明天下午三点以后吧。"
    assert book.answer(callback, "satisfaction") is callback.default
    satisfied = book.personas["satisfied"]
    # a script step named differently but asking for a 1-5 score
    assert book.answer(satisfied, "overall_score", context="sat") is satisfied.answers["satisfaction"]
    assert book.answer(book.personas["hangs_up_early"], "nps") is None  # silence


def test_render_lines_are_what_the_tts_tool_takes():
    lines = load_personas().render_lines()
    assert len({line["id"] for line in lines}) == len(lines)
    first = next(line for line in lines if line["id"] == "satisfied__satisfaction")
    assert first["voice"] == "tacotron2" and "满意" in first["text"]
    assert all(set(line) <= {"id", "text", "voice", "speed", "pitch"} for line in lines)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
version: 1
questions:
  identity: {context: id, prompt: 请问是王先生吗？}
numbers:
  "13900000001": a
personas:
  a:
    sip: answer
    answers:
      identity: 是我。
"""


@pytest.mark.parametrize("change, message", [
    (("version: 1", "version: 2"), "version must be 1"),
    (("sip: answer", "sip: maybe"), "personas.a.sip: 'maybe' is not one of"),
    (("identity: 是我。", "nps: 九分"), "personas.a.answers.nps: not a question"),
    (('"13900000001": a', '"12345": a'), "numbers.12345"),
    (('"13900000001": a', '"13900000001": b'), "no persona 'b'"),
    (("context: id", "context: feelings"), "questions.identity.context"),
    (("    sip: answer", "    sip: answer\n    colour: red"), "unknown key(s) colour"),
    (("    sip: answer", "    sip: answer\n    hang_up_after: nps"), "hang_up_after"),
    (("identity: 是我。", "identity: ''"), "expected the customer's words"),
    (("    sip: answer", "    sip: answer\n    voice: {voice: robot}"), "voice"),
])
def test_malformed_files_name_the_key(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(PersonaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_personas(write(tmp_path, GOOD.replace(old, new)))


def test_unrendered_audio_is_reported_when_required(tmp_path):
    book = load_personas(write(tmp_path, GOOD))
    assert book.personas["a"].answers["identity"].audio == tmp_path / "audio" / "a__identity.wav"
    with pytest.raises(PersonaError, match="3 answer"):  # its one line and its confirmation replies (对 / 不是)
        load_personas(write(tmp_path, GOOD), require_audio=True)
    with pytest.raises(PersonaError, match="not valid YAML"):
        load_personas(write(tmp_path, "version: [1"))
    with pytest.raises(PersonaError, match="cannot read"):
        load_personas(tmp_path / "missing.yaml")
    assert DEFAULT_FILE.name == "personas.yaml"
