"""Supervisors' tag corrections as training examples for the feedback classifier.

A corrected call becomes one example: the customer's words in the call and the categories the
call carries after the corrections (the model's tags that were kept plus those a supervisor
added). ``callcenter console corrections`` writes them as JSONL for the classifier's next
training run. Runs on the caller's thread.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from callcenter.storage.models import Call, CallTag, Utterance
from callcenter.storage.web_models import TagCorrection


def corrected_examples(session: Session, *, since: dt.datetime | None = None) -> list[dict]:
    query = sa.select(TagCorrection.call_id).distinct()
    if since is not None:
        query = query.where(TagCorrection.created_at >= since)
    call_ids = sorted(session.scalars(query))
    out = []
    for i in range(0, len(call_ids), 500):
        chunk = call_ids[i:i + 500]
        texts: dict[int, list[str]] = {cid: [] for cid in chunk}
        for cid, text in session.execute(
                sa.select(Utterance.call_id, Utterance.text)
                .where(Utterance.call_id.in_(chunk), Utterance.speaker == "customer")
                .order_by(Utterance.call_id, Utterance.seq)):
            texts[cid].append(text)
        tags: dict[int, list[str]] = {cid: [] for cid in chunk}
        for cid, category in session.execute(
                sa.select(CallTag.call_id, CallTag.category).where(CallTag.call_id.in_(chunk))
                .order_by(CallTag.call_id, CallTag.category)):
            tags[cid].append(category)
        sentiments = dict(session.execute(sa.select(Call.id, Call.sentiment).where(Call.id.in_(chunk))).all())
        for cid in chunk:
            text = "。".join(t.strip("。 ") for t in texts[cid] if t.strip())
            if not text:
                continue
            out.append({"text": text, "categories": tags[cid], "sentiment": sentiments.get(cid),
                        "call_id": cid, "source": "correction"})
    return out
