"""Audio flowing through a call: playbacks (our side) and frame streams (the customer's side).

Two kinds of thread touch these objects:

* the media clock thread (pjmedia's, or the fake phone's pacer) calls :meth:`PcmPlayback.read` and
  :meth:`FrameStream.put` once per 20 ms frame. Those paths take no lock and do no I/O: a slice of
  bytes, a ``SimpleQueue.put`` (C, lock-free for the producer), a counter. Measured at about 2 us per
  frame each, next to about 20 ms of budget per tick.
* any application thread calls ``stop``, ``wait``, ``write``, ``get``.

Handing over between them relies only on operations that are atomic under the GIL (attribute
assignment, ``deque.append``/``popleft``, ``SimpleQueue``), plus a ``threading.Event`` to wake waiters.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Iterator

from callcenter.domain import AudioFrame
from callcenter.telephony.audio import StreamResampler


class PcmPlayback:
    """A fixed buffer of 16-bit mono PCM at the call's rate, played frame by frame."""

    def __init__(self, pcm: bytes, rate: int, label: str = "") -> None:
        self._pcm = pcm[: len(pcm) - len(pcm) % 2]
        self._rate = rate
        self.label = label
        self._pos = 0
        self._stopped = False
        self._done = threading.Event()

    # -- media clock thread ---------------------------------------------------------------------
    def read(self, nbytes: int) -> bytes | None:
        """The next ``nbytes`` (zero-padded at the end), or None when finished or stopped."""
        if self._stopped or self._pos >= len(self._pcm):
            self._finish()
            return None
        chunk = self._pcm[self._pos:self._pos + nbytes]
        self._pos += nbytes
        if len(chunk) < nbytes:
            chunk += bytes(nbytes - len(chunk))
        if self._pos >= len(self._pcm):
            self._finish()  # its last frame is on its way: done now, not one frame later
        return chunk

    def _finish(self) -> None:
        if not self._done.is_set():
            self._done.set()

    # -- any thread -----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def interrupted(self) -> bool:
        return self._stopped and self._pos < len(self._pcm)

    @property
    def played_seconds(self) -> float:
        return min(self._pos, len(self._pcm)) / (2 * self._rate)

    @property
    def duration(self) -> float:
        return len(self._pcm) / (2 * self._rate)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def stop(self) -> None:
        self._stopped = True
        if self._pos == 0:
            # Never started (still queued): nothing will read it again, so finish it here.
            self._finish()

    def __repr__(self) -> str:
        return f"<PcmPlayback {self.label!r} {self.played_seconds:.2f}/{self.duration:.2f}s>"


class StreamPlayback:
    """A playback fed while it plays, e.g. by a streaming synthesiser.

    ``write`` may be called with any chunk size at ``sample_rate`` (resampled to the call's rate);
    ``close`` marks the end. If the writer falls behind, the call hears silence for those frames
    (counted in ``underruns``) and the stream goes on when data arrives.
    """

    def __init__(self, call_rate: int, sample_rate: int, label: str = "stream") -> None:
        self._rate = call_rate
        self.label = label
        self._resampler = StreamResampler(sample_rate, call_rate)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._head = b""  # media thread only
        self._closed = False
        self._stopped = False
        self._started = False
        self._played = 0
        self.underruns = 0
        self._write_lock = threading.Lock()
        self._done = threading.Event()

    def write(self, pcm: bytes) -> None:
        if self._closed:
            raise ValueError("stream already closed")
        if self._stopped:
            return
        with self._write_lock:  # resampler state belongs to one writer at a time
            out = self._resampler.feed(pcm)
        if out:
            self._chunks.append(out)

    def close(self) -> None:
        if self._closed:
            return
        with self._write_lock:
            tail = self._resampler.flush()
        if tail:
            self._chunks.append(tail)
        self._closed = True

    def read(self, nbytes: int) -> bytes | None:
        if self._stopped:
            self._done.set()
            return None
        buf = self._head
        while len(buf) < nbytes and self._chunks:
            buf += self._chunks.popleft()
        if len(buf) >= nbytes:
            self._head = buf[nbytes:]
            self._started = True
            self._played += nbytes
            return buf[:nbytes]
        if self._closed and not self._chunks:
            self._head = b""
            if buf:
                self._played += len(buf)
                return buf + bytes(nbytes - len(buf))
            self._done.set()
            return None
        # The writer is behind: keep what we have and play silence for this frame.
        self._head = buf
        if self._started:
            self.underruns += 1
        return bytes(nbytes)

    def _finish(self) -> None:
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def interrupted(self) -> bool:
        return self._stopped

    @property
    def played_seconds(self) -> float:
        return self._played / (2 * self._rate)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def stop(self) -> None:
        self._stopped = True
        self._chunks.clear()
        if not self._started:
            self._done.set()

    def __repr__(self) -> str:
        return f"<StreamPlayback {self.label!r} {self.played_seconds:.2f}s closed={self._closed}>"


_END = None


class FrameStream:
    """The customer's 20 ms frames for one consumer: a queue that ends with the call.

    Bounded by dropping the oldest frames when the consumer is more than ``max_frames`` behind
    (default 3000 = 60 s): a stuck consumer must not grow a worker's memory without limit.
    """

    def __init__(self, max_frames: int = 3000) -> None:
        self._q: queue.SimpleQueue[AudioFrame | None] = queue.SimpleQueue()
        self._max = max_frames
        self._closed = False
        self._finished = False  # consumer saw the end
        self.dropped = 0

    # -- media thread -----------------------------------------------------------------------------
    def put(self, frame: AudioFrame) -> None:
        if self._closed:
            return
        self._q.put(frame)
        if self._q.qsize() > self._max:
            try:
                self._q.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(_END)

    # -- consumer ---------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> AudioFrame | None:
        if self._finished:
            return None
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._finished = True
        return item

    def get_nowait(self) -> AudioFrame | None:
        return self.get(timeout=0) if not self._q.empty() else None

    @property
    def closed(self) -> bool:
        """The call ended; frames may still be buffered."""
        return self._closed

    @property
    def finished(self) -> bool:
        return self._finished

    def __iter__(self) -> Iterator[AudioFrame]:
        while True:
            frame = self.get()
            if frame is None:
                return
            yield frame

    def __len__(self) -> int:
        return self._q.qsize()
