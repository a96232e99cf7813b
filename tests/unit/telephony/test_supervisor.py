"""The supervisor with real worker processes (spawned interpreters) running the fake phone."""

import json
import os
import signal
import threading
import time

import pytest

from callcenter.config import Settings
from callcenter.telephony.config import SipConfig
from callcenter.telephony.supervisor import Supervisor, resolve

FAKE = "callcenter.telephony.fake:open_fake_phone"
SOAK = "callcenter.telephony.jobs:soak"


def supervisor(tmp_path, processes, **job_args) -> Supervisor:
    settings = Settings(data_dir=tmp_path, env="testing", log_level="WARNING")
    sip = SipConfig(trunk="fake.trunk", sip_port=0, recordings_dir=tmp_path / "rec")
    return Supervisor(settings, sip, processes=processes, job=SOAK, job_args=job_args, phone_factory=FAKE,
                      backoff_initial=0.2, backoff_max=0.8, stable_after=30, stop_grace=10)


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not true within {timeout} s")


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_workers_run_their_job_to_the_end_and_are_not_restarted(tmp_path):
    sup = supervisor(tmp_path, 2, target="8001", calls="3", talk="0.1", results=str(tmp_path / "out"))
    sup.run(threading.Event(), poll_interval=0.05)
    for i in range(2):
        calls = lines(tmp_path / "out" / f"worker-{i}.jsonl")
        assert len(calls) == 3 and {c["disposition"] for c in calls} == {"answered"}
        assert all(c["frames"] >= 4 and c["timestamp_gaps"] == 0 for c in calls)
    assert [(s["state"], s["restarts"], s["last_exit"]) for s in sup.status()] == [("done", 0, 0)] * 2


def test_a_worker_whose_job_fails_is_restarted_with_growing_backoff(tmp_path):
    sup = supervisor(tmp_path, 1, target="8001", bogus="1")  # the job refuses an unknown argument
    stop = threading.Event()
    runner = threading.Thread(target=sup.run, args=(stop, 0.05))
    runner.start()
    try:
        wait_for(lambda: sup.slots[0].restarts >= 3, timeout=60)
    finally:
        stop.set()
        runner.join(30)
    slot = sup.slots[0]
    assert slot.last_exit == 1 and slot.failures >= 3 and not slot.done


def test_kill_9_of_a_worker_leads_to_a_restart(tmp_path):
    sup = supervisor(tmp_path, 2, target="8001", talk="0.2", results=str(tmp_path / "out"))
    stop = threading.Event()
    runner = threading.Thread(target=sup.run, args=(stop, 0.05))
    runner.start()
    try:
        out = tmp_path / "out" / "worker-1.jsonl"
        wait_for(lambda: len(lines(out)) >= 2, timeout=60)
        victim = sup.slots[1].process.pid
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: sup.slots[1].restarts == 1 and sup.slots[1].process is not None, timeout=30)
        assert sup.slots[1].process.pid != victim and sup.slots[0].restarts == 0
        before = len(lines(out))
        wait_for(lambda: len(lines(out)) > before, timeout=60)  # the new worker is placing calls again
    finally:
        stop.set()
        runner.join(30)
    assert [s["last_exit"] for s in sup.status()] == [0, 0]  # SIGTERM: jobs return, workers exit 0


@pytest.mark.parametrize("spec,fragment", [
    ("nocolon", "expected module:function"),
    ("campaigns.no_such_module:job", "cannot import"),
    ("callcenter.telephony.jobs:nope", "has no nope"),
    ("callcenter.telephony.jobs:logger", "not callable"),
])
def test_job_specs_are_checked_with_clear_errors(spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        resolve(spec)
