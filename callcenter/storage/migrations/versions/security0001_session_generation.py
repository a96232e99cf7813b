"""security: users.session_generation, so that logging out ends the session on the server

Revision ID: security0001
Revises: campaigns0002
Create Date: 2026-12-06 03:00:00

The console's session is a signed cookie: before this, a cookie kept after logout stayed valid
for its 12 hours. Each session now carries its user's generation; logout raises it, and a
session of an older generation is refused on its next request.
"""

import sqlalchemy as sa
from alembic import op

revision = 'security0001'
down_revision = 'campaigns0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_generation")
