"""Prompt audio: read WAVs of any common format, convert to the call's 16-bit mono PCM, resample.

Runs on the caller's thread (``CallHandle.play``), never on the media clock: a prompt is decoded and
resampled once, then cached, so sixteen calls playing the same greeting convert it once.

Supported WAV encodings: PCM 8/16/24/32-bit, IEEE float 32/64-bit, G.711 A-law and u-law, and the
same inside WAVE_FORMAT_EXTENSIBLE; any channel count (mixed down to mono) and any rate from 4 kHz
to 192 kHz. Anything else (ADPCM, MP3-in-WAV, truncated headers) is a :class:`MediaFileError` that
names the file and the problem.
"""

from __future__ import annotations

import functools
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callcenter.telephony.api import MediaFileError

MAX_PROMPT_BYTES = 64 * 2**20  # a 64 MB WAV is about 35 minutes of 16 kHz mono: no prompt is longer
_FMT_PCM, _FMT_FLOAT, _FMT_ALAW, _FMT_ULAW, _FMT_EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
_FORMAT_NAMES = {2: "MS ADPCM", 0x11: "IMA ADPCM", 0x31: "GSM 6.10", 0x50: "MPEG", 0x55: "MP3"}


@dataclass(frozen=True, slots=True)
class Pcm:
    """Mono float samples in [-1, 1] at ``rate``."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    codes = np.arange(256, dtype=np.int32)
    # u-law (ITU-T G.711): invert, then sign / 3-bit exponent / 4-bit mantissa, bias 0x84.
    u = ~codes & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    ulaw = np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.float64) / 32768.0
    # A-law: even bits inverted, then sign / exponent / mantissa.
    a = codes ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0)))
    alaw = np.where(a & 0x80, t, -t).astype(np.float64) / 32768.0
    return alaw, ulaw


_ALAW, _ULAW = _g711_tables()


def read_wav(path: Path | str) -> Pcm:
    """Decode a WAV file to mono float samples.

    Raises:
        MediaFileError: missing, unreadable, not a WAV, or an encoding listed as unsupported above.
    """
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise MediaFileError(f"{name}: not a regular file")
        if size > MAX_PROMPT_BYTES:
            raise MediaFileError(f"{name}: {size // 2**20} MB is too large for a prompt (limit 64 MB)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise MediaFileError(f"{path}: no such file") from None
    except PermissionError:
        raise MediaFileError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise MediaFileError(f"{path}: is a directory") from None
    except OSError as exc:
        raise MediaFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_wav(data, name=name)


def decode_wav(data: bytes, *, name: str = "<wav>") -> Pcm:
    """Decode WAV bytes; see :func:`read_wav`."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise MediaFileError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    if data[:4] == b"RIFX":
        raise MediaFileError(f"{name}: big-endian WAV (RIFX) is not supported; convert with sox")
    fmt: tuple[int, int, int, int] | None = None
    pos, body = 12, None
    while pos + 8 <= len(data):
        cid, csize = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        start = pos + 8
        if cid == b"fmt ":
            if csize < 16 or start + 16 > len(data):
                raise MediaFileError(f"{name}: truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, start)
            if tag == _FMT_EXTENSIBLE:
                if csize < 40 or start + 26 > len(data):
                    raise MediaFileError(f"{name}: truncated WAVE_FORMAT_EXTENSIBLE header")
                # Samples are laid out by the container size (``bits``), whatever the valid bits.
                tag = struct.unpack_from("<H", data, start + 24)[0]  # first two bytes of the GUID
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            # Streamed WAVs carry 0 or 0xFFFFFFFF here: take what the file holds.
            end = len(data) if csize in (0, 0xFFFFFFFF) else min(len(data), start + csize)
            body = data[start:end]
            if fmt is not None:
                break
        pos = start + csize + (csize & 1)
    if fmt is None:
        raise MediaFileError(f"{name}: no fmt chunk")
    if body is None:
        raise MediaFileError(f"{name}: no data chunk")
    tag, channels, rate, bits = fmt
    if not 1 <= channels <= 32:
        raise MediaFileError(f"{name}: {channels} channels")
    if not 4000 <= rate <= 192000:
        raise MediaFileError(f"{name}: sample rate {rate} Hz is outside 4000-192000")
    samples = _decode_samples(body, tag, bits, channels, name)
    return Pcm(samples=samples, rate=rate)


def _decode_samples(body: bytes, tag: int, bits: int, channels: int, name: str) -> np.ndarray:
    if tag == _FMT_PCM and bits in (8, 16, 24, 32):
        width = bits // 8
        usable = len(body) - len(body) % (width * channels)
        raw = np.frombuffer(body, dtype=np.uint8, count=usable)
        if bits == 8:
            x = (raw.astype(np.float64) - 128.0) / 128.0
        elif bits == 16:
            x = raw.view("<i2").astype(np.float64) / 32768.0
        elif bits == 24:
            b = raw.reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            x = np.where(v & 0x800000, v - 0x1000000, v).astype(np.float64) / 8388608.0
        else:
            x = raw.view("<i4").astype(np.float64) / 2147483648.0
    elif tag == _FMT_FLOAT and bits in (32, 64):
        usable = len(body) - len(body) % (bits // 8 * channels)
        x = np.frombuffer(body, dtype="<f4" if bits == 32 else "<f8", count=usable // (bits // 8))
        x = np.nan_to_num(x.astype(np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
    elif tag in (_FMT_ALAW, _FMT_ULAW) and bits == 8:
        usable = len(body) - len(body) % channels
        table = _ALAW if tag == _FMT_ALAW else _ULAW
        x = table[np.frombuffer(body, dtype=np.uint8, count=usable)]
    else:
        what = _FORMAT_NAMES.get(tag, f"format 0x{tag:04x}")
        raise MediaFileError(
            f"{name}: unsupported WAV encoding ({what}, {bits}-bit); use PCM, float, A-law or u-law "
            f"(e.g. sox in.wav -b 16 -e signed-integer out.wav)"
        )
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1)
    return np.clip(x, -1.0, 1.0)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's ``resample_poly``, Kaiser window) of a whole signal."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples
    from scipy.signal import resample_poly

    g = math.gcd(src_rate, dst_rate)
    return resample_poly(samples, dst_rate // g, src_rate // g)


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float [-1, 1] to 16-bit little-endian PCM, rounded and clipped."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2").tobytes()


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float64) / 32768.0


def convert_pcm16(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample 16-bit mono PCM; returns the input unchanged when the rates match."""
    if src_rate == dst_rate:
        return pcm[: len(pcm) - len(pcm) % 2]
    return to_pcm16(resample(pcm16_to_float(pcm), src_rate, dst_rate))


def load_prompt(path: Path | str, rate: int) -> bytes:
    """A prompt as 16-bit mono PCM at ``rate``; decoded once per (file version, rate)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise MediaFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _load_prompt_cached(os.fspath(path.resolve()), st.st_mtime_ns, st.st_size, rate)


@functools.lru_cache(maxsize=64)
def _load_prompt_cached(path: str, mtime_ns: int, size: int, rate: int) -> bytes:
    pcm = read_wav(path)
    return to_pcm16(resample(pcm.samples, pcm.rate, rate))


class StreamResampler:
    """Resample a 16-bit mono PCM stream chunk by chunk, without clicks at chunk boundaries.

    The same polyphase FIR as ``scipy.signal.resample_poly`` (Kaiser, beta 5, 10 zero crossings),
    evaluated on each chunk together with enough history of the previous input that every output
    sample sees exactly the inputs it would see if the whole stream were resampled at once.
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        g = math.gcd(src_rate, dst_rate)
        self.up, self.down = dst_rate // g, src_rate // g
        self._odd = b""
        self._passthrough = self.up == self.down == 1
        if self._passthrough:
            return
        from scipy.signal import firwin

        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        self._h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        self._delay = half_len
        self._keep = -(-(len(self._h) + self.down) // self.up) + 1  # input history an output may need
        self._hist = np.zeros(0)
        self._hist_start = 0  # stream index of _hist[0]
        self._total_in = 0
        self._next_out = 0

    def feed(self, pcm: bytes) -> bytes:
        """Resample the next chunk; returns what can be computed so far."""
        data = self._odd + pcm
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        if self._passthrough:
            return data[:cut]
        return to_pcm16(self._process(pcm16_to_float(data[:cut]), final=False))

    def flush(self) -> bytes:
        """The rest of the stream (the filter's tail); call once at the end."""
        self._odd = b""
        if self._passthrough:
            return b""
        return to_pcm16(self._process(np.zeros(0), final=True))

    def _process(self, x: np.ndarray, final: bool) -> np.ndarray:
        from scipy.signal import upfirdn

        up, down = self.up, self.down
        start = self._hist_start
        buf = np.concatenate([self._hist, x])
        self._total_in += len(x)
        if final:
            n_end = -(-self._total_in * up // down)  # resample_poly's output length
            padded = np.concatenate([buf, np.zeros(self._keep + len(self._h) // up + 1)])
        else:
            n_end = max(0, (self._total_in * up - 1 - self._delay) // down + 1)
            padded = buf
        n0 = self._next_out
        out = np.zeros(0)
        if n_end > n0:
            # Output n is the filtered, upsampled stream at index n*down + delay; within this block
            # that is j0 + k*down. Delaying the filter by s = -j0 mod down puts those indices on
            # upfirdn's decimation grid, so only the needed outputs are computed.
            j0 = n0 * down + self._delay - start * up
            shift = (-j0) % down
            h = np.concatenate([np.zeros(shift), self._h]) if shift else self._h
            y = upfirdn(h, padded, up, down)
            first = (j0 + shift) // down
            out = y[first:first + (n_end - n0)]
            self._next_out = n_end
        tail = buf[-self._keep:] if len(buf) > self._keep else buf
        self._hist_start = start + len(buf) - len(tail)
        self._hist = tail
        return out
