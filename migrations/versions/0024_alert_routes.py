"""alert routes and attempts: every request to a channel is counted against its route's
per-minute limit (PagerDuty counts throttled and failed requests too), and a 429 pauses the
whole route

Revision ID: 0024_alert_routes
Revises: 0023_alert_watchdog
Create Date: 2026-12-01 17:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0024_alert_routes'
down_revision = '0023_alert_watchdog'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('alert_routes',
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('route', sa.String(length=64), nullable=False),
    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pause_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('channel', 'route', name=op.f('pk_alert_routes'))
    )
    op.create_table('alert_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('route', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_attempts'))
    )
    with op.batch_alter_table('alert_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_alert_attempts_route_at', ['channel', 'route', 'at'], unique=False)


def downgrade():
    with op.batch_alter_table('alert_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_attempts_route_at')
    op.drop_table('alert_attempts')
    op.drop_table('alert_routes')
