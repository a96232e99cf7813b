"""Call recordings: stereo WAV (left: the customer, right: our side) plus a JSON metadata file.

Threads: the media clock appends 20 ms frames to lock-free deques (:meth:`CallRecording.customer`,
:meth:`CallRecording.ours`, :meth:`CallRecording.mix`); one :class:`RecordingWriter` thread per phone
pairs them up, interleaves and writes them every 100 ms, and patches the WAV header after each write
so that a recording stays playable even if the worker is killed mid-call.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Frames one side may run ahead of the other before the lagging side is padded with silence.
# Both sides are clocked by the same conference-bridge tick, so in practice they differ by 0 or 1.
_MAX_SKEW_FRAMES = 10


class CallRecording:
    """One call's recording. Created when media starts, closed when the call ends."""

    def __init__(self, path: Path, rate: int, call_id: str, frame_bytes: int) -> None:
        self.path = Path(path)
        self.rate = rate
        self.call_id = call_id
        self._frame_bytes = frame_bytes
        self._silence = bytes(frame_bytes)
        self._left: collections.deque[bytes] = collections.deque()
        self._right: collections.deque[bytes] = collections.deque()
        self._mix: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()  # writer thread vs. close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._data_bytes = 0
        self._write_header()
        self.closed = False

    # -- media clock thread ---------------------------------------------------------------------
    def customer(self, pcm: bytes) -> None:
        self._left.append(pcm)

    def ours(self, pcm: bytes) -> None:
        self._right.append(pcm)

    def mix(self, pcm: bytes) -> None:
        """Audio of a bridged agent leg, added to our side."""
        self._mix.append(pcm)

    # -- writer thread ----------------------------------------------------------------------------
    def flush(self, final: bool = False) -> None:
        with self._lock:
            if self.closed:
                return
            left, right, mix = self._left, self._right, self._mix
            n = min(len(left), len(right))
            longest = max(len(left), len(right))
            if final or longest - n > _MAX_SKEW_FRAMES:
                n = longest - (0 if final else _MAX_SKEW_FRAMES)
            if n <= 0:
                return
            lchunks = [left.popleft() if left else self._silence for _ in range(n)]
            rchunks = [right.popleft() if right else self._silence for _ in range(n)]
            l_pcm = np.frombuffer(b"".join(lchunks), dtype="<i2")
            r_pcm = np.frombuffer(b"".join(rchunks), dtype="<i2")
            if mix:
                m = min(len(mix), n)
                extra = np.frombuffer(b"".join(mix.popleft() for _ in range(m)), dtype="<i2")
                r_pcm = r_pcm.astype(np.int32)
                r_pcm[: len(extra)] += extra
                r_pcm = np.clip(r_pcm, -32768, 32767)
                while len(mix) > _MAX_SKEW_FRAMES:  # the agent leg runs ahead: keep it aligned
                    mix.popleft()
            count = min(len(l_pcm), len(r_pcm))
            stereo = np.empty(2 * count, dtype="<i2")
            stereo[0::2] = l_pcm[:count]
            stereo[1::2] = r_pcm[:count]
            self._file.write(stereo.tobytes())
            self._data_bytes += 4 * count
            self._write_header()

    def _write_header(self) -> None:
        end = self._file.tell()
        self._file.seek(0)
        self._file.write(_wav_header(self.rate, 2, self._data_bytes))
        self._file.seek(max(end, 44))
        self._file.flush()

    @property
    def seconds(self) -> float:
        return self._data_bytes / (4 * self.rate)

    def close(self, metadata: dict[str, Any]) -> Path:
        """Write what is left, finish the WAV, and write ``<name>.json`` beside it."""
        self.flush(final=True)
        with self._lock:
            if not self.closed:
                self.closed = True
                self._file.close()
        meta = {
            "call_id": self.call_id,
            "file": self.path.name,
            "sample_rate": self.rate,
            "channels": {"left": "customer", "right": "robot and agent"},
            "seconds": round(self.seconds, 3),
            **metadata,
        }
        meta_path = self.path.with_suffix(".json")
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=2, default=str))
        os.replace(tmp, meta_path)
        return meta_path


def _wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    block = 2 * channels
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, channels, rate,
        rate * block, block, 16, b"data", data_bytes,
    )


class RecordingWriter:
    """Flushes every live recording of a phone every ``interval`` seconds, off the media clock."""

    def __init__(self, interval: float = 0.1, name: str = "recorder") -> None:
        self._interval = interval
        self._recordings: set[CallRecording] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, rec: CallRecording) -> None:
        with self._lock:
            self._recordings.add(rec)

    def remove(self, rec: CallRecording) -> None:
        with self._lock:
            self._recordings.discard(rec)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                live = list(self._recordings)
            for rec in live:
                try:
                    rec.flush()
                except Exception:  # a full disk must not kill the writer for every other call
                    logger.exception("call %s: writing the recording failed", rec.call_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1) -> None:
    """Write 16-bit PCM as a WAV file (tests, tools)."""
    path = Path(path)
    path.write_bytes(_wav_header(rate, channels, len(pcm)) + pcm)
