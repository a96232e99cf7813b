"""Signals for telephony unit tests: generated, so every expected value is known exactly."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes()


def wav_bytes(data: bytes, rate: int, channels: int, bits: int, fmt: int = 1, extensible: bool = False) -> bytes:
    block = channels * bits // 8
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_chunk = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0)
        fmt_chunk += struct.pack("<H", fmt) + guid_tail
    else:
        fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    body = b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk readers must skip
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


class Signals:
    tone = staticmethod(tone)
    pcm16 = staticmethod(pcm16)
    wav_bytes = staticmethod(wav_bytes)


@pytest.fixture
def sig() -> type[Signals]:
    """Signal helpers (``sig.tone``, ``sig.pcm16``, ``sig.wav_bytes``); a fixture because test
    modules cannot import this conftest under --import-mode=importlib."""
    return Signals


@pytest.fixture
def write_wav(tmp_path):
    """write_wav(name, data, rate, channels=1, bits=16, fmt=1) -> Path"""

    def write(name: str, data: bytes, rate: int, channels: int = 1, bits: int = 16, fmt: int = 1,
              extensible: bool = False) -> Path:
        path = tmp_path / name
        path.write_bytes(wav_bytes(data, rate, channels, bits, fmt, extensible))
        return path

    return write
