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
from dataclasses import dataclass, field

from callcenter.domain import CATEGORY_DEPARTMENT, PROBLEM_ZH, Department, FeedbackCategory
from dialog.actions import OpenTicket
from dialog.answers import words_doubted

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
    * a weak problem beside a strong one is the strong one's echo;
    * charges nobody announced are a price problem, however the classifier placed them;
    * on a call the customer scored well (``satisfied``, and no phrase rule heard a complaint), a
      problem needs the classifier's score of at least :data:`SATISFIED_PROBLEM_FROM`, and words
      the recognizer was sure enough of (``asr``, its confidence, at least
      :data:`~dialog.answers.DOUBTFUL_WORDS_BELOW`): a satisfied customer's garbled answer concludes nothing.
    """
    problems = [c for c in categories if c != "praise"]
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
