"""check results from diagnostic runs (reserved for honest uptime)

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
    pass


def downgrade():
    pass
