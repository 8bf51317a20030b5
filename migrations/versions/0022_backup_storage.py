"""backups.full_copy: true for a backup that restores the whole database on its own (a full, a
manual backup, a pre-migration backup), false for WAL segments and WAL bundles. What BackupMissing
counts as "a full", whatever the reason the backup was taken (`kind`).

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
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('full_copy', sa.Boolean(), server_default=sa.false(), nullable=False))
    # Every kind but WAL and its bundles has always been a complete copy (pg_dump, SQLite's
    # backup API, or a base backup).
    op.execute("UPDATE backups SET full_copy = true WHERE kind IN ('full', 'manual', 'pre-migration')")


def downgrade():
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_column('full_copy')
