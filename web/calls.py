"""Calls for supervisors: search (filters and transcript full text), the call page with the
recording player and the synchronised transcript, tag correction (kept for retraining) and QA
scoring. Recordings leave the server only through :func:`recording`, never by path.

Runs on the request's worker thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import selectinload

from callcenter.domain import CallDisposition, FeedbackCategory, Role, Sentiment
from callcenter.storage.models import Call, CallOutcome, CallTag, Campaign, Store, Utterance
from callcenter.storage.search import QueryError, TranscriptIndex
from callcenter.storage.web_models import QaForm, QaReview, TagCorrection
from web import audit
from web.labels import choices
from web.security import current_user, ensure_in_scope, require, store_clause
from web.services import db, services, settings
from web.views import Page, page_number

logger = logging.getLogger(__name__)
bp = Blueprint("calls", __name__, url_prefix="/calls")

# A search that matches very many calls shows the newest pages without counting them all:
# counting 100,000 matches costs more than the page itself (see docs/benchmarks.md).
COUNT_CAP = 5000
CATCH_UP_EVERY = 5.0  # seconds
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg"}

DEFAULT_QA_FORM = {
    "name": "回访通话质检 (标准)",
    "items": [
        {"key": "greeting", "label": "开场白与身份确认", "max": 10},
        {"key": "script", "label": "话术规范、问题完整", "max": 20},
        {"key": "listening", "label": "倾听与理解客户", "max": 20},
        {"key": "recording", "label": "客户反馈记录准确", "max": 20},
        {"key": "courtesy", "label": "礼貌与情绪控制", "max": 15},
        {"key": "closing", "label": "结束语与后续安排", "max": 15},
    ],
}


def call_or_404(call_id: int) -> Call:
    call = db().get(Call, call_id)
    if call is None:
        abort(404)
    ensure_in_scope(call.store_id)
    return call


def transcript_index() -> TranscriptIndex:
    svc = services()
    index = getattr(svc, "_transcript_index", None)
    if index is None:
        index = svc._transcript_index = TranscriptIndex(svc.database.engine)
    return index


def catch_up(index: TranscriptIndex) -> None:
    """Index calls that ended since the last search, at most every few seconds per process: a
    search right after a call ends may miss it for that long, every other search pays nothing."""
    svc = services()
    now = time.monotonic()
    if now - getattr(svc, "_search_checked_at", -CATCH_UP_EVERY) >= CATCH_UP_EVERY:
        svc._search_checked_at = now
        index.catch_up()


def local_day_bounds(day: str, *, end: bool = False) -> dt.datetime | None:
    """A YYYY-MM-DD in the group's time zone -> the naive UTC instant its day starts (or ends)."""
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        return None
    if end:
        date += dt.timedelta(days=1)
    local = dt.datetime.combine(date, dt.time(), tzinfo=ZoneInfo(settings().timezone))
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def filtered_calls(args) -> tuple[sa.Select, list[str]]:
    """The call search as a query (newest first) plus the problems found in the filters."""
    problems: list[str] = []
    query = sa.select(Call).where(store_clause(Call.store_id))
    if (start := local_day_bounds(args.get("from", ""))) is not None:
        query = query.where(Call.started_at >= start)
    if (end := local_day_bounds(args.get("to", ""), end=True)) is not None:
        query = query.where(Call.started_at < end)
    if store := args.get("store", type=int):
        query = query.where(Call.store_id == store)
    if campaign := args.get("campaign", type=int):
        query = query.where(Call.campaign_id == campaign)
    if args.get("disposition") in {d.value for d in CallDisposition}:
        query = query.where(Call.disposition == args["disposition"])
    if args.get("outcome") in {o.value for o in CallOutcome}:
        query = query.where(Call.outcome == CallOutcome(args["outcome"]))
    if args.get("sentiment") in {s.value for s in Sentiment}:
        query = query.where(Call.sentiment == args["sentiment"])
    if args.get("category") in {c.value for c in FeedbackCategory}:
        tagged = sa.select(CallTag.call_id).where(CallTag.category == args["category"])
        if db().get_bind().dialect.name == "postgresql":
            # Gather the tagged calls first: as IN (...) the planner walked all calls newest first
            # probing each (950 ms under load at 200,000 calls, against 8 ms this way).
            query = query.where(Call.id == sa.func.any(sa.func.array(tagged.scalar_subquery())))
        else:
            query = query.where(Call.id.in_(tagged))
    score = args.get("score", "")
    if score == "none":
        query = query.where(Call.score5.is_(None))
    elif score in {"1", "2", "3", "4", "5"}:
        query = query.where(Call.score5 == int(score))
    elif score == "low":
        query = query.where(Call.score5 <= 3)
    q = args.get("q", "").strip()
    if q:
        try:
            index = transcript_index()
            catch_up(index)
            query = query.where(index.matching(Call.id, q[:100]))
        except QueryError as exc:
            problems.append(_("Search for at least two Chinese characters together: one character is too common "
                              "to find anything.") if exc.kind == "single_character"
                            else _("Type letters, digits or Chinese characters to search for."))
    return query, problems


@bp.get("/")
@require(Role.SUPERVISOR, managers=True)
def index():
    page, per_page = page_number()
    query, problems = filtered_calls(request.args)
    for problem in problems:
        flash(problem, "error")
    # Newest first. With words to find, by call id (ids grow as calls are placed): the database then
    # walks calls from the newest and stops at a page's worth of matches, where sorting the
    # matches of a word said in a quarter of all calls by time cost 150-250 ms.
    order = (Call.id.desc(),) if request.args.get("q", "").strip() else (Call.started_at.desc(), Call.id.desc())
    total = db().scalar(sa.select(sa.func.count()).select_from(query.with_only_columns(Call.id).limit(COUNT_CAP)
                                                                 .subquery()))
    rows = list(db().scalars(
        query.options(selectinload(Call.customer), selectinload(Call.tags), selectinload(Call.campaign))
        .order_by(*order).limit(per_page).offset((page - 1) * per_page)))
    q = request.args.get("q", "").strip()
    snippets = matching_lines([c.id for c in rows], q) if q and not problems else {}
    stores = list(db().scalars(sa.select(Store).where(store_clause(Store.id)).order_by(Store.code)))
    campaigns = list(db().execute(
        sa.select(Campaign.id, Campaign.name).where(store_clause(Campaign.store_id)).order_by(Campaign.id.desc())
        .limit(200)))
    return render_template(
        "calls/index.html", page=Page(rows, page, per_page, total), capped=total >= COUNT_CAP, stores=stores,
        campaigns=campaigns, dispositions=choices(CallDisposition), outcomes=choices(CallOutcome),
        categories=choices(FeedbackCategory), sentiments=choices(Sentiment), snippets=snippets, q=q,
    )


def matching_lines(call_ids: list[int], q: str) -> dict[int, str]:
    """The first customer/agent line of each call that contains the search words (for the list).

    The page's lines are read by call and filtered here: asked for LIKE '%...%' too, PostgreSQL
    preferred scanning a million utterances to the 25 calls' index entries (120 ms)."""
    words = [w for w in q.split() if w]
    if not call_ids or not words:
        return {}
    out: dict[int, str] = {}
    for call_id, text in db().execute(
            sa.select(Utterance.call_id, Utterance.text)
            .where(Utterance.call_id.in_(call_ids), Utterance.speaker != "robot")
            .order_by(Utterance.call_id, Utterance.seq)):
        if call_id not in out and any(w in text for w in words):
            out[call_id] = text
    return out


@bp.get("/<int:call_id>")
@require(Role.SUPERVISOR, managers=True)
def show(call_id: int):
    call = call_or_404(call_id)
    utterances = list(db().scalars(sa.select(Utterance).where(Utterance.call_id == call.id).order_by(Utterance.seq)))
    tags = list(call.tags)
    form = qa_form()
    reviews = list(db().scalars(sa.select(QaReview).where(QaReview.call_id == call.id)
                                .options(selectinload(QaReview.reviewer), selectinload(QaReview.form))
                                .order_by(QaReview.created_at)))
    mine = next((r for r in reviews if r.reviewer_id == current_user().id and r.form_id == form.id), None)
    corrections = list(db().scalars(sa.select(TagCorrection).where(TagCorrection.call_id == call.id)
                                    .order_by(TagCorrection.created_at)))
    return render_template(
        "calls/show.html", call=call, customer=call.customer, turns=highlight(utterances, tags), tags=tags,
        categories=choices(FeedbackCategory), form=form, reviews=reviews, mine=mine, corrections=corrections,
        has_recording=recording_path(call) is not None,
        transcript=[{"seq": u.seq, "start": u.start, "end": u.end} for u in utterances],
    )


def highlight(utterances: list[Utterance], tags: list[CallTag]) -> list[dict]:
    """Each line cut into segments ``(text, category or None)`` so the template can mark the
    evidence of each tag; the text stays text (escaped by the template)."""
    marks: dict[int, list[tuple[int, int, str]]] = {}
    for tag in tags:
        for ev in tag.evidence or []:
            try:
                seq, start, end = int(ev["utterance"]), int(ev["start"]), int(ev["end"])
            except (KeyError, TypeError, ValueError):
                continue
            marks.setdefault(seq, []).append((start, end, tag.category))
    turns = []
    for u in utterances:
        segments: list[tuple[str, str | None]] = []
        pos = 0
        for start, end, category in sorted(marks.get(u.seq, [])):
            start, end = max(start, pos), min(end, len(u.text))
            if start >= end:
                continue
            if start > pos:
                segments.append((u.text[pos:start], None))
            segments.append((u.text[start:end], category))
            pos = end
        if pos < len(u.text):
            segments.append((u.text[pos:], None))
        turns.append({"u": u, "segments": segments})
    return turns


def recording_path(call: Call) -> Path | None:
    """The call's recording on disk, only when it lies inside the data directory."""
    if not call.recording:
        return None
    root = Path(settings().data_dir).resolve()
    path = (root / call.recording).resolve()
    if not path.is_relative_to(root) or path.suffix.lower() not in AUDIO_TYPES or not path.is_file():
        if call.recording:
            logger.warning("call %s: recording %r is missing or outside the data directory", call.id, call.recording)
        return None
    return path


@bp.get("/<int:call_id>/recording")
@require(Role.SUPERVISOR, managers=True)
def recording(call_id: int):
    return send_recording(call_or_404(call_id))


def send_recording(call: Call):
    """The call's recording as a (range-capable) response, one audit entry per playback; 404
    when it has none. The caller has checked that the user may hear it."""
    path = recording_path(call)
    if path is None:
        abort(404)
    # A player fetches a file in several range requests; one playback is one audit entry.
    if request.range is None or request.range.ranges[0][0] == 0:
        audit.record("recording.play", "call", call.id, store_id=call.store_id, commit=True)
    return send_file(path, mimetype=AUDIO_TYPES[path.suffix.lower()], conditional=True,
                     download_name=f"call-{call.id}{path.suffix.lower()}", max_age=0)


@bp.post("/<int:call_id>/tags")
@require(Role.SUPERVISOR)
def correct_tag(call_id: int):
    """Add a category the model missed or remove one it got wrong; both are kept for retraining."""
    call = call_or_404(call_id)
    try:
        category = FeedbackCategory(request.form.get("category", ""))
    except ValueError:
        abort(400, description=_("Unknown category."))
    action = request.form.get("action")
    evidence = (request.form.get("evidence") or "").strip()[:500] or None
    existing = db().scalar(sa.select(CallTag).where(CallTag.call_id == call.id, CallTag.category == category.value))
    if action == "add":
        if existing is not None:
            flash(_("The call already has this tag."), "info")
            return redirect(url_for("calls.show", call_id=call.id))
        spans = []
        if evidence:
            for u in db().scalars(sa.select(Utterance).where(Utterance.call_id == call.id).order_by(Utterance.seq)):
                at = u.text.find(evidence)
                if at >= 0:
                    spans.append({"utterance": u.seq, "text": evidence, "start": at, "end": at + len(evidence)})
                    break
        db().add(CallTag(call_id=call.id, category=category.value, department=category.department.value,
                         confidence=1.0, evidence=spans or None, source="supervisor"))
        model_confidence = None
    elif action == "remove":
        if existing is None:
            abort(400, description=_("The call has no such tag."))
        model_confidence = existing.confidence if existing.source == "model" else None
        db().delete(existing)
    else:
        abort(400, description=_("Add or remove a tag."))
    db().add(TagCorrection(call_id=call.id, category=category, action=action, evidence=evidence,
                           model_confidence=model_confidence, corrected_by=current_user().id))
    audit.record("tag.correct", "call", call.id, store_id=call.store_id, category=category.value, action=action)
    db().commit()
    flash(_("Tag corrected; the correction will be used in the next training."), "success")
    return redirect(url_for("calls.show", call_id=call.id))


def qa_form() -> QaForm:
    """The active QA form (the standard one is created on first use)."""
    form = db().scalar(sa.select(QaForm).where(QaForm.active.is_(True)).order_by(QaForm.id.desc()))
    if form is None:
        form = QaForm(name=DEFAULT_QA_FORM["name"], items=DEFAULT_QA_FORM["items"])
        db().add(form)
        db().commit()
    return form


@bp.post("/<int:call_id>/qa")
@require(Role.SUPERVISOR)
def review(call_id: int):
    call = call_or_404(call_id)
    form = db().get(QaForm, request.form.get("form_id", type=int) or 0)
    if form is None:
        abort(400, description=_("Unknown QA form."))
    scores: dict[str, int] = {}
    for item in form.items:
        raw = request.form.get(f"score_{item['key']}", "")
        try:
            value = int(raw)
        except ValueError:
            abort(400, description=f"score for {item['key']} is missing or not a whole number")
        if not 0 <= value <= int(item["max"]):
            abort(400, description=f"score for {item['key']} must be between 0 and {item['max']}")
        scores[item["key"]] = value
    row = db().scalar(sa.select(QaReview).where(QaReview.call_id == call.id, QaReview.form_id == form.id,
                                                QaReview.reviewer_id == current_user().id))
    if row is None:
        row = QaReview(call_id=call.id, form_id=form.id, reviewer_id=current_user().id)
        db().add(row)
    row.scores, row.total, row.max_total = scores, sum(scores.values()), form.max_total
    row.comment = (request.form.get("comment") or "").strip()[:2000] or None
    audit.record("qa.review", "call", call.id, store_id=call.store_id, total=row.total)
    db().commit()
    flash(_("QA score saved: %(total)d / %(max)d.", total=row.total, max=row.max_total), "success")
    return redirect(url_for("calls.show", call_id=call.id) + "#qa")

