"""usage

Revision ID: 0008_usage
Revises: 0007_users
Create Date: 2026-11-27 21:01:26.641614
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_usage'
down_revision = '0007_users'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('usage_daily',
    sa.Column('api_key_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('sent', sa.Integer(), nullable=False),
    sa.Column('delivered', sa.Integer(), nullable=False),
    sa.Column('bounced', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_usage_daily_api_key_id_api_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('api_key_id', 'day', name=op.f('pk_usage_daily'))
    )


def downgrade():
    op.drop_table('usage_daily')
