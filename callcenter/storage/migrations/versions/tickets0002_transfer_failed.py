"""calls and callbacks of failed hand-overs recorded before the transfer_failed outcome

Revision ID: tickets0002
Revises: dms0001
Create Date: 2026-12-06 03:45:00

Before this, a call whose transfer to an agent failed was recorded as ``transferred`` (although
the robot had told the customer that nobody was free), and the agents' callback task read
"transfer failed: no agent extension configured (CALLCENTER_TRANSFER_TARGET)". Those calls become
``transfer_failed`` with the technical reason in their error, and the pending tasks are worded for
the agents, as campaigns.outcomes now records them.
"""

import sqlalchemy as sa
from alembic import op

revision = 'tickets0002'
down_revision = 'dms0001'
branch_labels = None
depends_on = None

TASK = "客户要求转人工,转接失败,请尽快回电"  # campaigns.outcomes.TRANSFER_FAILED_TASK


def upgrade() -> None:
    calls = sa.table("calls", sa.column("id", sa.Integer), sa.column("outcome", sa.String),
                     sa.column("error", sa.Text))
    callbacks = sa.table("callbacks", sa.column("call_id", sa.Integer), sa.column("reason", sa.String),
                         sa.column("robot", sa.Boolean))
    conn = op.get_bind()
    failed = conn.execute(sa.select(callbacks.c.call_id, callbacks.c.reason).where(
        callbacks.c.robot.is_(False), callbacks.c.reason.like("transfer failed%"),
        callbacks.c.call_id.is_not(None))).all()
    for call_id, reason in failed:
        conn.execute(calls.update().where(calls.c.id == call_id, calls.c.outcome == "transferred")
                     .values(outcome="transfer_failed", error=sa.func.coalesce(calls.c.error, reason)))
    conn.execute(callbacks.update().where(callbacks.c.robot.is_(False), callbacks.c.reason.like("transfer failed%"))
                 .values(reason=TASK))


def downgrade() -> None:
    pass  # the old wording and outcome were wrong; nothing to restore
