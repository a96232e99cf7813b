"""`callcenter call` / `callcenter worker` errors that come before any SIP stack is started."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from callcenter.cli import main


@pytest.fixture
def cli(tmp_path):
    def run(*args: str, **env: str):
        base = {k: None for k in os.environ if k.startswith("CALLCENTER_") and not k.startswith("CALLCENTER_TEST_")}
        base.update({"CALLCENTER_DATA_DIR": str(tmp_path), "CALLCENTER_ENV": "testing",
                     "CALLCENTER_LOG_LEVEL": "warning", "CALLCENTER_SIP_TRUNK": "127.0.0.1:15999"})
        base.update(env)
        return CliRunner().invoke(main, list(args), env=base, catch_exceptions=False)

    return run


def test_an_undialable_number_is_a_setup_error(cli):
    r = cli("call", "138-1234-abcd", "--json")
    assert r.exit_code == 1 and "cannot dial: 'abcd'" in r.output and "{" not in r.output


def test_a_missing_or_broken_prompt_is_a_setup_error(cli, tmp_path):
    r = cli("call", "13812345678", "--play", str(tmp_path / "missing.wav"))
    assert r.exit_code == 1 and "missing.wav: no such file" in r.output
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    r = cli("call", "13812345678", "--play", str(bad))
    assert r.exit_code == 1 and "bad.wav: no fmt chunk" in r.output


def test_bad_sip_settings_stop_the_call_command(cli):
    r = cli("call", "13812345678", CALLCENTER_SIP_CODECS="G729")
    assert r.exit_code == 1 and "CALLCENTER_SIP_CODECS" in r.output


def test_worker_without_its_default_job_says_which_job_to_run(cli, monkeypatch):
    import callcenter.telephony.supervisor as supervisor

    monkeypatch.setattr(supervisor, "DEFAULT_JOB", "campaigns.no_such_module:dialer_job")
    r = cli("worker", "--processes", "2")
    assert r.exit_code == 1
    assert "campaigns.no_such_module:dialer_job" in r.output and "--job callcenter.telephony.jobs:soak" in r.output


def test_worker_refuses_a_job_it_cannot_import_before_starting_anything(cli):
    r = cli("worker", "--job", "campaigns.no_such_module:job")
    assert r.exit_code == 1 and "cannot import campaigns.no_such_module" in r.output


def test_worker_rejects_malformed_job_arguments(cli):
    r = cli("worker", "--job", "callcenter.telephony.jobs:soak", "--job-arg", "target")
    assert r.exit_code == 1 and "expected KEY=VALUE" in r.output


def test_nothing_here_imports_pjsua2_until_a_phone_is_opened():
    code = ("import sys, callcenter.cli.telephony, callcenter.telephony, callcenter.telephony.fake, "
            "callcenter.telephony.supervisor, callcenter.telephony.jobs; "
            "from callcenter.cli import main; main.get_command(None, 'call'); "
            "print('pjsua2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_dialer_does_not_start_on_a_database_at_another_schema_revision(cli, tmp_path):
    r = cli("worker", "--processes", "1", CALLCENTER_DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}")
    assert r.exit_code == 1
    assert "revision none (not initialised)" in r.output and "run `callcenter init`" in r.output
