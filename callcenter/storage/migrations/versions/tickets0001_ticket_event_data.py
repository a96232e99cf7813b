"""tickets: ticket_events.data, the facts of a history entry as codes, rendered in the reader's language

Revision ID: tickets0001
Revises: console0001
Create Date: 2026-12-06 03:30:00

Before this, a ticket's history was English text made when the event happened ("opened by robot
call 20 for after_sales", "resolved: 已重新洗车"), shown as it was to Chinese staff. The facts
move to ``data`` (call id, department, status, assignee, due time); ``note`` keeps only what a
person wrote. Existing rows are converted.
"""

import re

import sqlalchemy as sa
from alembic import op

revision = 'tickets0001'
down_revision = 'console0001'
branch_labels = None
depends_on = None

_ROBOT = re.compile(r"opened by robot call (\d+) for (\w+)")
_STATUSES = ("open", "assigned", "resolved", "verified", "closed")


def upgrade() -> None:
    with op.batch_alter_table("ticket_events") as batch:
        batch.add_column(sa.Column("data", sa.JSON(), nullable=True))
    events = sa.table("ticket_events", sa.column("id", sa.Integer), sa.column("action", sa.String),
                      sa.column("note", sa.Text), sa.column("user_id", sa.Integer), sa.column("data", sa.JSON))
    conn = op.get_bind()
    for row in conn.execute(sa.select(events.c.id, events.c.action, events.c.note, events.c.user_id)).all():
        data, note = _convert(row.action, row.note, row.user_id)
        if data is not None:
            conn.execute(events.update().where(events.c.id == row.id).values(data=data, note=note))


def _convert(action: str, note: str | None, user_id: int | None) -> tuple[dict | None, str | None]:
    """(data, note) of an old row; (None, note) leaves it as it is."""
    note = (note or "").strip()
    if action == "created":
        robot = _ROBOT.fullmatch(note)
        if robot:
            return {"call_id": int(robot.group(1)), "department": robot.group(2)}, None
        return {}, None  # the note repeated the ticket's title
    if action == "status":
        code, _sep, rest = note.partition(":")
        if code.strip() in _STATUSES:
            return {"status": code.strip()}, rest.strip() or None
    if action == "assigned" and note:
        return {"assignee": note}, None
    if action in ("due", "callback") and note:
        return {"due_local": note}, None
    return None, note


def downgrade() -> None:
    with op.batch_alter_table("ticket_events") as batch:
        batch.drop_column("data")
