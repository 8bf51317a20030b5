"""alert rules' error state (reserved for the rule-isolation work)

Revision ID: 0020_alert_rule_errors
Revises: 0019_status_subscribers
Create Date: 2026-12-01 16:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0020_alert_rule_errors'
down_revision = '0019_status_subscribers'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
