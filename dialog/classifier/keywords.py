"""Keyword/regex baseline: a lexicon of topics and polarity cues, read clause by clause.

How it decides, per clause (a stretch between punctuation):

1. find topic phrases (by writing or by sound, :class:`~dialog.phonetic.PhoneticIndex`), each
   pointing at a category; a phrase marked ``!`` is a complaint by itself (缺货, 乱收费, 没修好);
2. score the clause's polarity from cue words, a negator flipping the cue after it
   (不专业 is negative, 不贵 and 没问题 are not);
3. a topic in a negative clause (or a complaint phrase) tags its category; a topic in a positive
   clause tags ``praise``; a suggestion (希望, 建议, 要是……就好了) tags the category and softens
   the sentiment to neutral.

It needs no training and explains itself (the matched phrases are the evidence), which is why it
stays as a baseline and a fallback; the learned models beat it (docs/benchmarks.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dialog.classifier import CATEGORY_CODES, SENTIMENT_CODES, Classification, Span
from dialog.phonetic import STRICT, PhoneticIndex, syllabify
from dialog.text import clauses, clip, normalize_mapped

# category -> phrases. "!" marks a phrase that is a complaint whatever the cues around it.
LEXICON: dict[str, tuple[str, ...]] = {
    "wait_time": (
        "等", "等了", "等待", "排队", "时间", "慢", "久", "小时", "钟头", "半天", "一上午", "一下午",
        "一整天", "速度", "效率", "准时", "守时", "拖", "交车时间", "!太慢", "!等太久", "!等了半天",
        "!拖拖拉拉", "!一拖再拖", "!磨蹭", "!磨叽", "!磨磨唧唧", "!干等", "!白等", "!等不起", "!耽误",
    ),
    "parts_wait": (
        "配件", "零件", "备件", "订货", "调货", "到货", "库存", "!缺货", "!没货", "!缺件", "!等配件",
        "!等件", "!冇货", "!莫得货", "!断货", "!没到货",
    ),
    "price": (
        "价格", "价钱", "收费", "费用", "工时费", "报价", "结账", "优惠", "折扣", "划算", "便宜", "贵",
        "钱", "价", "!太贵", "!乱收费", "!多收", "!坑钱", "!坑人", "!宰人", "!太黑", "!不透明",
        "!额外收费", "!收费高", "!割韭菜", "!劝退",
    ),
    "service_attitude": (
        "态度", "热情", "耐心", "礼貌", "客气", "口气", "语气", "脸色", "说话", "服务意识",
        "!爱答不理", "!爱理不理", "!不耐烦", "!冷淡", "!冷漠", "!不理人", "!没人理", "!推销",
        "!甩脸", "!翻白眼", "!吵架", "!顶嘴", "!傲慢", "!不尊重", "!敷衍",
    ),
    "service_process": (
        "预约", "流程", "接待", "登记", "通知", "解释", "结算单", "增项", "旧件", "回访", "短信",
        "提醒", "系统", "小程序", "app", "电话", "手续", "交接", "确认", "!打不通", "!没人接",
        "!没通知", "!没解释", "!没人管", "!找不到人", "!没经过我同意", "!没跟我说", "!繁琐",
        "!太乱", "!推来推去", "!踢皮球",
    ),
    "repair_quality": (
        "修", "维修", "修好", "技术", "异响", "故障", "毛病", "返修", "喷漆", "钣金", "补漆", "漆",
        "手艺", "!没修好", "!修不好", "!又坏", "!还是响", "!还响", "!漏油", "!漏水", "!色差",
        "!白修", "!没好", "!又亮", "!抖", "!起泡", "!划痕",
    ),
    "car_wash": (
        "洗车", "洗", "清洁", "干净", "内饰", "吸尘", "擦", "!没洗", "!不干净", "!脏", "!泥",
        "!脚印", "!手印", "!水印", "!没擦", "!灰",
    ),
    "facility": (
        "休息区", "休息室", "环境", "停车", "车位", "停车场", "wifi", "无线网", "厕所", "卫生间",
        "洗手间", "充电桩", "沙发", "椅子", "饮水机", "咖啡", "零食", "儿童区", "位置", "装修",
        "!停车难", "!难停", "!没车位", "!难找", "!太偏", "!连不上",
    ),
    "insurance": (
        "保险", "续保", "理赔", "定损", "出险", "救援", "拖车", "保费", "保单", "报案", "险",
    ),
    "sales_process": (
        "买车", "提车", "上牌", "牌照", "销售", "合同", "定金", "贷款", "按揭", "精品", "装潢",
        "贴膜", "合格证", "首付", "置换", "新车", "试驾", "订车", "!加价", "!画大饼", "!不兑现",
        "!不认账", "!承诺",
    ),
}

POSITIVE = ("好", "不错", "满意", "棒", "赞", "专业", "热情", "耐心", "周到", "细心", "干净", "快",
            "及时", "准时", "舒服", "方便", "实在", "放心", "感谢", "谢谢", "表扬", "厉害", "用心",
            "负责", "规范", "公道", "合理", "划算", "便宜", "贴心", "感动", "靠谱", "到位", "漂亮",
            "巴适", "杠杠", "点赞", "好评", "没得说", "没话说", "一流", "认真", "客气", "利索",
            "透明", "清楚", "顺利", "省心")
NEGATIVE = ("差", "不行", "慢", "贵", "脏", "乱", "烦", "坑", "麻烦", "失望", "生气", "投诉", "糟糕",
            "离谱", "敷衍", "马虎", "过分", "不满意", "拖", "缺", "难", "问题", "毛病", "骗", "忽悠",
            "太", "根本", "一直", "还是", "又", "半天", "不舒服", "不方便", "垃圾", "无语", "拉胯",
            "坏", "错", "没用", "白", "差劲", "不像话", "吓人", "受不了", "忒", "贼慢", "忘", "漏", "少了",
            "没给", "不给", "不承认", "不认", "用不了", "不对", "跑了一趟", "空的", "怪味", "发霉")
NEGATORS = ("不", "没", "没有", "别", "未", "不太", "不怎么", "不是很", "冇", "莫得", "没得")
SUGGESTION = re.compile(r"希望|建议|要是|如果|能不能|可不可以|可以再|就更好|就好了|最好|再.{0,4}一点")
GENERIC_POS = re.compile(r"满意|挺好|不错|很好|都好|没问题|没毛病|可以|棒|好评")
NO_OPINION = re.compile(r"^(嗯|啊|哦|呃)*[,.。 ]*(没有|没了|没啥|没什么|暂时没有|没别的)(什么)?(意见|建议|了|别的了|要说的了)?[,.。!]*$")
GENERIC_NEG = re.compile(r"不满意|差|失望|垃圾|不行|坑|避雷|差评|拉胯|不咋地|太烂")


def _build_index() -> tuple[PhoneticIndex, set[str]]:
    entries: list[tuple[str, str]] = []
    strong: set[str] = set()
    for cat, phrases in LEXICON.items():
        for p in phrases:
            word = p.lstrip("!")
            if p.startswith("!"):
                strong.add(f"{cat}:{word}")
            entries.append((word, cat))
    return PhoneticIndex(entries, STRICT), strong


_CUES = PhoneticIndex([(w, "pos") for w in POSITIVE] + [(w, "neg") for w in NEGATIVE]
                      + [(w, "not") for w in NEGATORS])


def clause_polarity(clause: str) -> float:
    """Sum of cue polarities; a negator flips the cue right after it (within two characters)."""
    score = 0.0
    cues = _CUES.find(clause, phonetic=False)
    for k, m in enumerate(cues):
        if m.label == "not":
            continue
        value = 1.0 if m.label == "pos" else -1.0
        prev = cues[k - 1] if k else None
        if prev is not None and prev.label == "not" and m.start - prev.end <= 2:
            value = -value if value > 0 else 0.5  # 不好 -> negative; 没问题 -> mildly positive
        score += value
    if cues and cues[-1].label == "not" and score == 0 and not NO_OPINION.match(clause):
        score = -0.5  # 没/不 at the end of a clause: "车没洗" style
    return score


class KeywordClassifier:
    """The lexicon baseline (no training, no model files)."""

    name = "keyword"

    def __init__(self) -> None:
        self._topics, self._strong = _build_index()

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        return [self._one(t) for t in texts]

    def _one(self, original: str) -> Classification:
        norm, origin = normalize_mapped(original)
        norm, truncated = clip(norm)
        found: dict[str, list[tuple[int, int]]] = {}
        pos = neg = 0.0
        suggestion = False
        syls_all = syllabify(norm)
        for start, end in clauses(norm) or [(0, len(norm))]:
            clause = norm[start:end]
            syls = [s for s in syls_all if start <= s.start < end]
            topics = self._topics.find(norm, syllables=syls)
            polarity = clause_polarity(clause)
            is_suggestion = bool(SUGGESTION.search(clause))
            suggestion |= is_suggestion
            strong = [m for m in topics if f"{m.label}:{m.phrase}" in self._strong]
            if NO_OPINION.match(clause):
                continue
            # A topic mentioned without any praise is, on a revisit call, almost always a complaint
            # (measured on dev: treating it as neutral lost 0.1 of sentiment accuracy).
            if (polarity <= 0 and topics) or strong or (is_suggestion and topics):
                hits = strong or topics
                for m in hits:
                    found.setdefault(m.label, []).append((m.start, m.end))
                neg += 1 if not is_suggestion else 0
            elif polarity <= -1:
                neg += 1
            elif polarity > 0 and topics:
                found.setdefault("praise", []).append((start, end))
                pos += 1
            elif polarity > 0:
                pos += 0.5 if GENERIC_POS.search(clause) else 0.25
            elif GENERIC_NEG.search(clause):
                neg += 1
        if pos and not neg and GENERIC_NEG.search(norm) and not found:
            neg += 1
        problems = [c for c in found if c != "praise"]
        if problems and (pos or suggestion):
            sentiment = "neutral"
        elif problems or neg > pos:
            sentiment = "negative"
        elif pos:
            sentiment = "positive"
        else:
            sentiment = "neutral"
        cats = tuple(c for c in CATEGORY_CODES if c in found)
        evidence = {c: tuple(_span(original, origin, s, e) for s, e in found[c]) for c in cats}
        scores = {c: (1.0 if c in found else 0.0) for c in CATEGORY_CODES}
        sent_scores = {s: (1.0 if s == sentiment else 0.0) for s in SENTIMENT_CODES}
        return Classification(original, cats, sentiment, scores, sent_scores, evidence, truncated)


def _span(original: str, origin: list[int], start: int, end: int) -> Span:
    """A span of the normalized text, mapped back onto the original."""
    if not origin:
        return Span(start, end, original[start:end])
    s = origin[min(start, len(origin) - 1)]
    e = origin[min(end, len(origin)) - 1] + 1
    return Span(s, e, original[s:e])
