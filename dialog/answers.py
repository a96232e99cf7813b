"""Closed questions: the answers a step expects, and the decision among them.

A step that expects a score (``score5``, ``nps``), a yes/no or an identity confirmation has a small
set of possible answers. :func:`choices_for` lists them as :class:`~callcenter.domain.AnswerChoice`
objects (a label and the short phrases people say for it); the dialog puts them on its
:class:`~dialog.actions.Listen`, the call runner hands them to the recognizer (``set_choices``), and
the recognizer scores every phrase against the utterance's audio with the speech model itself
(Whisper: forced scoring of each phrase's tokens; Vosk: a grammar over the phrases). The final
transcript event then carries ``choices``: each label's probability plus ``"other"`` (none fits).

:func:`decide` combines that acoustic evidence with the NLU reading of the free transcript. Why both:
a bare "五分。" (one second of audio) can come back from free decoding as an unrelated word that only
sounds alike, and the NLU then finds no score, while the model itself still scores the phrase 五分
well above the others on that audio; a long answer ("嗯，是我，你说吧") matches no phrase, and the
free transcript's reading carries it. The result is a label or ``None`` (unclear: ask again or
confirm) with a confidence; the caller confirms low-confidence answers that end the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from callcenter.domain import OTHER_CHOICE, AnswerChoice, ChoiceScore, Intent
from dialog.nlu import NluResult

CLOSED_EXPECTS = ("score5", "nps", "yes_no", "identity")

_DIGITS = "零一二三四五六七八九十"


def _numeral(n: int) -> tuple[str, ...]:
    """Ways to say ``n`` (0-10) as a score: 五, and 两 beside 二."""
    word = _DIGITS[n]
    return (word, "两") if n == 2 else (word,)


def _number_phrases(n: int) -> list[str]:
    """五分 and a bare 五. Fillers around them (五分吧, 给五分) are left out: each phrase costs a
    forced decode, and the phrase inside an answer already scores it (the end-of-text term
    penalises what was said after it, which the free transcript and its NLU reading then carry)."""
    out: list[str] = []
    for w in _numeral(n):
        out += [f"{w}分", w]
    return out


# The phrases are the short, whole answers people give; every phrase is one more forced decode of
# the utterance (about 5 ms each on the benchmark machine), so the lists stay at about 20 decodes
# per question (a phrase that is the start of another, 五 of 五分, comes free).
# Scale words of the 1-5 satisfaction question (dialog.nlu.SCORE5_WORDS reads the same way).
SCORE5_WORDS: dict[int, tuple[str, ...]] = {
    1: ("非常不满意", "太差了"),
    2: ("不满意", "不太满意"),
    3: ("一般", "还行", "还可以"),
    4: ("满意", "比较满意", "挺满意"),
    5: ("非常满意", "很满意", "满分", "十分满意", "一百分"),
}
NPS_WORDS: dict[int, tuple[str, ...]] = {10: ("满分", "一百分")}

YES_PHRASES = ("是", "是的", "对", "对的", "有", "有的", "嗯", "好的", "可以")
NO_PHRASES = ("不是", "没有", "不对", "没", "不")
# yes/no questions about what the store did ("有没有洗车", "准时吗"): the event itself as the answer.
YES_NO_EXTRA = {"yes": ("洗了", "准时", "讲了", "干净"),
                "no": ("没洗", "晚了", "不准时", "没讲", "不干净")}
IDENTITY_PHRASES = {
    "yes": ("是我", "我就是", "方便", "你说", "可以", "是的", "对", "是", "嗯", "好的"),
    "no": ("不是", "不方便", "不是我", "没空", "不用了"),
    "busy": ("在开车", "在开会", "晚点再打", "我在忙"),
}

_NEGATION_PREFIX = ("不", "没", "别", "晚")
_BUSY_WORDS = ("开车", "开会", "在忙", "晚点", "再打", "回头", "没空")


def _label_grammar_phrase(expect: str, phrase: str) -> str | None:
    """The label of a step's own grammar phrase (a script writes phrases, not labels)."""
    if expect == "score5":
        from dialog.nlu import extract_score5

        v = extract_score5(phrase, asked=True)
        return str(v) if v is not None else None
    if expect == "nps":
        from dialog.nlu import extract_nps

        v = extract_nps(phrase, asked=True)
        return str(v) if v is not None else None
    if expect == "identity" and any(w in phrase for w in _BUSY_WORDS):
        return "busy"
    if phrase.startswith(_NEGATION_PREFIX) or "打错" in phrase:
        return "no"
    return "yes"


def _build(expect: str, base: Mapping[str, Iterable[str]], grammar: Sequence[str] | None) -> tuple[AnswerChoice, ...]:
    phrases: dict[str, list[str]] = {label: list(ps) for label, ps in base.items()}
    for phrase in grammar or ():
        phrase = phrase.strip()
        if not phrase or phrase.startswith("["):  # [unk] and other grammar markers
            continue
        label = _label_grammar_phrase(expect, phrase)
        if label in phrases:
            phrases[label].append(phrase)
    return tuple(AnswerChoice(label, tuple(dict.fromkeys(ps))) for label, ps in phrases.items())


def choices_for(step) -> tuple[AnswerChoice, ...] | None:
    """The expected answers of ``step`` (a :class:`dialog.script.Step`), or None for an open question.

    ``score5``: labels "1".."5"; ``nps``: "0".."10"; ``yes_no``: "yes"/"no"; ``identity``:
    "yes"/"no"/"busy". Each label has the usual short ways to say it; the step's own ``grammar``
    phrases are added under the label they mean.
    """
    expect = step.expect
    if expect == "score5":
        # ... and stars (给五颗星, 五星好评), as app ratings are given
        base = {str(n): [*_number_phrases(n), *SCORE5_WORDS[n], f"{_DIGITS[n]}星", f"{_DIGITS[n]}颗星"]
                for n in range(1, 6)}
    elif expect == "nps":
        base = {str(n): [*_number_phrases(n), *NPS_WORDS.get(n, ())] for n in range(11)}
    elif expect == "yes_no":
        base = {"yes": [*YES_PHRASES, *YES_NO_EXTRA["yes"]], "no": [*NO_PHRASES, *YES_NO_EXTRA["no"]]}
    elif expect == "identity":
        base = IDENTITY_PHRASES
    else:
        return None
    return _build(expect, base, step.grammar)


# -- the decision ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """What a closed question's answer was: ``label`` (None: unclear) and how sure, from which evidence
    (``source``: "both", "audio", "text", "none", or "intent:<name>" when the turn was not an answer
    but an intent the dialog handles itself, such as opting out)."""

    label: str | None
    confidence: float
    source: str


@dataclass(frozen=True)
class DecideSettings:
    """Thresholds of :func:`decide`, tuned on the closed-answer tuning split only
    (docs/data-card-closed-answers.md)."""

    accept: float = 0.6  # a label needs at least this combined probability
    text_weight: float = 0.5  # how much the transcript's reading counts beside the audio (0: not at all)
    # Intents that are not an answer to the question: the dialog's own handlers take them (opt-out,
    # a human, a question back); decide() does not force them onto an answer.
    off_script: tuple[str, ...] = (Intent.OPT_OUT.value, Intent.WRONG_NUMBER.value, Intent.ASK_HUMAN.value,
                                   Intent.QUESTION.value, Intent.BUSY_CALLBACK.value)


DEFAULT_SETTINGS = DecideSettings()


# The recognizer's own confidence in the words (Whisper: mean token probability) below which the
# words are a guess: their reading weighs no more than the audio's scores (see text_label).
DOUBTFUL_WORDS_BELOW = 0.5
DOUBTFUL_WORDS_WEIGHT = 0.6


def words_doubted(asr: float | None) -> bool:
    """The recognizer doubted its own words (``asr``: its confidence in them; None: not known)."""
    return asr is not None and asr < DOUBTFUL_WORDS_BELOW


def text_label(expect: str, nlu: NluResult, asr: float | None = None) -> tuple[str | None, float]:
    """The label the free transcript's NLU reading gives, and how sure that reading is (``asr``:
    the recognizer's confidence in the words; words it doubted are read at most
    :data:`DOUBTFUL_WORDS_WEIGHT` sure, so the audio's scores weigh as much as they do)."""
    label, conf = _text_label(expect, nlu)
    if label is not None and words_doubted(asr):
        conf = min(conf, DOUBTFUL_WORDS_WEIGHT)
    return label, conf


def _text_label(expect: str, nlu: NluResult) -> tuple[str | None, float]:
    value = nlu.score5 if expect == "score5" else nlu.nps if expect == "nps" else None
    if expect in ("score5", "nps"):
        if value is None:
            return None, 0.0
        # A lone numeral ("四", no 分) is what the recognizer makes of many a short sound: the audio's
        # own scores weigh as much as it.
        return str(value), 0.6 if len(nlu.text.strip(" 。，,.!！?？")) == 1 else 0.95
    if expect == "identity" and nlu.intent == Intent.BUSY_CALLBACK.value:
        return "busy", nlu.confidence
    if nlu.intent == Intent.AFFIRM.value:
        return "yes", nlu.confidence
    if nlu.intent == Intent.DENY.value:
        return "no", nlu.confidence
    return None, 0.0


def decide(expect: str, nlu: NluResult, choices: Sequence[ChoiceScore] = (),
           settings: DecideSettings = DEFAULT_SETTINGS, asr: float | None = None) -> Decision:
    """The answer to a closed question from the free transcript's NLU reading and the acoustic scores.

    Args:
        expect: the step's ``expect`` (one of :data:`CLOSED_EXPECTS`).
        nlu: :meth:`dialog.nlu.Nlu.parse` of the final transcript, with the step's context.
        choices: the final event's ``choices`` (empty when the recognizer could not score).
        asr: the final event's ``confidence`` (the recognizer's in its words), None if unknown.

    The acoustic probabilities are over the expected answers plus "other" (the free hypothesis,
    which matched none of the phrases). When the free transcript *means* one of the answers
    (NLU: "嗯，是我，你说吧" is yes), the free hypothesis' share goes to that answer, in proportion to
    how sure the reading is. The reading is then also evidence of its own: the combined belief is
    the acoustic one times the reading's (its label at the reading's confidence, the rest spread
    evenly) to the power ``settings.text_weight``; a transcript that reads as no answer (an
    unrelated sound-alike of a bare "五分") adds nothing, so the audio decides. The best answer is
    taken when its share reaches ``settings.accept``; below that the answer is unclear (label None)
    and the confidence says how sure that is.
    """
    if expect not in CLOSED_EXPECTS:
        raise ValueError(f"decide: {expect!r} is not a closed question (expected one of {', '.join(CLOSED_EXPECTS)})")
    t_label, t_conf = text_label(expect, nlu, asr)
    if t_label is None and nlu.intent in settings.off_script and nlu.rule is not None \
            and not (expect == "identity" and nlu.intent == Intent.BUSY_CALLBACK.value):
        return Decision(None, nlu.confidence, f"intent:{nlu.intent}")
    probs: dict[str, float] = {}
    for c in choices:
        probs[c.label] = probs.get(c.label, 0.0) + max(0.0, float(c.probability))
    total = sum(probs.values())
    if total <= 0:
        if t_label is not None:
            return Decision(t_label, round(t_conf, 4), "text")
        return Decision(None, round(1.0 - t_conf if t_conf else 1.0, 4), "none")
    probs = {k: v / total for k, v in probs.items()}
    probs.setdefault(OTHER_CHOICE, 0.0)
    if t_label is not None:
        probs.setdefault(t_label, 0.0)
        moved = probs[OTHER_CHOICE] * t_conf
        probs[t_label] += moved
        probs[OTHER_CHOICE] -= moved
        rest = (1.0 - t_conf) / max(1, len(probs) - 1)
        probs = {k: v * ((t_conf if k == t_label else rest) ** settings.text_weight) for k, v in probs.items()}
        norm = sum(probs.values()) or 1.0
        probs = {k: v / norm for k, v in probs.items()}
    other = probs.pop(OTHER_CHOICE)
    if not probs:
        return Decision(None, round(other, 4), "audio")
    best = max(probs, key=probs.get)
    p = probs[best]
    if p >= settings.accept:
        source = "both" if t_label == best else "audio"
        return Decision(best, round(p, 4), source)
    return Decision(None, round(max(other, 1.0 - p), 4), "audio")
