"""Prompt text and audio fragments; assembling PCM from WAVs of either stored encoding."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from dialog.prompts import (
    MissingAudio,
    PromptLibrary,
    fixed_fragments,
    read_wav,
    render,
    spoken_date,
    vocabulary,
)
from dialog.script import Variable, shipped_scripts

VARS = {"customer": Variable("customer", fallback=""), "store": Variable("store", fallback="我们店"),
        "visit_date": Variable("visit_date", kind="date", fallback="最近")}


def test_render_splits_at_variables():
    text, frags = render("{customer}您好,我是{store}的客服。您{visit_date}来过。",
                         {"surname": "王", "title": "先生", "store": "锦华丰田", "visit_date": "2024-06-03"}, VARS)
    assert text == "王先生您好,我是锦华丰田的客服。您六月三日来过。"
    assert frags == ("王先生", "您好,我是", "锦华丰田", "的客服。您", "六月", "三日", "来过。")


def test_values_without_audio_fall_back_in_text_and_audio(tmp_path):
    lib = PromptLibrary(tmp_path)
    lib.fragments = {"王先生": "a.wav"}
    text, frags = render("{customer}您好,我是{store}的客服。", {"surname": "王", "title": "先生", "store": "未渲染店"},
                         VARS, lib)
    assert text == "王先生您好,我是我们店的客服。"
    assert "未渲染店" not in frags
    text, _ = render("{customer}您好", {"surname": "欧阳修", "title": ""}, VARS, lib)
    assert text == "您好"  # no title: the empty fallback


def test_malformed_dates_fall_back():
    text, _ = render("您{visit_date}来过", {"visit_date": "not a date"}, VARS)
    assert text == "您最近来过"
    assert spoken_date("2024-12-31") == ["十二月", "三十一日"]


def test_every_fixed_fragment_of_every_shipped_script_is_known_text():
    fixed = set()
    for script in shipped_scripts().values():
        fixed |= fixed_fragments(script)
    assert "交车的时候,车辆有没有帮您清洗干净?" in fixed
    assert not any("{" in f or "}" in f for f in fixed)
    assert {"王先生", "李女士", "六月", "三十一日"} <= vocabulary()


def _write_wav(path, samples: np.ndarray, rate: int, ulaw: bool = False) -> None:
    if not ulaw:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples.astype("<i2").tobytes())
        return
    data = _ulaw_encode(samples)
    fmt = (7).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little") + \
        rate.to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)


def _ulaw_encode(x: np.ndarray) -> bytes:
    x = x.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def test_pcm_assembles_pcm16_and_ulaw_fragments_at_the_asked_rate(tmp_path):
    t = np.arange(8000) / 8000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    _write_wav(tmp_path / "a.wav", tone, 8000)
    _write_wav(tmp_path / "b.wav", tone, 8000, ulaw=True)
    (tmp_path / "manifest.json").write_text(json.dumps({"sample_rate": 8000, "fragments": {"甲": "a.wav", "乙": "b.wav"}}))
    lib = PromptLibrary(tmp_path)
    decoded = read_wav(tmp_path / "b.wav", 8000)
    assert np.max(np.abs(decoded.astype(int) - tone.astype(int))) < 400  # mu-law quantisation error
    pcm = lib.pcm(["甲", "乙"], 8000)
    assert len(pcm) == 2 * (16000 + int(0.04 * 8000))
    assert len(lib.pcm(["甲"], 16000)) == 2 * 16000
    with pytest.raises(MissingAudio, match="prompts render"):
        lib.pcm(["丙"])


def test_broken_audio_is_a_clear_error(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"not audio at all")
    (tmp_path / "manifest.json").write_text(json.dumps({"fragments": {"甲": "x.wav", "乙": "../../etc/passwd"}}))
    lib = PromptLibrary(tmp_path)
    with pytest.raises(MissingAudio, match="not a WAV"):
        lib.pcm(["甲"])
    with pytest.raises(MissingAudio, match="outside"):
        lib.path("乙")


def test_every_prompt_of_every_shipped_script_has_its_audio():
    library = PromptLibrary()
    needed = set()
    for script in shipped_scripts().values():
        needed |= fixed_fragments(script)
    needed |= vocabulary()
    assert library.missing(needed) == [], "run `callcenter dialog prompts render`"
    for text in sorted(needed):
        path = library.path(text)
        assert path.is_file(), text
    # Spot-check that the audio decodes and has speech in it (not silence, not a stub).
    for text in ("王先生", "交车的时候,车辆有没有帮您清洗干净?", "六月", "三十一日"):
        samples = read_wav(library.path(text), 8000)
        assert 0.3 < len(samples) / 8000 < 15
        assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 300


def test_a_simulated_call_can_play_every_prompt_it_says():
    from dialog.engine import Conversation, run_text
    from dialog.nlu import Nlu

    library = PromptLibrary()
    scripts = shipped_scripts()
    values = {"surname": "王", "title": "先生", "store": "从未渲染的店", "visit_date": "2024-06-09",
              "insurance_expiry": "2024-07-01", "warranty_end": "2024-08-31"}
    replies = ["是我", "两分", "等太久了", "还行", "没洗", "不准时", "没有", None, None, None, None]
    for script in scripts.values():
        log = run_text(Conversation(script, values, Nlu(), library=library), replies)
        for say in (a for a in log if a.kind == "say"):
            assert "".join(say.fragments) == say.text
            assert "从未渲染的店" not in say.text  # no audio for it: the fallback is said instead
            pcm = library.pcm(say.fragments, 8000)
            assert len(pcm) > 0.5 * 8000 * 2, say.text


def test_a_deployment_overlay_adds_fragments_and_is_picked_up_when_rendered_later(tmp_path):
    """Store names rendered by the console live in <data dir>/audio, beside the shipped prompts."""
    shipped = tmp_path / "shipped"
    overlay = tmp_path / "overlay"
    lib = PromptLibrary(shipped)
    lib.fragments = {"您好": "a.wav"}
    lib.save_manifest()
    _write_wav(shipped / "a.wav", np.full(800, 1000, dtype=np.int16), 8000)
    both = PromptLibrary(shipped, overlay=overlay)
    assert both.has("您好") and not both.has("锦华丰田河西店") and not both.refresh()
    own = PromptLibrary(overlay)
    own.fragments = {"锦华丰田河西店": "b.wav", "您好": "evil.wav"}
    own.save_manifest()
    _write_wav(overlay / "b.wav", np.full(1600, 500, dtype=np.int16), 8000)
    assert both.refresh()
    assert both.has("锦华丰田河西店") and both.path("锦华丰田河西店") == (overlay / "b.wav").resolve()
    assert both.path("您好") == (shipped / "a.wav").resolve()  # the shipped audio wins
    assert len(both.pcm(("您好", "锦华丰田河西店"))) == 2 * (800 + 320 + 1600)
    text, _frags = render("我是{store}的客服。", {"store": "锦华丰田河西店"}, VARS, both)
    assert text == "我是锦华丰田河西店的客服。"
    both.save_manifest()  # saving the shipped library never copies the overlay into it
    assert "锦华丰田河西店" not in PromptLibrary(shipped).fragments
