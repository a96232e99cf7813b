"""What one call concludes: the problems the customer reported, and one ticket per department.

A conversation reports a problem each time an answer shows one (a "no" to a yes/no question that
names a failure, a classified complaint, a low score without a reason). :class:`ProblemLedger`
collects them for the whole call and, when the call ends, turns them into at most one ticket per
department, titled in plain Chinese (what went wrong, the score) with the customer's own words,
question by question, as the evidence. A department that gets two problems from one call (waiting
and a repair that did not hold) gets one ticket naming both, never two.

:func:`store_not_at_fault` reads a "no" in the light of the question: "没洗,我跟他们说不用洗的" or
"车是好了,是我自己来晚了" answer "no" without the store having failed.

Pure functions and a small mutable ledger; the conversation's own thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from callcenter.domain import CATEGORY_DEPARTMENT, PROBLEM_ZH, Department, FeedbackCategory
from dialog.actions import OpenTicket
from dialog.answers import words_doubted
from dialog.classifier import Classification
from dialog.nlu import without_scores

# The customer's own choice or doing, said together with a "no" to a question about a failure.
_CUSTOMER_CHOICE = re.compile(
    r"(我|自己)(让|叫|跟.{0,6}说|说了|说过|交代|要求|告诉).{0,8}(不用|别|不要|不需要|甭)"
    r"|(不用|不需要|没让|没叫|不让|没要)(他们|师傅|你们)?(帮我|给我)?(洗|清洗|冲)"
    r"|(我|自己)(没让|没叫|不让|没要|不要|不想)(洗|清洗|他们洗)"
    r"|赶时间.{0,8}(没洗|不洗|不用洗|就没|先走)"
    r"|(是我|我自己|我).{0,4}(来|到|去|取车|提车)?(晚|迟)(了|到|来)"
    r"|我(自己)?(临时|有事|改了|推迟|晚点|后来).{0,6}(才|没)?(去|来|到|取|提)"
    r"|不(怪|赖)(他们|你们|店里|师傅|人家)|(他们|你们|店里)(没问题|没毛病)")
# Better than asked: the car was ready early.
_BETTER = re.compile(r"提前|早(了|就|点|些)?(交|好|弄好|修好|完|给)|比.{0,8}(早|快)|还早|没(有)?(拖|延误|晚)")


def store_not_at_fault(text: str) -> bool:
    """True when a "no" to a question about a store failure says the store did not fail."""
    return bool(_CUSTOMER_CHOICE.search(text) or _BETTER.search(text))


@dataclass
class _Department:
    categories: list[FeedbackCategory | None] = field(default_factory=list)
    evidence: list[tuple[str, str]] = field(default_factory=list)  # (question, the customer's words)
    high: bool = False
    kind: str = "follow_up"


@dataclass
class ProblemLedger:
    """Problems reported during one call, by department."""

    _by_department: dict[Department, _Department] = field(default_factory=dict)

    def add(self, category: FeedbackCategory | None, question: str, words: str, *, high: bool = False,
            kind: str = "complaint", department: Department | None = None) -> None:
        """A problem (``category`` None: a complaint nobody could place, or a low score unexplained)."""
        dept = department or (CATEGORY_DEPARTMENT[category] if category is not None else Department.CRM)
        entry = self._by_department.setdefault(dept, _Department())
        if category not in entry.categories:
            entry.categories.append(category)
        words = words.strip()
        if words and (question, words) not in entry.evidence:
            entry.evidence.append((question, words))
        entry.high = entry.high or high
        if kind == "complaint":
            entry.kind = "complaint"

    @property
    def categories(self) -> set[FeedbackCategory]:
        return {c for d in self._by_department.values() for c in d.categories if c is not None}

    def __bool__(self) -> bool:
        return bool(self._by_department)

    def tickets(self, score5: int | None = None) -> list[OpenTicket]:
        """One ticket per department, most urgent first in the order the problems came up."""
        out = []
        for dept, entry in self._by_department.items():
            known = [c for c in entry.categories if c is not None]
            if known:
                what = "、".join(PROBLEM_ZH[c] for c in known)
            elif entry.kind == "complaint":
                what = "客户投诉(未能自动归类)"
            else:
                what = "客户满意度低,未说明原因"
            title = what + (f"(满意度{score5}分)" if score5 is not None else "")
            lines = [f"问:{q} 答:“{w}”" if q else f"客户说:“{w}”" for q, w in entry.evidence]
            if score5 is not None:
                lines.append(f"总体满意度:{score5}分")
            high = entry.high or (score5 is not None and score5 <= 2)
            out.append(OpenTicket(title=title[:200], category=known[0] if known else None, department=dept,
                                  description="\n".join(lines) or None, priority="high" if high else "normal",
                                  ticket_kind=entry.kind))
        return out


# -- tags ------------------------------------------------------------------------------------------
# Charges nobody announced: the money and the not-telling, in either order.
_UNANNOUNCED_CHARGE = re.compile(
    r"(没|也没|都没|没有)(人|谁)?(提前)?(跟我|给我|和我|向我)?(说|讲|告诉|通知|问过|问|商量|打招呼)"
    r".{0,10}(钱|费|收|价)"
    r"|(钱|费|收费|价|账单|结账).{0,12}(没|也没|都没|没有)(人|谁)?(提前)?(跟我|给我|和我|向我)?"
    r"(说|讲|告诉|通知|问过|问|商量|打招呼)"
    r"|(多|额外|另外)(收|出|加)了?.{0,6}(钱|费|块|元)")
# A problem category found beside a strong one but itself weak: the classifier's echo of the strong
# one's words (a waiting complaint also read as attitude), not something the customer said.
ECHO_BELOW, STRONG_FROM = 0.5, 0.8


# On a call the customer scored well, a problem category the classifier is this unsure of is not
# concluded (a garbled "技师挺实在,不乱推项目" read as attitude at 0.4 opened a ticket on a 5/5 call).
SATISFIED_PROBLEM_FROM = 0.5
# ... nor one read from words the recognizer itself doubts (dialog.answers.DOUBTFUL_WORDS_BELOW:
# Whisper's mean token probability below 0.5). On the tune calls garbled short answers ("顾问还捆银"
# for 顾问还可以: attitude 0.90) came back at 0.25-0.41, every answer with a real complaint at 0.60+.


def refine_tags(categories: tuple[str, ...], scores: dict[str, float], sentiment: str,
                complaint: bool, text: str = "", *, satisfied: bool = False,
                asr: float | None = None) -> tuple[str, ...]:
    """The tags one answer supports, read with its sentiment.

    * praised topics are praise, not problems: "续保提醒挺及时的" names insurance, and is no
      insurance problem (the answer is positive and no complaint);
    * a complaint is not praise, whatever pleasant word it uses ("热情地推销了半天");
    * a fault named only to be denied ("态度不差", "一点都不贵", :func:`only_negated_negatives`)
      is praise, whatever the models read;
    * a weak problem beside a strong one is the strong one's echo;
    * charges nobody announced are a price problem, however the classifier placed them;
    * on a call the customer scored well (``satisfied``, and no phrase rule heard a complaint), a
      problem needs the classifier's score of at least :data:`SATISFIED_PROBLEM_FROM`, and words
      the recognizer was sure enough of (``asr``, its confidence, at least
      :data:`~dialog.answers.DOUBTFUL_WORDS_BELOW`): a satisfied customer's garbled answer concludes nothing.
    """
    problems = [c for c in categories if c != "praise"]
    if approves(text):
        # "顾问还行", "师傅还可以": a topic and a nod, no problem, whatever topic the model read.
        return ("praise",) if "praise" in categories else ()
    if only_negated_negatives(text):
        # "服务态度不差,有热情": the fault is named only to be denied, whatever the model read.
        sentiment, complaint = "positive", False
    if sentiment == "positive" and not complaint:
        return ("praise",) if categories else ()
    cats = [c for c in categories if c != "praise"] if (sentiment == "negative" or complaint) else list(categories)
    if any(scores.get(c, 0.0) >= STRONG_FROM for c in problems):
        cats = [c for c in cats if c == "praise" or scores.get(c, 1.0) >= ECHO_BELOW or scores.get(c, 0.0) >= STRONG_FROM]
    if satisfied:
        doubtful = words_doubted(asr)
        cats = [c for c in cats if c == "praise" or scores.get(c, 1.0) >= SATISFIED_PROBLEM_FROM and not doubtful]
    if sentiment != "positive" and "price" not in cats and _UNANNOUNCED_CHARGE.search(text):
        cats.append("price")
    return tuple(dict.fromkeys(cats))


# -- what an answer says, clause by clause ---------------------------------------------------------
# A negative word negated is no complaint: 态度不差, 一点都不贵, 没毛病, 挑不出.
_NEGATED_NEGATIVE = re.compile(
    r"(不|没|并不|也不|都不|一点(也|都)?不|从来不|从不)(算|太|怎么|很|那么)?(差|慢|久|贵|脏|乱|凶|烦|坑|坏|磨蹭|拖拉|拖沓)"
    r"|(挑不出|找不出|没有?)(来)?(啥|什么|任何|哪里|哪儿)?(不好|不满意?|毛病|问题|不足|可挑)(的地方)?"
    r"|挑不出|没(得|的|话)说|没说的")
# Words that carry a complaint once the negated negatives are taken out, and the turns of a sentence
# that bring one in after them ("没得说,就是时间长了点"; "你们说没问题,开回去还是响").
_NEGATIVE_WORDS = re.compile(
    r"不(好|行|满|太|怎么|够|专业|耐烦|热情|及时|干净|准时|清楚|理|管|着|上)|差|慢|贵|脏|乱|凶|烦|坑|坏|晚|久|拖|"
    r"等了|长|短|小|少|高|挤|吵|一般|出错|错|亏|漏|响|异味|味|太|又|还是|没(洗|修|弄|讲|说|通知|打|人|解决|好|劲|气|电)|"
    r"问题|毛病|投诉|推销|忽悠|收了|多收|麻烦|失望|生气|退|遭不住|受不了|可惜|希望|建议|要是")
_TURNS = re.compile(r"就是|但是|但|不过|可是|只是|可|却|结果|然后|说.{0,4}(没|不)")


# A topic and a nod, nothing else: "顾问还行", "师傅还可以吧", "流程没问题" (not 一般 or 凑合: lukewarm).
_APPROVES = re.compile(r"^[^,，。!！?？;；、\s不没]{0,8}?(还行|还可以|也行|可以|还好|还不错|不错|挺好|没问题|过得去|正常)"
                       r"[的吧啊呀了嘛哈呗]*[。.!！]*$")


def approves(text: str) -> bool:
    """True when ``text`` is one short clause approving of something ("顾问还行"): no problem in it."""
    return bool(_APPROVES.match(text.strip()))


def only_negated_negatives(text: str) -> bool:
    """True when ``text`` names a fault only to deny it ("服务态度不差,挺热情", "一点都不贵"): no
    other negative word, and no turn of the sentence ("……就是", "你们说没问题"), is left once the
    negated ones are taken out. Anything less plain is left to the models."""
    if not _NEGATED_NEGATIVE.search(text):
        return False
    rest = _NEGATED_NEGATIVE.sub("", text)
    return not (_NEGATIVE_WORDS.search(rest) or _TURNS.search(text))


# "顾问态度还行,就是一直让我干等着": the first clause concedes something was fine, the complaint is
# what follows the "就是 / 但是 / 不过". The conceded topic is no problem.
# The words that turn a sentence towards what follows ("还行,就是……", "洗了,可是……", "四分,扣一分是因为……").
_TURN_WORDS = "就是|但是|不过|可是|只是"
_CONCESSION = re.compile(
    r"^(?P<head>[^,，。!！?？;；]{0,16}?(还行|还可以|可以|不错|挺好|都好|蛮好|还好|没问题|没毛病|没得说|不差|不坏|"
    rf"挺[^,，。!！?？不没就但]{{1,3}})[的吧啊呀了]*)[,，。、\s]*({_TURN_WORDS}|但)(?P<rest>.{{2,}})$")


# "洗是洗了,就是不太干净", "外面是洗了,可是座椅上全是油手印子": yes to the question, then a complaint.
YES_BUT_READ_FROM = 6  # characters after the turn that are read whatever words they use
# (A recognizer often writes no punctuation: "外面是洗了可是我座椅上全是油手印": the two-character
# turns are found without it.)
_YES_BUT = re.compile(rf"^[^,，。!！?？;；]{{1,14}}?(?:[,，。、\s]+({_TURN_WORDS}|但|可)|({_TURN_WORDS}))(?P<rest>.{{2,}})$")


def complaint_after_yes(text: str) -> str | None:
    """What a customer adds after answering yes and turning the sentence ("按时倒是按时,就是等得挺久":
    等得挺久; "外面是洗了,可是座椅上全是油手印子"): the answer is then worth classifying. None when
    nothing follows the turn but a few words without a negative one ("洗了,不过还好")."""
    m = _YES_BUT.match(text.strip())
    if m is None:
        return None
    rest = m.group("rest")
    return rest if len(rest) >= YES_BUT_READ_FROM or _NEGATIVE_WORDS.search(_NEGATED_NEGATIVE.sub("", rest)) else None


# What a score answer says besides the score: the numbers (dialog.nlu.without_scores) and the
# scale's words taken out.
_SCALE_WORDS = re.compile(r"满分|非常满意|十分满意|很满意|挺满意|比较满意|不太满意|不满意|满意|打|给")
_REASON = re.compile(rf"因为|扣|主要是|{_TURN_WORDS}")


def reason_beside_score(text: str) -> str | None:
    """The reason a customer gives with the score ("四分,扣一分是因为等得有点久", "满意,就是洗车没洗
    干净"), for the classifier to read; None when the rest is no complaint ("四分吧,留一分让你们进步",
    "五分,没得说")."""
    rest = _NEGATED_NEGATIVE.sub("", _SCALE_WORDS.sub("", without_scores(text)))
    if sum(1 for ch in rest if "\u4e00" <= ch <= "\u9fff") < 4:
        return None
    return rest if _NEGATIVE_WORDS.search(rest) or _REASON.search(rest) and len(rest) >= YES_BUT_READ_FROM else None


def conceded(text: str) -> str | None:
    """The part of ``text`` after a conceding first clause ("X还行,就是Y": Y), or None."""
    m = _CONCESSION.match(text.strip())
    if m is None:
        return None
    head = _NEGATED_NEGATIVE.sub("", m.group("head"))
    if _NEGATIVE_WORDS.search(head):
        return None  # "等得久还行,就是……": the first clause has its own complaint
    return m.group("rest")


def after_concession(whole: Classification, rest: Classification) -> Classification:
    """The reading of an answer whose complaint follows a conceding clause ("顾问态度还行,就是一直让
    我干等着"): a problem of the whole answer that the rest, classified alone, does not support
    (below :data:`ECHO_BELOW`) while it supports another of them is the conceded topic, and goes.
    When the rest alone supports none of them ("流程还行,就是签字的地方有点多": its topic is in the
    first clause), the whole answer's reading stands."""
    categories = tuple(c for c in whole.categories if c == "praise" or rest.scores.get(c, 0.0) >= ECHO_BELOW)
    if categories == whole.categories or all(c == "praise" for c in categories):
        return whole  # the rest supports none of the whole reading's problems: keep the whole reading
    return replace(whole, categories=categories,
                   evidence={c: v for c, v in whole.evidence.items() if c in categories})
