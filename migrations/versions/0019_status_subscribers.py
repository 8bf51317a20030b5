"""check days (the status page's uptime history, backfilled from check_results) and status subscribers

Revision ID: 0019_status_subscribers
Revises: 0018_maintenances
Create Date: 2026-11-30 13:11:42.991135
"""
from alembic import op
import sqlalchemy as sa


revision = '0019_status_subscribers'
down_revision = '0018_maintenances'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('check_days',
    sa.Column('check_name', sa.String(length=64), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('unhealthy', sa.Integer(), nullable=False),
    sa.Column('degraded', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('check_name', 'day', name=op.f('pk_check_days'))
    )
    # What the raw results still hold (14 days by default) becomes the first days of history.
    day = "date(checked_at)" if op.get_bind().dialect.name == "sqlite" else "(checked_at AT TIME ZONE 'UTC')::date"
    op.execute(f"""INSERT INTO check_days (check_name, day, total, unhealthy, degraded)
        SELECT check_name, {day}, count(*), sum(CASE WHEN status = 'unhealthy' THEN 1 ELSE 0 END),
               sum(CASE WHEN status = 'degraded' THEN 1 ELSE 0 END)
        FROM check_results WHERE status <> 'unconfigured' GROUP BY check_name, {day}""")
    op.create_table('status_subscribers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('address', sa.String(length=2048), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('secret', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmation_sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unsubscribed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_subscribers')),
    sa.UniqueConstraint('kind', 'address', name='uq_status_subscribers_kind_address'),
    sa.UniqueConstraint('token', name=op.f('uq_status_subscribers_token'))
    )
    op.create_table('status_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('update_id', sa.Integer(), nullable=True),
    sa.Column('maintenance_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fanned_out_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], name=op.f('fk_status_events_incident_id_incidents'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['maintenance_id'], ['maintenances.id'], name=op.f('fk_status_events_maintenance_id_maintenances'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['update_id'], ['incident_updates.id'], name=op.f('fk_status_events_update_id_incident_updates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_events')),
    sa.UniqueConstraint('key', name=op.f('uq_status_events_key'))
    )
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_status_events_fanned_out_at'), ['fanned_out_at'], unique=False)

    op.create_table('status_notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=8), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['status_events.id'], name=op.f('fk_status_notifications_event_id_status_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['status_subscribers.id'], name=op.f('fk_status_notifications_subscriber_id_status_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_notifications')),
    sa.UniqueConstraint('subscriber_id', 'event_id', name='uq_status_notifications_once')
    )
    with op.batch_alter_table('status_notifications', schema=None) as batch_op:
        batch_op.create_index('ix_status_notifications_due', ['state', 'next_attempt_at'], unique=False)



def downgrade():
    with op.batch_alter_table('status_notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_status_notifications_due')

    op.drop_table('status_notifications')
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_events_fanned_out_at'))

    op.drop_table('status_events')
    op.drop_table('status_subscribers')
    op.drop_table('check_days')
