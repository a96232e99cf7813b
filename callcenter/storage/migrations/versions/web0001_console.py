"""console (web/): audit log, API tokens, login attempts, improvement plans, QA forms and reviews, tag corrections

Revision ID: web0001
Revises: 0002
Create Date: 2026-11-22 13:27:09.145381
"""

from alembic import op
import sqlalchemy as sa


revision = 'web0001'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('login_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts'))
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempts_ip_at', ['ip', 'at'], unique=False)
        batch_op.create_index('ix_login_attempts_username_at', ['username', 'at'], unique=False)

    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('can_write', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_api_tokens_created_by_id_users')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=48), nullable=False),
    sa.Column('target_type', sa.String(length=32), nullable=True),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('details', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_audit_log_store_id_stores')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_audit_log_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_action_at', ['action', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('improvement_plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('department', sa.Enum('after_sales', 'sales', 'insurance', 'crm', name='department', native_enum=False, length=16), nullable=False),
    sa.Column('category', sa.Enum('service_process', 'service_attitude', 'wait_time', 'repair_quality', 'car_wash', 'parts_wait', 'price', 'facility', 'sales_process', 'insurance', 'praise', name='feedbackcategory', native_enum=False, length=24), nullable=False),
    sa.Column('source_month', sa.String(length=7), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('actions', sa.Text(), nullable=False),
    sa.Column('cycle_months', sa.Integer(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('status', sa.Enum('active', 'closed', 'cancelled', name='planstatus', native_enum=False, length=16), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_improvement_plans_created_by_id_users')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_improvement_plans_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_improvement_plans'))
    )
    with op.batch_alter_table('improvement_plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_improvement_plans_end_date'), ['end_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_improvement_plans_store_id'), ['store_id'], unique=False)

    op.create_table('qa_forms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_qa_forms_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_forms')),
    sa.UniqueConstraint('name', name=op.f('uq_qa_forms_name'))
    )
    op.create_table('qa_reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('form_id', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=False),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('max_total', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_qa_reviews_call_id_calls'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['form_id'], ['qa_forms.id'], name=op.f('fk_qa_reviews_form_id_qa_forms')),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_qa_reviews_reviewer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qa_reviews')),
    sa.UniqueConstraint('call_id', 'form_id', 'reviewer_id', name='uq_qa_reviews_call_form_reviewer')
    )
    with op.batch_alter_table('qa_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_qa_reviews_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_qa_reviews_reviewer_id'), ['reviewer_id'], unique=False)

    op.create_table('tag_corrections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('category', sa.Enum('service_process', 'service_attitude', 'wait_time', 'repair_quality', 'car_wash', 'parts_wait', 'price', 'facility', 'sales_process', 'insurance', 'praise', name='feedbackcategory', native_enum=False, length=24), nullable=False),
    sa.Column('action', sa.String(length=8), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=True),
    sa.Column('model_confidence', sa.Double(), nullable=True),
    sa.Column('corrected_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_tag_corrections_call_id_calls'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['corrected_by'], ['users.id'], name=op.f('fk_tag_corrections_corrected_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tag_corrections'))
    )
    with op.batch_alter_table('tag_corrections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tag_corrections_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tag_corrections_created_at'), ['created_at'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('tag_corrections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tag_corrections_created_at'))
        batch_op.drop_index(batch_op.f('ix_tag_corrections_call_id'))

    op.drop_table('tag_corrections')
    with op.batch_alter_table('qa_reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_qa_reviews_reviewer_id'))
        batch_op.drop_index(batch_op.f('ix_qa_reviews_call_id'))

    op.drop_table('qa_reviews')
    op.drop_table('qa_forms')
    with op.batch_alter_table('improvement_plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_improvement_plans_store_id'))
        batch_op.drop_index(batch_op.f('ix_improvement_plans_end_date'))

    op.drop_table('improvement_plans')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))
        batch_op.drop_index('ix_audit_log_action_at')

    op.drop_table('audit_log')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))

    op.drop_table('api_tokens')
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempts_username_at')
        batch_op.drop_index('ix_login_attempts_ip_at')

    op.drop_table('login_attempts')

