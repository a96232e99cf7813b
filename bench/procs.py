"""What the process-level benchmarks share: free port ranges on 127.0.0.1 and CPU accounting
from /proc (a process tree's CPU seconds, the whole machine's busy seconds)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


class PortPicker:
    """Consecutive free UDP+TCP ports in [lo, hi), never handing out the same port twice
    until :meth:`release` (call it when the processes that held them are gone)."""

    def __init__(self, lo: int, hi: int, seed: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        self._rng = random.Random(os.getpid() if seed is None else seed)
        self._taken: set[int] = set()

    def __call__(self, count: int) -> int:
        for _ in range(500):
            base = self._rng.randrange(self.lo, self.hi - count)
            span = range(base, base + count)
            if not self._taken.intersection(span) and all(_free(p) for p in span):
                self._taken.update(span)
                return base
        raise RuntimeError(f"no {count} free consecutive ports in {self.lo}-{self.hi - 1}")

    def release(self) -> None:
        self._taken.clear()


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of one process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu(root: int) -> float:
    """utime+stime (s) of ``root`` and its direct children."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(root)], capture_output=True, text=True,
                         check=False).stdout.split()
    return sum(cpu_seconds(pid) or 0.0 for pid in [root, *map(int, out)])


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / CLK_TCK
