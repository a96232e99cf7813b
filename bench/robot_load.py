"""One process of real robot calls for ``bench/bench_robot.py``: up to 4 concurrent post_service
calls (pjsua2: one phone, 4 calls per process) through the whole robot of a worker process
(:class:`campaigns.robot.RobotRunner`: telephony, live speech recognition, the dialog and the
feedback classifier), built as ``callcenter dial`` builds it.

Usage: ``python -m bench.robot_load PLAN.json``. PLAN: ``calls``: ``[{"number", "call_id",
"delay"}]`` (``delay``: seconds after "go" before dialling; optional ``script``, default
post_service); ``workers`` (optional): run the calls that many at a time, each thread taking the
next call when its last one ended (``delay`` then only staggers the first calls); ``record``
(optional): write each call's outcome into the database of the settings with
:func:`campaigns.outcomes.record_outcome`, as a dialer worker does, on the call row ``call_id``
that the caller created (``bench/bench_calls.py``); ``turns_log`` (optional): a file the dialog's
turns of every call are logged to. Settings come from ``CALLCENTER_*``
(the benchmark sets the trunk, ports, data and models directories and the ASR engine).

Protocol on stdout/stdin: one JSON line ``{"ready": ...}`` once the models are loaded and the
prompts converted; then the process waits for a line on stdin (so that every process starts its
calls together, after all models are loaded) and prints one JSON line with the calls: each is
:func:`campaigns.robot.describe` plus what the benchmark needs to time turns on an absolute
clock (``robot_prompts``: epoch at which each prompt started playing; ``finals``: epoch at which
each final transcript, empty ones included, reached the call), the SIP Call-ID (to find the
simulator's log), and the media counters of the telephony result and the recognizer stream.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path


class _TimingObserver:
    """A :class:`campaigns.runner.CallObserver` that stamps what the runner reports with the wall
    clock: the robot's prompts (reported as playback is queued) and the customer's finals (reported
    on the recognizer's thread as they are decoded)."""

    def __init__(self) -> None:
        self.prompts: list[dict] = []
        self.finals: list[dict] = []
        self.answered_at: float | None = None

    def ringing(self) -> None:
        pass

    def answered(self) -> None:
        self.answered_at = time.time()

    def transcript(self, seq, speaker, text, *, is_final, start, end) -> None:
        now = time.time()
        if speaker.value == "robot":
            self.prompts.append({"at": now, "start": start, "end": end, "text": text})
        elif is_final:  # empty finals too: the recognizer's end of an utterance it found no words in
            self.finals.append({"at": now, "start": start, "end": end, "text": text})

    def transferred(self, agent_id) -> None:
        pass


class _PhoneTap:
    """The phone, passed through, keeping each call's handle (its telephony result carries the
    frame counters that :class:`callcenter.domain.calls.CallResult` does not)."""

    def __init__(self, phone) -> None:
        self._phone = phone
        self.handles: dict[str, object] = {}

    def dial(self, target, *, call_id, **kw):
        handle = self._phone.dial(target, call_id=call_id, **kw)
        self.handles[call_id] = handle
        return handle

    def __getattr__(self, name):
        return getattr(self._phone, name)


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    from callcenter.config import Settings
    from callcenter.telephony import SipConfig, open_phone
    from campaigns.robot import RobotModels, RobotRunner, default_context, describe
    from campaigns.runner import CallRequest

    t0 = time.monotonic()
    if plan.get("turns_log"):
        # The dialog's turns of every call (what was heard, read and decided, the audio's likeliest
        # answers), one line each at the end of a call, for reading calls afterwards.
        import logging

        handler = logging.FileHandler(plan["turns_log"], encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("dialog.engine")
        log.setLevel(logging.DEBUG)
        log.addHandler(handler)
    settings = Settings.from_env()
    sip = SipConfig.from_settings(settings)
    models = RobotModels.load(settings)
    phone = open_phone(sip.replace(sip_port=0, max_calls=4), name=plan.get("name", "bench-robot"))
    tap = _PhoneTap(phone)
    runner = RobotRunner(tap, models, settings)
    streams: dict[str, object] = {}
    open_stream = runner.asr.open_stream

    def tapped_open_stream(stream_id, on_event, **kw):
        stream = open_stream(stream_id, on_event, **kw)
        streams[stream_id] = stream
        return stream

    runner.asr.open_stream = tapped_open_stream
    results: list = [None] * len(plan["calls"])
    db = None
    if plan.get("record"):
        from callcenter.storage import Database

        db = Database(settings.database_url)
    try:
        fragments = runner.warm_up()
        print(json.dumps({"ready": True, "load_seconds": round(time.monotonic() - t0, 1), "fragments": fragments,
                          "engine": settings.asr_engine}), flush=True)
        sys.stdin.readline()
        go = time.monotonic()
        usage0 = resource.getrusage(resource.RUSAGE_SELF)

        def one(i: int, call: dict) -> None:
            time.sleep(max(0.0, go + call["delay"] - time.monotonic()))
            observer = _TimingObserver()
            request = CallRequest(call_id=call["call_id"], task_id=0, attempt=1, campaign_id=0, customer_id=0,
                                  store_id=0, phone=call["number"], script=call.get("script", "post_service"),
                                  context=default_context(), store_timezone=settings.timezone)
            try:
                result = runner.run(request, observer)
            except Exception as exc:  # noqa: BLE001 - reported to the benchmark as data
                results[i] = {"number": call["number"], "error": f"{type(exc).__name__}: {exc}"}
                return
            out = describe(result)
            if db is not None:
                from campaigns.outcomes import record_outcome
                from campaigns.rules import RetryPolicy

                with db.session() as session:
                    out["recorded"] = record_outcome(session, call["call_id"], result, RetryPolicy()).recorded
            handle = tap.handles.get(f"c{call['call_id']}a1")
            tel = handle.wait_ended(timeout=5) if handle is not None else None
            stream = streams.get(f"call-{call['call_id']}")
            out.update({
                "number": call["number"],
                "sip_call_id": result.sip_call_id,
                "answered_at": result.answered_at.timestamp() if result.answered_at else None,
                "ended_at": result.ended_at.timestamp() if result.ended_at else None,
                "robot_prompts": observer.prompts,
                "finals": observer.finals,
                "frames_lost": getattr(tel, "frames_lost", None),
                "frames_dropped": getattr(tel, "frames_dropped", None),
                "asr_dropped_seconds": round(getattr(stream, "dropped_seconds", 0.0), 2),
            })
            results[i] = out

        if plan.get("workers"):
            todo = list(enumerate(plan["calls"]))
            lock = threading.Lock()

            def pooled() -> None:
                while True:
                    with lock:
                        if not todo:
                            return
                        i, call = todo.pop(0)
                    try:
                        one(i, call)
                    except Exception as exc:  # noqa: BLE001 - one call's recording must not stop the others
                        results[i] = {"number": call["number"], "error": f"{type(exc).__name__}: {exc}"}

            threads = [threading.Thread(target=pooled, name=f"bench-pool-{w}") for w in range(plan["workers"])]
        else:
            threads = [threading.Thread(target=one, args=(i, c), name=f"bench-call-{i}")
                       for i, c in enumerate(plan["calls"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime
    finally:
        runner.close()
        phone.close()
        if db is not None:
            db.dispose()
    print(json.dumps({"calls": results, "cpu_seconds": round(cpu, 2), "wall_seconds": round(time.monotonic() - go, 1),
                      "max_rss_mb": round(usage1.ru_maxrss / 1024, 1)}, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
