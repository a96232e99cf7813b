import struct
import warnings

import numpy as np
import pytest

from callcenter.telephony.api import MediaFileError
from callcenter.telephony.audio import (
    StreamResampler,
    convert_pcm16,
    decode_wav,
    load_prompt,
    pcm16_to_float,
    read_wav,
    resample,
    to_pcm16,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference G.711 decoder (standard library up to 3.12)


def test_pcm16_mono_round_trips(write_wav, sig):
    x = sig.tone(440, 0.5, 16000)
    pcm = read_wav(write_wav("a.wav", sig.pcm16(x), 16000))
    assert pcm.rate == 16000
    assert np.allclose(pcm.samples, x, atol=1 / 32768)


@pytest.mark.parametrize("bits", [8, 24, 32])
def test_other_pcm_widths_decode_to_the_same_signal(write_wav, sig, bits):
    x = sig.tone(300, 0.2, 8000, amplitude=0.6)
    if bits == 8:
        data = (np.round(x * 127) + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        v = np.round(x * 8388607).astype(np.int32)
        data = b"".join(struct.pack("<i", int(s))[:3] for s in v)
    else:
        data = np.round(x * 2147483647).astype("<i4").tobytes()
    pcm = read_wav(write_wav(f"w{bits}.wav", data, 8000, bits=bits))
    assert np.allclose(pcm.samples, x, atol=2 / 2 ** (bits - 1) + 1e-9)


def test_float_wav_with_extensible_header_and_stereo_is_mixed_to_mono(write_wav, sig):
    left, right = sig.tone(500, 0.3, 44100, 0.4), sig.tone(500, 0.3, 44100, 0.2)
    stereo = np.empty(2 * len(left), dtype="<f4")
    stereo[0::2], stereo[1::2] = left, right
    pcm = read_wav(write_wav("f.wav", stereo.tobytes(), 44100, channels=2, bits=32, fmt=3, extensible=True))
    assert pcm.rate == 44100
    assert np.allclose(pcm.samples, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("fmt,encode,decode", [
    (7, audioop.lin2ulaw, audioop.ulaw2lin),
    (6, audioop.lin2alaw, audioop.alaw2lin),
])
def test_g711_wavs_decode_like_the_reference(write_wav, sig, fmt, encode, decode):
    coded = encode(sig.pcm16(sig.tone(1000, 0.2, 8000, 0.8)), 2)
    coded += bytes(range(256))  # every code word once
    pcm = read_wav(write_wav("g711.wav", coded, 8000, bits=8, fmt=fmt))
    reference = np.frombuffer(decode(coded, 2), dtype="<i2") / 32768.0
    assert np.array_equal(pcm.samples, reference)


def test_streamed_wav_with_zero_data_size_takes_the_rest_of_the_file(write_wav, sig):
    data = sig.pcm16(sig.tone(440, 0.1, 8000))
    path = write_wav("s.wav", data, 8000)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"data") + 4:raw.index(b"data") + 8] = b"\x00\x00\x00\x00"
    assert len(decode_wav(bytes(raw)).samples) == 800


@pytest.mark.parametrize("mutate,fragment", [
    (lambda b: b"OggS" + b[4:], "not a WAV file"),
    (lambda b: b[:30], "truncated fmt chunk"),
    (lambda b: b[: b.index(b"data")], "no data chunk"),
    (lambda b: b.replace(b"\x01\x00\x01\x00", b"\x11\x00\x01\x00", 1), "IMA ADPCM"),
])
def test_broken_or_odd_wavs_say_what_is_wrong(write_wav, sig, mutate, fragment):
    good = write_wav("g.wav", sig.pcm16(sig.tone(440, 0.1, 8000)), 8000).read_bytes()
    with pytest.raises(MediaFileError, match=fragment):
        decode_wav(mutate(good), name="prompt.wav")


def test_missing_and_unreadable_files_are_media_errors(tmp_path):
    with pytest.raises(MediaFileError, match="no such file"):
        read_wav(tmp_path / "nope.wav")
    with pytest.raises(MediaFileError, match="directory|not a regular file"):
        read_wav(tmp_path)


def test_resampling_keeps_a_tone_at_its_frequency(sig):
    x = sig.tone(1000, 1.0, 44100)
    y = resample(x, 44100, 16000)
    assert len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 1000) <= 1


@pytest.mark.parametrize("src,dst", [(24000, 16000), (8000, 16000), (16000, 8000), (44100, 16000), (22050, 8000)])
def test_stream_resampler_matches_resampling_the_whole_signal(sig, src, dst):
    rng = np.random.default_rng(7)
    x = sig.tone(440, 1.5, src, 0.4) + rng.normal(0, 0.02, int(1.5 * src))
    pcm = to_pcm16(x)
    expected = to_pcm16(resample(pcm16_to_float(pcm), src, dst))
    r = StreamResampler(src, dst)
    out, pos = b"", 0
    for size in [641, 3, 1280, 7, 999] * 100:  # odd sizes split samples across chunks
        if pos >= len(pcm):
            break
        out += r.feed(pcm[pos:pos + size])
        pos += size
    out += r.flush()
    assert out == expected


def test_prompt_cache_follows_the_file(write_wav, sig):
    path = write_wav("p.wav", sig.pcm16(sig.tone(440, 0.2, 8000)), 8000)
    first = load_prompt(path, 16000)
    assert len(first) == 2 * 3200 and load_prompt(path, 16000) is first
    path.write_bytes(path.read_bytes()[:-800])  # a shorter take of the same prompt
    assert len(load_prompt(path, 16000)) < len(first)
    assert convert_pcm16(b"\x01\x00\x02", 8000, 8000) == b"\x01\x00"
