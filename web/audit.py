"""The audit log of sensitive actions: exports, recording playback, do-not-call changes, role and
user changes, API tokens, script uploads, phone reveals.

``record`` adds the entry to the request's session; it is written with the change it
describes (same commit), or on its own with ``commit=True`` for read-only actions such as an
export. Runs on the request's worker thread.
"""

from __future__ import annotations

import logging

from flask import has_request_context

from callcenter.domain.phone import mask_phones_in_text
from callcenter.storage.web_models import AuditLog
from web.security import client_ip, current_user
from web.services import db

logger = logging.getLogger(__name__)

# The actions the log knows, for the filter on the audit page.
ACTIONS = (
    "login.locked", "user.create", "user.update", "user.role_change", "user.password_change",
    "token.create", "token.revoke", "export", "recording.play", "phone.reveal", "phone.search",
    "dnc.add", "dnc.remove", "script.upload", "tag.correct", "qa.review", "campaign.create",
    "campaign.state", "plan.create", "plan.close", "ticket.update", "api.write",
    "store.create", "store.update", "import.run", "script.edit",
)


def record(action: str, target_type: str | None = None, target_id: object = None, /, *,
           store_id: int | None = None, commit: bool = False, **details) -> None:
    user = current_user()
    # Details never carry a whole phone number (the log is read by more people than need it).
    clean = {k: mask_phones_in_text(v) if isinstance(v, str) else v for k, v in details.items()}
    entry = AuditLog(
        user_id=user.id if user else None,
        username=user.username if user else None,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id)[:64],
        store_id=store_id,
        ip=client_ip() if has_request_context() else None,
        details=clean or None,
    )
    session = db()
    session.add(entry)
    if commit:
        session.commit()
    logger.info("audit %s %s:%s by %s", action, target_type, target_id, entry.username)
