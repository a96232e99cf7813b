"""Run the benchmarks: ``python -m bench [AREA ...]`` (all when none is named).

Each ``bench/bench_<area>.py`` has ``run(args) -> dict``; results are printed and written
to ``bench/results/<area>.json`` with the machine and the date. ``docs/benchmarks.md``
quotes the latest figures. A result whose ``failures`` list is not empty (a target missed)
is marked FAIL and makes the exit status 1, as an area that raised does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb, "python": platform.python_version(),
            "os": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    areas = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("areas", nargs="*", choices=areas + [[]], help="which benchmarks (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--split", choices=["tune", "test"], default="test",
                        help="calls: which personas (docs/data-card-calls.md; default test)")
    parser.add_argument("--concurrency", type=int, default=4, help="calls: concurrent calls (default 4)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="calls: run the split N times and pool the figures (default 1)")
    parser.add_argument("--hearing", choices=["sip", "text"], default="sip",
                        help="calls: 'sip' (default) the whole path, voices through SIP and Whisper; 'text' the "
                             "personas' lines as typed text (perfect hearing, seconds; bench/calls_text.py)")
    args = parser.parse_args(argv)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    failed = 0
    for area in args.areas or areas:
        module = importlib.import_module(f"bench.bench_{area}")
        print(f"== {area}", flush=True)
        started = dt.datetime.now().astimezone()
        try:
            result = module.run(args)
        except Exception as exc:  # report and go on with the other areas
            print(f"!! {area} failed: {exc!r}", file=sys.stderr)
            failed += 1
            continue
        record = {"area": area, "date": started.isoformat(timespec="seconds"), "machine": machine(),
                  "quick": args.quick, "results": result}
        (out / f"{area}.json").write_text(json.dumps(record, ensure_ascii=False, indent=2))
        print(json.dumps(result, ensure_ascii=False, indent=2), flush=True)
        # A benchmark that checks targets lists what missed them under "failures".
        if result.get("failures"):
            print(f"!! {area}: FAIL ({len(result['failures'])} targets missed)", file=sys.stderr)
            for failure in result["failures"]:
                print(f"!!   {failure}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
