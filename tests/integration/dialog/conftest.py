"""Fixtures for the dialog's integration tests: the models scripts/setup built, and the CLI.

The models are the real ones (``callcenter classifier build-default``, run by scripts/setup into
``Settings.models_dir``, default ``var/models``); a test that finds none fails and says how to
build them, rather than skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def dialog_models() -> Path:
    models = Path(os.environ.get("CALLCENTER_MODELS_DIR") or ROOT / "var" / "models")
    if not models.is_absolute():
        models = ROOT / models
    if not (models / "dialog" / "build.json").is_file():
        pytest.fail(f"no dialog models under {models}: run scripts/setup (or `callcenter classifier build-default`)")
    return models


@pytest.fixture(scope="session")
def default_classifier(dialog_models):
    from dialog.models import open_feedback_classifier

    return open_feedback_classifier(dialog_models, threads=1)


@pytest.fixture(scope="session")
def nlu(dialog_models):
    from zoneinfo import ZoneInfo

    from dialog.models import open_nlu

    return open_nlu(dialog_models, ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def nlp_cli(dialog_models, tmp_path):
    """Run ``callcenter`` in-process against the built models: ``nlp_cli("nlu", "好")``."""
    from click.testing import CliRunner

    from callcenter.cli import main

    env = {k: None for k in os.environ if k.startswith("CALLCENTER_") and not k.startswith("CALLCENTER_TEST_")}
    env.update({"CALLCENTER_MODELS_DIR": str(dialog_models), "CALLCENTER_DATA_DIR": str(tmp_path / "var"),
                "CALLCENTER_ENV": "testing", "CALLCENTER_LOG_LEVEL": "warning", "CALLCENTER_NLP_THREADS": "1"})

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)

    return run
