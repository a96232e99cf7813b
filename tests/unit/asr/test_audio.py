"""WAV decoding of every common form, clear errors for broken files, and resampling quality."""

from __future__ import annotations

import struct
import warnings
import wave

import numpy as np
import pytest

from asr.audio import AudioError, StreamResampler, decode_wav, load_mono, pick_channel, read_wav, resample

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # reference G.711 codecs (stdlib until Python 3.13)


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def riff(tag: int, channels: int, rate: int, bits: int, payload: bytes, extensible: bool = False) -> bytes:
    block = channels * bits // 8
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


def test_pcm16_stereo_written_by_the_stdlib_reads_back(tmp_path):
    left, right = tone(440, 8000), tone(1000, 8000, amp=0.1)
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm16(np.stack([left, right], axis=1).reshape(-1)))
    audio = read_wav(path)
    assert (audio.sample_rate, audio.channels, audio.encoding) == (8000, 2, "PCM 16-bit")
    assert audio.duration == pytest.approx(1.0)
    np.testing.assert_allclose(pick_channel(audio, "left"), left, atol=1e-4)
    np.testing.assert_allclose(pick_channel(audio, "right"), right, atol=1e-4)
    np.testing.assert_allclose(pick_channel(audio, None), left, atol=1e-4)  # the louder channel


@pytest.mark.parametrize("bits", [8, 24, 32])
def test_other_pcm_widths(bits):
    x = tone(300, 16000, 0.1)
    if bits == 8:
        payload = (np.round(x * 127) + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        ints = np.round(x * 8388607).astype(np.int32)
        payload = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    else:
        payload = np.round(x * 2147483647).astype("<i4").tobytes()
    audio = decode_wav(riff(1, 1, 16000, bits, payload))
    np.testing.assert_allclose(audio.samples[:, 0], x, atol=1.0 / 100)


def test_float_and_extensible_formats():
    x = tone(300, 48000, 0.1)
    a = decode_wav(riff(3, 1, 48000, 32, x.astype("<f4").tobytes()))
    b = decode_wav(riff(3, 1, 48000, 64, x.astype("<f8").tobytes(), extensible=True))
    c = decode_wav(riff(1, 1, 48000, 16, pcm16(x), extensible=True))
    for audio in (a, b, c):
        np.testing.assert_allclose(audio.samples[:, 0], x, atol=1e-4)


@pytest.mark.parametrize(("tag", "encode", "decode"), [(7, audioop.lin2ulaw, audioop.ulaw2lin),
                                                      (6, audioop.lin2alaw, audioop.alaw2lin)])
def test_g711_matches_the_reference_decoder(tag, encode, decode):
    x = tone(700, 8000, 0.2)
    codes = encode(pcm16(x), 2)
    audio = decode_wav(riff(tag, 1, 8000, 8, codes))
    expected = np.frombuffer(decode(codes, 2), dtype="<i2") / 32768.0
    np.testing.assert_array_equal(audio.samples[:, 0], expected.astype(np.float32))
    assert audio.encoding == ("mu-law" if tag == 7 else "A-law")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"ID3\x03\x00 not audio at all, an mp3 maybe", "not a WAV file"),
        (riff(1, 1, 8000, 16, pcm16(tone(100, 8000)))[:2000], "truncated"),
        (riff(1, 1, 8000, 16, b"")[:36], "no data chunk"),
        (riff(2, 1, 8000, 4, b"\x00" * 100), "unsupported WAV encoding"),
        (riff(1, 1, 8000, 16, b""), "no audio"),
        (riff(1, 0, 8000, 16, b"\x00" * 10), "0 channels"),
        (riff(1, 1, 100, 16, b"\x00" * 10), "sample rate 100"),
        (riff(7, 1, 8000, 16, b"\x00" * 10), "mu-law with 16 bits"),
    ],
)
def test_broken_files_give_a_clear_error(data, message):
    with pytest.raises(AudioError) as info:
        decode_wav(data, name="call.wav")
    assert message in str(info.value)
    assert str(info.value).startswith("call.wav: ")


def test_missing_file_and_directory_are_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        read_wav(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="is a directory"):
        read_wav(tmp_path)


def test_channel_that_does_not_exist():
    audio = decode_wav(riff(1, 1, 8000, 16, pcm16(tone(100, 8000, 0.1))))
    with pytest.raises(AudioError, match="1 channel"):
        pick_channel(audio, "right")


def spectrum_peak_hz(x: np.ndarray, rate: int) -> float:
    mag = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(mag) * rate / x.size)


def test_resampling_keeps_the_tone_and_adds_no_images():
    x8 = tone(1000, 8000)
    y16 = resample(x8, 8000, 16000)
    assert y16.size == 16000
    assert spectrum_peak_hz(y16, 16000) == pytest.approx(1000, abs=2)
    mag = np.abs(np.fft.rfft(y16 * np.hanning(y16.size)))
    image = mag[int(6900 * y16.size / 16000):int(7100 * y16.size / 16000)].max()
    assert image < mag.max() * 1e-3  # the 7 kHz image of a naive upsampler is filtered out (> 60 dB)
    y44 = resample(tone(1000, 48000), 48000, 44100)
    assert y44.size == 44100 and spectrum_peak_hz(y44, 44100) == pytest.approx(1000, abs=2)


def test_stream_resampler_matches_one_shot_and_has_no_seams():
    x = tone(440, 8000, 2.0)
    rs = StreamResampler(8000, 16000)
    pieces = [rs.process(x[i:i + 160]) for i in range(0, x.size, 160)]  # 20 ms frames
    y = np.concatenate(pieces)
    assert y.size == 2 * x.size
    # After the filter's start-up, the stream is a clean sine: no clicks at the 20 ms seams.
    steady = y[400:-400]
    assert np.max(np.abs(steady)) == pytest.approx(0.5, abs=0.01)
    assert np.max(np.abs(np.diff(steady))) < 2 * np.pi * 440 / 16000 * 0.5 * 1.05


def test_load_mono_resamples_mulaw_8k_to_16k(tmp_path):
    path = tmp_path / "u.wav"
    path.write_bytes(riff(7, 1, 8000, 8, audioop.lin2ulaw(pcm16(tone(500, 8000)), 2)))
    samples, original = load_mono(path, 16000)
    assert original.sample_rate == 8000 and samples.size == 16000
    assert spectrum_peak_hz(samples, 16000) == pytest.approx(500, abs=2)
