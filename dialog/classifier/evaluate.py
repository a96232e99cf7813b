"""Metrics for the feedback classifier: per-category P/R/F1, macro-F1, sentiment accuracy, confusion.

Used by ``callcenter classifier eval``, by training (model selection on dev) and by the benchmark.
Pure functions over predictions and gold labels; any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dialog.classifier import CATEGORY_CODES, SENTIMENT_CODES


@dataclass(frozen=True)
class Gold:
    categories: tuple[str, ...]
    sentiment: str


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def evaluate(predicted: Sequence, gold: Sequence[Gold]) -> dict:
    """Compare classifications (anything with ``.categories`` and ``.sentiment``) with gold labels.

    Returns a JSON-able report: ``per_category`` {code: {precision, recall, f1, support, tp, fp, fn}},
    ``macro_f1`` (mean F1 over the categories present in the gold data), ``micro_f1``,
    ``exact_match`` (the whole label set right), ``no_category`` (texts without actionable
    content, P/R/F1 of predicting none), ``sentiment_accuracy`` and ``sentiment_confusion``
    (gold -> predicted -> count), ``n``.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold examples")
    counts = {c: [0, 0, 0] for c in CATEGORY_CODES}  # tp, fp, fn
    none = [0, 0, 0]
    exact = 0
    sent_ok = 0
    confusion = {g: {p: 0 for p in SENTIMENT_CODES} for g in SENTIMENT_CODES}
    for pred, ref in zip(predicted, gold):
        p, g = set(pred.categories), set(ref.categories)
        for c in CATEGORY_CODES:
            if c in p and c in g:
                counts[c][0] += 1
            elif c in p:
                counts[c][1] += 1
            elif c in g:
                counts[c][2] += 1
        none[0] += (not p and not g)
        none[1] += (not p and bool(g))
        none[2] += (bool(p) and not g)
        exact += p == g
        sent_ok += pred.sentiment == ref.sentiment
        confusion[ref.sentiment][pred.sentiment] += 1
    per = {}
    for c, (tp, fp, fn) in counts.items():
        pr, rc, f1 = _prf(tp, fp, fn)
        per[c] = {"precision": round(pr, 4), "recall": round(rc, 4), "f1": round(f1, 4),
                  "support": tp + fn, "tp": tp, "fp": fp, "fn": fn}
    present = [c for c in CATEGORY_CODES if per[c]["support"]]
    macro = sum(per[c]["f1"] for c in present) / len(present) if present else 0.0
    tp = sum(v[0] for v in counts.values())
    fp = sum(v[1] for v in counts.values())
    fn = sum(v[2] for v in counts.values())
    n = len(gold)
    npr, nrc, nf1 = _prf(*none)
    return {
        "n": n,
        "macro_f1": round(macro, 4),
        "micro_f1": round(_prf(tp, fp, fn)[2], 4),
        "exact_match": round(exact / n, 4) if n else 0.0,
        "sentiment_accuracy": round(sent_ok / n, 4) if n else 0.0,
        "no_category": {"precision": round(npr, 4), "recall": round(nrc, 4), "f1": round(nf1, 4)},
        "per_category": per,
        "sentiment_confusion": confusion,
    }


def format_report(report: dict, title: str = "") -> str:
    """A plain-text table of :func:`evaluate`'s report, for the terminal."""
    lines = [title] if title else []
    lines.append(f"{'category':<18}{'P':>7}{'R':>7}{'F1':>7}{'support':>9}")
    for code, m in report["per_category"].items():
        lines.append(f"{code:<18}{m['precision']:>7.3f}{m['recall']:>7.3f}{m['f1']:>7.3f}{m['support']:>9}")
    lines.append(f"{'macro-F1':<18}{report['macro_f1']:>21.3f}")
    lines.append(f"{'micro-F1':<18}{report['micro_f1']:>21.3f}")
    lines.append(f"{'exact label set':<18}{report['exact_match']:>21.3f}")
    lines.append(f"{'sentiment acc.':<18}{report['sentiment_accuracy']:>21.3f}   (n={report['n']})")
    lines.append("sentiment confusion (rows gold, columns predicted): "
                 + "  ".join(f"{g}: " + "/".join(str(v) for v in row.values())
                             for g, row in report["sentiment_confusion"].items()))
    return "\n".join(lines)
