"""the alerting watchdog (reserved)

Revision ID: 0023_alert_watchdog
Revises: 0022_backup_storage
Create Date: 2026-12-01 16:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0023_alert_watchdog'
down_revision = '0022_backup_storage'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
