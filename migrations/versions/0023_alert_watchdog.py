"""the alerting watchdog: one shared row with the last completed alert evaluation, the heartbeat
ping's outcome, the web watchdog's lease and its AlertingStalled page state

Revision ID: 0023_alert_watchdog
Revises: 0022_backup_storage
Create Date: 2026-12-01 16:20:00
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0023_alert_watchdog'
down_revision = '0022_backup_storage'
branch_labels = None
depends_on = None


def upgrade():
    table = op.create_table('alert_watchdog',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('evaluated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('evaluated_by', sa.String(length=128), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_error', sa.Text(), nullable=True),
    sa.Column('channel_problems', sa.Text(), nullable=True),
    sa.Column('watched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('watched_by', sa.String(length=128), nullable=True),
    sa.Column('page_state', sa.String(length=16), nullable=False),
    sa.Column('paged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('page_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_watchdog'))
    )
    # The one row; "never evaluated" is measured from now, so a fresh install has its grace.
    op.bulk_insert(table, [{'id': 1, 'created_at': datetime.now(timezone.utc), 'page_state': 'ok'}])


def downgrade():
    op.drop_table('alert_watchdog')
