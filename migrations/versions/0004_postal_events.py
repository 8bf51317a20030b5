"""gateway: postal events

Revision ID: 0004_postal_events
Revises: 0003_messages
Create Date: 2026-11-27 20:54:06.857793
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_postal_events'
down_revision = '0003_messages'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('postal_events',
    sa.Column('uuid', sa.String(length=64), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('postal_message_id', sa.BigInteger(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('uuid', name=op.f('pk_postal_events'))
    )
    with op.batch_alter_table('postal_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_postal_events_postal_message_id'), ['postal_message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_postal_events_received_at'), ['received_at'], unique=False)



def downgrade():
    with op.batch_alter_table('postal_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_postal_events_received_at'))
        batch_op.drop_index(batch_op.f('ix_postal_events_postal_message_id'))

    op.drop_table('postal_events')
