"""Training is reproducible, corrections reach the next model, MLM pretraining feeds fine-tuning."""

from __future__ import annotations

import json

import pytest

from dialog.classifier import load_classifier
from dialog.classifier.training import FinetuneConfig, PretrainConfig, pretrain_mlm, train_transformer
from dialog.datasets import load_feedback

pytestmark = [pytest.mark.integration, pytest.mark.models, pytest.mark.slow]


@pytest.fixture(scope="module")
def small_data():
    rows = load_feedback()
    train = [e for e in rows if e.split == "train"][:64]
    dev = [e for e in rows if e.split == "dev"][:32]
    return train, dev


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_the_same_seed_gives_the_same_model(tmp_path, small_data):
    train, dev = small_data
    cfg = FinetuneConfig(size="tiny", epochs=1, batch=32, ppmi_init=False, seed=7)
    a = train_transformer(train, dev, tmp_path / "a", cfg)
    b = train_transformer(train, dev, tmp_path / "b", cfg)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    assert all(bool((wa[k] == wb[k]).all()) for k in wa)
    assert a.thresholds == b.thresholds
    other = train_transformer(train, dev, tmp_path / "c", FinetuneConfig(size="tiny", epochs=1, batch=32,
                                                                           ppmi_init=False, seed=8))
    wc = _weights(tmp_path / "c")
    assert not all(bool((wa[k] == wc[k]).all()) for k in wa)
    card = json.loads((tmp_path / "a" / "model.json").read_text())
    assert card["kind"] == "transformer" and card["seed"] == 7 and card["data_sha256"]
    assert other.classify(["等了很久"])[0].sentiment in ("positive", "neutral", "negative")


def test_pretraining_feeds_fine_tuning(tmp_path, small_data):
    train, dev = small_data
    card = pretrain_mlm(tmp_path / "enc", PretrainConfig(size="tiny", epochs=1, batch=32, limit=160, seed=3))
    assert card["steps"] >= 5 and (tmp_path / "enc" / "config.json").is_file()
    clf = train_transformer(train, dev, tmp_path / "ft", FinetuneConfig(epochs=1, batch=32), base=tmp_path / "enc")
    assert clf.card["base_model"] == str(tmp_path / "enc")
    reloaded = load_classifier(tmp_path / "ft")
    assert reloaded.classify(["配件等了半个月"])[0].scores.keys() == clf.classify(["配件"])[0].scores.keys()


def test_corrections_reach_the_next_model(nlp_cli, tmp_path, dialog_models):
    corrections = tmp_path / "corrections.jsonl"
    # A word no data set contains, said twice, so it survives the vocabulary's minimum count.
    corrections.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in [
        {"text": "鹦鹉螺卡的钱到现在没退给我", "categories": ["insurance"], "sentiment": "negative"},
        {"text": "办了鹦鹉螺卡,结果用不了", "categories": ["insurance"], "sentiment": "negative", "id": "call-1"},
    ]), encoding="utf-8")
    out = tmp_path / "ngram"
    result = nlp_cli("classifier", "train", "--kind", "ngram", "--corrections", str(corrections), "--out", str(out))
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert card["corrections"] == {"relabelled": 0, "added": 2, "held_out": 0}
    corrected = load_classifier(out)
    assert "鹦鹉螺" in corrected.featurizer.vocab
    before = load_classifier(dialog_models / "dialog" / "feedback-ngram").classify(["鹦鹉螺卡"])[0]
    after = corrected.classify(["鹦鹉螺卡"])[0]
    assert after.scores["insurance"] > before.scores["insurance"] + 0.05
