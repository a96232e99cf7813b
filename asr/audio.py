"""Audio input: WAV decoding (PCM, float, mu-law, A-law, any rate, any channel count) and resampling.

Owns the conversion of whatever a file or a phone line delivers into the mono 16-bit PCM an engine
wants. Pure functions and one small stateful class; they run on whichever thread calls them (a
recognizer's decoding thread, the CLI's main thread), never on a media thread.

Resampling uses polyphase FIR filters (Kaiser window, ``scipy.signal``), not linear interpolation:
8 kHz telephone audio upsampled to 16 kHz must not gain aliased images above 4 kHz, which Whisper's
log-mel front end would otherwise see as energy that was never spoken.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

# WAVE format tags (RFC 2361).
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {WAVE_FORMAT_PCM: "PCM", WAVE_FORMAT_IEEE_FLOAT: "float", WAVE_FORMAT_ALAW: "A-law",
                 WAVE_FORMAT_MULAW: "mu-law"}
MAX_CHANNELS = 8
MIN_RATE, MAX_RATE = 4000, 192000
# A call recording longer than this is not something one recognizer should hold in memory at once.
MAX_SECONDS = 4 * 3600


class AudioError(ValueError):
    """The input is not audio we can read; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Audio:
    """Decoded audio: float32 samples in [-1, 1], shape (frames, channels)."""

    samples: np.ndarray
    sample_rate: int
    encoding: str  # "PCM 16-bit", "mu-law", ...

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.sample_rate


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mag = ((((u & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(np.float32) / 32768.0


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a & 0x70) >> 4
    mantissa = a & 0x0F
    mag = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, mag, -mag).astype(np.float32) / 32768.0


ULAW_TO_FLOAT = _ulaw_table()
ALAW_TO_FLOAT = _alaw_table()


def _chunks(data: bytes, name: str):
    """Yield (chunk id, payload) of a RIFF body; a short last chunk is yielded truncated (flagged)."""
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        payload = data[pos + 8:pos + 8 + size]
        yield cid, payload, len(payload) < size
        pos += 8 + size + (size & 1)


def read_wav(path: str | Path) -> Audio:
    """Read a WAV file of any common form.

    Supports PCM 8/16/24/32-bit, 32/64-bit float, G.711 mu-law and A-law, WAVE_FORMAT_EXTENSIBLE, any
    rate from 4 to 192 kHz, up to 8 channels. A data chunk cut short (a recording still being written, a
    truncated copy) is an error, not silently shorter audio.

    Raises:
        AudioError: empty, truncated, not a WAV file, or an encoding we do not read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise AudioError(f"{path}: is a directory, not a WAV file") from None
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    return decode_wav(data, name=str(path))


def decode_wav(data: bytes, name: str = "<bytes>") -> Audio:
    """Decode WAV bytes (see :func:`read_wav`)."""
    if not data:
        raise AudioError(f"{name}: empty file (0 bytes)")
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        kind = "an RF64/W64 file" if data[:4] in (b"RF64", b"riff") else "not a WAV file (no RIFF/WAVE header)"
        raise AudioError(f"{name}: {kind}")
    if data[:4] == b"RIFX":
        raise AudioError(f"{name}: big-endian WAV (RIFX) is not supported")
    fmt = None
    pcm = None
    for cid, payload, short in _chunks(data, name):
        if cid == b"fmt ":
            if len(payload) < 16:
                raise AudioError(f"{name}: truncated fmt chunk")
            fmt = payload
        elif cid == b"data":
            if short:
                raise AudioError(f"{name}: truncated: the data chunk announces more bytes than the file holds")
            pcm = payload
            break
    if fmt is None:
        raise AudioError(f"{name}: no fmt chunk (truncated or not a WAV file)")
    if pcm is None:
        raise AudioError(f"{name}: no data chunk (truncated header?)")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise AudioError(f"{name}: truncated WAVE_FORMAT_EXTENSIBLE header")
        (tag,) = struct.unpack_from("<H", fmt, 24)  # first two bytes of the sub-format GUID
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{name}: {channels} channels (expected 1 to {MAX_CHANNELS})")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{name}: sample rate {rate} Hz (expected {MIN_RATE} to {MAX_RATE})")
    width = bits // 8
    if tag in (WAVE_FORMAT_MULAW, WAVE_FORMAT_ALAW):
        if bits != 8:
            raise AudioError(f"{name}: {_FORMAT_NAMES[tag]} with {bits} bits per sample (expected 8)")
    elif tag == WAVE_FORMAT_PCM:
        if bits not in (8, 16, 24, 32):
            raise AudioError(f"{name}: PCM with {bits} bits per sample (expected 8, 16, 24 or 32)")
    elif tag == WAVE_FORMAT_IEEE_FLOAT:
        if bits not in (32, 64):
            raise AudioError(f"{name}: float with {bits} bits per sample (expected 32 or 64)")
    else:
        raise AudioError(f"{name}: unsupported WAV encoding (format tag 0x{tag:04x}); "
                         "use PCM, float, mu-law or A-law")
    frame_bytes = width * channels
    if block_align and block_align != frame_bytes:
        raise AudioError(f"{name}: block align {block_align} does not match {channels} x {bits} bits")
    if len(pcm) < frame_bytes:
        raise AudioError(f"{name}: no audio (the data chunk is empty)")
    if len(pcm) % frame_bytes:
        pcm = pcm[: len(pcm) - len(pcm) % frame_bytes]  # a partial last frame is padding, not audio
    if len(pcm) // frame_bytes > MAX_SECONDS * rate:
        raise AudioError(f"{name}: longer than {MAX_SECONDS // 3600} hours")

    if tag == WAVE_FORMAT_MULAW:
        samples = ULAW_TO_FLOAT[np.frombuffer(pcm, dtype=np.uint8)]
        encoding = "mu-law"
    elif tag == WAVE_FORMAT_ALAW:
        samples = ALAW_TO_FLOAT[np.frombuffer(pcm, dtype=np.uint8)]
        encoding = "A-law"
    elif tag == WAVE_FORMAT_IEEE_FLOAT:
        samples = np.frombuffer(pcm, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise AudioError(f"{name}: float samples contain NaN or infinity")
        samples = np.clip(samples, -1.0, 1.0)
        encoding = f"float {bits}-bit"
    elif bits == 8:
        samples = (np.frombuffer(pcm, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        encoding = "PCM 8-bit"
    elif bits == 16:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        encoding = "PCM 16-bit"
    elif bits == 24:
        raw = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        ints = np.where(ints & 0x800000, ints - 0x1000000, ints)
        samples = ints.astype(np.float32) / 8388608.0
        encoding = "PCM 24-bit"
    else:
        samples = (np.frombuffer(pcm, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
        encoding = "PCM 32-bit"
    return Audio(samples.reshape(-1, channels), rate, encoding)


def pick_channel(audio: Audio, channel: str | int | None = None) -> np.ndarray:
    """One channel of ``audio`` as float32 mono.

    Args:
        channel: ``"left"``/0, ``"right"``/1, an index, or None: the only channel of a mono file, or for
            several channels the one with the most energy (a call recording keeps each party on its own
            channel; mixing them would overlap two speakers).

    Raises:
        AudioError: the channel does not exist.
    """
    index = {"left": 0, "right": 1}.get(channel, channel) if isinstance(channel, str) else channel
    if isinstance(channel, str) and channel not in ("left", "right"):
        raise AudioError(f"channel {channel!r}: expected left, right or a number")
    if index is None:
        if audio.channels == 1:
            index = 0
        else:
            index = int(np.argmax(np.mean(np.square(audio.samples, dtype=np.float64), axis=0)))
    if not 0 <= index < audio.channels:
        raise AudioError(f"channel {channel!r}: the audio has {audio.channels} channel(s)")
    return np.ascontiguousarray(audio.samples[:, index])


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample a whole float signal with a polyphase FIR (zero phase: no delay)."""
    if rate_in == rate_out:
        return samples.astype(np.float32, copy=False)
    g = math.gcd(rate_in, rate_out)
    return signal.resample_poly(samples, rate_out // g, rate_in // g, window=("kaiser", 8.0)).astype(np.float32)


def load_mono(path: str | Path, rate: int = 16000, channel: str | int | None = None) -> tuple[np.ndarray, Audio]:
    """Read a WAV file and return (float32 mono at ``rate``, the decoded original)."""
    audio = read_wav(path)
    return resample(pick_channel(audio, channel), audio.sample_rate, rate), audio


def float_to_pcm16(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()


def pcm16_to_float(data: bytes) -> np.ndarray:
    if len(data) % 2:
        raise AudioError(f"PCM frame of {len(data)} bytes: 16-bit audio needs an even number of bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


class StreamResampler:
    """Resample a stream chunk by chunk with filter state carried across chunks.

    The output equals resampling the concatenated input (up to the filter's group delay of
    ``taps // 2`` output samples, which the first chunk absorbs), so frame boundaries leave no clicks.
    Used for live call audio, where the phone delivers 8 kHz (or 16 kHz) 20 ms frames.
    """

    def __init__(self, rate_in: int, rate_out: int, taps_per_phase: int = 24) -> None:
        g = math.gcd(rate_in, rate_out)
        self.rate_in, self.rate_out = rate_in, rate_out
        self.up, self.down = rate_out // g, rate_in // g
        self._passthrough = rate_in == rate_out
        if not self._passthrough:
            n = taps_per_phase * max(self.up, self.down) | 1
            cutoff = 1.0 / max(self.up, self.down)
            self._taps = signal.firwin(n, cutoff, window=("kaiser", 8.0)) * self.up
            self._zi = np.zeros(n - 1)
            self._phase = 0  # index, in the upsampled stream, of the next output sample

    def process(self, samples: np.ndarray) -> np.ndarray:
        if self._passthrough or samples.size == 0:
            return samples.astype(np.float32, copy=False)
        stuffed = np.zeros(samples.size * self.up)
        stuffed[:: self.up] = samples
        filtered, self._zi = signal.lfilter(self._taps, 1.0, stuffed, zi=self._zi)
        out = filtered[self._phase :: self.down]
        self._phase = (self._phase - stuffed.size) % self.down
        return out.astype(np.float32)
