"""per-key rate limits and quota

Revision ID: 0006_key_limits
Revises: 0005_events_webhooks
Create Date: 2026-11-27 20:57:08.180856
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_key_limits'
down_revision = '0005_events_webhooks'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rate_limit_burst', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rate_limit_hour', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('rate_limit_day', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('monthly_quota', sa.Integer(), nullable=True))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_key_created', ['api_key_id', 'created_at'], unique=False)



def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_key_created')

    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('monthly_quota')
        batch_op.drop_column('rate_limit_day')
        batch_op.drop_column('rate_limit_hour')
        batch_op.drop_column('rate_limit_burst')

