"""Free local ports, for whatever starts SIP/RTP processes on one machine (the benchmarks, the
tests, a demo): whether a port can be bound for both UDP and TCP, and a picker of consecutive free
ports that never hands the same port out twice."""

from __future__ import annotations

import os
import random
import socket


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` on ``host`` can be bound now, for UDP and for TCP."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


class PortPicker:
    """Consecutive free UDP+TCP ports in [lo, hi) on 127.0.0.1, never handing out the same port
    twice until :meth:`release` (call it when the processes that held them are gone)."""

    def __init__(self, lo: int, hi: int, seed: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        self._rng = random.Random(os.getpid() if seed is None else seed)
        self._taken: set[int] = set()

    def __call__(self, count: int) -> int:
        for _ in range(500):
            base = self._rng.randrange(self.lo, self.hi - count)
            span = range(base, base + count)
            if not self._taken.intersection(span) and all(is_free(p) for p in span):
                self._taken.update(span)
                return base
        raise RuntimeError(f"no {count} free consecutive ports in {self.lo}-{self.hi - 1}")

    def release(self) -> None:
        self._taken.clear()
