"""partial index for the delivery outbox

Revision ID: 0011_outbox_index
Revises: 0010_drop_message_response
Create Date: 2026-11-27 21:49:36.757637
"""
from alembic import op
import sqlalchemy as sa


revision = '0011_outbox_index'
down_revision = '0010_drop_message_response'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_outbox', ['next_attempt_at'], unique=False, postgresql_where=sa.text("state IN ('queued', 'scheduled', 'retrying')"), sqlite_where=sa.text("state IN ('queued', 'scheduled', 'retrying')"))



def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_outbox', postgresql_where=sa.text("state IN ('queued', 'scheduled', 'retrying')"), sqlite_where=sa.text("state IN ('queued', 'scheduled', 'retrying')"))

