"""backup catalog rebuilt from storage (reserved for self-describing storage)

Revision ID: 0022_backup_storage
Revises: 0021_manual_check_runs
Create Date: 2026-12-01 16:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0022_backup_storage'
down_revision = '0021_manual_check_runs'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
