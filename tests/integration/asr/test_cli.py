"""The speech commands end to end, in-process, with the real models."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from callcenter.cli import main

from .conftest import DATA, EVAL

pytestmark = [pytest.mark.integration, pytest.mark.models]


@pytest.fixture
def invoke(models_dir, tmp_path):
    def run(*args):
        env = {"CALLCENTER_DATA_DIR": str(tmp_path / "var"), "CALLCENTER_MODELS_DIR": str(models_dir),
               "CALLCENTER_LOG_LEVEL": "warning"}
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def test_transcribe_json_lines_and_a_clear_error_for_a_broken_file(invoke, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    good = EVAL / "wav" / "callback-04.wav"
    result = invoke("transcribe", "--json", str(good), str(broken))
    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert set(first) == {"file", "engine", "duration", "rtf", "text", "segments"}
    assert first["engine"] == "whisper" and first["duration"] == pytest.approx(3.59, abs=0.3)
    assert first["text"] and set(first["segments"][0]) == {"start", "end", "text", "confidence"}
    assert second["file"] == str(broken) and "truncated" in second["error"]


def test_asr_eval_with_vosk_and_a_grammar_on_korean(invoke, tmp_path):
    manifest = tmp_path / "ko.jsonl"
    clips = {"ne": "네", "callback": "다시 전화해 주세요", "tomorrow": "내일 오후"}
    manifest.write_text("".join(json.dumps({"file": str(DATA / "ko" / f"{k}.wav"), "text": v}, ensure_ascii=False)
                                + "\n" for k, v in clips.items()), encoding="utf-8")
    result = invoke("asr", "eval", str(manifest), "--engine", "vosk", "--grammar", str(DATA / "ko" / "grammar.txt"),
                    "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["engine"] == "vosk" and report["utterances"] == 3
    assert report["wer"] == 0.0 and report["worst"] == []


def test_asr_eval_prints_cer_rtf_and_worst_utterances(invoke, tmp_path):
    lines = (EVAL / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({**json.loads(l), "file": str(EVAL / json.loads(l)["file"])},
                                           ensure_ascii=False) + "\n" for l in lines), encoding="utf-8")
    result = invoke("asr", "eval", str(manifest))
    assert result.exit_code == 0, result.output
    assert "3 utterances" in result.stdout and "CER " in result.stdout and "RTF " in result.stdout


def test_models_install_check_verifies_what_is_there(invoke):
    result = invoke("models", "install", "--check", "--json")
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert models["whisper-base"]["verified"] is True and models["ko"]["verified"] is True


def test_missing_model_is_a_clear_error(tmp_path):
    env = {"CALLCENTER_DATA_DIR": str(tmp_path), "CALLCENTER_MODELS_DIR": str(tmp_path / "none")}
    result = CliRunner().invoke(main, ["transcribe", str(EVAL / "wav" / "short-01.wav")], env=env)
    assert result.exit_code == 1
    assert "callcenter models install" in result.output
