"""Judging a robot call against what its simulated customer expects: the call-level evaluation.

A persona's ``expect`` says what a good agent would conclude from the call (see
docs/data-card-calls.md): ``outcome``, ``score5`` (null: no score given), ``categories`` (the
complaint categories the customer stated; ``praise`` is never scored), ``allowed`` (categories a
reasonable reader might also tag: not counted as false), ``tickets`` (the departments that must get
a ticket; ``tickets_allowed`` and the departments of ``allowed`` categories may), ``callback`` and
``dnc`` (the customer asked to be called later / never again). A customer who asks for a person
expects ``transferred``; where no agent could take the call the robot concludes ``transfer_failed``
(an agent calls back), which counts as right, its agent callback included. :func:`concluded` reads what the
robot recorded for a call (the call row, its tags, tickets, callbacks, the do-not-call list),
:func:`judge` compares one call, :func:`summarize` totals many. Plain functions; the database
reads run in the caller's session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from callcenter.domain import CATEGORY_DEPARTMENT, FeedbackCategory

PRAISE = FeedbackCategory.PRAISE.value
# Outcomes that are right for an expected outcome besides itself: a request for a person the robot
# understood and tried to hand over, when nobody could take it (the bench has no agents).
ALSO_RIGHT = {"transferred": frozenset({"transfer_failed"})}


def _departments(categories: Iterable[str]) -> frozenset[str]:
    return frozenset(CATEGORY_DEPARTMENT[FeedbackCategory(c)].value for c in categories
                     if c in FeedbackCategory._value2member_map_)


@dataclass(frozen=True)
class Expected:
    """What the robot should conclude (a persona's ``expect``, normalised)."""

    outcome: str | None
    score5: int | None = None
    categories: frozenset[str] = frozenset()
    allowed: frozenset[str] = frozenset()
    tickets: frozenset[str] = frozenset()
    tickets_allowed: frozenset[str] = frozenset()
    callback: bool = False
    dnc: bool = False

    @classmethod
    def from_expect(cls, expect: Mapping[str, Any]) -> Expected:
        """From a persona's ``expect``; missing categories or tickets mean none."""
        categories = frozenset(expect.get("categories") or ()) - {PRAISE}
        allowed = frozenset(expect.get("allowed") or ()) - {PRAISE}
        unknown = (categories | allowed) - set(FeedbackCategory._value2member_map_)
        if unknown:
            raise ValueError(f"expect: unknown categories {', '.join(sorted(unknown))}")
        score = expect.get("score5")
        return cls(
            outcome=expect.get("outcome"), score5=int(score) if score is not None else None,
            categories=categories, allowed=allowed, tickets=frozenset(expect.get("tickets") or ()),
            tickets_allowed=frozenset(expect.get("tickets_allowed") or ()) | _departments(allowed),
            callback=bool(expect.get("callback")) or expect.get("outcome") == "callback",
            dnc=bool(expect.get("dnc")) or expect.get("outcome") == "opt_out",
        )

    @property
    def complaint(self) -> bool:
        return bool(self.categories or self.tickets)

    def outcome_right(self, outcome: str | None) -> bool:
        return outcome == self.outcome or outcome in ALSO_RIGHT.get(self.outcome or "", ())


@dataclass(frozen=True)
class Concluded:
    """What the robot recorded for one call."""

    outcome: str | None
    score5: int | None = None
    categories: frozenset[str] = frozenset()  # tags, praise included
    tickets: Mapping[str, int] = field(default_factory=dict)  # department -> tickets opened
    callback: bool = False  # a callback row (robot or agent) exists for the call
    dnc: bool = False  # the call's number is on the do-not-call list
    disposition: str | None = None


@dataclass(frozen=True)
class Judgement:
    """One call: each check, and what differed."""

    outcome_ok: bool
    score_ok: bool
    tags_true: tuple[str, ...]
    tags_false: tuple[str, ...]  # tagged, not expected, not allowed (praise aside)
    tags_missed: tuple[str, ...]
    tickets_false: tuple[str, ...]  # one entry per ticket of a department not expected nor allowed
    tickets_missed: tuple[str, ...]
    tickets_duplicate: int  # tickets beyond the first for one department
    callback_ok: bool
    dnc_ok: bool

    @property
    def tags_ok(self) -> bool:
        return not self.tags_false and not self.tags_missed

    @property
    def tickets_ok(self) -> bool:
        return not self.tickets_false and not self.tickets_missed and not self.tickets_duplicate

    @property
    def ok(self) -> bool:
        return (self.outcome_ok and self.score_ok and self.tags_ok and self.tickets_ok and self.callback_ok
                and self.dnc_ok)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tags_ok": self.tags_ok, "tickets_ok": self.tickets_ok, "ok": self.ok}


def judge(expected: Expected, got: Concluded) -> Judgement:
    tags = got.categories - {PRAISE}
    tickets_false = tuple(sorted(d for d, n in got.tickets.items() if n and d not in expected.tickets
                                 and d not in expected.tickets_allowed for _ in range(n)))
    # A failed hand-over schedules an agent's callback: not a callback the customer asked for.
    agent_callback = got.outcome == "transfer_failed" and expected.outcome_right(got.outcome)
    return Judgement(
        outcome_ok=expected.outcome_right(got.outcome),
        score_ok=got.score5 == expected.score5,
        tags_true=tuple(sorted(tags & expected.categories)),
        tags_false=tuple(sorted(tags - expected.categories - expected.allowed)),
        tags_missed=tuple(sorted(expected.categories - tags)),
        tickets_false=tickets_false,
        tickets_missed=tuple(sorted(d for d in expected.tickets if not got.tickets.get(d))),
        tickets_duplicate=sum(n - 1 for n in got.tickets.values() if n > 1),
        callback_ok=got.callback == expected.callback or (agent_callback and not expected.callback),
        dnc_ok=got.dnc == expected.dnc and (got.outcome != "opt_out" or got.dnc),
    )


def _share(n: int, of: int) -> float | None:
    return round(n / of, 3) if of else None


def _recall(pairs: list[tuple[Expected, Concluded, Judgement]], wanted, found) -> dict[str, Any]:
    relevant = [(e, c) for e, c, _j in pairs if wanted(e)]
    hits = sum(1 for _e, c in relevant if found(c))
    flagged = [(e, c) for e, c, _j in pairs if found(c)]
    right = sum(1 for e, _c in flagged if wanted(e))
    return {"n": hits, "of": len(relevant), "recall": _share(hits, len(relevant)),
            "precision": _share(right, len(flagged)), "flagged": len(flagged)}


def summarize(pairs: list[tuple[Expected, Concluded, Judgement]]) -> dict[str, Any]:
    """Totals over judged calls: the figures of issue 11."""
    n = len(pairs)
    scored = [(e, c) for e, c, _j in pairs if e.score5 is not None]
    tp = sum(len(j.tags_true) for _e, _c, j in pairs)
    fp = sum(len(j.tags_false) for _e, _c, j in pairs)
    fn = sum(len(j.tags_missed) for _e, _c, j in pairs)
    satisfied = [(e, j) for e, _c, j in pairs if not e.complaint]
    complaint = [(e, j) for e, _c, j in pairs if e.tickets]
    return {
        "calls": n,
        "all_right": sum(1 for *_x, j in pairs if j.ok),
        "outcome_accuracy": _share(sum(1 for *_x, j in pairs if j.outcome_ok), n),
        "score_accuracy": _share(sum(1 for e, c in scored if c.score5 == e.score5), len(scored)),
        "scores_expected": len(scored),
        "scores_invented": sum(1 for e, c, _j in pairs if e.score5 is None and c.score5 is not None),
        "tags": {"true": tp, "false": fp, "missed": fn, "precision": _share(tp, tp + fp), "recall": _share(tp, tp + fn),
                 "calls_exact": sum(1 for *_x, j in pairs if j.tags_ok)},
        "tickets": {
            "false": sum(len(j.tickets_false) for *_x, j in pairs),
            "on_satisfied_calls": sum(len(j.tickets_false) for _e, j in satisfied),
            "satisfied_calls": len(satisfied),
            "duplicates": sum(j.tickets_duplicate for *_x, j in pairs),
            "missed": sum(len(j.tickets_missed) for *_x, j in pairs),
            "complaint_calls": len(complaint),
            "complaint_calls_missing_a_ticket": sum(1 for _e, j in complaint if j.tickets_missed),
            "complaint_calls_missing_share": _share(sum(1 for _e, j in complaint if j.tickets_missed), len(complaint)),
        },
        "opt_out": _recall(pairs, lambda e: e.outcome == "opt_out", lambda c: c.outcome == "opt_out"),
        "transfer": _recall(pairs, lambda e: e.outcome == "transferred",
                            lambda c: c.outcome in ("transferred", "transfer_failed")),
        "callback": _recall(pairs, lambda e: e.callback, lambda c: c.callback and c.outcome != "transfer_failed"),
        "opt_outs_on_dnc_list": {"n": sum(1 for _e, c, _j in pairs if c.outcome == "opt_out" and c.dnc),
                                 "of": sum(1 for _e, c, _j in pairs if c.outcome == "opt_out")},
    }


def concluded(session: Session, call_ids: Iterable[int]) -> dict[int, Concluded]:
    """What the robot recorded for each call (ended or not; a missing call is left out)."""
    from callcenter.storage.models import Call, Callback, CallTag, DoNotCall, Ticket

    ids = list(call_ids)
    if not ids:
        return {}
    calls = session.execute(sa.select(Call.id, Call.outcome, Call.score5, Call.phone, Call.disposition)
                            .where(Call.id.in_(ids))).all()
    tags: dict[int, set[str]] = {}
    for cid, category in session.execute(sa.select(CallTag.call_id, CallTag.category).where(CallTag.call_id.in_(ids))):
        tags.setdefault(cid, set()).add(category)
    tickets: dict[int, dict[str, int]] = {}
    for cid, department in session.execute(sa.select(Ticket.call_id, Ticket.department).where(Ticket.call_id.in_(ids))):
        per = tickets.setdefault(cid, {})
        per[department] = per.get(department, 0) + 1
    callbacks = set(session.scalars(sa.select(Callback.call_id).where(Callback.call_id.in_(ids))))
    phones = {c.phone for c in calls if c.phone}
    dnc = set(session.scalars(sa.select(DoNotCall.phone).where(DoNotCall.phone.in_(phones)))) if phones else set()
    return {c.id: Concluded(outcome=c.outcome.value if c.outcome is not None else None, score5=c.score5,
                            categories=frozenset(tags.get(c.id, ())), tickets=tickets.get(c.id, {}),
                            callback=c.id in callbacks, dnc=c.phone in dnc, disposition=c.disposition)
            for c in calls}
