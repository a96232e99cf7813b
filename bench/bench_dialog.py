"""Dialog benchmark: classifier quality (all three models), NLU quality, speed, and robustness on
speech that went through TTS, a telephone channel and Whisper.

``python -m bench dialog [--quick]``. Reads the built models (``scripts/setup`` builds them into
``Settings.models_dir``), the test splits of ``dialog/data`` and the ASR engineer's evaluation set
(``bench/data/asr/manifest.jsonl``) with this project's labels for it
(``bench/data/dialog/asr_labels.jsonl``). Whisper transcripts of that set are cached in
``bench/results/dialog_asr_transcripts.json`` (keyed by the audio's and the engine's identity), so
only the first run pays for recognition. ``--quick`` skips the ASR part and shortens the timing loops.

Targets (issue 5): categories macro-F1 >= 0.85, sentiment accuracy >= 0.90, intent accuracy >= 0.92,
score extraction >= 0.95 (test split and ASR set); >= 300 texts/s batched and <= 20 ms per single
text on 2 cores. The load average is recorded with every figure: the machine is shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASR_MANIFEST = ROOT / "bench" / "data" / "asr" / "manifest.jsonl"
ASR_LABELS = ROOT / "bench" / "data" / "dialog" / "asr_labels.jsonl"
CACHE = ROOT / "bench" / "results" / "dialog_asr_transcripts.json"
TARGETS = {"macro_f1": 0.85, "sentiment_accuracy": 0.90, "intent_accuracy": 0.92, "score_accuracy": 0.95,
           "texts_per_second": 300, "single_text_ms": 20}


def _load() -> dict:
    one, five, _ = os.getloadavg()
    return {"load_1min": round(one, 2), "load_5min": round(five, 2), "cores": os.cpu_count()}


def _settings():
    from callcenter.config import Settings

    settings = Settings.from_env()
    models = Path(settings.models_dir)
    if not models.is_absolute():
        models = ROOT / models
    return settings, models


def evaluate_classifiers(models: Path, threads: int, texts, gold) -> dict:
    from dialog.classifier import load_classifier
    from dialog.classifier.evaluate import evaluate
    from dialog.classifier.keywords import KeywordClassifier
    from dialog.models import ENSEMBLE, NGRAM, TRANSFORMER, dialog_dir

    out = {}
    engines = {"keyword": KeywordClassifier(), "ngram": load_classifier(dialog_dir(models) / NGRAM),
               "transformer": load_classifier(dialog_dir(models) / TRANSFORMER, threads=threads)}
    if (dialog_dir(models) / ENSEMBLE).is_dir():
        engines["ensemble"] = load_classifier(dialog_dir(models) / ENSEMBLE, threads=threads)
    for name, clf in engines.items():
        report = evaluate(clf.classify(texts), gold)
        out[name] = {"macro_f1": report["macro_f1"], "sentiment_accuracy": report["sentiment_accuracy"],
                     "micro_f1": report["micro_f1"], "exact_match": report["exact_match"],
                     "per_category_f1": {k: v["f1"] for k, v in report["per_category"].items()},
                     "sentiment_confusion": report["sentiment_confusion"], "n": report["n"]}
    return out


def speed(clf, texts: list[str], quick: bool) -> dict:
    """Batched throughput over ``texts`` (repeated to at least 1,000) and single-text latency."""
    clf.classify(texts[:8])  # warm-up: first calls allocate
    batch = (texts * (1 + 1000 // len(texts)))[: (300 if quick else 2000)]
    started = time.perf_counter()
    clf.classify(batch)
    throughput = len(batch) / (time.perf_counter() - started)
    singles = []
    for t in texts[: (50 if quick else 300)]:
        s = time.perf_counter()
        clf.classify([t])
        singles.append((time.perf_counter() - s) * 1000)
    singles.sort()
    return {"texts_per_second": round(throughput, 1), "batch_texts": len(batch),
            "single_text_ms": {"p50": round(statistics.median(singles), 2),
                               "p95": round(singles[int(0.95 * (len(singles) - 1))], 2), "n": len(singles)}}


def evaluate_nlu(nlu, rows, now) -> dict:
    ok = score_ok = score_n = cb_ok = cb_n = 0
    per: dict[str, list[int]] = {}
    latencies = []
    for r in rows:
        s = time.perf_counter()
        res = nlu.parse(r["text"], r["context"], now)
        latencies.append((time.perf_counter() - s) * 1000)
        hit = res.intent == r["intent"]
        ok += hit
        per.setdefault(r["intent"], [0, 0])
        per[r["intent"]][0] += hit
        per[r["intent"]][1] += 1
        if r["context"] in ("sat", "nps") or r["score5"] is not None or r["nps"] is not None:
            score_n += 1
            score_ok += res.score5 == r["score5"] and res.nps == r["nps"]
        if r["callback_at"] is not None or r["intent"] == "busy_callback":
            cb_n += 1
            want = r["callback_at"].isoformat() if hasattr(r["callback_at"], "isoformat") else r["callback_at"]
            got = res.callback_at.isoformat() if res.callback_at else None
            cb_ok += _same_time(got, want)
    latencies.sort()
    return {"intent_accuracy": round(ok / len(rows), 4), "n": len(rows),
            "score_accuracy": round(score_ok / max(1, score_n), 4), "score_n": score_n,
            "callback_accuracy": round(cb_ok / max(1, cb_n), 4), "callback_n": cb_n,
            "per_intent_accuracy": {k: round(v[0] / v[1], 3) for k, v in sorted(per.items())},
            "turn_ms": {"p50": round(statistics.median(latencies), 2),
                        "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2)}}


def _same_time(a: str | None, b: str | None) -> bool:
    import datetime as dt

    if a is None or b is None:
        return a is None and b is None
    return dt.datetime.fromisoformat(a) == dt.datetime.fromisoformat(b)


def asr_transcripts(settings, models: Path) -> dict[str, str]:
    """Whisper's text for every utterance of the ASR set (cached)."""
    from asr import open_engine
    from asr.transcribe import evaluate

    engine = open_engine("whisper", models, threads=settings.asr_threads, beam_size=settings.whisper_beam_size)
    key_src = [engine.name, repr(getattr(engine, "options", "")), ASR_MANIFEST.read_bytes()]
    for line in ASR_MANIFEST.read_text(encoding="utf-8").splitlines():
        wav = ASR_MANIFEST.parent / json.loads(line)["file"]
        key_src.append(wav.read_bytes()[-4096:])
    key = hashlib.sha256(b"".join(k if isinstance(k, bytes) else k.encode() for k in key_src)).hexdigest()
    if CACHE.is_file():
        cached = json.loads(CACHE.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached["transcripts"]
    report = evaluate(engine, ASR_MANIFEST)
    by_file = {Path(i.file).stem: i.hypothesis for i in report.items}
    CACHE.parent.mkdir(exist_ok=True)
    CACHE.write_text(json.dumps({"key": key, "engine": engine.name, "transcripts": by_file}, ensure_ascii=False,
                                indent=1), encoding="utf-8")
    return by_file


def evaluate_asr_set(settings, models: Path, nlu, clf, now) -> dict:
    from dialog.classifier.evaluate import Gold, evaluate

    labels = [json.loads(line) for line in ASR_LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    started = time.time()
    hyps = asr_transcripts(settings, models)
    out = {"utterances": len(labels), "transcribe_seconds": round(time.time() - started, 1)}
    for source in ("reference", "whisper"):
        rows = [{**r, "text": r["text"] if source == "reference" else hyps.get(r["id"], "")} for r in labels]
        fb = [r for r in rows if r["categories"] is not None]
        report = evaluate(clf.classify([r["text"] for r in fb]), [Gold(tuple(r["categories"]), r["sentiment"])
                                                                  for r in fb])
        out[source] = {"nlu": evaluate_nlu(nlu, rows, now),
                       "classifier": {"macro_f1": report["macro_f1"], "sentiment_accuracy": report["sentiment_accuracy"],
                                      "n": report["n"], "per_category_f1": {k: v["f1"] for k, v in
                                                                            report["per_category"].items()}}}
    return out


def run(args) -> dict:
    from zoneinfo import ZoneInfo

    from dialog.classifier import load_classifier
    from dialog.classifier.evaluate import Gold
    from dialog.datasets import REFERENCE_NOW, load_feedback, load_intents
    from dialog.models import BUILD_FILE, TRANSFORMER, dialog_dir, open_feedback_classifier, open_nlu

    settings, models = _settings()
    result: dict = {"targets": TARGETS, "load_before": _load(), "threads": settings.nlp_threads}
    build = json.loads((dialog_dir(models) / BUILD_FILE).read_text(encoding="utf-8"))
    result["default"] = build.get("default")
    result["dev"] = {k: v.get("dev") for k, v in build["models"].items() if v.get("dev")}
    test = load_feedback(splits=["test"])
    texts = [e.text for e in test]
    gold = [Gold(e.categories, e.sentiment) for e in test]
    result["test"] = evaluate_classifiers(models, settings.nlp_threads, texts, gold)
    default = open_feedback_classifier(models, settings.classifier_model, settings.nlp_threads)
    transformer = load_classifier(dialog_dir(models) / TRANSFORMER, threads=settings.nlp_threads)
    result["speed"] = {"transformer": speed(transformer, texts, args.quick)}
    if getattr(default, "name", "") != "transformer":
        result["speed"][default.name] = speed(default, texts, args.quick)
    nlu = open_nlu(models, ZoneInfo(settings.timezone))
    intents = [{"text": e.text, "context": e.context, "intent": e.intent, "score5": e.score5, "nps": e.nps,
                "callback_at": e.callback_at} for e in load_intents(splits=["test"])]
    result["nlu_test"] = evaluate_nlu(nlu, intents, REFERENCE_NOW)
    if not args.quick and ASR_MANIFEST.is_file():
        result["asr_set"] = evaluate_asr_set(settings, models, nlu, default, REFERENCE_NOW)
    result["load_after"] = _load()
    return result
