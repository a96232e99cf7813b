"""Understanding one customer turn: intent, satisfaction score (1-5), NPS (0-10), callback time.

Pipeline for a turn (``Nlu.parse``), all on the calling thread, a few milliseconds:

1. :func:`~dialog.text.normalize`, then **canonicalize by sound**: phrases the dialog cares about
   are found by pinyin (:class:`~dialog.phonetic.PhoneticIndex`) and rewritten in their canonical
   spelling, so 买一 reads 满意, 达错了 reads 打错了, 专人工 reads 转人工;
2. **slots**: the score the customer gave (digits, Chinese numerals, sound-alikes before 分 such
   as 无分 = 五分, 打X分, X颗星, and the 满意 scale words), NPS, and a callback time (:mod:`dialog.when`);
3. **intent**: a linear model over character and pinyin n-grams plus the question asked (the step's
   ``context``), trained on the project's intent data; high-precision rules override it for the
   intents that must never be missed (opt-out, wrong number, asking for a human, call me later).

The model is optional: without one (unit tests, a broken install) the rules alone answer, with
lower confidence. ``Nlu`` is immutable after construction: share it between threads.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callcenter.domain import Intent
from dialog.datasets import CONTEXTS, INTENT_CODES, IntentExample
from dialog.linear import NgramFeaturizer, fit_logistic, softmax
from dialog.numbers import DIGIT_SOUNDS, chinese_to_int
from dialog.phonetic import LOOSE, STRICT, PhoneticIndex, best_cover, syllabify
from dialog.text import clip, normalize
from dialog.when import parse_time

MODEL_FILE = "model.json"

# Canonical spellings of the phrases the rules and scores look for. Found by sound, rewritten.
CANONICAL = (
    "满意", "不满意", "非常满意", "非常不满意", "很满意", "挺满意", "比较满意", "不太满意", "一般", "满分",
    "打错", "打错了", "打错电话", "没有这个人", "不认识", "转人工", "人工", "真人", "人工服务", "投诉",
    "开车", "开会", "不方便", "晚点", "回头", "改天", "明天", "后天", "上午", "下午", "晚上", "中午", "早上",
    "以后", "别打", "再打", "骚扰", "拉黑", "号码", "车主", "经理", "顾问", "服务顾问", "保养", "洗车", "配件",
    "理赔", "保险", "推荐", "不需要", "没问题", "听不清", "没听清", "信号不好", "再说一遍", "机器人",
    "预约", "太差", "态度", "价格", "收费", "多少钱", "什么时候", "修好", "没修好", "解决了",
)
# The satisfaction words are also matched loosely (one letter off: 买一 for 满意, measured as the most
# frequent recognizer error on this word); everything else needs the same sound or one confusable
# pair, since a loose 打错 would also rewrite 打过 and a loose 真人 would rewrite 尊重人.
LOOSE_CANONICAL = ("满意", "不满意", "非常满意", "非常不满意", "很满意", "挺满意", "比较满意", "不太满意")
_CANON_INDEX = PhoneticIndex([(p, p) for p in CANONICAL if p not in LOOSE_CANONICAL], STRICT)
_CANON_LOOSE = PhoneticIndex([(p, p) for p in LOOSE_CANONICAL], LOOSE)


def canonicalize(text: str) -> str:
    """Rewrite sound-alikes of :data:`CANONICAL` phrases in their canonical spelling."""
    syls = syllabify(text)
    found = _CANON_INDEX.find(text, syls) + _CANON_LOOSE.find(text, syls)
    matches = [m for m in best_cover(found) if not m.exact]
    if not matches:
        return text
    out, last = [], 0
    for m in matches:
        out.append(text[last:m.start])
        out.append(m.label)
        last = m.end
    out.append(text[last:])
    return "".join(out)


# -- scores ------------------------------------------------------------------------------------
# The 1-5 satisfaction scale in words; longest phrase wins (非常不满意 before 不满意 before 满意).
SCORE5_WORDS: tuple[tuple[str, int], ...] = (
    ("非常不满意", 1), ("很不满意", 1), ("特别不满意", 1), ("极不满意", 1), ("太差", 1), ("很差", 1),
    ("非常差", 1), ("最低分", 1), ("差劲", 1), ("极差", 1), ("特别差", 1),
    ("不满意", 2), ("不太满意", 2), ("不怎么满意", 2), ("不怎么样", 2), ("不太行", 2), ("比较差", 2),
    ("不咋地", 2), ("不太好", 2), ("不算满意", 2), ("不是很满意", 2),
    ("一般", 3), ("一般般", 3), ("还行", 3), ("凑合", 3), ("马马虎虎", 3), ("还可以", 3), ("中等", 3),
    ("及格", 3), ("不好不坏", 3), ("说不上满意", 3), ("中规中矩", 3), ("就那样", 3), ("过得去", 3),
    ("满意", 4), ("挺满意", 4), ("比较满意", 4), ("还算满意", 4), ("基本满意", 4), ("蛮满意", 4),
    ("还挺满意", 4), ("挺好", 4), ("还不错", 4), ("不错", 4), ("满意吧", 4),
    ("非常满意", 5), ("很满意", 5), ("特别满意", 5), ("十分满意", 5), ("相当满意", 5), ("太满意", 5),
    ("超级满意", 5), ("满分", 5), ("最高分", 5), ("贼满意", 5), ("非常非常满意", 5), ("特别特别满意", 5),
)
_SCORE5_WEAK = {"挺好", "还不错", "不错", "还可以", "还行", "凑合", "不太好", "不太行", "就那样", "过得去"}  # only when asked
_SCORE_INDEX = PhoneticIndex([(w, str(s)) for w, s in SCORE5_WORDS])
_NUMBER = r"([0-9]{1,3}|[零〇一二两三四五六七八九十百]{1,3})"
_SCORED = re.compile(rf"{_NUMBER}(?:(?:到|至|或|、|-|~)?{_NUMBER})?(?:分(?!钟)|份|颗星|星)(半)?")
_ADVERB_SHIFEN = re.compile(r"十分的?(满意|好|不错|满|感谢|专业|热情|周到|差|不满|糟糕)")
_BARE_NUMBER = re.compile(rf"^(?:嗯|呃|那|就|我|给|打|个|吧|啊|呀|,|\.|。|…|\s)*{_NUMBER}(?:吧|啊|呀|嘛|,|\.|。|!|…|\s)*$")


def _numbers_before_fen(text: str) -> list[tuple[int, int]]:
    """``(value, end)`` of each number spoken right before 分/份/星, including sound-alikes of
    digits (无分 -> 5); ranges such as 三到四分 or 七八分 give the lower number."""
    found: list[tuple[int, int]] = []
    for m in _SCORED.finditer(text):
        if _ADVERB_SHIFEN.match(text, m.start()):
            continue
        first = chinese_to_int(m.group(1))
        if first is None:
            continue
        if len(m.group(1)) == 2 and m.group(2) is None and all(c in "零一二两三四五六七八九" for c in m.group(1)):
            first = min(chinese_to_int(c) for c in m.group(1))  # 七八分, 四五分: the lower one
        second = chinese_to_int(m.group(2)) if m.group(2) else None
        found.append((min(first, second) if second is not None else first, m.end()))
    if found:
        return found
    # A sound-alike of a digit right before 分/份 (无分, 是分, 酒分, 把分): read it by its pinyin.
    syls = syllabify(text)
    for i, s in enumerate(syls[1:], 1):
        prev = syls[i - 1]
        if s.text in ("分", "份") and prev.py in DIGIT_SOUNDS and len(prev.text) == 1 \
                and not _ADVERB_SHIFEN.match(text, prev.start) and not text.startswith("钟", s.end):
            found.append((DIGIT_SOUNDS[prev.py], s.end))
            if prev.py == "shi":  # sh/s: 是分 to "how many points, one to five?" is 四分
                found.append((DIGIT_SOUNDS["si"], s.end))
    return found


# "十分的满意", "非常的满意": the adverb's 的 does not change the scale word.
_ADVERB_DE = re.compile(r"(十分|非常|特别|相当|比较|挺|蛮|很|还算|基本)的(满意|不满意)")
# The ends of the scale said as such ("挺满意的，给满分"): they beat a longer scale word.
_SCALE_ENDS = {"满分": 5, "最高分": 5, "最低分": 1}


def extract_score5(text: str, asked: bool) -> int | None:
    """The 1-5 satisfaction score in a turn. ``asked``: the robot just asked for it, so bare digits
    and the weak scale words (还行, 不错) count too. On this scale 十分满意 is 5 (十分 is "very"), 满分
    is 5, and a 十分 given when asked is the top of a ten-point scale: 5."""
    text = _ADVERB_DE.sub(r"\1\2", text)
    nums = [v for v, _ in _numbers_before_fen(text)]
    for v in nums:
        if 1 <= v <= 5:
            return v
        if asked and v == 10:  # 打十分: the customer's own 1-10 scale, its top
            return 5
        if asked and v in (50, 60, 70, 80, 90, 100):  # 打个九十分: a percentage
            return max(1, min(5, round(v / 20)))
    for word, value in _SCALE_ENDS.items():
        at = text.find(word)
        if at >= 0 and not text[max(0, at - 2):at].endswith(("不", "不是", "没", "没有", "离")):
            return value
    if asked:
        bare = _BARE_NUMBER.match(text)
        if bare:
            v = chinese_to_int(bare.group(1))
            if v is not None and 1 <= v <= 5:
                return v
        stars = re.search(r"([一二三四五1-5])(?:颗)?星", text)
        if stars:
            return chinese_to_int(stars.group(1))
    best = None
    for m in _SCORE_INDEX.find(text):
        if not asked and m.phrase in _SCORE5_WEAK:
            continue
        if best is None or (m.end - m.start) > (best.end - best.start):
            best = m
    return int(best.label) if best is not None else None


def scores_said(text: str, top: int) -> list[int]:
    """Every score from 0/1 to ``top`` said as a number in a turn, in order ("一分五分" -> [1, 5]):
    two different ones are a self-correction or a recognizer's extra word, to be confirmed."""
    low = 0 if top == 10 else 1
    return [v for v, _ in _numbers_before_fen(_ADVERB_DE.sub(r"\1\2", canonicalize(normalize(text))))
            if low <= v <= top]


def without_scores(text: str) -> str:
    """``text`` with the scores said as numbers taken out: "两分吧" -> "吧", "二分二分" -> "",
    "四分,扣一分是因为等得久" -> ",扣是因为等得久"."""
    return _SCORED.sub("", text)


def explicit_score(text: str, top: int) -> int | None:
    """A score said as a number (五分, 给5分吧, a bare 五), in 0-``top``; None for words only (满意).

    A number is the whole answer; a word may be the first piece of one ("满意" ... "给五分吧")."""
    for v, _ in _numbers_before_fen(text):
        if 0 <= v <= top:
            return v
    bare = _BARE_NUMBER.match(text)
    if bare:
        v = chinese_to_int(bare.group(1))
        if v is not None and 0 <= v <= top:
            return v
    return None


def extract_nps(text: str, asked: bool) -> int | None:
    """The 0-10 likelihood-to-recommend. Without ``asked`` only an explicit X分 above 5 counts."""
    for v, _ in _numbers_before_fen(text):
        if 0 <= v <= 10 and (asked or v > 5):
            return v
        if asked and v in (20, 30, 40, 50, 60, 70, 80, 90, 100):  # 九十分: out of a hundred
            return v // 10
    if asked:
        if "满分" in text or "一百分" in text:
            return 10
        bare = _BARE_NUMBER.match(text)
        if bare:
            v = chinese_to_int(bare.group(1))
            if v is not None and 0 <= v <= 10:
                return v
    return None


# -- rules ---------------------------------------------------------------------------------------
_DEFER = r"(再|回头|晚点|晚些|迟啲|改天|下次|以后|待会|等会|一会|过两天|过阵子|有空|稍后|回复|回电)"
# 打 as in phoning, not 打蜡 (waxing), 打折 (a discount), 打气 (tyre pressure) and the other things a
# customer tells the store not to do to the car ("我跟他们说了不要打蜡").
_CALL = r"打(?!蜡|折|气|印|包|扫|磨|胶|孔|滑|开|火|针|表|卡|钱|款|听|算|理|补|底|光|分|架|车|单|发票)"
RULES: tuple[tuple[str, re.Pattern], ...] = (
    ("opt_out", re.compile(
        rf"(别|不要|甭|莫)(再|在)?(给我|跟我|往我这)?({_CALL}|来电|联系|回访)|以后.{{0,6}}(别|不要|甭).{{0,4}}({_CALL}|联系|回访)"
        r"|删(了|掉|除)?.{0,3}(号码|电话|信息)|(号码|电话|信息).{0,6}删|拉黑|黑名单|(?<!不算|不是|没有|不叫)(?<!算不上|谈不上)骚扰"
        r"|拒绝.{0,6}(电话|营销|回访)"
        r"|再打.{0,3}(报警|投诉)|名单.{0,6}(去掉|删)|不接受.{0,4}(任何|一切).{0,6}(电话|回访)|一律不接")),
    ("wrong_number", re.compile(
        r"打错|拨错|找错人|没有这个人|没这个人|没这人|没有叫这个|没有姓|不姓|不认识(什么|你说|这个|你们)"
        r"|(号码|号).{0,4}(新|刚)(办|换)|(新|刚)(办|换)的(号|号码)|我(都|根本)?没(有)?车|家没(这|有)"
        r"|从来没去过|没(在|去)(你们|过你们)|不是你们的客户|车.{0,2}(早|已经|去年|上个月).{0,2}(卖|买|过户|报废)"
        r"|(卖|过户|转)给(别人|我)|空号|你(们)?找谁|不是这个号|不是我的车|搞错了吧")),
    ("ask_human", re.compile(
        r"人工|真人|活人|转(个|一下)?(人|客服|经理)|找个人|换个人"
        r"|(叫|让|找)(你们)?(的)?(客服经理|售后经理|经理|领导|负责人|店长|主管|技术总监|服务顾问|顾问|销售).{0,8}(打|来|说|回|接)"
        r"|(跟|和)(你们)?(的)?(经理|领导|负责人|店长)(当面)?(说|谈)|不(跟|和)机器|跟机器(人)?说不|别用录音|别让机器")),
    ("busy_callback", re.compile(
        rf"(在|正在)?(开车|开会|上课|上班|吃饭|做饭|医院|地铁|飞机|高速|工地|带孩子|进电梯).{{0,8}}{_DEFER}"
        rf"|(在开车|开车呢|在开会|开会呢|在忙|很忙|忙着|正忙|没空|不得空|不得闲|唔得闲|莫得空|有点事|有事|来客户|有电话进来|顾不上|说不了话|不方便).{{0,10}}{_DEFER}"
        # ... said as a request, not inside a story ("材料这次说缺这个下次说缺那个": what someone said).
        rf"|(晚点|晚些|回头|改天|下次|等会|待会|一会儿?|过会儿?|稍后)(再)?(打电话|打|说|联系|聊|打给我|打过来|再说)"
        r"(?=吧|啊|呀|了|嘛|哈|呗|哦|好|行|可以|给我|过来|[,，。.!！?？\s]|$)"
        r"|^(我)?(在|正在)(开车|开会)(呢|啊)?$|在开车|开着车|开车呢|在开会|开会呢|在上课|在飞机上"
        r"|(明天|后天|下午|上午|晚上|中午|早上|周.|下周|点|小时|分钟).{0,6}(再打|再联系|再说|打给我|打过来|再聊)"
        # "现在不方便,在医院排队呢": not now (a refusal says so: 不用了, 算了, 别打)
        r"|(现在|这会儿?|暂时|此刻|正)(不太?方便|没空|没时间|在忙|忙着)(?!.{0,10}(不用|不需要|不要|算了|别打|别再))")),
    ("unclear", re.compile(
        r"听不清|没听清|听不见|听不到|信号不好|断断续续|再说一遍|大声点|没听懂|听不懂|你说(什么|啥|咩)|说的什么|讲咩"
        r"|^[喂啊嗯哦呃哈啥?？.…,!\s]*(什么|啥|啥子|乜|what|sorry)?[?？.…,!\s]*$")),
)
_QUESTION = re.compile(r"[?？]$|吗[?？]?$|呢[?？]?$|多少钱|什么时候|几点|多久|多长时间|怎么|哪(个|里|儿|位|家)"
                       r"|是不是|有没有|能不能|可不可以|要不要|几分是|是哪|你是谁")
_COMPLAINT = re.compile(r"投诉|太差|差劲|坑人|坑死|太坑|骗人|骗子|垃圾|乱收费|还好意思|还有脸|破店|要赔|给个说法|交代"
                        r"|太过分|气死|上当")
# "五分?": a score said with a rising tone, or a recognizer's question mark, is the answer.
_BARE_SCORE_ASKED = re.compile(rf"^(?:嗯|呃|那|就|我|给|打|个|,|\s)*{_NUMBER}(?:分|颗星|星)?(?:吧|啊|呀|嘛)?[?？]+$")
# A question about the scale is short ("五分是最高吗?"); a long answer ending in 吗 is a statement
# the recognizer wrote 嘛 as ("四分吧,留一分让你们继续进步嘛" heard …继续去做吗).
_ASKS_ABOUT_SCALE = re.compile(r"^.{0,8}[吗呢?？]$|什么是|是不是|几分是|是最")
_FILLER_ONLY = re.compile(r"^[嗯啊哦呃哈喂,.…!?？\s]*$")


@dataclass(frozen=True)
class NluResult:
    text: str
    intent: str
    confidence: float
    score5: int | None = None
    nps: int | None = None
    callback_at: dt.datetime | None = None
    intents: dict[str, float] = field(default_factory=dict)
    rule: str | None = None  # the rule that decided, if one did
    truncated: bool = False

    def as_dict(self) -> dict:
        """The ``callcenter nlu`` output shape."""
        out = {"text": self.text, "intent": self.intent, "confidence": round(self.confidence, 4),
               "score5": self.score5, "nps": self.nps,
               "callback_at": self.callback_at.isoformat() if self.callback_at else None}
        if self.truncated:
            out["truncated"] = True
        return out


class IntentModel:
    """Linear intent classifier over char/pinyin n-grams and the ``ctx=`` tag of the question."""

    def __init__(self, featurizer: NgramFeaturizer, weights: np.ndarray, bias: np.ndarray, labels: Sequence[str],
                 card: dict | None = None) -> None:
        self.featurizer, self.weights, self.bias, self.labels = featurizer, weights, bias, tuple(labels)
        self.card = card or {}

    @staticmethod
    def _tags(context: str | None) -> list[str]:
        return [f"ctx={context}"] if context else ["ctx=none"]

    @classmethod
    def train(cls, examples: Sequence[IntentExample], seed: int = 13) -> IntentModel:
        texts = [canonicalize(normalize(e.text)) for e in examples]
        feat = NgramFeaturizer(char_n=(1, 3), pinyin_n=(1, 2), min_df=1)
        x = feat.fit(texts, [cls._tags(e.context) for e in examples])
        labels = sorted({e.intent for e in examples}, key=INTENT_CODES.index)
        y = np.array([labels.index(e.intent) for e in examples])
        w, b = fit_logistic(x, y, c=10.0, balanced=True, seed=seed)
        return cls(feat, w, b, labels, {"train_examples": len(examples), "seed": seed})

    def probs(self, canonical_text: str, context: str | None) -> dict[str, float]:
        x = self.featurizer.transform([canonical_text], [self._tags(context)])
        p = softmax(np.asarray(x @ self.weights.T + self.bias))[0]
        return {label: float(p[i]) for i, label in enumerate(self.labels)}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.featurizer.save(directory)
        np.savez(directory / "weights.npz", weights=self.weights, bias=self.bias)
        (directory / MODEL_FILE).write_text(json.dumps({"kind": "nlu-intent", "labels": list(self.labels), **self.card},
                                                       ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> IntentModel:
        from dialog.classifier import ModelError

        try:
            card = json.loads((directory / MODEL_FILE).read_text(encoding="utf-8"))
            z = np.load(directory / "weights.npz")
            return cls(NgramFeaturizer.load(directory), z["weights"], z["bias"], card["labels"], card)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{directory}: not a usable NLU intent model ({exc}); "
                             "build it with `callcenter classifier build-default` (scripts/setup does)") from None


# "没有晚", "不脏", "一点都没耽误": the bad thing did not happen, which answers "was it on time / clean?"
# with a yes ("没晚多少" was late after all).
_NEGATED_FAULT = re.compile(r"^(嗯|对|是|啊)?[,，]?(没有?|不|并不|也不|一点(也|都)?(不|没)|从来没|没怎么)(晚|迟|慢|耽误|拖|脏|坏|差|乱)"
                            r"(?!.{0,2}(多少|太多|太久|多久|几|一点|一些|点|了一))")
_DOUBLE_NEGATION = re.compile(r"(不是|并不是|哪有|哪里|也不是)没(有)?(洗|按时|准时|讲|说|做|弄)|没有不(准时|干净)")
_LEADING_YES = re.compile(r"^(是的|是啊|对的|对|嗯|准时|按时|洗了|有的|好的|可以|挺好)(?!不|没)")
# A filler the recognizer may have turned into any one word ("嗯" -> 等, 粉, 笨, 本) may precede the
# confirmation, but not a negation (不是我); "是我，你说吧" ends by inviting the questions.
_CONFIRMS_IDENTITY = re.compile(r"^([^不没别非])?[,，]?(是我|我就是|我是|是的|是啊|对的|对我是)"
                                r"|^([^不没别非])?[,，]?是我.{0,2}(你|您)(说|讲|问)(吧|啊|呗)?$")
# Giving the go-ahead to questions ("那好吧,问吧", "行,你说", "你问吧"), to "……可以吗?" or "is this
# Mr Wang?": a yes, unless a refusal is in it too ("不用了,你说吧" is not read here).
_GOES_AHEAD = re.compile(r"(问|说|讲)吧|(你|您)(就)?(快点|赶紧|快|简单点?)?(问|说|讲)(吧|啊|呗|呀)?[。.!]*$|^(那)?(好吧|行吧|来吧)"
                         r"|长话短说")
_REFUSES = re.compile(r"不(用|要|想|必|方便|行)|算了|别|没空|没时间|没功夫")
# Intents whose handling cannot be undone by the next call, and the model confidence they need
# when no phrase rule matched.
_IRREVERSIBLE = frozenset({Intent.OPT_OUT.value, Intent.WRONG_NUMBER.value})
IRREVERSIBLE_MIN_CONFIDENCE = 0.6
# Below this the model's best guess at an intent that leaves the script (call me later, a human;
# "服务顾问小刘请认" read as ask_human 0.36 would have transferred a satisfied customer)
# is not acted on: the turn is "unclear" and the robot asks again.
MIN_CONFIDENCE = 0.4
_OFF_SCRIPT = frozenset({Intent.BUSY_CALLBACK.value, Intent.ASK_HUMAN.value})


class Nlu:
    """Turn understanding. ``model`` may be None: rules only (lower confidence, no statistics)."""

    def __init__(self, model: IntentModel | None = None, timezone: dt.tzinfo | None = None) -> None:
        self.model = model
        self.timezone = timezone

    @classmethod
    def load(cls, directory: Path, timezone: dt.tzinfo | None = None) -> Nlu:
        return cls(IntentModel.load(Path(directory)), timezone)

    def parse(self, text: str, context: str | None = None, now: dt.datetime | None = None) -> NluResult:
        """Understand one turn.

        Args:
            text: what the customer said (ASR output or typed); any length, any characters.
            context: the question just asked (one of :data:`~dialog.datasets.CONTEXTS`) or None.
            now: the moment "明天上午" is relative to (timezone-aware); default the current time.
        """
        if context is not None and context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r} (known: {', '.join(CONTEXTS)})")
        norm, truncated = clip(normalize(text))
        canon = canonicalize(norm)
        score5 = extract_score5(canon, asked=context == "sat") if context in (None, "sat", "open") else None
        nps = extract_nps(canon, asked=context == "nps") if context in (None, "nps") else None
        if context is None and nps is not None:
            score5 = None if score5 == nps else score5
        probs = self.model.probs(canon, context) if self.model is not None else {}
        intent, confidence, rule = self._decide(canon, context, probs, score5, nps)
        if intent == Intent.QUESTION.value:
            score5 = nps = None  # "五分是最高吗": asking about the scale is not answering it
        when = None
        if intent == Intent.BUSY_CALLBACK.value or (context == "book" and intent == Intent.AFFIRM.value):
            now = now or dt.datetime.now(self.timezone or dt.UTC).astimezone(self.timezone)
            when = parse_time(canon, now)
        return NluResult(text, intent, confidence, score5, nps, when, probs, rule, truncated)

    def _decide(self, canon: str, context: str | None, probs: dict[str, float], score5: int | None,
                nps: int | None) -> tuple[str, float, str | None]:
        if not canon.strip() or _FILLER_ONLY.match(canon) and len(canon.strip()) != 1:
            return Intent.UNCLEAR.value, max(0.9, probs.get("unclear", 0.0)), "empty"
        best = max(probs, key=probs.get) if probs else None
        for intent, pattern in RULES:
            if not pattern.search(canon):
                continue
            if intent == "busy_callback" and context == "book" and not re.search(r"再打|回复|打给|看看|回头", canon):
                continue  # "明天上午吧" to a booking offer is a yes with a time, not "call me later"
            if intent == "busy_callback" and context in ("id", "yn") and _GOES_AHEAD.search(canon) \
                    and not re.search(_DEFER, canon) and not _REFUSES.search(canon):
                # "我在开车呢,你快点问": busy, and asking for the questions now, not later
                return Intent.AFFIRM.value, max(probs.get("affirm", 0.0), 0.75), "goes ahead"
            if intent == "unclear" and best is not None and probs[best] > 0.8 and best != "unclear":
                continue
            return intent, max(0.9, probs.get(intent, 0.0)), intent
        if context == "yn" and _DOUBLE_NEGATION.search(canon):
            return Intent.AFFIRM.value, max(probs.get("affirm", 0.0), 0.8), "double negation"  # 不是没洗,洗了
        if context == "yn" and _NEGATED_FAULT.search(canon) and not _COMPLAINT.search(canon):
            return Intent.AFFIRM.value, max(probs.get("affirm", 0.0), 0.8), "negated fault"  # 没有晚,准时的
        has_score = score5 is not None and context == "sat" or nps is not None and context == "nps"
        if has_score and (best == "question" or _ASKS_ABOUT_SCALE.search(canon)) and "," not in canon \
                and not _BARE_SCORE_ASKED.match(canon):
            return Intent.QUESTION.value, max(probs.get("question", 0.0), 0.7), "question about the scale"
        if best is None:  # rules only
            if _COMPLAINT.search(canon):
                return Intent.COMPLAINT.value, 0.6, "complaint"
            if has_score:
                return Intent.AFFIRM.value, 0.7, "score"
            if _QUESTION.search(canon):
                return Intent.QUESTION.value, 0.6, "question"
            if context in ("id", "yn") and _GOES_AHEAD.search(canon) and not _REFUSES.search(canon):
                return Intent.AFFIRM.value, 0.75, "goes ahead"
            return self._yes_no(canon)
        if has_score and _COMPLAINT.search(canon):
            return Intent.COMPLAINT.value, max(probs.get("complaint", 0.0), 0.7), "score+complaint"
        if has_score and best not in ("complaint", "ask_human", "opt_out", "busy_callback"):
            return Intent.AFFIRM.value, max(probs.get("affirm", 0.0), 0.8), "score"
        if probs[best] < 0.6 and best != "complaint" and _COMPLAINT.search(canon):
            return Intent.COMPLAINT.value, max(probs.get("complaint", 0.0), 0.6), "complaint word"
        unsure = best in _IRREVERSIBLE and probs[best] < IRREVERSIBLE_MIN_CONFIDENCE
        weak = probs[best] < 0.5 and best not in ("deny", "affirm")
        if context == "id" and (best in ("affirm", "question", "unclear") or unsure or weak) \
                and _CONFIRMS_IDENTITY.match(canon):
            # "是我，什么事？", "是我！你们终于打电话来了" (0.5 opt_out), "等是我你说吧" (a misheard 嗯:
            # busy_callback 0.36 over affirm 0.34): the identity is confirmed; clear
            # opt-outs and call-me-later phrases were caught by the rules above, complaints stay
            # complaints (the conversation records them and goes on). A model that already reads
            # "笨是我你说吧" as yes gets the rule's name on it, so a rival answer in the audio does not
            # overrule the words (the demo re-asked it three times and ended the call partial).
            return Intent.AFFIRM.value, max(probs.get("affirm", 0.0), 0.75), "identity confirmed"
        if context in ("id", "yn") and (best in ("affirm", "question", "unclear") or weak) \
                and _GOES_AHEAD.search(canon) and not _REFUSES.search(canon):
            # "那好吧问吧" to "……只需要一分钟,可以吗?" (read unclear 0.41 three times, and the call ended
            # partial): letting the robot ask is a yes.
            return Intent.AFFIRM.value, max(probs.get("affirm", 0.0), 0.75), "goes ahead"
        if context == "yn" and best in ("deny", "complaint") and probs[best] < 0.5 and _LEADING_YES.match(canon):
            # People lead with the answer: "准时的，说好下午四点……" misheard at the end as "…就没好了"
            # must not turn an on-time delivery into a complaint ticket.
            return Intent.AFFIRM.value, max(probs.get("affirm", 0.0), 0.55), "leading yes"
        if probs[best] < MIN_CONFIDENCE and best in _OFF_SCRIPT:
            # A guess ("说我" for "是我，什么事？": busy_callback 0.26) must not steer the call off the
            # script: "unclear" has the robot ask again, which costs one sentence.
            return Intent.UNCLEAR.value, 1.0 - probs[best], "not sure"
        if context == "book" and best == "busy_callback":
            return Intent.AFFIRM.value, max(probs.get("affirm", 0.0), 0.6), "booking time"
        if best in _IRREVERSIBLE and probs[best] < IRREVERSIBLE_MIN_CONFIDENCE:
            # Opting out puts the customer on the do-not-call list and "wrong number" ends the
            # relationship with that number: neither on a guess ("你们终于打电话来了" scored 0.51
            # opt_out over a real call). The phrase rules above catch the clear ways of saying them.
            rest = {k: v for k, v in probs.items() if k not in _IRREVERSIBLE}
            second = max(rest, key=rest.get)
            if _COMPLAINT.search(canon) or second == Intent.COMPLAINT.value:
                return Intent.COMPLAINT.value, max(rest.get("complaint", 0.0), 0.5), "not sure enough to opt out"
            if second in _OFF_SCRIPT and rest[second] < MIN_CONFIDENCE:
                # The runner-up is a guess too ("以后加项目先打电话问我": opt_out 0.53, then
                # busy_callback 0.16): no rule said it, so it must not leave the script either.
                return Intent.UNCLEAR.value, 1.0 - rest[second], "not sure"
            return second, rest[second], "not sure enough to opt out"
        return best, probs[best], None

    @staticmethod
    def _yes_no(canon: str) -> tuple[str, float, str | None]:
        if re.search(r"^(不|没|别|算了|不用|不需要|不要|否|木有|冇|没得)", canon):
            return Intent.DENY.value, 0.55, "yes_no"
        if re.search(r"(是|对|嗯|好|行|可以|方便|没问题|ok|中|要得|得嘞|系|有|洗了|准时|按时|解决|讲了|清楚)", canon):
            return Intent.AFFIRM.value, 0.55, "yes_no"
        if sum(1 for ch in canon if "\u4e00" <= ch <= "\u9fff") >= 5:
            return Intent.AFFIRM.value, 0.4, "content"  # a real answer the rules cannot place
        return Intent.UNCLEAR.value, 0.4, "yes_no"
