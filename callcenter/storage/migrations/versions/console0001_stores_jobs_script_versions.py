"""console: stores' calling windows, background jobs (imports, audio), script versions

Revision ID: console0001
Revises: security0001
Create Date: 2026-12-06 03:00:00

- ``stores.calling_windows``: a store's own calling windows (the stores page edits them).
- ``console_jobs``: DMS imports and prompt-audio rendering run from the console, with progress
  and who started them (the import history).
- ``script_versions`` and ``campaigns.script_version_id``: every save of the script editor is a
  version; a campaign keeps the version it was created with.
"""

import sqlalchemy as sa
from alembic import op

revision = 'console0001'
down_revision = 'security0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stores') as batch:
        batch.add_column(sa.Column('calling_windows', sa.String(length=200), nullable=True))

    op.create_table(
        'script_versions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('script_id', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('note', sa.String(length=200), nullable=True),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_script_versions_created_by_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_script_versions')),
        sa.UniqueConstraint('script_id', 'version', name='uq_script_versions_script_version'),
    )
    with op.batch_alter_table('campaigns') as batch:
        batch.add_column(sa.Column('script_version_id', sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f('fk_campaigns_script_version_id_script_versions'), 'script_versions',
                                 ['script_version_id'], ['id'])

    op.create_table(
        'console_jobs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('dry_run', sa.Boolean(), nullable=False),
        sa.Column('store_id', sa.Integer(), nullable=True),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('username', sa.String(length=64), nullable=True),
        sa.Column('filename', sa.String(length=255), nullable=True),
        sa.Column('stored_name', sa.String(length=64), nullable=True),
        sa.Column('target', sa.String(length=200), nullable=True),
        sa.Column('total', sa.Integer(), nullable=True),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_console_jobs_created_by_users')),
        sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_console_jobs_store_id_stores')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_jobs')),
    )
    with op.batch_alter_table('console_jobs') as batch:
        batch.create_index('ix_console_jobs_kind_created', ['kind', 'created_at'], unique=False)
        batch.create_index(batch.f('ix_console_jobs_store_id'), ['store_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('console_jobs') as batch:
        batch.drop_index(batch.f('ix_console_jobs_store_id'))
        batch.drop_index('ix_console_jobs_kind_created')
    op.drop_table('console_jobs')
    with op.batch_alter_table('campaigns') as batch:
        batch.drop_constraint(op.f('fk_campaigns_script_version_id_script_versions'), type_='foreignkey')
        batch.drop_column('script_version_id')
    op.drop_table('script_versions')
    with op.batch_alter_table('stores') as batch:
        batch.drop_column('calling_windows')
