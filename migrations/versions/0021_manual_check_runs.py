"""check_results.source: `scheduled` (the worker's runs, which feed uptime) or `manual` (a diagnostic
`controlplane checks run`, kept for the record and ignored by /health, the bars and the badges)

Revision ID: 0021_manual_check_runs
Revises: 0020_alert_rule_errors
Create Date: 2026-12-01 16:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0021_manual_check_runs'
down_revision = '0020_alert_rule_errors'
branch_labels = None
depends_on = None


def upgrade():
    # Every result stored before this revision came from the worker's schedule or, rarely, a
    # diagnostic run that cannot be told apart now: counting them as scheduled keeps the history.
    with op.batch_alter_table('check_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=False, server_default='scheduled'))


def downgrade():
    with op.batch_alter_table('check_results', schema=None) as batch_op:
        batch_op.drop_column('source')
