"""One process of robot stand-ins: up to 4 concurrent calls to the simulator (pjsua2: one phone,
4 calls per process), each playing post_service prompts in order (campaigns.simulator.probe).

Usage: ``python robot_stand_in.py PLAN.json``; PLAN: ``trunk``, ``sip_port``, ``rtp_port``,
``calls``: ``[{"number": ..., "prompts": [...], "ring_timeout": s}]``. Prints one JSON line: the
list of ProbeResult dicts, in the order of the plan. Used by the simulator's integration tests and
benchmark.
"""

import json
import sys
import threading
from pathlib import Path

from callcenter.telephony import SipConfig, open_phone
from campaigns.simulator.probe import ScriptedCaller


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    sip = SipConfig(bind_address="127.0.0.1", sip_port=plan["sip_port"], rtp_port=plan["rtp_port"], rtp_port_range=40,
                    trunk=plan["trunk"], audio_rate=plan.get("rate", 16000), ring_timeout=30,
                    recordings_dir=Path(sys.argv[1]).parent / "recordings")
    phone = open_phone(sip, name=plan.get("name", "robot"))
    results: list = [None] * len(plan["calls"])
    try:
        caller = ScriptedCaller(phone)
        for call in plan["calls"]:
            for key in call["prompts"]:
                caller.prompt(key)  # render every prompt before the first call

        def run(i: int, call: dict) -> None:
            try:
                out = caller.call(call["number"], call["prompts"], ring_timeout=call.get("ring_timeout", 30))
                results[i] = out.to_dict()
            except Exception as exc:  # noqa: BLE001 - reported to the test as data
                results[i] = {"number": call["number"], "error": f"{type(exc).__name__}: {exc}"}

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(plan["calls"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        phone.close()
    print(json.dumps(results, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
