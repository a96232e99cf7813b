"""What the process-level benchmarks share: free port ranges on 127.0.0.1 (``PortPicker``, from
:mod:`callcenter.ports`) and CPU accounting from /proc (a process tree's CPU seconds, the whole
machine's busy seconds)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from callcenter.ports import PortPicker

__all__ = ["PortPicker", "cpu_seconds", "machine_busy", "tree_cpu"]

CLK_TCK = os.sysconf("SC_CLK_TCK")


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
