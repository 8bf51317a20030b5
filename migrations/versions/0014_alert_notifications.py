"""alert notifications

Revision ID: 0014_alert_notifications
Revises: 0013_alerting
Create Date: 2026-11-30 11:48:06.070742
"""
from alembic import op
import sqlalchemy as sa


revision = '0014_alert_notifications'
down_revision = '0013_alerting'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('alert_notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('dedup_key', sa.String(length=255), nullable=False),
    sa.Column('route', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('repeats_left', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_notifications'))
    )
    with op.batch_alter_table('alert_notifications', schema=None) as batch_op:
        batch_op.create_index('ix_alert_notifications_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_alert_notifications_sent', ['route', 'sent_at'], unique=False)



def downgrade():
    with op.batch_alter_table('alert_notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_notifications_sent')
        batch_op.drop_index('ix_alert_notifications_due')

    op.drop_table('alert_notifications')
