"""A dialer worker process for the fault tests: ``campaigns.worker.serve`` with the fake runner.

Run as a script (``python worker_main.py --dial-log FILE``) with the CALLCENTER_* settings in the
environment, exactly as a production worker would be configured; only the runner differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_runner import FakeRunner

from callcenter.config import Settings
from callcenter.logs import setup_logging
from campaigns.worker import WorkerOptions, serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dial-log", required=True, type=Path)
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--call-seconds", type=float, default=0.2)
    args = parser.parse_args()
    settings = Settings.from_env()
    setup_logging(settings.log_level)
    runner = FakeRunner(capacity=args.capacity, call_seconds=args.call_seconds, dial_log=args.dial_log,
                        callback_in=0.5)
    options = WorkerOptions.from_settings(settings, scheduler_interval=0.2, block_ms=300, stop_grace=15)
    serve(settings, runner, options=options)


if __name__ == "__main__":
    main()
