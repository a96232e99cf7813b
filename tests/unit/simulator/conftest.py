"""Shared pieces for the simulator's unit tests: the shipped scripts, prompt audio and personas.

The robot's prompt library (dialog/audio) and the personas' answers are shipped data, so the
tests hear exactly what the robot and the customers say on a call, minus SIP.
"""

from __future__ import annotations

import numpy as np
import pytest

VALUES = {"surname": "王", "title": "先生", "store": "锦华丰田", "visit_date": "2024-06-03",
          "insurance_expiry": "2024-07-01", "warranty_end": "2024-08-01", "model": ""}


@pytest.fixture(scope="session")
def scripts():
    from dialog.script import SCRIPTS_DIR, load_scripts

    return load_scripts([SCRIPTS_DIR])


@pytest.fixture(scope="session")
def library():
    from dialog.prompts import PromptLibrary

    return PromptLibrary()


@pytest.fixture(scope="session")
def index(scripts, library):
    from campaigns.simulator.fingerprint import PromptIndex

    return PromptIndex.build(scripts, library)


@pytest.fixture(scope="session")
def book():
    from campaigns.personas import load_personas

    return load_personas(require_audio=True)


def g711(pcm: bytes) -> bytes:
    """A G.711 mu-law round trip (what a phone line does to the robot's voice)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    mu = 255.0
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round(y * 127) / 127
    z = np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu
    return np.clip(np.round(z * 32767), -32768, 32767).astype("<i2").tobytes()


@pytest.fixture(scope="session")
def robot(scripts, library):
    """``robot(script, key, *then)`` -> 8 kHz PCM of a prompt (a step's or a shared one) as the
    robot plays it through G.711; ``then`` keys are said right after (a re-prompt and the question)."""
    from dialog.prompts import render

    def say(script_id: str, key: str, *then: str, upto: str | None = None, template: str | None = None) -> bytes:
        """``upto``: stop after the fragment starting with this text; ``template``: say this instead."""
        script = scripts[script_id]
        fragments: tuple[str, ...] = ()
        for k in (key, *then):
            text = template if template is not None else script.steps[k].say if k in script.steps else script.prompt(k)
            fragments += render(text, VALUES, script.variables, library)[1]
        if upto is not None:
            fragments = fragments[: next(i for i, f in enumerate(fragments) if f.startswith(upto)) + 1]
        return g711(library.pcm(fragments, 8000))

    return say
