"""inbound messages

Revision ID: 0009_inbound
Revises: 0008_usage
Create Date: 2026-11-27 21:02:58.216901
"""
from alembic import op
import sqlalchemy as sa


revision = '0009_inbound'
down_revision = '0008_usage'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('inbound_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('postal_id', sa.BigInteger(), nullable=True),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('rcpt_to', sa.String(length=320), nullable=True),
    sa.Column('mail_from', sa.String(length=320), nullable=True),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages')),
    sa.UniqueConstraint('postal_id', name=op.f('uq_inbound_messages_postal_id'))
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_messages_rcpt_to'), ['rcpt_to'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_messages_received_at'), ['received_at'], unique=False)



def downgrade():
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_messages_received_at'))
        batch_op.drop_index(batch_op.f('ix_inbound_messages_rcpt_to'))

    op.drop_table('inbound_messages')
