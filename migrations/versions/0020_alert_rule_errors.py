"""alert rules' error state, and when the database was first migrated

A rule whose indicator raises is put in an explicit error state (alert_states.error, with the
reason, and error_since), instead of silencing the whole evaluation pass. `installation` holds
one row: when this database was first migrated, which the backup-age and worker rules measure a
new install from (so a fresh install pages nobody). On a database that existed before this
migration, the oldest time its data records stands in for it (the first deployment, backup, job
run or heartbeat), else now.

Revision ID: 0020_alert_rule_errors
Revises: 0019_status_subscribers
Create Date: 2026-12-01 16:20:00
"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0020_alert_rule_errors'
down_revision = '0019_status_subscribers'
branch_labels = None
depends_on = None

EARLIEST = (("deployments", "started_at"), ("backups", "started_at"), ("job_runs", "started_at"),
            ("worker_heartbeats", "started_at"))


def upgrade():
    with op.batch_alter_table('alert_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('error_since', sa.DateTime(timezone=True), nullable=True))

    installation = op.create_table('installation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('first_migrated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_installation'))
    )
    op.bulk_insert(installation, [{'id': 1, 'first_migrated_at': _first_migrated_at()}])


def _first_migrated_at() -> datetime:
    bind = op.get_bind()
    found = []
    for table, column in EARLIEST:
        value = bind.execute(sa.select(sa.func.min(sa.column(column))).select_from(sa.table(table))).scalar()
        if isinstance(value, str):  # SQLite hands back text for an aggregate over a DateTime column
            value = datetime.fromisoformat(value)
        if value is not None:
            found.append(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return min(found, default=datetime.now(timezone.utc))


def downgrade():
    op.drop_table('installation')
    with op.batch_alter_table('alert_states', schema=None) as batch_op:
        batch_op.drop_column('error_since')
        batch_op.drop_column('error')
