"""Simulated customers (模拟客户): SIP phones that answer the robot's calls as personas.

The demo's and the end-to-end tests' customer. ``callcenter simulate --listen 127.0.0.1:5070``
starts (docs/simulator.md):

* :mod:`~campaigns.simulator.front`: one SIP address (the robot's ``CALLCENTER_SIP_TRUNK``), a
  stateless proxy that hands each new call to the least busy phone process;
* :mod:`~campaigns.simulator.bank`: the phone processes (4 calls each, supervised and restarted);
* :mod:`~campaigns.simulator.customer`: one call: the persona of the dialled number
  (:mod:`campaigns.personas`) rings, answers, is busy or lets it ring out, and writes a JSON call log;
* :mod:`~campaigns.simulator.turns`: turn-taking like a person (answers after the robot stops, or
  barges in), frames in, decisions out;
* :mod:`~campaigns.simulator.fingerprint`: which robot question is playing, by matching the audio
  against the robot's own rendered prompts (no speech recognition);
* :mod:`~campaigns.simulator.probe`: a scripted robot stand-in for tests, benchmark and commissioning.

Importing this package loads nothing; pjsua2 is loaded only by the phone processes. The end-to-end
tests read the call logs with :func:`campaigns.simulator.customer.read_call_logs`.
"""
