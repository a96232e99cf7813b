"""campaigns: indexes the audience rules and the dialer need at a million customers

Revision ID: campaigns0001
Revises: web0001
Create Date: 2026-11-22 14:30:00

- vehicles.purchase_date: the new-car touch plan and maintenance reminders select cars by purchase
  date; without it every rule scanned all vehicles.
- call_tasks.vehicle_id: "not yet contacted for this vehicle" (new car, maintenance, insurance,
  warranty) probes earlier tasks per candidate car; without it SQLite scanned call_tasks per row
  (2.8 s of a 3.2 s maintenance-due selection over 100,000 customers).
- call_tasks (campaign_id, state): campaign status counts and the scheduler's completion check.
"""

from alembic import op


revision = 'campaigns0001'
down_revision = 'web0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('vehicles', schema=None) as batch_op:
        batch_op.create_index('ix_vehicles_purchase_date', ['purchase_date'], unique=False)
    with op.batch_alter_table('call_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_call_tasks_vehicle_id', ['vehicle_id'], unique=False)
        batch_op.create_index('ix_call_tasks_campaign_state', ['campaign_id', 'state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('call_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_call_tasks_campaign_state')
        batch_op.drop_index('ix_call_tasks_vehicle_id')
    with op.batch_alter_table('vehicles', schema=None) as batch_op:
        batch_op.drop_index('ix_vehicles_purchase_date')
